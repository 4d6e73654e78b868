-- loom.api.uia: user-interactive authentication (Client-Server API
-- "User-interactive authentication API") for an endpoint of a logged-in
-- user, with the one stage loom offers, m.login.password. A session is
-- bound to the user and to the request that opened it (method, path and
-- body without `auth`): used for another request, or by another user, it
-- is refused; a completed session is gone.
--
--   local answer, extra = uia.check(hs, req, body)   -- nil: authenticated, go on
--   if answer then return answer, extra end         -- 401 and its body, or an error value
--
-- The open sessions live on the homeserver context (hs.uia_sessions), at
-- most MAX_SESSIONS of them (the oldest set is dropped when full).
local core = require "loom.core"
local errors = require "loom.http.errors"
local ljson = require "loom.json"

local json = core.json
local pairs, type, tostring = pairs, type, tostring
local table_concat = table.concat

local _ENV = nil -- luacheck: ignore 211

local uia = {}

local MAX_SESSIONS = 10000
local FLOWS = { { stages = { "m.login.password" } } }

local function new_session()
  local bytes = core.crypto.random_bytes(18)
  return (core.crypto.base64_encode(bytes, true):gsub("[-_]", "x"))
end

local function sessions_of(hs)
  local s = hs.uia_sessions
  if not s then s = { map = {}, n = 0 }; hs.uia_sessions = s end
  return s
end

-- What the session is bound to: the request without its auth.
local function request_key(req, body)
  local rest = {}
  for k, v in pairs(body) do if k ~= "auth" then rest[k] = v end end
  local text = json.encode(rest, { floats = true }) or ""
  return table_concat({ req.method or "", req.path or "", text }, "\n")
end

local function challenge(session, extra)
  local out = { flows = json.array(FLOWS), params = {}, session = session, completed = json.array() }
  for k, v in pairs(extra or {}) do out[k] = v end
  return 401, out
end

--- nil when the request carries a completed m.login.password stage of a
-- session this request opened; otherwise what to answer: 401 with the
-- flows and a session (a new one when auth is absent; errcode set when a
-- stage failed), or an error value (a session of another request or user:
-- 403 M_FORBIDDEN; an unknown session: 400 M_INVALID_PARAM).
function uia.check(hs, req, body)
  local sessions = sessions_of(hs)
  local key = request_key(req, body)
  local auth = body.auth
  if auth == nil or auth == json.null then
    local session = new_session()
    if sessions.n >= MAX_SESSIONS then sessions.map, sessions.n = {}, 0 end
    sessions.map[session] = { user_id = req.user_id, key = key }
    sessions.n = sessions.n + 1
    return challenge(session)
  end
  if not ljson.is_object(auth) then return errors.new("M_BAD_JSON", "auth must be an object") end
  local session = auth.session
  if type(session) ~= "string" then return errors.new("M_MISSING_PARAM", "auth.session is required") end
  local s = sessions.map[session]
  if not s then return errors.new("M_INVALID_PARAM", "Unknown session") end
  if s.user_id ~= req.user_id or s.key ~= key then
    return errors.new("M_FORBIDDEN", "Requested operation has changed during the UI authentication session")
  end
  if auth.type ~= "m.login.password" then
    return challenge(session, { errcode = "M_UNRECOGNIZED", error = "Unsupported authentication type" })
  end
  -- the identifier, when given, names the user of the access token
  local ident = auth.identifier
  local name = auth.user
  if ljson.is_object(ident) then
    if ident.type ~= "m.id.user" then
      return challenge(session, { errcode = "M_UNRECOGNIZED", error = "Unknown login identifier type" })
    end
    name = ident.user
  end
  if name ~= nil and (type(name) ~= "string" or hs.accounts:user_id(name) ~= req.user_id) then
    return challenge(session, { errcode = "M_FORBIDDEN", error = "Invalid username or password" })
  end
  local password = auth.password
  if type(password) ~= "string" or #password > 512
      or not hs.accounts:verify_password(req.user_id, password) then
    return challenge(session, { errcode = "M_FORBIDDEN", error = "Invalid username or password" })
  end
  sessions.map[session] = nil
  sessions.n = sessions.n - 1
  return nil, tostring(session)
end

return uia
