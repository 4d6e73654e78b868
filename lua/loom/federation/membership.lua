-- loom.federation.membership: invites to users of other servers, and
-- leaving (rejecting an invite, rescinding a knock) or knocking through
-- another server, for rooms this server is not in.
--
--   local fm = require "loom.federation.membership"
--   local ev, err = fm.invite(hs, room_id, sender, target, content)      -- in a task
--   local ok, err = fm.remote_leave(hs, room_id, user_id, servers, content)
--   local ok, err = fm.remote_knock(hs, room_id, user_id, servers, content)
--
-- invite: the invite is built against the room's current state (403 when
-- the auth rules refuse it), hashed and signed, and sent to the invitee's
-- server (PUT /v2/invite with the room version and the stripped state);
-- the event that comes back must be the same event signed by that server
-- too. It is then stored as any received event and sent on to the room's
-- other servers. remote_leave / remote_knock: make_leave / make_knock
-- through each server in turn, the template completed and signed, then
-- send_leave / send_knock; the event is stored as an outlier (the room's
-- state stays unknown here), so the user's /sync shows the room under leave
-- or knock. Errors are Matrix errors.
local type, ipairs, pairs, tostring, setmetatable = type, ipairs, pairs, tostring, setmetatable
local math_type = math.type
local core = require "loom.core"
local ljson = require "loom.json"
local errors = require "loom.http.errors"
local crypto = require "loom.room.crypto"
local event_mod = require "loom.room.event"
local version_mod = require "loom.room.version"
local receive = require "loom.federation.receive"
local fedclient = require "loom.federation.client"

local json, now_ms, array_mt = core.json, core.now_ms, core.json.array_mt
local is_object, is_array = ljson.is_object, ljson.is_array
local E = fedclient.encode

local _ENV = nil -- luacheck: ignore 211

local fm = {}

-- the state an invitee sees before joining (as Synapse sends)
local STRIPPED_TYPES = { "m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar",
  "m.room.canonical_alias", "m.room.encryption", "m.room.topic" }

local function domain(user_id)
  return type(user_id) == "string" and user_id:match("^@[^:]*:(.+)$") or nil
end

local function why(status, body)
  if is_object(body) then return tostring(status) .. " " .. tostring(body.errcode) .. ": " .. tostring(body.error) end
  return tostring(status or body)
end

-- A Matrix error for another server's refusal (or silence).
local function remote_error(what, status, body)
  local msg = what .. ": " .. why(status, body)
  if status == 403 then return errors.new("M_FORBIDDEN", msg) end
  if status == 404 then return errors.new("M_NOT_FOUND", msg) end
  if status == 400 and is_object(body) and (body.errcode == "M_INCOMPATIBLE_ROOM_VERSION"
      or body.errcode == "M_UNSUPPORTED_ROOM_VERSION") then
    return errors.new("M_UNSUPPORTED_ROOM_VERSION", msg)
  end
  local e = errors.new("M_UNKNOWN", msg)
  e.status = 502
  return e
end

-- Hash, sign and name an event built elsewhere (a template).
local function seal(hs, version, ev)
  ev.hashes, ev.signatures, ev.event_id, ev.unsigned = nil, nil, nil, nil
  local ok, msg = crypto.add_content_hash(ev)
  if not ok then return nil, msg end
  ok, msg = crypto.sign_event(ev, hs.key, version.id)
  if not ok then return nil, msg end
  ev.event_id = event_mod.compute_id(version, ev)
  return ev
end

