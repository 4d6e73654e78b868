-- loom.config: the configuration keys (their defaults and checks, the one
-- list of them: loom.new checks its config table with it too) and the
-- configuration file, loom.cfg.lua. The file is a plain Lua file
-- of `key = value` lines, run in an empty environment (as Prosody's
-- prosody.cfg.lua is); the globals it sets are the configuration, merged over
-- the documented defaults. Unknown keys are kept (scripts read them); a known
-- key with a value of the wrong type is an error that names the key.
--
--   local config = require "loom.cli.config"
--   local cfg, err = config.load("var/loom.cfg.lua")   -- nil, message, "config_error"
--   local server = require("loom").new(cfg)
--
-- See docs/config.md for every key.
local pairs, ipairs, type, load, tostring, setmetatable = pairs, ipairs, type, load, tostring, setmetatable
local tonumber, select = tonumber, select
local error, pcall = error, pcall
local io_open, string_format, math_type = io.open, string.format, math.type
local table_sort, table_concat = table.sort, table.concat

local _ENV = nil -- luacheck: ignore 211

local config = {}

--- The defaults of every documented key (docs/config.md). Tables are copied
-- by config.defaults_copy(), never shared with a loaded configuration or
-- between servers.
config.defaults = {
  server_name = "localhost",           -- the Matrix server name: user IDs are @name:server_name
  host = "127.0.0.1",                  -- IP address to listen on
  port = 8008,                         -- TCP port; 0 picks a free one
  public_baseurl = nil,                -- the URL clients use; default http://host:port
  database = { path = "var/loom.db" }, -- the SQLite database (relative to the working directory)
  log_level = "info",                  -- debug | info | warn | error
  log_format = "text",                 -- text | json (one JSON object per line)
  metrics = nil,                       -- { host = "127.0.0.1", port = 9108 }: serve /metrics (docs/metrics.md)
  default_room_version = "11",         -- room version of new rooms
  password_iterations = 100000,        -- PBKDF2-SHA256 rounds for new password hashes
  enable_registration = true,          -- open /register (false: 403; bin/loom register-user still works)
  allow_guest_access = false,          -- /register?kind=guest (false: 403 M_GUEST_ACCESS_FORBIDDEN)
  versions = {},                       -- /versions list; empty: what loom implements (loom.api)
  unstable_features = {},              -- /versions unstable_features
  well_known_client = nil,             -- body of /.well-known/matrix/client; default m.homeserver
  limits = nil,                        -- HTTP limits (docs/http.md)
  timeouts = nil,                      -- HTTP timeouts in ms (docs/http.md)
  scripts = nil,                       -- policy scripts, relative to the config file (docs/scripting.md)
  pid_file = nil,                      -- bin/loom serve's pid; default loom.pid beside the database
  logger = nil,                        -- function(level, message) (loom.new only); default: standard error
  housekeeping = nil,                  -- WAL checkpoints and GC mode while serving (docs/db.md)
  federation = nil,                    -- { host, port = 8448, tls_certificate, tls_private_key,
                                       --   verify_certificates, allow_ips }: the Server-Server API
                                       --   (docs/federation.md); absent or port = 0: off
  media = nil,                         -- the content repository: { store_path, max_upload_size, quota,
                                       --   legacy, ... } (docs/media.md)
  push = nil,                          -- { allow_ips, verify_certificates, retry_base_ms, retry_max_ms,
                                       --   give_up_ms, timeout_ms, max_queue }: pushers (docs/push.md)
  presence = true,                     -- presence (PUT/GET /presence, /sync presence); false: none at all
  presence_idle_ms = 300000,           -- an online user idle this long becomes unavailable
  presence_offline_ms = 30000,         -- a user not syncing (nor active) this long becomes offline
  user_directory = nil,                -- { search_all_users = false }: /user_directory/search's scope
  turn_uris = nil,                     -- TURN server URIs for /voip/turnServer; absent: {}
  turn_shared_secret = nil,            -- TURN REST API shared secret (time-limited credentials)
  turn_username = nil,                 -- fixed TURN credentials, when there is no shared secret
  turn_password = nil,
  turn_user_lifetime_ms = 3600000,     -- lifetime of shared-secret TURN credentials
  server_notices = nil,                -- { system_mxid_localpart, system_mxid_display_name, room_name }:
                                       --   the admin API's server notices (docs/admin.md); absent: off
  identity_server_allow_loopback = false, -- third-party invites may ask an identity server on 127.0.0.1/::1
  identity_server_http = false,        -- ask identity servers over plain HTTP (tests only; default HTTPS)
  app_services = nil,                  -- application service registration files (YAML), relative to
                                       --   the config file (docs/appservices.md)
  app_service_allow_ips = nil,         -- addresses services may have (default loopback and private networks)
  app_service_retry_ms = 2000,         -- first retry of an undelivered transaction (doubling, up to 64x)
}

