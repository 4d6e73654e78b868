-- loom.appservice: the application services of a homeserver (Application
-- Service API): who they are (loom.appservice.registration), which users and
-- aliases they own, which rooms interest them, and the requests loom makes
-- to them (transactions: loom.appservice.sender; queries and pings here).
--
--   local appservice = require "loom.appservice"
--   local reg = assert(appservice.new(hs, services))   -- hs.appservices
--   reg:by_token(token)          -- the service whose as_token it is, or nil
--   reg:can_act_as(svc, user_id) -- its sender, or a local user in its user namespaces
--   reg:exclusive_user(user_id)  -- the service owning the user ID exclusively, or nil
--   reg:exclusive_alias(alias)   -- likewise for a room alias
--   reg:interested(svc, ev)      -- does the event interest the service
--   reg:query_user(user_id)      -- ask the owning services (GET /_matrix/app/v1/users/{userId}); in a task
--   reg:query_alias(alias)       -- likewise (GET /_matrix/app/v1/rooms/{roomAlias})
--
-- Interest (the spec's "Registration"): an event interests a service when
-- its room ID matches a room namespace, the room has an alias in an alias
-- namespace, a joined local member of the room is the service's sender or
-- matches a user namespace, or it is a membership event whose state_key is
-- such a user. Which rooms interest each service is kept in memory as a
-- set of its joined users per room (built once from the store's current
-- memberships, then updated by each persisted membership event) and the
-- rooms whose IDs or aliases match (per room, cached; alias changes drop the
-- room's entry), so deciding costs a few table lookups per event and
-- service, never a scan of memberships.
local core = require "loom.core"
local async = require "loom.async"
local http_client = require "loom.http.client"

local next, setmetatable, ipairs, type, tostring, tonumber = next, setmetatable, ipairs, type, tostring, tonumber
local string_format, string_gsub, string_match = string.format, string.gsub, string.match
local json = core.json

local _ENV = nil -- luacheck: ignore 211

local appservice = {}
local methods = {}
local mt = { __name = "loom.AppServices", __index = methods }

--- Addresses the outbound client may reach for services (their URLs come
-- from the operator's registration files: loopback and private networks
-- are allowed by default; config app_service_allow_ips replaces the list).
appservice.DEFAULT_ALLOW_IPS = { "127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
  "fc00::/7" }

--- Split an http(s) URL: { tls, host, port, prefix (path without a
-- trailing slash) } or nil.
function appservice.parse_url(url)
  if type(url) ~= "string" then return nil end
  local scheme, rest = string_match(url, "^(https?)://(.+)$")
  if not scheme then return nil end
  local authority, path = string_match(rest, "^([^/?#]+)(.*)$")
  if not authority then return nil end
  local host, port = string_match(authority, "^%[([^%]]+)%]:?(%d*)$")
  if not host then host, port = string_match(authority, "^([^:]+):?(%d*)$") end
  if not host then return nil end
  port = port ~= "" and tonumber(port) or (scheme == "https" and 443 or 80)
  if port < 1 or port > 65535 then return nil end
  path = string_gsub(string_match(path, "^[^?#]*"), "/+$", "")
  return { tls = scheme == "https", host = host, port = port, prefix = path }
end

function appservice.new(hs, services)
  local self = setmetatable({
    hs = hs, services = services or {}, tokens = {}, ids = {},
    suffix = ":" .. hs.server_name,
    joined = {},       -- [svc] = { [room_id] = { [user_id] = true } }: its users joined there
    room_match = {},   -- [svc] = { [room_id] = bool } (room ID or an alias in its namespaces)
  }, mt)
  for _, s in ipairs(self.services) do
    self.tokens[s.as_token] = s
    self.ids[s.id] = s
    self.joined[s] = {}
    self.room_match[s] = {}
    s.endpoint = s.url and appservice.parse_url(s.url) or nil
  end
  return self
end

--- The service whose as_token this is (nil: none).
function methods:by_token(token) return token and self.tokens[token] or nil end

--- The service with this id (nil: none).
function methods:by_id(id) return self.ids[id] end

local function any(list, value)
  for _, ns in ipairs(list) do
    if ns.regex:match(value) then return ns end
  end
  return nil
end

--- Is the user one of the service's: its sender, or a local user matching
-- one of its user namespaces.
function methods:is_user(svc, user_id)
  if type(user_id) ~= "string" then return false end
  if user_id == svc.sender then return true end
  if user_id:sub(-#self.suffix) ~= self.suffix then return false end
  return any(svc.namespaces.users, user_id) ~= nil
end
methods.can_act_as = methods.is_user

local function exclusive(list, value)
  for _, ns in ipairs(list) do
    if ns.exclusive and ns.regex:match(value) then return true end
  end
  return false
end

--- The service holding the user ID in an exclusive namespace (nil: none).
function methods:exclusive_user(user_id)
  for _, s in ipairs(self.services) do
    if user_id == s.sender or exclusive(s.namespaces.users, user_id) then return s end
  end
  return nil
end

--- The service holding the alias in an exclusive namespace (nil: none).
function methods:exclusive_alias(alias)
  for _, s in ipairs(self.services) do
    if exclusive(s.namespaces.aliases, alias) then return s end
  end
  return nil
end

--- Does one of the service's namespaces of kind ("users", "aliases",
-- "rooms") cover the value?
function methods.covers(_, svc, kind, value)
  return type(value) == "string" and any(svc.namespaces[kind], value) ~= nil
end

--- Services with a namespace (exclusive or not) covering the value.
function methods:services_for(kind, value)
  local out = {}
  for _, s in ipairs(self.services) do
    if any(s.namespaces[kind], value) then out[#out + 1] = s end
  end
  return out
end

--- Build the joined-user counts from the store's current memberships (at
-- start; one pass over the local joined members).
function methods:load()
  for _, row in ipairs(self.hs.store:local_joined_members(self.hs.server_name)) do
    local room_id, user_id = row[1], row[2]
    for _, s in ipairs(self.services) do
      if self:is_user(s, user_id) then
        local j = self.joined[s]
        local users = j[room_id]
        if not users then users = {}; j[room_id] = users end
        users[user_id] = true
      end
    end
  end
end

--- A membership changed (a persisted m.room.member event of a local user):
-- the joined users of each service.
function methods:membership_changed(room_id, user_id, membership)
  for _, s in ipairs(self.services) do
    if self:is_user(s, user_id) then
      local j = self.joined[s]
      local users = j[room_id]
      if membership == "join" then
        if not users then users = {}; j[room_id] = users end
        users[user_id] = true
      elseif users then
        users[user_id] = nil
        if next(users) == nil then j[room_id] = nil end
      end
    end
  end
end

--- The room's aliases changed: forget what was decided about it.
function methods:aliases_changed(room_id)
  for _, s in ipairs(self.services) do self.room_match[s][room_id] = nil end
end

local function room_matches(self, svc, room_id)
  local cache = self.room_match[svc]
  local m = cache[room_id]
  if m == nil then
    m = any(svc.namespaces.rooms, room_id) ~= nil
    if not m and #svc.namespaces.aliases > 0 then
      for _, alias in ipairs(self.hs.store:room_aliases(room_id)) do
        if any(svc.namespaces.aliases, alias) then m = true; break end
      end
    end
    cache[room_id] = m
  end
  return m
end

--- Does the room interest the service (for events that are not about one
-- of its users)?
function methods:room_interests(svc, room_id)
  if self.joined[svc][room_id] then return true end
  return room_matches(self, svc, room_id)
end

--- Does the event (a table with room_id, type, state_key) interest the
-- service?
function methods:interested(svc, ev)
  if type(ev) ~= "table" or type(ev.room_id) ~= "string" then return false end
  if self:room_interests(svc, ev.room_id) then return true end
  if ev.type == "m.room.member" and type(ev.state_key) == "string" and self:is_user(svc, ev.state_key) then
    return true
  end
  return false
end

--- The services the event interests (a list, maybe empty).
function methods:interested_services(ev)
  local out = {}
  for _, s in ipairs(self.services) do
    if s.endpoint and self:interested(s, ev) then out[#out + 1] = s end
  end
  return out
end

-- ---------------------------------------------------------------------------
-- Requests to services

--- The outbound client (made on first use; its guard allows
-- config.app_service_allow_ips, by default loopback and private networks).
function methods:client()
  if not self.http then
    local hs = self.hs
    self.http = http_client.new { allow_ips = hs.config.app_service_allow_ips or appservice.DEFAULT_ALLOW_IPS,
      user_agent = "loom", request_timeout = 30000, connect_timeout = 5000,
      log = function(level, message) hs.server:log(level, "%s", message) end }
  end
  return self.http
end

local function enc(s)
  return (string_gsub(s, "[^%w%-%._~]", function(ch) return string_format("%%%02X", ch:byte()) end))
end
appservice.enc = enc

--- One request to a service, inside a task: res { status, headers, body }
-- or nil, error text. path is below /_matrix/app/v1; body a Lua value, or
-- a string sent as it is (JSON text).
function methods:request(svc, method, path, body, timeout)
  local ep = svc.endpoint
  if not ep then return nil, "the service has no url" end
  local text = body
  if body ~= nil and type(body) ~= "string" then text = json.encode(body) end
  local headers = { ["Authorization"] = "Bearer " .. svc.hs_token }
  if text then headers["Content-Type"] = "application/json" end
  return self:client():fetch { method = method, host = ep.host, port = ep.port, tls = ep.tls,
    path = ep.prefix .. "/_matrix/app/v1" .. path, headers = headers, body = text, timeout = timeout }
end

-- Ask each service with a namespace covering value (exclusive ones first)
-- whether it exists; true when one answered 200.
local function query(self, kind, value, path)
  local list = self:services_for(kind, value)
  for _, s in ipairs(list) do
    if s.endpoint then
      local res = self:request(s, "GET", path, nil, 10000)
      if res and res.status == 200 then return true, s end
    end
  end
  return false
end

--- Ask the services about a user in their namespaces (inside a task):
-- true when one answered 200 (it has created the user).
function methods:query_user(user_id)
  return query(self, "users", user_id, "/users/" .. enc(user_id))
end

--- Ask the services about an alias in their namespaces (inside a task):
-- true when one answered 200 (it has created the alias).
function methods:query_alias(alias)
  return query(self, "aliases", alias, "/rooms/" .. enc(alias))
end

--- POST /_matrix/app/v1/ping (inside a task): duration in ms, or nil and
-- { errcode, status, body } as the client API's ping answers.
function methods:ping(svc, txn_id)
  if not svc.endpoint then return nil, { errcode = "M_URL_NOT_SET" } end
  local t0 = core.now_ms()
  local body = {}
  if txn_id ~= nil then body.transaction_id = txn_id end
  local res, err = self:request(svc, "POST", "/ping", body, 10000)
  if not res then
    if tostring(err):match("^timeout") then return nil, { errcode = "M_CONNECTION_TIMEOUT" } end
    return nil, { errcode = "M_CONNECTION_FAILED" }
  end
  if res.status ~= 200 then
    return nil, { errcode = "M_BAD_STATUS", status = res.status, body = res.body or "" }
  end
  return core.now_ms() - t0
end

--- Close the outbound client.
function methods:close()
  if self.sender then self.sender:close() end
  if self.http then self.http:close(); self.http = nil end
end

appservice.methods = methods
appservice.async = async
return appservice
