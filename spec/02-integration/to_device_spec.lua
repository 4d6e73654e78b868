-- Send-to-device messaging over a real server (Client-Server API
-- "Send-to-Device messaging"): PUT /sendToDevice, its errors, and the
-- to_device section of /sync (order, redelivery until acknowledged, the
-- per-sync limit, long-poll wake-up).
local tesths = require "support.hs"
local sync_token = require "loom.sync.token"

local enc = tesths.enc
local V3 = "/_matrix/client/v3"

describe("send-to-device", function()
  local t
  setup(function() t = tesths.start() end)
  teardown(function() t:stop() end)

  local txn = 0
  local function fresh() return t:fresh("td") end
  local function second_device(u)
    local login = assert(t.hs.accounts:login(u.user_id, u.password))
    return { user_id = u.user_id, access_token = login.access_token, device_id = login.device_id }
  end
  local function send(from, etype, messages, txn_id)
    if not txn_id then txn = txn + 1; txn_id = "t" .. txn end
    return t:request("PUT", V3 .. "/sendToDevice/" .. enc(etype) .. "/" .. enc(txn_id), { messages = messages },
      from.access_token)
  end
  local function sync(u, since)
    local r = t:request("GET", V3 .. "/sync" .. (since and "?since=" .. enc(since) or ""), nil, u.access_token)
    assert.equal(200, r.status)
    return r.json
  end

  it("delivers to one device, in order, with type, sender and content", function()
    local a, b = fresh(), fresh()
    local b2 = second_device(b)
    assert.equal(200, send(a, "org.example.x", { [b.user_id] = { [b.device_id] = { i = 1 } } }).status)
    assert.equal(200, send(a, "org.example.y", { [b.user_id] = { [b.device_id] = { i = 2 } } }).status)
    local s = sync(b)
    assert.same({
      { type = "org.example.x", sender = a.user_id, content = { i = 1 } },
      { type = "org.example.y", sender = a.user_id, content = { i = 2 } },
    }, s.to_device.events)
    -- the other device of the user gets nothing
    assert.same({}, sync(b2).to_device.events)
    -- nor does the sender
    assert.same({}, sync(a).to_device.events)
  end)

  it('"*" reaches every device of the user', function()
    local a, b = fresh(), fresh()
    local b2 = second_device(b)
    assert.equal(200, send(a, "org.example.all", { [b.user_id] = { ["*"] = { all = true } } }).status)
    for _, d in ipairs { b, b2 } do
      local evs = sync(d).to_device.events
      assert.equal(1, #evs)
      assert.same({ all = true }, evs[1].content)
    end
  end)

  it("redelivers until a later sync acknowledges", function()
    local a, b = fresh(), fresh()
    local s0 = sync(b)
    assert.equal(200, send(a, "org.example.r", { [b.user_id] = { [b.device_id] = { r = 1 } } }).status)
    local s1 = sync(b, s0.next_batch)
    assert.equal(1, #s1.to_device.events)
    -- a retried sync with the same since gets the message again
    local again = sync(b, s0.next_batch)
    assert.equal(1, #again.to_device.events)
    assert.same({ r = 1 }, again.to_device.events[1].content)
    -- an initial sync (no since) acknowledges nothing either
    assert.equal(1, #sync(b).to_device.events)
    -- syncing from the token that carried it acknowledges it: gone for good
    local s2 = sync(b, s1.next_batch)
    assert.same({}, s2.to_device.events)
    assert.same({}, sync(b, s0.next_batch).to_device.events)
    assert.same({}, sync(b).to_device.events)
    assert.is_true(sync_token.parse(s1.next_batch).to_device > 0)
  end)

  it("is idempotent per sender device and txnId", function()
    local a, b = fresh(), fresh()
    local a2 = second_device(a)
    local msg = { [b.user_id] = { [b.device_id] = { once = 1 } } }
    assert.equal(200, send(a, "org.example.i", msg, "same").status)
    local r = send(a, "org.example.i", msg, "same")
    assert.equal(200, r.status)
    assert.same({}, r.json)
    -- another device of the sender may use the same txnId
    assert.equal(200, send(a2, "org.example.i", msg, "same").status)
    assert.equal(2, #sync(b).to_device.events)
  end)

  it("sends at most 100 per sync, the rest in the next", function()
    local a, b = fresh(), fresh()
    for i = 1, 105 do
      assert.equal(200, send(a, "org.example.n", { [b.user_id] = { [b.device_id] = { i = i } } }).status)
    end
    local s1 = sync(b)
    assert.equal(100, #s1.to_device.events)
    assert.equal(1, s1.to_device.events[1].content.i)
    assert.equal(100, s1.to_device.events[100].content.i)
    local s2 = sync(b, s1.next_batch)
    assert.equal(5, #s2.to_device.events)
    assert.equal(101, s2.to_device.events[1].content.i)
    assert.same({}, sync(b, s2.next_batch).to_device.events)
  end)

  it("ignores remote users and unknown devices", function()
    local a, b = fresh(), fresh()
    local r = send(a, "org.example.z", {
      ["@someone:remote.example"] = { DEV = { z = 1 } },
      [b.user_id] = { NOSUCHDEVICE = { z = 2 }, [b.device_id] = { z = 3 } },
    })
    assert.equal(200, r.status)
    local evs = sync(b).to_device.events
    assert.equal(1, #evs)
    assert.same({ z = 3 }, evs[1].content)
  end)

  it("a device's messages go with the device when it logs out", function()
    local a, b = fresh(), fresh()
    local b2 = second_device(b)
    assert.equal(200, send(a, "org.example.o", { [b.user_id] = { ["*"] = { o = 1 } } }).status)
    assert.equal(200, t:request("POST", V3 .. "/logout", {}, b2.access_token).status)
    -- the same device ID logged in again starts with an empty inbox
    local login = t:request("POST", V3 .. "/login", { type = "m.login.password",
      identifier = { type = "m.id.user", user = b.user_id }, password = b.password, device_id = b2.device_id })
    assert.equal(200, login.status)
    assert.equal(b2.device_id, login.json.device_id)
    assert.same({}, sync({ access_token = login.json.access_token }).to_device.events)
    -- the other device still has its copy
    assert.equal(1, #sync(b).to_device.events)
  end)

  it("a message wakes the target device's waiting long-poll", function()
    local a, b = fresh(), fresh()
    local since = sync(b).next_batch
    local uv = require "luv"
    t:run(function()
      local h = t:go(function()
        return t:call("GET", V3 .. "/sync?timeout=5000&since=" .. enc(since), nil, b.access_token)
      end)
      t:sleep(50)
      local sent = uv.hrtime()
      local path = V3 .. "/sendToDevice/org.example.w/wake1"
      assert.equal(200, t:call("PUT", path, { messages = { [b.user_id] = { [b.device_id] = { w = 1 } } } },
        a.access_token).status)
      local r = t:await(h)
      local waited = (uv.hrtime() - sent) / 1e6
      assert.equal(200, r.status)
      assert.equal(1, #r.json.to_device.events)
      assert.same({ w = 1 }, r.json.to_device.events[1].content)
      assert.is_true(waited < 1000, "returned " .. waited .. " ms after the PUT")
    end)
  end)

  it("answers bad input with Matrix errors", function()
    local a, b = fresh(), fresh()
    local function check(status, errcode, r)
      assert.equal(status, r.status)
      assert.equal(errcode, r.json.errcode)
    end
    check(400, "M_BAD_JSON", send(a, "org.example.e", { [b.user_id] = { [b.device_id] = "text" } }))
    check(400, "M_BAD_JSON", send(a, "org.example.e", { [b.user_id] = { [b.device_id] = { 1, 2 } } }))
    check(400, "M_BAD_JSON", send(a, "org.example.e", { [b.user_id] = "x" }))
    check(400, "M_BAD_JSON", send(a, "org.example.e", { ["not-a-user"] = { D = {} } }))
    check(400, "M_BAD_JSON", send(a, "org.example.e", "x"))
    local r = t:request("PUT", V3 .. "/sendToDevice/org.example.e/m1", {}, a.access_token)
    check(400, "M_MISSING_PARAM", r)
    r = t:request("PUT", V3 .. "/sendToDevice/org.example.e/m2", "[1]", a.access_token)
    assert.equal(400, r.status)
    r = t:request("PUT", V3 .. "/sendToDevice/" .. ("x"):rep(256) .. "/m3",
      { messages = {} }, a.access_token)
    check(400, "M_INVALID_PARAM", r)
    r = t:request("PUT", V3 .. "/sendToDevice/org.example.e/m4", { messages = {} })
    check(401, "M_MISSING_TOKEN", r)
    -- a failed request queued nothing
    assert.same({}, sync(b).to_device.events)
    -- a bad since token is still refused by /sync
    assert.equal(400, t:request("GET", V3 .. "/sync?since=s1_0_0_x_0", nil, b.access_token).status)
  end)
end)
