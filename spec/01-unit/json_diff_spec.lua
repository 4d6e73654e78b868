-- Differential test of loom.core.json against Debian's python3-canonicaljson
-- (the reference canonical JSON encoder used by Synapse).
local json = require("loom.core").json

-- Debian's python, where the module lives; run without the sanitizer preload of
-- the ASan pass (python is not under test, and its own leaks would be reported)
local PYTHON = "env -u LD_PRELOAD /usr/bin/python3"
local NDOCS = 300

-- argv: docs.json out-canonical out-pretty
local SCRIPT = [[
import json, sys
try:
    import canonicaljson
except ImportError as e:
    sys.stderr.write("python3-canonicaljson is not importable by %s: %s\n" % (sys.executable, e))
    sys.exit(3)
with open(sys.argv[1], "rb") as f:
    docs = json.loads(f.read().decode("utf-8"))
with open(sys.argv[2], "wb") as out:
    for doc in docs:
        out.write(canonicaljson.encode_canonical_json(doc) + b"\n")
pretty = [json.dumps(doc, indent=2, ensure_ascii=True) for doc in docs]
with open(sys.argv[3], "wb") as out:
    out.write(json.dumps(pretty).encode("ascii"))
]]

-- Deterministic random documents.
local rnd = math.random

local CODEPOINT_POOLS = {
  { 0x20, 0x7E }, { 0x20, 0x7E }, { 0x20, 0x7E },  -- printable ASCII, often
  { 0x00, 0x1F },                                  -- control characters
  { 0x22, 0x22 }, { 0x5C, 0x5C }, { 0x2F, 0x2F },  -- quote, backslash, slash
  { 0x7F, 0x9F },                                  -- DEL and C1 controls
  { 0xA0, 0x7FF },                                 -- two-byte
  { 0x800, 0xD7FF }, { 0xE000, 0xFFFF },           -- three-byte, no surrogates
  { 0x2028, 0x2029 },                              -- line/paragraph separators
  { 0x10000, 0x10FFFF }, { 0x1F600, 0x1F64F },     -- astral planes
}

local function random_string(maxlen)
  local out = {}
  for i = 1, rnd(0, maxlen) do
    local pool = CODEPOINT_POOLS[rnd(#CODEPOINT_POOLS)]
    out[i] = utf8.char(rnd(pool[1], pool[2]))
  end
  return table.concat(out)
end

local MAX = 9007199254740991

local function random_integer()
  local r = rnd(6)
  if r == 1 then return rnd(-9, 9) end
  if r == 2 then return ({ MAX, -MAX, 0, -1, 2 ^ 31 | 0, -(2 ^ 32 | 0) })[rnd(6)] end
  if r == 3 then return rnd(-MAX, MAX) end
  return rnd(-100000, 100000)
end

local random_value

local function random_container(depth)
  local n = rnd(0, depth > 3 and 2 or 6)
  if rnd(2) == 1 then
    local t = json.array()
    for i = 1, n do t[i] = random_value(depth + 1) end
    return t
  end
  local t = {}
  for _ = 1, n do t[random_string(8)] = random_value(depth + 1) end
  return t
end

function random_value(depth)
  local r = rnd(depth > 5 and 7 or 10)
  if r == 1 then return json.null end
  if r == 2 then return rnd(2) == 1 end
  if r <= 4 then return random_integer() end
  if r <= 7 then return random_string(20) end
  return random_container(depth)
end

local files = require "support.files"
local slurp, spit = files.read, files.write

describe("json against python3-canonicaljson", function()
  local docs, canonical, pretty

  setup(function()
    math.randomseed(20260723)
    docs = json.array()
    for i = 1, NDOCS do
      docs[i] = i % 10 == 0 and random_value(0) or random_container(0)
    end
    docs[#docs + 1] = json.array({ {}, json.array(), { a = json.array({ json.array() }) } })
    docs[#docs + 1] = { [""] = "", ["\u{10FFFF}"] = "\0\31\127\u{2028}", ["\u{FFFF}"] = 1 }

    local script, input, out1, out2, errf =
      os.tmpname(), os.tmpname(), os.tmpname(), os.tmpname(), os.tmpname()
    spit(script, SCRIPT)
    spit(input, assert(json.encode(docs)))
    local ok, how, code = os.execute(("%s %s %s %s %s 2>%s"):format(
      PYTHON, script, input, out1, out2, errf))
    local err = slurp(errf)
    local result1, result2 = slurp(out1), slurp(out2)
    for _, p in ipairs({ script, input, out1, out2, errf }) do os.remove(p) end
    assert(ok, ("%s failed (%s %s): %s\nInstall it with: apt-get install python3-canonicaljson")
      :format(PYTHON, tostring(how), tostring(code), err))

    canonical = {}
    for line in result1:gmatch("([^\n]*)\n") do canonical[#canonical + 1] = line end
    pretty = assert(json.decode(result2))
  end)

  it("python produced one line per document", function()
    assert.equals(#docs, #canonical)
    assert.equals(#docs, #pretty)
  end)

  it("encodes byte for byte like canonicaljson", function()
    for i, doc in ipairs(docs) do
      local mine = assert(json.encode(doc))
      if mine ~= canonical[i] then
        assert.equals(canonical[i], mine, "document " .. i)
      end
    end
  end)

  it("decodes python's non-canonical output back to the canonical form", function()
    for i, text in ipairs(pretty) do
      local v, msg = json.decode(text, { strict = true })
      assert(v ~= nil, ("document %d: %s"):format(i, tostring(msg)))
      assert.equals(canonical[i], json.encode(v), "document " .. i)
    end
  end)
end)
