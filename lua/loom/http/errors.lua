-- The error registry: every failure that reaches a client is one of these,
-- sent as {"errcode": ..., "error": ...} with the spec's HTTP status.
--
--   local errors = require "loom.http.errors"
--   return errors.new("M_FORBIDDEN", "You are not invited to this room")
--   error(errors.new("M_LIMIT_EXCEEDED", nil, { retry_after_ms = 2000 }))
--   local err = errors.from_code(code, msg)        -- loom's lower-level codes
--
-- A name is usually the errcode itself; a few names give the same errcode
-- another status (METHOD_NOT_ALLOWED is M_UNRECOGNIZED with 405).
local setmetatable, getmetatable, type, pairs, tostring = setmetatable, getmetatable, type, pairs, tostring
local error = error

local _ENV = nil -- luacheck: ignore 211

local errors = {}

-- name -> { errcode, status, default message }
local registry = {
  M_FORBIDDEN = { "M_FORBIDDEN", 403, "Forbidden" },
  M_UNKNOWN_TOKEN = { "M_UNKNOWN_TOKEN", 401, "Unrecognised access token" },
  M_MISSING_TOKEN = { "M_MISSING_TOKEN", 401, "Missing access token" },
  M_USER_LOCKED = { "M_USER_LOCKED", 401, "This account has been locked" },
  M_BAD_JSON = { "M_BAD_JSON", 400, "Malformed JSON content" },
  M_NOT_JSON = { "M_NOT_JSON", 400, "Content not JSON" },
  M_NOT_FOUND = { "M_NOT_FOUND", 404, "Not found" },
  M_LIMIT_EXCEEDED = { "M_LIMIT_EXCEEDED", 429, "Too many requests" },
  M_UNRECOGNIZED = { "M_UNRECOGNIZED", 404, "Unrecognized request" },
  METHOD_NOT_ALLOWED = { "M_UNRECOGNIZED", 405, "Method not allowed" },
  ACCOUNT_DATA_SERVER_TYPE = { "M_BAD_JSON", 405, "This type of account data is controlled by the server" },
  M_UNKNOWN = { "M_UNKNOWN", 500, "Internal server error" },
  BAD_REQUEST = { "M_UNKNOWN", 400, "Bad request" },
  REQUEST_TIMEOUT = { "M_UNKNOWN", 408, "Request timed out" },
  TOO_MANY_CONNECTIONS = { "M_LIMIT_EXCEEDED", 503, "Too many connections; try again shortly" },
  CONFLICT = { "M_UNKNOWN", 409, "Conflict" },
  M_UNAUTHORIZED = { "M_UNAUTHORIZED", 401, "Unauthorized" },
  M_USER_DEACTIVATED = { "M_USER_DEACTIVATED", 403, "This account has been deactivated" },
  M_USER_IN_USE = { "M_USER_IN_USE", 400, "User ID already taken" },
  M_INVALID_USERNAME = { "M_INVALID_USERNAME", 400, "Invalid username" },
  M_ROOM_IN_USE = { "M_ROOM_IN_USE", 400, "Room alias already taken" },
  M_BAD_ALIAS = { "M_BAD_ALIAS", 400, "Room alias does not point to the room" },
  M_INVALID_ROOM_STATE = { "M_INVALID_ROOM_STATE", 400, "Invalid initial room state" },
  M_UNSUPPORTED_ROOM_VERSION = { "M_UNSUPPORTED_ROOM_VERSION", 400, "Unsupported room version" },
  M_INCOMPATIBLE_ROOM_VERSION = { "M_INCOMPATIBLE_ROOM_VERSION", 400, "Incompatible room version" },
  M_BAD_STATE = { "M_BAD_STATE", 400, "Bad state" },
  OTHER_USERS_TYPING = { "M_FORBIDDEN", 400, "Cannot set another user's typing state" },   -- Synapse's status
  MEMBERSHIP_BAD_STATE = { "M_BAD_STATE", 403, "The membership change does not fit the user's membership" },
  M_GUEST_ACCESS_FORBIDDEN = { "M_GUEST_ACCESS_FORBIDDEN", 403, "Guest access forbidden" },
  M_CAPTCHA_NEEDED = { "M_CAPTCHA_NEEDED", 400, "Captcha needed" },
  M_CAPTCHA_INVALID = { "M_CAPTCHA_INVALID", 400, "Captcha invalid" },
  M_TOO_LARGE = { "M_TOO_LARGE", 413, "Request too large" },
  M_INVALID_PARAM = { "M_INVALID_PARAM", 400, "Invalid parameter" },
  M_WRONG_ROOM_KEYS_VERSION = { "M_WRONG_ROOM_KEYS_VERSION", 403, "Wrong backup version" },
  M_INVALID_SIGNATURE = { "M_INVALID_SIGNATURE", 400, "Invalid signature" },
  M_MISSING_PARAM = { "M_MISSING_PARAM", 400, "Missing parameter" },
  M_EXCLUSIVE = { "M_EXCLUSIVE", 400, "Namespace reserved by an application service" },
  M_UNKNOWN_DEVICE = { "M_UNKNOWN_DEVICE", 400, "Unknown device" },
  M_URL_NOT_SET = { "M_URL_NOT_SET", 400, "The application service has no url" },
  M_BAD_STATUS = { "M_BAD_STATUS", 502, "The application service answered with an error" },
  M_CONNECTION_FAILED = { "M_CONNECTION_FAILED", 502, "Cannot reach the application service" },
  M_CONNECTION_TIMEOUT = { "M_CONNECTION_TIMEOUT", 504, "The application service did not answer in time" },
  M_CANNOT_LEAVE_SERVER_NOTICE_ROOM = { "M_CANNOT_LEAVE_SERVER_NOTICE_ROOM", 403,
                                        "Cannot leave the server notices room" },
  M_RESOURCE_LIMIT_EXCEEDED = { "M_RESOURCE_LIMIT_EXCEEDED", 403, "Resource limit exceeded" },
  M_WEAK_PASSWORD = { "M_WEAK_PASSWORD", 400, "Password too weak" },
  M_DUPLICATE_ANNOTATION = { "M_DUPLICATE_ANNOTATION", 400, "The same annotation was sent already" },
  M_CANNOT_OVERWRITE_MEDIA = { "M_CANNOT_OVERWRITE_MEDIA", 409, "Media already uploaded" },
  M_NOT_YET_UPLOADED = { "M_NOT_YET_UPLOADED", 504, "Media not yet uploaded" },
  PREVIEW_FAILED = { "M_UNKNOWN", 502, "Cannot fetch the URL" },
  M_THREEPID_IN_USE = { "M_THREEPID_IN_USE", 400, "Third-party identifier already in use" },
  M_THREEPID_NOT_FOUND = { "M_THREEPID_NOT_FOUND", 400, "Third-party identifier not found" },
  M_THREEPID_AUTH_FAILED = { "M_THREEPID_AUTH_FAILED", 401, "Third-party identifier not validated" },
  M_THREEPID_DENIED = { "M_THREEPID_DENIED", 403, "Third-party identifier not allowed" },
  M_THREEPID_MEDIUM_NOT_SUPPORTED = { "M_THREEPID_MEDIUM_NOT_SUPPORTED", 400,
                                      "Third-party identifier medium not supported" },
  M_SERVER_NOT_TRUSTED = { "M_SERVER_NOT_TRUSTED", 400, "Identity server not trusted" },
  IDENTITY_SERVER_FAILED = { "M_UNKNOWN", 502, "The identity server could not be reached" },
}
errors.registry = registry