--- fm.stripped_state(hs, room_id, [member]) -> the room's stripped state
-- (create, join rules, name, avatar, canonical alias, encryption, topic, and
-- member's m.room.member event when given), as invites and knocks carry it.
function fm.stripped_state(hs, room_id, sender)
  local out = setmetatable({}, array_mt)
  local function add(ev)
    if ev then
      out[#out + 1] = { type = ev.type, state_key = ev.state_key, sender = ev.sender, content = ev.content }
    end
  end
  for _, t in ipairs(STRIPPED_TYPES) do add(hs.rooms:state_event(room_id, t, "")) end
  if sender then add(hs.rooms:state_event(room_id, "m.room.member", sender)) end
  return out
end

-- keys(server, key_id) for server's signatures on ev.
local function keys_of(hs, ev, server)
  local found = {}
  local sigs = is_object(ev.signatures) and ev.signatures[server]
  if is_object(sigs) then
    local ts = math_type(ev.origin_server_ts) == "integer" and ev.origin_server_ts or now_ms()
    for key_id in pairs(sigs) do
      if type(key_id) == "string" and key_id:sub(1, 8) == "ed25519:" then
        found[key_id] = hs.keyring:verify_key(server, key_id, ts)
      end
    end
  end
  return function(s, key_id) if s == server then return found[key_id] end end
end

--- fm.invite(hs, room_id, sender, target, content) -> event | nil, Matrix error
function fm.invite(hs, room_id, sender, target, content)
  local server = domain(target)
  local tpl, version_or_err, code = hs.rooms:template(room_id, { type = "m.room.member", sender = sender,
    state_key = target, content = content })
  if not tpl then
    if code == "forbidden" then return nil, errors.new("M_FORBIDDEN", tostring(version_or_err)) end
    return nil, hs:error(version_or_err, code)
  end
  local version = version_or_err
  local ev, serr = seal(hs, version, tpl)
  if not ev then return nil, errors.new("M_UNKNOWN", tostring(serr)) end
  local event_id = ev.event_id
  local status, body = hs.federation:request(server, "PUT",
    "/_matrix/federation/v2/invite/" .. E(room_id) .. "/" .. E(event_id),
    { body = { room_version = version.id, event = event_mod.pdu(ev),
               invite_room_state = fm.stripped_state(hs, room_id, sender) } })
  if status ~= 200 or not is_object(body) or not is_object(body.event) then
    return nil, remote_error("invite via " .. server, status, body)
  end
  local signed = body.event
  if event_mod.compute_id(version, signed) ~= event_id then
    return nil, remote_error("invite via " .. server, "an answer with another event")
  end
  local ok, verr = event_mod.verify_signature(version, signed, server, keys_of(hs, signed, server))
  if not ok then
    return nil, remote_error("invite via " .. server, "an answer without its signature (" .. tostring(verr) .. ")")
  end
  signed.event_id = nil
  local keys = receive.prefetch_keys(hs, version, { signed })
  local r, rerr, rcode = hs.rooms:receive(signed, { keys = keys })
  if not r then return nil, hs:error(rerr, rcode) end
  if r.rejected or r.soft_failed then
    return nil, errors.new("M_FORBIDDEN", "The invite is not allowed: " .. tostring(r.rejected or "soft-failed"))
  end
  if hs.sender and not r.duplicate then
    local stored = hs.store:event(event_id)
    local rn = hs.store:room_nid(room_id)
    local in_room = false
    for _, s in ipairs(hs.store:joined_servers(rn)) do if s == server then in_room = true end end
    -- the invitee's server has it already unless it is in the room (then it
    -- takes it into the room's graph)
    hs.store:transaction(function() return hs.sender:queue_event(stored, room_id, not in_room and server or nil) end)
  end
  return hs.store:event(event_id)
end

local function complete(hs, version, tpl, room_id, user_id, membership, content)
  if not is_object(tpl) or tpl.type ~= "m.room.member" or tpl.sender ~= user_id or tpl.state_key ~= user_id
      or tpl.room_id ~= room_id then
    return nil, "the template is for another event"
  end
  if not is_array(tpl.prev_events) or not is_array(tpl.auth_events) or json.encode(tpl.depth) == nil then
    return nil, "a template without prev_events, auth_events or depth"
  end
  local c = {}
  if is_object(tpl.content) then for k, v in pairs(tpl.content) do c[k] = v end end
  for k, v in pairs(content or {}) do c[k] = v end
  c.membership = membership
  local ev = {
    type = "m.room.member", room_id = room_id, sender = user_id, state_key = user_id, content = c,
    prev_events = tpl.prev_events, auth_events = tpl.auth_events, depth = tpl.depth,
    origin_server_ts = now_ms(),
  }
  if tpl.origin ~= nil and not version.room_id_is_create_hash then ev.origin = hs.server_name end
  return seal(hs, version, ev)
end

-- make_<kind> then send_<kind> through one server: the event and the
-- send answer, or nil, message, status.
local function through(hs, server, kind, room_id, user_id, content)
  local q
  if kind == "knock" then
    local vers = {}
    for id in pairs(version_mod.available()) do vers[#vers + 1] = id end
    q = { ver = vers }
  end
  local status, body = hs.federation:request(server, "GET",
    "/_matrix/federation/v1/make_" .. kind .. "/" .. E(room_id) .. "/" .. E(user_id), { query = q })
  if status ~= 200 or not is_object(body) then return nil, "make_" .. kind .. " via " .. server, status, body end
  local version = version_mod.get(type(body.room_version) == "string" and body.room_version or "1")
  if not version then return nil, "room version " .. tostring(body.room_version) .. " is not supported", 400 end
  local ev, err = complete(hs, version, body.event, room_id, user_id, kind, content)
  if not ev then return nil, "make_" .. kind .. " via " .. server .. ": " .. tostring(err), 502 end
  local v = kind == "knock" and "v1" or "v2"
  local s2, resp = hs.federation:request(server, "PUT",
    "/_matrix/federation/" .. v .. "/send_" .. kind .. "/" .. E(room_id) .. "/" .. E(ev.event_id),
    { body = event_mod.pdu(ev) })
  if s2 ~= 200 then return nil, "send_" .. kind .. " via " .. server, s2, resp end
  return ev, version, resp
end

-- Try each server; store the event as an outlier (extra unsigned fields:
-- unsigned_fn(answer)).
local function remote(hs, kind, room_id, user_id, servers, content, unsigned_fn)
  local last_what, last_status, last_body = "no server to go through", nil, nil
  local tried = {}
  for _, server in ipairs(servers) do
    if server ~= hs.server_name and not tried[server] then
      tried[server] = true
      local ev, version, resp_or_status, body = through(hs, server, kind, room_id, user_id, content)
      if ev then
        local pdu = event_mod.pdu(ev)
        local extra = unsigned_fn and unsigned_fn(resp_or_status)
        if extra then pdu.unsigned = extra end
        local text = json.encode(pdu)
        local store = hs.store
        local r, perr, pcode = store:transaction(function()
          return store:persist(ev.event_id, ev, { room_version = version.id, json = text, outlier = true })
        end)
        if not r then return nil, hs:error(perr, pcode) end
        return ev
      end
      last_what, last_status, last_body = version, resp_or_status, body
      hs.server:log("info", "%s %s through %s failed: %s", kind, room_id, server, why(last_status, last_body))
    end
  end
  return nil, remote_error(last_what, last_status, last_body)
end

--- fm.remote_leave(hs, room_id, user_id, servers, content) -> event | nil, Matrix error
function fm.remote_leave(hs, room_id, user_id, servers, content)
  return remote(hs, "leave", room_id, user_id, servers, content)
end

--- fm.local_leave(hs, room_id, user_id, event_id, content) -> event | nil,
-- Matrix error: when no server takes the leave, the invite (or knock)
-- event_id is answered here alone, as Synapse does: a leave after it, signed
-- by this server and stored as an outlier, that no other server hears of.
function fm.local_leave(hs, room_id, user_id, event_id, content)
  local version = version_mod.get(hs.store:room_version(room_id) or "")
  local prior = hs.store:event(event_id)
  if not version or not prior then return nil, errors.new("M_NOT_FOUND", "Unknown invite") end
  local c = {}
  for k, v in pairs(content or {}) do c[k] = v end
  c.membership = "leave"
  local ev = { type = "m.room.member", room_id = room_id, sender = user_id, state_key = user_id, content = c,
    prev_events = setmetatable({ event_id }, array_mt), auth_events = setmetatable({ event_id }, array_mt),
    depth = (math_type(prior.depth) == "integer" and prior.depth or 0) + 1, origin_server_ts = now_ms() }
  local sealed, err = seal(hs, version, ev)
  if not sealed then return nil, errors.new("M_UNKNOWN", tostring(err)) end
  local text = json.encode(event_mod.pdu(sealed))
  local store = hs.store
  local r, perr, pcode = store:transaction(function()
    return store:persist(sealed.event_id, sealed, { room_version = version.id, json = text, outlier = true })
  end)
  if not r then return nil, hs:error(perr, pcode) end
  return sealed
end

--- fm.remote_knock(hs, room_id, user_id, servers, content) -> event | nil, Matrix error.
-- The answer's knock_room_state is kept as the event's unsigned.knock_room_state.
function fm.remote_knock(hs, room_id, user_id, servers, content)
  return remote(hs, "knock", room_id, user_id, servers, content, function(resp)
    -- knock_state_events: the name before the spec's (Synapse 1.67 sends only it)
    local st = is_object(resp) and (resp.knock_room_state or resp.knock_state_events)
    local out = setmetatable({}, array_mt)
    if is_array(st) then
      for _, e in ipairs(st) do
        if #out >= 50 then break end
        if is_object(e) and type(e.type) == "string" and type(e.state_key) == "string" then out[#out + 1] = e end
      end
    end
    return { knock_room_state = out }
  end)
end

return fm
