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
local stderr, os_date, io_open, tonumber = io.stderr, os.date, io.open, tonumber
local string_gsub, math_floor, collectgarbage = string.gsub, math.floor, collectgarbage
local uv = require "luv"
local core = require "loom.core"
local json = core.json
local async = require "loom.async"
local http = require "loom.http.server"
local router_mod = require "loom.http.router"
local request = require "loom.http.request"
local response = require "loom.http.response"
local errors = require "loom.http.errors"
local metrics = require "loom.http.metrics"
local config_mod = require "loom.cli.config"

local _ENV = nil -- luacheck: ignore 211

local server = {}

local levels = { debug = 1, info = 2, warn = 3, error = 4 }
server.levels = levels

-- request methods counted under their own name in metrics; others are "other"
local known_methods = { GET = "GET", HEAD = "HEAD", POST = "POST", PUT = "PUT", DELETE = "DELETE",
                        OPTIONS = "OPTIONS", PATCH = "PATCH" }

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

-- bytes that are not UTF-8 become "?", so a line is always written
local function utf8_safe(v)
  if type(v) == "string" then return (string_gsub(v, "[\128-\255]", "?")) end
  return v
end

--- server.json_line(level, message, [fields], [now_ms]) -> one log line as a
-- JSON object (no newline): ts (ISO 8601 UTC with milliseconds), level and
-- msg first, then fields (strings and numbers; ts, level and msg among them
-- are left out). Control characters are escaped, so a line never breaks.
function server.json_line(level, message, fields, now_ms)
  local ms = now_ms or core.now_ms()
  local ts = os_date("!%Y-%m-%dT%H:%M:%S", ms // 1000) .. string_format(".%03dZ", ms % 1000)
  local msg = json.encode(message) or json.encode(utf8_safe(message))
  local rest = "}"
  if fields then
    local obj = {}
    for k, v in pairs(fields) do
      if k ~= "ts" and k ~= "level" and k ~= "msg" then obj[k] = v end
    end
    local text = json.encode(obj, { floats = true })
    if not text then
      for k, v in pairs(obj) do obj[k] = utf8_safe(v) end
      text = json.encode(obj, { floats = true }) or "{}"
    end
    if text ~= "{}" then rest = "," .. text:sub(2) end
  end
  return '{"ts":"' .. ts .. '","level":' .. (json.encode(utf8_safe(level)) or '"?"') .. ',"msg":' .. msg .. rest
end
local json_line = server.json_line

local function json_logger(level, message, fields)
  stderr:write(json_line(level, message, fields), "\n")
end

-- The client listener's limits: config.limits, with max_media_body from
-- config.media.max_upload_size (so an upload over it is refused from its
-- Content-Length, before its body is read).
function server.media_limits(c)
  local size = type(c.media) == "table" and c.media.max_upload_size
  if not size or (type(c.limits) == "table" and c.limits.max_media_body) then return c.limits end
  local limits = {}
  for k, v in pairs(c.limits or {}) do limits[k] = v end
  limits.max_media_body = size
  return limits
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
    logger = c.logger or (c.log_format == "json" and json_logger or default_logger),
    metrics = metrics.new(),
  }, mt)
  self.http = http.new {
    host = c.host,
    port = c.port,
    limits = server.media_limits(c),
    stream_prefix = "/_matrix/media/",   -- uploads stream to disk (loom.api.client.media)
    timeouts = c.timeouts,
    log = function(level, message) self:log(level, "%s", message) end,
    handler = function(raw) return self:dispatch(raw) end,
  }
  local fed = c.federation
  if fed and fed.port ~= 0 then
    self.federation_http = http.new {
      host = fed.host or "127.0.0.1",
      port = fed.port or 8448,
      tls = server.federation_tls(c),
      limits = c.limits,
      timeouts = c.timeouts,
      log = function(level, message) self:log(level, "federation: %s", message) end,
      handler = function(raw) return self:dispatch(raw, "federation") end,
    }
  end
  server.register_builtin(self)
  server.register_metrics(self)
  if c.metrics then
    self.metrics_http = metrics.listener(self.metrics, {
      host = c.metrics.host or "127.0.0.1",
      port = c.metrics.port,
      log = function(level, message) self:log(level, "metrics: %s", message) end,
    })
  end
  return self
