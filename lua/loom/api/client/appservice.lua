-- loom.api.client.appservice: the Client-Server API's application service
-- extensions (Application Service API, "Client-Server API Extensions"):
--
--   POST /_matrix/client/v1/appservice/{appserviceId}/ping
--   POST /register and /login with type m.login.application_service (through
--        loom.api.client.account, which calls register / login here)
--   GET  /thirdparty/protocols, /thirdparty/protocol/{protocol},
--        /thirdparty/location[/{protocol}], /thirdparty/user[/{protocol}]
--        (passed on to the services that list the protocol)
--
-- and what other endpoints ask: exclusive(hs, kind, value, svc) is the
-- M_EXCLUSIVE error for a user ID or alias inside another's exclusive
-- namespace (nil when allowed). Registration and login need the service's
-- as_token (401 M_MISSING_TOKEN / M_UNKNOWN_TOKEN otherwise) and a user in
-- its namespaces (400 M_EXCLUSIVE otherwise); they take no password and no
-- user-interactive authentication.
local core = require "loom.core"
local errors = require "loom.http.errors"
local ljson = require "loom.json"
local appservice = require "loom.appservice"

local json = core.json
local type, ipairs, pairs, tostring, pcall, math_floor = type, ipairs, pairs, tostring, pcall, math.floor
local table_sort, table_concat = table.sort, table.concat

local _ENV = nil -- luacheck: ignore 211

local as_api = {}

local V1, V3 = "/_matrix/client/v1", "/_matrix/client/v3"

local function bearer(req)
  local h = req:header("Authorization")
  local token
  if type(h) == "string" then token = h:match("^[Bb]earer%s+(%S+)%s*$") end
  return token or req:arg("access_token")
end

--- The service whose as_token the request carries: svc, or nil and the 401
-- error (M_MISSING_TOKEN without a token, M_UNKNOWN_TOKEN for another one).
function as_api.service_of(hs, req)
  local token = bearer(req)
  if not token then return nil, errors.new("M_MISSING_TOKEN", "Missing application service token") end
  local svc = hs.appservices and hs.appservices:by_token(token)
  if not svc then return nil, errors.new("M_UNKNOWN_TOKEN", "Unknown application service token") end
  return svc
end

--- Is there an application service token on the request?
function as_api.has_service_token(hs, req)
  local token = bearer(req)
  return token ~= nil and hs.appservices ~= nil and hs.appservices:by_token(token) ~= nil
end

--- The M_EXCLUSIVE error when value (kind "users": a user ID; "aliases": a
-- room alias) lies in an exclusive namespace of a service other than svc,
-- else nil.
function as_api.exclusive(hs, kind, value, svc)
  local reg = hs.appservices
  if not reg or type(value) ~= "string" then return nil end
  local owner
  if kind == "users" then owner = reg:exclusive_user(value) else owner = reg:exclusive_alias(value) end
  if owner and owner ~= svc then
    return errors.new("M_EXCLUSIVE", (kind == "users" and "This user ID" or "This room alias")
      .. " is reserved by an application service")
  end
  return nil
end

-- A service's JSON answer when it is a 200 with an object (want "object")
-- or an array (want "array"), else nil.
local function answer(res, want)
  if not res or res.status ~= 200 or type(res.body) ~= "string" then return nil end
  local ok, v = pcall(json.decode, res.body)
  if not ok then return nil end
  if want == "object" and ljson.is_object(v) then return v end
  if want == "array" and ljson.is_array(v) then return v end
  return nil
end

local function opt_string(body, key)
  local v = body[key]
  if type(v) == "string" and v ~= "" then return v end
  return nil
end

--- POST /register with type m.login.application_service.
function as_api.register(hs, req, body)
  local svc, err = as_api.service_of(hs, req)
  if not svc then return err end
  local username = opt_string(body, "username")
  if not username then return errors.new("M_MISSING_PARAM", "username is required") end
  local user_id = hs.accounts:user_id(username:lower())
  if not hs.appservices:is_user(svc, user_id) then
    return errors.new("M_EXCLUSIVE", "The user ID is not in the application service's namespaces")
  end
  local other = as_api.exclusive(hs, "users", user_id, svc)
  if other then return other end
  local localpart = user_id:match("^@([^:]+):")
  local denied = hs:check("register/check", { user_id = user_id, localpart = localpart, kind = "user",
    appservice = svc.id })
  if denied then return denied end
  local ok, rerr, code = hs.accounts:register(localpart, nil)
  if not ok then return hs:error(rerr, code) end
  hs.server:log("info", "registered %s for application service %s", user_id, svc.id)
  local inhibit = body.inhibit_login
  if inhibit ~= nil and inhibit ~= json.null and type(inhibit) ~= "boolean" then
    return errors.new("M_BAD_JSON", "inhibit_login must be a boolean")
  end
  if inhibit then return { user_id = user_id } end
  local device_id = opt_string(body, "device_id")
  local r
  r, rerr, code = hs.accounts:issue_token(user_id, device_id, opt_string(body, "initial_device_display_name"))
  if not r then return hs:error(rerr, code) end
  return { user_id = user_id, access_token = r.access_token, device_id = r.device_id, home_server = hs.server_name }
end