-- key -> checker(value) returning nil when fine, else what was expected.
local function integer(min, max)
  return function(v)
    if math_type(v) ~= "integer" or v < min or v > max then
      return string_format("an integer %d..%d", min, max)
    end
  end
end
local function of_type(ty)
  return function(v) if type(v) ~= ty then return "a " .. ty end end
end
local function one_of(...)
  local allowed = { ... }
  return function(v)
    for _, a in ipairs(allowed) do if v == a then return nil end end
    return "one of " .. table_concat(allowed, ", ")
  end
end

-- An IP address literal (what the listener binds: no host names).
local function ip_address(v)
  if type(v) ~= "string" then return false end
  local a, b, c, d = v:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if a then
    for _, part in ipairs { a, b, c, d } do
      if #part > 3 or tonumber(part) > 255 then return false end
    end
    return true
  end
  local colons = select(2, v:gsub(":", ""))
  return colons >= 2 and colons <= 7 and v:match("^[%x:%.]+$") ~= nil and #v <= 45
end

config.checks = {
  server_name = function(v)
    if type(v) ~= "string" or v == "" or v:find("[%s/@]") then return "a server name (host or host:port)" end
  end,
  host = function(v) if not ip_address(v) then return "an IP address (such as 127.0.0.1 or ::1)" end end,
  port = integer(0, 65535),
  public_baseurl = function(v)
    if type(v) ~= "string" or not v:match("^https?://") then return "an http:// or https:// URL" end
  end,
  database = function(v)
    if type(v) ~= "table" or type(v.path) ~= "string" then return "a table with a path string" end
    local sync = v.synchronous
    if sync ~= nil and (type(sync) ~= "string" or not ({ OFF = 1, NORMAL = 1, FULL = 1, EXTRA = 1 })[sync:upper()]) then
      return "a table whose synchronous is FULL, NORMAL, EXTRA or OFF"
    end
    if v.group_commit ~= nil and type(v.group_commit) ~= "boolean" then
      return "a table whose group_commit is true or false"
    end
  end,
  log_level = one_of("debug", "info", "warn", "error"),
  log_format = one_of("text", "json"),
  metrics = function(v)
    if type(v) ~= "table" or math_type(v.port) ~= "integer" or v.port < 0 or v.port > 65535
        or (v.host ~= nil and not ip_address(v.host)) then
      return "a table with a port (an integer 0..65535) and an optional host (an IP address)"
    end
  end,
  federation = function(v)
    local bad = "a table with port (0..65535), host (an IP address), tls_certificate and tls_private_key"
      .. " (file names), verify_certificates (boolean), allow_ips (CIDR ranges) and key_validity_ms"
    if type(v) ~= "table" then return bad end
    if v.port ~= nil and (math_type(v.port) ~= "integer" or v.port < 0 or v.port > 65535) then return bad end
    if v.host ~= nil and not ip_address(v.host) then return bad end
    for _, k in ipairs { "tls_certificate", "tls_private_key" } do
      if v[k] ~= nil and (type(v[k]) ~= "string" or v[k] == "") then return bad end
    end
    if v.verify_certificates ~= nil and type(v.verify_certificates) ~= "boolean" then return bad end
    if v.allow_ips ~= nil then
      if type(v.allow_ips) ~= "table" then return bad end
      for _, r in ipairs(v.allow_ips) do if type(r) ~= "string" then return bad end end
    end
    if v.key_validity_ms ~= nil and (math_type(v.key_validity_ms) ~= "integer" or v.key_validity_ms < 60000) then
      return bad
    end
  end,
  default_room_version = one_of("3", "4", "5", "6", "7", "8", "9", "10", "11", "12"),
  password_iterations = integer(1000, 100000000),
  enable_registration = function(v) if type(v) ~= "boolean" then return "true or false" end end,
  allow_guest_access = function(v) if type(v) ~= "boolean" then return "true or false" end end,
  versions = of_type("table"),
  unstable_features = of_type("table"),
  well_known_client = of_type("table"),
  limits = of_type("table"),
  timeouts = of_type("table"),
  housekeeping = of_type("table"),
  media = of_type("table"),
  logger = of_type("function"),
  scripts = function(v)
    if type(v) ~= "table" then return "an array of file names" end
    for k, x in pairs(v) do
      if math_type(k) ~= "integer" or k < 1 or k > #v or type(x) ~= "string" or x == "" then
        return "an array of file names"
      end
    end
  end,
  push = function(v)
    local bad = "a table with allow_ips (CIDR ranges), verify_certificates (boolean) and retry_base_ms,"
      .. " retry_max_ms, give_up_ms, timeout_ms, max_queue (positive integers)"
    if type(v) ~= "table" then return bad end
    if v.allow_ips ~= nil then
      if type(v.allow_ips) ~= "table" then return bad end
      for _, r in ipairs(v.allow_ips) do if type(r) ~= "string" then return bad end end
    end
    if v.verify_certificates ~= nil and type(v.verify_certificates) ~= "boolean" then return bad end
    for _, k in ipairs { "retry_base_ms", "retry_max_ms", "give_up_ms", "timeout_ms", "max_queue" } do
      if v[k] ~= nil and (math_type(v[k]) ~= "integer" or v[k] < 1) then return bad end
    end
  end,
  presence = function(v) if type(v) ~= "boolean" then return "true or false" end end,
  presence_idle_ms = integer(10, 86400000),
  presence_offline_ms = integer(10, 86400000),
  pid_file = function(v) if type(v) ~= "string" or v == "" then return "a file name" end end,
  user_directory = function(v)
    if type(v) ~= "table" or (v.search_all_users ~= nil and type(v.search_all_users) ~= "boolean") then
      return "a table whose search_all_users is true or false"
    end
  end,
  turn_uris = function(v)
    if type(v) ~= "table" then return "an array of turn: / turns: URIs" end
    for k, x in pairs(v) do
      if math_type(k) ~= "integer" or k < 1 or k > #v or type(x) ~= "string" or not x:match("^turns?:") then
        return "an array of turn: / turns: URIs"
      end
    end
  end,
  turn_shared_secret = function(v) if type(v) ~= "string" or v == "" then return "a non-empty string" end end,
  turn_username = of_type("string"),
  turn_password = of_type("string"),
  turn_user_lifetime_ms = integer(1000, 31536000000),
  identity_server_allow_loopback = function(v) if type(v) ~= "boolean" then return "true or false" end end,
  identity_server_http = function(v) if type(v) ~= "boolean" then return "true or false" end end,
  server_notices = function(v)
    local bad = "a table with system_mxid_localpart (a user name) and optional strings"
      .. " system_mxid_display_name, system_mxid_avatar_url and room_name"
    if type(v) ~= "table" or type(v.system_mxid_localpart) ~= "string"
        or not v.system_mxid_localpart:match("^[a-z0-9._=%-/+]+$") then return bad end
    for _, k in ipairs { "system_mxid_display_name", "system_mxid_avatar_url", "room_name" } do
      if v[k] ~= nil and type(v[k]) ~= "string" then return bad end
    end
  end,
  app_services = function(v)
    if type(v) ~= "table" then return "a list of registration file names" end
    for k, x in pairs(v) do
      if math_type(k) ~= "integer" or k < 1 or k > #v or (type(x) ~= "table" and (type(x) ~= "string" or x == "")) then
        return "a list of registration file names"
      end
    end
  end,
  app_service_allow_ips = function(v)
    if type(v) ~= "table" then return "a list of CIDR ranges" end
    for _, x in ipairs(v) do if type(x) ~= "string" then return "a list of CIDR ranges" end end
  end,
  app_service_retry_ms = integer(1, 3600000),
}

