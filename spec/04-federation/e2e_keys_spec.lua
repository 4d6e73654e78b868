-- End-to-end encryption keys across servers, in the lab (Server-Server API
-- "Device Management" and "End-to-End Encryption"; Client-Server API
-- "Tracking the device list for a user"): /keys/query and /keys/claim for
-- users of another server, m.device_list_update and m.signing_key_update
-- EDUs to the servers sharing a room, the remote lists in /sync
-- device_lists, forged EDUs, and bad input to the federation endpoints.
local lab_mod = require "loom.lab"
local crypto = require "loom.room.crypto"
local core = require "loom.core"
local fedclient = require "loom.federation.client"
local async = require "loom.async"

local V3 = "/_matrix/client/v3"
local F1 = "/_matrix/federation/v1"
local E = fedclient.encode
local arr = core.json.array
local b64 = function(s) return (core.crypto.base64_encode(s)) end

-- a device's signed keys (u.key: the device's ed25519 key)
local function device_keys(u)
  u.key = u.key or assert(crypto.signing_key(core.crypto.random_bytes(32), "ed25519:" .. u.device_id, u.user_id))
  return assert(crypto.sign_json({
    user_id = u.user_id, device_id = u.device_id,
    algorithms = { "m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2" },
    keys = { ["curve25519:" .. u.device_id] = b64(core.crypto.random_bytes(32)),
      ["ed25519:" .. u.device_id] = u.key.public_key_base64 },
  }, u.key))
end

local function otks(u, n)
  local out = {}
  for i = 1, n do
    out["signed_curve25519:K" .. i] = assert(crypto.sign_json({ key = b64(core.crypto.random_bytes(32)) }, u.key))
  end
  return out
end

local function keypair(owner)
  local seed = core.crypto.random_bytes(32)
  local pub = b64(core.crypto.ed25519_public_key(seed))
  return assert(crypto.signing_key(seed, "ed25519:" .. pub, owner)), pub
end

local function must(r, what)
  assert(r.status == 200, what .. ": " .. tostring(r.status) .. " " .. tostring(r.body))
  return r.json
end

local function upload(s, u, body)
  return must(s:client("POST", V3 .. "/keys/upload", body, u.access_token), "upload")
end

local function query(s, u, users, timeout)
  return must(s:client("POST", V3 .. "/keys/query", { device_keys = users, timeout = timeout }, u.access_token),
    "query")
end

local function sync(s, u, since)
  return must(s:client("GET", V3 .. "/sync?timeout=0" .. (since and ("&since=" .. E(since)) or ""), nil,
    u.access_token), "sync")
end

local function has(list, x)
  for _, v in ipairs(list or {}) do if v == x then return true end end
  return false
end

