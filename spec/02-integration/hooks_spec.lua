-- The domain hook points on a real homeserver: every veto hook fires with
-- its documented arguments, a veto answers 403 M_FORBIDDEN with the reason
-- and stores nothing, `true` ends the chain, nil passes on, a raising
-- handler fails closed (500, logged with a traceback) and the server keeps
-- serving; room/event/check rewrites are signed and stored; observers
-- (room/event/persisted, sync/response) neither delay nor break requests.
local tesths = require "support.hs"
local remote_room = require("support.remote").room
local async = require "loom.async"
local uv = require "luv"
local crypto = require "loom.room.crypto"
local event_mod = require "loom.room.event"
local version_mod = require "loom.room.version"

local enc = tesths.enc
local V3 = "/_matrix/client/v3"

local function create_room(t, who, body) return t:create_room(who, body or { preset = "public_chat" }) end

local function member(t, room, user_id)
  local ev = t.hs.rooms:state_event(room, "m.room.member", user_id)
  return ev and ev.content.membership
end

-- The message bodies of a room's timeline as `who` reads it.
local function bodies(t, who, room)
  local r = t:request("GET", ("%s/rooms/%s/messages?dir=b&limit=100"):format(V3, enc(room)), nil, who.access_token)
  assert.equal(200, r.status, r.body)
  local out = {}
  for _, e in ipairs(r.json.chunk) do
    if e.type == "m.room.message" then out[#out + 1] = e.content.body end
  end
  return out
end

local function logged(t, ...)
  for _, line in ipairs(t.logs) do
    local all = true
    for _, want in ipairs { ... } do
      if not line:find(want, 1, true) then all = false; break end
    end
    if all then return line end
  end
  return nil
end

-- Let tasks started on the next loop turns (observers) run.
local function settle(t, ms) t:run(function() t:sleep(ms or 30) end) end

-- Each veto hook point: how to set the scene, the request that fires it,
-- whether its action took effect, and the arguments it must be given.
local points = {
  {
    name = "register/check",
    attempt = function(t)
      return t:request("POST", V3 .. "/register", { username = "carol", password = "carol-password",
        device_id = "CDEV", initial_device_display_name = "Carol's phone", auth = { type = "m.login.dummy" } })
    end,
    happened = function(t) return t.hs.accounts:user("@carol:test.local") ~= nil end,
    args = function(_, info)
      assert.same({ user_id = "@carol:test.local", localpart = "carol", kind = "user", device_id = "CDEV",
        initial_device_display_name = "Carol's phone" }, info)
    end,
  },
  {
    name = "login/check",
    attempt = function(t, c)
      return t:request("POST", V3 .. "/login", { type = "m.login.password",
        identifier = { type = "m.id.user", user = "alice" }, password = c.alice.password, device_id = "NEWDEV" })
    end,
    happened = function(t, c)
      return t.hs.store.conn:value("SELECT count(*) FROM access_tokens WHERE user_id = ? AND device_id = ?",
        c.alice.user_id, "NEWDEV") > 0
    end,
    args = function(c, info)
      assert.same({ user_id = c.alice.user_id, device_id = "NEWDEV", type = "m.login.password" }, info)
    end,
  },
  {
    name = "profile/check",
    setup = function(t, c) c.room = create_room(t, c.alice) end,
    attempt = function(t, c)
      return t:request("PUT", ("%s/profile/%s/displayname"):format(V3, enc(c.alice.user_id)),
        { displayname = "Alice A." }, c.alice.access_token)
    end,
    happened = function(t, c)
      local shown = t.hs.rooms:state_event(c.room, "m.room.member", c.alice.user_id).content.displayname
      assert.equal(t.hs.accounts:user(c.alice.user_id).displayname, shown)
      return shown == "Alice A."
    end,
    args = function(c, info)
      assert.same({ user_id = c.alice.user_id, field = "displayname", value = "Alice A." }, info)
    end,
  },
  {
    name = "room/create/check",
    attempt = function(t, c)
      return t:request("POST", V3 .. "/createRoom", { preset = "public_chat", visibility = "public",
        name = "Lobby", topic = "Chat", room_alias_name = "lobby", invite = { c.bob.user_id }, is_direct = false,
        room_version = "11" }, c.alice.access_token)
    end,
    happened = function(t, c)
      local n = t.hs.store.conn:value("SELECT count(*) FROM rooms")
      assert.equal(n > 0, #t.hs.store:rooms_for_user(c.alice.user_id) > 0)
      return n > 0
    end,
    args = function(c, info)
      assert.same({ user_id = c.alice.user_id, room_version = "11", preset = "public_chat", visibility = "public",
        name = "Lobby", topic = "Chat", room_alias_name = "lobby", invite = { c.bob.user_id }, is_direct = false },
        info)
    end,
  },
  {
    name = "room/join/check",
    setup = function(t, c) c.room = create_room(t, c.alice) end,
    attempt = function(t, c) return t:request("POST", V3 .. "/join/" .. enc(c.room), {}, c.bob.access_token) end,
    happened = function(t, c) return member(t, c.room, c.bob.user_id) == "join" end,
    args = function(c, info) assert.same({ user_id = c.bob.user_id, room_id = c.room, invited = false }, info) end,
  },
  {
    name = "room/invite/check",
    setup = function(t, c) c.room = create_room(t, c.alice, { preset = "private_chat" }) end,
    attempt = function(t, c)
      return t:request("POST", ("%s/rooms/%s/invite"):format(V3, enc(c.room)), { user_id = c.bob.user_id },
        c.alice.access_token)
    end,
    happened = function(t, c) return member(t, c.room, c.bob.user_id) == "invite" end,
    args = function(c, info)
      assert.same({ user_id = c.alice.user_id, invitee = c.bob.user_id, room_id = c.room }, info)
    end,
  },
  {
    name = "directory/publish/check",
    label = "directory/publish/check (room directory)",
    setup = function(t, c) c.room = create_room(t, c.alice, { preset = "private_chat" }) end,
    attempt = function(t, c)
      return t:request("PUT", V3 .. "/directory/list/room/" .. enc(c.room), { visibility = "public" },
        c.alice.access_token)
    end,
    happened = function(t, c)
      return t:request("GET", V3 .. "/directory/list/room/" .. enc(c.room)).json.visibility == "public"
    end,
    args = function(c, info)
      assert.same({ user_id = c.alice.user_id, room_id = c.room, visibility = "public" }, info)
    end,
  },
  {
    name = "directory/publish/check",
    label = "directory/publish/check (alias)",
    setup = function(t, c) c.room = create_room(t, c.alice) end,
    attempt = function(t, c)
      return t:request("PUT", V3 .. "/directory/room/" .. enc("#lobby:test.local"), { room_id = c.room },
        c.alice.access_token)
    end,
    happened = function(t)
      return t:request("GET", V3 .. "/directory/room/" .. enc("#lobby:test.local")).status == 200
    end,
    args = function(c, info)
      assert.same({ user_id = c.alice.user_id, room_id = c.room, alias = "#lobby:test.local" }, info)
    end,
  },
  {
    name = "room/event/check",
    setup = function(t, c) c.room = create_room(t, c.alice, { preset = "public_chat", room_version = "11" }) end,
    attempt = function(t, c)
      return t:request("PUT", ("%s/rooms/%s/send/m.room.message/txn1"):format(V3, enc(c.room)),
        { msgtype = "m.text", body = "hello" }, c.alice.access_token)
    end,
    happened = function(t, c) return bodies(t, c.alice, c.room)[1] == "hello" end,
    args = function(c, event, context)
      assert.same({ type = "m.room.message", sender = c.alice.user_id, room_id = c.room,
        content = { msgtype = "m.text", body = "hello" } }, event)
      assert.same({ origin = "local", room_version = "11", user_id = c.alice.user_id,
        device_id = c.alice.device_id, txn_id = "txn1" }, context)
    end,
  },
}

for _, p in ipairs(points) do
  describe("hook " .. (p.label or p.name), function()
    local t, c

    before_each(function()
      t = tesths.start()
      c = { alice = t:register("alice"), bob = t:register("bob") }
      if p.setup then p.setup(t, c) end
    end)

    after_each(function() t:stop() end)

    it("fires with the documented arguments", function()
      local got
      t.server:hook(p.name, function(...) got = table.pack(...) end)
      local r = p.attempt(t, c)
      assert.equal(200, r.status, r.body)
      assert.is_true(p.happened(t, c))
      assert.is_table(got)
      p.args(c, table.unpack(got, 1, got.n))
    end)

    it("a veto answers 403 M_FORBIDDEN with the reason and stores nothing", function()
      t.server:hook(p.name, function() return false, "not on this server" end)
      local r = p.attempt(t, c)
      assert.equal(403, r.status, r.body)
      assert.equal("M_FORBIDDEN", r.json.errcode)
      assert.equal("not on this server", r.json.error)
      assert.is_false(p.happened(t, c))
    end)

    it("true ends the chain: a lower-priority handler is not called", function()
      local lower = false
      t.server:hook(p.name, function() return true end, 10)
      t.server:hook(p.name, function() lower = true; return false, "too late" end, 5)
      local r = p.attempt(t, c)
      assert.equal(200, r.status, r.body)
      assert.is_true(p.happened(t, c))
      assert.is_false(lower)
    end)

    it("nil has no opinion: the next handler is asked and the action goes on", function()
      local calls = {}
      t.server:hook(p.name, function() calls[#calls + 1] = "low" end, -10)
      t.server:hook(p.name, function() calls[#calls + 1] = "high" end, 10)
      local r = p.attempt(t, c)
      assert.equal(200, r.status, r.body)
      assert.is_true(p.happened(t, c))
      assert.same({ "high", "low" }, calls)
    end)

    it("a raising handler fails closed, is logged with a traceback, and the server keeps serving", function()
      t.server:hook(p.name, function() error("policy crashed") end, 0, "policy.lua")
      local r = p.attempt(t, c)
      assert.equal(500, r.status, r.body)
      assert.equal("M_UNKNOWN", r.json.errcode)
      assert.is_nil(r.body:find("policy crashed", 1, true))
      assert.is_false(p.happened(t, c))
      local line = logged(t, "hook " .. p.name .. " (script policy.lua) failed", "policy crashed")
      assert.is_string(line)
      assert.truthy(line:find("stack traceback", 1, true))
      assert.equal(200, t:request("GET", "/_matrix/client/versions").status)
    end)

    it("an error value from a handler is answered as it is", function()
      t.server:hook(p.name, function() return require("loom.http.errors").new("M_LIMIT_EXCEEDED", "slow down") end)
      local r = p.attempt(t, c)
      assert.equal(429, r.status, r.body)
      assert.equal("slow down", r.json.error)
      assert.is_false(p.happened(t, c))
    end)
  end)
end

describe("hooks", function()
  local t, alice, bob

  before_each(function()
    t = tesths.start()
    alice, bob = t:register("alice"), t:register("bob")
  end)

  after_each(function() t:stop() end)

  it("room/join/check says whether the user was invited", function()
    local room = create_room(t, alice, { preset = "private_chat" })
    assert.equal(200, t:request("POST", ("%s/rooms/%s/invite"):format(V3, enc(room)), { user_id = bob.user_id },
      alice.access_token).status)
    local got
    t.server:hook("room/join/check", function(info) got = info end)
    assert.equal(200, t:request("POST", ("%s/rooms/%s/join"):format(V3, enc(room)), {}, bob.access_token).status)
    assert.same({ user_id = bob.user_id, room_id = room, invited = true }, got)
  end)

  it("createRoom's own events pass room/event/check with context.initial", function()
    local seen = {}
    local watch = t.server:hook("room/event/check", function(ev, ctx)
      seen[#seen + 1] = ev.type
      assert.is_true(ctx.initial)
      assert.equal("local", ctx.origin)
      assert.equal(alice.user_id, ctx.user_id)
      assert.equal(alice.device_id, ctx.device_id)
    end)
    create_room(t, alice, { preset = "public_chat", name = "Named", room_version = "11" })
    assert.same({ "m.room.create", "m.room.member", "m.room.power_levels", "m.room.join_rules",
      "m.room.history_visibility", "m.room.guest_access", "m.room.name" }, seen)
    assert.is_true(t.server:unhook("room/event/check", watch))
    -- a veto of one of them refuses the whole room
    local events = t.hs.store.conn:value("SELECT count(*) FROM events")
    t.server:hook("room/event/check", function(ev) if ev.type == "m.room.name" then return false, "no names" end end,
      10)
    local r = t:request("POST", V3 .. "/createRoom", { name = "Other" }, bob.access_token)
    assert.equal(403, r.status)
    assert.equal("no names", r.json.error)
    assert.equal(events, t.hs.store.conn:value("SELECT count(*) FROM events"))
    assert.same({}, t.hs.store:rooms_for_user(bob.user_id))
  end)

  it("room/invite/check and directory/publish/check also guard createRoom's invites, alias and listing", function()
    local rooms = t.hs.store.conn:value("SELECT count(*) FROM rooms")
    for _, case in ipairs {
      { "room/invite/check", { invite = { bob.user_id } } },
      { "directory/publish/check", { room_alias_name = "mine" } },
      { "directory/publish/check", { visibility = "public" } },
    } do
      local fn = t.server:hook(case[1], function() return false, "refused" end)
      local r = t:request("POST", V3 .. "/createRoom", case[2], alice.access_token)
      assert.equal(403, r.status, case[1])
      assert.equal("refused", r.json.error)
      assert.is_true(t.server:unhook(case[1], fn))
    end
    assert.equal(rooms, t.hs.store.conn:value("SELECT count(*) FROM rooms"))
    assert.equal(404, t:request("GET", V3 .. "/directory/room/" .. enc("#mine:test.local")).status)
  end)

  it("a content rewrite is what is signed, hashed and stored", function()
    local room = create_room(t, alice, { room_version = "11" })
    t.server:hook("room/event/check", function(ev)
      if ev.type == "m.room.message" then
        ev.content = { msgtype = "m.notice", body = ev.content.body:gsub("darn", "****") }
      end
    end)
    local r = t:request("PUT", ("%s/rooms/%s/send/m.room.message/t1"):format(V3, enc(room)),
      { msgtype = "m.text", body = "darn it" }, alice.access_token)
    assert.equal(200, r.status, r.body)
    local id = r.json.event_id
    local got = t:request("GET", ("%s/rooms/%s/event/%s"):format(V3, enc(room), enc(id)), nil, alice.access_token)
    assert.same({ msgtype = "m.notice", body = "**** it" }, got.json.content)
    local pdu = event_mod.pdu(assert(t.hs.store:event(id)))
    assert(crypto.check_content_hash(pdu))
    local version = assert(version_mod.get("11"))
    local key = t.hs.key
    assert(event_mod.verify_signature(version, pdu, "test.local", function(server, key_id)
      if server == "test.local" and key_id == key.key_id then return key.public_key end
    end))
    assert.equal(id, event_mod.compute_id(version, pdu))
  end)

  it("content rewritten into something that is not a JSON object is refused with M_BAD_JSON", function()
    local room = create_room(t, alice)
    t.server:hook("room/event/check", function(ev) if ev.type == "m.room.message" then ev.content = "gone" end end)
    local r = t:request("PUT", ("%s/rooms/%s/send/m.room.message/t1"):format(V3, enc(room)),
      { msgtype = "m.text", body = "hi" }, alice.access_token)
    assert.equal(400, r.status)
    assert.equal("M_BAD_JSON", r.json.errcode)
    assert.same({}, bodies(t, alice, room))
  end)

  it("room/event/persisted hears of every event once, after it is readable, createRoom's included", function()
    local heard = {}
    t.server:hook("room/event/persisted", function(ev, ctx)
      local stored, meta = t.hs.store:event(ev.event_id)
      heard[#heard + 1] = { ev = ev, ctx = ctx, stored = stored, meta = meta }
    end)
    local room = create_room(t, alice, { preset = "public_chat", name = "R" })
    assert.equal(200, t:request("POST", V3 .. "/join/" .. enc(room), {}, bob.access_token).status)
    assert.equal(200, t:request("PUT", ("%s/rooms/%s/send/m.room.message/t1"):format(V3, enc(room)),
      { msgtype = "m.text", body = "hi" }, bob.access_token).status)
    settle(t)
    local ids = t.hs.store.conn:column("SELECT event_id FROM events ORDER BY stream_ordering")
    assert.equal(#ids, #heard)
    local once = {}
    for i, h in ipairs(heard) do
      assert.is_nil(once[h.ev.event_id])
      once[h.ev.event_id] = true
      assert.equal(ids[i], h.ev.event_id)
      assert.is_table(h.stored)
      assert.equal(room, h.ev.room_id)
      assert.equal(h.stored.type, h.ev.type)
      assert.equal(h.stored.sender, h.ev.sender)
      assert.equal(h.stored.state_key, h.ev.state_key)
      assert.same(h.stored.content, h.ev.content)
      assert.equal(h.stored.origin_server_ts, h.ev.origin_server_ts)
      assert.same({ origin = "local", stream_ordering = h.meta.stream_ordering }, h.ctx)
    end
    assert.equal("m.room.create", heard[1].ev.type)
    assert.equal("hi", heard[#heard].ev.content.body)
  end)

  it("a raising or sleeping room/event/persisted observer neither delays nor fails the send", function()
    local room = create_room(t, alice)
    local slept, after_raise = false, false
    t.server:hook("room/event/persisted", function() error("observer crashed") end, 10, { name = "spam.lua" })
    t.server:hook("room/event/persisted", function() async.sleep(600); slept = true end, 5)
    -- observers start after the request's work: its response is already made
    local responded, answered_first = false, nil
    t.server:hook("http/response", function(req) if req.method == "PUT" then responded = true end end)
    t.server:hook("room/event/persisted", function() after_raise = true; answered_first = responded end, 0)
    local started = uv.hrtime()
    local r = t:request("PUT", ("%s/rooms/%s/send/m.room.message/t1"):format(V3, enc(room)),
      { msgtype = "m.text", body = "hi" }, alice.access_token)
    local ms = (uv.hrtime() - started) / 1e6
    assert.equal(200, r.status, r.body)
    assert.is_true(ms < 400, ("the send took %.0f ms"):format(ms))
    assert.is_false(slept)
    settle(t, 800)
    assert.is_true(slept)
    assert.is_true(after_raise)
    assert.is_true(answered_first)
    local line = logged(t, "hook room/event/persisted (script spam.lua) failed", "observer crashed")
    assert.is_string(line)
    assert.truthy(line:find("stack traceback", 1, true))
    assert.same({ "hi" }, bodies(t, alice, room))
  end)

  it("a room/event/persisted observer may wait and then send an event of its own", function()
    local room = create_room(t, alice)
    t.server:hook("room/event/persisted", function(ev)
      if ev.type == "m.room.message" and ev.content.body == "!ping" then
        async.sleep(20)
        assert(t.hs.rooms:send(ev.room_id, { type = "m.room.message", sender = alice.user_id,
          content = { msgtype = "m.notice", body = "pong" } }))
      end
    end)
    assert.equal(200, t:request("POST", V3 .. "/join/" .. enc(room), {}, bob.access_token).status)
    assert.equal(200, t:request("PUT", ("%s/rooms/%s/send/m.room.message/t1"):format(V3, enc(room)),
      { msgtype = "m.text", body = "!ping" }, bob.access_token).status)
    settle(t, 150)
    assert.same({ "pong", "!ping" }, bodies(t, alice, room))
  end)

  it("received events: a raising room/event/check or a federation/check veto rejects them", function()
    local room = create_room(t, alice, { preset = "public_chat", room_version = "11" })
    local remote = crypto.signing_key(string.rep("r", 32), "ed25519:r", "remote.test")
    local function keys(server, key_id)
      if server == "remote.test" and key_id == remote.key_id then return remote.public_key end
    end
    local function from_remote(proto)
      proto.room_id = room
      local ev = assert(event_mod.build(assert(version_mod.get("11")), proto,
        remote_room(t.hs.store, t.hs.rooms, room), remote))
      return event_mod.pdu(ev)
    end
    local carol = "@carol:remote.test"
    local join = from_remote { type = "m.room.member", state_key = carol, sender = carol,
      content = { membership = "join" } }
    local fn = t.server:hook("room/event/check", function(_, ctx)
      if ctx.origin == "federation" then error("checker crashed") end
    end, 0, "checker.lua")
    local r = assert(t.hs.rooms:receive(join, { keys = keys }))
    assert.matches("M_UNKNOWN", r.rejected)
    assert.is_nil(member(t, room, carol))
    assert.is_string(logged(t, "hook room/event/check (script checker.lua) failed", "checker crashed",
      "stack traceback"))
    t.server:unhook("room/event/check", fn)
    t.server:hook("federation/check", function(server_name, ctx)
      assert.equal(room, ctx.room_id)
      if server_name == "remote.test" then return false, "remote.test is blocked" end
    end)
    join = from_remote { type = "m.room.member", state_key = carol, sender = carol,
      content = { membership = "join", displayname = "Carol" } }
    r = assert(t.hs.rooms:receive(join, { keys = keys }))
    assert.matches("remote.test is blocked", r.rejected)
    assert.is_nil(member(t, room, carol))
  end)

  it("sync/response observers see the answer and its context, and cannot change it", function()
    local room = create_room(t, alice)
    local seen = {}
    t.server:hook("sync/response", function(resp, ctx)
      seen[#seen + 1] = { resp = resp, ctx = ctx }
      resp.next_batch = "tampered"
    end)
    t.server:hook("sync/response", function() error("sync observer crashed") end, -1)
    local r = t:request("GET", V3 .. "/sync", nil, alice.access_token)
    assert.equal(200, r.status, r.body)
    assert.are_not.equal("tampered", r.json.next_batch)
    assert.equal(1, #seen)
    assert.is_table(seen[1].resp.rooms.join[room])
    assert.same({ user_id = alice.user_id, device_id = alice.device_id, next_batch = r.json.next_batch,
      full_state = false }, seen[1].ctx)
    assert.is_string(logged(t, "hook sync/response failed", "sync observer crashed", "stack traceback"))
    local since = r.json.next_batch
    r = t:request("GET", V3 .. "/sync?timeout=0&full_state=true&since=" .. enc(since), nil, alice.access_token)
    assert.equal(200, r.status)
    assert.same({ user_id = alice.user_id, device_id = alice.device_id, since = since,
      next_batch = r.json.next_batch, full_state = true }, seen[2].ctx)
    -- errors are not observed
    r = t:request("GET", V3 .. "/sync?since=bogus", nil, alice.access_token)
    assert.equal(400, r.status)
    assert.equal(2, #seen)
  end)
end)
