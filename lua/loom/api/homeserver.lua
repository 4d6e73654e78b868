-- loom.api.homeserver: what the built-in endpoints share. It wires a server
-- (loom.new) to its event store, room service, accounts and signing key,
-- and authenticates requests.
--
--   local server = loom.new(config)
--   local hs = require("loom.api.homeserver").new(server)
--   server:route("GET", "/_matrix/client/v3/account/whoami", hs:authed(function(req)
--     return { user_id = req.user_id, device_id = req.device_id }
--   end))
--
-- Endpoint modules (lua/loom/api/client/*.lua) each export a route table
-- that loom.api.install registers. hs:error(message, code) turns a
-- lower-level nil, message, code into the Matrix error (docs/http.md).
local core = require "loom.core"
local crypto = require "loom.room.crypto"
local room_mod = require "loom.room"
local notifier_mod = require "loom.sync.notifier"
local typing_mod = require "loom.sync.typing"
local presence_mod = require "loom.sync.presence"
local errors = require "loom.http.errors"
local http_client = require "loom.http.client"
local fedclient = require "loom.federation.client"
local keyring_mod = require "loom.federation.keyring"
local fed_devices = require "loom.federation.devices"
local xmatrix = require "loom.federation.xmatrix"
local dns = require "loom.net.dns"
local sender_mod = require "loom.federation.sender"
local push_notify = require "loom.push.notify"
local as_registration = require "loom.appservice.registration"
local appservice_mod = require "loom.appservice"
local as_sender_mod = require "loom.appservice.sender"
local pusher_mod = require "loom.push.pusher"

local setmetatable, type, tostring, assert, ipairs, error = setmetatable, type, tostring, assert, ipairs, error

local _ENV = nil -- luacheck: ignore 211

local homeserver = {}
local methods = {}
local mt = { __name = "loom.Homeserver", __index = methods }

-- The server's signing key, created on first start.
local function signing_key(store, server_name)
  local key_id, seed = store:signing_key()
  if not key_id then
    seed = core.crypto.random_bytes(32)
    -- the spec's key identifier alphabet: [a-zA-Z0-9_]
    key_id = "ed25519:" .. core.crypto.base64_encode(core.crypto.random_bytes(6), true):gsub("-", "_")
    store:add_signing_key(key_id, seed)
  end
  return crypto.signing_key(seed, key_id, server_name)
end

--- The homeserver context of a server: hs.server, hs.config, hs.store,
-- hs.rooms (loom.room), hs.accounts (loom.accounts), hs.key, hs.notifier
-- (loom.sync.notifier: long-polls waiting for commits; closed on the
-- server's "server/stopping" hook, so that they are answered at once),
-- hs.typing (loom.sync.typing: who is typing in which room, in memory),
-- hs.presence (loom.sync.presence: presence and its idle/offline timer;
-- config.presence = false turns it off),
-- hs.register_sessions (the open user-interactive /register sessions),
-- hs.uia_sessions (the open m.login.password sessions, each bound to a user
-- and a request).
function homeserver.new(server, opts)
  opts = opts or {}
  local config = server.config
  local store = opts.store or server:store()
  local name = config.server_name
  local key = signing_key(store, name)
  local self = setmetatable({
    server = server,
    config = config,
    server_name = name,
    store = store,
    key = key,
    accounts = store:accounts { server_name = name, iterations = config.password_iterations },
    rooms = room_mod.new(store, { server_name = name, key = key,
      default_version = config.default_room_version, hooks = server }),
    notifier = notifier_mod.new(store),
    register_sessions = { map = {}, n = 0 },   -- open user-interactive /register sessions
    uia_sessions = { map = {}, n = 0 },   -- open password UIA sessions: { user_id, request }
  }, mt)
  self.typing = typing_mod.new(self.notifier)   -- who is typing where (in memory, expiring)
  -- federation: the outbound client (TLS, address guard), signed requests,
  -- keys (opts.transport: the lab's in-memory transport instead)
  local fed = config.federation or {}
  if not opts.transport then
    self.http_client = assert(http_client.new { allow_ips = fed.allow_ips,
      verify = fed.verify_certificates ~= false, user_agent = "loom",
      log = function(level, message) server:log(level, "%s", message) end })
  end
  self.federation = fedclient.new(self, { transport = opts.transport, http = self.http_client, srv = dns.srv })
  self.keyring = keyring_mod.new(self, self.federation)
  -- federation is on with a federation listener, or in the lab (a transport)
  self.federation_on = (config.federation ~= nil and config.federation.port ~= 0) or opts.transport ~= nil
  if self.federation_on then
    -- local events go to the room's other servers (queued with the event)
    self.sender = sender_mod.new(self)
    self.rooms.outbound = function(ev, room_id) return self.sender:queue_event(ev, room_id) end
    server:hook("server/started", function() self.sender:start() end)
    server:hook("server/stopping", function() self.sender:close() end)
    -- device and key changes of local users go out as EDUs
    fed_devices.install(self)
  end
  -- push rules: each new event against the local members' rules (unread counts)
  self.push = push_notify.new(self)
  server:hook("room/event/persisted", function(ev, c) return self.push:event_persisted(ev, c) end)
  -- pushers: each notification to the users' push gateways (config.push)
  self.pushers = pusher_mod.new(self, config.push)
  server:hook("server/started", function() self.pushers:resume() end)
  server:hook("server/stopping", function() self.pushers:close() end)
  local suffix = ":" .. name
  self:install_appservices()
  self.presence = presence_mod.new(store, { enabled = config.presence ~= false, idle_ms = config.presence_idle_ms,
    offline_ms = config.presence_offline_ms, log = function(level, message) server:log(level, "%s", message) end,
    is_local = function(user_id) return user_id:sub(-#suffix) == suffix end,
    -- a local user's change goes to the servers sharing a room with them
    on_change = self.sender and function(user_id, row)
      local dests, seen = {}, {}
      for _, room_id in ipairs(store:rooms_for_user(user_id, "join")) do
        for _, srv in ipairs(store:servers_in_room(room_id)) do
          if not seen[srv] then seen[srv] = true; dests[#dests + 1] = srv end
        end
      end
      local c = presence_mod.format(row, core.now_ms())
      c.user_id = user_id
      self.sender:queue_edu(dests, "m.presence", { push = core.json.array { c } })
    end or nil })
  server:hook("server/stopping", function()
    if self.http_client then self.http_client:close() end
    self.typing:close()
    self.presence:close()
    local n = self.notifier:close()
    if n > 0 then server:log("debug", "stopping: woke %d waiting /sync requests", n) end
  end)
  -- WAL checkpoints and the collector's mode, off the request path, while
  -- the server serves (config.housekeeping: see loom.db.housekeeping)
  server:hook("server/started", function()
    self.presence:start()    -- presence left online by an earlier run ages too
    if not self.housekeeping then
      self.housekeeping = store:start_housekeeping(config.housekeeping)
    end
  end)
  server:hook("server/stopping", function()
    if self.housekeeping then self.housekeeping:stop(); self.housekeeping = nil end
  end)
  if server.instrument then server:instrument(self) end
  return self
end

-- Application services (config.app_services: registration files, read and
-- checked here; a bad one stops the server from starting): hs.appservices,
-- its registry (loom.appservice), and the transaction sender for services
-- with a url. Each service's sender user is registered on first start.
function methods:install_appservices()
  local config, server = self.config, self.server
  local services, err = as_registration.load(config.app_services, { server_name = self.server_name,
    dir = config.config_dir })
  if not services then error(err, 0) end
  local reg = appservice_mod.new(self, services)
  self.appservices = reg
  if #services == 0 then return end
  for _, svc in ipairs(services) do
    if not self.accounts:user(svc.sender) then self.accounts:register(svc.sender_localpart, nil) end
  end
  reg:load()
  local retry = config.app_service_retry_ms
  reg.sender = as_sender_mod.new(self, reg, { retry_ms = retry, max_retry_ms = retry and retry * 64 or nil })
  server:hook("room/event/persisted", function(ev, c) return reg.sender:event_persisted(ev, c) end)
  server:hook("server/started", function() reg.sender:start() end)
  server:hook("server/stopping", function() reg:close() end)
end

-- An application service's request (its as_token): the user it acts as
-- (?user_id=, default its sender; 403 M_FORBIDDEN outside its namespaces or
-- for a user not registered) and the device (?device_id=, which must be the
-- user's: 400 M_UNKNOWN_DEVICE otherwise).
local function as_identity(self, req, svc)
  local user_id = req:arg("user_id")
  if user_id == nil or user_id == "" then user_id = svc.sender end
  if not self.appservices:is_user(svc, user_id) then
    return nil, errors.new("M_FORBIDDEN", "Application service cannot masquerade as this user (" ..
      tostring(user_id) .. ")")
  end
  local row = self.accounts:user(user_id)
  if not row or row.deactivated then
    return nil, errors.new("M_FORBIDDEN", "Application service has not registered this user (" ..
      tostring(user_id) .. ")")
  end
  local device_id = req:arg("device_id") or req:arg("org.matrix.msc3202.device_id")
  if device_id ~= nil and not self.store:user_device(user_id, device_id) then
    return nil, errors.new("M_UNKNOWN_DEVICE", "Application service trying to use a device that does not exist")
  end
  return user_id, device_id
end

--- The user and device of a request's access token (Authorization: Bearer,
-- or the access_token query parameter): user_id, device_id, token, is_guest,
-- appservice — or nil and a Matrix error (M_MISSING_TOKEN / M_UNKNOWN_TOKEN,
-- 401). An application service's as_token acts as its sender or, with
-- ?user_id=, as a user in its namespaces (the spec's identity assertion).
function methods:authenticate(req)
  local token
  local h = req:header("Authorization")
  if type(h) == "string" then token = h:match("^[Bb]earer%s+(%S+)%s*$") end
  token = token or req:arg("access_token")
  if not token then return nil, errors.new("M_MISSING_TOKEN", "Missing access token") end
  local svc = self.appservices and self.appservices:by_token(token)
  if svc then
    local user_id, device_id = as_identity(self, req, svc)
    if not user_id then return nil, device_id end
    return user_id, device_id, token, false, svc
  end
  local user_id, device_id, is_guest = self.accounts:authenticate(token)
  if not user_id then return nil, errors.new("M_UNKNOWN_TOKEN", "Unknown access token", { soft_logout = false }) end
  return user_id, device_id, token, is_guest
end

--- Wrap a handler so it runs only for authenticated requests, with
-- req.user_id, req.device_id, req.access_token and req.is_guest set. A
-- guest's token is refused (403 M_GUEST_ACCESS_FORBIDDEN) unless
-- allow_guest (the spec's guest access list).
function methods:authed(handler, allow_guest)
  return function(req, ...)
    local user_id, device_id, token, is_guest, svc = self:authenticate(req)
    if not user_id then return device_id end
    if is_guest and not allow_guest then
      return errors.new("M_GUEST_ACCESS_FORBIDDEN", "Guest access is not allowed here")
    end
    req.user_id, req.device_id, req.access_token, req.is_guest = user_id, device_id, token, is_guest
    req.appservice = svc
    return handler(req, ...)
  end
end

--- The origin server of a federation request, checked (X-Matrix): origin,
-- or nil and a 401 M_UNAUTHORIZED error. Inside the request's task (the
-- origin's key may be fetched).
function methods:authenticate_server(req)
  local auth, msg = xmatrix.parse(req:header("Authorization"))
  if not auth then return nil, errors.new("M_UNAUTHORIZED", msg) end
  if auth.destination ~= nil and auth.destination ~= self.server_name then
    return nil, errors.new("M_UNAUTHORIZED", "Request is for another server")
  end
  if auth.origin == self.server_name then
    return nil, errors.new("M_UNAUTHORIZED", "Request claims to come from this server")
  end
  local content
  if req.body ~= nil and req.body ~= "" then content = req:json { any = true } end
  local pk, kerr = self.keyring:verify_key(auth.origin, auth.key)
  if not pk then return nil, errors.new("M_UNAUTHORIZED", "Cannot check the request's key: " .. tostring(kerr)) end
  local ok, verr = xmatrix.verify(auth, req.method, req.target, content, pk)
  if not ok then return nil, errors.new("M_UNAUTHORIZED", "Bad request signature: " .. tostring(verr)) end
  return auth.origin
end

--- Wrap a federation handler so it runs only for requests signed by their
-- origin (req.origin set).
function methods:server_authed(handler)
  return function(req, ...)
    local origin, err = self:authenticate_server(req)
    if not origin then return err end
    req.origin = origin
    if self.sender then self.sender:wake(origin) end
    return handler(req, ...)
  end
end

--- Fire a veto hook (server:fire, see docs/hooks/): nil when the action
-- may go on (no handler had an opinion, or one returned true), else the
-- Matrix error to answer — 403 M_FORBIDDEN with the handler's reason for
-- `false, reason`, the error value a handler returned or raised, 500
-- M_UNKNOWN when a handler failed.
function methods:check(name, ...)
  local verdict, reason = self.server:fire(name, ...)
  if verdict == nil or verdict == true then return nil end
  if errors.is(verdict) then return verdict end
  return errors.new("M_FORBIDDEN", type(reason) == "string" and reason or "Refused by server policy")
end

--- A Matrix error for a lower-level failure (nil, message, code[, rule]);
-- an error value (a hook's answer, passed up by the room service) as is.
-- A failure of the server's own (database, storage) becomes M_UNKNOWN and
-- is logged.
function methods.error(self, message, code, rule)
  if errors.is(message) then return message end
  if code == "forbidden" then
    return errors.new("M_FORBIDDEN", rule and (message .. " (auth rule " .. rule .. ")") or message)
  end
  local err, internal = errors.from_code(code, message)
  if internal then self.server:log("error", "%s (%s)", tostring(message), tostring(code)) end
  return err
end

homeserver.methods = methods
homeserver.mt = mt
return homeserver
