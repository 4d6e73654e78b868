-- luacheck: no max line length
-- loom.core.crypto (C primitives) and loom.crypto (Matrix signing and hashing).
-- Vectors: the Matrix spec appendix examples and room v3/v4 event IDs, read
-- from $LOOM_SPEC_VECTORS or ../shared/vectors/spec.json.
local core = require("loom.core")
local c = core.crypto
local json = core.json
local crypto = require("loom.room.crypto")

local function load_vectors()
  local path = os.getenv("LOOM_SPEC_VECTORS") or "../shared/vectors/spec.json"
  local f = assert(io.open(path, "rb"), "spec vectors not found at " .. path .. " (set LOOM_SPEC_VECTORS)")
  local text = f:read("a")
  f:close()
  return assert(json.decode(text))
end

local function hex(s)
  return (s:gsub(".", function(ch) return ("%02x"):format(ch:byte()) end))
end

local function deepcopy(v)
  if type(v) ~= "table" or v == json.null then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = deepcopy(x) end
  return setmetatable(out, getmetatable(v))
end

local function flip_bit(s, i)
  i = i or 1
  local b = s:byte(i)
  return s:sub(1, i - 1) .. string.char(b ~ 1) .. s:sub(i + 1)
end

-- Deterministic generator (splitmix64), independent of math.random.
local function rng(seed)
  local state = seed
  local function next64()
    state = state + 0x9E3779B97F4A7C15
    local z = state
    z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ~ (z >> 27)) * 0x94D049BB133111EB
    return z ~ (z >> 31)
  end
  return function(lo, hi)  -- integer in [lo, hi]
    return lo + (next64() >> 1) % (hi - lo + 1)
  end
end

local CODEPOINTS = { 0x41, 0x7a, 0x30, 0x20, 0x22, 0x5c, 0x2f, 0x0a, 0x00, 0x1f, 0x7f,
  0xe9, 0x2028, 0x65e5, 0xfeff, 0x1f600, 0x10ffff }

