-- Federation transport and identity between two loom servers on 127.0.0.1:
-- each with a federation listener over TLS (self-signed, made at start),
-- server names with explicit ports. Checks the version and key endpoints,
-- fetching and caching another server's keys, X-Matrix authentication both
-- ways (and what it refuses), the notary service, key rotation and that
-- each listener serves only its own API.
local core = require "loom.core"
local async = require "loom.async"
local api = require "loom.api"
local crypto = require "loom.room.crypto"
local client = require "loom.http.client"
local xmatrix = require "loom.federation.xmatrix"
local files = require "support.files"
local fed = require "support.fed"

local json = core.json

local task = fed.task

local dir, a, b, web

local function fed_server(name)
  local t = fed.server(dir, name)
  -- a route that tells who signed the request
  api.install_routes(t.hs, {
    { "GET", "/_matrix/federation/v1/spec_whoami", function(_, req) return { origin = req.origin } end,
      auth = "server" },
    { "PUT", "/_matrix/federation/v1/spec_echo/{x}",
      function(_, req) return { origin = req.origin, body = req:json() } end, auth = "server" },
  }, "federation")
  return t
end

-- A raw HTTPS request to t's federation port.
local function raw(t, method, path, headers, body)
  return task(function()
    local res, err = web:fetch { method = method, host = "127.0.0.1", port = t.fed_port, tls = true,
      host_header = t.name, path = path, headers = headers, body = body }
    assert(res, err)
    res.json = json.decode(res.body)
    return res
  end)
end

