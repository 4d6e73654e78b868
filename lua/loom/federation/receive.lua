-- loom.federation.receive: events from other servers into the room service,
-- with the keys their signatures need fetched first.
--
--   local receive = require "loom.federation.receive"
--   local keys = receive.prefetch_keys(hs, version, events)   -- inside a task
--   local r, err = hs.rooms:receive(ev, { keys = keys, room_version = version.id })
--
-- The room service checks signatures with a synchronous keys(server, key_id)
-- function inside its write transaction; fetching a key can mean a request
-- to another server, which must not happen while a transaction is open. So
-- the keys every event names in its signatures (for the servers whose
-- signatures count: the sender's, and the authorising server of a
-- restricted join) are fetched here first, each valid at the event's
-- origin_server_ts (room version 5 and later; in v3 and v4 any published key
-- counts), and handed over as a table lookup.
local type, pairs, ipairs = type, pairs, ipairs
local math_type = math.type
local ljson = require "loom.json"

local is_object = ljson.is_object

local _ENV = nil -- luacheck: ignore 211

local receive = {}

local function domain(user_id)
  return type(user_id) == "string" and user_id:match("^@[^:]*:(.+)$") or nil
end

--- receive.signing_servers(ev) -> { server_name = true } whose signatures the
-- auth rules check on ev.
function receive.signing_servers(ev)
  local out = {}
  local s = domain(ev.sender)
  if s then out[s] = true end
  local c = ev.content
  if ev.type == "m.room.member" and is_object(c) and c.membership == "join" then
    local via = domain(c.join_authorised_via_users_server)
    if via then out[via] = true end
  end
  return out
end

--- receive.prefetch_keys(hs, version, events) -> keys(server, key_id) ->
-- public key | nil. Inside a task. Keys that cannot be fetched are absent
-- (the event's check then fails on them).
function receive.prefetch_keys(hs, version, events)
  local found = {}
  local wanted = {}   -- server -> key_id -> latest ts needed
  for _, ev in ipairs(events) do
    local sigs = is_object(ev) and ev.signatures
    if is_object(sigs) then
      -- from v5 a key counts only while valid at the event's origin_server_ts;
      -- before, any key the server has published counts
      local ts = 0
      if version.enforce_key_validity and math_type(ev.origin_server_ts) == "integer" then
        ts = ev.origin_server_ts
      end
      for server in pairs(receive.signing_servers(ev)) do
        local mine = sigs[server]
        if is_object(mine) then
          wanted[server] = wanted[server] or {}
          for key_id in pairs(mine) do
            if type(key_id) == "string" and key_id:sub(1, 8) == "ed25519:" then
              local w = wanted[server][key_id]
              if not w or ts > w then wanted[server][key_id] = ts end
            end
          end
        end
      end
    end
  end
  local keyring = hs.keyring
  for server, ids in pairs(wanted) do
    for key_id, ts in pairs(ids) do
      -- a key valid at the newest event that names it is valid for the older ones
      local pk = keyring:verify_key(server, key_id, ts)
      if pk then
        found[server] = found[server] or {}
        found[server][key_id] = pk
      end
    end
  end
  return function(server, key_id)
    local m = found[server]
    return m and m[key_id] or nil
  end
end

return receive