end

--- server.federation_tls(config) -> the TLS context of the federation
-- listener: config.federation's tls_certificate and tls_private_key (relative
-- to the working directory), a self-signed pair for server_name made there
-- when both files are missing. Raises when they cannot be used.
function server.federation_tls(c)
  local fed = c.federation
  local cert, key = fed.tls_certificate or "var/tls.crt", fed.tls_private_key or "var/tls.key"
  if not uv.fs_stat(cert) and not uv.fs_stat(key) then
    local host = c.server_name:gsub(":%d+$", ""):gsub("^%[(.*)%]$", "%1")
    local ok, msg = core.tls.self_signed(cert, key, host)
    if not ok then error("federation: cannot make a TLS certificate: " .. tostring(msg), 0) end
  end
  local ctx, msg = core.tls.context { server = true, certificate = cert, private_key = key }
  if not ctx then error("federation: " .. tostring(msg), 0) end
  return ctx
end

--- server:log_fields(level, fields, fmt, ...): a line to the logger when
-- level is at or above config.log_level, with fields (a table of strings
-- and numbers, or nil) that JSON logs carry beside the message.
function methods.log_fields(self, level, fields, fmt, ...)
  local n = levels[level]
  if not n then level, n = "error", levels.error end   -- an unknown level is logged as an error
  if n < self.min_level then return end
  local message = select("#", ...) > 0 and string_format(fmt, ...) or fmt
  local ok, err = xpcall(self.logger, traceback, level, message, fields)
  if not ok then default_logger("error", "logger failed: " .. tostring(err) .. "; " .. message) end
end

--- server:log(level, fmt, ...): a line to the logger when level is at or
-- above config.log_level.
function methods.log(self, level, fmt, ...)
  return methods.log_fields(self, level, nil, fmt, ...)
end

-- ---- routes -----------------------------------------------------------------

--- server:route(method, pattern, handler, [listener]) -> route
-- handler(req) runs in its own coroutine; see docs/http.md for what it may
-- return or raise. listener: "client" (the default: the client listener)
-- or "federation" (only the federation listener, over TLS, serves it).
function methods.route(self, method, pattern, handler, listener)
  local route = self.router:add(method, pattern, handler)
  route.listener = listener or "client"
  return route
end

-- ---- hooks ------------------------------------------------------------------

--- server:hook(name, fn, [priority], [owner]) -> fn
-- Registers fn for name; higher priority runs first (default 0; equal
-- priorities in registration order). owner (a script name, or a table with
-- a `name`, as the script loader passes) is kept in the handler's record as
-- `script` and named in the log when the handler fails.
function methods.hook(self, name, fn, priority, owner)
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
  table_insert(list, at, { fn = fn, priority = priority, script = owner })
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

-- "hook NAME" or "hook NAME (script S)", for the log.
local function hook_label(name, h)
  local owner = h.script
  if type(owner) == "table" then owner = owner.name end
  if owner == nil then return "hook " .. name end
  return "hook " .. name .. " (script " .. tostring(owner) .. ")"
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
      self:log("error", "%s failed: %s", hook_label(name, h), tostring(res[2]))
      return errors.new("M_UNKNOWN")
    end
    if res[2] ~= nil then return table_unpack(res, 2, res.n) end
  end
  return nil
end