-- loom's lower-level failure codes (nil, message, code) -> registry name.
-- Codes for which the client is not at fault become M_UNKNOWN (500) and lose
-- their message (it goes to the log, see loom.http.app).
local codes = {
  bad_token = "M_INVALID_PARAM",
  bad_param = "M_INVALID_PARAM",
  missing_param = "M_MISSING_PARAM",
  bad_filter = "M_BAD_JSON",
  bad_event = "M_BAD_JSON",
  bad_regex = "M_INVALID_PARAM",
  bad_base64 = "M_INVALID_PARAM",
  json_syntax = "M_NOT_JSON",
  json_utf8 = "M_NOT_JSON",
  json_depth = "M_NOT_JSON",
  json_size = "M_NOT_JSON",
  json_float = "M_BAD_JSON",
  json_range = "M_BAD_JSON",
  json_dup_key = "M_BAD_JSON",
  json_type = "M_BAD_JSON",
  too_large = "M_TOO_LARGE",
  http_too_large = "M_TOO_LARGE",
  http_bad_request = "BAD_REQUEST",
  not_found = "M_NOT_FOUND",
  missing_event = "M_NOT_FOUND",
  forbidden = "M_FORBIDDEN",
  bad_signature = "M_FORBIDDEN",
  bad_signatures = "M_FORBIDDEN",
  user_in_use = "M_USER_IN_USE",
  user_deactivated = "M_USER_DEACTIVATED",
  invalid_username = "M_INVALID_USERNAME",
  unknown_token = "M_UNKNOWN_TOKEN",
  unsupported_room_version = "M_UNSUPPORTED_ROOM_VERSION",
  missing_state = "M_BAD_STATE",
}
errors.codes = codes

