-- Ignoring users (Client-Server API "Ignoring Users", m.ignored_user_list
-- global account data): the list is checked when it is set; once a user is
-- ignored, /sync sends none of their events but their state events, none of
-- their invites, and their to-device messages never arrive; /messages and
-- /context leave their events out too. Un-ignoring brings their new events
-- back (not the ones sent meanwhile). The change applies from the next sync.
local tesths = require "support.hs"

local enc = tesths.enc
local V3 = "/_matrix/client/v3"

describe("ignoring users", function()
  local t
  setup(function() t = tesths.start() end)
  teardown(function() t:stop() end)

  local function put_list(who, content)
    return t:request("PUT", V3 .. "/user/" .. enc(who.user_id) .. "/account_data/m.ignored_user_list", content,
      who.access_token)
  end
  local function ignore(who, ...)
    local list = {}
    for _, u in ipairs { ... } do list[u.user_id] = {} end
    local r = put_list(who, { ignored_users = list })
    assert.equal(200, r.status, r.body)
  end
  local function sync(who, since, filter) return t:sync(who, since, filter) end
  local function say(who, room, body)
    local r = t:send(who.access_token, room, { msgtype = "m.text", body = body })
    assert.equal(200, r.status, r.body)
    return r.json.event_id
  end
  -- The bodies of the messages in a room's timeline (nil when the room is not listed).
  local function bodies(body, room)
    local sec = body.rooms.join[room]
    if not sec then return nil end
    local out = {}
    for _, ev in ipairs(sec.timeline.events) do
      if ev.type == "m.room.message" then out[#out + 1] = ev.content.body end
    end
    return out
  end
  -- A room that a, b and c are joined to.
  local function trio()
    local a, b, c = t:fresh("ia"), t:fresh("ib"), t:fresh("ic")
    local room = t:create_room(a, { preset = "public_chat" })
    t:join(b, room)
    t:join(c, room)
    return a, b, c, room
  end

  describe("setting the list", function()
    it("accepts an object of user IDs to objects, and returns it", function()
      local a, b = t:fresh("sa"), t:fresh("sb")
      ignore(a, b)
      local r = t:request("GET", V3 .. "/user/" .. enc(a.user_id) .. "/account_data/m.ignored_user_list", nil,
        a.access_token)
      assert.equal(200, r.status)
      assert.same({ ignored_users = { [b.user_id] = {} } }, r.json)
      assert.equal(200, put_list(a, { ignored_users = {} }).status)
    end)

    it("refuses ignored_users that is missing or not an object, bad keys and bad values (400 M_BAD_JSON)", function()
      local a = t:fresh("sx")
      for _, content in ipairs {
        {},
        { ignored_users = { "@b:test.local" } },
        { ignored_users = "@b:test.local" },
        { ignored_users = { ["not-a-user"] = {} } },
        { ignored_users = { ["@b:test.local"] = true } },
      } do
        local r = put_list(a, content)
        assert.equal(400, r.status, r.body)
        assert.equal("M_BAD_JSON", r.json.errcode)
      end
      -- nothing was stored
      local r = t:request("GET", V3 .. "/user/" .. enc(a.user_id) .. "/account_data/m.ignored_user_list", nil,
        a.access_token)
      assert.equal(404, r.status)
    end)

    it("refuses ignoring oneself (400 M_INVALID_PARAM)", function()
      local a, b = t:fresh("so"), t:fresh("sp")
      local r = put_list(a, { ignored_users = { [a.user_id] = {}, [b.user_id] = {} } })
      assert.equal(400, r.status)
      assert.equal("M_INVALID_PARAM", r.json.errcode)
    end)

    it("shows the new list in the next incremental sync", function()
      local a, b = t:fresh("sn"), t:fresh("sm")
      local s0 = sync(a)
      ignore(a, b)
      local ad = tesths.find_type(sync(a, s0.next_batch).account_data.events, "m.ignored_user_list")
      assert.same({ ignored_users = { [b.user_id] = {} } }, ad.content)
    end)
  end)

  describe("in /sync", function()
    it("leaves out the ignored user's messages, initial and incremental", function()
      local a, b, c, room = trio()
      say(b, room, "b before")
      say(c, room, "c before")
      ignore(a, b)
      assert.same({ "c before" }, bodies(sync(a), room))
      local s0 = sync(a)
      say(b, room, "b after")
      say(c, room, "c after")
      assert.same({ "c after" }, bodies(sync(a, s0.next_batch), room))
      -- others still see everything
      assert.same({ "b before", "c before", "b after", "c after" }, bodies(sync(c), room))
    end)

    it("still sends the ignored user's state events, in the timeline and in state", function()
      local a, b, _, room = trio()
      ignore(a, b)
      local s0 = sync(a)
      -- b's join (a state event) reaches the client, in state or in the timeline
      local member
      local sec = s0.rooms.join[room]
      for _, list in ipairs { sec.state.events, sec.timeline.events } do
        for _, ev in ipairs(list) do
          if ev.type == "m.room.member" and ev.state_key == b.user_id then member = ev end
        end
      end
      assert.is_table(member)
      -- and the full state of a sync whose timeline holds none of it
      local short = sync(a, nil, '{"room":{"timeline":{"limit":0}}}')
      local in_state
      for _, ev in ipairs(short.rooms.join[room].state.events) do
        if ev.type == "m.room.member" and ev.state_key == b.user_id then in_state = ev end
      end
      assert.equal("join", in_state.content.membership)
      -- a state event b sends later is in the timeline, b's message is not
      assert.equal(200, t:request("PUT", V3 .. "/rooms/" .. enc(room) .. "/state/m.room.member/" .. enc(b.user_id),
        { membership = "join", displayname = "Bee" }, b.access_token).status)
      say(b, room, "hidden")
      local s1 = sync(a, s0.next_batch)
      local renamed = tesths.find_type(s1.rooms.join[room].timeline.events, "m.room.member")
      assert.equal(b.user_id, renamed.sender)
      assert.equal("Bee", renamed.content.displayname)
      assert.same({}, bodies(s1, room))
    end)

    it("does not list a room whose only news are the ignored user's messages", function()
      local a, b, c, room = trio()
      ignore(a, b)
      local s0 = sync(a)
      say(b, room, "nobody hears this")
      local s1 = sync(a, s0.next_batch)
      assert.is_nil(s1.rooms.join[room])
      -- the room comes back with the next message from someone else
      say(c, room, "hello")
      assert.same({ "hello" }, bodies(sync(a, s1.next_batch), room))
    end)

    it("hides invites from the ignored user, not from others", function()
      local a, b, c = t:fresh("va"), t:fresh("vb"), t:fresh("vc")
      ignore(a, b)
      local s0 = sync(a)
      local from_b = t:create_room(b, { preset = "private_chat", invite = { a.user_id } })
      local from_c = t:create_room(c, { preset = "private_chat", invite = { a.user_id } })
      local s1 = sync(a, s0.next_batch)
      assert.is_nil(s1.rooms.invite[from_b])
      assert.is_table(s1.rooms.invite[from_c])
      local initial = sync(a)
      assert.is_nil(initial.rooms.invite[from_b])
      assert.is_table(initial.rooms.invite[from_c])
    end)

    it("brings new messages back after un-ignoring, not those sent meanwhile", function()
      local a, b, c, room = trio()
      ignore(a, b)
      local s0 = sync(a)
      say(b, room, "while ignored")
      local s1 = sync(a, s0.next_batch)
      assert.is_nil(s1.rooms.join[room])
      assert.equal(200, put_list(a, { ignored_users = {} }).status)
      say(b, room, "after un-ignoring")
      say(c, room, "from c")
      local s2 = sync(a, s1.next_batch)
      assert.same({ "after un-ignoring", "from c" }, bodies(s2, room))
      -- a fresh sync gets everything again
      assert.same({ "while ignored", "after un-ignoring", "from c" }, bodies(sync(a), room))
    end)
  end)

  describe("to-device messages", function()
    local function send(from, to, body, txn)
      local r = t:request("PUT", V3 .. "/sendToDevice/org.example.note/" .. txn,
        { messages = { [to.user_id] = { ["*"] = { body = body } } } }, from.access_token)
      assert.equal(200, r.status, r.body)
    end
    local function notes(body)
      local out = {}
      for _, ev in ipairs(body.to_device.events) do out[#out + 1] = ev.content.body end
      return out
    end

    it("from an ignored user are dropped; others arrive", function()
      local a, b, c = t:fresh("da"), t:fresh("db"), t:fresh("dc")
      ignore(a, b)
      local s0 = sync(a)
      send(b, a, "from b", "d1")
      send(c, a, "from c", "d2")
      local s1 = sync(a, s0.next_batch)
      assert.same({ "from c" }, notes(s1))
      -- un-ignored: new messages arrive, the dropped one never does
      assert.equal(200, put_list(a, { ignored_users = {} }).status)
      send(b, a, "b again", "d3")
      assert.same({ "b again" }, notes(sync(a, s1.next_batch)))
      assert.same({ "b again" }, notes(sync(a)))
    end)
  end)

  describe("/messages, /context and /event", function()
    it("leave out the ignored user's events; the context of one, or the event itself, is 404", function()
      local a, b, c, room = trio()
      say(c, room, "c1")
      local hidden = say(b, room, "b1")
      local anchor = say(c, room, "c2")
      say(b, room, "b2")
      say(c, room, "c3")
      ignore(a, b)
      local r = t:request("GET", V3 .. "/rooms/" .. enc(room) .. "/messages?dir=b&limit=3", nil, a.access_token)
      assert.equal(200, r.status)
      local got = {}
      for _, ev in ipairs(r.json.chunk) do got[#got + 1] = ev.content.body or ev.type end
      -- the page is filled with what the user may see
      assert.same({ "c3", "c2", "c1" }, got)
      local ctx = t:request("GET", V3 .. "/rooms/" .. enc(room) .. "/context/" .. enc(anchor) .. "?limit=4", nil,
        a.access_token)
      assert.equal(200, ctx.status)
      local around = {}
      for _, ev in ipairs(ctx.json.events_before) do around[#around + 1] = ev.sender end
      for _, ev in ipairs(ctx.json.events_after) do around[#around + 1] = ev.sender end
      for _, s in ipairs(around) do assert.not_equal(b.user_id, s) end
      local gone = t:request("GET", V3 .. "/rooms/" .. enc(room) .. "/context/" .. enc(hidden), nil, a.access_token)
      assert.equal(404, gone.status)
      assert.equal("M_NOT_FOUND", gone.json.errcode)
      -- so is fetching it
      local one = t:request("GET", V3 .. "/rooms/" .. enc(room) .. "/event/" .. enc(hidden), nil, a.access_token)
      assert.equal(404, one.status)
      assert.equal("M_NOT_FOUND", one.json.errcode)
      -- c, who ignores nobody, sees b's events
      local seen = t:request("GET", V3 .. "/rooms/" .. enc(room) .. "/context/" .. enc(hidden), nil, c.access_token)
      assert.equal(200, seen.status)
      assert.equal(200, t:request("GET", V3 .. "/rooms/" .. enc(room) .. "/event/" .. enc(hidden), nil,
        c.access_token).status)
    end)
  end)
end)
