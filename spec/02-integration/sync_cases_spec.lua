-- /sync, /messages and /event in the cases clients trip over: the top-level
-- `redacts` of v11 redactions, events and filters the user may not see, IDs
-- and limits in filters.
local tesths = require "support.hs"

local enc = tesths.enc
local V3 = "/_matrix/client/v3"

describe("sync cases", function()
  local t, alice, bob
  before_each(function()
    t = tesths.start()
    alice, bob = t:register("alice"), t:register("bob")
  end)
  after_each(function() t:stop() end)

  local function find(events, id)
    for _, e in ipairs(events) do if e.event_id == id then return e end end
  end

  local function redact(who, room, target, txn)
    local r = t:request("PUT", ("%s/rooms/%s/redact/%s/%s"):format(V3, enc(room), enc(target), txn),
      { reason = "spam" }, who.access_token)
    assert.equal(200, r.status)
    return r.json.event_id
  end

  describe("redactions in room v11", function()
    it("carry redacts at the top level as well as in content: /sync, /messages, /event", function()
      local room = t:create_room(alice, { room_version = "11" })
      local msg = t:send(alice.access_token, room, { msgtype = "m.text", body = "one" }).json.event_id
      local r = t:request("GET", V3 .. "/sync", nil, alice.access_token)
      assert.equal(200, r.status)
      local since = r.json.next_batch
      local red = redact(alice, room, msg, "r1")
      local function check(ev)
        assert.is_table(ev)
        assert.equal("m.room.redaction", ev.type)
        assert.equal(msg, ev.redacts)
        assert.equal(msg, ev.content.redacts)
      end
      -- initial sync
      r = t:request("GET", V3 .. "/sync", nil, alice.access_token)
      check(find(r.json.rooms.join[room].timeline.events, red))
      -- incremental sync
      r = t:request("GET", V3 .. "/sync?since=" .. enc(since), nil, alice.access_token)
      check(find(r.json.rooms.join[room].timeline.events, red))
      -- /messages
      r = t:request("GET", V3 .. "/rooms/" .. enc(room) .. "/messages?dir=b&limit=5", nil, alice.access_token)
      check(find(r.json.chunk, red))
      -- /event
      r = t:request("GET", V3 .. "/rooms/" .. enc(room) .. "/event/" .. enc(red), nil, alice.access_token)
      assert.equal(200, r.status)
      check(r.json)
      -- the redacted event's redacted_because too
      r = t:request("GET", V3 .. "/rooms/" .. enc(room) .. "/event/" .. enc(msg), nil, alice.access_token)
      assert.equal(msg, r.json.unsigned.redacted_because.redacts)
    end)
  end)

  describe("what the user may not see is not found", function()
    it("an event the user may not see is 404 M_NOT_FOUND, the same as an unknown event", function()
      local room = t:create_room(alice, { preset = "private_chat" })
      local msg = t:send(alice.access_token, room, { msgtype = "m.text", body = "secret" }).json.event_id
      local r = t:request("GET", V3 .. "/rooms/" .. enc(room) .. "/event/" .. enc(msg), nil, bob.access_token)
      assert.equal(404, r.status)
      assert.equal("M_NOT_FOUND", r.json.errcode)
      local unknown = t:request("GET", V3 .. "/rooms/" .. enc(room) .. "/event/" .. enc("$nope"), nil,
        bob.access_token)
      assert.equal(404, unknown.status)
      assert.equal("M_NOT_FOUND", unknown.json.errcode)
      assert.equal(unknown.json.error, r.json.error)
    end)

    it("another user's filter is 403 M_FORBIDDEN, as in Synapse (the spec is silent)", function()
      local r = t:request("POST", V3 .. "/user/" .. enc(alice.user_id) .. "/filter", { room = {} }, alice.access_token)
      assert.equal(200, r.status)
      local id = r.json.filter_id
      r = t:request("GET", V3 .. "/user/" .. enc(alice.user_id) .. "/filter/" .. id, nil, bob.access_token)
      assert.equal(403, r.status)
      assert.equal("M_FORBIDDEN", r.json.errcode)
      -- through one's own user ID, someone else's filter ID is unknown
      r = t:request("GET", V3 .. "/user/" .. enc(bob.user_id) .. "/filter/" .. id, nil, bob.access_token)
      assert.equal(404, r.status)
      assert.equal("M_NOT_FOUND", r.json.errcode)
    end)
  end)

  describe("filters", function()
    local bad = {
      { room = { rooms = { "not-a-room" } } },
      { room = { not_rooms = { "#alias:server" } } },
      { room = { timeline = { rooms = { "!nocolon:" } } } },
      { room = { timeline = { not_rooms = { "" } } } },
      { room = { state = { senders = { "alice" } } } },
      { room = { timeline = { not_senders = { "@:server" } } } },
      { presence = { senders = { "@alice" } } },
    }

    it("refuse room and user IDs that are not IDs: 400 M_BAD_JSON on upload", function()
      for _, def in ipairs(bad) do
        local r = t:request("POST", V3 .. "/user/" .. enc(alice.user_id) .. "/filter", def, alice.access_token)
        assert.equal(400, r.status)
        assert.equal("M_BAD_JSON", r.json.errcode)
      end
      local good = { room = { rooms = { "!a:example.org", "!AbC-d_9" }, timeline = { senders = { "@a:b.c" },
        not_rooms = { "!x:localhost:8448" } } } }
      local r = t:request("POST", V3 .. "/user/" .. enc(alice.user_id) .. "/filter", good, alice.access_token)
      assert.equal(200, r.status)
    end)

    it("refuse them inline: 400 M_INVALID_PARAM on /sync and /messages", function()
      local room = t:create_room(alice)
      local json = require("loom.core").json
      for _, def in ipairs(bad) do
        local r = t:request("GET", V3 .. "/sync?filter=" .. enc(json.encode(def)), nil, alice.access_token)
        assert.equal(400, r.status)
        assert.equal("M_INVALID_PARAM", r.json.errcode)
      end
      for _, def in ipairs { { rooms = { "x" } }, { senders = { "bob" } }, { not_senders = { "@bob" } } } do
        local r = t:request("GET", V3 .. "/rooms/" .. enc(room) .. "/messages?dir=b&filter=" .. enc(json.encode(def)),
          nil, alice.access_token)
        assert.equal(400, r.status)
        assert.equal("M_INVALID_PARAM", r.json.errcode)
      end
    end)

    it("accept a limit of 0: no events", function()
      local room = t:create_room(alice)
      t:send(alice.access_token, room, { msgtype = "m.text", body = "hello" })
      local def = { room = { timeline = { limit = 0 } } }
      local r = t:request("POST", V3 .. "/user/" .. enc(alice.user_id) .. "/filter", def, alice.access_token)
      assert.equal(200, r.status)
      r = t:request("GET", V3 .. "/sync?filter=" .. r.json.filter_id, nil, alice.access_token)
      assert.equal(200, r.status)
      assert.same({}, r.json.rooms.join[room].timeline.events)
      local zero = enc('{"room":{"timeline":{"limit":0}}}')
      r = t:request("GET", V3 .. "/sync?filter=" .. zero, nil, alice.access_token)
      assert.equal(200, r.status)
      local tl = r.json.rooms.join[room].timeline
      assert.same({}, tl.events)
      assert.is_true(tl.limited)          -- the room has events that were left out
      assert.is_string(tl.prev_batch)
      -- incremental: the room that changed is listed, limited, with the state delta
      local since = r.json.next_batch
      assert.equal(200, t:request("PUT", V3 .. "/rooms/" .. enc(room) .. "/state/m.room.topic",
        { topic = "new" }, alice.access_token).status)
      t:send(alice.access_token, room, { msgtype = "m.text", body = "after" })
      r = t:request("GET", V3 .. "/sync?filter=" .. zero .. "&since=" .. enc(since), nil, alice.access_token)
      assert.equal(200, r.status)
      local sec = r.json.rooms.join[room]
      assert.same({}, sec.timeline.events)
      assert.is_true(sec.timeline.limited)
      assert.equal(1, #sec.state.events)
      assert.equal("new", sec.state.events[1].content.topic)
      r = t:request("GET", V3 .. "/rooms/" .. enc(room) .. "/messages?dir=b&filter=" .. enc('{"limit":0}'), nil,
        alice.access_token)
      assert.equal(200, r.status)
      assert.same({}, r.json.chunk)
      r = t:request("POST", V3 .. "/user/" .. enc(alice.user_id) .. "/filter",
        { room = { timeline = { limit = -1 } } }, alice.access_token)
      assert.equal(400, r.status)
    end)
  end)

  describe("pagination at the ends", function()
    local function messages(room, args)
      local r = t:request("GET", V3 .. "/rooms/" .. enc(room) .. "/messages?" .. args, nil, alice.access_token)
      assert.equal(200, r.status)
      return r.json
    end
    local function ids(events)
      local out = {}
      for i, e in ipairs(events) do out[i] = e.event_id end
      return out
    end
    local function say(room, body)
      return t:send(alice.access_token, room, { msgtype = "m.text", body = body }).json.event_id
    end

    it("/messages?dir=f reaching the live end returns an end token for the next forward page", function()
      local room = t:create_room(alice)
      say(room, "a")
      local page = messages(room, "dir=f&limit=100")
      assert.is_string(page["end"])
      local last = page.chunk[#page.chunk]
      assert.equal("a", last.content.body)
      -- nothing new yet: an empty page
      local empty = messages(room, "dir=f&limit=100&from=" .. enc(page["end"]))
      assert.same({}, empty.chunk)
      local b, c = say(room, "b"), say(room, "c")
      local nxt = messages(room, "dir=f&limit=100&from=" .. enc(page["end"]))
      assert.same({ b, c }, ids(nxt.chunk))
      assert.is_string(nxt["end"])
      -- a full page that is not at the end pages on as before
      local d = say(room, "d")
      local e = say(room, "e")
      local one = messages(room, "dir=f&limit=1&from=" .. enc(nxt["end"]))
      assert.same({ d }, ids(one.chunk))
      local two = messages(room, "dir=f&limit=5&from=" .. enc(one["end"]))
      assert.same({ e }, ids(two.chunk))
      assert.is_string(two["end"])
      -- from a sync token too
      local s = t:request("GET", V3 .. "/sync", nil, alice.access_token).json.next_batch
      local f = say(room, "f")
      local fwd = messages(room, "dir=f&limit=5&from=" .. enc(s))
      assert.same({ f }, ids(fwd.chunk))
      assert.is_string(fwd["end"])
      -- and paging backwards to the start still ends without one
      assert.is_nil(messages(room, "dir=b&limit=100")["end"])
      -- a page up to `to` filled the gap: no end
      assert.is_nil(messages(room, "dir=f&limit=100&to=" .. enc(s))["end"])
    end)

    it("an initial /sync holding the whole room has a prev_batch that pages back consistently", function()
      local room = t:create_room(alice)
      say(room, "hello")
      local r = t:request("GET", V3 .. "/sync?filter=" .. enc('{"room":{"timeline":{"limit":100}}}'), nil,
        alice.access_token)
      local tl = r.json.rooms.join[room].timeline
      assert.is_false(tl.limited)
      assert.equal("m.room.create", tl.events[1].type)
      assert.is_string(tl.prev_batch)
      -- nothing before the timeline
      local back = messages(room, "dir=b&limit=100&from=" .. enc(tl.prev_batch))
      assert.same({}, back.chunk)
      assert.is_nil(back["end"])
      -- paging back from next_batch gives the timeline's events, newest first
      local all = messages(room, "dir=b&limit=100&from=" .. enc(r.json.next_batch))
      local want = ids(tl.events)
      local got = ids(all.chunk)
      assert.equal(#want, #got)
      for i = 1, #want do assert.equal(want[i], got[#got + 1 - i]) end
      -- a timeline of limit 0 pages back to the same events
      r = t:request("GET", V3 .. "/sync?filter=" .. enc('{"room":{"timeline":{"limit":0}}}'), nil, alice.access_token)
      tl = r.json.rooms.join[room].timeline
      assert.same({}, tl.events)
      got = ids(messages(room, "dir=b&limit=100&from=" .. enc(tl.prev_batch)).chunk)
      assert.equal(#want, #got)
      for i = 1, #want do assert.equal(want[i], got[#got + 1 - i]) end
    end)
  end)
end)
