-- loom.api.client.account: the account endpoints of the Client-Server API —
-- capabilities, login, register (user-interactive, m.login.dummy), logout,
-- whoami, profile and push rules. See docs/api-client-account.md.
--
--   account.routes  --> { { "GET", "/_matrix/client/v3/capabilities", handler, auth = true }, ... }
--   (loom.api.install registers them; a handler is function(hs, req))
--
-- Profile changes send a new m.room.member event to every room the user
-- is joined to (hs.rooms:send).
local core = require "loom.core"
local errors = require "loom.http.errors"
local version = require "loom.room.version"
local ljson = require "loom.json"
local fed_query = require "loom.federation.query"
local uia = require "loom.api.uia"
local as_api = require "loom.api.client.appservice"

local json = core.json
local pairs, ipairs, type, tostring, error = pairs, ipairs, type, tostring, error
local table = table

local _ENV = nil -- luacheck: ignore 211

local account_api = {}

local V3 = "/_matrix/client/v3"

-- Limits on what clients may store (Synapse's, for the same reasons).
local MAX_DISPLAYNAME = 256
local MAX_AVATAR_URL = 1000
local MAX_PASSWORD = 512
local MAX_DEVICE_ID = 255
local MAX_SESSIONS = 10000

local function random_string(n)
  local alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
  local bytes = core.crypto.random_bytes(n)
  local out = {}
  for i = 1, n do
    local k = bytes:byte(i) % #alphabet + 1
    out[i] = alphabet:sub(k, k)
  end
  return table.concat(out)
end
account_api.random_string = random_string

-- A string field of a JSON body: the value, or nil when absent (json.null
-- counts as absent), or raises M_BAD_JSON when it has another type.
local function opt_string(body, key, max)
  local v = body[key]
  if v == nil or v == json.null then return nil end
  if type(v) ~= "string" then error(errors.new("M_BAD_JSON", key .. " must be a string")) end
  if max and #v > max then error(errors.new("M_INVALID_PARAM", key .. " is longer than " .. max .. " bytes")) end
  return v
end

local function is_local(hs, user_id)
  return type(user_id) == "string" and user_id:match("^@[^:]+:(.+)$") == hs.server_name
end

---------------------------------------------------------------------------
-- capabilities

local function capabilities(hs)
  return {
    capabilities = {
      ["m.room_versions"] = {
        default = hs.config.default_room_version or version.DEFAULT,
        available = version.available(),
      },
      ["m.change_password"] = { enabled = true },
      ["m.set_displayname"] = { enabled = true },
      ["m.set_avatar_url"] = { enabled = true },
      ["m.3pid_changes"] = { enabled = false },
    },
  }
end

---------------------------------------------------------------------------
-- login

local function login(hs, req)
  local body = req:json()
  local ltype = body.type
  if ltype == nil then return errors.new("M_MISSING_PARAM", "type is required") end
  if ltype == "m.login.application_service" then return as_api.login(hs, req, body, uia.identify(hs, body)) end
  if ltype ~= "m.login.password" then return errors.new("BAD_REQUEST", "Unknown login type") end
  local user_id = uia.identify(hs, body)
  local password = opt_string(body, "password")
  if not password then return errors.new("M_MISSING_PARAM", "password is required") end
  local device_id = opt_string(body, "device_id", MAX_DEVICE_ID)
  local display = opt_string(body, "initial_device_display_name", MAX_DISPLAYNAME)
  local ok, err, code = hs.accounts:verify_password(user_id, password)
  if not ok then return hs:error(err, code) end
  local denied = hs:check("login/check", { user_id = user_id, device_id = device_id, type = ltype })
  if denied then return denied end
  local r
  r, err, code = hs.accounts:issue_token(user_id, device_id, display)
  if not r then return hs:error(err, code) end
  return {
    user_id = r.user_id,
    access_token = r.access_token,
    device_id = r.device_id,
    home_server = hs.server_name,
    well_known = hs.server:well_known(),
  }
end

---------------------------------------------------------------------------
-- register (user-interactive authentication with m.login.dummy)

local FLOWS = { { stages = { "m.login.dummy" } } }

local function uia_challenge(sessions, session, extra)
  session = session or random_string(24)
  if not sessions.map[session] then
    if sessions.n >= MAX_SESSIONS then sessions.map, sessions.n = {}, 0 end
    sessions.map[session] = true
    sessions.n = sessions.n + 1
  end
  local body = { flows = json.array(FLOWS), params = {}, session = session }
  for k, v in pairs(extra or {}) do body[k] = v end
  return 401, body
end

-- The /register answer for a new account: its first device and access token.
local function registered(hs, user_id, device_id, display)
  local r, err, code = hs.accounts:issue_token(user_id, device_id, display)
  if not r then return hs:error(err, code) end
  return { user_id = user_id, access_token = r.access_token, device_id = r.device_id,
    home_server = hs.server_name }
end

-- POST /register?kind=guest: a guest account (no password, no UIA), when
-- config.allow_guest_access (before enable_registration, as in Synapse).
local function register_guest(hs, req)
  if hs.config.allow_guest_access ~= true then
    return errors.new("M_GUEST_ACCESS_FORBIDDEN", "Guest access is disabled")
  end
  local body = req:json()
  local display = opt_string(body, "initial_device_display_name", MAX_DISPLAYNAME)
  local device_id = opt_string(body, "device_id", MAX_DEVICE_ID)
  local localpart
  for _ = 1, 10 do
    localpart = random_string(12)
    if hs.accounts:available(localpart) then break end
  end
  local denied = hs:check("register/check", { user_id = hs.accounts:user_id(localpart), localpart = localpart,
    kind = "guest", device_id = device_id, initial_device_display_name = display })
  if denied then return denied end
  local user_id, err, code = hs.accounts:register(localpart, nil, { guest = true })
  if not user_id then return hs:error(err, code) end
  hs.server:log("info", "registered guest %s", user_id)
  return registered(hs, user_id, device_id, display)
end

-- The guest account a /register body's guest_access_token names (the
-- upgrade of a guest to a full account): user_id, or nil and an error.
local function guest_of(hs, body)
  local token = opt_string(body, "guest_access_token")
  if not token then return nil end
  local user_id, _, is_guest = hs.accounts:authenticate(token)
  if not user_id then return nil, errors.new("M_UNKNOWN_TOKEN", "Unknown guest access token") end
  if not is_guest then return nil, errors.new("M_FORBIDDEN", "guest_access_token is not a guest's") end
  return user_id
