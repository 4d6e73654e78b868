-- What the federation specs share: free ports, running a task to its end,
-- and loom servers that federate over TLS on 127.0.0.1.
--
--   local fed = require "support.fed"
--   local a = fed.server(dir, "a")         -- t (support.hs) with t.name = "localhost:<port>", t.fed_port
--   local r = fed.task(function() return a.hs.federation:request(...) end)
local uv = require "luv"
local async = require "loom.async"
local tesths = require "support.hs"
local loop = require "support.loop"

local _M = {}

--- A TCP port on 127.0.0.1 that nothing listens on now.
function _M.free_port()
  local probe = uv.new_tcp()
  probe:bind("127.0.0.1", 0)
  local port = probe:getsockname().port
  probe:close()
  return port
end

--- Runs fn as a loom.async task, turning the loop until it ends (at most
-- limit ms, default 15000); returns its result, raises its error.
function _M.task(fn, limit)
  local done, ok, res
  async.spawn(fn, nil, function(o, r) done, ok, res = true, o, r end)
  assert(loop.turn_until(function() return done end, limit or 15000), "task did not finish")
  assert(ok, res)
  return res
end

--- A loom server named localhost:<port> with a federation listener on that
-- port (its certificate and key made in dir as <tag>.crt/.key), accepting
-- self-signed peers and allowed to reach 127.0.0.1. extra: more config.
function _M.server(dir, tag, extra)
  local port = _M.free_port()
  local cfg = {
    server_name = "localhost:" .. port, log_level = os.getenv("SPEC_LOG") or "warn",
    federation = { port = port, tls_certificate = dir .. "/" .. tag .. ".crt",
                   tls_private_key = dir .. "/" .. tag .. ".key",
                   verify_certificates = false, allow_ips = { "127.0.0.1/32" } },
  }
  for k, v in pairs(extra or {}) do cfg[k] = v end
  local t = tesths.start(cfg)
  t.fed_port = port
  t.name = "localhost:" .. port
  return t
end

return _M
