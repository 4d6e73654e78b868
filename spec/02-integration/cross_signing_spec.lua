-- Cross-signing over a real server (Client-Server API "Cross-signing"):
-- POST /keys/device_signing/upload (user-interactive auth once a master key
-- exists), POST /keys/signatures/upload (each signature verified), and the
-- keys in /keys/query.
local tesths = require "support.hs"
local crypto = require "loom.room.crypto"
local core = require "loom.core"

local V3 = "/_matrix/client/v3"
local b64 = function(s) return (core.crypto.base64_encode(s)) end
local arr = core.json.array

describe("cross-signing", function()
  local t
  setup(function() t = tesths.start() end)
  teardown(function() t:stop() end)

  local function keypair(owner)
    local seed = core.crypto.random_bytes(32)
    local pub = b64(core.crypto.ed25519_public_key(seed))
    return assert(crypto.signing_key(seed, "ed25519:" .. pub, owner)), pub
  end
  local function cs_key(u, usage, pub, signer)
    local k = { user_id = u.user_id, usage = { usage }, keys = { ["ed25519:" .. pub] = pub } }
    if signer then assert(crypto.sign_json(k, signer)) end
    return k
  end
  -- a user with device keys and master / self-signing / user-signing keys
  local function setup_user()
    local u = t:fresh("cs")
    u.device = assert(crypto.signing_key(core.crypto.random_bytes(32), "ed25519:" .. u.device_id, u.user_id))
    u.dk = assert(crypto.sign_json({ user_id = u.user_id, device_id = u.device_id,
      algorithms = { "m.olm.v1.curve25519-aes-sha2" },
      keys = { ["ed25519:" .. u.device_id] = u.device.public_key_base64,
        ["curve25519:" .. u.device_id] = b64(core.crypto.random_bytes(32)) } }, u.device))
    assert.equal(200, t:request("POST", V3 .. "/keys/upload", { device_keys = u.dk }, u.access_token).status)
    u.master, u.master_pub = keypair(u.user_id)
    u.ssk, u.ssk_pub = keypair(u.user_id)
    u.usk, u.usk_pub = keypair(u.user_id)
    local r = t:request("POST", V3 .. "/keys/device_signing/upload", {
      master_key = cs_key(u, "master", u.master_pub),
      self_signing_key = cs_key(u, "self_signing", u.ssk_pub, u.master),
      user_signing_key = cs_key(u, "user_signing", u.usk_pub, u.master) }, u.access_token)
    assert.equal(200, r.status, r.body)
    return u
  end
  local function query(by, u)
    local r = t:request("POST", V3 .. "/keys/query", { device_keys = { [u.user_id] = arr() } }, by.access_token)
    assert.equal(200, r.status)
    return r.json
  end

  it("uploads the keys (no auth the first time) and serves them in /keys/query", function()
    local u, other = setup_user(), t:fresh("cs")
    local q = query(u, u)
    assert.same({ ["ed25519:" .. u.master_pub] = u.master_pub }, q.master_keys[u.user_id].keys)
    assert.same({ ["ed25519:" .. u.ssk_pub] = u.ssk_pub }, q.self_signing_keys[u.user_id].keys)
    assert.same({ ["ed25519:" .. u.usk_pub] = u.usk_pub }, q.user_signing_keys[u.user_id].keys)
    q = query(other, u)
    assert.truthy(q.master_keys[u.user_id])
    assert.truthy(q.self_signing_keys[u.user_id])
    assert.is_nil(q.user_signing_keys[u.user_id])
  end)

  it("refuses a self-signing key not signed by the master key, and bad keys", function()
    local u = t:fresh("cs")
    local master, mpub = keypair(u.user_id)
    local _, spub = keypair(u.user_id)
    local forger = keypair(u.user_id)
    local r = t:request("POST", V3 .. "/keys/device_signing/upload", { master_key = cs_key(u, "master", mpub),
      self_signing_key = cs_key(u, "self_signing", spub, forger) }, u.access_token)
    assert.equal(400, r.status)
    assert.equal("M_INVALID_SIGNATURE", r.json.errcode)
    -- nothing stored
    assert.is_nil(query(u, u).master_keys[u.user_id])
    -- a master key of another user, a wrong usage
    local other = t:fresh("cs")
    r = t:request("POST", V3 .. "/keys/device_signing/upload", { master_key = cs_key(other, "master", mpub) },
      u.access_token)
    assert.equal(400, r.status)
    r = t:request("POST", V3 .. "/keys/device_signing/upload", { master_key = cs_key(u, "user_signing", mpub) },
      u.access_token)
    assert.equal(400, r.status)
    r = t:request("POST", V3 .. "/keys/device_signing/upload", { master_key = "x" }, u.access_token)
    assert.equal(400, r.status)
    assert.truthy(master)
  end)

  it("needs user-interactive auth to replace existing keys", function()
    local u = setup_user()
    local new_master, pub = keypair(u.user_id)
    local body = { master_key = cs_key(u, "master", pub) }
    local r = t:request("POST", V3 .. "/keys/device_signing/upload", body, u.access_token)
    assert.equal(401, r.status)
    assert.is_string(r.json.session)
    assert.equal(u.master_pub, next(query(u, u).master_keys[u.user_id].keys):sub(9))
    body.auth = { type = "m.login.password", session = r.json.session, password = u.password }
    r = t:request("POST", V3 .. "/keys/device_signing/upload", body, u.access_token)
    assert.equal(200, r.status)
    assert.same({ ["ed25519:" .. pub] = pub }, query(u, u).master_keys[u.user_id].keys)
    assert.truthy(new_master)
  end)

  it("verifies uploaded signatures of devices and of other users' master keys", function()
    local u, v = setup_user(), setup_user()
    -- u's self-signing key signs u's device
    local signed = {}
    for k, x in pairs(u.dk) do if k ~= "signatures" then signed[k] = x end end
    assert(crypto.sign_json(signed, u.ssk))
    -- a forged one: v's master key "signed" by u's self-signing key instead of u's user-signing key
    local vm = cs_key(v, "master", v.master_pub)
    assert(crypto.sign_json(vm, u.ssk))
    local r = t:request("POST", V3 .. "/keys/signatures/upload", { [u.user_id] = { [u.device_id] = signed },
      [v.user_id] = { [v.master_pub] = vm } }, u.access_token)
    assert.equal(200, r.status)
    assert.is_nil(r.json.failures[u.user_id])
    assert.equal("M_INVALID_SIGNATURE", r.json.failures[v.user_id][v.master_pub].errcode)
    local dk = query(v, u).device_keys[u.user_id][u.device_id]
    assert.is_string(dk.signatures[u.user_id]["ed25519:" .. u.ssk_pub])
    -- u's user-signing key signs v's master key: u sees it, others do not
    vm = cs_key(v, "master", v.master_pub)
    assert(crypto.sign_json(vm, u.usk))
    r = t:request("POST", V3 .. "/keys/signatures/upload", { [v.user_id] = { [v.master_pub] = vm } }, u.access_token)
    assert.equal(200, r.status)
    assert.same({}, r.json.failures)
    local m = query(u, v).master_keys[v.user_id]
    assert.is_string(m.signatures[u.user_id]["ed25519:" .. u.usk_pub])
    local w = t:fresh("cs")
    m = query(w, v).master_keys[v.user_id]
    assert.is_nil(m.signatures and m.signatures[u.user_id])
    -- a signature of a key whose content differs from the stored one
    local changed = {}
    for k, x in pairs(u.dk) do if k ~= "signatures" then changed[k] = x end end
    changed.algorithms = { "other" }
    assert(crypto.sign_json(changed, u.ssk))
    r = t:request("POST", V3 .. "/keys/signatures/upload", { [u.user_id] = { [u.device_id] = changed } },
      u.access_token)
    assert.equal("M_INVALID_SIGNATURE", r.json.failures[u.user_id][u.device_id].errcode)
    -- unknown keys and malformed bodies
    r = t:request("POST", V3 .. "/keys/signatures/upload", { [u.user_id] = { NOPE = signed } }, u.access_token)
    assert.equal("M_NOT_FOUND", r.json.failures[u.user_id].NOPE.errcode)
    r = t:request("POST", V3 .. "/keys/signatures/upload", { [u.user_id] = "x" }, u.access_token)
    assert.equal(400, r.status)
  end)
end)