local function copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = copy(x) end
  return out
end

--- A fresh copy of the defaults.
function config.defaults_copy()
  return copy(config.defaults)
end

local function fail(msg) return nil, msg, "config_error" end

--- Check a configuration table (already merged): true, or nil, message,
-- "config_error" naming the first bad key (in key order).
function config.check(cfg, source)
  local keys = {}
  for k in pairs(config.checks) do keys[#keys + 1] = k end
  table_sort(keys)
  for _, k in ipairs(keys) do
    local v = cfg[k]
    if v ~= nil then
      local want = config.checks[k](v)
      if want then
        return fail(string_format("%s: %s must be %s, got %s", source or "config", k, want,
          type(v) == "string" and string_format("%q", v) or type(v)))
      end
    end
  end
  return true
end

--- Merge values over the defaults and check them: config table, or nil,
-- message, "config_error".
function config.from_table(values, source)
  local cfg = config.defaults_copy()
  for k, v in pairs(values or {}) do cfg[k] = v end
  local ok, err, code = config.check(cfg, source)
  if not ok then return nil, err, code end
  return cfg
end

--- Run configuration text (chunkname names it in messages): the table of
-- the globals it set, or nil, message, "config_error".
function config.parse(text, chunkname)
  local values = {}
  -- an empty environment: no functions, no access to the rest of the process
  local env = setmetatable({}, {
    __index = function(_, k)
      if values[k] ~= nil then return values[k] end
      error(string_format("unknown name '%s' (the config file has no functions or globals)", tostring(k)), 2)
    end,
    __newindex = function(_, k, v) values[k] = v end,
  })
  local chunk, err = load(text, "=" .. (chunkname or "config"), "t", env)
  if not chunk then return fail(err) end
  local ok, rerr = pcall(chunk)
  if not ok then return fail(tostring(rerr)) end
  return values
end

--- The directory part of a file name ("." when it has none).
function config.dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end

--- Load a configuration file: the merged and checked config table, or nil,
-- message, "config_error". The table also records config_file (path) and
-- config_dir (its directory: scripts are found relative to it).
function config.load(path)
  local f, err = io_open(path, "rb")
  if not f then return fail("cannot read config file: " .. tostring(err)) end
  local text = f:read("a")
  f:close()
  local values, perr, code = config.parse(text, path)
  if not values then return nil, perr, code end
  local cfg, cerr, ccode = config.from_table(values, path)
  if not cfg then return nil, cerr, ccode end
  cfg.config_file, cfg.config_dir = path, config.dirname(path)
  return cfg
end

--- The pid file of a configuration: config.pid_file, else loom.pid in the
-- database's directory.
function config.pid_file(cfg)
  if cfg.pid_file then return cfg.pid_file end
  local db = type(cfg.database) == "table" and cfg.database.path or "var/loom.db"
  return config.dirname(db) .. "/loom.pid"
end

return config
