-- End-to-end encryption keys between loom and a real Synapse 1.67 over TLS
-- on 127.0.0.1 (Server-Server API "End-to-End Encryption" and "Device
-- Management"): a Synapse user queries and claims a loom user's keys (Synapse
-- asks loom's /user/keys/query and /user/keys/claim) and a loom user queries
-- and claims the Synapse user's (loom asks Synapse's); once they share a
-- room, loom holds the Synapse user's list (/user/devices) and a new device
-- there reaches loom's /sync as a device-list change. Synapse comes from the
-- shared peer folder (spec/support/synapse.lua); a machine without it fails
-- here with the reason.
local tesths = require "support.hs"
local synapse = require "support.synapse"
local files = require "support.files"
local crypto = require "loom.room.crypto"
local core = require "loom.core"
local uv = require "luv"

local E = tesths.enc
local V3 = "/_matrix/client/v3"
local arr = core.json.array
local b64 = function(s) return (core.crypto.base64_encode(s)) end

local function free_port()
  local tcp = uv.new_tcp()
  tcp:bind("127.0.0.1", 0)
  local port = tcp:getsockname().port
  tcp:close()
  uv.run("nowait")
  return port
end

local function device_keys(u)
  u.key = u.key or assert(crypto.signing_key(core.crypto.random_bytes(32), "ed25519:" .. u.device_id, u.user_id))
  return assert(crypto.sign_json({
    user_id = u.user_id, device_id = u.device_id,
    algorithms = arr { "m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2" },
    keys = { ["curve25519:" .. u.device_id] = b64(core.crypto.random_bytes(32)),
      ["ed25519:" .. u.device_id] = u.key.public_key_base64 },
  }, u.key))
end

local function otks(u, n)
  local out = {}
  for i = 1, n do
    out["signed_curve25519:S" .. i] = assert(crypto.sign_json({ key = b64(core.crypto.random_bytes(32)) }, u.key))
  end
  return out
end

local function signed_by_device(dk, u)
  return crypto.verify_json(dk, u.user_id, "ed25519:" .. u.device_id,
    core.crypto.base64_decode(u.key.public_key_base64))
end

