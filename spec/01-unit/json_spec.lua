-- loom.core.json: canonical encoder and strict decoder (csrc/json.c).
local json = require("loom.core").json

local MAX = 9007199254740991 -- 2^53 - 1

local VECTORS = "../shared/vectors/spec.json"

-- Asserts an expected failure: exactly nil, a message, the given code.
local function fails(code, ...)
  local n = select("#", ...)
  local v, msg, got = ...
  assert.equals(3, n, "expected 3 return values")
  assert.is_nil(v)
  assert.is_string(msg)
  assert.equals(code, got, "message was: " .. tostring(msg))
  return msg
end

local function roundtrip(text, opts)
  local v, msg, code = json.decode(text, opts)
  assert(v ~= nil, ("decode %q: %s %s"):format(text, tostring(msg), tostring(code)))
  return assert(json.encode(v, opts))
end

local function nest(open, close, n, inner)
  return open:rep(n) .. (inner or "") .. close:rep(n)
end

describe("json API", function()
  it("exposes null as a NULL light userdata", function()
    assert.equals("userdata", type(json.null))
    assert.equals(json.null, json.decode("null"))
    assert.equals("null", json.encode(json.null))
  end)

  it("marks arrays with array_mt", function()
    local t = {}
    assert.equals(t, json.array(t))
    assert.equals(json.array_mt, getmetatable(t))
    assert.is_true(json.is_array(t))
    assert.is_true(json.is_array(json.array()))
    assert.is_false(json.is_array({}))
    assert.is_false(json.is_array("x"))
    assert.equals("[]", json.encode(json.array()))
    assert.equals("[1,2]", json.encode(json.array({ 1, 2 })))
    assert.equals(t, json.array(t)) -- idempotent
  end)

  it("json.array refuses a table that has another metatable", function()
    assert.has_error(function() json.array(setmetatable({}, {})) end)
    assert.has_error(function() json.array(42) end)
  end)

  it("decoded arrays carry array_mt and objects no metatable", function()
    local v = json.decode('{"a":[],"b":{}}')
    assert.is_nil(getmetatable(v))
    assert.is_true(json.is_array(v.a))
    assert.is_nil(getmetatable(v.b))
  end)

  it("raises on caller misuse", function()
    assert.has_error(function() json.decode(123) end)
    assert.has_error(function() json.decode() end)
    assert.has_error(function() json.encode() end)
    assert.has_error(function() json.encode(1, "opts") end)
    assert.has_error(function() json.encode(1, { max_depth = "x" }) end)
    assert.has_error(function() json.encode(1, { max_depth = -1 }) end)
    assert.has_error(function() json.encode(1, { max_depth = 1.5 }) end)
    assert.has_error(function() json.encode(1, { floats = 1 }) end)
    assert.has_error(function() json.decode("1", { strict = "yes" }) end)
    assert.has_error(function() json.decode("1", { max_bytes = -1 }) end)
    assert.has_error(function() json.decode("1", { max_depth = 100000 }) end)
  end)
end)

