-- The server object behind loom.new(config): configuration, routes, the hook
-- bus, and the HTTP server that serves them.
--
--   local loom = require "loom"
--   local server = loom.new { port = 8008, server_name = "example.org" }
--   server:route("GET", "/hello/{name}", function(req)
--     return { greeting = "hello " .. req.params.name }
--   end)
--   server:hook("http/request", function(req) ... end, 10)
--   server:run()                                  -- until SIGINT/SIGTERM or server:stop()
--
-- See docs/http.md for the handler contract, the hooks and the config.
local setmetatable, pairs, ipairs, type, tostring, error, xpcall, select, require =
  setmetatable, pairs, ipairs, type, tostring, error, xpcall, select, require
local traceback = debug.traceback
local string_format, string_find = string.format, string.find
local table_insert, table_pack, table_unpack = table.insert, table.pack, table.unpack
local stderr, os_date = io.stderr, os.date
local uv = require "luv"
local json = require("loom.core").json
local http = require "loom.http.server"
local router_mod = require "loom.http.router"
local request = require "loom.http.request"
local response = require "loom.http.response"
local errors = require "loom.http.errors"
local config_mod = require "loom.cli.config"

local _ENV = nil -- luacheck: ignore 211

local server = {}

local levels = { debug = 1, info = 2, warn = 3, error = 4 }
server.levels = levels

--- The configuration keys loom.new understands, with their defaults: the
-- one list in loom.cli.config (docs/config.md).
server.defaults = config_mod.defaults

local methods = {}
local mt = { __name = "loom.Server", __index = methods }
server.methods, server.mt = methods, mt

-- The config over the defaults (fresh copies), checked: raises naming the
-- first bad key at loom.new's caller.
local function check_config(config)
  local c, err = config_mod.from_table(config, "config")
  if not c then error(err, 3) end
  return c
end

local function default_logger(level, message)
  stderr:write(os_date("!%Y-%m-%dT%H:%M:%SZ"), " ", level, " ", message, "\n")
end

--- server.new(config) -> Server (loom.new). Raises on a bad config.
function server.new(config)
  if config ~= nil and type(config) ~= "table" then error("loom.new: config must be a table", 2) end
  local c = check_config(config)
  local self = setmetatable({
    config = c,
    router = router_mod.new(),
    hooks = {},
    min_level = levels[c.log_level],
    logger = c.logger or default_logger,
  }, mt)
  self.http = http.new {
    host = c.host,
    port = c.port,
    limits = c.limits,
    timeouts = c.timeouts,
    log = function(level, message) self:log(level, "%s", message) end,
    handler = function(raw) return self:dispatch(raw) end,
  }
  server.register_builtin(self)
  return self
end

--- server:log(level, fmt, ...): a line to the logger when level is at or
-- above config.log_level.
function methods.log(self, level, fmt, ...)
  local n = levels[level] or levels.error
  if n < self.min_level then return end
  local message = select("#", ...) > 0 and string_format(fmt, ...) or fmt
  local ok, err = xpcall(self.logger, traceback, level, message)
  if not ok then default_logger("error", "logger failed: " .. tostring(err) .. "; " .. message) end
end

-- ---- routes -----------------------------------------------------------------

--- server:route(method, pattern, handler) -> route
-- handler(req) runs in its own coroutine; see docs/http.md for what it may
-- return or raise.
function methods.route(self, method, pattern, handler)
  return self.router:add(method, pattern, handler)
end

-- ---- hooks ------------------------------------------------------------------

--- server:hook(name, fn, [priority]) -> fn
-- Registers fn for name; higher priority runs first (default 0; equal
-- priorities in registration order).
function methods.hook(self, name, fn, priority)
  if type(name) ~= "string" then error("hook name must be a string", 2) end
  if type(fn) ~= "function" then error("hook handler must be a function", 2) end
  priority = priority or 0
  if type(priority) ~= "number" then error("hook priority must be a number", 2) end
  local old = self.hooks[name] or {}
  local list = {}
  for i, h in ipairs(old) do list[i] = h end   -- copy: a fire in progress keeps its list
  local at = #list + 1
  for i, h in ipairs(list) do
    if priority > h.priority then
      at = i
      break
    end
  end
  table_insert(list, at, { fn = fn, priority = priority })
  self.hooks[name] = list
  return fn