local function device_ids(q, user_id)
  local out = {}
  for d in pairs(q.device_keys[user_id] or {}) do out[#out + 1] = d end
  table.sort(out)
  return out
end

-- a user with device keys, one-time keys and cross-signing keys
local function keyed_user(s, localpart)
  local u = s:register(localpart)
  upload(s, u, { device_keys = device_keys(u), one_time_keys = otks(u, 3) })
  u.master, u.master_pub = keypair(u.user_id)
  u.ssk, u.ssk_pub = keypair(u.user_id)
  local ssk = { user_id = u.user_id, usage = { "self_signing" }, keys = { ["ed25519:" .. u.ssk_pub] = u.ssk_pub } }
  assert(crypto.sign_json(ssk, u.master))
  must(s:client("POST", V3 .. "/keys/device_signing/upload", {
    master_key = { user_id = u.user_id, usage = { "master" }, keys = { ["ed25519:" .. u.master_pub] = u.master_pub } },
    self_signing_key = ssk }, u.access_token), "device_signing/upload")
  return u
end

local function edu_send(from, to, txn, edu_type, content)
  return from.hs.federation:request(to.name, "PUT", F1 .. "/send/" .. txn, { body = {
    origin = from.name, origin_server_ts = core.now_ms(), pdus = arr {},
    edus = arr { { edu_type = edu_type, content = content } } } })
end

describe("e2e keys over federation", function()
  local lab, a, b, c
  local alice, bob, room

  setup(function()
    lab = lab_mod.new { seed = 11 }
    a, b, c = lab:server("a.lab"), lab:server("b.lab"), lab:server("c.lab")
    lab:run(function()
      alice, bob = keyed_user(a, "alice"), keyed_user(b, "bob")
    end)
  end)
  teardown(function() lab:close() end)

  it("answers queries and claims for users sharing no room by asking their server", function()
    lab:run(function()
      local mine = query(a, alice, { [alice.user_id] = arr() })
      local q = query(b, bob, { [alice.user_id] = arr() })
      assert.same({}, q.failures)
      -- the same keys, signatures intact, display names in unsigned
      assert.same(mine.device_keys[alice.user_id], q.device_keys[alice.user_id])
      assert.same(mine.master_keys[alice.user_id], q.master_keys[alice.user_id])
      assert.same(mine.self_signing_keys[alice.user_id], q.self_signing_keys[alice.user_id])
      local dk = q.device_keys[alice.user_id][alice.device_id]
      assert.truthy(crypto.verify_json(dk, alice.user_id, "ed25519:" .. alice.device_id,
        core.crypto.base64_decode(alice.key.public_key_base64)))
      -- nothing held for a user sharing no room
      assert.is_nil(b.hs.store:remote_device_list(alice.user_id))
      -- one-time keys: each handed out once
      local r1 = must(b:client("POST", V3 .. "/keys/claim", { one_time_keys = {
        [alice.user_id] = { [alice.device_id] = "signed_curve25519" } } }, bob.access_token), "claim")
      local r2 = must(b:client("POST", V3 .. "/keys/claim", { one_time_keys = {
        [alice.user_id] = { [alice.device_id] = "signed_curve25519" } } }, bob.access_token), "claim")
      assert.same({}, r1.failures)
      local k1 = next(r1.one_time_keys[alice.user_id][alice.device_id])
      local k2 = next(r2.one_time_keys[alice.user_id][alice.device_id])
      assert.matches("^signed_curve25519:", k1)
      assert.not_equal(k1, k2)
      local key = r1.one_time_keys[alice.user_id][alice.device_id][k1]
      assert.truthy(crypto.verify_json(key, alice.user_id, "ed25519:" .. alice.device_id,
        core.crypto.base64_decode(alice.key.public_key_base64)))
      assert.equal(1, a.hs.store:one_time_key_counts(alice.user_id, alice.device_id).signed_curve25519)
    end)
  end)

  it("lists unreachable and slow servers in failures", function()
    lab:run(function()
      local q = query(b, bob, { ["@x:nowhere.lab"] = arr(), [alice.user_id] = arr() })
      assert.truthy(q.failures["nowhere.lab"])
      assert.equal(503, q.failures["nowhere.lab"].status)
      assert.is_nil(q.failures["a.lab"])
      assert.truthy(q.device_keys[alice.user_id][alice.device_id])
      lab:link("b.lab", "a.lab", { delay = 2000 })
      local t0 = core.now_ms()
      q = query(b, bob, { [alice.user_id] = arr() }, 200)
      assert.truthy(q.failures["a.lab"])
      assert.is_nil(q.device_keys[alice.user_id])
      assert.is_true(core.now_ms() - t0 < 1500)
      local cl = must(b:client("POST", V3 .. "/keys/claim", { timeout = 200, one_time_keys = {
        [alice.user_id] = { [alice.device_id] = "signed_curve25519" }, ["@y:nowhere.lab"] = { D = "x" } } },
        bob.access_token), "claim")
      assert.truthy(cl.failures["a.lab"])
      assert.truthy(cl.failures["nowhere.lab"])
      lab:link("b.lab", "a.lab", {})
      assert(lab:settle())
    end)
  end)

  it("keeps the lists of users sharing a room up to date with device-list EDUs", function()
    lab:run(function()
      room = a:create_room(alice, { preset = "public_chat" })
      b:join(bob, room, { "a.lab" })
      assert(lab:settle())
      -- bob's first query fetches alice's list; it is held from then on
      local q = query(b, bob, { [alice.user_id] = arr() })
      assert.same({ alice.device_id }, device_ids(q, alice.user_id))
      assert.truthy(b.hs.store:remote_device_list(alice.user_id))
      assert.equal(alice.master_pub, next(q.master_keys[alice.user_id].keys):sub(9))
      local since = sync(b, bob).next_batch
      local since_a = sync(a, alice).next_batch

      -- a new device of alice: bob's sync lists her as changed
      local phone = a.hs.accounts:issue_token(alice.user_id)
      upload(a, phone, { device_keys = device_keys(phone) })
      assert(lab:settle())
      local s = sync(b, bob, since)
      assert.is_true(has(s.device_lists.changed, alice.user_id))
      since = s.next_batch
      -- ... and the new device is served from the held list, even with a.lab cut off
      lab:partition({ "a.lab" }, { "b.lab" })
      q = query(b, bob, { [alice.user_id] = arr() })
      assert.same({}, q.failures)
      local want = { alice.device_id, phone.device_id }
      table.sort(want)
      assert.same(want, device_ids(q, alice.user_id))
      assert.same(query(a, alice, { [alice.user_id] = arr() }).device_keys[alice.user_id],
        q.device_keys[alice.user_id])
      lab:heal()

      -- a display name: in unsigned
      must(a:client("PUT", V3 .. "/devices/" .. E(phone.device_id), { display_name = "Phone" }, alice.access_token),
        "rename")
      assert(lab:settle())
      q = query(b, bob, { [alice.user_id] = arr { phone.device_id } })
      assert.equal("Phone", q.device_keys[alice.user_id][phone.device_id].unsigned.device_display_name)
      assert.same({ phone.device_id }, device_ids(q, alice.user_id))

      -- the deleted device vanishes
      local r = a:client("DELETE", V3 .. "/devices/" .. E(phone.device_id), {}, alice.access_token)
      assert.equal(401, r.status)
      r = a:client("DELETE", V3 .. "/devices/" .. E(phone.device_id), { auth = { type = "m.login.password",
        identifier = { type = "m.id.user", user = alice.user_id }, password = "lab-password",
        session = r.json.session } }, alice.access_token)
      assert.equal(200, r.status, r.body)
      assert(lab:settle())
      s = sync(b, bob, since)
      assert.is_true(has(s.device_lists.changed, alice.user_id))
      since = s.next_batch
      lab:partition({ "a.lab" }, { "b.lab" })
      assert.same({ alice.device_id }, device_ids(query(b, bob, { [alice.user_id] = arr() }), alice.user_id))
      lab:heal()

      -- new cross-signing keys: m.signing_key_update
      local _, pub2 = keypair(alice.user_id)
      r = a:client("POST", V3 .. "/keys/device_signing/upload", {
        master_key = { user_id = alice.user_id, usage = { "master" }, keys = { ["ed25519:" .. pub2] = pub2 } } },
        alice.access_token)
      r = a:client("POST", V3 .. "/keys/device_signing/upload", {
        master_key = { user_id = alice.user_id, usage = { "master" }, keys = { ["ed25519:" .. pub2] = pub2 } },
        auth = { type = "m.login.password", identifier = { type = "m.id.user", user = alice.user_id },
          password = "lab-password", session = r.json.session } }, alice.access_token)
      assert.equal(200, r.status, r.body)
      assert(lab:settle())
      s = sync(b, bob, since)
      assert.is_true(has(s.device_lists.changed, alice.user_id))
      lab:partition({ "a.lab" }, { "b.lab" })
      q = query(b, bob, { [alice.user_id] = arr() })
      assert.equal(pub2, next(q.master_keys[alice.user_id].keys):sub(9))
      lab:heal()

      -- the other way round: alice queries and claims bob's keys (held, after her first query)
      q = query(a, alice, { [bob.user_id] = arr() })
      assert.same({ bob.device_id }, device_ids(q, bob.user_id))
      assert.same(query(b, bob, { [bob.user_id] = arr() }).device_keys[bob.user_id], q.device_keys[bob.user_id])
      local cl = must(a:client("POST", V3 .. "/keys/claim", { one_time_keys = {
        [bob.user_id] = { [bob.device_id] = "signed_curve25519" } } }, alice.access_token), "claim")
      assert.truthy(next(cl.one_time_keys[bob.user_id][bob.device_id]))

      -- bob leaves the last room he shares with alice: in her device_lists.left
      since_a = sync(a, alice, since_a).next_batch
      must(b:client("POST", V3 .. "/rooms/" .. E(room) .. "/leave", {}, bob.access_token), "leave")
      assert(lab:settle())
      s = sync(a, alice, since_a)
      assert.is_true(has(s.device_lists.left, bob.user_id))
      assert.is_false(has(s.device_lists.changed, bob.user_id))
      -- ... and a no longer holds his list
      assert.is_nil(a.hs.store:remote_device_list(bob.user_id))
    end)
  end)

  it("ignores device-list EDUs from a server not the user's own, resyncs on a gap", function()
    lab:run(function()
      local carol = c:register("carol")
      c:join(carol, room, { "a.lab" })
      b:join(bob, room, { "a.lab" })
      assert(lab:settle())
      query(b, bob, { [alice.user_id] = arr() })
      local held = b.hs.store:remote_device_list(alice.user_id)
      assert.truthy(held)
      local since = sync(b, bob).next_batch
      -- c.lab speaks for alice: ignored
      local ghost = { user_id = alice.user_id, device_id = "GHOST" }
      local forged = { user_id = alice.user_id, device_id = "GHOST", stream_id = held + 1, prev_id = arr { held },
        keys = device_keys(ghost) }
      assert.equal(200, edu_send(c, b, "f1", "m.device_list_update", forged))
      local m2 = select(2, keypair(alice.user_id))
      assert.equal(200, edu_send(c, b, "f2", "m.signing_key_update", { user_id = alice.user_id,
        master_key = { user_id = alice.user_id, usage = { "master" }, keys = { ["ed25519:" .. m2] = m2 } } }))
      assert(lab:settle())
      assert.equal(held, b.hs.store:remote_device_list(alice.user_id))
      local s = sync(b, bob, since)
      assert.is_false(has(s.device_lists.changed, alice.user_id))
      local q = query(b, bob, { [alice.user_id] = arr() })
      assert.same({ alice.device_id }, device_ids(q, alice.user_id))
      assert.not_equal(m2, next(q.master_keys[alice.user_id].keys):sub(9))
      -- from a.lab, but not following the list held (a gap): b fetches the list again,
      -- which has no GHOST
      assert.equal(200, edu_send(a, b, "g1", "m.device_list_update", { user_id = alice.user_id,
        device_id = "GHOST", stream_id = held + 100, prev_id = arr { held + 99 }, keys = device_keys(ghost) }))
      assert(lab:settle())
      q = query(b, bob, { [alice.user_id] = arr() })
      assert.same({ alice.device_id }, device_ids(q, alice.user_id))
      assert.equal(a.hs.store:device_list_stream_id(alice.user_id), b.hs.store:remote_device_list(alice.user_id))
      -- malformed EDUs change nothing and break nothing
      for i, bad in ipairs { "x", { user_id = alice.user_id }, { user_id = alice.user_id, device_id = 5,
          stream_id = 1 }, { user_id = alice.user_id, device_id = "D", stream_id = "1" },
          { user_id = alice.user_id, device_id = "D", stream_id = held + 200, prev_id = "no" } } do
        assert.equal(200, edu_send(a, b, "m" .. i, "m.device_list_update", bad))
      end
      assert.equal(200, edu_send(a, b, "m9", "m.signing_key_update", { user_id = alice.user_id, master_key = "x" }))
      -- a self-signing key is taken when signed by the master key, not otherwise
      local m3, m3_pub = keypair(alice.user_id)
      local _, s3_pub = keypair(alice.user_id)
      local function ssk_of(pub, signer)
        return assert(crypto.sign_json({ user_id = alice.user_id, usage = { "self_signing" },
          keys = { ["ed25519:" .. pub] = pub } }, signer))
      end
      assert.equal(200, edu_send(a, b, "m10", "m.signing_key_update", { user_id = alice.user_id,
        master_key = { user_id = alice.user_id, usage = { "master" }, keys = { ["ed25519:" .. m3_pub] = m3_pub } },
        self_signing_key = ssk_of(s3_pub, m3) }))
      q = query(b, bob, { [alice.user_id] = arr() })
      assert.equal(m3_pub, next(q.master_keys[alice.user_id].keys):sub(9))
      assert.equal(s3_pub, next(q.self_signing_keys[alice.user_id].keys):sub(9))
      local other = keypair(alice.user_id)
      local _, s4_pub = keypair(alice.user_id)
      assert.equal(200, edu_send(a, b, "m11", "m.signing_key_update", { user_id = alice.user_id,
        self_signing_key = ssk_of(s4_pub, other) }))
      assert(lab:settle())
      q = query(b, bob, { [alice.user_id] = arr() })
      assert.same({ alice.device_id }, device_ids(q, alice.user_id))
      assert.equal(s3_pub, next(q.self_signing_keys[alice.user_id].keys):sub(9))
    end)
  end)

  it("fetches a shared user's list once for queries at the same time", function()
    lab:run(function()
      local dave = keyed_user(a, "dave")
      a:join(dave, room)
      assert(lab:settle())
      assert.is_nil(b.hs.store:remote_device_list(dave.user_id))
      local fed = b.hs.federation
      local fetches = 0
      local request = fed.request
      fed.request = function(self, dest, method, path, opts)
        if path:find("/user/devices/", 1, true) then fetches = fetches + 1 end
        return request(self, dest, method, path, opts)
      end
      lab:link("b.lab", "a.lab", { delay = 50 })   -- the fetches overlap
      local results, left = {}, 3
      local done = async.wait(function(wake)
        for i = 1, 3 do
          async.spawn(function()
            results[i] = query(b, bob, { [dave.user_id] = arr() })
          end, nil, function() left = left - 1; if left == 0 then wake(true) end end)
        end
      end)
      fed.request = request
      lab:link("b.lab", "a.lab", {})
      assert.is_true(done)
      assert.equal(1, fetches)
      for i = 1, 3 do
        assert.same({}, results[i].failures)
        assert.same({ dave.device_id }, device_ids(results[i], dave.user_id))
      end
      assert.truthy(b.hs.store:remote_device_list(dave.user_id))
    end)
  end)

  it("answers bad federation input with Matrix errors", function()
    lab:run(function()
      local fed = b.hs.federation
      local function req(method, path, body, opts)
        local o = opts or {}
        o.body = body
        return fed:request("a.lab", method, path, o)
      end
      local st, body = req("GET", F1 .. "/user/devices/" .. E(alice.user_id))
      assert.equal(200, st)
      assert.equal(alice.user_id, body.user_id)
      assert.equal(a.hs.store:device_list_stream_id(alice.user_id), body.stream_id)
      assert.equal(1, #body.devices)
      assert.equal(alice.device_id, body.devices[1].device_id)
      assert.equal(alice.user_id, body.devices[1].keys.user_id)
      assert.truthy(body.master_key)
      assert.truthy(body.self_signing_key)
      st, body = req("GET", F1 .. "/user/devices/" .. E("@nobody:a.lab"))
      assert.equal(200, st)
      assert.equal(0, #body.devices)
      st, body = req("GET", F1 .. "/user/devices/" .. E(bob.user_id))
      assert.equal(400, st)
      assert.equal("M_INVALID_PARAM", body.errcode)
      st, body = req("GET", F1 .. "/user/devices/notauser")
      assert.equal(400, st)
      assert.equal("M_INVALID_PARAM", body.errcode)
      st, body = req("GET", F1 .. "/user/devices/" .. E(alice.user_id), nil, { unsigned = true })
      assert.equal(401, st)
      assert.equal("M_UNAUTHORIZED", body.errcode)
      for _, case in ipairs {
        { "/user/keys/query", {}, 400, "M_MISSING_PARAM" },
        { "/user/keys/query", { device_keys = "x" }, 400, "M_BAD_JSON" },
        { "/user/keys/query", { device_keys = { [alice.user_id] = "x" } }, 400, "M_BAD_JSON" },
        { "/user/keys/query", { device_keys = { [alice.user_id] = arr { 5 } } }, 400, "M_BAD_JSON" },
        { "/user/keys/query", { device_keys = { ["not a user"] = arr() } }, 400, "M_INVALID_PARAM" },
        { "/user/keys/claim", {}, 400, "M_MISSING_PARAM" },
        { "/user/keys/claim", { one_time_keys = arr { 1 } }, 400, "M_BAD_JSON" },
        { "/user/keys/claim", { one_time_keys = { [alice.user_id] = "x" } }, 400, "M_BAD_JSON" },
        { "/user/keys/claim", { one_time_keys = { [alice.user_id] = { D = 5 } } }, 400, "M_BAD_JSON" },
      } do
        st, body = req("POST", F1 .. case[1], case[2])
        assert.equal(case[3], st, case[1] .. " " .. core.json.encode(case[2]))
        assert.equal(case[4], body.errcode)
      end
      -- only this server's users are answered
      st, body = req("POST", F1 .. "/user/keys/query", { device_keys = { [alice.user_id] = arr(),
        [bob.user_id] = arr() } })
      assert.equal(200, st)
      assert.truthy(body.device_keys[alice.user_id][alice.device_id])
      assert.is_nil(body.device_keys[bob.user_id])
      assert.is_nil(body.user_signing_keys)
      st, body = req("POST", F1 .. "/user/keys/claim", { one_time_keys = {
        [bob.user_id] = { [bob.device_id] = "signed_curve25519" } } })
      assert.equal(200, st)
      assert.is_nil(body.one_time_keys[bob.user_id])
      -- not JSON
      local status = select(1, a.hs.federation:request("b.lab", "POST", F1 .. "/user/keys/query"))
      assert.equal(400, status)
    end)
  end)
end)
