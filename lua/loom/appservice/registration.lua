-- loom.appservice.registration: application service registration files
-- (Application Service API, "Registration"), the YAML files bridges ship,
-- read with lyaml and checked before the server starts.
--
--   local registration = require "loom.appservice.registration"
--   local services, err = registration.load({ "bridges/irc.yaml" }, { server_name = "example.org",
--     dir = config_dir })                          -- nil, message naming the file and the key
--   local svc, err = registration.from_table(tbl, "irc.yaml", "example.org")
--
-- A service: { id, url (nil when the registration has url: null), as_token,
-- hs_token, sender (the full user ID of sender_localpart), sender_localpart,
-- namespaces = { users = {ns...}, aliases = {ns...}, rooms = {ns...} },
-- rate_limited (default false), protocols (list), receive_ephemeral,
-- source }, where ns = { regex = loom.core.regex, exclusive = bool,
-- pattern = text }. Namespace regexes are POSIX extended regular expressions
-- matched against the whole value (an ID or alias matches when the pattern
-- covers all of it: "@_irc_.*" covers "@_irc_bob:example.org"), compiled by
-- loom.core.regex, whose time and memory are bounded for every pattern.
--
-- Refused: a missing or mistyped key, a bad or over-complex regex, an
-- unparsable sender_localpart, two services with one id, as_token or
-- hs_token (or one service's as_token equal to another's hs_token), a
-- service whose sender falls in another service's exclusive user namespace,
-- and two exclusive namespaces of different services with the same regex.
local core = require "loom.core"

local type, ipairs, pairs, tostring, pcall, require = type, ipairs, pairs, tostring, pcall, require
local io_open, string_format, string_find = io.open, string.format, string.find
local math_type = math.type
local regex = core.regex

local _ENV = nil -- luacheck: ignore 211

local registration = {}

local KINDS = { "users", "aliases", "rooms" }
registration.KINDS = KINDS

local function resolve(path, dir)
  if path:sub(1, 1) == "/" or not dir or dir == "" or dir == "." then return path end
  if dir:sub(-1) == "/" then return dir .. path end
  return dir .. "/" .. path
end

local function fail(source, fmt, ...)
  return nil, string_format("%s: " .. fmt, source, ...), "config_error"
end

local function nonempty_string(v) return type(v) == "string" and v ~= "" end

-- yaml null (lyaml.null) or Lua nil
local function is_null(v, null) return v == nil or (null ~= nil and v == null) end

--- One registration (a decoded YAML document): service, or nil, message,
-- "config_error". source names it in messages (the file name).
function registration.from_table(t, source, server_name, null)
  source = source or "registration"
  if type(t) ~= "table" then return fail(source, "a registration must be a mapping") end
  for _, k in ipairs { "id", "as_token", "hs_token", "sender_localpart" } do
    if not nonempty_string(t[k]) then return fail(source, "%s must be a non-empty string", k) end
  end
  local url = t.url
  if url == nil then return fail(source, "url is required (null for a service without traffic)") end
  if url == null or url == core.json.null then
    url = nil
  elseif not (type(url) == "string" and string_find(url, "^https?://[^/]") ~= nil) then
    return fail(source, "url must be an http(s) URL or null")
  end
  local lp = t.sender_localpart
  local sender = "@" .. lp .. ":" .. server_name
  if string_find(lp, "^[%w%.%-_=/+]+$") == nil then
    return fail(source, "sender_localpart %q has characters a user ID may not hold", lp)
  end
  local ns = t.namespaces
  if is_null(ns, null) or ns == core.json.null then ns = {} end
  if type(ns) ~= "table" then return fail(source, "namespaces must be a mapping") end
  local namespaces = {}
  for _, kind in ipairs(KINDS) do
    local list = ns[kind]
    if is_null(list, null) or list == core.json.null then list = {} end
    if type(list) ~= "table" then return fail(source, "namespaces.%s must be a list", kind) end
    local out = {}
    for i, entry in pairs(list) do
      if math_type(i) ~= "integer" or i < 1 or i > #list then
        return fail(source, "namespaces.%s must be a list", kind)
      end
      if type(entry) ~= "table" then return fail(source, "namespaces.%s[%d] must be a mapping", kind, i) end
      if type(entry.regex) ~= "string" then
        return fail(source, "namespaces.%s[%d].regex must be a string", kind, i)
      end
      if type(entry.exclusive) ~= "boolean" then
        return fail(source, "namespaces.%s[%d].exclusive must be true or false", kind, i)
      end
      local re, msg = regex.compile(entry.regex, { anchored = true })
      if not re then
        return fail(source, "namespaces.%s[%d].regex %q: %s", kind, i, entry.regex, tostring(msg))
      end
      out[i] = { regex = re, exclusive = entry.exclusive, pattern = entry.regex }
    end
    namespaces[kind] = out
  end
  local rate_limited = t.rate_limited
  if is_null(rate_limited, null) then rate_limited = false end
  if type(rate_limited) ~= "boolean" then return fail(source, "rate_limited must be true or false") end
  local receive_ephemeral = t.receive_ephemeral
  if is_null(receive_ephemeral, null) then receive_ephemeral = t["de.sorunome.msc2409.push_ephemeral"] end
  if is_null(receive_ephemeral, null) then receive_ephemeral = false end
  if type(receive_ephemeral) ~= "boolean" then return fail(source, "receive_ephemeral must be true or false") end
  local protocols = t.protocols
  if is_null(protocols, null) then protocols = {} end
  if type(protocols) ~= "table" then return fail(source, "protocols must be a list of strings") end
  local plist = {}
  for i, p in ipairs(protocols) do
    if not nonempty_string(p) then return fail(source, "protocols[%d] must be a string", i) end
    plist[i] = p
  end
  return {
    id = t.id, url = url, as_token = t.as_token, hs_token = t.hs_token,
    sender_localpart = lp, sender = sender, namespaces = namespaces,
    rate_limited = rate_limited, receive_ephemeral = receive_ephemeral, protocols = plist,
    source = source,
  }