describe("e2e keys with Synapse 1.67", function()
  local peer, loom, syn, dir, lport
  local salice, bob

  local function until_(pred, limit) return loom:wait_until(pred, limit, 200) end
  local function scall(method, path, body, token)
    return loom:run(function() return syn:call(method, path, body, token) end, 30000)
  end
  local function lcall(method, path, body, token)
    return loom:run(function() return loom:call(method, path, body, token) end, 30000)
  end

  setup(function()
    local why
    peer, why = synapse.start_federating()
    assert(peer, why)
    dir = files.tmpdir("loom-keys-interop")
    lport = free_port()
    loom = tesths.start {
      server_name = "localhost:" .. lport, default_room_version = "10",
      federation = { port = lport, tls_certificate = dir .. "/loom.crt", tls_private_key = dir .. "/loom.key",
        verify_certificates = false, allow_ips = { "127.0.0.1/32", "::1/128" } },
    }
    syn = loom:client_for(peer.port)
    local r = scall("POST", V3 .. "/register",
      { username = "skeys", password = "interop-password-1", auth = { type = "m.login.dummy" } })
    assert.equal(200, r.status, r.body)
    salice = { user_id = r.json.user_id, access_token = r.json.access_token, device_id = r.json.device_id }
    bob = loom:register("bob")
    r = scall("POST", V3 .. "/keys/upload", { device_keys = device_keys(salice), one_time_keys = otks(salice, 3) },
      salice.access_token)
    assert.equal(200, r.status, r.body)
    r = lcall("POST", V3 .. "/keys/upload", { device_keys = device_keys(bob), one_time_keys = otks(bob, 3) },
      bob.access_token)
    assert.equal(200, r.status, r.body)
  end)

  teardown(function()
    if loom then loom:stop() end
    if peer then peer.stop() end
    if dir then files.remove_tree(dir) end
  end)

  it("Synapse's user queries and claims a loom user's keys", function()
    local q = scall("POST", V3 .. "/keys/query", { device_keys = { [bob.user_id] = arr() } }, salice.access_token)
    assert.equal(200, q.status, q.body)
    assert.is_nil(q.json.failures[loom.server.config.server_name], q.body)
    local dk = q.json.device_keys[bob.user_id] and q.json.device_keys[bob.user_id][bob.device_id]
    assert.is_table(dk, q.body)
    assert.truthy(signed_by_device(dk, bob))
    local mine = lcall("POST", V3 .. "/keys/query", { device_keys = { [bob.user_id] = arr() } }, bob.access_token)
    assert.same(mine.json.device_keys[bob.user_id][bob.device_id].keys, dk.keys)
    local c = scall("POST", V3 .. "/keys/claim", { one_time_keys = {
      [bob.user_id] = { [bob.device_id] = "signed_curve25519" } } }, salice.access_token)
    assert.equal(200, c.status, c.body)
    local got = c.json.one_time_keys[bob.user_id] and c.json.one_time_keys[bob.user_id][bob.device_id]
    assert.is_table(got, c.body)
    local id, key = next(got)
    assert.matches("^signed_curve25519:S", id)
    assert.truthy(signed_by_device(key, bob))
    assert.equal(2, loom.hs.store:one_time_key_counts(bob.user_id, bob.device_id).signed_curve25519)
  end)

  it("a loom user queries and claims a Synapse user's keys", function()
    local q = lcall("POST", V3 .. "/keys/query", { device_keys = { [salice.user_id] = arr() } }, bob.access_token)
    assert.equal(200, q.status, q.body)
    assert.same({}, q.json.failures)
    local dk = q.json.device_keys[salice.user_id][salice.device_id]
    assert.is_table(dk, q.body)
    assert.truthy(signed_by_device(dk, salice))
    local c = lcall("POST", V3 .. "/keys/claim", { one_time_keys = {
      [salice.user_id] = { [salice.device_id] = "signed_curve25519" } } }, bob.access_token)
    assert.equal(200, c.status, c.body)
    assert.same({}, c.json.failures)
    local id, key = next(c.json.one_time_keys[salice.user_id][salice.device_id])
    assert.matches("^signed_curve25519:S", id)
    assert.truthy(signed_by_device(key, salice))
  end)

  it("holds the list of a Synapse user sharing a room, kept current by Synapse's EDUs", function()
    local room = scall("POST", V3 .. "/createRoom", { preset = "public_chat", room_version = "10" },
      salice.access_token)
    assert.equal(200, room.status, room.body)
    local j = lcall("POST", V3 .. "/join/" .. E(room.json.room_id) .. "?server_name=" .. E(peer.name), {},
      bob.access_token)
    assert.equal(200, j.status, j.body)
    local q = lcall("POST", V3 .. "/keys/query", { device_keys = { [salice.user_id] = arr() } }, bob.access_token)
    assert.equal(200, q.status, q.body)
    assert.is_table(q.json.device_keys[salice.user_id][salice.device_id])
    assert.truthy(loom.hs.store:remote_device_list(salice.user_id), "loom holds no list of the Synapse user")
    local since = lcall("GET", V3 .. "/sync?timeout=0", nil, bob.access_token).json.next_batch
    -- a second device of the Synapse user, with keys
    local login = scall("POST", V3 .. "/login", { type = "m.login.password",
      identifier = { type = "m.id.user", user = "skeys" }, password = "interop-password-1" })
    assert.equal(200, login.status, login.body)
    local phone = { user_id = salice.user_id, device_id = login.json.device_id,
      access_token = login.json.access_token }
    assert.equal(200, scall("POST", V3 .. "/keys/upload", { device_keys = device_keys(phone) },
      phone.access_token).status)
    assert.is_true(until_(function()
      local s = loom:call("GET", V3 .. "/sync?timeout=0&since=" .. E(since), nil, bob.access_token)
      for _, u in ipairs(s.json.device_lists and s.json.device_lists.changed or {}) do
        if u == salice.user_id then return true end
      end
      return false
    end, 30000), "loom's sync never listed the Synapse user as changed")
    assert.is_true(until_(function()
      local r = loom:call("POST", V3 .. "/keys/query", { device_keys = { [salice.user_id] = arr() } },
        bob.access_token)
      return r.json.device_keys[salice.user_id] ~= nil and r.json.device_keys[salice.user_id][phone.device_id] ~= nil
    end, 30000), "the new device never reached loom")
  end)
end)
