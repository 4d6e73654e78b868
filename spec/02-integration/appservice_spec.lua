-- Application services (Application Service API): registration files,
-- identity assertion, exclusive namespaces, transactions (in order, exactly
-- once across the service's downtime and a loom restart), user and alias
-- queries, ping. The service is a real HTTP server on 127.0.0.1 (a second
-- loom.new with the Application Service API's routes).
local tesths = require "support.hs"
local tmp = require "support.tmpdb"
local loom = require "loom"
local uv = require "luv"

local enc = tesths.enc
local V3 = "/_matrix/client/v3"

local AS_TOKEN, HS_TOKEN = "as-secret-token", "hs-secret-token"

-- The fake service: records what it is sent.
local function fake_service()
  local f = { txns = {}, attempts = 0, events = {}, queries = {}, pings = {}, status = nil, ephemeral = {},
    to_device = {}, bodies = {} }
  f.server = loom.new { port = 0, server_name = "as.local", log_level = "error", logger = function() end }
  local function authed(req)
    return req:header("Authorization") == "Bearer " .. HS_TOKEN
  end
  f.server:route("PUT", "/_matrix/app/v1/transactions/{txnId}", function(req)
    f.attempts = f.attempts + 1
    if not authed(req) then return 403, { errcode = "M_FORBIDDEN" } end
    if f.down then return 503, { errcode = "M_UNKNOWN", error = "down" } end
    local id = req.params.txnId
    local body = req:json()
    if not f.txns[id] then
      f.txns[id] = true
      f.order = f.order or {}
      f.order[#f.order + 1] = id
      for _, ev in ipairs(body.events) do f.events[#f.events + 1] = ev end
      for _, ev in ipairs(body.ephemeral or {}) do f.ephemeral[#f.ephemeral + 1] = ev end
      for _, m in ipairs(body["de.sorunome.msc2409.to_device"] or {}) do f.to_device[#f.to_device + 1] = m end
      f.bodies[#f.bodies + 1] = body
    end
    return {}
  end)
  f.server:route("GET", "/_matrix/app/v1/users/{userId}", function(req)
    f.queries[#f.queries + 1] = req.params.userId
    if not authed(req) then return 403, { errcode = "M_FORBIDDEN" } end
    if f.on_user then return f.on_user(req.params.userId) end
    return 404, { errcode = "M_NOT_FOUND" }
  end)
  f.server:route("GET", "/_matrix/app/v1/rooms/{roomAlias}", function(req)
    f.queries[#f.queries + 1] = req.params.roomAlias
    if f.on_alias then return f.on_alias(req.params.roomAlias) end
    return 404, { errcode = "M_NOT_FOUND" }
  end)
  f.server:route("POST", "/_matrix/app/v1/ping", function(req)
    f.pings[#f.pings + 1] = req:json().transaction_id
    if f.ping_status then return f.ping_status, { errcode = "M_FORBIDDEN" } end
    return {}
  end)
  assert(f.server:start())
  f.url = "http://127.0.0.1:" .. f.server:port()
  return f
end

local function stop_server(srv)
  local stopped = false
  srv:stop(function() stopped = true end)
  local guard = 0
  while not stopped and guard < 1000 do uv.run("once"); guard = guard + 1 end
  for _ = 1, 5 do uv.run("nowait") end
end

local function registration(url, extra)
  local r = {
    id = "bridge", url = url, as_token = AS_TOKEN, hs_token = HS_TOKEN, sender_localpart = "_bridge_bot",
    namespaces = {
      users = { { exclusive = true, regex = "@_bridge_.*:test\\.local" } },
      aliases = { { exclusive = true, regex = "#_bridge_.*:test\\.local" } },
      rooms = {},
    },
  }
  for k, v in pairs(extra or {}) do r[k] = v end
  return r
end

local function ids(events)
  local out = {}
  for i, ev in ipairs(events) do out[i] = ev.event_id end
  return out
end


describe("application service registrations", function()
  it("are read from YAML files beside the config, and a bad one stops the server with a clear message", function()
    local dir = tmp.path() .. ".d"
    assert(os.execute("mkdir -p '" .. dir .. "'"))
    local f = assert(io.open(dir .. "/irc.yaml", "w"))
    f:write([[
id: "IRC Bridge"
url: null
as_token: "irc-as"
hs_token: "irc-hs"
sender_localpart: "_irc_bot"
namespaces:
  users:
    - exclusive: true
      regex: "@_irc_.*"
  aliases: []
  rooms: []
rate_limited: false
protocols: ["irc"]
]])
    f:close()
    local t = tesths.start { config_dir = dir, app_services = { "irc.yaml" } }
    local svc = t.hs.appservices:by_id("IRC Bridge")
    assert.equal("@_irc_bot:test.local", svc.sender)
    assert.is_nil(svc.url)
    assert.same({ "irc" }, svc.protocols)
    -- its sender is registered
    local r = t:request("GET", V3 .. "/account/whoami", nil, "irc-as")
    assert.equal(200, r.status, r.body)
    assert.equal("@_irc_bot:test.local", r.json.user_id)
    t:stop()

    local no_hs_token = registration(nil)
    no_hs_token.hs_token = nil
    local bad = {
      { registration(nil, { namespaces = { users = { { exclusive = true, regex = "(" } } } }), "regex" },
      { no_hs_token, "hs_token" },
      { registration(nil, { sender_localpart = "Bad Name" }), "sender_localpart" },
      { registration(nil, { namespaces = { users = { { regex = "@x.*" } } } }), "exclusive" },
    }
    for _, case in ipairs(bad) do
      case[1].url = case[1].url or "http://127.0.0.1:9"
      local ok, err = pcall(tesths.start, { app_services = { case[1] } })
      assert.is_false(ok)
      assert.matches(case[2], tostring(err), 1, true)
    end
    local a = registration("http://127.0.0.1:9")
    local b = registration("http://127.0.0.1:9", { id = "other", hs_token = "different" })
    local ok, err = pcall(tesths.start, { app_services = { a, b } })
    assert.is_false(ok)
    assert.matches("unique", tostring(err))
    b = registration("http://127.0.0.1:9", { id = "bridge", as_token = "x", hs_token = "y", sender_localpart = "b2",
      namespaces = {} })
    ok, err = pcall(tesths.start, { app_services = { a, b } })
    assert.is_false(ok)
    assert.matches("id", tostring(err))
    -- another service's sender inside an exclusive namespace
    b = registration("http://127.0.0.1:9", { id = "two", as_token = "x", hs_token = "y",
      sender_localpart = "_bridge_two", namespaces = {} })
    ok, err = pcall(tesths.start, { app_services = { a, b } })
    assert.is_false(ok)
    assert.matches("exclusive", tostring(err))
    os.execute("rm -rf '" .. dir .. "'")
  end)
end)

describe("an application service acting on the Client-Server API", function()
  local t, fake
  before_each(function()
    fake = fake_service()
    t = tesths.start { app_services = { registration(fake.url) }, app_service_retry_ms = 20 }
  end)
  after_each(function()
    t:stop()
    stop_server(fake.server)
  end)

  it("registers users in its namespace without a password or UIA, and only there", function()
    local r = t:request("POST", V3 .. "/register", { type = "m.login.application_service", username = "_bridge_alice" },
      AS_TOKEN)
    assert.equal(200, r.status, r.body)
    assert.equal("@_bridge_alice:test.local", r.json.user_id)
    assert.is_string(r.json.access_token)
    r = t:request("POST", V3 .. "/register", { type = "m.login.application_service", username = "alice" }, AS_TOKEN)
    assert.equal(400, r.status)
    assert.equal("M_EXCLUSIVE", r.json.errcode)
    r = t:request("POST", V3 .. "/register", { type = "m.login.application_service", username = "_bridge_x" })
    assert.equal(401, r.status)
    assert.equal("M_MISSING_TOKEN", r.json.errcode)
    r = t:request("POST", V3 .. "/register", { type = "m.login.application_service", username = "_bridge_x" },
      "not-a-token")
    assert.equal(401, r.status)
    assert.equal("M_UNKNOWN_TOKEN", r.json.errcode)
    assert.is_nil(t.hs.accounts:user("@_bridge_x:test.local"))
    -- everyone else is refused the exclusive namespace
    r = t:request("POST", V3 .. "/register", { username = "_bridge_mallory", password = "pw-12345678",
      auth = { type = "m.login.dummy" } })
    assert.equal(400, r.status)
    assert.equal("M_EXCLUSIVE", r.json.errcode)
    assert.is_nil(t.hs.accounts:user("@_bridge_mallory:test.local"))
    r = t:request("GET", V3 .. "/register/available?username=_bridge_mallory")
    assert.equal(400, r.status)
    assert.equal("M_EXCLUSIVE", r.json.errcode)
    -- and may log in as its users
    r = t:request("POST", V3 .. "/login", { type = "m.login.application_service",
      identifier = { type = "m.id.user", user = "_bridge_alice" } }, AS_TOKEN)
    assert.equal(200, r.status, r.body)
    assert.equal("@_bridge_alice:test.local", r.json.user_id)
    r = t:request("GET", V3 .. "/login")
    assert.equal("m.login.application_service", r.json.flows[2].type)
  end)

  it("masquerades as users in its namespaces and nobody else", function()
    local bob = t:register("bob")
    local r = t:request("GET", V3 .. "/account/whoami", nil, AS_TOKEN)
    assert.equal("@_bridge_bot:test.local", r.json.user_id)
    r = t:request("GET", V3 .. "/account/whoami?user_id=" .. enc("@_bridge_carol:test.local"), nil, AS_TOKEN)
    assert.equal(403, r.status)      -- not registered yet
    assert.equal("M_FORBIDDEN", r.json.errcode)
    assert(t:request("POST", V3 .. "/register", { type = "m.login.application_service", username = "_bridge_carol",
      inhibit_login = true }, AS_TOKEN).status == 200)
    r = t:request("GET", V3 .. "/account/whoami?user_id=" .. enc("@_bridge_carol:test.local"), nil, AS_TOKEN)
    assert.equal(200, r.status, r.body)
    assert.equal("@_bridge_carol:test.local", r.json.user_id)
    r = t:request("GET", V3 .. "/account/whoami?user_id=" .. enc(bob.user_id), nil, AS_TOKEN)
    assert.equal(403, r.status)
    assert.equal("M_FORBIDDEN", r.json.errcode)
    r = t:request("GET", V3 .. "/account/whoami?user_id=" .. enc("@_bridge_carol:test.local") .. "&device_id=NOPE",
      nil, AS_TOKEN)
    assert.equal(400, r.status)
    assert.equal("M_UNKNOWN_DEVICE", r.json.errcode)
    -- a message sent as carol is carol's
    local room = t:create_room(bob, { preset = "public_chat" })
    r = t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/join?user_id=" .. enc("@_bridge_carol:test.local"), {},
      AS_TOKEN)
    assert.equal(200, r.status, r.body)
    r = t:request("PUT", V3 .. "/rooms/" .. enc(room) .. "/send/m.room.message/1?user_id="
      .. enc("@_bridge_carol:test.local"), { msgtype = "m.text", body = "from the bridge" }, AS_TOKEN)
    assert.equal(200, r.status, r.body)
    local ev = t:request("GET", V3 .. "/rooms/" .. enc(room) .. "/event/" .. enc(r.json.event_id), nil,
      bob.access_token)
    assert.equal("@_bridge_carol:test.local", ev.json.sender)
    -- the service's ?ts= sets origin_server_ts (a client's is ignored)
    r = t:request("PUT", V3 .. "/rooms/" .. enc(room) .. "/send/m.room.message/2?ts=1600000000000&user_id="
      .. enc("@_bridge_carol:test.local"), { msgtype = "m.text", body = "back then" }, AS_TOKEN)
    assert.equal(200, r.status, r.body)
    ev = t:request("GET", V3 .. "/rooms/" .. enc(room) .. "/event/" .. enc(r.json.event_id), nil, bob.access_token)
    assert.equal(1600000000000, ev.json.origin_server_ts)
    r = t:request("PUT", V3 .. "/rooms/" .. enc(room) .. "/state/m.room.topic?ts=1600000000001", { topic = "old" },
      AS_TOKEN)
    assert.equal(403, r.status)     -- the bot is not in the room; the ts was fine
    r = t:request("PUT", V3 .. "/rooms/" .. enc(room) .. "/send/m.room.message/3?ts=soon&user_id="
      .. enc("@_bridge_carol:test.local"), { msgtype = "m.text", body = "x" }, AS_TOKEN)
    assert.equal(400, r.status)
    assert.equal("M_INVALID_PARAM", r.json.errcode)
    assert.equal(200, t:send(bob.access_token, room, { msgtype = "m.text", body = "now" }).status)
    local mine = t:request("PUT", V3 .. "/rooms/" .. enc(room) .. "/send/m.room.message/b2?ts=1", { body = "y" },
      bob.access_token)
    ev = t:request("GET", V3 .. "/rooms/" .. enc(room) .. "/event/" .. enc(mine.json.event_id), nil, bob.access_token)
    assert.is_true(ev.json.origin_server_ts > 1600000000000)
    -- hooks see the user the service acts as
    local seen
    t.server:hook("room/event/check", function(proto) seen = proto.sender end)
    r = t:request("PUT", V3 .. "/rooms/" .. enc(room) .. "/send/m.room.message/4?user_id="
      .. enc("@_bridge_carol:test.local"), { msgtype = "m.text", body = "hooked" }, AS_TOKEN)
    assert.equal(200, r.status, r.body)
    assert.equal("@_bridge_carol:test.local", seen)
  end)

  it("owns its exclusive aliases", function()
    local bob = t:register("bob")
    local room = t:create_room(bob, {})
    local r = t:request("PUT", V3 .. "/directory/room/" .. enc("#_bridge_chan:test.local"), { room_id = room },
      bob.access_token)
    assert.equal(400, r.status)
    assert.equal("M_EXCLUSIVE", r.json.errcode)
    r = t:request("POST", V3 .. "/createRoom", { room_alias_name = "_bridge_x" }, bob.access_token)
    assert.equal(400, r.status)
    assert.equal("M_EXCLUSIVE", r.json.errcode)
    r = t:request("PUT", V3 .. "/directory/room/" .. enc("#_bridge_chan:test.local"), { room_id = room }, AS_TOKEN)
    assert.equal(200, r.status, r.body)
    r = t:request("DELETE", V3 .. "/directory/room/" .. enc("#_bridge_chan:test.local"), nil, AS_TOKEN)
    assert.equal(200, r.status, r.body)
    r = t:request("PUT", V3 .. "/directory/room/" .. enc("#ordinary:test.local"), { room_id = room },
      bob.access_token)
    assert.equal(200, r.status, r.body)
    -- the service itself stays inside its namespaces
    r = t:request("PUT", V3 .. "/directory/room/" .. enc("#elsewhere:test.local"), { room_id = room }, AS_TOKEN)
    assert.equal(400, r.status)
    assert.equal("M_EXCLUSIVE", r.json.errcode)
  end)

  it("is asked about unknown users and aliases in its namespaces, which exist when it answers 200", function()
    local bob = t:register("bob")
    local room = t:create_room(bob, { preset = "public_chat" })
    fake.on_user = function(user_id)
      t.hs.accounts:register(user_id:match("^@([^:]+)"), nil)
      t.hs.accounts:set_profile(user_id, "displayname", "Bridged")
      return {}
    end
    fake.on_alias = function(alias)
      assert(t.hs.store:add_alias(alias, room, "@_bridge_bot:test.local"))
      return {}
    end
    local r = t:request("GET", V3 .. "/profile/" .. enc("@_bridge_dave:test.local"), nil, bob.access_token)
    assert.equal(200, r.status, r.body)
    assert.equal("Bridged", r.json.displayname)
    assert.same({ "@_bridge_dave:test.local" }, fake.queries)
    r = t:request("GET", V3 .. "/profile/" .. enc("@nobody:test.local"), nil, bob.access_token)
    assert.equal(404, r.status)
    assert.equal(1, #fake.queries)        -- outside its namespaces: not asked
    r = t:request("GET", V3 .. "/directory/room/" .. enc("#_bridge_news:test.local"), nil, bob.access_token)
    assert.equal(200, r.status, r.body)
    assert.equal(room, r.json.room_id)
    fake.on_alias = nil
    r = t:request("GET", V3 .. "/directory/room/" .. enc("#_bridge_gone:test.local"), nil, bob.access_token)
    assert.equal(404, r.status)
  end)

  it("lists rooms in its third-party network's directory", function()
    local bob = t:register("bob")
    local public = t:create_room(bob, { preset = "public_chat", visibility = "public", name = "main" })
    local bridged = t:create_room(bob, { preset = "public_chat", name = "bridged" })
    local path = V3 .. "/directory/list/appservice/irc/" .. enc(bridged)
    local r = t:request("PUT", path, { visibility = "public" }, bob.access_token)
    assert.equal(403, r.status)
    r = t:request("PUT", path, { visibility = "sideways" }, AS_TOKEN)
    assert.equal(400, r.status)
    r = t:request("PUT", V3 .. "/directory/list/appservice/irc/" .. enc("!nope:test.local"), { visibility = "public" },
      AS_TOKEN)
    assert.equal(404, r.status)
    r = t:request("PUT", path, { visibility = "public" }, AS_TOKEN)
    assert.equal(200, r.status, r.body)
    local function room_ids(body)
      local out = {}
      for _, e in ipairs(body.chunk) do out[#out + 1] = e.room_id end
      table.sort(out)
      return out
    end
    r = t:request("POST", V3 .. "/publicRooms", {}, bob.access_token)
    assert.same({ public }, room_ids(r.json))
    r = t:request("POST", V3 .. "/publicRooms", { third_party_instance_id = "irc" }, bob.access_token)
    assert.same({ bridged }, room_ids(r.json))
    r = t:request("POST", V3 .. "/publicRooms", { include_all_networks = true }, bob.access_token)
    local both = { public, bridged }
    table.sort(both)
    assert.same(both, room_ids(r.json))
    r = t:request("POST", V3 .. "/publicRooms", { include_all_networks = true, third_party_instance_id = "irc" },
      bob.access_token)
    assert.equal(400, r.status)
    r = t:request("PUT", path, { visibility = "private" }, AS_TOKEN)
    assert.equal(200, r.status)
    r = t:request("POST", V3 .. "/publicRooms", { third_party_instance_id = "irc" }, bob.access_token)
    assert.same({}, room_ids(r.json))
  end)

  it("pings the service", function()
    local r = t:request("POST", "/_matrix/client/v1/appservice/bridge/ping", { transaction_id = "meow" }, AS_TOKEN)
    assert.equal(200, r.status, r.body)
    assert.is_number(r.json.duration_ms)
    assert.same({ "meow" }, fake.pings)
    fake.ping_status = 403
    r = t:request("POST", "/_matrix/client/v1/appservice/bridge/ping", {}, AS_TOKEN)
    assert.equal(502, r.status)
    assert.equal("M_BAD_STATUS", r.json.errcode)
    assert.equal(403, r.json.status)
    r = t:request("POST", "/_matrix/client/v1/appservice/other/ping", {}, AS_TOKEN)
    assert.equal(403, r.status)
    local bob = t:register("bob")
    r = t:request("POST", "/_matrix/client/v1/appservice/bridge/ping", {}, bob.access_token)
    assert.equal(401, r.status)
    assert.equal("M_UNKNOWN_TOKEN", r.json.errcode)
    r = t:request("POST", "/_matrix/client/v1/appservice/bridge/ping", { transaction_id = 5 }, AS_TOKEN)
    assert.equal(400, r.status)
  end)
end)

describe("application service transactions", function()
  it("carry the interesting events in order, exactly once, through the service's downtime and a restart",
    function()
    local fake = fake_service()
    local config = { app_services = { registration(fake.url) }, app_service_retry_ms = 20 }
    local t = tesths.start(config)
    local alice = t:register("alice")
    local room = t:create_room(alice, { preset = "public_chat" })
    local other = t:create_room(alice, { preset = "public_chat" })
    -- the bridge bot joins one room: from then on its events interest the service
    local r = t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/join", {}, AS_TOKEN)
    assert.equal(200, r.status, r.body)
    local sent = {}
    for i = 1, 3 do sent[#sent + 1] = t:send(alice.access_token, room, { msgtype = "m.text", body = "m" .. i })
      .json.event_id end
    t:send(alice.access_token, other, { msgtype = "m.text", body = "elsewhere" })
    assert.is_true(t:wait_until(function() return #fake.events >= 4 end))
    local got = ids(fake.events)
    assert.equal("m.room.member", fake.events[1].type)         -- the bot's own join
    assert.same(sent, { got[2], got[3], got[4] })
    for _, ev in ipairs(fake.events) do assert.equal(room, ev.room_id) end

    -- the service goes down: loom keeps retrying, then stops with events undelivered
    fake.down = true
    local attempts = fake.attempts
    for i = 4, 6 do sent[#sent + 1] = t:send(alice.access_token, room, { msgtype = "m.text", body = "m" .. i })
      .json.event_id end
    assert.is_true(t:wait_until(function() return fake.attempts >= attempts + 3 end))
    assert.equal(4, #fake.events)
    local db = t.db_path
    stop_server(t.server)
    t.hs.store:close()

    -- loom starts again on the same database; the service comes back
    fake.down = false
    config.database = { path = db }
    local t2 = tesths.start(config)
    t2.db_path = db
    t2.txn = 100          -- alice's device keeps its transaction IDs across the restart
    assert.is_true(t2:wait_until(function() return #fake.events >= 7 end))
    got = ids(fake.events)
    assert.same(sent, { got[2], got[3], got[4], got[5], got[6], got[7] })
    -- nothing twice
    local seen = {}
    for _, id in ipairs(got) do
      assert.is_nil(seen[id], "delivered twice: " .. id)
      seen[id] = true
    end
    -- a new event after the restart
    sent[#sent + 1] = t2:send(alice.access_token, room, { msgtype = "m.text", body = "m7" }).json.event_id
    assert.is_true(t2:wait_until(function() return #fake.events >= 8 end))
    assert.equal(sent[7], fake.events[8].event_id)
    t2:stop()
    stop_server(fake.server)
  end)

  it("carry membership events of its users in rooms it is not in (an invite of a bridged user)", function()
    local fake = fake_service()
    local t = tesths.start { app_services = { registration(fake.url) }, app_service_retry_ms = 20 }
    local alice = t:register("alice")
    assert(t:request("POST", V3 .. "/register", { type = "m.login.application_service", username = "_bridge_eve",
      inhibit_login = true }, AS_TOKEN).status == 200)
    local room = t:create_room(alice, {})
    t:send(alice.access_token, room, { msgtype = "m.text", body = "before" })
    local r = t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/invite", { user_id = "@_bridge_eve:test.local" },
      alice.access_token)
    assert.equal(200, r.status, r.body)
    assert.is_true(t:wait_until(function() return #fake.events >= 1 end))
    t:run(function() t:sleep(100) end)
    assert.equal(1, #fake.events)
    assert.equal("m.room.member", fake.events[1].type)
    assert.equal("invite", fake.events[1].content.membership)
    assert.equal("@_bridge_eve:test.local", fake.events[1].state_key)
    t:stop()
    stop_server(fake.server)
  end)
end)

describe("application service transactions with receive_ephemeral", function()
  it("carry typing, receipts, presence and to-device messages of the service's rooms and users", function()
    local fake = fake_service()
    local t = tesths.start { app_services = { registration(fake.url, { receive_ephemeral = true }) },
      app_service_retry_ms = 20 }
    local alice = t:register("alice")
    local carol = t:register("carol")
    local room = t:create_room(alice, { preset = "public_chat" })
    local elsewhere = t:create_room(carol, { preset = "public_chat" })
    local r = t:request("POST", V3 .. "/register", { type = "m.login.application_service", username = "_bridge_frank" },
      AS_TOKEN)
    local frank = r.json
    assert(t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/join?user_id=" .. enc(frank.user_id), {},
      AS_TOKEN).status == 200)
    local msg = t:send(alice.access_token, room, { msgtype = "m.text", body = "hello" }).json.event_id
    assert.is_true(t:wait_until(function() return #fake.events >= 2 end))
    -- typing in its room, not in the other one
    r = t:request("PUT", V3 .. "/rooms/" .. enc(elsewhere) .. "/typing/" .. enc(carol.user_id),
      { typing = true, timeout = 10000 }, carol.access_token)
    assert.equal(200, r.status)
    r = t:request("PUT", V3 .. "/rooms/" .. enc(room) .. "/typing/" .. enc(alice.user_id),
      { typing = true, timeout = 10000 }, alice.access_token)
    assert.equal(200, r.status)
    assert.is_true(t:wait_until(function() return tesths.find_type(fake.ephemeral, "m.typing") ~= nil end))
    local typing = tesths.find_type(fake.ephemeral, "m.typing")
    assert.equal(room, typing.room_id)
    assert.same({ alice.user_id }, typing.content.user_ids)
    -- a receipt; a private one of a user not the service's is not passed on
    r = t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/receipt/m.read.private/" .. enc(msg), {},
      alice.access_token)
    assert.equal(200, r.status, r.body)
    r = t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/receipt/m.read/" .. enc(msg), {}, alice.access_token)
    assert.equal(200, r.status, r.body)
    assert.is_true(t:wait_until(function() return tesths.find_type(fake.ephemeral, "m.receipt") ~= nil end))
    t:run(function() t:sleep(100) end)
    local receipts = {}
    for _, ev in ipairs(fake.ephemeral) do if ev.type == "m.receipt" then receipts[#receipts + 1] = ev end end
    assert.equal(1, #receipts)
    assert.equal(room, receipts[1].room_id)
    assert.is_table(receipts[1].content[msg]["m.read"][alice.user_id])
    assert.is_nil(receipts[1].content[msg]["m.read.private"])
    -- the unstable key carries the same list
    local with = nil
    for _, b in ipairs(fake.bodies) do if b.ephemeral then with = b end end
    assert.same(with.ephemeral, with["de.sorunome.msc2409.ephemeral"])
    -- presence of a user sharing its room
    r = t:request("PUT", V3 .. "/presence/" .. enc(alice.user_id) .. "/status", { presence = "unavailable",
      status_msg = "away" }, alice.access_token)
    assert.equal(200, r.status, r.body)
    assert.is_true(t:wait_until(function() return tesths.find_type(fake.ephemeral, "m.presence") ~= nil end))
    local p = tesths.find_type(fake.ephemeral, "m.presence")
    assert.same({ alice.user_id, "unavailable", "away" }, { p.sender, p.content.presence, p.content.status_msg })
    -- a to-device message for the bridged user's device
    r = t:request("PUT", V3 .. "/sendToDevice/m.test/td1", { messages = { [frank.user_id] = {
      [frank.device_id] = { secret = 42 } } } }, alice.access_token)
    assert.equal(200, r.status, r.body)
    assert.is_true(t:wait_until(function() return #fake.to_device >= 1 end))
    local m = fake.to_device[1]
    assert.same({ "m.test", alice.user_id, frank.user_id, frank.device_id, 42 },
      { m.type, m.sender, m.to_user_id, m.to_device_id, m.content.secret })
    -- delivered: it left the device's inbox
    assert.is_true(t:wait_until(function()
      return #t.hs.store:to_device_messages(frank.user_id, frank.device_id, 0, 10) == 0 end))
    t:stop()
    stop_server(fake.server)
  end)
end)
