-- loom.api.client.room_keys: the Client-Server API "Server-side key
-- backups" endpoints — /room_keys/version (create, get, update, delete;
-- with no backup GET answers 404 M_NOT_FOUND) and /room_keys/keys for all
-- rooms, a room or a session (PUT under the current version only: 403
-- M_WRONG_ROOM_KEYS_VERSION otherwise). See docs/api-client-keys.md.
--
--   room_keys.routes  --> { { "POST", "/_matrix/client/v3/room_keys/version", handler, auth = true }, ... }
local core = require "loom.core"
local errors = require "loom.http.errors"
local ljson = require "loom.json"

local json = core.json
local pairs, ipairs, type, tostring, tonumber, math_type = pairs, ipairs, type, tostring, tonumber, math.type

local _ENV = nil -- luacheck: ignore 211

local room_keys_api = {}

local V3 = "/_matrix/client/v3"
local MAX_KEYS = 10000   -- sessions per upload
local MAX_ID = 255

local function bad(msg) return errors.new("M_BAD_JSON", msg) end
local function encode(v) return (json.encode(v, { floats = true })) end

-- A version string ("1", "2", ...) as an integer, or nil.
local function version_of(s)
  if type(s) ~= "string" or not s:match("^[1-9]%d?%d?%d?%d?%d?%d?%d?%d?$") then return nil end
  return tonumber(s)
end

local function backup_view(b)
  return { version = tostring(b.version), algorithm = b.algorithm, auth_data = json.decode(b.auth_data),
    etag = tostring(b.etag), count = b.count }
end

local function backup_body(req)
  local body = req:json()
  if type(body.algorithm) ~= "string" or #body.algorithm == 0 or #body.algorithm > MAX_ID then
    return nil, errors.new("M_MISSING_PARAM", "algorithm is required")
  end
  if not ljson.is_object(body.auth_data) then return nil, errors.new("M_MISSING_PARAM", "auth_data is required") end
  local text = encode(body.auth_data)
  if not text then return nil, bad("auth_data must be canonical JSON") end
  return body, text
end

local function create(hs, req)
  local body, text = backup_body(req)
  if not body then return text end
  return { version = tostring(hs.store:create_key_backup(req.user_id, body.algorithm, text)) }
end

local function get_version(hs, req)
  local v
  if req.params.version then
    v = version_of(req.params.version)
    if not v then return errors.new("M_NOT_FOUND", "Unknown backup version") end
  end
  local b = hs.store:key_backup(req.user_id, v)
  if not b then return errors.new("M_NOT_FOUND", v and "Unknown backup version" or "No current backup version") end
  return backup_view(b)
end

local function update_version(hs, req)
  local v = version_of(req.params.version)
  local body, text = backup_body(req)
  if not body then return text end
  if body.version ~= nil and body.version ~= req.params.version then
    return errors.new("M_INVALID_PARAM", "version in the body does not match the path")
  end
  local b = v and hs.store:key_backup(req.user_id, v)
  if not b then return errors.new("M_NOT_FOUND", "Unknown backup version") end
  if b.algorithm ~= body.algorithm then return errors.new("M_INVALID_PARAM", "algorithm does not match") end
  hs.store:update_key_backup(req.user_id, v, text)
  return {}
end

local function delete_version(hs, req)
  local v = version_of(req.params.version)
  if not v or not hs.store:delete_key_backup(req.user_id, v) then
    return errors.new("M_NOT_FOUND", "Unknown backup version")
  end
  return {}
end

-- The backup version named by ?version= (must exist; for a write, must be
-- the current one): the backup, or nil, error value.
local function version_arg(hs, req, write)
  local s = req:arg("version")
  if not s then return nil, errors.new("M_MISSING_PARAM", "version is required") end
  local v = version_of(s)
  local b = v and hs.store:key_backup(req.user_id, v)
  if write then
    local current = hs.store:key_backup(req.user_id)
    if not current then return nil, errors.new("M_NOT_FOUND", "No current backup version") end
    if not b or b.version ~= current.version then
      return nil, errors.new("M_WRONG_ROOM_KEYS_VERSION", "Wrong backup version",
        { current_version = tostring(current.version) })
    end
  end
  if not b then return nil, errors.new("M_NOT_FOUND", "Unknown backup version") end
  return b
end

local function int_field(key, name)
  local v = key[name]
  return math_type(v) == "integer" and v >= 0
end

