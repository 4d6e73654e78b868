-- End-to-end encryption keys over a real server (Client-Server API
-- "End-to-End Encryption", "Key management API"): /keys/upload (device
-- keys signed by the device, one-time and fallback keys), /keys/query,
-- /keys/claim, /keys/changes, and what /sync says about them
-- (device_one_time_keys_count, device_unused_fallback_key_types,
-- device_lists.changed / left).
local tesths = require "support.hs"
local crypto = require "loom.room.crypto"
local core = require "loom.core"

local V3 = "/_matrix/client/v3"
local b64 = function(s) return (core.crypto.base64_encode(s)) end

describe("e2e keys", function()
  local t
  setup(function() t = tesths.start() end)
  teardown(function() t:stop() end)

  -- the device's ed25519 signing key
  local function device_key(u)
    if not u.key then
      u.key = assert(crypto.signing_key(core.crypto.random_bytes(32), "ed25519:" .. u.device_id, u.user_id))
    end
    return u.key
  end
  local function device_keys(u)
    local k = device_key(u)
    local dk = {
      user_id = u.user_id, device_id = u.device_id,
      algorithms = { "m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2" },
      keys = { ["curve25519:" .. u.device_id] = b64(core.crypto.random_bytes(32)),
        ["ed25519:" .. u.device_id] = k.public_key_base64 },
    }
    return assert(crypto.sign_json(dk, k))
  end
  local function otk(u, n)
    return assert(crypto.sign_json({ key = b64(core.crypto.random_bytes(32)) .. n }, device_key(u)))
  end
  local function upload(u, body)
    return t:request("POST", V3 .. "/keys/upload", body, u.access_token)
  end
  local function query(u, users)
    return t:request("POST", V3 .. "/keys/query", { device_keys = users }, u.access_token)
  end
  local function claim(u, want)
    return t:request("POST", V3 .. "/keys/claim", { one_time_keys = want }, u.access_token)
  end
  local function second_device(u)
    local login = assert(t.hs.accounts:login(u.user_id, u.password))
    return { user_id = u.user_id, access_token = login.access_token, device_id = login.device_id,
      password = u.password }
  end

  it("stores signed device keys and serves them in /keys/query", function()
    local a, b = t:fresh("k"), t:fresh("k")
    local dk = device_keys(a)
    local r = upload(a, { device_keys = dk })
    assert.equal(200, r.status)
    assert.same({}, r.json.one_time_key_counts)
    r = query(b, { [a.user_id] = core.json.array() })
    assert.equal(200, r.status)
    local got = r.json.device_keys[a.user_id][a.device_id]
    assert.same(dk.keys, got.keys)
    assert.same(dk.signatures, got.signatures)
    -- asking for one device only
    r = query(b, { [a.user_id] = { "OTHER" } })
    assert.same({}, r.json.device_keys[a.user_id])
    -- a remote user: in failures
    r = query(b, { ["@x:elsewhere.example"] = core.json.array() })
    assert.equal(200, r.status)
    assert.truthy(r.json.failures["elsewhere.example"])
  end)

  it("refuses a forged device-key signature and keys of another user or device", function()
    local a = t:fresh("k")
    local dk = device_keys(a)
    -- the content changed after signing
    dk.keys["curve25519:" .. a.device_id] = b64(core.crypto.random_bytes(32))
    local r = upload(a, { device_keys = dk })
    assert.equal(400, r.status)
    assert.equal("M_INVALID_PARAM", r.json.errcode)
    -- signed by another key than the device's ed25519 key
    local forged = device_keys(a)
    local other = assert(crypto.signing_key(core.crypto.random_bytes(32), "ed25519:" .. a.device_id, a.user_id))
    forged.signatures = nil
    assert(crypto.sign_json(forged, other))
    r = upload(a, { device_keys = forged })
    assert.equal(400, r.status)
    -- no signature at all
    local unsigned = device_keys(a)
    unsigned.signatures = {}
    assert.equal(400, upload(a, { device_keys = unsigned }).status)
    -- for another device or user
    local d2 = second_device(a)
    assert.equal(400, upload(d2, { device_keys = device_keys(a) }).status)
    local b = t:fresh("k")
    r = upload(b, { device_keys = device_keys(a) })
    assert.equal(400, r.status)
    assert.equal("M_INVALID_PARAM", r.json.errcode)
    -- nothing was stored
    r = query(b, { [a.user_id] = core.json.array() })
    assert.same({}, r.json.device_keys[a.user_id])
    -- a one-time key with a bad signature
    local k = otk(a, 1)
    k.key = "changed"
    assert.equal(400, upload(a, { device_keys = device_keys(a), one_time_keys = { ["signed_curve25519:AAA"] = k } })
      .status)
    -- malformed
    local bad = { { device_keys = "x" }, { one_time_keys = { x = 1 } }, { one_time_keys = { [""] = "k" } } }
    for _, body in ipairs(bad) do
      r = upload(a, body)
      assert.equal(400, r.status)
      assert.is_string(r.json.errcode)
    end
  end)

  it("claims each one-time key once, then the fallback key (marked used)", function()
    local a, b, c = t:fresh("k"), t:fresh("k"), t:fresh("k")
    local r = upload(a, { device_keys = device_keys(a),
      one_time_keys = { ["signed_curve25519:AAAA"] = otk(a, 1) },
      fallback_keys = { ["signed_curve25519:FFFF"] = otk(a, 2) } })
    assert.equal(200, r.status)
    assert.same({ signed_curve25519 = 1 }, r.json.one_time_key_counts)
    local s = t:sync(a)
    assert.same({ signed_curve25519 = 1 }, s.device_one_time_keys_count)
    assert.same({ "signed_curve25519" }, s.device_unused_fallback_key_types)
    local want = { [a.user_id] = { [a.device_id] = "signed_curve25519" } }
    r = claim(b, want)
    assert.equal(200, r.status)
    local got = r.json.one_time_keys[a.user_id][a.device_id]
    assert.truthy(got["signed_curve25519:AAAA"])
    -- the last one-time key went once: the second claim gets the fallback key
    r = claim(c, want)
    got = r.json.one_time_keys[a.user_id][a.device_id]
    assert.is_nil(got["signed_curve25519:AAAA"])
    assert.truthy(got["signed_curve25519:FFFF"])
    s = t:sync(a)
    assert.same({ signed_curve25519 = 0 }, s.device_one_time_keys_count)
    assert.same({}, s.device_unused_fallback_key_types)
    -- the fallback key stays claimable
    got = claim(b, want).json.one_time_keys[a.user_id][a.device_id]
    assert.truthy(got["signed_curve25519:FFFF"])
    -- unknown devices: nothing
    r = claim(b, { [a.user_id] = { NOPE = "signed_curve25519" } })
    assert.equal(200, r.status)
    assert.is_nil(r.json.one_time_keys[a.user_id])
  end)

  it("hands out the last one-time key once to concurrent claims", function()
    local a = t:fresh("k")
    assert.equal(200, upload(a, { device_keys = device_keys(a),
      one_time_keys = { ["signed_curve25519:ONLY"] = otk(a, 3) } }).status)
    local want = { [a.user_id] = { [a.device_id] = "signed_curve25519" } }
    local n = 0
    local claimers = {}
    for i = 1, 5 do claimers[i] = t:fresh("k") end
    local results = {}
    t:run(function()
      local hs = {}
      for i, u in ipairs(claimers) do
        hs[i] = t:go(function()
          return t:call("POST", V3 .. "/keys/claim", { one_time_keys = want }, u.access_token)
        end)
      end
      for i = 1, #hs do results[i] = t:await(hs[i]) end
    end)
    for _, r in ipairs(results) do
      local got = r.json.one_time_keys[a.user_id]
      if got and got[a.device_id]["signed_curve25519:ONLY"] then n = n + 1 end
    end
    assert.equal(1, n)
  end)

  it("reports device-list changes in /sync and /keys/changes, and left", function()
    local a, b, c = t:fresh("k"), t:fresh("k"), t:fresh("k")
    local room = t:create_room(a, { preset = "public_chat" })
    t:join(b, room)
    local s0 = t:sync(a)
    local c0 = t:sync(c)
    -- b uploads keys: a (sharing a room) sees it, c does not
    assert.equal(200, upload(b, { device_keys = device_keys(b) }).status)
    local s1 = t:sync(a, s0.next_batch)
    assert.same({ b.user_id }, s1.device_lists.changed)
    local c1 = t:sync(c, c0.next_batch)
    assert.same({}, c1.device_lists.changed)
    local r = t:request("GET", V3 .. "/keys/changes?from=" .. tesths.enc(s0.next_batch) .. "&to="
      .. tesths.enc(s1.next_batch), nil, a.access_token)
    assert.equal(200, r.status)
    assert.same({ b.user_id }, r.json.changed)
    -- the user's own new device
    local a2 = second_device(a)
    assert.equal(200, upload(a2, { device_keys = device_keys(a2) }).status)
    local s2 = t:sync(a, s1.next_batch)
    assert.same({ a.user_id }, s2.device_lists.changed)
    -- a renamed device of b
    assert.equal(200, t:request("PUT", V3 .. "/devices/" .. tesths.enc(b.device_id), { display_name = "n" },
      b.access_token).status)
    local s3 = t:sync(a, s2.next_batch)
    assert.same({ b.user_id }, s3.device_lists.changed)
    -- a leaves the only room shared with b: b is left
    assert.equal(200, t:request("POST", V3 .. "/rooms/" .. tesths.enc(room) .. "/leave", {}, a.access_token).status)
    local s4 = t:sync(a, s3.next_batch)
    assert.same({ b.user_id }, s4.device_lists.left)
    r = t:request("GET", V3 .. "/keys/changes?from=" .. tesths.enc(s3.next_batch) .. "&to="
      .. tesths.enc(s4.next_batch), nil, a.access_token)
    assert.same({ b.user_id }, r.json.left)
    assert.same({}, r.json.changed)
    -- a six-part token from before device lists is still accepted
    local six = s4.next_batch:match("^(s%d+_%d+_%d+_%d+_%d+_%d+)_%d+$")
    assert.truthy(six)
    assert.equal(200, t:request("GET", V3 .. "/sync?since=" .. tesths.enc(six), nil, a.access_token).status)
    -- bad tokens in /keys/changes
    r = t:request("GET", V3 .. "/keys/changes?from=bad&to=" .. tesths.enc(s1.next_batch), nil, a.access_token)
    assert.equal(400, r.status)
    r = t:request("GET", V3 .. "/keys/changes", nil, a.access_token)
    assert.equal(400, r.status)
  end)

  it("a device-list change wakes a waiting /sync of a user sharing a room", function()
    local a, b = t:fresh("k"), t:fresh("k")
    local room = t:create_room(a, { preset = "public_chat" })
    t:join(b, room)
    local since = t:sync(a).next_batch
    local uv = require "luv"
    t:run(function()
      local h = t:go(function()
        return t:call("GET", V3 .. "/sync?timeout=5000&since=" .. tesths.enc(since), nil, a.access_token)
      end)
      t:sleep(50)
      local sent = uv.hrtime()
      assert.equal(200, t:call("POST", V3 .. "/keys/upload", { device_keys = device_keys(b) }, b.access_token).status)
      local r = t:await(h)
      local waited = (uv.hrtime() - sent) / 1e6
      assert.equal(200, r.status)
      assert.same({ b.user_id }, r.json.device_lists.changed)
      assert.is_true(waited < 1000, "returned " .. waited .. " ms after the upload")
    end)
  end)

  it("lists a user who joined a room of the syncing user as changed", function()
    local a, b = t:fresh("k"), t:fresh("k")
    local room = t:create_room(a, { preset = "public_chat" })
    local since = t:sync(a).next_batch
    t:join(b, room)
    local s = t:sync(a, since)
    assert.same({ b.user_id }, s.device_lists.changed)
  end)

  it("lists the members of a room joined since the token as changed", function()
    local a, b = t:fresh("k"), t:fresh("k")
    local room = t:create_room(b, { preset = "public_chat" })
    local since = t:sync(a).next_batch
    t:join(a, room)
    local s = t:sync(a, since)
    assert.same({ b.user_id }, s.device_lists.changed)
  end)

  it("a deleted device's keys are gone from /keys/query", function()
    local a, b = t:fresh("k"), t:fresh("k")
    local a2 = second_device(a)
    assert.equal(200, upload(a2, { device_keys = device_keys(a2) }).status)
    assert.truthy(query(b, { [a.user_id] = core.json.array() }).json.device_keys[a.user_id][a2.device_id])
    local r = t:request("DELETE", V3 .. "/devices/" .. tesths.enc(a2.device_id), {}, a.access_token)
    r = t:request("DELETE", V3 .. "/devices/" .. tesths.enc(a2.device_id), { auth = { type = "m.login.password",
      session = r.json.session, password = a.password } }, a.access_token)
    assert.equal(200, r.status)
    assert.is_nil(query(b, { [a.user_id] = core.json.array() }).json.device_keys[a.user_id][a2.device_id])
    -- a device that logs out loses its keys too
    local a3 = second_device(a)
    assert.equal(200, upload(a3, { device_keys = device_keys(a3) }).status)
    assert.truthy(query(b, { [a.user_id] = core.json.array() }).json.device_keys[a.user_id][a3.device_id])
    assert.equal(200, t:request("POST", V3 .. "/logout", {}, a3.access_token).status)
    assert.is_nil(query(b, { [a.user_id] = core.json.array() }).json.device_keys[a.user_id][a3.device_id])
  end)
end)