end

local function register(hs, req)
  local sessions = hs.register_sessions -- this homeserver's open UIA sessions
  local kind = req:arg("kind", "user")
  if kind == "guest" then return register_guest(hs, req) end
  if hs.config.enable_registration == false then
    return errors.new("M_FORBIDDEN", "Registration is disabled on this server")
  end
  if kind ~= "user" then return errors.new("M_INVALID_PARAM", "kind must be user or guest") end
  local body = req:json()
  -- an application service registers users in its namespaces (no UIA)
  if body.type == "m.login.application_service" or as_api.has_service_token(hs, req) then
    return as_api.register(hs, req, body)
  end
  local username = opt_string(body, "username")
  local guest_id, gerr = guest_of(hs, body)
  if gerr then return gerr end
  if guest_id then
    -- the spec: the username is the guest's own localpart
    if not username then return errors.new("M_MISSING_PARAM", "username is required with guest_access_token") end
    if hs.accounts:user_id(username:lower()) ~= guest_id then
      return errors.new("M_FORBIDDEN", "username must be the guest's own localpart")
    end
  end
  local password = opt_string(body, "password")
  if password and #password > MAX_PASSWORD then
    return errors.new("M_INVALID_PARAM", "password is longer than " .. MAX_PASSWORD .. " bytes")
  end
  local device_id = opt_string(body, "device_id", MAX_DEVICE_ID)
  local display = opt_string(body, "initial_device_display_name", MAX_DISPLAYNAME)
  local inhibit = body.inhibit_login
  if inhibit ~= nil and inhibit ~= json.null and type(inhibit) ~= "boolean" then
    return errors.new("M_BAD_JSON", "inhibit_login must be a boolean")
  end
  if username and not guest_id then
    username = username:lower()
    local ok, err, code = hs.accounts:available(username)
    if not ok then return hs:error(err, code) end
    local reserved = as_api.exclusive(hs, "users", ok)
    if reserved then return reserved end
  end
  -- user-interactive authentication: the only stage is m.login.dummy
  local auth = body.auth
  if auth == nil or auth == json.null then return uia_challenge(sessions) end
  if not ljson.is_object(auth) then return errors.new("M_BAD_JSON", "auth must be an object") end
  local session = auth.session
  if session ~= nil and type(session) ~= "string" then
    return errors.new("M_BAD_JSON", "auth.session must be a string")
  end
  if auth.type ~= "m.login.dummy" then
    return uia_challenge(sessions, session, { completed = json.array(),
      errcode = "M_UNRECOGNIZED", error = "Unsupported authentication type" })
  end
  if session then sessions.map[session] = nil end
  if guest_id then
    local ok, err, code = hs.accounts:upgrade_guest(guest_id, password)
    if not ok then return hs:error(err, code) end
    hs.server:log("info", "guest %s upgraded to a full account", guest_id)
    if inhibit then return { user_id = guest_id } end
    return registered(hs, guest_id, device_id, display)
  end
  -- register
  local localpart = username
  if not localpart then
    for _ = 1, 10 do
      localpart = random_string(12)
      if hs.accounts:available(localpart) then break end
    end
  end
  local denied = hs:check("register/check", { user_id = hs.accounts:user_id(localpart), localpart = localpart,
    kind = kind, device_id = device_id, initial_device_display_name = display })
  if denied then return denied end
  local user_id, err, code = hs.accounts:register(localpart, password)
  if not user_id then return hs:error(err, code) end
  hs.server:log("info", "registered %s", user_id)
  if inhibit then return { user_id = user_id } end
  return registered(hs, user_id, device_id, display)
