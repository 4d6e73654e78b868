-- loom.api.uia: user-interactive authentication (Client-Server API
-- "User-interactive authentication API") with the one stage loom offers
-- for an existing account, m.login.password: device deletion, cross-signing
-- key replacement, password change and deactivation all go through here.
-- A session is bound to the user and to the request that opened it (method,
-- path and body without `auth`): used for another request, or by another
-- user, it is refused; a completed session is gone.
--
--   local answer, extra = uia.check(hs, req, body)  -- nil, user_id: authenticated, go on
--   if answer then return answer, extra end        -- 401 and its body, or an error value
--
-- req.user_id is the access token's user; it may be nil (POST
-- /account/password without a token), and then the auth's identifier names
-- the user. The open sessions live on the homeserver context
-- (hs.uia_sessions), at most MAX_SESSIONS of them (all are dropped when full).
local core = require "loom.core"
local errors = require "loom.http.errors"
local ljson = require "loom.json"

local json = core.json
local pairs, type, error, pcall = pairs, type, error, pcall
local table_concat = table.concat

local _ENV = nil -- luacheck: ignore 211

local uia = {}

local MAX_SESSIONS = 10000
local MAX_PASSWORD = 512
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

-- A new session bound to `bound` ({ user_id, key }): its ID.
local function open(sessions, bound)
  local session = new_session()
  if sessions.n >= MAX_SESSIONS then sessions.map, sessions.n = {}, 0 end
  sessions.map[session] = bound
  sessions.n = sessions.n + 1
  return session
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

local function is_local(hs, user_id)
  return type(user_id) == "string" and user_id:match("^@[^:]+:(.+)$") == hs.server_name
end

--- The local user ID that login fields name (POST /login's body, or an
-- m.login.password auth): identifier { type = "m.id.user", user } or the
-- legacy top-level `user`; a localpart or a user ID, in any case. Raises an
-- error value: M_BAD_JSON, M_MISSING_PARAM (no user named), BAD_REQUEST
-- (another identifier type, third-party identifiers), M_FORBIDDEN (a user
-- of another server, an overlong name).
function uia.identify(hs, fields)
  local name
  local ident = fields.identifier
  if ident ~= nil and ident ~= json.null then
    if not ljson.is_object(ident) then error(errors.new("M_BAD_JSON", "identifier must be an object")) end
    if ident.type ~= "m.id.user" then error(errors.new("BAD_REQUEST", "Unknown login identifier type")) end
    name = ident.user
    if name == nil or name == json.null then error(errors.new("M_MISSING_PARAM", "identifier.user is required")) end
    if type(name) ~= "string" then error(errors.new("M_BAD_JSON", "identifier.user must be a string")) end
  else
    name = fields.user
    if name == nil or name == json.null then
      if fields.medium ~= nil or fields.address ~= nil then
        error(errors.new("BAD_REQUEST", "Third-party identifiers are not supported"))
      end
      error(errors.new("M_MISSING_PARAM", "identifier is required"))
    end
    if type(name) ~= "string" then error(errors.new("M_BAD_JSON", "user must be a string")) end
  end
  if #name > 255 then error(errors.new("M_FORBIDDEN", "Invalid username or password")) end
  -- localparts are registered in lower case; accept any case
  if name:sub(1, 1) == "@" then
    name = name:gsub("^@([^:]*)", function(lp) return "@" .. lp:lower() end)
  else
    name = name:lower()
  end
  local user_id = hs.accounts:user_id(name)
  if not is_local(hs, user_id) then error(errors.new("M_FORBIDDEN", "Invalid username or password")) end
  return user_id
end

--- nil and the authenticated user ID when the request carries a passing
-- m.login.password stage (of a session this request opened, or without a
-- session); otherwise what to answer:
-- * 401 with the flows and a session: without auth (a new session); when
--   the stage failed (errcode M_UNRECOGNIZED for another auth type,
--   M_FORBIDDEN for a wrong password or, inside a session, a user other
--   than the session's);
-- * an error value: the session of another request or user, or (without a
--   session) credentials of a user other than the token's: 403 M_FORBIDDEN;
--   an unknown or used-up session: 400 M_INVALID_PARAM; auth or
--   auth.session of the wrong type: 400 M_BAD_JSON; no user named and no
--   token: 400 M_MISSING_PARAM; a deactivated account: 403 M_USER_DEACTIVATED.
function uia.check(hs, req, body)
  local sessions = sessions_of(hs)
  local key = request_key(req, body)
  local owner = req.user_id
  local auth = body.auth
  if auth == nil or auth == json.null then
    return challenge(open(sessions, { user_id = owner, key = key }))
  end
  if not ljson.is_object(auth) then return errors.new("M_BAD_JSON", "auth must be an object") end
  local session = auth.session
  if session == json.null then session = nil end
  if session ~= nil then
    if type(session) ~= "string" then return errors.new("M_BAD_JSON", "auth.session must be a string") end
    local bound = sessions.map[session]
    if not bound then return errors.new("M_INVALID_PARAM", "Unknown session") end
    if bound.key ~= key or (bound.user_id and owner and bound.user_id ~= owner) then
      return errors.new("M_FORBIDDEN", "Requested operation has changed during the UI authentication session")
    end
    owner = owner or bound.user_id
  end
  -- a failed stage: the challenge again, with the session (a new one when
  -- the request came without)
  local function failed(errcode, message)
    session = session or open(sessions, { user_id = owner, key = key })
    return challenge(session, { errcode = errcode, error = message })
  end
  if auth.type ~= "m.login.password" then return failed("M_UNRECOGNIZED", "Unsupported authentication type") end
  local ok, named = pcall(uia.identify, hs, auth)
  if not ok then
    if not errors.is(named) then error(named, 0) end
    -- without an identifier the auth is for the token's (or session's) user
    if not owner or named.errcode ~= "M_MISSING_PARAM" then return named end
    named = owner
  end
  if owner and named ~= owner then
    if session then return failed("M_FORBIDDEN", "Invalid username or password") end
    return errors.new("M_FORBIDDEN", "The authentication is for another user")
  end
  local password = auth.password
  if type(password) ~= "string" or #password > MAX_PASSWORD then password = nil end
  local pok, perr, pcode = hs.accounts:verify_password(named, password)
  if not pok then
    if pcode == "user_deactivated" then return hs:error(perr, pcode) end
    return failed("M_FORBIDDEN", "Invalid username or password")
  end
  if session then
    sessions.map[session] = nil
    sessions.n = sessions.n - 1
  end
  return nil, named
end

return uia