-- In a query parameter (where = "param"), the structural codes become
-- M_INVALID_PARAM: a bad filter query parameter, bad JSON in one.
local param_codes = {
  bad_filter = true, bad_event = true, json_syntax = true, json_utf8 = true, json_depth = true,
  json_size = true, json_float = true, json_range = true, json_dup_key = true, json_type = true,
}

local methods = {}
local mt = {
  __name = "loom.Error",
  __index = methods,
  __tostring = function(e) return e.errcode .. ": " .. e.message end,
}
errors.methods, errors.mt = methods, mt

--- errors.register(name, errcode, status, message): adds a registry entry,
-- for scripts with their own errcodes. Names are the process's, like module
-- names: a name, once registered (the built-in ones included), keeps its
-- meaning, so one server's script cannot change what another server answers.
-- Registering it again with the same errcode and status does nothing; with
-- another, raises.
function errors.register(name, errcode, status, message)
  if type(name) ~= "string" or type(errcode) ~= "string" then
    error("errors.register: name and errcode must be strings", 2)
  end
  if type(status) ~= "number" or status < 400 or status > 599 or status % 1 ~= 0 then
    error("errors.register: status must be an integer 400..599", 2)
  end
  if message ~= nil and type(message) ~= "string" then error("errors.register: message must be a string", 2) end
  local old = registry[name]
  if old then
    if old[1] == errcode and old[2] == status then return end
    error(("errors.register: %s is already %s (%d)"):format(name, old[1], old[2]), 2)
  end
  registry[name] = { errcode, status, message or errcode }
end

--- errors.new(name, [message], [extra]) -> error value.
-- name is a registry name (an unknown one raises: a typo is a bug). extra
-- holds more fields for the JSON body (retry_after_ms, room_version …).
function errors.new(name, message, extra)
  local entry = registry[name]
  if not entry then error("unknown error name " .. tostring(name), 2) end
  if message ~= nil and type(message) ~= "string" then
    error("error message must be a string", 2)
  end
  return setmetatable({
    name = name,
    errcode = entry[1],
    status = entry[2],
    message = message or entry[3],
    extra = extra,
  }, mt)
end

--- errors.is(v) -> true when v is an error value.
function errors.is(v)
  return getmetatable(v) == mt
end

--- errors.from_code(code, message, [where]) -> error value, internal.
-- Maps loom's lower-level codes (bad_token, json_syntax, sqlite_busy …).
-- where = "param" when the failing input was a query or path parameter.
-- The second result is true when the failure is the server's own (500): the
-- message then is a generic one, and the caller logs the original.
function errors.from_code(code, message, where)
  if type(code) ~= "string" then code = "unknown" end
  local name = codes[code]
  if where == "param" and param_codes[code] then name = "M_INVALID_PARAM" end
  if not name then
    return errors.new("M_UNKNOWN"), true
  end
  return errors.new(name, type(message) == "string" and message or nil), false
end

--- err:body() -> the JSON body as a table: errcode, error and the extra fields.
function methods.body(e)
  local b = {}
  if e.extra then
    for k, v in pairs(e.extra) do b[k] = v end
  end
  b.errcode = e.errcode
  b.error = e.message
  return b
end

return errors