local function random_string(r)
  local t = {}
  for i = 1, r(0, 8) do
    t[i] = r(0, 2) == 0 and utf8.char(CODEPOINTS[r(1, #CODEPOINTS)]) or string.char(r(0x61, 0x7a))
  end
  return table.concat(t)
end

local function random_value(r, depth)
  local kind = r(1, depth > 3 and 5 or 7)
  if kind == 1 then return random_string(r)
  elseif kind == 2 then return r(-9007199254740991, 9007199254740991)
  elseif kind == 3 then return r(-1000, 1000)
  elseif kind == 4 then return r(0, 1) == 1
  elseif kind == 5 then return json.null
  elseif kind == 6 then
    local a = setmetatable({}, json.array_mt)
    for i = 1, r(0, 4) do a[i] = random_value(r, depth + 1) end
    return a
  end
  local o = {}
  for _ = 1, r(0, 5) do o[random_string(r)] = random_value(r, depth + 1) end
  return o
end

local function random_object(r)
  local o = {}
  for _ = 1, r(0, 6) do o[random_string(r)] = random_value(r, 1) end
  return o
end

describe("loom.core.crypto", function()
  describe("sha256", function()
    it("hashes known strings", function()
      assert.equals("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", hex(c.sha256("")))
      assert.equals("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", hex(c.sha256("abc")))
      assert.equals(32, #c.sha256(("x"):rep(100000)))
    end)
    it("raises for a non-string", function()
      assert.has_error(function() c.sha256({}) end)
    end)
  end)

  describe("random_bytes", function()
    it("returns n fresh bytes for 1..1024", function()
      assert.equals(1, #c.random_bytes(1))
      assert.equals(1024, #c.random_bytes(1024))
      assert.not_equals(c.random_bytes(32), c.random_bytes(32))
    end)
    it("raises outside 1..1024", function()
      assert.has_error(function() c.random_bytes(0) end)
      assert.has_error(function() c.random_bytes(1025) end)
      assert.has_error(function() c.random_bytes(1.5) end)
      assert.has_error(function() c.random_bytes("x") end)
    end)
  end)

  describe("base64", function()
    it("encodes the RFC 4648 vectors without padding", function()
      local cases = { [""] = "", f = "Zg", fo = "Zm8", foo = "Zm9v", foob = "Zm9vYg",
        fooba = "Zm9vYmE", foobar = "Zm9vYmFy" }
      for raw, enc in pairs(cases) do
        assert.equals(enc, c.base64_encode(raw))
        assert.equals(enc, c.base64_encode(raw, true))
        assert.equals(raw, c.base64_decode(enc))
        assert.equals(raw, c.base64_decode(enc, true))
      end
    end)

    it("uses + / or - _ by alphabet", function()
      assert.equals("+/8", c.base64_encode("\xfb\xff"))
      assert.equals("-_8", c.base64_encode("\xfb\xff", true))
      assert.equals("\xfb\xff", c.base64_decode("+/8"))
      assert.equals("\xfb\xff", c.base64_decode("-_8", true))
    end)

    it("round-trips random bytes in both alphabets", function()
      for n = 1, 300 do
        local raw = c.random_bytes(n)
        for _, urlsafe in ipairs({ false, true }) do
          local enc = c.base64_encode(raw, urlsafe)
          assert.is_nil(enc:find("=", 1, true))
          assert.is_nil(enc:find(urlsafe and "[+/]" or "[-_]"))
          assert.equals(raw, c.base64_decode(enc, urlsafe))
        end
      end
    end)

    it("accepts correct padding", function()
      assert.equals("f", c.base64_decode("Zg=="))
      assert.equals("fo", c.base64_decode("Zm8="))
      assert.equals("fo", c.base64_decode("Zm8=", true))
    end)

    it("is lenient about non-zero trailing bits", function()
      assert.equals("f", c.base64_decode("Zh"))
      assert.equals("fo", c.base64_decode("Zm9"))
    end)

    it("rejects bad input with nil, message, bad_base64", function()
      local bad = { "Z", "Zm9vY", "Zg=", "Zg===", "Zm8==", "Z===", "====", "=", "Zg==Zg==",
        "=Zg=", "Zm 9v", "Zm9v\n", " Zm9v", "Zm9v\0", "Zm\t9v", "Zm9\xc3\xa9", "Zm.v" }
      for _, text in ipairs(bad) do
        for _, urlsafe in ipairs({ false, true }) do
          local r, msg, code = c.base64_decode(text, urlsafe)
          assert.is_nil(r, ("%q"):format(text))
          assert.is_string(msg)
          assert.equals("bad_base64", code)
        end
      end
      assert.is_nil(c.base64_decode("-_8"))
      assert.is_nil(c.base64_decode("+/8", true))
    end)

    it("raises for non-strings", function()
      assert.has_error(function() c.base64_encode(nil) end)
      assert.has_error(function() c.base64_decode({}) end)
    end)
  end)

  describe("ed25519", function()
    local seed = c.random_bytes(32)
    local pk = c.ed25519_public_key(seed)
    local msg = "a message"
    local sig = c.ed25519_sign(seed, msg)

    it("derives the spec's public key from its seed", function()
      local v = load_vectors().signing_key
      local s = assert(c.base64_decode(v.seed_unpadded_base64))
      assert.equals(32, #s)
      assert.equals(v.public_key_unpadded_base64, c.base64_encode(c.ed25519_public_key(s)))
    end)

    it("signs deterministically and verifies", function()
      assert.equals(32, #pk)
      assert.equals(64, #sig)
      assert.equals(sig, c.ed25519_sign(seed, msg))
      assert.is_true(c.ed25519_verify(pk, msg, sig))
      assert.is_true(c.ed25519_verify(pk, "", c.ed25519_sign(seed, "")))
    end)

    it("rejects a flipped bit in message, signature or key", function()
      assert.is_false(c.ed25519_verify(pk, flip_bit(msg), sig))
      for _, i in ipairs({ 1, 32, 33, 64 }) do
        assert.is_false(c.ed25519_verify(pk, msg, flip_bit(sig, i)), i)
      end
      for _, i in ipairs({ 1, 16, 32 }) do
        assert.is_false(c.ed25519_verify(flip_bit(pk, i), msg, sig), i)
      end
    end)

    it("returns false for wrong lengths or garbage, never raises", function()
      assert.is_false(c.ed25519_verify(pk, msg, sig:sub(1, 63)))
      assert.is_false(c.ed25519_verify(pk, msg, sig .. "x"))
      assert.is_false(c.ed25519_verify(pk:sub(1, 31), msg, sig))
      assert.is_false(c.ed25519_verify("", msg, ""))
      assert.is_false(c.ed25519_verify(("\xff"):rep(32), msg, ("\xff"):rep(64)))
      assert.is_false(c.ed25519_verify(("\0"):rep(32), msg, ("\0"):rep(64)))
    end)

    it("raises for misuse", function()
      assert.has_error(function() c.ed25519_public_key(("x"):rep(31)) end)
      assert.has_error(function() c.ed25519_sign(("x"):rep(33), "m") end)
      assert.has_error(function() c.ed25519_sign(seed, nil) end)
      assert.has_error(function() c.ed25519_verify(pk, msg, nil) end)
      assert.has_error(function() c.ed25519_verify(nil, msg, sig) end)
    end)
  end)

  describe("constant_time_equal", function()
    it("compares bytes", function()
      assert.is_true(c.constant_time_equal("", ""))
      assert.is_true(c.constant_time_equal("abc\0d", "abc\0d"))
      assert.is_false(c.constant_time_equal("abc", "abd"))
      assert.is_false(c.constant_time_equal("abc", "abcd"))
      assert.has_error(function() c.constant_time_equal("a", nil) end)
    end)
  end)
end)

describe("loom.crypto", function()
  local V = load_vectors()
  local SK = V.signing_key
  local function spec_key()
    return assert(crypto.signing_key(SK.seed_unpadded_base64, SK.algorithm .. ":" .. SK.version,
      SK.server_name))
  end
  local KEY_ID = SK.algorithm .. ":" .. SK.version

  describe("signing_key", function()
    it("builds a key from a base64 or raw seed", function()
      local k = spec_key()
      assert.equals(SK.public_key_unpadded_base64, k.public_key_base64)
      assert.equals(32, #k.public_key)
      assert.equals(32, #k.seed)
      assert.equals("ed25519:1", k.key_id)
      assert.equals("domain", k.server_name)
      local k2 = assert(crypto.signing_key(k.seed, "1", "domain"))
      assert.equals(k.public_key, k2.public_key)
      assert.equals("ed25519:1", k2.key_id)
      assert.is_nil(tostring(k):find(k.seed, 1, true))
    end)
    it("returns nil, message, bad_key for a bad seed", function()
      local k, msg, code = crypto.signing_key("not base64!", "1", "x")
      assert.is_nil(k); assert.is_string(msg); assert.equals("bad_key", code)
      k, msg, code = crypto.signing_key("AAAA", "1", "x")
      assert.is_nil(k); assert.is_string(msg); assert.equals("bad_key", code)
    end)
    it("raises for non-strings", function()
      assert.has_error(function() crypto.signing_key(nil, "1", "x") end)
    end)
  end)

  describe("sign_json / verify_json", function()
    it("matches the spec's signed JSON examples", function()
      local key = spec_key()
      for i, case in ipairs(V.signed_json) do
        local obj = deepcopy(case.input)
        assert.equals(obj, crypto.sign_json(obj, key))
        assert.equals(case.signature, obj.signatures[SK.server_name][KEY_ID], "case " .. i)
        assert.is_true(crypto.verify_json(obj, SK.server_name, KEY_ID, key.public_key))
      end
    end)

    it("leaves unsigned in place and keeps other servers' signatures", function()
      local key = spec_key()
      local unsigned = { age = 5 }
      local obj = { a = 1, unsigned = unsigned,
        signatures = { other = { ["ed25519:x"] = "theirs" }, domain = { ["ed25519:old"] = "old" } } }
      crypto.sign_json(obj, key)
      assert.equals(unsigned, obj.unsigned)
      assert.same({ age = 5 }, obj.unsigned)
      assert.equals("theirs", obj.signatures.other["ed25519:x"])
      assert.equals("old", obj.signatures.domain["ed25519:old"])
      -- the signature does not cover unsigned or signatures
      local plain = crypto.sign_json({ a = 1 }, key)
      assert.equals(plain.signatures.domain[KEY_ID], obj.signatures.domain[KEY_ID])
      obj.unsigned.age = 6
      assert.is_true(crypto.verify_json(obj, "domain", KEY_ID, key.public_key))
      obj.a = 2
      local ok, _, code = crypto.verify_json(obj, "domain", KEY_ID, key.public_key)
      assert.is_nil(ok); assert.equals("bad_signature", code)
    end)

    it("returns verify errors as codes", function()
      local key = spec_key()
      local obj = crypto.sign_json({ x = "y" }, key)
      local ok, msg, code = crypto.verify_json(obj, "elsewhere", KEY_ID, key.public_key)
      assert.is_nil(ok); assert.is_string(msg); assert.equals("no_signature", code)
      local function code_of(...) return select(3, ...) end
      assert.equals("no_signature", code_of(crypto.verify_json(obj, "domain", "ed25519:2", key.public_key)))
      assert.equals("no_signature", code_of(crypto.verify_json({ x = "y" }, "domain", KEY_ID, key.public_key)))
      local bad = deepcopy(obj)
      bad.signatures.domain[KEY_ID] = "not base64!"
      assert.equals("bad_base64", code_of(crypto.verify_json(bad, "domain", KEY_ID, key.public_key)))
      local other = c.ed25519_public_key(c.random_bytes(32))
      assert.equals("bad_signature", code_of(crypto.verify_json(obj, "domain", KEY_ID, other)))
      assert.equals("bad_signature", code_of(crypto.verify_json(obj, "domain", KEY_ID, "short")))
    end)

    it("passes JSON encoder failures through", function()
      local key = spec_key()
      local r, msg, code = crypto.sign_json({ f = 1.5 }, key)
      assert.is_nil(r); assert.is_string(msg); assert.is_string(code)
      r, msg, code = crypto.verify_json({ f = function() end, signatures = { d = { [KEY_ID] = "AAAA" } } },
        "d", KEY_ID, key.public_key)
      assert.is_nil(r); assert.is_string(msg); assert.is_string(code)
    end)

    it("round-trips random objects with random keys", function()
      local r = rng(7)
      for i = 1, 100 do
        local key = assert(crypto.signing_key(c.random_bytes(32), "k" .. i, "s" .. i .. ".example"))
        local obj = random_object(r)
        local copy = deepcopy(obj)
        assert(crypto.sign_json(obj, key))
        assert.is_true(crypto.verify_json(obj, key.server_name, key.key_id, key.public_key))
        -- decoding the encoded signed object keeps it verifiable
        local again = json.decode(assert(json.encode(obj)))
        assert.is_true(crypto.verify_json(again, key.server_name, key.key_id, key.public_key))
        obj.signatures = nil
        assert.same(copy, obj)
        crypto.sign_json(copy, key)
        copy.tampered = true
        assert.is_nil(crypto.verify_json(copy, key.server_name, key.key_id, key.public_key))
      end
    end)
  end)

  describe("events", function()
    it("computes and checks the spec's content hashes and signatures (room v1)", function()
      local key = spec_key()
      for i, case in ipairs(V.signed_events_room_v1_redaction) do
        local ev = deepcopy(case.input)
        assert.equals(case.content_hash_sha256, crypto.content_hash(ev), "case " .. i)
        local ok, _, code = crypto.check_content_hash(ev)
        assert.is_nil(ok); assert.equals("bad_content_hash", code)
        assert.equals(ev, crypto.sign_event(ev, key, "1"))
        assert.equals(case.content_hash_sha256, ev.hashes.sha256)
        assert.is_true(crypto.check_content_hash(ev))
        assert.equals(case.signature, ev.signatures[SK.server_name][KEY_ID], "case " .. i)
        assert.is_true(crypto.verify_event_signature(ev, SK.server_name, KEY_ID, key.public_key, "1"))
        assert.same(case.input.unsigned, ev.unsigned)
      end
    end)

    it("add_content_hash sets hashes; check_content_hash detects tampering", function()
      local ev = deepcopy(V.signed_events_room_v1_redaction[2].input)
      assert.equals(ev, crypto.add_content_hash(ev))
      assert.same({ sha256 = V.signed_events_room_v1_redaction[2].content_hash_sha256 }, ev.hashes)
      assert.is_true(crypto.check_content_hash(ev))
      ev.unsigned = { age = 99 }
      ev.signatures = { x = { y = "z" } }
      assert.is_true(crypto.check_content_hash(ev))
      ev.content.body = "changed"
      local ok, msg, code = crypto.check_content_hash(ev)
      assert.is_nil(ok); assert.is_string(msg); assert.equals("bad_content_hash", code)
      ev.hashes = { sha256 = "@@@" }
      assert.equals("bad_content_hash", select(3, crypto.check_content_hash(ev)))
    end)

    it("computes the spec's event IDs for room versions 3 and 4", function()
      for _, case in ipairs(V.event_ids) do
        assert.equals(case.expected_event_id, crypto.event_id(case.event, case.room_version),
          "room v" .. case.room_version)
      end
    end)

    it("event IDs: URL-safe from v4, none for v1/v2 or unknown versions", function()
      local ev = V.event_ids[2].event
      local v4 = crypto.event_id(ev, "4")
      for v = 5, 10 do assert.equals(v4, crypto.event_id(ev, tostring(v))) end
      assert.matches("^%$[%w_-]+$", crypto.event_id(ev, "12"))
      for _, v in ipairs({ "1", "2", "13", "x" }) do
        local id, msg, code = crypto.event_id(ev, v)
        assert.is_nil(id); assert.is_string(msg); assert.equals("unsupported_room_version", code)
      end
    end)

    it("reference hashes ignore unsigned, signatures and redacted content", function()
      local ev = deepcopy(V.event_ids[2].event)
      local h = crypto.reference_hash(ev, "4")
      assert.equals(32, #h)
      ev.unsigned = { age = 1, age_ts = 2 }
      ev.signatures = {}
      ev.content.extra = "redacted away"
      assert.equals(h, crypto.reference_hash(ev, "4"))
      ev.hashes.sha256 = "other"
      assert.not_equals(h, crypto.reference_hash(ev, "4"))
      assert.equals(deepcopy(V.event_ids[2].event).content.creator, ev.content.creator)
    end)

    it("signs and verifies events over the redacted form", function()
      local key = assert(crypto.signing_key(c.random_bytes(32), "a", "hs.example"))
      for _, v in ipairs({ "1", "4", "9", "10", "11", "12" }) do
        local ev = {
          type = "m.room.member", state_key = "@u:hs.example", sender = "@u:hs.example",
          room_id = "!r:hs.example", depth = 3, origin_server_ts = 1,
          content = { membership = "join", displayname = "U" },
          prev_events = setmetatable({}, json.array_mt), auth_events = setmetatable({}, json.array_mt),
          unsigned = { age = 1 },
        }
        assert(crypto.sign_event(ev, key, v))
        assert.is_string(ev.hashes.sha256)
        assert.is_true(crypto.verify_event_signature(ev, "hs.example", "ed25519:a", key.public_key, v))
        -- redacted content may change without breaking the signature ...
        ev.content.displayname = "changed"
        assert.is_true(crypto.verify_event_signature(ev, "hs.example", "ed25519:a", key.public_key, v))
        -- ... but the content hash catches it
        assert.is_nil(crypto.check_content_hash(ev))
        ev.content.membership = "leave"
        local ok, _, code = crypto.verify_event_signature(ev, "hs.example", "ed25519:a", key.public_key, v)
        assert.is_nil(ok); assert.equals("bad_signature", code)
      end
    end)

    it("sign_event keeps an existing content hash and other signatures", function()
      local key = spec_key()
      local ev = deepcopy(V.event_ids[1].event)
      local h = ev.hashes.sha256
      assert(crypto.sign_event(ev, key, "3"))
      assert.equals(h, ev.hashes.sha256)
      assert.is_string(ev.signatures["jki.re"]["ed25519:auto"])
      assert.is_true(crypto.verify_event_signature(ev, "domain", KEY_ID, key.public_key, "3"))
      local ok, _, code = crypto.sign_event(ev, key, "99")
      assert.is_nil(ok); assert.equals("unsupported_room_version", code)
    end)
  end)
end)

describe("ed25519 signer", function()
  it("signs exactly as the one-shot function does, and verifies", function()
    for i = 1, 20 do
      local seed = c.random_bytes(32)
      local signer = assert(c.ed25519_signer(seed))
      local msg = c.random_bytes(i * 7)
      local sig = signer:sign(msg)
      assert.equal(c.ed25519_sign(seed, msg), sig)       -- Ed25519 signatures are deterministic
      assert.is_true(c.ed25519_verify(c.ed25519_public_key(seed), msg, sig))
    end
    assert.has_error(function() c.ed25519_signer("short") end)
    assert.matches("loom.Ed25519Signer", tostring(assert(c.ed25519_signer(c.random_bytes(32)))))
  end)
end)

describe("hmac_sha1", function()
  -- RFC 2202 section 3 test cases 1, 2, 6 and 7 (key longer than the block size).
  it("matches the RFC 2202 vectors", function()
    assert.equal("b617318655057264e28bc0b6fb378c8ef146be00", hex(c.hmac_sha1(("\x0b"):rep(20), "Hi There")))
    assert.equal("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79", hex(c.hmac_sha1("Jefe", "what do ya want for nothing?")))
    assert.equal("aa4ae5e15272d00e95705637ce8a3b55ed402112",
      hex(c.hmac_sha1(("\xaa"):rep(80), "Test Using Larger Than Block-Size Key - Hash Key First")))
    assert.equal("e8e99d0f45237d786d6bbaa7965c7808bbff1a91",
      hex(c.hmac_sha1(("\xaa"):rep(80), "Test Using Larger Than Block-Size Key and Larger Than One Block-Size Data")))
  end)
  it("takes an empty key and message, and refuses non-strings", function()
    assert.equal("fbdb1d1b18aa6c08324b7d64b71fb76370690e1d", hex(c.hmac_sha1("", "")))
    assert.has_error(function() c.hmac_sha1(nil, "x") end)
  end)
end)
