-- loom.net.dns: SRV lookups over UDP, without blocking the loop.
--
--   local dns = require "loom.net.dns"
--   local list, err = dns.srv("_matrix-fed._tcp.example.org")   -- inside a task
--   --> { { priority, weight, port, target, ttl }, ... } ({} when there is none)
--
-- The query goes to the nameservers of /etc/resolv.conf (or opts.servers),
-- each tried in turn with a timeout; an answer counts only when it comes
-- from the server asked, carries the query's random ID and parses
-- (loom.core.dns checks it byte by byte). NXDOMAIN and empty answers are no
-- records, not errors. A truncated answer gives what it holds.
local ipairs, tonumber, tostring = ipairs, tonumber, tostring
local io_open = io.open
local uv = require "luv"
local core = require "loom.core"
local async = require "loom.async"

local _ENV = nil -- luacheck: ignore 211

local dns = {}

local TIMEOUT = 2000
local MAX_SERVERS = 3

--- dns.nameservers([path]) -> list of IP addresses (resolv.conf order);
-- { "127.0.0.1" } when the file names none.
function dns.nameservers(path)
  local out = {}
  local f = io_open(path or "/etc/resolv.conf", "r")
  if f then
    for line in f:lines() do
      local ip = line:match("^%s*nameserver%s+([%x%.:]+)%s*$")
      if ip and #out < MAX_SERVERS then out[#out + 1] = ip end
    end
    f:close()
  end
  if #out == 0 then out[1] = "127.0.0.1" end
  return out
end

-- One query to one server: the parsed answer, or nil, message.
local function ask(server, port, packet, id, timeout)
  return async.wait(function(wake)
    local udp = uv.new_udp(server:find(":", 1, true) and "inet6" or "inet")
    local timer = uv.new_timer()
    local done = false
    local function finish(res, err)
      if done then return end
      done = true
      timer:close()
      udp:recv_stop()
      udp:close()
      wake(res, err)
    end
    timer:start(timeout, 0, function() finish(nil, "DNS timeout from " .. server) end)
    udp:recv_start(function(err, data, addr)
      if err then return finish(nil, "DNS: " .. err) end
      if not data or not addr or addr.ip ~= server or addr.port ~= port then return end
      local r = core.dns.parse(data, id)
      if r then finish(r) end   -- a packet that does not parse is ignored (spoofing, noise)
    end)
    local ok, serr = udp:send(packet, server, port, function(err)
      if err then finish(nil, "DNS send: " .. err) end
    end)
    if not ok then finish(nil, "DNS send: " .. tostring(serr)) end
  end)
end

--- dns.srv(name, [opts]) -> list | nil, message. opts: servers (IP list),
-- port (53), timeout (ms per server).
function dns.srv(name, opts)
  opts = opts or {}
  local id = tonumber(core.crypto.random_bytes(2):byte(1)) * 256 + core.crypto.random_bytes(1):byte(1)
  local packet, perr = core.dns.srv_query(name, id)
  if not packet then return nil, perr end
  local last_err = "no nameserver"
  for _, server in ipairs(opts.servers or dns.nameservers()) do
    local r, err = ask(server, opts.port or 53, packet, id, opts.timeout or TIMEOUT)
    if r then
      if r.rcode == 0 or r.rcode == 3 then return r.answers end
      last_err = "DNS error code " .. r.rcode .. " from " .. server
    else
      last_err = err
    end
  end
  return nil, last_err
end

return dns
