-- Ordering tokens and bounds (loom.core.token / loom.core.bound).
local core = require "loom.core"
local token, bound = core.token, core.bound

describe("token.parse", function()
  it("round-trips canonical tokens", function()
    for _, s in ipairs { "s0", "s1", "s-1", "s9223372036854775807", "s-9223372036854775808",
                         "t1-0", "t12--5", "t1-1", "t9223372036854775807-9223372036854775807",
                         "t3--9223372036854775808", "t42-17" } do
      local t = assert(token.parse(s))
      assert.equal(s, tostring(t))
    end
  end)

  it("exposes kind, depth and stream", function()
    local t = assert(token.parse("t12--5"))
    assert.equal("topological", t.kind)
    assert.equal(12, t.depth)
    assert.equal(-5, t.stream)
    assert.is_true(math.type(t.stream) == "integer")
    local s = assert(token.parse("s77"))
    assert.equal("stream", s.kind)
    assert.is_nil(s.depth)
    assert.equal(77, s.stream)
  end)

  it("rejects every malformed form with nil, message, bad_token", function()
    local bad = { "", "s", "t", "x1", "S1", "s 1", " s1", "s1 ", "s1x", "s+1", "s01", "s-0", "s--1",
      "s1.5", "s1e3", "t1", "t1-", "t-1", "t1--", "t0-1", "t-1-1", "t01-1", "t1-01", "t1-1-1",
      "t1-1x", "t1_1", "t1--0", "s9223372036854775808", "s-9223372036854775809",
      "t9223372036854775808-1", "t1-9223372036854775808", "s99999999999999999999999",
      "s1\0", "t1-2\n", ("s" .. ("1"):rep(70)), "ｓ1", "t1-+2", "t+1-2" }
    for _, s in ipairs(bad) do
      local t, msg, code = token.parse(s)
      assert.is_nil(t, s)
      assert.equal("bad_token", code, s)
      assert.is_string(msg)
    end
    for _, v in ipairs { 1, true, {}, false } do
      local t, _, code = token.parse(v)
      assert.is_nil(t)
      assert.equal("bad_token", code)
    end
  end)
end)

describe("token ordering", function()
  it("orders topological tokens by (depth, stream)", function()
    local rng = math.random
    math.randomseed(7)
    local list = {}
    for i = 1, 300 do
      list[i] = token.topological(rng(1, 20), rng(-50, 50))
    end
    table.sort(list)
    for i = 2, #list do
      local a, b = list[i - 1], list[i]
      assert.is_true(a.depth < b.depth or (a.depth == b.depth and a.stream <= b.stream))
      assert.is_true(a <= b)
      assert.equal(token.compare(a, b) <= 0, true)
      assert.equal(a == b, a.depth == b.depth and a.stream == b.stream)
    end
  end)

  it("orders stream tokens by stream", function()
    assert.is_true(token.stream(-5) < token.stream(3))
    assert.equal(0, token.compare("s4", "s4"))
    assert.equal(-1, token.compare("s-4", "s4"))
    assert.equal(1, token.compare("t2-0", "t1-99"))
  end)

  it("refuses to compare a stream token with a topological one", function()
    assert.has_error(function() return token.stream(1) < token.topological(1, 1) end)
    assert.has_error(function() return token.compare("s1", "t1-1") end)
  end)

  it("gives the before/after tokens of an event", function()
    local before, after = token.for_event(12, -5)
    assert.equal("t12--6", tostring(before))
    assert.equal("t12--5", tostring(after))
    before, after = token.for_event(nil, 10)
    assert.equal("s9", tostring(before))
    assert.equal("s10", tostring(after))
    local b, _, code = token.for_event(3, math.mininteger)
    assert.is_nil(b)
    assert.equal("bad_token", code)
    assert.has_error(function() token.for_event(0, 1) end)
    assert.has_error(function() token.topological(0, 1) end)
    assert.has_error(function() token.stream(1.5) end)
  end)
end)

describe("bounds", function()
  local ops = { "<", "<=", ">", ">=" }

  local function brute(op, d, s, td, ts, topo)
    local c
    if topo and d ~= td then c = d < td and -1 or 1
    else c = s < ts and -1 or (s > ts and 1 or 0) end
    if op == "<" then return c < 0 elseif op == "<=" then return c <= 0
    elseif op == ">" then return c > 0 else return c >= 0 end
  end

  it("the C predicate agrees with the definition", function()
    math.randomseed(11)
    for _ = 1, 2000 do
      local td, ts = math.random(1, 5), math.random(-5, 5)
      local d, s = math.random(1, 5), math.random(-5, 5)
      for _, op in ipairs(ops) do
        local b = bound.new(token.topological(td, ts), op)
        assert.equal(brute(op, d, s, td, ts, true), b:test(d, s))
        local sb = bound.new(token.stream(ts), op)
        assert.equal(brute(op, d, s, td, ts, false), sb:test(d, s))
      end
    end
  end)

  it("rejects column names that are not plain identifiers", function()
    local b = bound.new("t1-1", "<=")
    for _, col in ipairs { "depth; DROP TABLE x", "a b", "1a", "", "a.", ".a", "a-b", "a'" } do
      assert.has_error(function() b:sql("sqlite", col, "s") end)
    end
    assert.has_error(function() b:sql("mysql", "d", "s") end)
    assert.has_error(function() bound.new("t1-1", "==") end)
    assert.has_error(function() bound.new("garbage", "<") end)
  end)

  it("never puts values into SQL text", function()
    local b = bound.new(token.topological(123456, -98765), "<=")
    for _, engine in ipairs { "sqlite", "postgres" } do
      local sql = b:sql(engine, "e.depth", "e.stream_ordering")
      assert.is_nil(sql:find("123456", 1, true))
      assert.is_nil(sql:find("98765", 1, true))
      for _, part in ipairs(b:sql_parts(engine, "depth", "stream")) do
        assert.is_nil(part.sql:find("12345", 1, true))
      end
    end
  end)

  it("select filters a batch of rows in one call", function()
    local b = bound.new("t3-5", ">")
    local rows = { { 3, 5 }, { 3, 6 }, { 2, 100 }, { 4, -1 } }
    local got = b:select(rows, 1, 2)
    assert.same({ { 3, 6 }, { 4, -1 } }, got)
  end)
end)