--- POST /login with type m.login.application_service.
function as_api.login(hs, req, body, user_id)
  local svc, err = as_api.service_of(hs, req)
  if not svc then return err end
  if not hs.appservices:is_user(svc, user_id) then
    return errors.new("M_EXCLUSIVE", "The user ID is not in the application service's namespaces")
  end
  local row = hs.accounts:user(user_id)
  if not row or row.deactivated then return errors.new("M_FORBIDDEN", "Invalid user") end
  local r, rerr, code = hs.accounts:issue_token(user_id, opt_string(body, "device_id"),
    opt_string(body, "initial_device_display_name"))
  if not r then return hs:error(rerr, code) end
  return { user_id = r.user_id, access_token = r.access_token, device_id = r.device_id,
    home_server = hs.server_name, well_known = hs.server:well_known() }
end

-- POST /appservice/{appserviceId}/ping
local function ping(hs, req)
  local svc, err = as_api.service_of(hs, req)
  if not svc then return err end
  if svc.id ~= req.params.appserviceId then
    return errors.new("M_FORBIDDEN", "The token is not that application service's")
  end
  local body = req:json()
  local txn = body.transaction_id
  if txn ~= nil and txn ~= json.null and type(txn) ~= "string" then
    return errors.new("M_BAD_JSON", "transaction_id must be a string")
  end
  if txn == json.null then txn = nil end
  local ms, perr = hs.appservices:ping(svc, txn)
  if ms then return { duration_ms = math_floor(ms) } end
  local e = perr
  if e.errcode == "M_URL_NOT_SET" then
    return errors.new("M_URL_NOT_SET", "The application service has no url")
  elseif e.errcode == "M_CONNECTION_TIMEOUT" then
    return errors.new("M_CONNECTION_TIMEOUT", "The application service did not answer in time")
  elseif e.errcode == "M_BAD_STATUS" then
    return errors.new("M_BAD_STATUS", "The application service answered with status " .. tostring(e.status),
      { status = e.status, body = e.body })
  end
  return errors.new("M_CONNECTION_FAILED", "Cannot reach the application service")
end

-- /thirdparty/*: the services listing the protocol, asked in turn.
local function services_with(hs, protocol)
  local out = {}
  for _, s in ipairs(hs.appservices and hs.appservices.services or {}) do
    for _, p in ipairs(s.protocols) do
      if p == protocol and s.endpoint then out[#out + 1] = s; break end
    end
  end
  return out
end

local function query_string(req)
  local parts = {}
  for k, list in pairs(req.args) do
    if k ~= "access_token" and k ~= "user_id" then
      for _, v in ipairs(list) do parts[#parts + 1] = appservice.enc(k) .. "=" .. appservice.enc(v) end
    end
  end
  table_sort(parts)
  return #parts > 0 and ("?" .. table_concat(parts, "&")) or ""
end

local function protocols(hs)
  local out = {}
  for _, s in ipairs(hs.appservices and hs.appservices.services or {}) do
    for _, p in ipairs(s.protocols) do
      if out[p] == nil and s.endpoint then
        local res = hs.appservices:request(s, "GET", "/thirdparty/protocol/" .. appservice.enc(p), nil, 10000)
        local info = answer(res, "object")
        if info then out[p] = info end
      end
    end
  end
  return out
end

local function protocol(hs, req)
  local p = req.params.protocol
  for _, s in ipairs(services_with(hs, p)) do
    local res = hs.appservices:request(s, "GET", "/thirdparty/protocol/" .. appservice.enc(p), nil, 10000)
    local info = answer(res, "object")
    if info then return info end
  end
  return errors.new("M_NOT_FOUND", "No application service handles this protocol")
end

-- GET /thirdparty/{kind}/{protocol}: every service's list, joined.
local function lookup(hs, req, kind)
  local p = req.params.protocol
  local list = services_with(hs, p)
  if #list == 0 then return errors.new("M_NOT_FOUND", "No application service handles this protocol") end
  local out = json.array {}
  for _, s in ipairs(list) do
    local res = hs.appservices:request(s, "GET", "/thirdparty/" .. kind .. "/" .. appservice.enc(p)
      .. query_string(req), nil, 10000)
    local items = answer(res, "array")
    if items then for _, it in ipairs(items) do out[#out + 1] = it end end
  end
  return out
end

-- GET /thirdparty/{kind}?alias= or ?userid=: every service asked, joined.
local function reverse(hs, req, kind, key)
  local v = req:arg(key)
  if not v or v == "" then return errors.new("M_MISSING_PARAM", key .. " is required") end
  local out = json.array {}
  for _, s in ipairs(hs.appservices and hs.appservices.services or {}) do
    if s.endpoint and #s.protocols > 0 then
      local res = hs.appservices:request(s, "GET", "/thirdparty/" .. kind .. "?" .. key .. "="
        .. appservice.enc(v), nil, 10000)
      local items = answer(res, "array")
      if items then for _, it in ipairs(items) do out[#out + 1] = it end end
    end
  end
  return out
end

as_api.routes = {
  { "POST", V1 .. "/appservice/{appserviceId}/ping", ping, auth = false },
  { "GET", V3 .. "/thirdparty/protocols", protocols, auth = true },
  { "GET", V3 .. "/thirdparty/protocol/{protocol}", protocol, auth = true },
  { "GET", V3 .. "/thirdparty/location/{protocol}", function(hs, req) return lookup(hs, req, "location") end,
    auth = true },
  { "GET", V3 .. "/thirdparty/user/{protocol}", function(hs, req) return lookup(hs, req, "user") end, auth = true },
  { "GET", V3 .. "/thirdparty/location", function(hs, req) return reverse(hs, req, "location", "alias") end,
    auth = true },
  { "GET", V3 .. "/thirdparty/user", function(hs, req) return reverse(hs, req, "user", "userid") end,
    auth = true },
}

return as_api
