-- The room service's hook points: room/event/check before a local event is
-- built or a received one stored, federation/check for another server's
-- events, room/event/persisted once an event is committed — and the same
-- service without a hooks object.
local room_mod = require "loom.room"
local version_mod = require "loom.room.version"
local event_mod = require "loom.room.event"
local crypto = require "loom.room.crypto"
local core = require "loom.core"
local tmp = require "support.tmpdb"
local support_remote = require "support.remote"

local json = core.json
local ALICE, CAROL = "@alice:a.test", "@carol:b.test"

local key_for = support_remote.key

describe("room service hooks", function()
  local path, store, key, hooks, rooms, handlers

  -- A hooks object that records what the room service fires and notifies;
  -- handlers[name](...) answers a fire.
  local function recorder()
    local h = { fired = {}, notified = {} }
    function h.fire(_, name, ...)
      h.fired[#h.fired + 1] = { name = name, args = table.pack(...) }
      local f = handlers[name]
      if f then return f(...) end
    end
    function h.notify(_, name, ...)
      h.notified[#h.notified + 1] = { name = name, args = table.pack(...),
        in_transaction = store.conn:in_transaction() }
    end
    return h
  end

  local function count_events() return store.conn:value("SELECT count(*) FROM events") end

  local function fired(name)
    local out = {}
    for _, f in ipairs(hooks.fired) do if f.name == name then out[#out + 1] = f.args end end
    return out
  end

  local function new_room()
    local room_id = assert(rooms:create_room(ALICE))
    assert(rooms:send(room_id, { type = "m.room.member", state_key = ALICE, sender = ALICE,
      content = { membership = "join" } }))
    assert(rooms:send(room_id, { type = "m.room.join_rules", state_key = "", sender = ALICE,
      content = { join_rule = "public" } }))
    return room_id
  end

  before_each(function()
    store, path = tmp.open_store()
    key = key_for("a.test", 1)
    handlers = {}
    hooks = recorder()
    rooms = room_mod.new(store, { server_name = "a.test", key = key, default_version = "11", hooks = hooks })
  end)

  after_each(function() tmp.close_store(store, path) end)

  it("works without a hooks object", function()
    local plain = room_mod.new(store, { server_name = "a.test", key = key, default_version = "11" })
    local room_id = assert(plain:create_room(ALICE))
    local ev = assert(plain:send(room_id, { type = "m.room.member", state_key = ALICE, sender = ALICE,
      content = { membership = "join" } }))
    assert.equal(ev.event_id, plain:state_event(room_id, "m.room.member", ALICE).event_id)
    assert.equal(0, #hooks.fired)
    assert.equal(0, #hooks.notified)
  end)

  it("fires room/event/check with the event and its context before each local event", function()
    local room_id = assert(rooms:create_room(ALICE, { initial = true, user_id = ALICE, device_id = "D1" }))
    assert(rooms:send(room_id, { type = "m.room.member", state_key = ALICE, sender = ALICE,
      content = { membership = "join" } }))
    assert(rooms:send(room_id, { type = "m.room.message", sender = ALICE, content = { body = "hi" } },
      { user_id = ALICE, device_id = "D1", txn_id = "t1" }))
    local checks = fired("room/event/check")
    assert.equal(3, #checks)
    local create_ev, create_ctx = checks[1][1], checks[1][2]
    assert.equal("m.room.create", create_ev.type)
    assert.equal("", create_ev.state_key)
    assert.equal(ALICE, create_ev.sender)
    assert.equal(room_id, create_ev.room_id)
    assert.same({ origin = "local", room_version = "11", user_id = ALICE, device_id = "D1", initial = true },
      create_ctx)
    -- without opts, the context's user is the sender
    assert.same({ origin = "local", room_version = "11", user_id = ALICE }, checks[2][2])
    local msg, ctx = checks[3][1], checks[3][2]
    assert.same({ type = "m.room.message", sender = ALICE, room_id = room_id, content = { body = "hi" } }, msg)
    assert.same({ origin = "local", room_version = "11", user_id = ALICE, device_id = "D1", txn_id = "t1" }, ctx)
  end)

  it("a veto stores nothing and answers like the auth rules", function()
    local room_id = new_room()
    local before, token = count_events(), store:current_token()
    local notified = #hooks.notified
    handlers["room/event/check"] = function(ev) if ev.content.body == "spam" then return false, "no spam" end end
    local ev, msg, code = rooms:send(room_id, { type = "m.room.message", sender = ALICE, content = { body = "spam" } })
    assert.is_nil(ev)
    assert.equal("no spam", msg)
    assert.equal("forbidden", code)
    assert.equal(before, count_events())
    assert.equal(token, store:current_token())
    assert.equal(notified, #hooks.notified)
    -- an error value from a handler is passed up as it is
    local failure = setmetatable({}, { __name = "an error value" })
    handlers["room/event/check"] = function() return failure end
    ev, msg, code = rooms:send(room_id, { type = "m.room.message", sender = ALICE, content = { body = "x" } })
    assert.is_nil(ev)
    assert.equal(failure, msg)
    assert.equal("hook_error", code)
    assert.equal(before, count_events())
    -- true and nil let the event through
    handlers["room/event/check"] = function() return true end
    assert(rooms:send(room_id, { type = "m.room.message", sender = ALICE, content = { body = "ok" } }))
    handlers["room/event/check"] = function() return nil end
    assert(rooms:send(room_id, { type = "m.room.message", sender = ALICE, content = { body = "ok too" } }))
    assert.equal(before + 2, count_events())
  end)

  it("signs, hashes and stores content a handler rewrote", function()
    local room_id = new_room()
    handlers["room/event/check"] = function(ev)
      ev.content = { body = "[filtered]", msgtype = "m.notice" }
      ev.type = "m.room.other"          -- changes to anything but content are ignored
    end
    local ev = assert(rooms:send(room_id, { type = "m.room.message", sender = ALICE, content = { body = "bad" } }))
    local stored = assert(store:event(ev.event_id))
    assert.equal("m.room.message", stored.type)
    assert.same({ body = "[filtered]", msgtype = "m.notice" }, stored.content)
    local pdu = event_mod.pdu(stored)     -- as sent to other servers
    assert(crypto.check_content_hash(pdu))
    local version = assert(version_mod.get("11"))
    assert(event_mod.verify_signature(version, pdu, "a.test", function(server, key_id)
      if server == "a.test" and key_id == key.key_id then return key.public_key end
    end))
    assert.equal(event_mod.compute_id(version, pdu), ev.event_id)
  end)

  it("refuses content rewritten into something that is not a JSON object", function()
    local room_id = new_room()
    local before = count_events()
    for _, bad in ipairs { "text", json.array { 1, 2 }, { 1, 2 }, 42 } do
      handlers["room/event/check"] = function(ev) ev.content = bad end
      local ev, msg, code = rooms:send(room_id, { type = "m.room.message", sender = ALICE, content = { body = "x" } })
      assert.is_nil(ev)
      assert.equal("bad_event", code)
      assert.equal("content is not an object", msg)
    end
    assert.equal(before, count_events())
  end)

  it("notifies room/event/persisted once per event, after the outermost commit", function()
    local room_id = new_room()
    assert.equal(3, #hooks.notified)
    for _, n in ipairs(hooks.notified) do
      assert.equal("room/event/persisted", n.name)
      assert.is_false(n.in_transaction)
      local ev, ctx = n.args[1], n.args[2]
      local stored, meta = assert(store:event(ev.event_id))
      assert.equal(room_id, ev.room_id)
      assert.equal(stored.type, ev.type)
      assert.equal(stored.sender, ev.sender)
      assert.equal(stored.state_key, ev.state_key)
      assert.same(stored.content, ev.content)
      assert.equal(stored.origin_server_ts, ev.origin_server_ts)
      assert.same({ origin = "local", stream_ordering = meta.stream_ordering }, ctx)
    end
    -- inside a caller's transaction: nothing until it commits; nothing at all
    -- when it rolls back
    local n = #hooks.notified
    assert(store.conn:transaction(function()
      assert(rooms:send(room_id, { type = "m.room.message", sender = ALICE, content = { body = "a" } }))
      assert.equal(n, #hooks.notified)
      return true
    end))
    assert.equal(n + 1, #hooks.notified)
    assert.is_false(hooks.notified[n + 1].in_transaction)
    local ok = store.conn:transaction(function()
      assert(rooms:send(room_id, { type = "m.room.message", sender = ALICE, content = { body = "b" } }))
      return nil, "changed my mind", "test"
    end)
    assert.is_nil(ok)
    assert.equal(n + 1, #hooks.notified)
  end)

  describe("received events", function()
    local other = key_for("b.test", 2)
    local function keys(server, key_id)
      for _, k in ipairs { key, other } do
        if server == k.server_name and key_id == k.key_id then return k.public_key end
      end
    end

    -- An event built by a server (key) against the room as it is now, as it
    -- arrives over the wire.
    local function built(room_id, proto, by)
      proto.room_id = room_id
      local ctx = support_remote.room(store, rooms, room_id)
      return json.decode(json.encode(assert(event_mod.build(assert(version_mod.get("11")), proto, ctx, by))))
    end
    local function remote(room_id, proto) return built(room_id, proto, other) end

    it("fire federation/check and room/event/check; a veto stores the event rejected", function()
      local room_id = new_room()
      local join = remote(room_id, { type = "m.room.member", state_key = CAROL, sender = CAROL,
        content = { membership = "join" } })
      local r = assert(rooms:receive(join, { keys = keys }))
      assert.is_nil(r.rejected)
      local fed = fired("federation/check")
      assert.equal(1, #fed)
      assert.equal("b.test", fed[1][1])
      assert.same({ room_id = room_id, event_id = join.event_id }, fed[1][2])
      local checks = fired("room/event/check")
      local ev, ctx = checks[#checks][1], checks[#checks][2]
      assert.same({ type = "m.room.member", sender = CAROL, room_id = room_id, state_key = CAROL,
        content = { membership = "join" } }, ev)
      assert.same({ origin = "federation", room_version = "11", user_id = CAROL, origin_server = "b.test" }, ctx)
      local last = hooks.notified[#hooks.notified]
      assert.equal(join.event_id, last.args[1].event_id)
      assert.equal("federation", last.args[2].origin)
      assert.equal(r.stream_ordering, last.args[2].stream_ordering)

      -- room/event/check vetoes: stored, but rejected, and nobody is told
      local notified = #hooks.notified
      handlers["room/event/check"] = function(e)
        e.content.body = "changed"      -- changes to a received event are ignored
        if e.type == "m.room.message" then return false, "no messages from b.test" end
      end
      local msg = remote(room_id, { type = "m.room.message", sender = CAROL, content = { body = "hello" } })
      r = assert(rooms:receive(msg, { keys = keys }))
      assert.matches("no messages from b.test", r.rejected)
      local stored, meta = assert(store:event(msg.event_id))
      assert.is_true(meta.rejected and true or false)
      assert.equal("hello", stored.content.body)
      for _, id in ipairs(store:forward_extremities(room_id)) do assert.are_not.equal(msg.event_id, id) end
      assert.equal(notified, #hooks.notified)

      -- federation/check vetoes the server: rejected too
      handlers["room/event/check"] = nil
      handlers["federation/check"] = function(server) if server == "b.test" then return false, "blocked" end end
      local topic = remote(room_id, { type = "m.room.message", sender = CAROL, content = { body = "again" } })
      r = assert(rooms:receive(topic, { keys = keys }))
      assert.matches("blocked", r.rejected)
      assert.equal(notified, #hooks.notified)
    end)

    it("do not fire federation/check for this server's own events", function()
      local room_id = new_room()
      local own = built(room_id, { type = "m.room.message", sender = ALICE, content = { body = "echo" } }, key)
      assert(rooms:receive(own, { keys = keys }))
      assert.equal(0, #fired("federation/check"))
      local checks = fired("room/event/check")
      assert.equal("a.test", checks[#checks][2].origin_server)
    end)
  end)
end)
