-- Server discovery (loom.federation.discovery) and SRV lookups
-- (loom.net.dns, loom.core.dns) against a DNS server and a well-known
-- server written here, on 127.0.0.1.
local uv = require "luv"
local core = require "loom.core"
local async = require "loom.async"
local dns = require "loom.net.dns"
local discovery = require "loom.federation.discovery"
local client = require "loom.http.client"
local http = require "loom.http.server"
local response = require "loom.http.response"
local loop = require "support.loop"
local files = require "support.files"

local function task(fn, limit)
  local done, ok, res
  async.spawn(fn, nil, function(o, r) done, ok, res = true, o, r end)
  assert(loop.turn_until(function() return done end, limit or 8000), "task did not finish")
  assert(ok, res)
  return res
end

-- An SRV answer for the query q (as core.dns.srv_query makes it).
local function answer(q, records, opts)
  opts = opts or {}
  local id = opts.id or q:sub(1, 2)
  local flags = string.char(0x81, 0x80 | (opts.rcode or 0))
  local hdr = id .. flags .. "\0\1" .. string.pack(">I2", #records) .. "\0\0\0\0"
  local out = { hdr, q:sub(13) }
  for _, r in ipairs(records) do
    local t = {}
    for label in r.target:gmatch("[^.]+") do t[#t + 1] = string.char(#label) .. label end
    local rd = string.pack(">I2I2I2", r.priority, r.weight, r.port) .. table.concat(t) .. "\0"
    out[#out + 1] = string.char(0xc0, 12) .. string.pack(">I2I2I4I2", 33, 1, r.ttl or 300, #rd) .. rd
  end
  return table.concat(out)
end

-- A DNS server: zone[name] = records, or a function(q) -> packet | nil.
local function dns_server(zone)
  local udp = uv.new_udp()
  udp:bind("127.0.0.1", 0)
  udp:recv_start(function(err, data, addr)
    if err or not data then return end
    local labels, pos = {}, 13
    while data:byte(pos) and data:byte(pos) > 0 do
      local n = data:byte(pos)
      labels[#labels + 1] = data:sub(pos + 1, pos + n)
      pos = pos + n + 1
    end
    local name = table.concat(labels, "."):lower()
    local entry = zone[name]
    local pkt
    if type(entry) == "function" then pkt = entry(data)
    elseif entry then pkt = answer(data, entry)
    else pkt = answer(data, {}, { rcode = 3 }) end
    if pkt then udp:send(pkt, addr.ip, addr.port) end
  end)
  return udp, udp:getsockname().port
end

describe("server discovery", function()
  it("splits server names by the spec's grammar", function()
    assert.same({ "example.org" }, { discovery.split("example.org") })
    assert.same({ "example.org", 8448 }, { discovery.split("example.org:8448") })
    assert.same({ "1.2.3.4", 80 }, { discovery.split("1.2.3.4:80") })
    assert.same({ "[::1]", 8448 }, { discovery.split("[::1]:8448") })
    for _, bad in ipairs { "", "a b", "example.org:", "example.org:0", "example.org:65536", "[zz]:1", "a/b",
        "example.org:8448:1", "a..b", ("a"):rep(256), "@x" } do
      assert.is_nil((discovery.split(bad)), bad)
    end
  end)

  it("looks up SRV records, ignoring answers with another ID, and treats NXDOMAIN as none", function()
    local spoof = 0
    local udp, port = dns_server {
      ["_matrix-fed._tcp.a.test"] = { { priority = 10, weight = 1, port = 8449, target = "fed.a.test" },
                                      { priority = 5, weight = 1, port = 9000, target = "best.a.test" } },
      ["_matrix-fed._tcp.spoof.test"] = function(q)
        spoof = spoof + 1
        local id = q:sub(1, 2)
        local wrong = string.char(id:byte(1) ~ 0xff, id:byte(2))
        return answer(q, { { priority = 1, weight = 1, port = 1, target = "evil.test" } }, { id = wrong })
      end,
    }
    local r = task(function()
      local opts = { servers = { "127.0.0.1" }, port = port, timeout = 300 }
      local a = dns.srv("_matrix-fed._tcp.a.test", opts)
      local none = dns.srv("_matrix-fed._tcp.none.test", opts)
      local s, serr = dns.srv("_matrix-fed._tcp.spoof.test", opts)
      return { a, none, s, serr }
    end)
    assert.equal(2, #r[1])
    assert.equal("fed.a.test", r[1][1].target)
    assert.equal(9000, r[1][2].port)
    assert.same({}, r[2])
    assert.is_nil(r[3])
    assert.matches("timeout", r[4])
    assert.equal(1, spoof)
    udp:close()
    async.finish_closing()
  end)

  it("resolves by IP literal, explicit port, SRV (lowest priority) and the 8448 default", function()
    local udp, port = dns_server {
      ["_matrix-fed._tcp.srv.test"] = { { priority = 10, weight = 1, port = 8449, target = "fed.srv.test" },
                                        { priority = 5, weight = 1, port = 9000, target = "best.srv.test." } },
      ["_matrix._tcp.old.test"] = { { priority = 1, weight = 1, port = 7000, target = "legacy.old.test" } },
    }
    local d = discovery.new { srv = function(name) return dns.srv(name, { servers = { "127.0.0.1" }, port = port }) end,
                              http = assert(client.new { connect_timeout = 500 }) }
    local r = task(function()
      return {
        d:resolve("1.2.3.4"), d:resolve("[2001:db8::1]:99"), d:resolve("name.test:1234"),
        d:resolve("srv.test"), d:resolve("old.test"), d:resolve("plain.test"),
      }
    end)
    assert.same({ host = "1.2.3.4", port = 8448, host_header = "1.2.3.4", servername = "1.2.3.4" }, r[1])
    assert.same({ host = "2001:db8::1", port = 99, host_header = "[2001:db8::1]:99", servername = "2001:db8::1" }, r[2])
    assert.same({ host = "name.test", port = 1234, host_header = "name.test:1234", servername = "name.test" }, r[3])
    assert.same({ host = "best.srv.test", port = 9000, host_header = "srv.test", servername = "srv.test" }, r[4])
    assert.same({ host = "legacy.old.test", port = 7000, host_header = "old.test", servername = "old.test" }, r[5])
    assert.same({ host = "plain.test", port = 8448, host_header = "plain.test", servername = "plain.test" }, r[6])
    udp:close()
    async.finish_closing()
  end)

  it("follows /.well-known/matrix/server, caches it, and falls back when it is bad", function()
    local dir = files.tmpdir("loom-wk")
    assert(core.tls.self_signed(dir .. "/c.pem", dir .. "/k.pem", "localhost"))
    local hits, body = 0, '{"m.server":"delegated.test:1234"}'
    local srv = http.new { port = 0,
      tls = assert(core.tls.context { server = true, certificate = dir .. "/c.pem", private_key = dir .. "/k.pem" }),
      handler = function(req)
        hits = hits + 1
        if req.path ~= "/.well-known/matrix/server" then return response.new(404, "{}") end
        return response.new(200, body, { ["Cache-Control"] = "max-age=600" })
      end }
    assert(srv:listen())
    local c = assert(client.new { allow_ips = { "127.0.0.1/32", "::1/128" }, ca_file = dir .. "/c.pem" })
    local d = discovery.new { http = c, well_known_port = srv:port(), srv = function() return {} end }
    local r = task(function() return { d:resolve("localhost"), d:resolve("localhost") } end)
    assert.same({ host = "delegated.test", port = 1234, host_header = "delegated.test:1234",
                  servername = "delegated.test" }, r[1])
    assert.same(r[1], r[2])
    assert.equal(1, hits)
    -- a bad document: the name itself on 8448
    body = '{"m.server": "a b"}'
    local d2 = discovery.new { http = c, well_known_port = srv:port(), srv = function() return {} end }
    local r2 = task(function() return d2:resolve("localhost") end)
    assert.same({ host = "localhost", port = 8448, host_header = "localhost", servername = "localhost" }, r2)
    c:close()
    local stopped = false
    srv:stop(function() stopped = true end)
    loop.turn_until(function() return stopped end)
    async.finish_closing()
    files.remove_tree(dir)
  end)
end)
