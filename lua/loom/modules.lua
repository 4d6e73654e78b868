-- loom.modules: policy scripts. Each file listed in config.scripts runs in
-- its own environment with a `module` object through which it hooks into the
-- server's bus, adds routes and timers, reads options and rooms, and sends
-- events as a local user. Everything a script registers is recorded and
-- removed when it is unloaded, so scripts can be reloaded while serving.
--
--   -- policy/hello.lua (listed as scripts = { "policy/hello.lua" })
--   local greeting = module:get_option_string("greeting", "hello")
--   module:hook("room/join/check", function(info)
--     module:log("info", "%s joins %s", info.user_id, info.room_id)
--   end)
--   module:route("GET", "/_loom/hello", function(req) return { text = greeting .. " " .. req.user_id } end)
--
--   local modules = require "loom.modules"
--   local loader = modules.new(hs)          -- hs: loom.api.homeserver (api.install makes one)
--   loader:load_all()                       -- config.scripts; failures are logged, not raised
--   loader:reload()                         -- re-read the config file; changed/removed/new scripts
--   loader:unload_all()
--
-- See docs/scripting.md.
local setmetatable, getmetatable, pairs, ipairs, type, tostring, error, select =
  setmetatable, getmetatable, pairs, ipairs, type, tostring, error, select
local xpcall, pcall, load, rawequal = xpcall, pcall, load, rawequal
local traceback = debug.traceback
local string_format, string_match, string_gsub, string_sub = string.format, string.match, string.gsub, string.sub
local math_type, math_huge = math.type, math.huge
local io_open = io.open
local uv = require "luv"
local async = require "loom.async"
local errors = require "loom.http.errors"
local config_mod = require "loom.cli.config"

local G = _G
local _ENV = nil -- luacheck: ignore 211

local modules = {}

-- The standard functions every script sees. Library tables are copied into
-- each script's base, so a script that changes string.x changes its own copy.
local BASE_FUNCTIONS = {
  "assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall", "print", "rawequal",
  "rawget", "rawlen", "rawset", "select", "setmetatable", "tonumber", "tostring", "type",
  "xpcall", "require", "collectgarbage", "warn",
}
local BASE_LIBRARIES = { "string", "table", "math", "utf8", "os", "io", "coroutine", "debug" }

local function shallow_copy(t)
  local out = {}
  for k, v in pairs(t) do out[k] = v end
  return out
end

-- A plain copy of a value read from the store, so a script cannot change a
-- cached event (JSON array markers are kept).
local function deep_copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = deep_copy(x) end
  return setmetatable(out, getmetatable(v))
end
modules.deep_copy = deep_copy

-- A fresh environment for one script: its own table, whose __index is a base
-- made for it; load/loadfile/dofile default to that environment.
local function new_environment(mod)
  local base = {}
  for _, name in ipairs(BASE_FUNCTIONS) do base[name] = G[name] end
  for _, name in ipairs(BASE_LIBRARIES) do
    if G[name] then base[name] = shallow_copy(G[name]) end
  end
  local env = setmetatable({}, { __index = base })
  base._G = env
  base._VERSION = G._VERSION
  base.module = mod
  base.load = function(chunk, name, mode, e)
    if e == nil then e = env end
    return load(chunk, name, mode, e)
  end
  base.loadfile = function(path, mode, e)
    if e == nil then e = env end
    return G.loadfile(path, mode, e)
  end
  base.dofile = function(path)
    local chunk, err = G.loadfile(path, "t", env)
    if not chunk then error(err, 2) end
    return chunk()
  end
  return env
end

local function read_file(path)
  local f, err = io_open(path, "rb")
  if not f then return nil, err end
  local text = f:read("a")
  f:close()
  if not text then return nil, "cannot read " .. path end
  return text
end

local function basename(path)
  return string_match(path, "([^/]*)$")
end