-- A KeyBackupData object as stored, or nil, error value.
local function key_data(key)
  if not ljson.is_object(key) then return nil, bad("a key must be an object") end
  if not int_field(key, "first_message_index") or not int_field(key, "forwarded_count") then
    return nil, bad("first_message_index and forwarded_count must be integers >= 0")
  end
  if type(key.is_verified) ~= "boolean" then return nil, bad("is_verified must be a boolean") end
  if not ljson.is_object(key.session_data) then return nil, bad("session_data must be an object") end
  local text = encode(key.session_data)
  if not text then return nil, bad("session_data must be canonical JSON") end
  return { first_message_index = key.first_message_index, forwarded_count = key.forwarded_count,
    is_verified = key.is_verified, session_data = text }
end

local function add_sessions(list, room_id, sessions)
  if not ljson.is_object(sessions) then return bad("sessions must be an object") end
  for session_id, key in pairs(sessions) do
    if type(session_id) ~= "string" or #session_id > MAX_ID then return bad("invalid session ID") end
    if #list >= MAX_KEYS then return errors.new("M_INVALID_PARAM", "too many keys") end
    local k, err = key_data(key)
    if not k then return err end
    list[#list + 1] = { room_id, session_id, k }
  end
end

local function put_keys(hs, req)
  local b, err = version_arg(hs, req, true)
  if not b then return err end
  local body = req:json()
  local list = {}
  local room_id, session_id = req.params.roomId, req.params.sessionId
  if session_id then
    local k, e = key_data(body)
    if not k then return e end
    list[1] = { room_id, session_id, k }
  elseif room_id then
    err = add_sessions(list, room_id, body.sessions)
    if err then return err end
  else
    if not ljson.is_object(body.rooms) then return bad("rooms must be an object") end
    for r, room in pairs(body.rooms) do
      if type(r) ~= "string" or #r > MAX_ID then return bad("invalid room ID") end
      if not ljson.is_object(room) then return bad("a room must be an object") end
      err = add_sessions(list, r, room.sessions)
      if err then return err end
    end
  end
  hs.store:put_room_keys(req.user_id, b.version, list)
  b = hs.store:key_backup(req.user_id, b.version)
  return { etag = tostring(b.etag), count = b.count }
end

local function view(k)
  return { first_message_index = k.first_message_index, forwarded_count = k.forwarded_count,
    is_verified = k.is_verified, session_data = json.decode(k.session_data) }
end

local function get_keys(hs, req)
  local b, err = version_arg(hs, req, false)
  if not b then return err end
  local room_id, session_id = req.params.roomId, req.params.sessionId
  local rows = hs.store:room_keys(req.user_id, b.version, room_id, session_id)
  if session_id then
    if not rows[1] then return errors.new("M_NOT_FOUND", "No room key for this session") end
    return view(rows[1][3])
  end
  if room_id then
    local sessions = {}
    for _, row in ipairs(rows) do sessions[row[2]] = view(row[3]) end
    return { sessions = sessions }
  end
  local rooms = {}
  for _, row in ipairs(rows) do
    rooms[row[1]] = rooms[row[1]] or { sessions = {} }
    rooms[row[1]].sessions[row[2]] = view(row[3])
  end
  return { rooms = rooms }
end

local function delete_keys(hs, req)
  local b, err = version_arg(hs, req, false)
  if not b then return err end
  hs.store:delete_room_keys(req.user_id, b.version, req.params.roomId, req.params.sessionId)
  b = hs.store:key_backup(req.user_id, b.version)
  return { etag = tostring(b.etag), count = b.count }
end

local routes = {
  { "POST", V3 .. "/room_keys/version", create, auth = true },
  { "GET", V3 .. "/room_keys/version", get_version, auth = true },
  { "GET", V3 .. "/room_keys/version/{version}", get_version, auth = true },
  { "PUT", V3 .. "/room_keys/version/{version}", update_version, auth = true },
  { "DELETE", V3 .. "/room_keys/version/{version}", delete_version, auth = true },
}
for _, p in ipairs { "/room_keys/keys", "/room_keys/keys/{roomId}", "/room_keys/keys/{roomId}/{sessionId}" } do
  routes[#routes + 1] = { "PUT", V3 .. p, put_keys, auth = true }
  routes[#routes + 1] = { "GET", V3 .. p, get_keys, auth = true }
  routes[#routes + 1] = { "DELETE", V3 .. p, delete_keys, auth = true }
end
room_keys_api.routes = routes

return room_keys_api
