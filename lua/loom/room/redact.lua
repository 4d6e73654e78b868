-- loom.room.redact: the Matrix redaction algorithm, by room version.
--
-- redact.event(event, room_version) returns a new table holding deep copies
-- of the parts of `event` that survive redaction; the input is never changed.
-- Content hashes, signatures and event IDs are computed over this form
-- (loom.crypto). Rules: Matrix spec, "Redactions" in the client-server API and
-- the per-version pages (rooms/v1 .. v12).

local pairs, type, tonumber, tostring, error = pairs, type, tonumber, tostring, error
local getmetatable, setmetatable = getmetatable, setmetatable
local string_match = string.match

local core_json = require("loom.core").json
local ljson = require("loom.json")

local _ENV = nil -- luacheck: ignore 211

local redact = {}

-- Top-level keys every version keeps, and the ones dropped from v11 on.
local TOP_KEYS = {
  "event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
  "signatures", "depth", "prev_events", "auth_events", "origin_server_ts",
}
local TOP_KEYS_BEFORE_V11 = { "prev_state", "origin", "membership" }

-- Content keys kept per event type: { key, first version, last version }.
local CONTENT_KEYS = {
  ["m.room.member"] = {
    { "membership", 1, 12 },
    { "join_authorised_via_users_server", 9, 12 },
  },
  ["m.room.create"] = {
    { "creator", 1, 10 },  -- from v11 the whole content is kept
  },
  ["m.room.join_rules"] = {
    { "join_rule", 1, 12 },
    { "allow", 8, 12 },
  },
  ["m.room.power_levels"] = {
    { "ban", 1, 12 }, { "events", 1, 12 }, { "events_default", 1, 12 },
    { "kick", 1, 12 }, { "redact", 1, 12 }, { "state_default", 1, 12 },
    { "users", 1, 12 }, { "users_default", 1, 12 },
    { "invite", 11, 12 },
  },
  ["m.room.history_visibility"] = {
    { "history_visibility", 1, 12 },
  },
  ["m.room.aliases"] = {
    { "aliases", 1, 5 },
  },
  ["m.room.redaction"] = {
    { "redacts", 11, 12 },
  },
}

local MIN_VERSION, MAX_VERSION = 1, 12

-- The integer room version for "1" .. "12", else nil.
local function version_number(room_version)
  if type(room_version) ~= "string" or not string_match(room_version, "^[1-9]%d?$") then
    return nil
  end
  local v = tonumber(room_version)
  if v < MIN_VERSION or v > MAX_VERSION then return nil end
  return v
end

-- Deep copy of a JSON value. Tables keep their metatable (json.array_mt, so
-- empty arrays stay arrays); the json.null sentinel is kept as is.
local function copy(value)
  if type(value) ~= "table" or (core_json and value == core_json.null) then
    return value
  end
  local out = {}
  for k, v in pairs(value) do
    out[k] = copy(v)
  end
  local mt = getmetatable(value)
  if mt ~= nil then setmetatable(out, mt) end
  return out
end

local is_object = ljson.is_object

--- Whether `room_version` is one this module knows the rules for ("1".."12").
function redact.supported(room_version)
  return version_number(room_version) ~= nil
end

--- The redacted form of `event` for `room_version`, as a new table; or
-- nil, message, "unsupported_room_version".
function redact.event(event, room_version)
  local v = version_number(room_version)
  if not v then
    return nil, "unsupported room version: " .. tostring(room_version), "unsupported_room_version"
  end
  if type(event) ~= "table" then
    error("bad argument #1 to 'event' (table expected, got " .. type(event) .. ")", 2)
  end
  local out = {}
  for i = 1, #TOP_KEYS do
    local k = TOP_KEYS[i]
    if event[k] ~= nil then out[k] = copy(event[k]) end
  end
  if v < 11 then
    for i = 1, #TOP_KEYS_BEFORE_V11 do
      local k = TOP_KEYS_BEFORE_V11[i]
      if event[k] ~= nil then out[k] = copy(event[k]) end
    end
  end

  local content = event.content
  local new_content = {}
  if is_object(content) then
    local etype = event.type
    if etype == "m.room.create" and v >= 11 then
      new_content = copy(content)
    else
      local rules = CONTENT_KEYS[etype]
      if rules then
        for i = 1, #rules do
          local rule = rules[i]
          local k = rule[1]
          if v >= rule[2] and v <= rule[3] and content[k] ~= nil then
            new_content[k] = copy(content[k])
          end
        end
      end
      if etype == "m.room.member" and v >= 11 then
        local tpi = content.third_party_invite
        if is_object(tpi) and tpi.signed ~= nil then
          new_content.third_party_invite = { signed = copy(tpi.signed) }
        end
      end
    end
  end
  out.content = new_content
  return out
end

return redact