--- modules.resolve(path, dir) -> path: a relative path is taken relative to
-- dir (the config file's directory; nil: the working directory).
function modules.resolve(path, dir)
  if string_sub(path, 1, 1) == "/" or not dir or dir == "" or dir == "." then return path end
  if string_sub(dir, -1) == "/" then return dir .. path end
  return dir .. "/" .. path
end

--- modules.script_list(config) -> array of resolved paths | raises on a bad
-- `scripts` value.
function modules.script_list(config)
  local list = config.scripts
  if list == nil then return {} end
  if type(list) ~= "table" then error("config.scripts must be an array of file names", 0) end
  local out = {}
  for i, p in ipairs(list) do
    if type(p) ~= "string" or p == "" then error("config.scripts[" .. i .. "] must be a file name", 0) end
    out[i] = modules.resolve(p, config.config_dir)
  end
  return out
end

---------------------------------------------------------------------------
-- The module object: what a script is given.

local mod_methods = {}
local mod_mt = { __name = "loom.Module", __index = mod_methods,
  __tostring = function(m) return "loom.Module(" .. tostring(m.name) .. ")" end }
modules.methods, modules.mt = mod_methods, mod_mt

-- Every capability checks the script is still loaded: a hook or timer kept
-- by an unloaded script fails loudly instead of acting.
local function live(self, what)
  if self.status == "unloaded" then
    error(string_format("script %s is unloaded: module:%s cannot be used", self.name, what), 3)
  end
end

local function arg_error(self, what, msg)
  error(string_format("%s: module:%s: %s", self.name, what, msg), 3)
end

--- module:hook(name, fn, [priority]) -> fn
function mod_methods.hook(self, name, fn, priority)
  live(self, "hook")
  if type(name) ~= "string" then arg_error(self, "hook", "hook name must be a string") end
  if type(fn) ~= "function" then arg_error(self, "hook", "handler must be a function") end
  if priority ~= nil and type(priority) ~= "number" then arg_error(self, "hook", "priority must be a number") end
  self.loader.server:hook(name, fn, priority, self)
  self.hooks[#self.hooks + 1] = { name = name, fn = fn }
  return fn
end

--- module:unhook(name, fn) -> true when fn was hooked by this script
function mod_methods.unhook(self, name, fn)
  for i, h in ipairs(self.hooks) do
    if h.name == name and rawequal(h.fn, fn) then
      G.table.remove(self.hooks, i)
      return self.loader.server:unhook(name, fn)
    end
  end
  return false
end

-- "/a/{x}/b" and "/a/{y}/b" are the same route
local function route_shape(pattern)
  return (string_gsub(pattern, "{[%w_]+}", "{}"))
end

--- module:route(method, path, fn, [opts]) -> route
-- opts.auth = false: no access token needed (by default req.user_id and
-- req.device_id are set, as for built-in endpoints).
function mod_methods.route(self, method, pattern, fn, opts)
  live(self, "route")
  if type(fn) ~= "function" then arg_error(self, "route", "handler must be a function") end
  if opts ~= nil and type(opts) ~= "table" then arg_error(self, "route", "opts must be a table") end
  local server = self.loader.server
  if type(method) == "string" and type(pattern) == "string" then
    local shape = route_shape(pattern)
    for _, r in ipairs(server.router.routes) do
      if r.method == method and route_shape(r.pattern) == shape then
        arg_error(self, "route", string_format("%s %s is already a route", method, pattern))
      end
    end
  end
  local handler = fn
  if not (opts and opts.auth == false) then handler = self.loader.hs:authed(fn) end
  local ok, route = pcall(server.route, server, method, pattern, handler)
  if not ok then arg_error(self, "route", route) end
  self.routes[#self.routes + 1] = route
  return route
end

-- The value of option name for this script: config[script name][name], else
-- config[name].
local function option(self, name)
  if type(name) ~= "string" then arg_error(self, "get_option", "option name must be a string") end
  local config = self.loader.config
  local own = config[self.name]
  if type(own) == "table" and own[name] ~= nil then return own[name], self.name .. "." .. name end
  return config[name], name
end

-- got: what was found instead, when v itself does not say it
local function bad_option(self, where, want, v, got)
  error(string_format("script %s: option %s must be %s, got %s", self.name, where, want,
    got or (type(v) == "string" and string_format("%q", v)) or (type(v) == "table" and "a table") or tostring(v)), 0)
end

local function check_bounds(self, what, min, max)
  if min ~= nil and type(min) ~= "number" then arg_error(self, what, "min must be a number") end
  if max ~= nil and type(max) ~= "number" then arg_error(self, what, "max must be a number") end
end

local function range_text(min, max)
  if min and max then return string_format(" in %s..%s", tostring(min), tostring(max)) end
  if min then return string_format(" >= %s", tostring(min)) end
  if max then return string_format(" <= %s", tostring(max)) end
  return ""
end

-- A get_option_<kind> method: the option's value through check(self, where,
-- v, min, max), which raises on a bad value and returns the value to give;
-- default when the option is not set. bounded: min and max are checked.
local function getter(fname, bounded, check)
  return function(self, name, default, min, max)
    if bounded then check_bounds(self, fname, min, max) end
    local v, where = option(self, name)
    if v == nil then return default end
    return check(self, where, v, min, max)
  end
end

--- module:get_option_string(name, [default]) -> string | default
mod_methods.get_option_string = getter("get_option_string", false, function(self, where, v)
  if type(v) ~= "string" then bad_option(self, where, "a string", v) end
  return v
end)

--- module:get_option_number(name, [default], [min], [max]) -> number | default
mod_methods.get_option_number = getter("get_option_number", true, function(self, where, v, min, max)
  if type(v) ~= "number" or v ~= v or v == math_huge or v == -math_huge or (min and v < min) or (max and v > max) then
    bad_option(self, where, "a finite number" .. range_text(min, max), v)
  end
  return v
end)

--- module:get_option_integer(name, [default], [min], [max]) -> integer | default
mod_methods.get_option_integer = getter("get_option_integer", true, function(self, where, v, min, max)
  if math_type(v) == "float" and v == v and v > -math_huge and v < math_huge and v % 1 == 0 then
    v = G.math.tointeger(v) or v
  end
  if math_type(v) ~= "integer" or (min and v < min) or (max and v > max) then
    bad_option(self, where, "an integer" .. range_text(min, max), v)
  end
  return v
end)

--- module:get_option_boolean(name, [default]) -> boolean | default
mod_methods.get_option_boolean = getter("get_option_boolean", false, function(self, where, v)
  if type(v) ~= "boolean" then bad_option(self, where, "true or false", v) end
  return v
end)

--- module:get_option_array(name, [default], [min], [max]) -> array (a copy) | default
-- min/max bound the number of items.
mod_methods.get_option_array = getter("get_option_array", true, function(self, where, v, min, max)
  local want = (min or max) and ("an array with" .. range_text(min, max) .. " items") or "an array"
  if type(v) ~= "table" then bad_option(self, where, want, v) end
  local n = #v
  for k in pairs(v) do
    if math_type(k) ~= "integer" or k < 1 or k > n then bad_option(self, where, want, v, "a table with other keys") end
  end
  if (min and n < min) or (max and n > max) then bad_option(self, where, want, v, n .. " items") end
  local out = {}
  for i = 1, n do
    if v[i] == nil then bad_option(self, where, want, v, "an array with holes") end
    out[i] = v[i]
  end
  return out
end)

--- module:log(level, fmt, ...): a line in the server's log, prefixed with
-- the script's name.
local LEVELS = { debug = true, info = true, warn = true, error = true }

function mod_methods.log(self, level, fmt, ...)
  if not LEVELS[level] then arg_error(self, "log", "level must be debug, info, warn or error") end
  local message = select("#", ...) > 0 and string_format(fmt, ...) or tostring(fmt)
  self.loader.server:log(level, "%s: %s", self.name, message)
end

local timer_methods = {}
local timer_mt = { __name = "loom.Module.Timer", __index = timer_methods }

--- handle:stop(): the timer does not fire again.
function timer_methods.stop(self)
  if self.stopped then return end
  self.stopped = true
  if not self.uv:is_closing() then self.uv:close() end
  local list = self.module.timers
  for i, h in ipairs(list) do
    if h == self then G.table.remove(list, i); break end
  end
end

local function check_seconds(self, what, s)
  if type(s) ~= "number" or s ~= s or s < 0 or s > 1e9 then arg_error(self, what, "seconds must be a number >= 0") end
end

local MIN_REPEAT_MS = 1   -- a repeat always waits for the next loop turn

local function arm(handle, seconds, again)
  local mod = handle.module
  local ms = seconds * 1000 // 1 | 0
  if again then
    -- from inside the timer's own callback: the loop's clock stays where the
    -- turn began, so a due timer runs on a later turn, never in this one again
    if ms < MIN_REPEAT_MS then ms = MIN_REPEAT_MS end
  else
    uv.update_time()     -- seconds from now, not from the loop's last turn
  end
  handle.uv:start(ms, 0, function()
    if handle.stopped then return end
    local sok, serr = pcall(async.spawn, handle.fn, handle, function(ok, res)
      if handle.stopped then return end
      if not ok then
        mod:log("error", "timer failed: %s", tostring(res))
        handle:stop()
      elseif type(res) == "number" and res >= 0 and res <= 1e9 then
        arm(handle, res, true)
      else
        if type(res) == "number" then
          mod:log("warn", "timer returned %s, not a number of seconds from 0 to 1e9: stopped", tostring(res))
        end
        handle:stop()
      end
    end, function(level, message) mod:log(level, "%s", message) end)
    if not sok then mod:log("error", "timer failed: %s", tostring(serr)) end
  end)
end

--- module:timer(seconds, fn) -> handle: fn(handle) runs after seconds, in its
-- own task; when it returns a number it runs again that many seconds later.
function mod_methods.timer(self, seconds, fn)
  live(self, "timer")
  check_seconds(self, "timer", seconds)
  if type(fn) ~= "function" then arg_error(self, "timer", "fn must be a function") end
  local handle = setmetatable({ module = self, fn = fn, uv = uv.new_timer(), stopped = false }, timer_mt)
  self.timers[#self.timers + 1] = handle
  arm(handle, seconds)
  return handle
end

--- module:on_unload(fn): fn() runs when the script is unloaded (or reloaded).
function mod_methods.on_unload(self, fn)
  live(self, "on_unload")
  if type(fn) ~= "function" then arg_error(self, "on_unload", "fn must be a function") end
  self.unloaders[#self.unloaders + 1] = fn
end

-- ---- reading the server -------------------------------------------------

--- module:rooms() -> array of the room IDs this server knows
function mod_methods.rooms(self)
  live(self, "rooms")
  return self.loader.hs.store:all_room_ids()
end

--- module:members(room_id, [membership]) -> array of user IDs whose current
-- membership is membership (default "join"); {} for an unknown room.
function mod_methods.members(self, room_id, membership)
  live(self, "members")
  if type(room_id) ~= "string" then arg_error(self, "members", "room_id must be a string") end
  if membership ~= nil and type(membership) ~= "string" then
    arg_error(self, "members", "membership must be a string")
  end
  membership = membership or "join"
  return self.loader.hs.store:current_members(room_id, membership)
end

--- module:state(room_id, type, [state_key]) -> the current state event (a
-- copy) or nil
function mod_methods.state(self, room_id, event_type, state_key)
  live(self, "state")
  if type(room_id) ~= "string" or type(event_type) ~= "string" then
    arg_error(self, "state", "room_id and type must be strings")
  end
  if state_key ~= nil and type(state_key) ~= "string" then arg_error(self, "state", "state_key must be a string") end
  local ev = self.loader.hs.rooms:state_event(room_id, event_type, state_key or "")
  if not ev then return nil end
  return deep_copy(ev)
end

--- module:event(event_id) -> the event (a copy, with event_id) or nil
function mod_methods.event(self, event_id)
  live(self, "event")
  if type(event_id) ~= "string" then arg_error(self, "event", "event_id must be a string") end
  local ev, err, code = self.loader.hs.store:event(event_id)
  if not ev then
    if code == "not_found" then return nil end
    error("cannot read event " .. event_id .. ": " .. tostring(err), 2)
  end
  local out = deep_copy(ev)
  out.event_id = out.event_id or event_id
  return out
end

--- module:user(user_id) -> { user_id, admin, deactivated, created_ts,
-- displayname, avatar_url } of a local account, or nil
function mod_methods.user(self, user_id)
  live(self, "user")
  if type(user_id) ~= "string" then return nil end
  local u = self.loader.hs.accounts:user(user_id)
  return u and deep_copy(u)
end

--- module:user_exists(user_id) -> true when a local account has that ID
function mod_methods.user_exists(self, user_id)
  live(self, "user_exists")
  if type(user_id) ~= "string" then return false end
  return self.loader.hs.accounts:user(user_id) ~= nil
end

--- module:send(user_id, room_id, type, content, [state_key])
--    -> event_id | nil, message, errcode
-- Sends as a local user through the room service: the auth rules and the
-- event hooks apply as for a client's event.
function mod_methods.send(self, user_id, room_id, event_type, content, state_key)
  live(self, "send")
  if type(user_id) ~= "string" or type(room_id) ~= "string" or type(event_type) ~= "string" then
    arg_error(self, "send", "user_id, room_id and type must be strings")
  end
  if type(content) ~= "table" then arg_error(self, "send", "content must be a table") end
  if state_key ~= nil and type(state_key) ~= "string" then arg_error(self, "send", "state_key must be a string") end
  local hs = self.loader.hs
  if hs.store:inside_transaction() then
    -- a check hook runs inside the checked action's transaction: the event
    -- would be rolled back with a veto, so it is refused instead
    return nil, "module:send cannot run inside a check hook; send from room/event/persisted or a timer",
      "M_FORBIDDEN"
  end
  local account = string_match(user_id, "^@[^:]+:(.+)$") == hs.server_name and hs.accounts:user(user_id)
  if not account then return nil, user_id .. " is not a local user", "M_FORBIDDEN" end
  if account.deactivated then return nil, user_id .. " is deactivated", "M_FORBIDDEN" end
  if not hs.store:room_nid(room_id) then return nil, "unknown room " .. room_id, "M_NOT_FOUND" end
  local proto = { type = event_type, sender = user_id, content = deep_copy(content), state_key = state_key }
  local ev, r, code, rule = hs.rooms:send(room_id, proto)
  if not ev then
    local err = errors.is(r) and r or hs:error(r, code, rule)
    if err.status >= 500 then
      self:log("error", "send to %s failed: %s (%s)", room_id, tostring(r), tostring(code))
    end
    return nil, err.message, err.errcode
  end
  return ev.event_id
end

---------------------------------------------------------------------------
-- The loader: one per homeserver.

local methods = {}
local mt = { __name = "loom.Modules", __index = methods }
modules.loader_methods, modules.loader_mt = methods, mt

--- modules.new(hs) -> loader. hs: the homeserver context (loom.api.homeserver).
function modules.new(hs)
  return setmetatable({
    hs = hs,
    server = hs.server,
    config = hs.server.config,
    loaded = {},         -- path -> module
    order = {},          -- paths in load order
  }, mt)
end

-- Removes everything a module registered; never raises.
local function teardown(self, mod)
  for i = #mod.unloaders, 1, -1 do
    local ok, err = xpcall(mod.unloaders[i], traceback)
    if not ok then self.server:log("error", "script %s: on_unload failed: %s", mod.name, tostring(err)) end
  end
  mod.unloaders = {}
  mod.status = "unloaded"
  for _, h in ipairs(mod.hooks) do self.server:unhook(h.name, h.fn) end
  mod.hooks = {}
  for _, r in ipairs(mod.routes) do self.server.router:remove(r) end
  mod.routes = {}
  for i = #mod.timers, 1, -1 do mod.timers[i]:stop() end
end

-- Runs a script's text as a new module: module, or nil and the error (with
-- a traceback); whatever it registered before failing is removed.
local function instantiate(self, path, text)
  local name = string_gsub(basename(path), "%.lua$", "")
  local mod = setmetatable({
    name = name, path = path, server_name = self.hs.server_name, loader = self, status = "loading",
    hooks = {}, routes = {}, timers = {}, unloaders = {}, source = text,
  }, mod_mt)
  local env = new_environment(mod)
  mod.environment = env
  local chunk, err = load(text, "@" .. path, "t", env)
  if not chunk then return nil, err end
  local ok, rerr = xpcall(chunk, traceback)
  if not ok then
    teardown(self, mod)
    return nil, rerr
  end
  mod.status = "loaded"
  return mod
end

local function by_name(self, name, except)
  for _, p in ipairs(self.order) do
    local m = self.loaded[p]
    if p ~= except and m.name == name then return m end
  end
end

local function remember(self, path, mod)
  if not self.loaded[path] then self.order[#self.order + 1] = path end
  self.loaded[path] = mod
end

local function forget(self, path)
  self.loaded[path] = nil
  for i, p in ipairs(self.order) do
    if p == path then G.table.remove(self.order, i); break end
  end
end

--- loader:load(path) -> module | nil, message. path is used as given. A
-- script that raises is logged with its traceback and not loaded.
function methods.load(self, path)
  if self.loaded[path] then return nil, "script " .. path .. " is already loaded" end
  local text, err = read_file(path)
  if not text then
    self.server:log("error", "script %s: cannot read: %s", path, tostring(err))
    return nil, err
  end
  local name = string_gsub(basename(path), "%.lua$", "")
  if by_name(self, name) then
    local msg = "a script named " .. name .. " is already loaded"
    self.server:log("error", "script %s: %s", path, msg)
    return nil, msg
  end
  local mod, lerr = instantiate(self, path, text)
  if not mod then
    self.server:log("error", "script %s failed to load: %s", path, tostring(lerr))
    return nil, lerr
  end
  remember(self, path, mod)
  self.server:log("info", "script %s loaded (%s)", mod.name, path)
  return mod
end

--- loader:unload(path_or_name) -> true | nil, message
function methods.unload(self, which)
  local path = which
  if not self.loaded[path] then
    local m = by_name(self, which)
    path = m and m.path
  end
  local mod = path and self.loaded[path]
  if not mod then return nil, "no script " .. tostring(which) .. " is loaded" end
  teardown(self, mod)
  forget(self, path)
  self.server:log("info", "script %s unloaded", mod.name)
  return true
end

--- loader:get(path_or_name) -> module | nil
function methods.get(self, which)
  return self.loaded[which] or by_name(self, which)
end

--- loader:list() -> array of the loaded modules, in load order
function methods.list(self)
  local out = {}
  for i, p in ipairs(self.order) do out[i] = self.loaded[p] end
  return out
end

--- loader:load_all() -> number loaded, number failed: the scripts of
-- config.scripts, in order.
function methods.load_all(self)
  local ok, list = pcall(modules.script_list, self.config)
  if not ok then
    self.server:log("error", "scripts: %s", tostring(list))
    return 0, 1
  end
  local n, failed = 0, 0
  for _, path in ipairs(list) do
    if self.loaded[path] or self:load(path) then n = n + 1 else failed = failed + 1 end
  end
  return n, failed
end

--- loader:unload_all(): unloads every script, last loaded first.
function methods.unload_all(self)
  for i = #self.order, 1, -1 do self:unload(self.order[i]) end
end

-- Reloads one script whose file changed: the new text replaces the old; if
-- it fails to load, the old text is loaded again.
local function reload_one(self, path, text, report)
  local old = self.loaded[path]
  teardown(self, old)
  local mod, err = instantiate(self, path, text)
  if mod then
    self.loaded[path] = mod
    report.reloaded[#report.reloaded + 1] = mod.name
    self.server:log("info", "script %s reloaded", mod.name)
    return
  end
  self.server:log("error", "script %s failed to reload (the previous version stays): %s", path, tostring(err))
  report.failed[#report.failed + 1] = old.name
  local back, berr = instantiate(self, path, old.source)
  if back then
    self.loaded[path] = back
  else
    forget(self, path)
    self.server:log("error", "script %s: the previous version failed too: %s", path, tostring(berr))
  end
end

--- loader:reload([config]) -> report { loaded, reloaded, unloaded, failed
-- = arrays of script names } | nil, message
-- config: the new configuration; by default the config file the server was
-- started with (config.config_file) is read again, else the current one.
-- Scripts no longer listed are unloaded, listed ones whose text changed are
-- reloaded, new ones loaded. Options are read from the new configuration.
function methods.reload(self, config)
  if config == nil and self.config.config_file then
    local cfg, err = config_mod.load(self.config.config_file)
    if not cfg then
      self.server:log("error", "reload: %s", tostring(err))
      return nil, err
    end
    config = cfg
  end
  config = config or self.config
  local ok, list = pcall(modules.script_list, config)
  if not ok then
    self.server:log("error", "reload: %s", tostring(list))
    return nil, list
  end
  self.config = config
  local report = { loaded = {}, reloaded = {}, unloaded = {}, failed = {} }
  local wanted = {}
  for _, p in ipairs(list) do wanted[p] = true end
  for i = #self.order, 1, -1 do
    local p = self.order[i]
    if not wanted[p] then
      report.unloaded[#report.unloaded + 1] = self.loaded[p].name
      self:unload(p)
    end
  end
  for _, p in ipairs(list) do
    local mod = self.loaded[p]
    if mod then
      local text, err = read_file(p)
      if not text then
        self.server:log("error", "script %s: cannot read (the loaded version stays): %s", p, tostring(err))
        report.failed[#report.failed + 1] = mod.name
      elseif text ~= mod.source then
        reload_one(self, p, text, report)
      end
    else
      local m = self:load(p)
      local name = string_gsub(basename(p), "%.lua$", "")
      if m then report.loaded[#report.loaded + 1] = m.name else report.failed[#report.failed + 1] = name end
    end
  end
  self.server:log("info", "scripts reloaded: %d loaded, %d reloaded, %d unloaded, %d failed",
    #report.loaded, #report.reloaded, #report.unloaded, #report.failed)
  return report
end

--- loader:watch_sighup(): reload on SIGHUP until loader:stop().
function methods.watch_sighup(self)
  if self.signal then return end
  local s = uv.new_signal()
  s:start("sighup", function()
    local ok, err = xpcall(methods.reload, traceback, self)
    if not ok then self.server:log("error", "reload failed: %s", tostring(err)) end
  end)
  self.signal = s
end

--- loader:stop(): stops watching SIGHUP and unloads every script.
function methods.stop(self)
  if self.signal then
    if not self.signal:is_closing() then self.signal:close() end
    self.signal = nil
  end
  self:unload_all()
end

--- modules.install(hs) -> loader: loads config.scripts now, watches SIGHUP
-- once the server has started, unloads everything when it stops.
function modules.install(hs)
  local loader = modules.new(hs)
  local server = hs.server
  loader:load_all()
  server:hook("server/started", function()
    loader:watch_sighup()
  end)
  server:hook("server/stopping", function()
    loader:stop()
  end)
  return loader
end

modules.new_environment = new_environment
return modules