end

-- The token's user when the request has a token (a bad token is an error),
-- else nil: these endpoints take an optional access token.
local function optional_user(hs, req)
  local h = req:header("Authorization")
  if h == nil and req:arg("access_token") == nil then return true end
  local user_id, device_id, token, is_guest = hs:authenticate(req)
  if not user_id then return nil, device_id end
  if is_guest then return nil, errors.new("M_GUEST_ACCESS_FORBIDDEN", "Guest access is not allowed here") end
  req.user_id, req.device_id, req.access_token = user_id, device_id, token
  return true
end

local function change_password(hs, req)
  local ok, aerr = optional_user(hs, req)
  if not ok then return aerr end
  local body = req:json()
  local new_password = body.new_password
  if new_password == nil or new_password == json.null then
    return errors.new("M_MISSING_PARAM", "new_password is required")
  end
  if type(new_password) ~= "string" then return errors.new("M_BAD_JSON", "new_password must be a string") end
  if #new_password > MAX_PASSWORD then
    return errors.new("M_INVALID_PARAM", "new_password is longer than " .. MAX_PASSWORD .. " bytes")
  end
  local logout_devices = body.logout_devices
  if logout_devices == nil or logout_devices == json.null then logout_devices = true end
  if type(logout_devices) ~= "boolean" then return errors.new("M_BAD_JSON", "logout_devices must be a boolean") end
  local answer, user_id = uia.check(hs, req, body)
  if answer then return answer, user_id end
  hs.accounts:set_password(user_id, new_password)
  if logout_devices then
    -- the requesting device keeps working; without a token every device goes
    hs.accounts:logout_others(user_id, req.device_id, req.access_token)
  end
  hs.server:log("info", "password of %s changed", user_id)
  return {}
end

-- Leave (or refuse) every room the user is in, through the room service.
local function leave_all_rooms(hs, user_id)
  for _, membership in ipairs { "join", "invite", "knock" } do
    for _, room_id in ipairs(hs.store:rooms_for_user(user_id, membership)) do
      local ev, err, code = hs.rooms:send(room_id, { type = "m.room.member", state_key = user_id,
        sender = user_id, content = { membership = "leave" } })
      if not ev then
        hs.server:log("warn", "deactivating %s: cannot leave %s: %s (%s)", user_id, room_id,
          tostring(err), tostring(code))
      end
    end
  end
end