describe("federation transport and keys", function()
  setup(function()
    dir = files.tmpdir("loom-fedkeys")
    a = fed_server("a")
    b = fed_server("b")
    web = assert(client.new { allow_ips = { "127.0.0.1/32" }, verify = false })
  end)

  teardown(function()
    web:close()
    a:stop(); b:stop()
    async.finish_closing()
    files.remove_tree(dir)
  end)

  it("makes a TLS certificate for the server name when none is configured", function()
    assert.is_true(files.exists(dir .. "/a.crt"))
    assert.is_true(files.exists(dir .. "/a.key"))
  end)

  it("serves its version and its signed keys over HTTPS, and nothing of the client API", function()
    local v = raw(a, "GET", "/_matrix/federation/v1/version")
    assert.equal(200, v.status)
    assert.equal("loom", v.json.server.name)
    local k = raw(a, "GET", "/_matrix/key/v2/server")
    assert.equal(200, k.status)
    local doc = k.json
    assert.equal(a.name, doc.server_name)
    assert.is_true(doc.valid_until_ts > core.now_ms())
    local key_id, vk = next(doc.verify_keys)
    assert.equal(a.hs.key.key_id, key_id)
    local pk = core.crypto.base64_decode(vk.key)
    assert.is_true(crypto.verify_json(doc, a.name, key_id, pk))
    assert.equal(404, raw(a, "GET", "/_matrix/client/versions").status)
    -- and the client listener does not serve federation
    assert.equal(404, a:request("GET", "/_matrix/key/v2/server").status)
    assert.equal(404, a:request("GET", "/_matrix/federation/v1/version").status)
  end)

  it("signs requests to another server, which fetches the origin's key and knows who asked", function()
    local w = task(function()
      local s, bd = a.hs.federation:request(b.name, "GET", "/_matrix/federation/v1/spec_whoami")
      return { s, bd }
    end)
    local status, body = w[1], w[2]
    assert.equal(200, status)
    assert.equal(a.name, body.origin)
    -- b stored a's key
    local rec = b.hs.store:remote_key(a.name, a.hs.key.key_id)
    assert.is_truthy(rec)
    assert.equal(a.hs.key.public_key, rec.public_key)
    -- a request with a JSON body is signed with its content
    local r = task(function()
      local s, bd = a.hs.federation:request(b.name, "PUT", "/_matrix/federation/v1/spec_echo/1",
        { body = { n = 1, s = "é" } })
      return { s, bd }
    end)
    assert.equal(200, r[1])
    assert.same({ n = 1, s = "é" }, r[2].body)
  end)

  it("refuses forged requests with 401 M_UNAUTHORIZED", function()
    local path = "/_matrix/federation/v1/spec_whoami"
    local function auth(key, dest, method, uri, content)
      return { Authorization = assert(xmatrix.header(key, dest, method, uri, content)) }
    end
    local cases = {
      { "no header", {} },
      { "not X-Matrix", { Authorization = "Bearer abc" } },
      { "wrong destination", auth(a.hs.key, "localhost:1", "GET", path) },
      { "other method", auth(a.hs.key, b.name, "POST", path) },
      { "other path", auth(a.hs.key, b.name, "GET", path .. "x") },
      { "unknown key", auth(assert(crypto.signing_key(("\1"):rep(32), "ed25519:nope", a.name)), b.name, "GET", path) },
      { "wrong key bytes", auth(assert(crypto.signing_key(("\2"):rep(32), a.hs.key.key_id, a.name)), b.name, "GET",
        path) },
      { "origin is the server itself", auth(b.hs.key, b.name, "GET", path) },
      { "unreachable origin", auth(assert(crypto.signing_key(("\3"):rep(32), "ed25519:x", "localhost:1")), b.name,
        "GET", path) },
    }
    for _, c in ipairs(cases) do
      local res = raw(b, "GET", path, c[2])
      assert.equal(401, res.status, c[1])
      assert.equal("M_UNAUTHORIZED", res.json.errcode, c[1])
    end
    -- a forged request naming a made-up key of a's did not shut a out
    local ok = task(function() return a.hs.federation:request(b.name, "GET", path) end)
    assert.equal(200, ok)
    -- a body that differs from the signed content
    local h = auth(a.hs.key, b.name, "PUT", "/_matrix/federation/v1/spec_echo/1", { n = 1 })
    h["Content-Type"] = "application/json"
    local res = raw(b, "PUT", "/_matrix/federation/v1/spec_echo/1", h, '{"n":2}')
    assert.equal(401, res.status)
  end)

  it("answers notary queries with the origin's response signed by the notary too", function()
    local r = task(function()
      local s, bd = a.hs.federation:request(b.name, "POST", "/_matrix/key/v2/query", { unsigned = true,
        body = { server_keys = { [a.name] = { [a.hs.key.key_id] = { minimum_valid_until_ts = 0 } } } } })
      return { s, bd }
    end)
    assert.equal(200, r[1])
    local docs = r[2].server_keys
    assert.equal(1, #docs)
    local doc = docs[1]
    assert.equal(a.name, doc.server_name)
    assert.is_true(crypto.verify_json(doc, a.name, a.hs.key.key_id, a.hs.key.public_key))
    assert.is_true(crypto.verify_json(doc, b.name, b.hs.key.key_id, b.hs.key.public_key))
    -- bad criteria
    local bad = raw(b, "POST", "/_matrix/key/v2/query", { ["Content-Type"] = "application/json" },
      '{"server_keys":{"a b":{}}}')
    assert.equal(400, bad.status)
    assert.equal("M_BAD_JSON", bad.json.errcode)
    local notjson = raw(b, "POST", "/_matrix/key/v2/query", nil, "{")
    assert.equal(400, notjson.status)
  end)

  it("publishes a rotated-out key in old_verify_keys", function()
    local store = a.hs.store
    local old_id = a.hs.key.key_id
    local seed = core.crypto.random_bytes(32)
    store:add_signing_key("ed25519:new1", seed)
    store:retire_signing_keys("ed25519:new1")
    assert.equal("ed25519:new1", (store:signing_key()))
    a.hs.key = assert(crypto.signing_key(seed, "ed25519:new1", a.name))
    a.hs.keyring:forget_own()
    local doc = raw(a, "GET", "/_matrix/key/v2/server").json
    assert.is_truthy(doc.verify_keys["ed25519:new1"])
    assert.is_nil(doc.verify_keys[old_id])
    assert.is_truthy(doc.old_verify_keys[old_id])
    assert.is_true(doc.old_verify_keys[old_id].expired_ts <= core.now_ms())
    assert.is_true(crypto.verify_json(doc, a.name, "ed25519:new1", a.hs.key.public_key))
  end)
end)
