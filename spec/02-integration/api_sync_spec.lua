-- /sync, /messages, /context and filters against a real server. Rooms and
-- events are made through hs.rooms directly (not the room endpoints).
local tesths = require "support.hs"
local core = require "loom.core"

local json = core.json
local enc = tesths.enc
local V3 = "/_matrix/client/v3"

local function q(s) return enc(s) end

-- A room created by `creator` (joined, power levels, public join rules,
-- optional history visibility).
local function make_room(t, creator, hv)
  local rooms = t.hs.rooms
  local room_id = assert(rooms:create_room(creator))
  assert(rooms:send(room_id, { type = "m.room.member", state_key = creator, sender = creator,
    content = { membership = "join" } }))
  assert(rooms:send(room_id, { type = "m.room.power_levels", state_key = "", sender = creator,
    content = { users = { [creator] = 100 }, users_default = 0, events_default = 0, state_default = 50,
      invite = 0, kick = 50, ban = 50, redact = 50 } }))
  assert(rooms:send(room_id, { type = "m.room.join_rules", state_key = "", sender = creator,
    content = { join_rule = "public" } }))
  if hv then
    assert(rooms:send(room_id, { type = "m.room.history_visibility", state_key = "", sender = creator,
      content = { history_visibility = hv } }))
  end
  return room_id
end

local function say(t, room_id, sender, body)
  return assert(t.hs.rooms:send(room_id, { type = "m.room.message", sender = sender,
    content = { msgtype = "m.text", body = body } }))
end

local function member(t, room_id, sender, target, membership)
  return assert(t.hs.rooms:send(room_id, { type = "m.room.member", sender = sender, state_key = target,
    content = { membership = membership } }))
end

