-- The push gateway sender against a push gateway that the spec runs on
-- 127.0.0.1 (Push Gateway API, POST /_matrix/push/v1/notify), and the
-- counts a notification leaves: unread_notifications and
-- unread_thread_notifications in /sync, cleared by (threaded) read
-- receipts, and GET /notifications (Client-Server API, Push Notifications
-- module, "Receiving notifications"; "Threaded read receipts").
local tesths = require "support.hs"
local gateway = require "support.push_gateway"
local core = require "loom.core"

local json = core.json
local enc = tesths.enc
local V3 = "/_matrix/client/v3"

describe("push gateway", function()
  local t
  setup(function()
    t = tesths.start { push = { allow_ips = { "127.0.0.1/32" }, retry_base_ms = 40, retry_max_ms = 400 } }
  end)
  teardown(function() t:stop() end)

  local function set_pusher(u, url, pushkey, data)
    data = data or {}
    data.url = url
    local r = t:request("POST", V3 .. "/pushers/set", { kind = "http", app_id = "org.example.app",
      app_display_name = "Example", device_display_name = "Phone", pushkey = pushkey, lang = "en", data = data },
      u.access_token)
    assert.equal(200, r.status, r.body)
  end
  local function named(prefix, name)
    local u = t:fresh(prefix)
    assert.equal(200, t:request("PUT", V3 .. "/profile/" .. enc(u.user_id) .. "/displayname", { displayname = name },
      u.access_token).status)
    return u
  end
  -- a room of three (alice creates it, named; bob and carol join)
  local function trio()
    local alice, bob, carol = named("a", "Alice"), named("b", "Bob"), named("c", "Carol")
    local room = t:create_room(alice, { preset = "public_chat", name = "Pushy" })
    t:join(bob, room)
    t:join(carol, room)
    return alice, bob, carol, room
  end
  local function send(u, room, content, etype)
    local r = t:send(u.access_token, room, content, etype)
    assert.equal(200, r.status, r.body)
    return r.json.event_id
  end
  -- turn the loop until pred() holds (or ms pass); returns pred()
  local function wait_for(pred, ms)
    ms = ms or 3000
    return t:run(function()
      local waited = 0
      while not pred() and waited < ms do t:sleep(20); waited = waited + 20 end
      return pred()
    end, ms + 5000)
  end
  local function mention(u, text)
    return { msgtype = "m.text", body = text, ["m.mentions"] = { user_ids = json.array { u.user_id } } }
  end
  local function pushers_of(u)
    return t:request("GET", V3 .. "/pushers", nil, u.access_token).json.pushers
  end

  it("POSTs a mention to the gateway with the notification, counts, device and highlight tweak", function()
    local gw = gateway.start()
    finally(function() gw:stop() end)
    local alice, bob, _, room = trio()
    set_pusher(bob, gw.url, "bob-key", { extra = "kept" })
    local before = os.time()
    local content = mention(bob, "hello Bob")
    local event_id = send(alice, room, content)
    assert.is_true(wait_for(function() return #gw.received >= 1 end))
    assert.equal("POST /_matrix/push/v1/notify", gw.paths[1])
    local n = gw.received[1].notification
    assert.equal(event_id, n.event_id)
    assert.equal(room, n.room_id)
    assert.equal("m.room.message", n.type)
    assert.equal(alice.user_id, n.sender)
    assert.equal("Alice", n.sender_display_name)
    assert.equal("Pushy", n.room_name)
    assert.equal("hello Bob", n.content.body)
    assert.same({ bob.user_id }, n.content["m.mentions"].user_ids)
    assert.equal("high", n.prio)
    assert.same({ unread = 1 }, n.counts)
    assert.equal(1, #n.devices)
    local d = n.devices[1]
    assert.equal("org.example.app", d.app_id)
    assert.equal("bob-key", d.pushkey)
    assert.same({ extra = "kept" }, d.data)                   -- without the url
    assert.is_true(d.pushkey_ts >= before - 1 and d.pushkey_ts <= os.time() + 1)  -- seconds
    assert.same({ highlight = true, sound = "default" }, d.tweaks)
    -- nobody else had a pusher; alice's own message is not pushed to her
    assert.equal(1, #gw.received)
  end)

  it("a plain message in a group room: low priority, no tweaks; event_id_only sends only the IDs", function()
    local gw = gateway.start()
    finally(function() gw:stop() end)
    local alice, bob, carol, room = trio()
    set_pusher(bob, gw.url, "bob-full")
    set_pusher(carol, gw.url, "carol-ids", { format = "event_id_only" })
    local event_id = send(alice, room, { msgtype = "m.text", body = "just chatting" })
    assert.is_true(wait_for(function() return #gw.received >= 2 end))
    local by = {}
    for _, b in ipairs(gw.received) do by[b.notification.devices[1].pushkey] = b.notification end
    local full, ids = by["bob-full"], by["carol-ids"]
    assert.equal("low", full.prio)
    assert.same({}, full.devices[1].tweaks)
    assert.equal("just chatting", full.content.body)
    local keys = {}
    for k in pairs(ids) do keys[#keys + 1] = k end
    table.sort(keys)
    assert.same({ "counts", "devices", "event_id", "prio", "room_id" }, keys)
    assert.equal(event_id, ids.event_id)
    assert.equal(room, ids.room_id)
    assert.same({ unread = 1 }, ids.counts)
    assert.same({ format = "event_id_only" }, ids.devices[1].data)
    assert.is_nil(ids.devices[1].tweaks)
  end)

  it("sends the new badge count alone after a read receipt lowers it", function()
    local gw = gateway.start()
    finally(function() gw:stop() end)
    local alice, bob, _, room = trio()
    set_pusher(bob, gw.url, "badge-key", { extra = 1 })
    local e1 = send(alice, room, mention(bob, "look"))
    assert.is_true(wait_for(function() return #gw.received >= 1 end))
    assert.same({ unread = 1 }, gw.received[1].notification.counts)
    local function read(event_id)
      assert.equal(200, t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/receipt/m.read/" .. enc(event_id), {},
        bob.access_token).status)
    end
    read(e1)
    assert.is_true(wait_for(function() return #gw.received >= 2 end))
    local n = gw.received[2].notification
    assert.same({ unread = 0 }, n.counts)
    assert.is_nil(n.event_id)
    assert.equal("badge-key", n.devices[1].pushkey)
    assert.same({ extra = 1 }, n.devices[1].data)
    -- a receipt that leaves the count as it was sends nothing
    read(send(bob, room, { msgtype = "m.text", body = "me" }))
    assert.is_false(wait_for(function() return #gw.received > 2 end, 200))
  end)

  it("removes the pusher whose pushkey the gateway rejects", function()
    local gw = gateway.start()
    finally(function() gw:stop() end)
    local alice, bob, _, room = trio()
    set_pusher(bob, gw.url, "stale-key")
    set_pusher(bob, gw.url, "good-key")
    gw.reject["stale-key"] = true
    send(alice, room, mention(bob, "one"))
    assert.is_true(wait_for(function() return #gw.received >= 2 end))
    assert.is_true(wait_for(function() return #pushers_of(bob) == 1 end, 1000))
    assert.equal("good-key", pushers_of(bob)[1].pushkey)
    send(alice, room, mention(bob, "two"))
    assert.is_true(wait_for(function() return #gw.received >= 3 end))
    assert.is_false(wait_for(function() return #gw.received > 3 end, 200))
    assert.equal("good-key", gw.received[3].notification.devices[1].pushkey)
  end)

  it("retries a gateway that is down and delivers, in order, once it is back", function()
    local probe = gateway.start()
    local port, url = probe.port, probe.url
    probe:stop()
    wait_for(function() return false end, 100)       -- the listener closes
    local alice, bob, _, room = trio()
    set_pusher(bob, url, "patient")
    local e1 = send(alice, room, mention(bob, "first"))
    local e2 = send(alice, room, mention(bob, "second"))
    wait_for(function() return false end, 300)       -- several failed tries meanwhile
    assert.is_not_nil(t:logged("push to " .. bob.user_id:gsub("%p", "%%%0") .. " .* failed"))
    local gw = gateway.start(port)
    finally(function() gw:stop() end)
    assert.is_true(wait_for(function() return #gw.received >= 2 end, 5000))
    assert.equal(e1, gw.received[1].notification.event_id)
    assert.equal(e2, gw.received[2].notification.event_id)
    assert.is_false(wait_for(function() return #gw.received > 2 end, 200))
  end)

  it("sends after a restart what a gateway that was down did not get, and nothing twice", function()
    local saved, config = t, { log_level = "info",
      push = { allow_ips = { "127.0.0.1/32" }, retry_base_ms = 40, retry_max_ms = 400 } }
    t = tesths.start(config)
    local first, gw2 = t, nil
    finally(function()
      if gw2 then gw2:stop() end
      t:stop(); t = saved
    end)
    local gw = gateway.start()
    local port = gw.port
    local alice, bob, _, room = trio()
    set_pusher(bob, gw.url, "durable")
    local e0 = send(alice, room, mention(bob, "delivered"))
    assert.is_true(wait_for(function() return #gw.received >= 1 end))
    assert.equal(e0, gw.received[1].notification.event_id)
    gw:stop()
    wait_for(function() return false end, 100)       -- the listener closes
    local e1 = send(alice, room, mention(bob, "first"))
    local e2 = send(alice, room, mention(bob, "second"))
    wait_for(function() return false end, 300)       -- failed tries meanwhile
    assert.is_not_nil(t:logged("push to " .. bob.user_id:gsub("%p", "%%%0") .. " .* failed"))
    -- loom stops with both undelivered, and starts again on the same database
    local stopped = false
    first.server:stop(function() stopped = true end)
    assert.is_true(wait_for(function() return stopped end))
    first.hs.store:close()
    config.database = { path = first.db_path }
    t = tesths.start(config)
    t.db_path = first.db_path
    gw2 = gateway.start(port)
    assert.is_true(wait_for(function() return #gw2.received >= 2 end, 5000))
    assert.equal(e1, gw2.received[1].notification.event_id)
    assert.equal(e2, gw2.received[2].notification.event_id)
    assert.equal("first", gw2.received[1].notification.content.body)
    assert.same({ highlight = true, sound = "default" }, gw2.received[1].notification.devices[1].tweaks)
    assert.is_false(wait_for(function() return #gw2.received > 2 end, 300))
    assert.is_not_nil(t:logged("2 notifications not sent before the restart"))
  end)

  it("never reaches a loopback gateway unless push.allow_ips lets it", function()
    local other = tesths.start()
    finally(function() other:stop() end)
    local gw = gateway.start()
    finally(function() gw:stop() end)
    local a, b = other:register("guard_a"), other:register("guard_b")
    local room = other:create_room(a, { preset = "public_chat" })
    other:join(b, room)
    assert.equal(200, other:request("POST", V3 .. "/pushers/set", { kind = "http", app_id = "x", app_display_name = "X",
      device_display_name = "D", pushkey = "k", lang = "en", data = { url = gw.url } }, b.access_token).status)
    local r = other:send(a.access_token, room, { msgtype = "m.text", body = "hi" })
    assert.equal(200, r.status)
    local seen = other:run(function()
      for _ = 1, 15 do other:sleep(20) end
      return #gw.received
    end)
    assert.equal(0, seen)
    assert.is_not_nil(other:logged("refused address"))
  end)

  it("counts unread notifications in /sync and clears them with a read receipt; lists them", function()
    local alice, bob, _, room = trio()
    local e1 = send(alice, room, { msgtype = "m.text", body = "plain" })
    local e2 = send(alice, room, mention(bob, "hey Bob"))
    local sec = t:sync(bob).rooms.join[room]
    assert.same({ notification_count = 2, highlight_count = 1 }, sec.unread_notifications)
    -- GET /notifications: newest first, with the actions and the event
    local r = t:request("GET", V3 .. "/notifications", nil, bob.access_token)
    assert.equal(200, r.status, r.body)
    local list = r.json.notifications
    assert.equal(2, #list)
    assert.equal(e2, list[1].event.event_id)
    assert.equal(e1, list[2].event.event_id)
    assert.equal(room, list[1].room_id)
    assert.equal("hey Bob", list[1].event.content.body)
    assert.is_false(list[1].read)
    assert.equal("number", type(list[1].ts))
    local has_highlight = false
    for _, a in ipairs(list[1].actions) do
      if type(a) == "table" and a.set_tweak == "highlight" then has_highlight = true end
    end
    assert.is_true(has_highlight)
    assert.same({ "notify" }, list[2].actions)
    -- only=highlight, limit and from
    r = t:request("GET", V3 .. "/notifications?only=highlight", nil, bob.access_token)
    assert.equal(1, #r.json.notifications)
    assert.equal(e2, r.json.notifications[1].event.event_id)
    r = t:request("GET", V3 .. "/notifications?limit=1", nil, bob.access_token)
    assert.equal(1, #r.json.notifications)
    assert.equal(e2, r.json.notifications[1].event.event_id)
    local r2 = t:request("GET", V3 .. "/notifications?limit=1&from=" .. enc(r.json.next_token), nil, bob.access_token)
    assert.equal(e1, r2.json.notifications[1].event.event_id)
    assert.equal(400, t:request("GET", V3 .. "/notifications?from=abc", nil, bob.access_token).status)
    assert.equal("M_INVALID_PARAM",
      t:request("GET", V3 .. "/notifications?limit=-1", nil, bob.access_token).json.errcode)
    -- a read receipt at the first event clears it; then the second
    assert.equal(200, t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/receipt/m.read/" .. enc(e1), {},
      bob.access_token).status)
    sec = t:sync(bob).rooms.join[room]
    assert.same({ notification_count = 1, highlight_count = 1 }, sec.unread_notifications)
    r = t:request("GET", V3 .. "/notifications", nil, bob.access_token)
    assert.is_false(r.json.notifications[1].read)
    assert.is_true(r.json.notifications[2].read)
    assert.equal(200, t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/receipt/m.read.private/" .. enc(e2), {},
      bob.access_token).status)
    sec = t:sync(bob).rooms.join[room]
    assert.same({ notification_count = 0, highlight_count = 0 }, sec.unread_notifications)
  end)

  it("counts per thread with unread_thread_notifications, cleared by threaded and unthreaded receipts", function()
    local alice, bob, _, room = trio()
    local root = send(alice, room, { msgtype = "m.text", body = "root" })
    local function in_thread(text)
      return send(alice, room, { msgtype = "m.text", body = text,
        ["m.relates_to"] = { rel_type = "m.thread", event_id = root } })
    end
    local t1 = in_thread("reply 1")
    in_thread("reply 2")
    local t3 = in_thread("reply 3")
    local main2 = send(alice, room, mention(bob, "main Bob"))
    local filter = json.encode { room = { timeline = { unread_thread_notifications = true } } }
    local function counts(n, h) return { notification_count = n, highlight_count = h } end
    local sec = t:sync(bob, nil, filter).rooms.join[room]
    assert.same(counts(2, 1), sec.unread_notifications)               -- root and main2
    assert.same({ [root] = counts(3, 0) }, sec.unread_thread_notifications)
    -- the same through an uploaded filter
    local fr = t:request("POST", V3 .. "/user/" .. enc(bob.user_id) .. "/filter",
      { room = { timeline = { unread_thread_notifications = true } } }, bob.access_token)
    assert.equal(200, fr.status, fr.body)
    sec = t:sync(bob, nil, fr.json.filter_id).rooms.join[room]
    assert.same({ [root] = counts(3, 0) }, sec.unread_thread_notifications)
    -- without the flag: everything in unread_notifications
    sec = t:sync(bob).rooms.join[room]
    assert.same(counts(5, 1), sec.unread_notifications)
    assert.is_nil(sec.unread_thread_notifications)
    local function receipt(event_id, thread_id)
      local r = t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/receipt/m.read/" .. enc(event_id),
        { thread_id = thread_id }, bob.access_token)
      assert.equal(200, r.status, r.body)
    end
    -- a receipt in the thread clears the thread up to it, not the main timeline
    receipt(t1, root)
    sec = t:sync(bob, nil, filter).rooms.join[room]
    assert.same(counts(2, 1), sec.unread_notifications)
    assert.same({ [root] = counts(2, 0) }, sec.unread_thread_notifications)
    assert.same(counts(4, 1), t:sync(bob).rooms.join[room].unread_notifications)
    -- a "main" receipt at the last event clears the main timeline only
    receipt(main2, "main")
    sec = t:sync(bob, nil, filter).rooms.join[room]
    assert.same(counts(0, 0), sec.unread_notifications)
    assert.same({ [root] = counts(2, 0) }, sec.unread_thread_notifications)
    receipt(t3, root)
    sec = t:sync(bob, nil, filter).rooms.join[room]
    assert.same({}, sec.unread_thread_notifications)
    -- an unthreaded receipt clears every thread up to it
    local t4 = in_thread("reply 4")
    local m3 = send(alice, room, { msgtype = "m.text", body = "main again" })
    sec = t:sync(bob, nil, filter).rooms.join[room]
    assert.same(counts(1, 0), sec.unread_notifications)
    assert.same({ [root] = counts(1, 0) }, sec.unread_thread_notifications)
    receipt(m3)
    sec = t:sync(bob, nil, filter).rooms.join[room]
    assert.same(counts(0, 0), sec.unread_notifications)
    assert.same({}, sec.unread_thread_notifications)
    assert.truthy(t4)
  end)

  it("puts an event related to a threaded event in its thread; a threaded receipt must name the event's thread",
    function()
    local alice, bob, _, room = trio()
    local root = send(alice, room, { msgtype = "m.text", body = "root" })
    local reply = send(alice, room, { msgtype = "m.text", body = "in the thread",
      ["m.relates_to"] = { rel_type = "m.thread", event_id = root } })
    -- a message referencing the threaded reply, and one referencing that one (two hops)
    local ref1 = send(alice, room, { msgtype = "m.text", body = "about the reply",
      ["m.relates_to"] = { rel_type = "m.reference", event_id = reply } })
    local ref2 = send(alice, room, { msgtype = "m.text", body = "about that",
      ["m.relates_to"] = { rel_type = "m.reference", event_id = ref1 } })
    -- a message referencing the root stays in the main timeline
    local on_root = send(alice, room, { msgtype = "m.text", body = "about the root",
      ["m.relates_to"] = { rel_type = "m.reference", event_id = root } })
    local reaction = send(alice, room, { ["m.relates_to"] = { rel_type = "m.annotation", event_id = reply,
      key = "+1" } }, "m.reaction")
    local filter = json.encode { room = { timeline = { unread_thread_notifications = true } } }
    local function counts(n, h) return { notification_count = n, highlight_count = h } end
    local sec = t:sync(bob, nil, filter).rooms.join[room]
    assert.same(counts(2, 0), sec.unread_notifications)                  -- root, on_root
    assert.same({ [root] = counts(3, 0) }, sec.unread_thread_notifications) -- reply, ref1, ref2
    local function receipt(event_id, thread_id)
      return t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/receipt/m.read/" .. enc(event_id),
        { thread_id = thread_id }, bob.access_token)
    end
    -- the wrong thread: 400 M_INVALID_PARAM, and nothing moves
    for _, case in ipairs { { reply, "main" }, { ref2, "main" }, { root, root }, { on_root, root },
        { reaction, "main" } } do
      local r = receipt(case[1], case[2])
      assert.equal(400, r.status, r.body)
      assert.equal("M_INVALID_PARAM", r.json.errcode)
    end
    sec = t:sync(bob, nil, filter).rooms.join[room]
    assert.same(counts(2, 0), sec.unread_notifications)
    assert.same({ [root] = counts(3, 0) }, sec.unread_thread_notifications)
    -- the right ones
    assert.equal(200, receipt(reaction, root).status)
    assert.equal(200, receipt(on_root, "main").status)
    sec = t:sync(bob, nil, filter).rooms.join[room]
    assert.same(counts(0, 0), sec.unread_notifications)
    assert.same({}, sec.unread_thread_notifications)
    assert.truthy(ref2)
  end)
end)
