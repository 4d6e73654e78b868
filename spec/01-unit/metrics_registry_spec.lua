-- loom.http.metrics: the registry and its text format.
local metrics = require "loom.http.metrics"

local function lines(text)
  local out = {}
  for l in text:gmatch("([^\n]*)\n") do out[#out + 1] = l end
  return out
end

describe("metrics registry", function()
  it("renders counters, gauges and histograms in the text format", function()
    local reg = metrics.new()
    local c = reg:counter("b_total", "Things done.", { "kind", "code" })
    c:inc(1, "x", 200)
    c:inc(2, "x", 200)
    c:inc(nil, "y", 404)
    local g = reg:gauge("a_gauge", "A level.")
    g:set(5)
    g:dec(2)
    g:inc(0.5)
    local h = reg:histogram("c_seconds", "Latency.", { "route" }, { 0.1, 1 })
    h:observe(0.05, "/r")
    h:observe(0.1, "/r")    -- on a bound: counted in that bucket (le is "less or equal")
    h:observe(0.5, "/r")
    h:observe(7, "/r")
    assert.same({
      "# HELP a_gauge A level.", "# TYPE a_gauge gauge", "a_gauge 3.5",
      "# HELP b_total Things done.", "# TYPE b_total counter",
      'b_total{kind="x",code="200"} 3', 'b_total{kind="y",code="404"} 1',
      "# HELP c_seconds Latency.", "# TYPE c_seconds histogram",
      'c_seconds_bucket{route="/r",le="0.1"} 2', 'c_seconds_bucket{route="/r",le="1"} 3',
      'c_seconds_bucket{route="/r",le="+Inf"} 4',
      'c_seconds_sum{route="/r"} 7.65', 'c_seconds_count{route="/r"} 4',
    }, lines(reg:render()))
    assert.equal(3, c:value("x", 200))
    assert.equal(3.5, g:value())
    assert.same({ 4, 7.65 }, { h:value("/r") })
    assert.is_nil(c:value("z", 1))
  end)

  it("treats a number label and its text as one series", function()
    local reg = metrics.new()
    local c = reg:counter("n_total", "N.", { "code", "route" })
    c:inc(1, 200, "/a")
    c:inc(1, "200", "/a")
    c:inc(1, 200, "/a")
    c:inc(1, 404, "/a")
    c:inc(1, 404.0, "/a")
    assert.same({ "# HELP n_total N.", "# TYPE n_total counter", 'n_total{code="200",route="/a"} 3',
      'n_total{code="404",route="/a"} 2' }, lines(reg:render()))
    assert.equal(3, c:value("200", "/a"))
    assert.has_error(function() c:inc(1, 200, "/a", "extra") end)
    assert.has_error(function() c:inc(1, 200) end)
    assert.has_error(function() c:inc(1, 200, nil) end)
    assert.has_error(function() c:inc(1, 0 / 0, "/a") end)
  end)

  it("escapes label values and help text", function()
    local reg = metrics.new()
    reg:counter("e_total", 'Back\\slash and\nnewline "quoted".', { "v" }):inc(1, 'a"b\\c\nd')
    local l = lines(reg:render())
    assert.equal('# HELP e_total Back\\\\slash and\\nnewline "quoted".', l[1])
    assert.equal('e_total{v="a\\"b\\\\c\\nd"} 1', l[3])
    assert.equal(3, #l, "no line broken by the newlines")
  end)

  it("writes numbers so they read back exactly", function()
    assert.equal("42", metrics.format_value(42))
    assert.equal("0.1", metrics.format_value(0.1))
    assert.equal("0.30000000000000004", metrics.format_value(0.1 + 0.2))
    assert.equal(0.1 + 0.2, tonumber(metrics.format_value(0.1 + 0.2)))
    assert.equal("+Inf", metrics.format_value(math.huge))
    assert.equal("-Inf", metrics.format_value(-math.huge))
    assert.equal("NaN", metrics.format_value(0 / 0))
    assert.equal("1e-05", metrics.format_value(0.00001))
  end)

  it("runs collectors before each render", function()
    local reg = metrics.new()
    local g = reg:gauge("q_len", "Queue length.")
    local n = 0
    reg:on_collect(function() n = n + 1; g:set(n * 10) end)
    assert.matches("q_len 10\n", reg:render(), 1, true)
    assert.matches("q_len 20\n", reg:render(), 1, true)
  end)

  it("keeps registries apart", function()
    local a, b = metrics.new(), metrics.new()
    a:counter("x_total", "X."):inc()
    b:counter("x_total", "X.")
    assert.equal(1, a:get("x_total"):value())
    assert.equal(0, b:get("x_total"):value())
  end)

  it("raises on misuse", function()
    local reg = metrics.new()
    local c = reg:counter("ok_total", "Fine.", { "l" })
    assert.has_error(function() reg:counter("ok_total", "Again.") end)
    assert.has_error(function() reg:counter("bad-name", "Dash.") end)
    assert.has_error(function() reg:counter("x", 1) end)
    assert.has_error(function() reg:gauge("y", "Bad label.", { "1x" }) end)
    assert.has_error(function() reg:gauge("y2", "Reserved label.", { "__x" }) end)
    assert.has_error(function() reg:gauge("y3", "Label twice.", { "a", "a" }) end)
    assert.has_error(function() reg:histogram("h", "le is reserved.", { "le" }) end)
    assert.has_error(function() reg:histogram("h2", "Not increasing.", nil, { 1, 1 }) end)
    assert.has_error(function() reg:histogram("h3", "Not finite.", nil, { 1, math.huge }) end)
    assert.has_error(function() c:inc(1) end)                 -- label value missing
    assert.has_error(function() c:inc(1, "a", "b") end)       -- one too many
    assert.has_error(function() c:inc(-1, "a") end)           -- counters only go up
    assert.has_error(function() c:inc(0 / 0, "a") end)
    assert.has_error(function() c:inc("1", "a") end)
    assert.has_error(function() c:inc(1, {}) end)
    assert.has_error(function() c:observe(1, "a") end)
    assert.has_error(function() c:dec(1, "a") end)
    c:set(5, "a")
    assert.has_error(function() c:set(4, "a") end)           -- a total never goes down
    local h = reg:histogram("h4", "Fine.")
    assert.has_error(function() h:inc() end)
    assert.has_error(function() h:set(1) end)
    assert.has_error(function() reg:on_collect("not a function") end)
    -- nothing half-made was left behind
    assert.is_nil(reg:get("bad-name"))
    assert.equal(5, c:value("a"))
  end)
end)