local function bodies(events)
  local out = {}
  for _, e in ipairs(events) do
    if e.type == "m.room.message" then out[#out + 1] = e.content.body end
  end
  return table.concat(out, ",")
end

local function find_type(events, typ)
  for _, e in ipairs(events) do if e.type == typ then return e end end
end

describe("sync API", function()
  local t, alice, bob
  before_each(function()
    t = tesths.start()
    alice = t:register("alice")
    bob = t:register("bob")
  end)
  after_each(function() t:stop() end)

  describe("filters", function()
    it("creates, reads, refuses others' and bad filters", function()
      local def = { room = { timeline = { limit = 5, types = { "m.room.message" } } }, event_fields = { "type" } }
      local r = t:request("POST", V3 .. "/user/" .. q(alice.user_id) .. "/filter", def, alice.access_token)
      assert.equal(200, r.status)
      local id = r.json.filter_id
      assert.is_string(id)
      assert.not_equal("{", id:sub(1, 1))
      r = t:request("GET", V3 .. "/user/" .. q(alice.user_id) .. "/filter/" .. id, nil, alice.access_token)
      assert.equal(200, r.status)
      assert.equal(5, r.json.room.timeline.limit)
      r = t:request("GET", V3 .. "/user/" .. q(alice.user_id) .. "/filter/999", nil, alice.access_token)
      assert.equal(404, r.status)
      assert.equal("M_NOT_FOUND", r.json.errcode)
      r = t:request("POST", V3 .. "/user/" .. q(alice.user_id) .. "/filter", def, bob.access_token)
      assert.equal(403, r.status)
      r = t:request("GET", V3 .. "/user/" .. q(alice.user_id) .. "/filter/" .. id, nil, bob.access_token)
      assert.equal(403, r.status)       -- as Synapse answers
      assert.equal("M_FORBIDDEN", r.json.errcode)
      r = t:request("POST", V3 .. "/user/" .. q(alice.user_id) .. "/filter",
        { room = { timeline = { limit = "x" } } }, alice.access_token)
      assert.equal(400, r.status)
      r = t:request("POST", V3 .. "/user/" .. q(alice.user_id) .. "/filter",
        { event_fields = { 1 } }, alice.access_token)
      assert.equal(400, r.status)
      -- by ID, inline, unknown, bad JSON
      r = t:request("GET", V3 .. "/sync?filter=" .. id, nil, alice.access_token)
      assert.equal(200, r.status)
      r = t:request("GET", V3 .. "/sync?filter=" .. q('{"room":{"timeline":{"limit":2}}}'), nil, alice.access_token)
      assert.equal(200, r.status)
      r = t:request("GET", V3 .. "/sync?filter=12345", nil, alice.access_token)
      assert.equal(400, r.status)
      assert.equal("M_INVALID_PARAM", r.json.errcode)
      r = t:request("GET", V3 .. "/sync?filter=" .. q("{bad"), nil, alice.access_token)
      assert.equal(400, r.status)
      assert.equal("M_INVALID_PARAM", r.json.errcode)
    end)
  end)

  describe("/sync", function()
    it("initial sync: joined room with state and timeline, limited with prev_batch, invites, leave", function()
      local room = make_room(t, alice.user_id)
      for i = 1, 8 do say(t, room, alice.user_id, "m" .. i) end
      local r = t:request("GET", V3 .. "/sync", nil, alice.access_token)
      assert.equal(200, r.status)
      local jr = r.json.rooms.join[room]
      assert.truthy(jr)
      assert.equal("m1,m2,m3,m4,m5,m6,m7,m8", bodies(jr.timeline.events))
      assert.truthy(find_type(jr.state.events, "m.room.create"))
      assert.is_string(r.json.next_batch)

      local f = q('{"room":{"timeline":{"limit":5}}}')
      r = t:request("GET", V3 .. "/sync?filter=" .. f, nil, alice.access_token)
      jr = r.json.rooms.join[room]
      assert.equal(5, #jr.timeline.events)
      assert.is_true(jr.timeline.limited)
      assert.equal("m4,m5,m6,m7,m8", bodies(jr.timeline.events))
      assert.truthy(find_type(jr.state.events, "m.room.create"))
      assert.truthy(find_type(jr.state.events, "m.room.join_rules"))
      for _, e in ipairs(jr.timeline.events) do
        assert.equal(room, e.room_id)
        assert.is_number(e.unsigned.age)
        assert.is_nil(e.signatures)
      end
      -- prev_batch continues backwards with no gap
      local m = t:request("GET", V3 .. "/rooms/" .. q(room) .. "/messages?dir=b&limit=3&from="
        .. q(jr.timeline.prev_batch), nil, alice.access_token)
      assert.equal(200, m.status)
      assert.equal("m3,m2,m1", bodies(m.json.chunk))

      -- an invite (stripped state with m.room.create) and a left room
      member(t, room, alice.user_id, bob.user_id, "invite")
      r = t:request("GET", V3 .. "/sync", nil, bob.access_token)
      local inv = r.json.rooms.invite[room]
      assert.truthy(inv)
      assert.truthy(find_type(inv.invite_state.events, "m.room.create"))
      assert.truthy(find_type(inv.invite_state.events, "m.room.join_rules"))
      local ie = find_type(inv.invite_state.events, "m.room.member")
      assert.equal("invite", ie.content.membership)
      assert.is_nil(r.json.rooms.join[room])

      local since = r.json.next_batch
      member(t, room, bob.user_id, bob.user_id, "join")
      say(t, room, bob.user_id, "hello")
      member(t, room, bob.user_id, bob.user_id, "leave")
      say(t, room, alice.user_id, "after")
      r = t:request("GET", V3 .. "/sync?since=" .. q(since), nil, bob.access_token)
      local lr = r.json.rooms.leave[room]
      assert.truthy(lr)
      assert.equal("hello", bodies(lr.timeline.events))
      local last = lr.timeline.events[#lr.timeline.events]
      assert.equal("leave", last.content.membership)
      assert.is_nil(r.json.rooms.join[room])
      -- initial sync with include_leave
      r = t:request("GET", V3 .. "/sync?filter=" .. q('{"room":{"include_leave":true}}'), nil, bob.access_token)
      assert.truthy(r.json.rooms.leave[room])
      r = t:request("GET", V3 .. "/sync", nil, bob.access_token)
      assert.is_nil(r.json.rooms.leave[room])
    end)

    it("incremental sync returns only new events in stream order; full_state; bad since", function()
      local room = make_room(t, alice.user_id)
      local other = make_room(t, alice.user_id)
      say(t, room, alice.user_id, "old")
      local r = t:request("GET", V3 .. "/sync", nil, alice.access_token)
      local since = r.json.next_batch
      say(t, room, alice.user_id, "n1")
      say(t, room, alice.user_id, "n2")
      r = t:request("GET", V3 .. "/sync?since=" .. q(since), nil, alice.access_token)
      assert.equal(200, r.status)
      local jr = r.json.rooms.join[room]
      assert.equal("n1,n2", bodies(jr.timeline.events))
      assert.is_false(jr.timeline.limited)
      assert.equal(0, #jr.state.events)
      assert.is_nil(r.json.rooms.join[other])
      -- nothing new: empty
      local r2 = t:request("GET", V3 .. "/sync?since=" .. q(r.json.next_batch), nil, alice.access_token)
      assert.is_nil(next(r2.json.rooms.join))
      -- full_state: every room, with full state
      r2 = t:request("GET", V3 .. "/sync?full_state=true&since=" .. q(r.json.next_batch), nil, alice.access_token)
      assert.truthy(r2.json.rooms.join[other])
      assert.truthy(find_type(r2.json.rooms.join[room].state.events, "m.room.create"))
      for _, bad in ipairs { "xyz", "s1_a_0_0", "t1-1", "s-", "" .. string.rep("9", 30) } do
        r2 = t:request("GET", V3 .. "/sync?since=" .. q(bad), nil, alice.access_token)
        assert.equal(400, r2.status)
        assert.equal("M_INVALID_PARAM", r2.json.errcode)
      end
    end)

    it("a limited incremental timeline carries the state delta; a newly joined room full state", function()
      local room = make_room(t, alice.user_id)
      local r = t:request("GET", V3 .. "/sync", nil, alice.access_token)
      local since = r.json.next_batch
      assert(t.hs.rooms:send(room, { type = "m.room.topic", state_key = "", sender = alice.user_id,
        content = { topic = "T" } }))
      for i = 1, 5 do say(t, room, alice.user_id, "x" .. i) end
      local f = q('{"room":{"timeline":{"limit":2}}}')
      r = t:request("GET", V3 .. "/sync?filter=" .. f .. "&since=" .. q(since), nil, alice.access_token)
      local jr = r.json.rooms.join[room]
      assert.is_true(jr.timeline.limited)
      assert.equal("x4,x5", bodies(jr.timeline.events))
      assert.equal(1, #jr.state.events)
      assert.equal("m.room.topic", jr.state.events[1].type)

      r = t:request("GET", V3 .. "/sync", nil, bob.access_token)
      since = r.json.next_batch
      member(t, room, bob.user_id, bob.user_id, "join")
      r = t:request("GET", V3 .. "/sync?since=" .. q(since), nil, bob.access_token)
      jr = r.json.rooms.join[room]
      assert.truthy(jr)
      assert.truthy(find_type(jr.state.events, "m.room.create"))
      -- recent history up to the limit, as in an initial sync: the topic is in
      -- the timeline or, before its start, in state
      assert.truthy(find_type(jr.state.events, "m.room.topic") or find_type(jr.timeline.events, "m.room.topic"))
    end)

    it("backfilled events never appear in incremental sync", function()
      local room = make_room(t, alice.user_id)
      local r = t:request("GET", V3 .. "/sync", nil, alice.access_token)
      local since = r.json.next_batch
      local create = t.hs.rooms:state_event(room, "m.room.create", "")
      assert(t.hs.store:persist("$backfilled:test.local", { room_id = room, type = "m.room.message",
        sender = "@carol:elsewhere", depth = 2, origin_server_ts = 1, prev_events = json.array { create.event_id },
        content = { body = "bf" } }, { backfilled = true }))
      local other = make_room(t, alice.user_id)
      local since2 = since
      say(t, other, alice.user_id, "new")
      r = t:request("GET", V3 .. "/sync?since=" .. q(since2), nil, alice.access_token)
      assert.equal("new", bodies(r.json.rooms.join[other].timeline.events))
      local jr = r.json.rooms.join[room]
      assert.equal("", jr and bodies(jr.timeline.events) or "")

    end)

    it("long-polls: wakes for the user's rooms only", function()
      local room = make_room(t, alice.user_id)
      local elsewhere = make_room(t, bob.user_id)
      local since = t:request("GET", V3 .. "/sync", nil, alice.access_token).json.next_batch
      local uv = require "luv"
      t:run(function()
        local started = uv.hrtime()
        local h = t:go(function()
          return t:call("GET", V3 .. "/sync?timeout=5000&since=" .. q(since), nil, alice.access_token)
        end)
        t:sleep(50)
        local sent = uv.hrtime()
        say(t, room, alice.user_id, "ping")
        local r = t:await(h)
        local waited = (uv.hrtime() - sent) / 1e6
        assert.equal(200, r.status)
        assert.equal("ping", bodies(r.json.rooms.join[room].timeline.events))
        assert.is_true(waited < 150, "returned " .. waited .. " ms after the send")
        assert.is_true((uv.hrtime() - started) / 1e6 >= 50)

        since = r.json.next_batch
        started = uv.hrtime()
        h = t:go(function()
          return t:call("GET", V3 .. "/sync?timeout=300&since=" .. q(since), nil, alice.access_token)
        end)
        t:sleep(30)
        say(t, elsewhere, bob.user_id, "not for alice")
        r = t:await(h)
        local took = (uv.hrtime() - started) / 1e6
        assert.equal(200, r.status)
        assert.is_nil(next(r.json.rooms.join))
        assert.is_true(took >= 290, "returned after " .. took .. " ms")
      end)
    end)
    it("on shutdown, answers a waiting long-poll at once with a next_batch", function()
      make_room(t, alice.user_id)
      local since = t:request("GET", V3 .. "/sync", nil, alice.access_token).json.next_batch
      local uv = require "luv"
      local stopped_after
      t:run(function()
        local h = t:go(function()
          return t:call("GET", V3 .. "/sync?timeout=30000&since=" .. q(since), nil, alice.access_token)
        end)
        t:sleep(100)
        assert.equal(1, t.hs.notifier.waiting)
        local asked = uv.hrtime()
        t.server:stop(function() stopped_after = (uv.hrtime() - asked) / 1e6 end)
        local r = t:await(h)
        local answered = (uv.hrtime() - asked) / 1e6
        assert.equal(200, r.status)
        assert.is_string(r.json.next_batch)
        assert.equal("close", r.headers.connection)
        assert.is_true(answered < 1000, "answered " .. answered .. " ms after stop")
        while not stopped_after and (uv.hrtime() - asked) / 1e6 < 5000 do t:sleep(10) end
        assert.is_number(stopped_after, "not stopped after 5 s")
        assert.is_true(stopped_after < 1000, "stopped " .. stopped_after .. " ms after stop")
        assert.equal(0, t.hs.notifier.waiting)
      end)
      -- a long-poll after the notifier closed does not wait either
      assert.is_false(t.hs.notifier:wait(alice.user_id, {}, 30000))
    end)

    it("adds unsigned.transaction_id for the sending device only", function()
      local room = make_room(t, alice.user_id)
      local since = t:request("GET", V3 .. "/sync", nil, alice.access_token).json.next_batch
      local ev = say(t, room, alice.user_id, "txn")
      local conn = t.hs.store.conn
      if not conn:value("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'txn_ids'") then
        assert(conn:run([[CREATE TABLE txn_ids (user_id TEXT NOT NULL, device_id TEXT NOT NULL,
          txn_id TEXT NOT NULL, endpoint TEXT NOT NULL, event_id TEXT NOT NULL, created_ts INTEGER NOT NULL)]]))
      end
      assert(conn:run("INSERT INTO txn_ids (user_id, device_id, txn_id, endpoint, event_id, created_ts)"
        .. " VALUES (?, ?, ?, ?, ?, ?)", alice.user_id, alice.device_id, "t1", "send:" .. room .. ":m.room.message",
        ev.event_id, 0))
      local r = t:request("GET", V3 .. "/sync?since=" .. q(since), nil, alice.access_token)
      local e = r.json.rooms.join[room].timeline.events[1]
      assert.equal("t1", e.unsigned.transaction_id)
      local other = assert(t.hs.accounts:login(alice.user_id, alice.password))
      r = t:request("GET", V3 .. "/sync?since=" .. q(since), nil, other.access_token)
      assert.is_nil(r.json.rooms.join[room].timeline.events[1].unsigned.transaction_id)
    end)
  end)

  describe("/messages", function()
    it("pages back with random limits: every visible event once, no end at the start", function()
      local room = make_room(t, alice.user_id)
      for i = 1, 37 do say(t, room, alice.user_id, "m" .. i) end
      math.randomseed(7)
      for _ = 1, 3 do
        local seen, from, pages = {}, nil, 0
        repeat
          local url = V3 .. "/rooms/" .. q(room) .. "/messages?dir=b&limit=" .. math.random(1, 9)
          if from then url = url .. "&from=" .. q(from) end
          local r = t:request("GET", url, nil, alice.access_token)
          assert.equal(200, r.status)
          if from then assert.equal(from, r.json.start) end
          for _, e in ipairs(r.json.chunk) do
            assert.is_nil(seen[e.event_id])
            seen[e.event_id] = true
            seen[#seen + 1] = e
          end
          from = r.json["end"]
          pages = pages + 1
        until not from or pages > 100
        assert.is_nil(from)
        -- create, join, power levels, join rules and 37 messages
        assert.equal(41, #seen)
        assert.equal("m.room.create", seen[#seen].type)
        assert.equal("m37", seen[1].content.body)
      end
      -- forwards from the start
      local r = t:request("GET", V3 .. "/rooms/" .. q(room) .. "/messages?dir=f&limit=5", nil, alice.access_token)
      assert.equal("m.room.create", r.json.chunk[1].type)
      assert.is_string(r.json["end"])
    end)

    it("accepts sync tokens: from prev_batch, to an older next_batch (gap filling)", function()
      local room = make_room(t, alice.user_id)
      say(t, room, alice.user_id, "a1")
      local old = t:request("GET", V3 .. "/sync", nil, alice.access_token).json.next_batch
      for i = 1, 6 do say(t, room, alice.user_id, "g" .. i) end
      local r = t:request("GET", V3 .. "/sync?since=" .. q(old) .. "&filter=" .. q('{"room":{"timeline":{"limit":2}}}'),
        nil, alice.access_token)
      local jr = r.json.rooms.join[room]
      assert.is_true(jr.timeline.limited)
      assert.equal("g5,g6", bodies(jr.timeline.events))
      local m = t:request("GET", V3 .. "/rooms/" .. q(room) .. "/messages?dir=b&limit=50&from="
        .. q(jr.timeline.prev_batch) .. "&to=" .. q(old), nil, alice.access_token)
      assert.equal(200, m.status)
      assert.equal("g4,g3,g2,g1", bodies(m.json.chunk))
      assert.equal(4, #m.json.chunk)
      -- next_batch as from, backwards
      m = t:request("GET", V3 .. "/rooms/" .. q(room) .. "/messages?dir=b&limit=2&from=" .. q(r.json.next_batch),
        nil, alice.access_token)
      assert.equal("g6,g5", bodies(m.json.chunk))
    end)

    it("refuses bad parameters, bad tokens and non-members", function()
      local room = make_room(t, alice.user_id)
      local base = V3 .. "/rooms/" .. q(room) .. "/messages"
      local r = t:request("GET", base, nil, alice.access_token)
      assert.equal(400, r.status)
      assert.equal("M_INVALID_PARAM", r.json.errcode)
      r = t:request("GET", base .. "?dir=x", nil, alice.access_token)
      assert.equal(400, r.status)
      for _, bad in ipairs { "nope", "t0-1", "s01", "s1_2" } do
        r = t:request("GET", base .. "?dir=b&from=" .. q(bad), nil, alice.access_token)
        assert.equal(400, r.status)
        assert.equal("M_INVALID_PARAM", r.json.errcode)
      end
      r = t:request("GET", base .. "?dir=b&filter=" .. q('{"types":"x"}'), nil, alice.access_token)
      assert.equal(400, r.status)
      -- a JSON array is not a filter object, empty or not
      for _, f in ipairs { "[]", "[1]" } do
        r = t:request("GET", base .. "?dir=b&filter=" .. q(f), nil, alice.access_token)
        assert.equal(400, r.status)
        assert.equal("M_INVALID_PARAM", r.json.errcode)
      end
      r = t:request("GET", base .. "?dir=b", nil, bob.access_token)
      assert.equal(403, r.status)
      assert.equal("M_FORBIDDEN", r.json.errcode)
      r = t:request("GET", V3 .. "/rooms/" .. q("!nowhere:test.local") .. "/messages?dir=b", nil, bob.access_token)
      assert.equal(403, r.status)
    end)

    it("applies history visibility per event", function()
      -- joined: a late joiner cannot see earlier messages
      local room = make_room(t, alice.user_id, "joined")
      say(t, room, alice.user_id, "before")
      member(t, room, bob.user_id, bob.user_id, "join")
      say(t, room, alice.user_id, "after")
      local r = t:request("GET", V3 .. "/rooms/" .. q(room) .. "/messages?dir=b&limit=50", nil, bob.access_token)
      assert.equal("after", bodies(r.json.chunk))
      -- shared: they can
      local shared = make_room(t, alice.user_id, "shared")
      say(t, shared, alice.user_id, "before")
      member(t, shared, bob.user_id, bob.user_id, "join")
      say(t, shared, alice.user_id, "after")
      r = t:request("GET", V3 .. "/rooms/" .. q(shared) .. "/messages?dir=b&limit=50", nil, bob.access_token)
      assert.equal("after,before", bodies(r.json.chunk))
      -- world_readable: a non-member reads
      local open = make_room(t, alice.user_id, "world_readable")
      say(t, open, alice.user_id, "public")
      r = t:request("GET", V3 .. "/rooms/" .. q(open) .. "/messages?dir=b&limit=50", nil, bob.access_token)
      assert.equal(200, r.status)
      assert.equal("public", bodies(r.json.chunk))
      -- invited: from the invite on
      local inv = make_room(t, alice.user_id, "invited")
      say(t, inv, alice.user_id, "early")
      member(t, inv, alice.user_id, bob.user_id, "invite")
      say(t, inv, alice.user_id, "invited-time")
      member(t, inv, bob.user_id, bob.user_id, "join")
      say(t, inv, alice.user_id, "joined-time")
      r = t:request("GET", V3 .. "/rooms/" .. q(inv) .. "/messages?dir=b&limit=50", nil, bob.access_token)
      assert.equal("joined-time,invited-time", bodies(r.json.chunk))
      -- the sync timeline of a newly joined "joined" room leaves out the earlier messages
      local carol = t:register("carol")
      local since = t:request("GET", V3 .. "/sync", nil, carol.access_token).json.next_batch
      local room2 = make_room(t, alice.user_id, "joined")
      say(t, room2, alice.user_id, "secret")
      member(t, room2, carol.user_id, carol.user_id, "join")
      r = t:request("GET", V3 .. "/sync?since=" .. q(since), nil, carol.access_token)
      assert.equal("", bodies(r.json.rooms.join[room2].timeline.events))
    end)
  end)

  describe("/context", function()
    it("agrees with /messages, 404 for unknown or invisible events, 403 for non-members", function()
      local room = make_room(t, alice.user_id)
      local ids = {}
      for i = 1, 12 do ids[i] = say(t, room, alice.user_id, "c" .. i).event_id end
      local r = t:request("GET", V3 .. "/rooms/" .. q(room) .. "/context/" .. q(ids[6]) .. "?limit=4", nil,
        alice.access_token)
      assert.equal(200, r.status)
      assert.equal("c6", r.json.event.content.body)
      assert.equal("c5,c4", bodies(r.json.events_before))
      assert.equal("c7,c8", bodies(r.json.events_after))
      assert.truthy(find_type(r.json.state, "m.room.create"))
      local b = t:request("GET", V3 .. "/rooms/" .. q(room) .. "/messages?dir=b&limit=2&from=" .. q(r.json.start),
        nil, alice.access_token)
      assert.equal("c3,c2", bodies(b.json.chunk))
      local f = t:request("GET", V3 .. "/rooms/" .. q(room) .. "/messages?dir=f&limit=2&from=" .. q(r.json["end"]),
        nil, alice.access_token)
      assert.equal("c9,c10", bodies(f.json.chunk))
      -- the filter does not apply to the anchor
      r = t:request("GET", V3 .. "/rooms/" .. q(room) .. "/context/" .. q(ids[6]) .. "?limit=4&filter="
        .. q('{"types":["m.room.topic"]}'), nil, alice.access_token)
      assert.equal("c6", r.json.event.content.body)
      assert.equal(0, #r.json.events_before)
      r = t:request("GET", V3 .. "/rooms/" .. q(room) .. "/context/" .. q("$nope"), nil, alice.access_token)
      assert.equal(404, r.status)
      r = t:request("GET", V3 .. "/rooms/" .. q(room) .. "/context/" .. q(ids[6]), nil, bob.access_token)
      assert.equal(403, r.status)
      -- invisible to a late joiner of a "joined" room
      local priv = make_room(t, alice.user_id, "joined")
      local early = say(t, priv, alice.user_id, "early").event_id
      member(t, priv, bob.user_id, bob.user_id, "join")
      r = t:request("GET", V3 .. "/rooms/" .. q(priv) .. "/context/" .. q(early), nil, bob.access_token)
      assert.equal(404, r.status)
    end)
  end)
end)
