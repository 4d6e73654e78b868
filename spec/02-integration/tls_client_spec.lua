-- TLS (loom.core.tls over luv) and the outbound HTTP client, on real sockets on
-- 127.0.0.1: loom's HTTP server with a self-signed certificate, the client
-- with and without certificate checks, the address guard, keep-alive, the
-- per-destination connection limit and timeouts.
local uv = require "luv"
local core = require "loom.core"
local async = require "loom.async"
local http = require "loom.http.server"
local response = require "loom.http.response"
local client = require "loom.http.client"
local loop = require "support.loop"
local files = require "support.files"

local dir, cert, key

-- Runs fn(...) as a task and turns the loop until it ends; returns its result.
local function task(fn, limit)
  local done, ok, res
  async.spawn(fn, nil, function(o, r) done, ok, res = true, o, r end)
  assert(loop.turn_until(function() return done end, limit or 8000), "task did not finish")
  assert(ok, res)
  return res
end

-- A server (TLS when tls is true) answering GET /echo/<x> with x, /sleep/<ms>
-- after ms, /big with 1 MiB and POST /len with the body's length; counts
-- connections by peer port.
local function server(tls)
  local peers = {}
  local srv = http.new {
    port = 0,
    tls = tls and assert(core.tls.context { server = true, certificate = cert, private_key = key }) or nil,
    handler = function(req)
      peers[req.peer.port] = true
      local x = req.path:match("^/echo/(.*)$")
      if x then return response.new(200, x, { ["Content-Type"] = "text/plain" }) end
      local ms = req.path:match("^/sleep/(%d+)$")
      if ms then
        async.sleep(tonumber(ms))
        return response.new(200, "slept")
      end
      if req.path == "/big" then return response.new(200, ("b"):rep(1024 * 1024)) end
      if req.path == "/len" then return response.new(200, tostring(#req.body)) end
      return response.new(404, "no")
    end,
  }
  assert(srv:listen())
  local function count()
    local n = 0
    for _ in pairs(peers) do n = n + 1 end
    return n
  end
  return srv, count
end

local function stop(srv)
  local stopped = false
  srv:stop(function() stopped = true end)
  assert(loop.turn_until(function() return stopped end, 5000))
  async.finish_closing()
end

describe("TLS and the outbound HTTP client", function()
  setup(function()
    dir = files.tmpdir("loom-tls")
    cert, key = dir .. "/tls.crt", dir .. "/tls.key"
    assert(core.tls.self_signed(cert, key, "localhost"))
  end)

  teardown(function()
    files.remove_tree(dir)
  end)

  it("makes a private key only its owner can read", function()
    local st = assert(uv.fs_stat(key))
    assert.equal(0, st.mode & 63)   -- no group or other bits
  end)

  it("serves HTTPS and reuses one kept-alive connection for sequential requests", function()
    local srv, conns = server(true)
    local c = assert(client.new { allow_ips = { "127.0.0.1/32" }, verify = false })
    local got = task(function()
      local out = {}
      for i = 1, 3 do
        local res = assert(c:fetch { host = "127.0.0.1", port = srv:port(), tls = true, path = "/echo/" .. i })
        out[i] = res.status .. " " .. res.body
      end
      return out
    end)
    assert.same({ "200 1", "200 2", "200 3" }, got)
    assert.equal(1, conns())
    c:close()
    stop(srv)
  end)

  it("carries large bodies both ways", function()
    local srv = server(true)
    local c = assert(client.new { allow_ips = { "127.0.0.1/32" }, verify = false })
    local r = task(function()
      local r1 = assert(c:fetch { host = "127.0.0.1", port = srv:port(), tls = true, path = "/big" })
      local r2 = assert(c:fetch { method = "POST", host = "127.0.0.1", port = srv:port(), tls = true, path = "/len",
                                  body = ("x"):rep(700000) })
      return { r1.body, r2.body }
    end)
    assert.equal(1024 * 1024, #r[1])
    assert.equal("700000", r[2])
    c:close()
    stop(srv)
  end)

  it("checks the certificate and the name it carries when verifying", function()
    local srv = server(true)
    local good = assert(client.new { allow_ips = { "127.0.0.0/8" }, ca_file = cert })
    local system = assert(client.new { allow_ips = { "127.0.0.0/8" } })
    local r = task(function()
      local ok = good:fetch { host = "127.0.0.1", port = srv:port(), tls = true, servername = "localhost",
                              path = "/echo/v" }
      local _, wrong = good:fetch { host = "127.0.0.1", port = srv:port(), tls = true,
                                    servername = "other.example", path = "/echo/v" }
      local _, untrusted = system:fetch { host = "127.0.0.1", port = srv:port(), tls = true,
                                          servername = "localhost", path = "/echo/v" }
      return { ok, wrong, untrusted }
    end)
    assert.equal("v", r[1].body)
    assert.matches("^tls: .*hostname mismatch", r[2])
    assert.matches("^tls: .*self%-signed", r[3])
    good:close(); system:close()
    stop(srv)
  end)

  it("refuses loopback and private addresses unless allowed, before connecting", function()
    local srv, conns = server(false)
    local c = assert(client.new {})
    local errs = task(function()
      local out = {}
      for _, h in ipairs { "127.0.0.1", "localhost", "10.0.0.1", "169.254.169.254", "[::1]" } do
        local res, err = c:fetch { host = h, port = srv:port(), path = "/echo/x", timeout = 2000 }
        out[#out + 1] = res and "answered" or err
      end
      return out
    end)
    for _, e in ipairs(errs) do assert.matches("^refused address", e) end
    assert.equal(0, conns())
    assert.is_nil(client.new { allow_ips = { "not-an-ip/8" } })
    c:close()
    stop(srv)
  end)

  it("opens at most max_per_host connections to one destination; the rest wait their turn", function()
    local srv, conns = server(false)
    local c = assert(client.new { allow_ips = { "127.0.0.1/32" }, max_per_host = 2 })
    local n = task(function()
      local left, results = 5, {}
      async.wait(function(wake)
        for i = 1, 5 do
          c:request({ host = "127.0.0.1", port = srv:port(), path = "/sleep/30" }, function(err, res)
            results[i] = err or res.body
            left = left - 1
            if left == 0 then wake() end
          end)
        end
      end)
      return results
    end)
    assert.same({ "slept", "slept", "slept", "slept", "slept" }, n)
    assert.is_true(conns() <= 2)
    c:close()
    stop(srv)
  end)

  it("times out a request the server does not answer in time, and the next one works", function()
    local srv = server(false)
    local c = assert(client.new { allow_ips = { "127.0.0.1/32" } })
    local r = task(function()
      local _, err = c:fetch { host = "127.0.0.1", port = srv:port(), path = "/sleep/500", timeout = 50 }
      local res = c:fetch { host = "127.0.0.1", port = srv:port(), path = "/echo/after" }
      return { err, res and res.body }
    end)
    assert.matches("^timeout", r[1])
    assert.equal("after", r[2])
    c:close()
    stop(srv)
  end)

  it("fails cleanly when one side speaks TLS and the other does not", function()
    local plain = server(false)
    local secure = server(true)
    local c = assert(client.new { allow_ips = { "127.0.0.1/32" }, verify = false, connect_timeout = 2000 })
    local r = task(function()
      local _, e1 = c:fetch { host = "127.0.0.1", port = plain:port(), tls = true, path = "/echo/x", timeout = 2000 }
      local res2, e2 = c:fetch { host = "127.0.0.1", port = secure:port(), path = "/echo/x", timeout = 2000 }
      return { e1, res2 and res2.status or e2 }
    end)
    assert.matches("^tls: ", r[1])
    -- a plain request to a TLS port gets no HTTP answer
    assert.is_string(r[2])
    c:close()
    stop(plain); stop(secure)
  end)

  it("answers connection refused with an error, not a hang", function()
    local probe = uv.new_tcp()
    probe:bind("127.0.0.1", 0)
    local port = probe:getsockname().port
    probe:close()
    local c = assert(client.new { allow_ips = { "127.0.0.1/32" } })
    local err = task(function()
      local _, e = c:fetch { host = "127.0.0.1", port = port, path = "/" }
      return e
    end)
    assert.matches("^connect: ", err)
    c:close()
    async.finish_closing()
  end)
end)