end

--- Parse one YAML text: service, or nil, message, "config_error".
function registration.parse(text, source, server_name)
  local ok, lyaml = pcall(require, "lyaml")
  if not ok then return fail(source, "reading registrations needs lyaml (Debian: lua-yaml)") end
  local okp, doc = pcall(lyaml.load, text)
  if not okp then return fail(source, "not valid YAML: %s", tostring(doc)) end
  return registration.from_table(doc, source, server_name, lyaml.null)
end

--- Check a set of services against each other: true, or nil, message,
-- "config_error".
function registration.check_all(services)
  local ids, tokens = {}, {}
  for _, s in ipairs(services) do
    if ids[s.id] then return fail(s.source, "id %q is also the id of %s", s.id, ids[s.id].source) end
    ids[s.id] = s
    for _, k in ipairs { "as_token", "hs_token" } do
      local other = tokens[s[k]]
      if other and other ~= s then
        return fail(s.source, "%s is also a token of %s: every token must be unique", k, other.source)
      end
      if other == s then return fail(s.source, "as_token and hs_token must differ") end
      tokens[s[k]] = s
    end
  end
  for _, a in ipairs(services) do
    for _, b in ipairs(services) do
      if a ~= b then
        for _, ns in ipairs(b.namespaces.users) do
          if ns.exclusive and ns.regex:match(a.sender) then
            return fail(a.source, "sender %s is inside the exclusive user namespace %q of %s",
              a.sender, ns.pattern, b.source)
          end
        end
        for _, kind in ipairs(KINDS) do
          for _, na in ipairs(a.namespaces[kind]) do
            for _, nb in ipairs(b.namespaces[kind]) do
              if (na.exclusive or nb.exclusive) and na.pattern == nb.pattern then
                return fail(a.source, "the %s namespace %q overlaps the exclusive one of %s",
                  kind, na.pattern, b.source)
              end
            end
          end
        end
      end
    end
  end
  return true
end

--- Read the registration files: services, or nil, message, "config_error".
-- opts.server_name (required), opts.dir (relative paths are taken from
-- it). An entry may also be a table (an already decoded registration; its
-- source is "app_services[i]").
function registration.load(list, opts)
  local services = {}
  if list == nil then return services end
  if type(list) ~= "table" then return fail("config", "app_services must be a list of file names") end
  for i, entry in ipairs(list) do
    local svc, err, code
    if type(entry) == "table" then
      svc, err, code = registration.from_table(entry, "app_services[" .. i .. "]", opts.server_name)
    elseif nonempty_string(entry) then
      local path = resolve(entry, opts.dir)
      local f = io_open(path, "rb")
      if not f then return fail(path, "cannot read the registration file") end
      local text = f:read("a")
      f:close()
      svc, err, code = registration.parse(text or "", path, opts.server_name)
    else
      return fail("config", "app_services[%d] must be a file name", i)
    end
    if not svc then return nil, err, code end
    services[#services + 1] = svc
  end
  local ok, err, code = registration.check_all(services)
  if not ok then return nil, err, code end
  return services
end

return registration
