-- loom.federation.join: a local user joins a room through another server.
--
--   local join = require "loom.federation.join"
--   local room_id, err = join.remote(hs, room_id, user_id, { "other.example" }, content)  -- in a task
--
-- For each server in turn (until one works): make_join with the room
-- versions loom speaks; the template is checked (the member event of this
-- user, for this room), completed (content, time), hashed and signed; then
-- send_join. The answer's state and auth chain are checked as any received
-- event (signatures with keys fetched first, content hashes, each against
-- its own auth events) and stored as outliers; the join is stored with that
-- state as the state before it. Its prev_events become the room's backward
-- extremities: older history comes by backfill. Errors are Matrix errors.
local type, ipairs, pairs, tostring = type, ipairs, pairs, tostring
local core = require "loom.core"
local ljson = require "loom.json"
local errors = require "loom.http.errors"
local crypto = require "loom.room.crypto"
local event_mod = require "loom.room.event"
local version_mod = require "loom.room.version"
local receive = require "loom.federation.receive"
local fedclient = require "loom.federation.client"

local now_ms = core.now_ms
local is_object, is_array = ljson.is_object, ljson.is_array
local E = fedclient.encode

local _ENV = nil -- luacheck: ignore 211

local join = {}

local MAX_STATE = 100000   -- events in a send_join answer

local function supported_versions()
  local out = {}
  for id in pairs(version_mod.available()) do out[#out + 1] = id end
  return out
end

-- The join event from a make_join template, or nil, message.
local function complete(hs, version, tpl, room_id, user_id, content)
  if not is_object(tpl) then return nil, "make_join answered without an event" end
  if tpl.type ~= "m.room.member" or tpl.sender ~= user_id or tpl.state_key ~= user_id
      or tpl.room_id ~= room_id then
    return nil, "make_join answered with a template for another event"
  end
  if not is_array(tpl.prev_events) or not is_array(tpl.auth_events) or core.json.encode(tpl.depth) == nil then
    return nil, "make_join template without prev_events, auth_events or depth"
  end
  local c = {}
  if is_object(tpl.content) then for k, v in pairs(tpl.content) do c[k] = v end end
  for k, v in pairs(content or {}) do c[k] = v end
  c.membership = "join"
  local ev = {
    type = "m.room.member", room_id = room_id, sender = user_id, state_key = user_id, content = c,
    prev_events = tpl.prev_events, auth_events = tpl.auth_events, depth = tpl.depth,
    origin_server_ts = now_ms(),
  }
  if tpl.origin ~= nil and not version.room_id_is_create_hash then ev.origin = hs.server_name end
  local ok, msg = crypto.add_content_hash(ev)
  if not ok then return nil, msg end
  ok, msg = crypto.sign_event(ev, hs.key, version.id)
  if not ok then return nil, msg end
  ev.event_id = event_mod.compute_id(version, ev)
  return ev
end

local function as_list(v)
  if not is_array(v) then return {} end
  return v
end

-- One attempt through server: room_id or nil, message.
local function via(hs, server, room_id, user_id, content)
  local path = "/_matrix/federation/v1/make_join/" .. E(room_id) .. "/" .. E(user_id)
  local status, body = hs.federation:request(server, "GET", path, { query = { ver = supported_versions() } })
  if status ~= 200 or not is_object(body) then
    local why = is_object(body) and (tostring(body.errcode) .. ": " .. tostring(body.error)) or tostring(body)
    return nil, "make_join via " .. server .. ": " .. tostring(status) .. " " .. why, status
  end
  local version = version_mod.get(type(body.room_version) == "string" and body.room_version or "1")
  if not version then return nil, "room version " .. tostring(body.room_version) .. " is not supported", 400 end
  local ev, err = complete(hs, version, body.event, room_id, user_id, content)
  if not ev then return nil, err end
  local pdu = event_mod.pdu(ev)
  local s2, resp = hs.federation:request(server, "PUT",
    "/_matrix/federation/v2/send_join/" .. E(room_id) .. "/" .. E(ev.event_id), { body = pdu })
  if s2 ~= 200 or not is_object(resp) then
    local why = is_object(resp) and (tostring(resp.errcode) .. ": " .. tostring(resp.error)) or tostring(resp)
    return nil, "send_join via " .. server .. ": " .. tostring(s2) .. " " .. why, s2
  end
  -- a restricted join comes back signed by the resident too
  if is_object(resp.event) and event_mod.compute_id(version, resp.event) == ev.event_id then
    pdu = resp.event
  end
  local state, chain = as_list(resp.state), as_list(resp.auth_chain)
  if #state + #chain > MAX_STATE then return nil, "send_join answer too large" end
  local all, seen, state_ids = {}, {}, {}
  for _, list in ipairs { chain, state } do
    for _, e in ipairs(list) do
      if is_object(e) then
        local id = event_mod.compute_id(version, e)
        if id and not seen[id] then seen[id] = true; all[#all + 1] = e end
        if id and list == state then state_ids[#state_ids + 1] = id end
      end
    end
  end
  local batch = {}
  for _, e in ipairs(all) do batch[#batch + 1] = e end
  batch[#batch + 1] = pdu
  local keys = receive.prefetch_keys(hs, version, batch)
  local n, dropped_or_err, code = hs.rooms:receive_outliers(all, { keys = keys, room_version = version.id })
  if not n then return nil, dropped_or_err, code end
  for _, d in ipairs(dropped_or_err) do
    hs.server:log("warn", "join %s: left out %s: %s", room_id, tostring(d[1]), tostring(d[2]))
  end
  local r, rerr, rcode = hs.rooms:receive(pdu, { keys = keys, room_version = version.id, state = state_ids })
  if not r then return nil, "storing the join: " .. tostring(rerr), rcode end
  if r.rejected then return nil, "the join was rejected: " .. tostring(r.rejected) end
  return room_id
end

--- join.remote(hs, room_id, user_id, servers, content) -> room_id | nil,
-- Matrix error. servers: names to try in order (this server is skipped).
function join.remote(hs, room_id, user_id, servers, content)
  local last, last_status = "no server to join through", nil
  local tried = {}
  for _, server in ipairs(servers) do
    if server ~= hs.server_name and not tried[server] then
      tried[server] = true
      local ok, err, status = via(hs, server, room_id, user_id, content)
      if ok then return ok end
      last, last_status = err, status
      hs.server:log("info", "join %s through %s failed: %s", room_id, server, tostring(err))
    end
  end
  if last_status == 403 then return nil, errors.new("M_FORBIDDEN", last) end
  if last_status == 400 then return nil, errors.new("M_UNSUPPORTED_ROOM_VERSION", last) end
  if last_status == 404 then return nil, errors.new("M_NOT_FOUND", last) end
  return nil, errors.new("M_UNKNOWN", "Cannot join the room: " .. tostring(last))
end

return join
