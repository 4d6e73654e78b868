-- loom.sync.filters: Matrix filters (the /sync Filter and its parts):
-- validation, storage (table `filters`) and the `filter=` query parameter.
local core = require "loom.core"
local ljson = require "loom.json"
local store_filter = require "loom.store.filter"

local json = core.json
local ipairs, pairs, type, tostring, tonumber = ipairs, pairs, type, tostring, tonumber
local math_type = math.type
local assert = assert

local _ENV = nil -- luacheck: ignore 211

local filters = {}

local is_null = ljson.is_null

local function check_strings(v, what)
  if is_null(v) then return true end
  if type(v) ~= "table" then return nil, what .. " must be an array of strings" end
  local n = 0
  for k in pairs(v) do
    if math_type(k) ~= "integer" then return nil, what .. " must be an array of strings" end
    n = n + 1
  end
  for i = 1, n do
    if type(v[i]) ~= "string" then return nil, what .. " must be an array of strings" end
  end
  return true
end

local function check_object(v, what)
  if is_null(v) then return true end
  if type(v) ~= "table" or (v[1] ~= nil) then return nil, what .. " must be an object" end
  return true
end

-- An EventFilter or RoomEventFilter: compiled with loom.store.filter (which
-- checks types, senders, rooms, limit, contains_url); booleans checked here.
local function check_event_filter(v, what)
  if is_null(v) then return true end
  local ok, err = check_object(v, what)
  if not ok then return nil, err end
  local f
  f, err = store_filter.compile(v)
  if not f then return nil, what .. ": " .. err end
  for _, k in ipairs { "lazy_load_members", "include_redundant_members", "unread_thread_notifications" } do
    if not is_null(v[k]) and type(v[k]) ~= "boolean" then return nil, what .. "." .. k .. " must be a boolean" end
  end
  return true
end

--- Validate a Filter definition (decoded JSON): true or nil, message.
function filters.validate(def)
  if type(def) ~= "table" or def[1] ~= nil then return nil, "filter must be a JSON object" end
  local ok, err = check_strings(def.event_fields, "event_fields")
  if not ok then return nil, err end
  if not is_null(def.event_format) and def.event_format ~= "client" and def.event_format ~= "federation" then
    return nil, "event_format must be 'client' or 'federation'"
  end
  for _, k in ipairs { "presence", "account_data" } do
    ok, err = check_event_filter(def[k], k)
    if not ok then return nil, err end
  end
  local room = def.room
  ok, err = check_object(room, "room")
  if not ok then return nil, err end
  if not is_null(room) then
    for _, k in ipairs { "rooms", "not_rooms" } do
      ok, err = check_strings(room[k], "room." .. k)
      if not ok then return nil, err end
      if not is_null(room[k]) then
        for _, id in ipairs(room[k]) do
          if not store_filter.is_id("room", id) then return nil, "room." .. k .. " holds a non-room ID" end
        end
      end
    end
    if not is_null(room.include_leave) and type(room.include_leave) ~= "boolean" then
      return nil, "room.include_leave must be a boolean"
    end
    for _, k in ipairs { "timeline", "state", "ephemeral", "account_data" } do
      ok, err = check_event_filter(room[k], "room." .. k)
      if not ok then return nil, err end
    end
  end
  return true
end

--- Store a filter for a user: the new filter ID (a decimal string).
function filters.create(store, user_id, def)
  local text = assert(json.encode(def))
  return tostring(store:save_filter(user_id, text))
end

--- A stored filter: the decoded definition, or nil.
function filters.get(store, user_id, filter_id)
  if type(filter_id) ~= "string" or not filter_id:find("^%d+$") or #filter_id > 18 then return nil end
  local text = store:filter_json(user_id, tonumber(filter_id))
  if not text then return nil end
  return (json.decode(text))
end

--- The `filter` query parameter: an ID or inline JSON ("{…"). Returns the
-- definition ({} when absent) or nil, message.
function filters.from_param(store, user_id, param)
  if param == nil or param == "" then return {} end
  local def
  if param:sub(1, 1) == "{" then
    local err
    def, err = json.decode(param)
    if def == nil then return nil, "filter is not valid JSON: " .. tostring(err) end
  else
    def = filters.get(store, user_id, param)
    if not def then return nil, "unknown filter " .. param end
  end
  local ok, err = filters.validate(def)
  if not ok then return nil, err end
  return def
end

--- Keep only the dot paths of event_fields in a client event (a new table).
function filters.apply_event_fields(ev, fields)
  if is_null(fields) then return ev end
  local out = {}
  for _, path in ipairs(fields) do
    local parts = {}
    for p in path:gmatch("[^.]+") do parts[#parts + 1] = p end
    local src, dst = ev, out
    for i, p in ipairs(parts) do
      if type(src) ~= "table" or src[p] == nil then break end
      if i == #parts then
        dst[p] = src[p]
      else
        src = src[p]
        if type(src) ~= "table" then break end
        dst[p] = dst[p] or {}
        dst = dst[p]
      end
    end
  end
  return out
end

return filters
