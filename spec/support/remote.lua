-- Events from another server for specs: signing keys made from a seed byte,
-- a key lookup over several keys, and the room argument event.build needs
-- to build an event against what a store holds.
--
--   local remote = require "support.remote"
--   local other = remote.key("b.test", 2)
--   local ev = assert(event.build(version, proto, remote.room(store, rooms, room_id), other))
--   assert(rooms:receive(ev, { keys = remote.keys_of(key, other) }))
local crypto = require "loom.room.crypto"

local _M = {}

--- The signing key "ed25519:k" of server, its seed 32 copies of seed_byte.
function _M.key(server, seed_byte)
  return crypto.signing_key(string.rep(string.char(seed_byte), 32), "ed25519:k", server)
end

--- keys(server, key_id) -> the public key among the given signing keys, or nil.
function _M.keys_of(...)
  local by = {}
  for _, k in ipairs { ... } do by[k.server_name] = k end
  return function(server, key_id)
    local k = by[server]
    if k and key_id == k.key_id then return k.public_key end
  end
end

--- The room argument of event.build for room_id: forward extremities as
-- the store holds them when asked (or the event IDs in prevs), state from
-- the room service (or state(room, type, state_key) when given).
function _M.room(store, rooms, room_id, prevs, state)
  return {
    forward_extremities = function()
      local out = {}
      for _, id in ipairs(prevs or store:forward_extremities(room_id)) do
        local _, meta = store:event(id)
        out[#out + 1] = { event_id = id, depth = meta.depth }
      end
      return out
    end,
    state = state or function(_, t, k) return rooms:state_event(room_id, t, k) end,
  }
end

return _M
