-- loom.room.statemap: room state as a Lua map from (event type, state key)
-- to event ID, with one unambiguous string key per pair.
--
--   local statemap = require "loom.room.statemap"
--   local s = { [statemap.key("m.room.member", "@a:x")] = "$join" }
--   local t, sk = statemap.split(next(s))
--
-- The key is the type length-prefixed, then the state key, so no choice of
-- characters in either part can make two pairs collide.
local string_pack, string_unpack = string.pack, string.unpack
local pairs = pairs
local ipairs = ipairs

local _ENV = nil -- luacheck: ignore 211

local statemap = {}

--- The map key for (type, state_key).
function statemap.key(event_type, state_key)
  return string_pack(">s2", event_type) .. state_key
end

--- The (type, state_key) of a map key.
function statemap.split(k)
  local t, pos = string_unpack(">s2", k)
  return t, k:sub(pos)
end

--- A state map from a list of events (tables with type, state_key, event_id).
function statemap.from_events(events)
  local m = {}
  for _, ev in ipairs(events) do
    if ev.state_key ~= nil then m[statemap.key(ev.type, ev.state_key)] = ev.event_id end
  end
  return m
end

--- Are two state maps equal?
function statemap.equal(a, b)
  for k, v in pairs(a) do if b[k] ~= v then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

return statemap
