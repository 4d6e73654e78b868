-- loom.room.version: the room versions loom speaks, as data. Each version is
-- a table of the behaviours that differ between versions; code asks the
-- table, never compares version strings.
--
--   local version = require "loom.room.version"
--   local v = assert(version.get("11"))
--   if v.creator_in_content then ... end
--
-- Versions 3 to 12 (every version whose event IDs are reference hashes) are
-- supported; 1 and 2 (event IDs chosen by the origin server) are known but
-- refused. Each older version is the next one with a few flags turned off.
local pairs, setmetatable, getmetatable, error = pairs, setmetatable, getmetatable, error
local tostring = tostring

local _ENV = nil -- luacheck: ignore 211

local version = {}

-- The default for new rooms (SPEC-NOTES: keep v11 for now; v12 available).
version.DEFAULT = "11"

local base = {
  -- event format
  event_id_format = "v4",          -- "$" .. urlsafe base64 of the reference hash (v3: standard)
  max_prev_events = 20,
  max_auth_events = 10,
  max_event_bytes = 65536,          -- canonical JSON with signatures
  strict_canonical_json = true,     -- v6+: reject floats/out-of-range integers
  -- signatures
  enforce_key_validity = true,      -- v5+: a key counts only while valid_until_ts >= origin_server_ts
  -- redaction (loom.room.redact takes the version string)
  -- authorization
  aliases_auth_rule = false,        -- v3-v5: rule 4, m.room.aliases by the state_key's server
  integer_power_levels = true,      -- v10+: power levels must be integers (before: "50" reads as 50)
  restricted_join_rule = true,      -- v8+
  knock_join_rule = true,           -- v7+
  knock_restricted_join_rule = true, -- v10+
  creator_in_content = true,        -- before v11: m.room.create content.creator
  redacts_in_content = false,       -- v11+: m.room.redaction carries content.redacts
  join_after_create_by_sender = false, -- v11+: rule 5.3.1 uses the create's sender
  notifications_in_power_levels = true, -- v6+: rules 9.4/9.5 cover notifications too
  -- v12
  room_id_is_create_hash = false,   -- room ID = "!" .. create event reference hash
  create_in_auth_events = true,     -- v12: never select m.room.create
  creators_have_infinite_power = false,
  additional_creators = false,
  -- state resolution: "v2" or "v2.1" (v12: empty start map, conflicted subgraph)
  state_res = "v2",
  supported = true,
}

local function derive(parent, changes)
  local v = {}
  for k, val in pairs(parent) do v[k] = val end
  for k, val in pairs(changes) do v[k] = val end
  return v
end

local defs = {}
defs["3"] = derive(base, { event_id_format = "v3", strict_canonical_json = false,
  enforce_key_validity = false, aliases_auth_rule = true, integer_power_levels = false,
  restricted_join_rule = false, knock_join_rule = false, knock_restricted_join_rule = false,
  notifications_in_power_levels = false })
defs["4"] = derive(defs["3"], { event_id_format = "v4" })
defs["5"] = derive(defs["4"], { enforce_key_validity = true })
defs["6"] = derive(defs["5"], { strict_canonical_json = true, aliases_auth_rule = false,
  notifications_in_power_levels = true })
defs["7"] = derive(defs["6"], { knock_join_rule = true })
defs["8"] = derive(defs["7"], { restricted_join_rule = true })
defs["9"] = derive(defs["8"], {})   -- redaction keeps join_authorised_via_users_server (loom.room.redact)
defs["10"] = derive(defs["9"], { integer_power_levels = true, knock_restricted_join_rule = true })
defs["11"] = derive(defs["10"], { creator_in_content = false, join_after_create_by_sender = true,
  redacts_in_content = true })
defs["12"] = derive(defs["11"], { room_id_is_create_hash = true, create_in_auth_events = false,
  creators_have_infinite_power = true, additional_creators = true, state_res = "v2.1" })

local mt = { __name = "loom.room.Version" }
for id, v in pairs(defs) do
  v.id = id
  setmetatable(v, mt)
end

--- The version table for a version string, or nil, message,
-- "unsupported_room_version" when loom does not speak it.
function version.get(id)
  local v = defs[id]
  if not v or not v.supported then
    return nil, "unsupported room version: " .. tostring(id), "unsupported_room_version"
  end
  return v
end

--- Is the version string one loom can create and join rooms of?
function version.supported(id)
  local v = defs[id]
  return v ~= nil and v.supported
end

--- The supported version strings, for /capabilities: { ["10"] = "stable", ... }.
function version.available()
  local out = {}
  for id, v in pairs(defs) do
    if v.supported then out[id] = "stable" end
  end
  return out
end

--- Is this string a room version the spec defines (supported or not)?
function version.known(id)
  return defs[id] ~= nil or id == "1" or id == "2"
end

--- Is v a version table (what get returns)?
function version.is(v)
  return getmetatable(v) == mt
end

--- version.check(v, n, fname) -> v: the argument check of every function
-- that takes a version table; raises "bad argument #n to 'fname' (room
-- version table expected)" at the caller of that function otherwise.
function version.check(v, n, fname)
  if getmetatable(v) ~= mt then
    error("bad argument #" .. n .. " to '" .. fname .. "' (room version table expected)", 3)
  end
  return v
end

version.mt = mt
return version