--- Deactivate a local account for good (the user's own request, or the
-- admin API): it leaves every room, its devices and their keys go, then
-- the account is marked deactivated with its profile erased.
function account_api.deactivate_account(hs, user_id)
  -- the membership events go out first: they carry the profile as it was,
  -- and the user's own token must not be needed by the room service
  leave_all_rooms(hs, user_id)
  -- every device's keys go with the devices (their device list changes)
  local ids = {}
  for _, d in ipairs(hs.store:user_devices(user_id)) do ids[#ids + 1] = d.device_id end
  if #ids > 0 then hs.store:delete_devices(user_id, ids) end
  hs.accounts:deactivate(user_id)
  hs.server:log("info", "deactivated %s", user_id)
end

local function deactivate(hs, req)
  local ok, aerr = optional_user(hs, req)
  if not ok then return aerr end
  local body = req:json()
  local erase = body.erase
  if erase ~= nil and erase ~= json.null and type(erase) ~= "boolean" then
    return errors.new("M_BAD_JSON", "erase must be a boolean")
  end
  if body.id_server ~= nil and body.id_server ~= json.null and type(body.id_server) ~= "string" then
    return errors.new("M_BAD_JSON", "id_server must be a string")
  end
  local answer, user_id = uia.check(hs, req, body)
  if answer then return answer, user_id end
  account_api.deactivate_account(hs, user_id)
  return { id_server_unbind_result = "no-support" }
end

local function threepids()
  return { threepids = json.array() }
end

local function register_available(hs, req)
  if hs.config.enable_registration == false then
    return errors.new("M_FORBIDDEN", "Registration is disabled on this server")
  end
  local username = req:arg("username")
  if not username or username == "" then return errors.new("M_MISSING_PARAM", "username is required") end
  local ok, err, code = hs.accounts:available(username:lower())
  if not ok then return hs:error(err, code) end
  local reserved = as_api.exclusive(hs, "users", ok)
  if reserved then return reserved end
  return { available = true }
end

---------------------------------------------------------------------------
-- logout, whoami

local function logout(hs, req, all)
  local ids = { req.device_id }
  if all then
    for i, d in ipairs(hs.store:user_devices(req.user_id)) do ids[i] = d.device_id end
  end
  local ok, err, code = hs.accounts:logout(req.access_token, all)
  if not ok then return hs:error(err, code) end
  -- the devices' keys go too (a device-list change for those who track it)
  hs.store:delete_devices(req.user_id, ids)
  return {}
end

local function whoami(_, req)
  return { user_id = req.user_id, device_id = req.device_id, is_guest = req.is_guest == true }
end

---------------------------------------------------------------------------
-- profile

local PROFILE_FIELDS = { displayname = MAX_DISPLAYNAME, avatar_url = MAX_AVATAR_URL }

local function profile_of(hs, user_id)
  if not is_local(hs, user_id) then return nil end
  local u = hs.accounts:user(user_id)
  if not u or u.deactivated then return nil end
  return u
end

-- A user of another server: that server's answer (GET /query/profile), or
-- nil when the ID is not a remote user's (then it is not found).
local function remote_profile(hs, user_id, field)
  if not hs.federation_on or is_local(hs, user_id) or type(user_id) ~= "string" or #user_id > 255
      or not user_id:match("^@[^:]+:[^:]+") then
    return nil
  end
  local p, err = fed_query.profile(hs, user_id, field)
  return p or err
end

-- A local user not (yet) registered, in an application service's
-- namespace: the service is asked (it may create the user); then read again.
local function profile_or_query(hs, user_id)
  local u = profile_of(hs, user_id)
  if u or not is_local(hs, user_id) or not hs.appservices or not hs.accounts:available(user_id) then return u end
  if hs.appservices:query_user(user_id) then return profile_of(hs, user_id) end
  return nil
end

local function get_profile(hs, req)
  local remote = remote_profile(hs, req.params.userId)
  if remote then return remote end
  local u = profile_or_query(hs, req.params.userId)
  if not u then return errors.new("M_NOT_FOUND", "Profile not found") end
  return { displayname = u.displayname, avatar_url = u.avatar_url }
end

local function get_field(hs, req, field)
  local remote = remote_profile(hs, req.params.userId, field)
  if remote then return remote end
  local u = profile_or_query(hs, req.params.userId)
  if not u then return errors.new("M_NOT_FOUND", "Profile not found") end
  return { [field] = u[field] }
end

-- A new m.room.member event in every room the user is joined to, with the
-- profile as it is now. Failures are logged: the profile change stands.
local function update_memberships(hs, user_id, profile)
  local rooms, err = hs.store:rooms_for_user(user_id, "join")
  if not rooms then
    hs.server:log("warn", "profile of %s: cannot list rooms: %s", user_id, tostring(err))
    return
  end
  for _, room_id in ipairs(rooms) do
    local current = hs.rooms:state_event(room_id, "m.room.member", user_id)
    local content = {}
    if current and type(current.content) == "table" then
      for k, v in pairs(current.content) do content[k] = v end
    end
    content.membership = "join"
    content.displayname = profile.displayname
    content.avatar_url = profile.avatar_url
    local ev, serr, scode = hs.rooms:send(room_id, { type = "m.room.member", state_key = user_id,
      sender = user_id, content = content })
    if not ev then
      hs.server:log("warn", "profile of %s: member event in %s failed: %s (%s)", user_id, room_id,
        tostring(serr), tostring(scode))
    end
  end
end

--- Set a profile field of a local user (value: a string, or json.null to
-- clear) and, when it changed, send the new m.room.member event to every
-- room the user is joined to. true, or nil, message, code.
function account_api.set_profile_field(hs, user_id, field, value)
  local u = hs.accounts:user(user_id)
  if not u then return nil, "Profile not found", "not_found" end
  local ok, err, code = hs.accounts:set_profile(user_id, field, value)
  if not ok then return nil, err, code end
  if u[field] ~= (type(value) == "string" and value or nil) then
    update_memberships(hs, user_id, hs.accounts:user(user_id))
  end
  return true
end
account_api.PROFILE_FIELDS = PROFILE_FIELDS

local function put_field(hs, req, field)
  local max = PROFILE_FIELDS[field]
  local user_id = req.params.userId
  if user_id ~= req.user_id then
    return errors.new("M_FORBIDDEN", "You cannot change another user's profile")
  end
  local body = req:json()
  local value = body[field]
  if value == nil then return errors.new("M_MISSING_PARAM", field .. " is required") end
  if value ~= json.null and type(value) ~= "string" then
    return errors.new("M_BAD_JSON", field .. " must be a string")
  end
  if type(value) == "string" and #value > max then
    return errors.new("M_INVALID_PARAM", field .. " is longer than " .. max .. " bytes")
  end
  if value == "" and field == "avatar_url" then value = json.null end
  local u = hs.accounts:user(user_id)
  if not u then return errors.new("M_NOT_FOUND", "Profile not found") end
  local denied = hs:check("profile/check", { user_id = user_id, field = field,
    value = type(value) == "string" and value or nil })
  if denied then return denied end
  local ok, err, code = hs.accounts:set_profile(user_id, field, value)
  if not ok then return hs:error(err, code) end
  if u[field] ~= (type(value) == "string" and value or nil) then
    update_memberships(hs, user_id, hs.accounts:user(user_id))
  end
  return {}
end

---------------------------------------------------------------------------

--- The account endpoints: { method, path, handler(hs, req), auth = bool },
-- installed by loom.api.install.
local function login_flows(hs)
  local flows = json.array { { type = "m.login.password" } }
  if hs.appservices and #hs.appservices.services > 0 then flows[2] = { type = "m.login.application_service" } end
  return { flows = flows }
end

local routes = {
  { "GET", V3 .. "/capabilities", capabilities, auth = true },
  { "GET", V3 .. "/login", login_flows, auth = false },
  { "POST", V3 .. "/login", login, auth = false },
  { "POST", V3 .. "/register", register, auth = false },
  { "GET", V3 .. "/register/available", register_available, auth = false },
  { "POST", V3 .. "/logout", function(hs, req) return logout(hs, req, false) end, auth = true },
  { "POST", V3 .. "/logout/all", function(hs, req) return logout(hs, req, true) end, auth = true },
  { "GET", V3 .. "/account/whoami", whoami, auth = true },
  { "POST", V3 .. "/account/password", change_password, auth = false },   -- token optional
  { "POST", V3 .. "/account/deactivate", deactivate, auth = false },      -- token optional
  { "GET", V3 .. "/account/3pid", threepids, auth = true },
  { "GET", V3 .. "/profile/{userId}", get_profile, auth = false },
}
for field in pairs(PROFILE_FIELDS) do
  routes[#routes + 1] = { "GET", V3 .. "/profile/{userId}/" .. field,
    function(hs, req) return get_field(hs, req, field) end, auth = false }
  routes[#routes + 1] = { "PUT", V3 .. "/profile/{userId}/" .. field,
    function(hs, req) return put_field(hs, req, field) end, auth = true }
end
account_api.routes = routes

return account_api
