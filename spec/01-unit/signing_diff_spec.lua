-- Differential tests: loom.crypto against Debian's python3-signedjson and
-- python3-canonicaljson (run with /usr/bin/python3). 100 random objects from a
-- fixed seed, each with its own random Ed25519 seed:
--   * loom's canonical JSON equals canonicaljson.encode_canonical_json;
--   * loom's signature equals signedjson.sign.sign_json's;
--   * signedjson verifies loom's signed objects, loom verifies python's.
local core = require("loom.core")
local c = core.crypto
local json = core.json
local crypto = require("loom.room.crypto")

local PYTHON = "env -u LD_PRELOAD /usr/bin/python3"   -- not under the ASan preload
local CASES = 100
local SERVER = "loom.test"
local KEY_ID = "ed25519:1"

local PY_SCRIPT = [[
import base64, copy, json, sys
import canonicaljson, signedjson.key, signedjson.sign

with open(sys.argv[1], encoding="utf-8") as f:
    cases = json.load(f)
out = []
for case in cases:
    key = signedjson.key.decode_signing_key_base64("ed25519", "1", case["seed"])
    vk = signedjson.key.get_verify_key(key)
    res = {"public_key": signedjson.key.encode_verify_key_base64(vk)}
    try:
        signedjson.sign.verify_signed_json(case["loom_signed"], "loom.test", vk)
        res["verified"] = True
    except Exception as e:
        res["verified"] = False
        res["error"] = repr(e)
    obj = copy.deepcopy(case["object"])
    stripped = {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
    res["canonical"] = base64.b64encode(canonicaljson.encode_canonical_json(stripped)).decode()
    signed = signedjson.sign.sign_json(obj, "loom.test", key)
    res["signature"] = signed["signatures"]["loom.test"]["ed25519:1"]
    res["signed"] = signed
    out.append(res)
with open(sys.argv[2], "w", encoding="utf-8") as f:
    json.dump(out, f, ensure_ascii=False)
]]

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
  return function(lo, hi)
    return lo + (next64() >> 1) % (hi - lo + 1)
  end
end

local CODEPOINTS = { 0x41, 0x7a, 0x30, 0x20, 0x22, 0x5c, 0x2f, 0x0a, 0x0d, 0x09, 0x08, 0x0c,
  0x00, 0x1f, 0x7f, 0x80, 0xe9, 0x7ff, 0x800, 0x2028, 0x2029, 0x65e5, 0xfeff, 0xfffd,
  0x10000, 0x1f600, 0x10ffff }

local function random_string(r)
  local t = {}
  for i = 1, r(0, 10) do
    t[i] = r(0, 2) == 0 and utf8.char(CODEPOINTS[r(1, #CODEPOINTS)]) or string.char(r(0x20, 0x7e))
  end
  return table.concat(t)
end

local function random_value(r, depth)
  local kind = r(1, depth > 4 and 6 or 8)
  if kind == 1 or kind == 2 then return random_string(r)
  elseif kind == 3 then return r(-9007199254740991, 9007199254740991)
  elseif kind == 4 then return r(-300, 300)
  elseif kind == 5 then return r(0, 1) == 1
  elseif kind == 6 then return json.null
  elseif kind == 7 then
    local a = setmetatable({}, json.array_mt)
    for i = 1, r(0, 4) do a[i] = random_value(r, depth + 1) end
    return a
  end
  local o = {}
  for _ = 1, r(0, 5) do o[random_string(r)] = random_value(r, depth + 1) end
  return o
end

local function random_bytes(r, n)
  local t = {}
  for i = 1, n do t[i] = string.char(r(0, 255)) end
  return table.concat(t)
end

local function random_case(r, i)
  local obj = {}
  for _ = 1, r(0, 8) do obj[random_string(r)] = random_value(r, 1) end
  if i % 3 == 0 then obj.unsigned = { age = r(0, 100000), note = random_string(r) } end
  if i % 4 == 0 then obj.signatures = { ["other.example"] = { ["ed25519:x"] = "c2ln" } } end
  return { seed = random_bytes(r, 32), object = obj }
end

local function deepcopy(v)
  if type(v) ~= "table" or v == json.null then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = deepcopy(x) end
  return setmetatable(out, getmetatable(v))
end

local files = require "support.files"
local write_file, read_file = files.write, files.read
local shell_quote = require("support.shell").quote

-- Run once, on first use: generate, sign with loom, hand over to python.
local run
local function results()
  if run then return run end
  local probe = io.popen(PYTHON .. " -c 'import signedjson.sign, signedjson.key, canonicaljson' 2>&1")
  local probe_out = probe:read("a")
  local probe_ok = probe:close()
  assert(probe_ok, "signing_diff_spec needs " .. PYTHON .. " with python3-signedjson and "
    .. "python3-canonicaljson (apt-get install python3-signedjson python3-canonicaljson): "
    .. probe_out)

  local r = rng(0x10057)
  local cases, input = {}, setmetatable({}, json.array_mt)
  for i = 1, CASES do
    local case = random_case(r, i)
    case.key = assert(crypto.signing_key(case.seed, "1", SERVER))
    case.loom_signed = assert(crypto.sign_json(deepcopy(case.object), case.key))
    cases[i] = case
    input[i] = { seed = c.base64_encode(case.seed), object = case.object, loom_signed = case.loom_signed }
  end

  local script, infile, outfile = os.tmpname(), os.tmpname(), os.tmpname()
  write_file(script, PY_SCRIPT)
  write_file(infile, assert(json.encode(input)))
  local p = io.popen(("%s %s %s %s 2>&1"):format(PYTHON, shell_quote(script),
    shell_quote(infile), shell_quote(outfile)))
  local py_out = p:read("a")
  local ok = p:close()
  local out_text = ok and read_file(outfile)
  os.remove(script); os.remove(infile); os.remove(outfile)
  assert(ok, "python side failed: " .. py_out)
  local out = assert(json.decode(out_text))
  assert.equals(CASES, #out)
  run = { cases = cases, py = out }
  return run
end

-- Collects failures over all cases, so one run reports every mismatch.
local function check_all(fn)
  local res = results()
  local bad = {}
  for i, case in ipairs(res.cases) do
    local msg = fn(case, res.py[i], i)
    if msg then bad[#bad + 1] = ("case %d: %s"):format(i, msg) end
  end
  assert(#bad == 0, #bad .. " of " .. CASES .. " cases differ:\n" .. table.concat(bad, "\n", 1, math.min(#bad, 10)))
end

describe("signing against python3-signedjson", function()
  it("has /usr/bin/python3 with signedjson and canonicaljson", function()
    assert.equals(CASES, #results().py)
  end)

  it("derives the same public keys", function()
    check_all(function(case, py)
      if py.public_key ~= case.key.public_key_base64 then
        return ("public key %s ~= python %s"):format(case.key.public_key_base64, py.public_key)
      end
    end)
  end)

  it("produces the same canonical JSON as canonicaljson", function()
    check_all(function(case, py)
      local stripped = {}
      for k, v in pairs(case.object) do
        if k ~= "signatures" and k ~= "unsigned" then stripped[k] = v end
      end
      local mine = assert(json.encode(stripped))
      local theirs = c.base64_decode(py.canonical)
      if mine ~= theirs then return ("loom %q\npython %q"):format(mine, theirs) end
    end)
  end)

  it("produces the same signatures as signedjson.sign.sign_json", function()
    check_all(function(case, py)
      local mine = case.loom_signed.signatures[SERVER][KEY_ID]
      if mine ~= py.signature then return ("loom %s, python %s"):format(mine, py.signature) end
    end)
  end)

  it("keeps unsigned and other servers' signatures like signedjson", function()
    check_all(function(case, py)
      local unsigned = case.loom_signed.unsigned
      if (unsigned == nil) ~= (py.signed.unsigned == nil) then return "unsigned kept differently" end
      local other = case.loom_signed.signatures["other.example"]
      local py_other = py.signed.signatures["other.example"]
      if (other == nil) ~= (py_other == nil) then return "other signatures kept differently" end
    end)
  end)

  it("is verified by signedjson.sign.verify_signed_json", function()
    check_all(function(_, py)
      if py.verified ~= true then return "python rejected loom's signature: " .. tostring(py.error) end
    end)
  end)

  it("verifies signedjson's signatures", function()
    check_all(function(case, py)
      local ok, msg = crypto.verify_json(py.signed, SERVER, KEY_ID, case.key.public_key)
      if not ok then return "loom rejected python's signature: " .. msg end
      -- and a flipped bit in python's signature is rejected
      local sig = c.base64_decode(py.signature)
      local flipped = string.char(sig:byte(1) ~ 0x80) .. sig:sub(2)
      py.signed.signatures[SERVER][KEY_ID] = c.base64_encode(flipped)
      if crypto.verify_json(py.signed, SERVER, KEY_ID, case.key.public_key) then
        return "loom accepted a corrupted signature"
      end
      py.signed.signatures[SERVER][KEY_ID] = py.signature
    end)
  end)
end)
