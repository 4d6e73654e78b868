-- Pushers over a real server (Client-Server API, Push Notifications module,
-- "Client behaviour": GET /pushers, POST /pushers/set): adding, replacing,
-- appending, deleting with kind null, the checks of data.url, the errors,
-- and the pusher going with the access token's device.
local tesths = require "support.hs"

local V3 = "/_matrix/client/v3"

describe("pushers", function()
  local t
  setup(function() t = tesths.start() end)
  teardown(function() t:stop() end)

  local URL = "https://push.example.org/_matrix/push/v1/notify"
  local function body(over)
    local b = { kind = "http", app_id = "org.example.app", app_display_name = "Example",
      device_display_name = "Phone", pushkey = "key-1", lang = "en", data = { url = URL } }
    for k, v in pairs(over or {}) do b[k] = v end
    return b
  end
  local function set(u, b) return t:request("POST", V3 .. "/pushers/set", b, u.access_token) end
  local function list(u)
    local r = t:request("GET", V3 .. "/pushers", nil, u.access_token)
    assert.equal(200, r.status, r.body)
    return r.json.pushers
  end

  it("starts empty (an array), and lists a pusher as set", function()
    local u = t:fresh("p")
    local r = t:request("GET", V3 .. "/pushers", nil, u.access_token)
    assert.equal(200, r.status)
    assert.matches('"pushers":%[%]', r.body)
    r = set(u, body { profile_tag = "tag", data = { url = URL, format = "event_id_only", extra = 1 } })
    assert.equal(200, r.status, r.body)
    assert.same({}, r.json)
    assert.same({ { kind = "http", app_id = "org.example.app", app_display_name = "Example",
      device_display_name = "Phone", pushkey = "key-1", lang = "en", profile_tag = "tag",
      data = { url = URL, format = "event_id_only", extra = 1 } } }, list(u))
  end)

  it("replaces the pusher with the same app_id and pushkey; other pushkeys are kept", function()
    local u = t:fresh("p")
    assert.equal(200, set(u, body()).status)
    assert.equal(200, set(u, body { lang = "fr", device_display_name = "Tablet" }).status)
    local ps = list(u)
    assert.equal(1, #ps)
    assert.equal("fr", ps[1].lang)
    assert.equal("Tablet", ps[1].device_display_name)
    assert.equal(200, set(u, body { pushkey = "key-2" }).status)
    assert.equal(2, #list(u))
  end)

  it("kind null deletes the pusher for app_id and pushkey", function()
    local u = t:fresh("p")
    assert.equal(200, set(u, body()).status)
    assert.equal(200, set(u, body { pushkey = "other" }).status)
    local r = set(u, { kind = require("loom.core").json.null, app_id = "org.example.app", pushkey = "key-1" })
    assert.equal(200, r.status, r.body)
    local ps = list(u)
    assert.equal(1, #ps)
    assert.equal("other", ps[1].pushkey)
    -- deleting one that does not exist is fine too
    assert.equal(200, set(u, { kind = require("loom.core").json.null, app_id = "nope", pushkey = "nope" }).status)
  end)

  it("append false takes the pushkey from other users; append true shares it", function()
    local a, b, c = t:fresh("p"), t:fresh("p"), t:fresh("p")
    local shared = body { pushkey = "shared-" .. a.user_id }
    assert.equal(200, set(a, shared).status)
    shared.append = true
    assert.equal(200, set(b, shared).status)
    assert.equal(1, #list(a))
    assert.equal(1, #list(b))
    shared.append = false
    assert.equal(200, set(c, shared).status)
    assert.equal(0, #list(a))
    assert.equal(0, #list(b))
    assert.equal(1, #list(c))
  end)

  it("refuses missing parameters with M_MISSING_PARAM and changes nothing", function()
    local u = t:fresh("p")
    for _, k in ipairs { "kind", "app_id", "app_display_name", "device_display_name", "pushkey", "lang", "data" } do
      local b = body()
      b[k] = nil
      local r = set(u, b)
      assert.equal(400, r.status, k)
      assert.equal("M_MISSING_PARAM", r.json.errcode, k)
    end
    assert.equal(0, #list(u))
  end)

  it("checks data.url: required, http(s), path /_matrix/push/v1/notify", function()
    local u = t:fresh("p")
    for _, data in ipairs {
      {}, { url = 5 }, { url = "https://push.example.org/notify" },
      { url = "ftp://push.example.org/_matrix/push/v1/notify" },
      { url = "push.example.org/_matrix/push/v1/notify" },
      { url = "https://push.example.org/_matrix/push/v1/notify/x" },
      { url = "https:///_matrix/push/v1/notify" }, "x", require("loom.core").json.array { 1, 2 },
    } do
      local r = set(u, body { data = data })
      assert.equal(400, r.status, r.body)
      assert.equal("M_MISSING_PARAM", r.json.errcode)
    end
    assert.equal(0, #list(u))
    -- http and a port and a query are fine
    assert.equal(200, set(u, body { data = { url = "http://127.0.0.1:5000/_matrix/push/v1/notify?x=1" } }).status)
  end)

  it("refuses bad values with M_INVALID_PARAM, a bad body with M_NOT_JSON / M_BAD_JSON", function()
    local u = t:fresh("p")
    for _, over in ipairs {
      { kind = "carrier-pigeon" }, { kind = 5 }, { app_id = string.rep("a", 65) }, { app_id = "" },
      { pushkey = string.rep("k", 513) }, { pushkey = 7 }, { lang = {} },
      { append = "yes" }, { profile_tag = 3 },
    } do
      local r = set(u, body(over))
      assert.equal(400, r.status, r.body)
      assert.equal("M_INVALID_PARAM", r.json.errcode, r.body)
    end
    local r = t:request("POST", V3 .. "/pushers/set", "{not json", u.access_token)
    assert.equal(400, r.status)
    assert.equal("M_NOT_JSON", r.json.errcode)
    r = t:request("POST", V3 .. "/pushers/set", "[]", u.access_token)
    assert.equal(400, r.status)
    assert.equal("M_BAD_JSON", r.json.errcode)
    -- the pushkey of an email pusher must be one of the user's addresses (there are none)
    r = set(u, body { kind = "email", pushkey = "a@example.org", data = {} })
    assert.equal(400, r.status)
    assert.equal("M_THREEPID_NOT_FOUND", r.json.errcode)
    assert.equal(0, #list(u))
    assert.equal(401, t:request("GET", V3 .. "/pushers").status)
    assert.equal(401, t:request("POST", V3 .. "/pushers/set", body()).status)
  end)

  it("goes with its device: logout and device deletion remove it, other devices' pushers stay", function()
    local u = t:fresh("p")
    local second = assert(t.hs.accounts:login(u.user_id, u.password))
    local third = assert(t.hs.accounts:login(u.user_id, u.password))
    assert.equal(200, set(u, body { pushkey = "first" }).status)
    assert.equal(200, set(second, body { pushkey = "second" }).status)
    assert.equal(200, set(third, body { pushkey = "third" }).status)
    assert.equal(3, #list(u))
    assert.equal(200, t:request("POST", V3 .. "/logout", {}, second.access_token).status)
    local keys = {}
    for _, p in ipairs(list(u)) do keys[#keys + 1] = p.pushkey end
    table.sort(keys)
    assert.same({ "first", "third" }, keys)
    -- deleting a device (through the store, as the UIA-guarded endpoint does)
    t.hs.store:delete_devices(u.user_id, { third.device_id })
    local ps = list(u)
    assert.equal(1, #ps)
    assert.equal("first", ps[1].pushkey)
    -- deactivation removes every device, and so every pusher
    local v = t:fresh("p")
    assert.equal(200, set(v, body { pushkey = "v-key" }).status)
    t.hs.accounts:deactivate(v.user_id)
    assert.is_nil(t.hs.store:pusher(v.user_id, "org.example.app", "v-key"))
    assert.same({}, t.hs.store:user_pushers(v.user_id))
  end)
end)
