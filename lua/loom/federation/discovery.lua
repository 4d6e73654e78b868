-- loom.federation.discovery: where a server name is served (the spec's
-- "Resolving server names").
--
--   local d = discovery.new { http = http_client, srv = dns.srv }
--   local where, err = d:resolve("example.org")   -- inside a task
--   --> { host = "matrix.example.org", port = 8448, host_header = "example.org",
--   --     servername = "example.org" }
--
-- In order: an IP literal (with its port, or 8448); a name with an explicit
-- port; /.well-known/matrix/server on the name (HTTPS, certificates checked
-- as the client is configured), whose m.server is resolved in turn by IP
-- literal, explicit port, SRV _matrix-fed._tcp then _matrix._tcp, or port
-- 8448; without a well-known answer, SRV on the name itself, then the name
-- on 8448. host is what to connect to, host_header the Host header to send
-- and servername the name the certificate must carry. Well-known answers
-- are cached (Cache-Control max-age, bounded; a failure for an hour); SRV
-- answers for their TTL. Name lookups go through the client's resolver and
-- address guard, never blocking the loop.
local type, tonumber, setmetatable, ipairs = type, tonumber, setmetatable, ipairs
local math_max, math_min = math.max, math.min
local core = require "loom.core"
local ljson = require "loom.json"
local ipguard = require "loom.net.ipguard"
local async = require "loom.async"

local now_ms = core.now_ms

local _ENV = nil -- luacheck: ignore 211

local discovery = {}

local DEFAULT_PORT = 8448
local WK_DEFAULT_TTL = 24 * 3600 * 1000
local WK_MIN_TTL = 5 * 60 * 1000
local WK_MAX_TTL = 48 * 3600 * 1000
local WK_FAILURE_TTL = 3600 * 1000
local WK_MAX_BYTES = 50 * 1024
local WK_MAX_REDIRECTS = 5
local SRV_MIN_TTL, SRV_MAX_TTL = 60 * 1000, 24 * 3600 * 1000

--- discovery.split(server_name) -> host, port | nil, message
-- The spec's grammar: a DNS name, an IPv4 literal or a bracketed IPv6
-- literal, then an optional :port (1..65535).
function discovery.split(name)
  if type(name) ~= "string" or #name == 0 or #name > 255 then return nil, "bad server name" end
  local host, port = name:match("^(%[[%x:%.]+%])(.*)$")
  if not host then host, port = name:match("^([^:]+)(.*)$") end
  if not host then return nil, "bad server name" end
  if port ~= "" then
    local digits = port:match("^:(%d+)$")
    local n = digits and #digits <= 5 and tonumber(digits)
    if not n or n < 1 or n > 65535 then return nil, "bad port in server name" end
    port = n
  else
    port = nil
  end
  if host:sub(1, 1) == "[" then
    if not ipguard.parse(host:sub(2, -2)) then return nil, "bad IPv6 literal in server name" end
  elseif not host:match("^[%w%-%.]+$") or host:find("%.%.") then
    return nil, "bad host in server name"
  end
  return host, port
end

local function is_ip(host)
  if host:sub(1, 1) == "[" then return true end
  return host:match("^%d+%.%d+%.%d+%.%d+$") ~= nil
end

local function connect_host(host) return (host:gsub("^%[(.*)%]$", "%1")) end

local Discovery = {}
Discovery.__index = Discovery
Discovery.__name = "loom.federation.Discovery"

--- discovery.new { http = loom.http.client, srv = function(name) -> list | nil,
-- err (inside a task; list of { target, port, priority, weight, ttl }),
-- well_known_port (443; another for test networks) }
function discovery.new(opts)
  return setmetatable({ http = opts.http, srv = opts.srv, wk_port = opts.well_known_port or 443,
    wk_cache = {}, srv_cache = {} }, Discovery)
end

-- max-age of a Cache-Control header, in ms, or nil.
local function max_age(headers)
  local cc = headers and headers["cache-control"]
  if type(cc) ~= "string" then return nil end
  if cc:find("no%-store") then return 0 end
  local n = cc:match("max%-age=(%d+)")
  return n and tonumber(n) * 1000 or nil
end

-- /.well-known/matrix/server of host: the delegated server name, or nil.
local function well_known(self, host)
  local hit = self.wk_cache[host]
  local now = now_ms()
  if hit and hit.expires > now then return hit.value end
  local value, ttl = nil, WK_FAILURE_TTL
  local path, fetch_host = "/.well-known/matrix/server", host
  for _ = 1, WK_MAX_REDIRECTS do
    local res = self.http:fetch { host = fetch_host, port = self.wk_port, tls = true, path = path, timeout = 10000 }
    if not res then break end
    if res.status >= 300 and res.status < 400 and type(res.headers.location) == "string" then
      local h, p = res.headers.location:match("^https://([^/]+)(/.*)$")
      if not h then break end
      fetch_host, path = h, p
    else
      if res.status == 200 and #res.body <= WK_MAX_BYTES then
        local doc = core.json.decode(res.body)
        local m = ljson.is_object(doc) and doc["m.server"]
        if type(m) == "string" and discovery.split(m) then
          value = m
          ttl = max_age(res.headers) or WK_DEFAULT_TTL
          ttl = math_min(math_max(ttl, WK_MIN_TTL), WK_MAX_TTL)
        end
      end
      break
    end
  end
  self.wk_cache[host] = { value = value, expires = now + ttl }
  return value
end

-- The first SRV answer of name (lowest priority, then highest weight).
local function srv_lookup(self, name)
  if not self.srv then return nil end
  local hit = self.srv_cache[name]
  local now = now_ms()
  if hit and hit.expires > now then return hit.value end
  local list = self.srv(name)
  local best
  for _, r in ipairs(list or {}) do
    if r.target ~= "" and r.target ~= "." and (not best or r.priority < best.priority
        or (r.priority == best.priority and r.weight > best.weight)) then
      best = r
    end
  end
  local ttl = best and math_min(math_max((best.ttl or 0) * 1000, SRV_MIN_TTL), SRV_MAX_TTL) or SRV_MIN_TTL
  local value = best and { host = (best.target:gsub("%.$", "")), port = best.port } or nil
  self.srv_cache[name] = { value = value, expires = now + ttl }
  return value
end

-- Resolves a name (no well-known step): explicit port, SRV, 8448.
local function by_srv(self, host, port, host_header)
  if is_ip(host) then
    local ip = connect_host(host)
    return { host = ip, port = port or DEFAULT_PORT, host_header = host_header, servername = ip }
  end
  if port then return { host = host, port = port, host_header = host_header, servername = host } end
  for _, prefix in ipairs { "_matrix-fed._tcp.", "_matrix._tcp." } do
    local s = srv_lookup(self, prefix .. host)
    if s then return { host = s.host, port = s.port, host_header = host_header, servername = host } end
  end
  return { host = host, port = DEFAULT_PORT, host_header = host_header, servername = host }
end

--- d:resolve(server_name) -> { host, port, host_header, servername } | nil,
-- message. Inside a task.
function Discovery.resolve(self, server_name)
  local host, port = discovery.split(server_name)
  if not host then return nil, port end
  if is_ip(host) or port then return by_srv(self, host, port, server_name) end
  local delegated = async.running() and well_known(self, host)
  if delegated then
    local dh, dp = discovery.split(delegated)
    return by_srv(self, dh, dp, delegated)
  end
  return by_srv(self, host, nil, server_name)
end

discovery.DEFAULT_PORT = DEFAULT_PORT
return discovery