end

--- server:unhook(name, fn) -> true when fn was registered
function methods.unhook(self, name, fn)
  local old = self.hooks[name]
  if not old then return false end
  local list, found = {}, false
  for _, h in ipairs(old) do
    if h.fn == fn and not found then found = true else list[#list + 1] = h end
  end
  self.hooks[name] = list[1] and list or nil
  return found
end

--- server:fire(name, ...) -> the first non-nil result (all its values) | nil
-- Calls the hooks for name in priority order until one returns non-nil. A
-- hook that raises an error value (loom.http.errors) returns it; one that
-- raises anything else is logged with its traceback and the chain ends with
-- an M_UNKNOWN error value (fail closed: veto hooks refuse).
function methods.fire(self, name, ...)
  local list = self.hooks[name]
  if not list then return nil end
  for _, h in ipairs(list) do
    local res = table_pack(xpcall(h.fn, function(e)
      if errors.is(e) then return e end
      return traceback(tostring(e), 2)
    end, ...))
    if not res[1] then
      if errors.is(res[2]) then return res[2] end
      self:log("error", "hook %s failed: %s", name, tostring(res[2]))
      return errors.new("M_UNKNOWN")
    end
    if res[2] ~= nil then return table_unpack(res, 2, res.n) end
  end
  return nil
end

-- ---- dispatch ---------------------------------------------------------------

local function error_response(self, err, req)
  if err.status >= 500 then
    self:log("debug", "%s %s -> %s", req.method, req.path, tostring(err))
  end
  return response.error(err)
end

local function internal_error(self, req, what)
  self:log("error", "%s %s: %s", req.method, req.path, what)
  return response.for_error("M_UNKNOWN")
end

-- Turns what a handler returned into a Response.
local function to_response(self, req, n, a, b, c)
  if response.is(a) then return a end
  if errors.is(a) then return error_response(self, a, req) end
  if a == nil then
    if errors.is(b) then return error_response(self, b, req) end
    if type(b) == "string" and type(c) == "string" then
      local err, internal = errors.from_code(c, b)
      if internal then self:log("error", "%s %s: %s (%s)", req.method, req.path, b, c) end
      return error_response(self, err, req)
    end
    return internal_error(self, req, n == 0 and "handler returned nothing" or
                          "handler returned nil, " .. tostring(b))
  end
  local status, body, headers = 200, a, nil
  if type(a) == "number" then status, body, headers = a, b, c end
  if body == nil then body = "{}" end
  local r, msg
  if type(body) == "table" then
    r, msg = response.json(status, body, headers)
    if not r then return internal_error(self, req, "response does not encode: " .. tostring(msg)) end
  elseif type(body) == "string" then
    r = response.new(status, body, headers)
  else
    return internal_error(self, req, "handler returned a " .. type(body) .. " body")
  end
  return r
end

local function pack_n(...) return select("#", ...), ... end

local function handle(self, req)
  if req.method == "OPTIONS" then
    -- CORS preflight: any path, known or not
    return response.new(200, "{}")
  end
  local r = self:fire("http/request", req)
  if r ~= nil then return to_response(self, req, 1, r) end
  local route, params, allow = self.router:match(req.method, req.path)
  if not route then
    if allow then params.headers = { Allow = allow } end
    return error_response(self, params, req)
  end
  req.params, req.route = params, route.pattern
  return to_response(self, req, pack_n(route.handler(req)))
end

local function on_raise(e)
  if errors.is(e) then return e end
  return traceback(tostring(e), 2)
end

--- server:dispatch(raw) -> Response: routes one parsed request (runs inside
-- the request's coroutine). Never raises.
function methods.dispatch(self, raw)
  local req = request.new(raw)
  req.server = self
  local started = uv.hrtime()
  local ok, resp = xpcall(handle, on_raise, self, req)
  if not ok then
    if errors.is(resp) then
      resp = error_response(self, resp, req)
    else
      self:log("error", "%s %s failed: %s", req.method, req.path, tostring(resp))
      self:fire("http/error", req, resp)
      resp = response.for_error("M_UNKNOWN")
    end
  end
  self:fire("http/response", req, resp)
  self:log("debug", "%s %s %d %.1fms", req.method, req.path, resp.status,
           (uv.hrtime() - started) / 1e6)
  return resp
end

-- ---- built-in endpoints -----------------------------------------------------

--- server:base_url() -> config.public_baseurl, or http://host:port
function methods.base_url(self)
  local c = self.config
  if c.public_baseurl then return c.public_baseurl end
  local host = c.host
  if string_find(host, ":", 1, true) then host = "[" .. host .. "]" end
  return string_format("http://%s:%d", host, self:port() or c.port)
end

--- server:well_known() -> the body of /.well-known/matrix/client (also the
-- well_known of a login): config.well_known_client, or m.homeserver.base_url.
function methods.well_known(self)
  return self.config.well_known_client or { ["m.homeserver"] = { base_url = self:base_url() } }
end

--- The routes every loom server has, registered through server:route like
-- any other: GET /_matrix/client/versions, GET /.well-known/matrix/client.
function server.register_builtin(self)
  self:route("GET", "/_matrix/client/versions", function()
    local list = {}
    for i, v in ipairs(self.config.versions) do list[i] = v end
    local unstable = {}
    for k, v in pairs(self.config.unstable_features) do unstable[k] = v end
    return { versions = json.array(list), unstable_features = unstable }
  end)
  self:route("GET", "/.well-known/matrix/client", function() return self:well_known() end)
end

-- ---- running ----------------------------------------------------------------

--- server:start() -> true | nil, message, "io_error"
-- Starts listening; the caller runs the luv loop.
function methods.start(self)
  local ok, msg, code = self.http:listen()
  if not ok then return nil, msg, code end
  self:fire("server/started", self)
  return true
end

--- server:port() -> the port listened on (after start), else nil
function methods.port(self)
  return self.http:port()
end

--- server:stop([on_stopped]): graceful shutdown; on_stopped() once all
-- connections are closed.
function methods.stop(self, on_stopped)
  if not self.stopping then
    self.stopping = true
    self:fire("server/stopping", self)
  end
  self.http:stop(function()
    if self.signals then
      for _, s in ipairs(self.signals) do if not s:is_closing() then s:close() end end
      self.signals = nil
    end
    if self.running then uv.stop() end
    if on_stopped then on_stopped() end
  end)
end

--- server:run(): start (raises when it cannot listen), stop gracefully on
-- SIGINT or SIGTERM, and run the luv loop until the server has stopped.
function methods.run(self)
  if not self.http:port() then
    local ok, msg = self:start()
    if not ok then error(msg, 2) end
  end
  self.signals = {}
  for _, name in ipairs { "sigint", "sigterm" } do
    local s = uv.new_signal()
    s:start(name, http.guard(self.http, function()
      self:log("info", "%s: stopping", name)
      self:stop()
    end))
    self.signals[#self.signals + 1] = s
  end
  self.running = true
  uv.run("default")
  self.running = false
  -- Let handles that are still closing (the signal watchers, say) finish:
  -- a close callback left for the loop's own finaliser would run while Lua
  -- is being torn down.
  for _ = 1, 10 do
    local closing = false
    uv.walk(function(h) if h:is_closing() then closing = true end end)
    if not closing then break end
    uv.run("nowait")
  end
end

--- server:store() -> the event store (loom.open_store(config.database)),
-- opened on first use.
function methods.store(self)
  if not self.store_obj then
    self.store_obj = require("loom").open_store(self.config.database)
  end
  return self.store_obj
end

return server
