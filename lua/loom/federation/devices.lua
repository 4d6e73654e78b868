-- loom.federation.devices: end-to-end encryption keys across servers
-- (Server-Server API "Device Management" and "End-to-End Encryption").
--
--   devices.install(hs)        -- local changes go out as EDUs; remote lists are dropped when unshared
--   devices.device_list_update(hs, origin, content)   -- inbound m.device_list_update (inside a task)
--   devices.signing_key_update(hs, origin, content)   -- inbound m.signing_key_update
--   local ok, err = devices.resync(hs, user_id, timeout)   -- GET /user/devices into the held list
--   local keys, names, cs, failures = devices.query(hs, { [user_id] = { device_id, ... } }, timeout)
--   local claimed, failures = devices.claim(hs, { [user_id] = { [device_id] = algorithm } }, timeout)
--
-- Outbound: every device-list change of a local user (loom.store.devices)
-- becomes, in the same transaction, an m.device_list_update (one device:
-- user_id, device_id, stream_id = its position, prev_id = the position of
-- the user's previous device change, deleted, keys, device_display_name)
-- or, for cross-signing keys, an m.signing_key_update (master_key,
-- self_signing_key), queued for every server sharing a room with the user.
--
-- Inbound: an update from a server for one of its own users who shares a
-- room with this server is applied to the held list when its prev_id names
-- the stream_id held; otherwise the list is fetched again (/user/devices).
-- Either way it is a device-list change of the user, so local users sharing
-- a room see them in /sync. Updates for other servers' users are ignored.
--
-- Client queries: a user whose list is held is answered from it; a user
-- sharing a room whose list is not held is fetched (/user/devices) first;
-- the others are asked of their server (/user/keys/query, /user/keys/claim),
-- one request per server, all at once, until the timeout. A server that does
-- not answer in time (or answers an error) is in failures.
local type, ipairs, pairs, tostring, pcall, next = type, ipairs, pairs, tostring, pcall, next
local math_type, table_sort = math.type, table.sort
local uv = require "luv"
local core = require "loom.core"
local ljson = require "loom.json"
local async = require "loom.async"
local crypto = require "loom.room.crypto"
local fedclient = require "loom.federation.client"
local cross_signing = require "loom.api.client.cross_signing"

local json = core.json
local is_object, is_array = ljson.is_object, ljson.is_array
local E = fedclient.encode
local b64decode = core.crypto.base64_decode

local _ENV = nil -- luacheck: ignore 211

local devices = {}

local MAX_DEVICES = 1000     -- devices of one user taken from an answer
local MAX_ID = 255
local RESYNC_TIMEOUT = 10000 -- ms, for a resync after a gap

local F1 = "/_matrix/federation/v1"

local function domain(user_id)
  return type(user_id) == "string" and user_id:match("^@[^:]+:(.+)$") or nil
end

local function encode(v) return (json.encode(v, { floats = true })) end

local function log(hs, level, fmt, ...)
  hs.server:log(level, "device lists: " .. fmt, ...)
end

local function empty_or_array(v) return is_array(v) or (is_object(v) and next(v) == nil) end

--- devices.check_device_keys(user_id, device_id, keys) -> the JSON text to
-- hold (without unsigned), or nil: keys must be the device's, signed by its
-- own ed25519 key.
function devices.check_device_keys(user_id, device_id, keys)
  if not is_object(keys) or keys.user_id ~= user_id or keys.device_id ~= device_id then return nil end
  if not is_object(keys.keys) or not is_object(keys.signatures) or not is_array(keys.algorithms) then return nil end
  local pub = keys.keys["ed25519:" .. device_id]
  local raw = type(pub) == "string" and b64decode(pub)
  if not raw or #raw ~= 32 then return nil end
  if not crypto.verify_json(keys, user_id, "ed25519:" .. device_id, raw) then return nil end
  local copy = {}
  for k, v in pairs(keys) do if k ~= "unsigned" then copy[k] = v end end
  return encode(copy)
end

-- A cross-signing key of user_id for usage, as JSON text, or nil.
local function check_cs_key(user_id, obj, usage)
  if not is_object(obj) or obj.user_id ~= user_id or not is_array(obj.usage) then return nil end
  local has = false
  for _, u in ipairs(obj.usage) do if u == usage then has = true end end
  if not has or not cross_signing.public_key(obj) then return nil end
  if obj.signatures ~= nil and not is_object(obj.signatures) then return nil end
  return encode(obj)
end

-- The master and self-signing keys of user_id from an answer or EDU, as
-- JSON texts: the self-signing key only when signed by the master key (the
-- one given, else the one held).
local function cs_keys(store, user_id, master, ssk)
  local out = { master = check_cs_key(user_id, master, "master") }
  local text = check_cs_key(user_id, ssk, "self_signing")
  if text then
    local m = out.master and master or nil
    if not m then
      local held = store:cross_signing_keys(user_id).master
      m = held and json.decode(held)
    end
    local pub, raw = cross_signing.public_key(m)
    if pub and crypto.verify_json(ssk, user_id, "ed25519:" .. pub, raw) then out.self_signing = text end
  end
  return out
end

local function valid_device_id(d) return type(d) == "string" and #d > 0 and #d <= MAX_ID end

-- ---- outbound ---------------------------------------------------------------

-- The servers sharing a room with the user (this one included; the sender
-- leaves it out).
local function destinations(store, user_id)
  local out, seen = {}, {}
  for _, room_id in ipairs(store:rooms_for_user(user_id, "join")) do
    for _, s in ipairs(store:servers_in_room(room_id)) do
      if not seen[s] then seen[s] = true; out[#out + 1] = s end
    end
  end
  return out
end

local function queue(hs, user_id, pos, device_id)
  local store = hs.store
  local dests = destinations(store, user_id)
  if #dests < 2 then return end      -- only this server
  if device_id then
    local row = store:user_device(user_id, device_id)
    local text = store:device_keys_json(user_id, device_id)
    local prev = store:device_list_prev_id(user_id, pos)
    hs.sender:queue_edu(dests, "m.device_list_update", {
      user_id = user_id, device_id = device_id, stream_id = pos,
      prev_id = prev and json.array { prev } or json.array {},
      deleted = (not row and not text) or nil,
      device_display_name = row and row.display_name or nil,
      keys = text and json.decode(text) or nil,
    })
  else
    local cs = store:cross_signing_keys(user_id)
    if not cs.master and not cs.self_signing then return end
    hs.sender:queue_edu(dests, "m.signing_key_update", {
      user_id = user_id,
      master_key = cs.master and json.decode(cs.master) or nil,
      self_signing_key = cs.self_signing and json.decode(cs.self_signing) or nil,
    })
  end
end

-- A remote user's membership changed: when they share no room with this
-- server any more, their held list goes (it would go stale unseen).
local function membership(hs, ev)
  if type(ev) ~= "table" or ev.type ~= "m.room.member" or type(ev.state_key) ~= "string" then return end
  local user_id = ev.state_key
  local server = domain(user_id)
  if not server or server == hs.server_name then return end
  local c = ev.content
  if is_object(c) and c.membership == "join" then return end
  local store = hs.store
  if store:remote_device_list(user_id) and not store:joined_anywhere(user_id) then
    store:forget_remote_device_list(user_id)
  end
end

--- devices.install(hs): on a server that federates (hs.sender).
function devices.install(hs)
  local store = hs.store
  store.on_device_list_change = function(user_id, pos, device_id)
    if domain(user_id) ~= hs.server_name then return end
    local ok, err = pcall(queue, hs, user_id, pos, device_id)
    if not ok then log(hs, "warn", "no EDU for %s: %s", user_id, tostring(err)) end
  end
  hs.server:hook("room/event/persisted", function(ev)
    local ok, err = pcall(membership, hs, ev)
    if not ok then log(hs, "warn", "membership: %s", tostring(err)) end
  end)
end

-- ---- inbound ----------------------------------------------------------------

local function mark_changed(store, user_id)
  store:transaction(function()
    store:device_list_changed(user_id)
    return true
  end)
end

-- The user's device list from their server (GET /user/devices), held from
-- now on: true | nil, message.
local function resync(hs, user_id, timeout)
  local server = domain(user_id)
  if not server then return nil, "not a user ID" end
  local status, body = hs.federation:request(server, "GET", F1 .. "/user/devices/" .. E(user_id),
    { timeout = timeout or RESYNC_TIMEOUT })
  if status ~= 200 or not is_object(body) then
    return nil, "GET /user/devices: " .. tostring(status or body)
  end
  if body.user_id ~= user_id or math_type(body.stream_id) ~= "integer" or not empty_or_array(body.devices) then
    return nil, "GET /user/devices: a malformed answer"
  end
  local list, seen = {}, {}
  for i, d in ipairs(body.devices) do
    if i > MAX_DEVICES then break end
    if is_object(d) and valid_device_id(d.device_id) and not seen[d.device_id] then
      seen[d.device_id] = true
      local text = devices.check_device_keys(user_id, d.device_id, d.keys)
      local name = type(d.device_display_name) == "string" and d.device_display_name or nil
      list[#list + 1] = { d.device_id, name, text }
    end
  end
  local keys = cs_keys(hs.store, user_id, body.master_key, body.self_signing_key)
  hs.store:replace_remote_device_list(user_id, body.stream_id, list, keys)
  return true
end

--- devices.resync(hs, user_id, [timeout]) -> true | nil, message: the
-- user's device list from their server (GET /user/devices, timeout default
-- 10 s), held from now on. Inside a task.
function devices.resync(hs, user_id, timeout)
  -- one fetch of a user's list at a time: the others wait for its outcome
  -- (a burst of EDUs with gaps, or queries meanwhile, ask once)
  local busy = hs.device_list_resyncs
  if not busy then busy = {}; hs.device_list_resyncs = busy end
  local waiters = busy[user_id]
  if waiters then
    return async.wait(function(wake) waiters[#waiters + 1] = wake end)
  end
  waiters = {}
  busy[user_id] = waiters
  local ok, res, err = pcall(resync, hs, user_id, timeout)
  busy[user_id] = nil
  if not ok then res, err = nil, tostring(res) end
  for _, w in ipairs(waiters) do w(res, err) end
  return res, err
end

-- Does prev_id (the EDU's) follow the held stream_id?
local function follows(prev_id, held)
  if not is_array(prev_id) or #prev_id == 0 then return held == 0 end
  for _, p in ipairs(prev_id) do if p == held then return true end end
  return false
end

--- devices.device_list_update(hs, origin, content): an inbound EDU.
function devices.device_list_update(hs, origin, c)
  if not is_object(c) or domain(c.user_id) ~= origin or not valid_device_id(c.device_id)
      or math_type(c.stream_id) ~= "integer" then
    return
  end
  if c.prev_id ~= nil and not empty_or_array(c.prev_id) then return end
  local store, user_id = hs.store, c.user_id
  if not store:joined_anywhere(user_id) then return end   -- not tracked here
  local held = store:remote_device_list(user_id)
  if not held then return mark_changed(store, user_id) end   -- fetched when a client asks
  if c.stream_id <= held then return end                      -- seen already
  local text
  if c.deleted ~= true and c.keys ~= nil then text = devices.check_device_keys(user_id, c.device_id, c.keys) end
  if follows(c.prev_id, held) and (c.deleted == true or c.keys == nil or text) then
    local name = type(c.device_display_name) == "string" and c.device_display_name or nil
    store:update_remote_device(user_id, c.stream_id, c.device_id,
      { deleted = c.deleted == true, display_name = name, key_json = text })
    return
  end
  local ok, err = devices.resync(hs, user_id)
  if not ok then
    -- asked of the server at the next query instead
    log(hs, "info", "resync of %s failed: %s", user_id, tostring(err))
    store:forget_remote_device_list(user_id)
    mark_changed(store, user_id)
  end
end

--- devices.signing_key_update(hs, origin, content): an inbound EDU.
function devices.signing_key_update(hs, origin, c)
  if not is_object(c) or domain(c.user_id) ~= origin then return end
  local store, user_id = hs.store, c.user_id
  if not store:joined_anywhere(user_id) then return end
  if not store:remote_device_list(user_id) then return mark_changed(store, user_id) end
  local keys = cs_keys(store, user_id, c.master_key, c.self_signing_key)
  if next(keys) then store:put_cross_signing_keys(user_id, keys) end
end

-- ---- client queries -----------------------------------------------------------

-- Runs each job ({ server, fn }) in its own task, until all are done or
-- timeout ms have passed: { [server] = { fn's results } } of the jobs done
-- by then (a job that raised counts as not done).
local function all(jobs, timeout)
  local results = {}
  if #jobs == 0 then return results end
  local pending = #jobs
  async.wait(function(wake)
    local over = false
    local timer = uv.new_timer()
    local function finish()
      if over then return end
      over = true
      if not timer:is_closing() then timer:stop(); timer:close() end
      wake()
    end
    timer:start(timeout, 0, finish)
    for _, job in ipairs(jobs) do
      async.spawn(function() return { job[2]() } end, nil, function(ok, res)
        if ok and not over then results[job[1]] = res end
        pending = pending - 1
        if pending == 0 then finish() end
      end)
    end
  end)
  return results
end

local function unreachable(failures, server, why)
  if type(why) == "table" then why = type(why.errcode) == "string" and why.errcode or "an error" end
  failures[server] = { status = 503, message = "Not reachable: " .. tostring(why) }
end

local function sorted_keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table_sort(out)
  return out
end

--- devices.query(hs, remote, timeout) -> keys, names, cs, failures for the
-- remote users asked for (remote: { [user_id] = { device_id, ... } }, an
-- empty list: every device): keys { [user_id] = { [device_id] = json_text } },
-- names { [user_id] = { [device_id] = name } } (held lists; the keys of
-- answers carry their own unsigned), cs { [user_id] = { master, self_signing
-- } } (JSON texts), failures { [server] = { status, message } }. Inside a task.
function devices.query(hs, remote, timeout)
  local store = hs.store
  local users = sorted_keys(remote)
  if not hs.federation_on then
    local failures = {}
    for _, u in ipairs(users) do unreachable(failures, domain(u), "federation is off") end
    return {}, {}, {}, failures
  end
  local keys, names = store:remote_device_keys_of(users)
  local cs, failures = {}, {}
  local jobs, resynced, asked = {}, {}, {}
  for _, u in ipairs(users) do
    if not keys[u] then
      local server = domain(u)
      if store:joined_anywhere(u) then
        resynced[#resynced + 1] = u
        jobs[#jobs + 1] = { u, function() return devices.resync(hs, u, timeout) end }
      else
        asked[server] = asked[server] or {}
        asked[server][u] = json.array(remote[u])
      end
    end
  end
  for server, body in pairs(asked) do
    jobs[#jobs + 1] = { server, function()
      return hs.federation:request(server, "POST", F1 .. "/user/keys/query",
        { body = { device_keys = body }, timeout = timeout })
    end }
  end
  local results = all(jobs, timeout)
  for _, u in ipairs(resynced) do
    local r = results[u]
    if not r then unreachable(failures, domain(u), "timed out")
    elseif not r[1] then unreachable(failures, domain(u), r[2]) end
  end
  local answers = {}
  for server in pairs(asked) do
    local r = results[server]
    if not r then unreachable(failures, server, "timed out")
    elseif r[1] == 200 and is_object(r[2]) then answers[server] = r[2]
    else unreachable(failures, server, r[1] or r[2]) end
  end
  -- the lists fetched now
  if #resynced > 0 then
    local k2, n2 = store:remote_device_keys_of(resynced)
    for u, devs in pairs(k2) do keys[u] = devs; names[u] = n2[u] end
  end
  for _, u in ipairs(users) do if keys[u] then cs[u] = store:cross_signing_keys(u) end end
  for server, body in pairs(asked) do
    local ans = answers[server]
    if ans then
      local dk = is_object(ans.device_keys) and ans.device_keys or {}
      local mk = is_object(ans.master_keys) and ans.master_keys or {}
      local sk = is_object(ans.self_signing_keys) and ans.self_signing_keys or {}
      for u in pairs(body) do
        local only
        if #remote[u] > 0 then
          only = {}
          for _, d in ipairs(remote[u]) do only[d] = true end
        end
        local devs, n = {}, 0
        if is_object(dk[u]) then
          for d, k in pairs(dk[u]) do
            n = n + 1
            if n > MAX_DEVICES then break end
            if (not only or only[d]) and is_object(k) and k.user_id == u and k.device_id == d then
              local text = encode(k)
              if text then devs[d] = text end
            end
          end
        end
        keys[u], names[u] = devs, {}
        cs[u] = cs_keys(store, u, mk[u], sk[u])
      end
    end
  end
  -- users of a server that failed are left out
  for _, u in ipairs(users) do
    if failures[domain(u)] then keys[u], names[u], cs[u] = nil, nil, nil end
  end
  return keys, names, cs, failures
end

--- devices.claim(hs, remote, timeout) -> claimed, failures: one key per
-- device of remote users (remote: { [user_id] = { [device_id] = algorithm }
-- }) from their servers: claimed { [user_id] = { [device_id] = { [key_id] =
-- key } } }. Inside a task.
function devices.claim(hs, remote, timeout)
  local asked = {}
  for u, devs in pairs(remote) do
    local server = domain(u)
    asked[server] = asked[server] or {}
    asked[server][u] = devs
  end
  local claimed, failures, jobs = {}, {}, {}
  if not hs.federation_on then
    for server in pairs(asked) do unreachable(failures, server, "federation is off") end
    return claimed, failures
  end
  for server, body in pairs(asked) do
    jobs[#jobs + 1] = { server, function()
      return hs.federation:request(server, "POST", F1 .. "/user/keys/claim",
        { body = { one_time_keys = body }, timeout = timeout })
    end }
  end
  local results = all(jobs, timeout)
  for server, body in pairs(asked) do
    local r = results[server]
    local status, ans = r and r[1], r and r[2]
    if not r then unreachable(failures, server, "timed out")
    elseif status ~= 200 or not is_object(ans) then unreachable(failures, server, status or ans)
    else
      local otk = is_object(ans.one_time_keys) and ans.one_time_keys or {}
      for u, devs in pairs(body) do
        if is_object(otk[u]) then
          for d, k in pairs(otk[u]) do
            -- one key per device asked for, of the algorithm asked for
            if type(d) == "string" and devs[d] and is_object(k) then
              local id, key = next(k)
              if type(id) == "string" and id:sub(1, #devs[d] + 1) == devs[d] .. ":" and json.encode(key) then
                claimed[u] = claimed[u] or {}
                claimed[u][d] = { [id] = key }
              end
            end
          end
        end
      end
    end
  end
  return claimed, failures
end

return devices