describe("json.encode", function()
  it("matches every canonical_json vector", function()
    local f = assert(io.open(VECTORS, "rb"))
    local text = f:read("a")
    f:close()
    local doc = assert(json.decode(text))
    local cases = doc.canonical_json
    assert.is_true(#cases > 0)
    for i, case in ipairs(cases) do
      local input = case.input
      if case.input_json_text ~= nil then
        input = assert(json.decode(case.input_json_text))
      end
      local out, msg = json.encode(input)
      assert.equals(case.expected, out, ("case %d: %s"):format(i, tostring(msg)))
    end
  end)

  it("encodes scalars", function()
    assert.equals("true", json.encode(true))
    assert.equals("false", json.encode(false))
    assert.equals("0", json.encode(0))
    assert.equals("-17", json.encode(-17))
    assert.equals('""', json.encode(""))
    assert.equals('"a"', json.encode("a"))
  end)

  it("sorts keys by byte order, without whitespace", function()
    assert.equals('{"":0,"A":1,"a":2,"aa":3,"b":4}',
      json.encode({ b = 4, aa = 3, a = 2, A = 1, [""] = 0 }))
  end)

  it("sorts non-ASCII keys by code point, not UTF-16", function()
    -- U+FFFD sorts before U+1F600 by code point but after it in UTF-16
    local t = { ["\u{1F600}"] = 5, ["\u{FFFD}"] = 4, ["日"] = 3, ["é"] = 2, z = 1 }
    assert.equals('{"z":1,"é":2,"日":3,"\u{FFFD}":4,"\u{1F600}":5}', json.encode(t))
  end)

  it("sorts large objects like table.sort does", function()
    local t, keys = {}, {}
    for i = 1, 500 do
      local k = ("k%d\u{E9}%d"):format(i * 7919 % 1000, i)
      t[k] = i
      keys[#keys + 1] = k
    end
    table.sort(keys)
    local parts = {}
    for _, k in ipairs(keys) do parts[#parts + 1] = ('"%s":%d'):format(k, t[k]) end
    assert.equals("{" .. table.concat(parts, ",") .. "}", json.encode(t))
  end)

  it("escapes exactly the minimal set", function()
    local named = { [8] = "\\b", [9] = "\\t", [10] = "\\n", [12] = "\\f", [13] = "\\r" }
    for c = 0, 31 do
      local want = named[c] or ("\\u%04x"):format(c)
      assert.equals('"' .. want .. '"', json.encode(string.char(c)), "char " .. c)
    end
    assert.equals([["\"\\"]], json.encode('"\\'))
    -- not escaped: '/', DEL, U+2028, U+2029, non-ASCII
    assert.equals('"/\127\u{2028}\u{2029}é日\u{1F600}"',
      json.encode("/\127\u{2028}\u{2029}é日\u{1F600}"))
    assert.equals('"\\u001f\\u000b"', json.encode("\31\11")) -- lowercase hex
  end)

  it("keeps integers exact at +-(2^53-1) and rejects one past", function()
    assert.equals("9007199254740991", json.encode(MAX))
    assert.equals("-9007199254740991", json.encode(-MAX))
    fails("json_range", json.encode(MAX + 1))
    fails("json_range", json.encode(-MAX - 1))
    fails("json_range", json.encode(math.maxinteger))
    fails("json_range", json.encode(math.mininteger))
    fails("json_range", json.encode({ a = { MAX + 1 } }))
  end)

  it("rejects floats unless opts.floats", function()
    fails("json_float", json.encode(1.5))
    fails("json_float", json.encode(1.0))
    fails("json_float", json.encode({ x = 0.5 }))
    assert.equals("1.5", json.encode(1.5, { floats = true }))
    assert.equals("1.0", json.encode(1.0, { floats = true }))
    assert.equals("100.0", json.encode(100.0, { floats = true }))
    assert.equals("0.1", json.encode(0.1, { floats = true }))
    assert.equals("-0.0", json.encode(-0.0, { floats = true }))
    assert.equals("1e+300", json.encode(1e300, { floats = true }))
    assert.equals("5e-324", json.encode(5e-324, { floats = true }))
    assert.equals("[1,2.5]", json.encode(json.array({ 1, 2.5 }), { floats = true }))
  end)

  it("rejects NaN and infinities even with opts.floats", function()
    for _, v in ipairs({ 0 / 0, math.huge, -math.huge }) do
      fails("json_float", json.encode(v))
      fails("json_float", json.encode(v, { floats = true }))
    end
  end)

  it("round-trips floats in the shortest form", function()
    math.randomseed(7)
    for _ = 1, 2000 do
      local x = (math.random() - 0.5) * 10 ^ math.random(-300, 300)
      local s = assert(json.encode(x, { floats = true }))
      assert.truthy(s:find("[.e]"), s)
      local y = json.decode(s)
      assert.equals("float", math.type(y))
      assert.equals(x, y, s)
      assert(#s <= 24, s)
    end
  end)

  it("rejects values that are not JSON", function()
    fails("json_type", json.encode(print))
    fails("json_type", json.encode(coroutine.create(print)))
    fails("json_type", json.encode(io.stdout))
    fails("json_type", json.encode(nil))
    fails("json_type", json.encode({ a = { b = { 1, 2, print } } }))
  end)

  it("says where the bad value is", function()
    local msg = fails("json_type", json.encode({ a = { b = { 1, 2, print } } }))
    assert.truthy(msg:find("at /a/b/2", 1, true), msg)
    msg = fails("json_float", json.encode({ ["x/y~"] = { 0.5 } }))
    assert.truthy(msg:find("at /x~1y~0/0", 1, true), msg)
  end)

  it("classifies tables: sequence, string keys, or json_type", function()
    assert.equals("{}", json.encode({}))
    assert.equals("[1,2,3]", json.encode({ 1, 2, 3 }))
    assert.equals('[{"a":[]}]', json.encode({ { a = json.array() } }))
    fails("json_type", json.encode({ 1, 2, x = 3 }))
    fails("json_type", json.encode({ x = 3, 1 }))
    fails("json_type", json.encode({ [1] = 1, [3] = 3 })) -- hole
    fails("json_type", json.encode({ [0] = 1 }))
    fails("json_type", json.encode({ [-1] = 1 }))
    fails("json_type", json.encode({ [1.5] = 1 }))
    fails("json_type", json.encode({ [true] = 1 }))
    fails("json_type", json.encode({ [{}] = 1 }))
    fails("json_type", json.encode(json.array({ 1, x = 2 })))
    fails("json_type", json.encode(json.array({ x = 2 })))
    fails("json_type", json.encode(json.array({ [2] = 2 })))
  end)

  it("reads tables raw, ignoring other metatables", function()
    local t = setmetatable({ a = 1 }, { __index = function() return 2 end, __pairs = error })
    assert.equals('{"a":1}', json.encode(t))
  end)

  it("rejects invalid UTF-8 in strings and keys", function()
    fails("json_utf8", json.encode("\xff"))
    fails("json_utf8", json.encode({ ["k\xc0\xaf"] = 1 }))
    fails("json_utf8", json.encode("\u{D800}"))  -- surrogate encoded in UTF-8
    fails("json_utf8", json.encode("\u{110000}"))
    fails("json_utf8", json.encode("\xe6\x97"))  -- truncated
  end)

  it("limits nesting at max_depth exactly", function()
    local function nested(n)
      local t = json.array()
      for _ = 2, n do t = json.array({ t }) end
      return t
    end
    assert.equals(nest("[", "]", 100), json.encode(nested(100)))
    fails("json_depth", json.encode(nested(101)))
    assert.equals(nest("[", "]", 5), json.encode(nested(5), { max_depth = 5 }))
    fails("json_depth", json.encode(nested(6), { max_depth = 5 }))
    assert.equals(nest("[", "]", 1000), json.encode(nested(1000), { max_depth = 1000 }))
    fails("json_depth", json.encode(nested(1001), { max_depth = 1000 }))
    assert.equals("1", json.encode(1, { max_depth = 0 }))
    fails("json_depth", json.encode({}, { max_depth = 0 }))
  end)

  it("fails cleanly on cyclic tables and keeps the stack intact", function()
    local a = {}
    a.self = a
    local b = json.array()
    b[1] = { x = b }
    for _ = 1, 50 do
      fails("json_depth", json.encode(a))
      fails("json_depth", json.encode(b))
      fails("json_depth", json.encode({ ok = 1, loop = a }, { max_depth = 1000 }))
    end
    assert.equals('{"a":1}', json.encode({ a = 1 }))
  end)

  it("encodes a big array and a wide object", function()
    local t = {}
    for i = 1, 100000 do t[i] = i end
    local s = assert(json.encode(t))
    assert.equals(100000, #assert(json.decode(s)))
    local o, want = {}, 1
    for i = 1, 20000 do
      o["k" .. i] = json.array()
      want = want + #('"k' .. i .. '":[]') + 1
    end
    local out = assert(json.encode(o))
    assert.equals(want, #out)
    assert.equals('{"k1":[],"k10":[],"k100":[],', out:sub(1, 28))
  end)
end)

describe("json.decode", function()
  it("decodes values of every type at top level", function()
    assert.equals(1, json.decode("1"))
    assert.equals("integer", math.type(json.decode("1")))
    assert.equals("float", math.type(json.decode("1.0")))
    assert.equals("float", math.type(json.decode("1e2")))
    assert.equals(-2.5e-3, json.decode("-2.5E-3"))
    assert.equals(true, json.decode(" true "))
    assert.equals(false, json.decode("\n\r\tfalse"))
    assert.equals("x", json.decode('"x"'))
    assert.equals(json.null, json.decode("null"))
  end)

  it("keeps [] and {} apart, nested too", function()
    local text = '{"a":[],"b":{},"c":[[],[{}],[[[]]]],"d":[{"e":[]}]}'
    assert.equals(text, roundtrip(text))
    assert.equals("[]", roundtrip("[]"))
    assert.equals("{}", roundtrip("{}"))
    assert.equals("[[]]", roundtrip(" [ [ ] ] "))
  end)

  it("round-trips canonical text byte for byte", function()
    for _, text in ipairs({
      '{"a":1,"b":[true,false,null],"c":{"d":"e"}}',
      '["\\u0000\\u001f","\\"\\\\","\\b\\f\\n\\r\\t","/\u{7F}\u{2028}"]',
      '{"":"","\u{1F600}":"\u{10FFFF}"}',
      "[-9007199254740991,0,9007199254740991]",
    }) do
      assert.equals(text, roundtrip(text))
    end
  end)

  it("canonicalises whitespace, escapes and key order", function()
    assert.equals('{"a":"/日","b":[1,2]}',
      roundtrip('{ "b" : [ 1 , 2 ] ,\n\t"a" : "\\/\\u65E5" }'))
    assert.equals('"\u{1F600}"', roundtrip('"\\ud83d\\ude00"'))
    assert.equals('"\u{1F600}"', roundtrip('"\\uD83D\\uDE00"'))
    assert.equals('"\u{10FFFF}"', roundtrip('"\\udbff\\udfff"'))
    assert.equals('"\u{10000}"', roundtrip('"\\ud800\\udc00"'))
    assert.equals('"\\u0000"', roundtrip('"\\u0000"'))
    assert.equals('"\\u001f"', roundtrip('"\\u001F"'))
    assert.equals('"\\n"', roundtrip('"\\u000a"'))
  end)

  it("decodes every \\u00XX control escape to its byte", function()
    for c = 0, 31 do
      assert.equals(string.char(c), json.decode(('"\\u%04X"'):format(c)))
      assert.equals(string.char(c), json.decode(('"\\u%04x"'):format(c)))
    end
    assert.equals("\0a\0", json.decode('"\\u0000a\\u0000"'))
  end)

  it("rejects lone and misordered surrogate escapes", function()
    for _, text in ipairs({
      '"\\ud800"', '"\\udbff"', '"\\udc00"', '"\\udfff"', '"a\\ud800b"',
      '"\\ud800\\u0041"', '"\\ude00\\ud83d"', '"\\ud800\\ud800"', '"\\ud800\\n"',
    }) do
      fails("json_utf8", json.decode(text))
    end
  end)

  it("validates raw UTF-8", function()
    for _, s in ipairs({
      "\x80", "\xbf", "\xc0\xaf", "\xc1\xbf",   -- continuation, overlong 2-byte
      "\xe0\x80\xaf", "\xe0\x9f\xbf",           -- overlong 3-byte
      "\xf0\x80\x80\xaf", "\xf0\x8f\xbf\xbf",   -- overlong 4-byte
      "\xed\xa0\x80", "\xed\xbf\xbf",           -- surrogates
      "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xff", "\xfe", -- > U+10FFFF
      "\xe6\x97", "\xf0\x9f\x98", "\xc3",       -- truncated
      "\xc3\x28", "\xe6\x28\xa5",               -- bad continuation
    }) do
      fails("json_utf8", json.decode('"' .. s .. '"'))
      fails("json_utf8", json.decode('{"' .. s .. '":1}'))
      fails("json_utf8", json.decode(s))         -- outside a string too
      fails("json_utf8", json.decode('["ok",' .. s))
    end
    for _, s in ipairs({
      "\u{80}", "\u{7FF}", "\u{800}", "\u{D7FF}", "\u{E000}", "\u{FFFD}", "\u{FFFF}",
      "\u{10000}", "\u{10FFFF}",
    }) do
      assert.equals(s, json.decode('"' .. s .. '"'))
      assert.equals('"' .. s .. '"', json.encode(s))
    end
  end)

  it("rejects bad syntax with json_syntax", function()
    for _, text in ipairs({
      "", " ", "01", "-01", "00", "+1", ".5", "1.", "1.e5", "-", "1e", "1e+", "--1",
      "0x10", "[1,]", '{"a":1,}', "[,]", "[1 2]", '{"a":1 "b":2}', '{"a" 1}',
      "{a:1}", "{'a':1}", "['a']", "[1]x", "1 2", "{}{}", "/* c */ 1", "1 // c",
      "NaN", "Infinity", "-Infinity", "tru", "nul", "nulll", "True", "\u{FEFF}1",
      '"\t"', '"\n"', '"a\0b"', '"\31"', '"\\x41"', '"\\u12"', '"\\u12G4"', '"\\',
      '"abc', "[", "]", "{", '{"a"', '{"a":', "[1,", "\0", "\v1", "\f1", '"\\U0041"',
    }) do
      fails("json_syntax", json.decode(text))
    end
  end)

  it("reports the byte offset", function()
    local msg = fails("json_syntax", json.decode('{"abcdefghijklm" 1}'))
    assert.equals("invalid JSON at byte 17: expected ':', found '1'", msg)
    msg = fails("json_syntax", json.decode("[1,2,]"))
    assert.equals("invalid JSON at byte 5: trailing comma", msg)
    msg = fails("json_syntax", json.decode("[1"))
    assert.equals("invalid JSON at byte 2: expected ',' or ']', found end of input", msg)
  end)

  it("rejects duplicate keys, even when spelled differently", function()
    local msg = fails("json_dup_key", json.decode('{"a":1,"b":2,"a":3}'))
    assert.truthy(msg:find('"a"', 1, true), msg)
    fails("json_dup_key", json.decode('{"a":1,"\\u0061":2}'))
    fails("json_dup_key", json.decode('{"x":{"a":{},"a":[]}}'))
    assert.is_table(json.decode('{"a":{"a":1},"b":{"a":1}}'))
  end)

  it("maps integers to Lua integers and the rest to floats", function()
    assert.equals(math.maxinteger, json.decode("9223372036854775807"))
    assert.equals("integer", math.type(json.decode("9223372036854775807")))
    assert.equals(math.mininteger, json.decode("-9223372036854775808"))
    assert.equals("integer", math.type(json.decode("-9223372036854775808")))
    assert.equals("float", math.type(json.decode("9223372036854775808")))
    assert.equals(2 ^ 63, json.decode("9223372036854775808"))
    assert.equals("float", math.type(json.decode("-9223372036854775809")))
    assert.equals("float", math.type(json.decode("123456789012345678901234567890")))
    assert.equals(MAX + 1, json.decode("9007199254740992"))
    assert.equals(0, json.decode("-0"))
    assert.equals("float", math.type(json.decode("-0.0")))
    fails("json_range", json.decode("1e400"))
    assert.equals(0.0, json.decode("1e-400"))
  end)

  it("in strict mode allows integers only, within +-(2^53-1)", function()
    local strict = { strict = true }
    assert.equals(MAX, json.decode("9007199254740991", strict))
    assert.equals(-MAX, json.decode("-9007199254740991", strict))
    assert.equals(0, json.decode("0", strict))
    assert.equals(-1, json.decode("-1", strict))
    fails("json_range", json.decode("9007199254740992", strict))
    fails("json_range", json.decode("-9007199254740992", strict))
    fails("json_range", json.decode("9223372036854775808", strict))
    fails("json_range", json.decode("[1,{\"a\":123456789012345678901234567890}]", strict))
    fails("json_float", json.decode("1.0", strict))
    fails("json_float", json.decode("1e2", strict))
    fails("json_float", json.decode('{"a":[0.5]}', strict))
    fails("json_float", json.decode("-0", strict))
    fails("json_float", json.decode("[-0]", strict))
  end)

  it("limits nesting at max_depth exactly", function()
    assert.is_table(json.decode(nest("[", "]", 100)))
    fails("json_depth", json.decode(nest("[", "]", 101)))
    local obj100 = nest('{"a":', "}", 99, "{}")
    assert.equals(obj100, roundtrip(obj100))
    fails("json_depth", json.decode(nest('{"a":', "}", 100, "{}")))
    assert.is_table(json.decode(nest("[", "]", 3), { max_depth = 3 }))
    fails("json_depth", json.decode(nest("[", "]", 4), { max_depth = 3 }))
    assert.equals(1, json.decode("1", { max_depth = 0 }))
    fails("json_depth", json.decode("[]", { max_depth = 0 }))
    -- very deep input stops at the limit without exhausting any stack
    fails("json_depth", json.decode(nest("[", "]", 200000)))
    fails("json_depth", json.decode(("["):rep(200000)))
    assert.is_table(json.decode(nest("[", "]", 1000), { max_depth = 1000 }))
  end)

  it("limits input size at max_bytes exactly", function()
    assert.equals(12345, json.decode("12345", { max_bytes = 5 }))
    fails("json_size", json.decode("123456", { max_bytes = 5 }))
    fails("json_size", json.decode("1", { max_bytes = 0 }))
    fails("json_syntax", json.decode("", { max_bytes = 0 }))
    local limit = 1048576
    local s = '"' .. ("x"):rep(limit - 2) .. '"'
    assert.equals(limit - 2, #json.decode(s))
    fails("json_size", json.decode(s .. " "))
    -- the size check comes before parsing
    fails("json_size", json.decode(("x"):rep(limit + 1)))
  end)

  it("keeps the stack balanced across many failures", function()
    for i = 1, 2000 do
      local text = i % 2 == 0 and '{"a":[1,2,{"b":' or '{"a":1,"a":2}'
      local n = select("#", json.decode(text))
      assert.equals(3, n)
    end
    assert.equals(1, select("#", json.decode("[1]")))
    assert.equals(1, select("#", json.encode({ 1 })))
  end)
end)