--- server:notify(name, ...): calls every hook for name as an observer, each
-- in its own loom.async task started on the next turn of the loop (after
-- the current request's work), so it may wait (async.sleep, a send) and
-- neither delays nor breaks the caller or the other observers. Results are
-- ignored; a failure is logged with the hook's name, its script and a
-- traceback. The arguments are shared by every observer: treat them as
-- read-only.
function methods.notify(self, name, ...)
  local list = self.hooks[name]
  if not list then return end
  local args = table_pack(...)
  local timer = uv.new_timer()
  timer:start(0, 0, http.guard(self.http, function()
    timer:close()
    for _, h in ipairs(list) do
      local label = hook_label(name, h)
      async.spawn(function() return h.fn(table_unpack(args, 1, args.n)) end, nil, function(ok, err)
        if not ok then self:log("error", "%s failed: %s", label, tostring(err)) end
      end, function(level, message) self:log(level, "%s: %s", label, message) end)
    end
  end))
end

--- server:observe(name, ...): calls every hook for name at once, in
-- priority order, each under its own protected call; results are ignored
-- and a failure is logged (hook name, script, traceback). For observers
-- that must see something just before it happens and cannot change it
-- (sync/response gets a response that is already encoded).
function methods.observe(self, name, ...)
  local list = self.hooks[name]
  if not list then return end
  for _, h in ipairs(list) do
    local ok, err = xpcall(h.fn, traceback, ...)
    if not ok then self:log("error", "%s failed: %s", hook_label(name, h), tostring(err)) end
  end
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
  if route and route.listener ~= req.listener then
    route, params, allow = nil, errors.new("M_UNRECOGNIZED", "Unrecognized request"), nil
  end
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

--- server:dispatch(raw, [listener]) -> Response: routes one parsed request
-- (runs inside the request's coroutine) to the routes of listener
-- ("client" by default, or "federation"). Never raises.
function methods.dispatch(self, raw, listener)
  local req = request.new(raw)
  req.server = self
  req.listener = listener or "client"
  local started = uv.hrtime()
  local ok, resp = xpcall(handle, on_raise, self, req)
  if not ok then
    if errors.is(resp) then
      resp = error_response(self, resp, req)
    else
      self:log("error", "%s %s failed: %s", req.method, req.path, tostring(resp))
      self:observe("http/error", req, resp)
      resp = response.for_error("M_UNKNOWN")
    end
  end
  self:observe("http/response", req, resp)
  local elapsed = (uv.hrtime() - started) / 1e9
  local route, method = req.route or "unmatched", known_methods[req.method] or "other"
  local m = self.builtin_metrics
  m.requests:inc(1, route, method, resp.status)
  m.duration:observe(elapsed, route, method)
  if self.min_level <= levels.debug then
    local ms = math_floor(elapsed * 1e4 + 0.5) / 10
    self:log_fields("debug", { method = req.method, path = req.path, status = resp.status, ms = ms,
      remote = req.peer and req.peer.ip }, "%s %s %d %.1fms", req.method, req.path, resp.status, ms)
  end
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

-- ---- metrics ----------------------------------------------------------------

-- When this process started (seconds since the epoch): from /proc on Linux,
-- else now.
local function process_start_time()
  local now = core.now_ms() / 1000
  local f = io_open("/proc/self/stat", "r")
  local stat = f and f:read("a")
  if f then f:close() end
  f = io_open("/proc/stat", "r")
  local sys = f and f:read("a")
  if f then f:close() end
  local ticks = stat and tonumber((stat:match("%) (.*)") or ""):match("^" .. ("%S+ "):rep(19) .. "(%d+)"))
  local btime = sys and tonumber(sys:match("\nbtime (%d+)"))
  if not ticks or not btime then return now end
  local t = btime + ticks / 100          -- /proc counts in USER_HZ, 100 on Linux
  if t > now + 1 then return now end
  return t
end

--- The metrics every server has (docs/metrics.md), in self.metrics; the
-- ones loom updates itself are in self.builtin_metrics.
function server.register_metrics(self)
  local reg = self.metrics
  local m = {}
  m.requests = reg:counter("loom_http_requests_total",
    "HTTP requests answered, by route pattern (unmatched: no route), method and status code.",
    { "route", "method", "code" })
  m.duration = reg:histogram("loom_http_request_duration_seconds",
    "Time from a parsed request to its response, by route pattern and method.", { "route", "method" },
    { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30 })
  m.connections = reg:gauge("loom_http_connections", "Open client connections.")
  m.events = reg:counter("loom_events_persisted_total", "Events committed to the event store.")
  m.db = reg:histogram("loom_db_statement_duration_seconds",
    "Time spent executing database statements, one observation per statement.", nil,
    { 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5 })
  m.sync_waiting = reg:gauge("loom_sync_waiting", "Long-polling /sync requests waiting for data now.")
  m.sync_woken = reg:counter("loom_sync_wakeups_total",
    "Long-polling /sync waits that ended, by reason (data: woken by new data, timeout: none came).",
    { "reason" })
  m.memory = reg:gauge("loom_lua_memory_bytes", "Memory in use by the Lua heap.")
  m.start = reg:gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.")
  m.start:set(process_start_time())
  m.sync_woken:inc(0, "data")
  m.sync_woken:inc(0, "timeout")
  reg:on_collect(function()
    m.connections:set(self.http:connections())
    m.memory:set(math_floor(collectgarbage("count") * 1024))
    local n = self.instrumented_hs and self.instrumented_hs.notifier
    if n then
      m.sync_waiting:set(n.waiting or 0)
      m.sync_woken:set(n.woken_data or 0, "data")
      m.sync_woken:set(n.woken_timeout or 0, "timeout")
    end
  end)
  self.builtin_metrics = m
end

--- server:instrument(hs): counts what the homeserver context hs (loom.api.
-- homeserver) does in the server's metrics: events its store commits, time
-- in its database statements, and its /sync notifier (hs.notifier, read
-- at scrape time). Once per server.
function methods.instrument(self, hs)
  if self.instrumented_hs then return end
  self.instrumented_hs = hs
  local m = self.builtin_metrics
  local store = hs.store
  store:subscribe(function(note) m.events:inc(note.events or 0) end)
  local function timed(started, ...)
    m.db:observe((uv.hrtime() - started) / 1e9)
    return ...
  end
  store:time_statements(function(f, ...)
    local started = uv.hrtime()
    return timed(started, f(...))
  end)
end

-- ---- running ----------------------------------------------------------------

--- server:start() -> true | nil, message, "io_error"
-- Starts listening; the caller runs the luv loop.
function methods.start(self)
  if self.metrics_http then
    local ok, msg, code = self.metrics_http:listen()
    if not ok then return nil, msg, code end
  end
  local ok, msg, code = self.http:listen()
  if ok and self.federation_http then
    ok, msg, code = self.federation_http:listen()
    if not ok then self.http:stop() end
  end
  if not ok then
    if self.metrics_http then self.metrics_http:stop() end
    return nil, msg, code
  end
  self:observe("server/started", self)
  return true
end

--- server:port() -> the port listened on (after start), else nil
function methods.port(self)
  return self.http:port()
end

--- server:federation_port() -> the port federation is served on (after
-- start), else nil (also when config.federation is off)
function methods.federation_port(self)
  return self.federation_http and self.federation_http:port()
end

--- server:metrics_port() -> the port /metrics is served on (after start),
-- else nil (also when config.metrics is not set)
function methods.metrics_port(self)
  return self.metrics_http and self.metrics_http:port()
end

--- server:stop([on_stopped]): graceful shutdown; on_stopped() once all
-- connections are closed.
function methods.stop(self, on_stopped)
  if not self.stopping then
    self.stopping = true
    self:observe("server/stopping", self)
  end
  local waiting = 1 + (self.metrics_http and 1 or 0) + (self.federation_http and 1 or 0)
  local function one_stopped()
    waiting = waiting - 1
    if waiting > 0 then return end
    if self.signals then
      for _, s in ipairs(self.signals) do if not s:is_closing() then s:close() end end
      self.signals = nil
    end
    if self.running then uv.stop() end
    if on_stopped then on_stopped() end
  end
  if self.metrics_http then self.metrics_http:stop(one_stopped) end
  if self.federation_http then self.federation_http:stop(one_stopped) end
  self.http:stop(one_stopped)
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
  async.finish_closing()
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
