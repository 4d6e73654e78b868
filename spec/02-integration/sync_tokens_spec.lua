-- Stream tokens from clients (Client-Server API: /sync `since`, /messages
-- `from` and `to`, /members `at`). A token is only ever one the server
-- handed out: garbage, a token of another shape or another server, a
-- position beyond what the server has reached (in any part of the
-- composite /sync token), negative or out-of-range numbers are 400
-- M_INVALID_PARAM, never a 500 and never a silently clamped answer.
local tesths = require "support.hs"

local enc = tesths.enc
local V3 = "/_matrix/client/v3"

describe("sync tokens", function()
  local t, a, room, since
  setup(function()
    t = tesths.start()
    a = t:fresh("tok")
    room = t:create_room(a, { preset = "private_chat" })
    assert.equal(200, t:send(a.access_token, room, { msgtype = "m.text", body = "one" }).status)
    since = t:request("GET", V3 .. "/sync", nil, a.access_token).json.next_batch
  end)
  teardown(function() t:stop() end)

  local function sync(tok)
    return t:request("GET", V3 .. "/sync?timeout=0&since=" .. enc(tok), nil, a.access_token)
  end
  local function messages(query)
    return t:request("GET", V3 .. "/rooms/" .. enc(room) .. "/messages?" .. query, nil, a.access_token)
  end
  local function invalid(r, what)
    assert.equal(400, r.status, what .. ": " .. tostring(r.body))
    assert.equal("M_INVALID_PARAM", r.json.errcode, what)
    assert.is_string(r.json.error, what)
  end
  local function parts(tok)
    local out = {}
    for n in tok:sub(2):gmatch("[^_]+") do out[#out + 1] = n end
    return out
  end
  local function with_part(tok, i, value)
    local p = parts(tok)
    p[i] = value
    return "s" .. table.concat(p, "_")
  end

  it("gives every stream its own part of next_batch, and takes the token back", function()
    local p = parts(since)
    assert.is_true(#p >= 5, since)
    for _, n in ipairs(p) do assert.truthy(n:match("^%d+$"), since) end
    local r = sync(since)
    assert.equal(200, r.status, r.body)
    assert.equal(since, r.json.next_batch)
  end)

  it("refuses garbage, foreign shapes and extra parts", function()
    local bad = { "garbage", "s", "s1_", "s_1_2_3_4", "s1__2_3_4", "s1_2_3", "sx_0_0_0_0", "s1.5_0_0_0_0",
      "S1_0_0_0_0", " s1_0_0_0_0", "s1_0_0_0_0 ", "s+1_0_0_0_0", "s01_0_0_0_0", "t1-1", "t2-1_0_0_0_0",
      -- a Synapse token and other servers' shapes
      "s72594_4483_1934_17_1_12_1_1_0", "m123~1.2_3_4", "MDAxNjJsb2NhdGlvbiA", "0", "1",
      since .. "_0", since .. "_", since .. "x", ("s" .. ("9"):rep(200)), "s1\0_0_0_0_0" }
    for _, tok in ipairs(bad) do invalid(sync(tok), tok) end
  end)

  it("refuses a position from the future in any part", function()
    local p = parts(since)
    for i = 1, #p do
      local ahead = tostring(math.tointeger(p[i]) + 1000)
      invalid(sync(with_part(since, i, ahead)), "part " .. i .. " ahead")
      invalid(sync(with_part(since, i, "9007199254740993")), "part " .. i .. " beyond 2^53")
      invalid(sync(with_part(since, i, "9223372036854775807")), "part " .. i .. " at 2^63-1")
      invalid(sync(with_part(since, i, "9223372036854775808")), "part " .. i .. " past 2^63-1")
      invalid(sync(with_part(since, i, "-1")), "part " .. i .. " negative")
      invalid(sync(with_part(since, i, "-9223372036854775808")), "part " .. i .. " most negative")
    end
    -- the bare store form too
    invalid(sync("s" .. tostring(math.tointeger(p[1]) + 1000)), "s<future>")
    invalid(sync("s-5"), "s<negative>")
  end)

  it("takes an old token and sends what changed since", function()
    local old = since
    for i = 1, 3 do
      assert.equal(200, t:send(a.access_token, room, { msgtype = "m.text", body = "m" .. i }).status)
    end
    local r = sync(old)
    assert.equal(200, r.status)
    local evs = r.json.rooms.join[room].timeline.events
    assert.equal(3, #evs)
    assert.equal("m3", evs[3].content.body)
    -- the zero token is old, not invalid
    r = sync("s0_0_0_0_0")
    assert.equal(200, r.status)
  end)

  it("checks /messages from and to the same way", function()
    local r = messages("dir=b&from=" .. enc(since))
    assert.equal(200, r.status, r.body)
    assert.is_true(#r.json.chunk > 0)
    local p = parts(since)
    local future = tostring(math.tointeger(p[1]) + 1000)
    local bad = { "garbage", "s", "t1", "s1_2_3", "s" .. future, "t1-" .. future, with_part(since, 1, future),
      with_part(since, 3, "999999"), since .. "_0", "s9007199254740993", "t9007199254740993-1",
      "t1-9223372036854775807", "s9223372036854775808", "t-1-1", "t0-1" }
    for _, tok in ipairs(bad) do
      invalid(messages("dir=b&from=" .. enc(tok)), "from " .. tok)
      invalid(messages("dir=f&from=" .. enc(since) .. "&to=" .. enc(tok)), "to " .. tok)
    end
    -- a token handed out by /messages is taken back
    r = messages("dir=b&limit=1")
    assert.equal(200, r.status)
    assert.equal(200, messages("dir=b&from=" .. enc(r.json["end"])).status)
    assert.equal(200, messages("dir=f&from=" .. enc(r.json.start)).status)
  end)

  it("checks /members at the same way", function()
    local path = V3 .. "/rooms/" .. enc(room) .. "/members?at="
    assert.equal(200, t:request("GET", path .. enc(since), nil, a.access_token).status)
    local future = tostring(math.tointeger(parts(since)[1]) + 1000)
    for _, tok in ipairs { "garbage", "s" .. future, with_part(since, 1, future), since .. "_0" } do
      local r = t:request("GET", path .. enc(tok), nil, a.access_token)
      invalid(r, "at " .. tok)
    end
  end)
end)
