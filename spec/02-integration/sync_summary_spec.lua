-- The room summary of joined rooms in /sync (Client-Server API, /sync
-- "RoomSummary"): m.joined_member_count (the syncing user included),
-- m.invited_member_count and m.heroes — the first 5 other members by the
-- stream ordering of their membership, joined or invited, or the left and
-- banned ones when there are none; never the syncing user. Sent on initial
-- syncs and when the members change; with lazy-loaded members the heroes'
-- member events are in `state` unless the device has them already.
local tesths = require "support.hs"

local enc = tesths.enc
local V3 = "/_matrix/client/v3"

describe("room summary in /sync", function()
  local t
  setup(function() t = tesths.start() end)
  teardown(function() t:stop() end)

  local function post(who, path, body)
    local r = t:request("POST", V3 .. path, body or {}, who.access_token)
    assert.equal(200, r.status, r.body)
    return r
  end
  local function invite(who, room, target)
    post(who, "/rooms/" .. enc(room) .. "/invite", { user_id = target.user_id })
  end
  local function leave(who, room) post(who, "/rooms/" .. enc(room) .. "/leave") end

  local function sync(who, since, filter) return t:sync(who, since, filter) end
  local function summary(body, room)
    local sec = body.rooms.join[room]
    return sec and sec.summary
  end
  local function ids(list)
    local out = {}
    for i, u in ipairs(list) do out[i] = u.user_id end
    return out
  end

  it("counts joined (the syncing user included) and invited members, and names the others as heroes", function()
    local a, b, c = t:fresh("sa"), t:fresh("sb"), t:fresh("sc")
    local room = t:create_room(a, { preset = "public_chat" })
    t:join(b, room)
    invite(a, room, c)
    local s = summary(sync(a), room)
    assert.same({ ["m.joined_member_count"] = 2, ["m.invited_member_count"] = 1,
      ["m.heroes"] = { b.user_id, c.user_id } }, s)
    -- JSON integers (2, not 2.0)
    assert.equal("integer", math.type(s["m.joined_member_count"]))
    assert.equal("integer", math.type(s["m.invited_member_count"]))
    -- the invitee's view once joined: the creator came first
    t:join(c, room)
    assert.same({ ["m.joined_member_count"] = 3, ["m.invited_member_count"] = 0,
      ["m.heroes"] = { a.user_id, b.user_id } }, summary(sync(c), room))
  end)

  it("takes the first five others by membership order, not by name", function()
    local a = t:register("owner5")
    local room = t:create_room(a, { preset = "public_chat" })
    local joiners = {}
    for _, name in ipairs { "zed", "yan", "xia", "wim", "vic", "uma", "tom" } do
      local u = t:register(name)
      t:join(u, room)
      joiners[#joiners + 1] = u
    end
    local s = summary(sync(a), room)
    assert.same(ids { joiners[1], joiners[2], joiners[3], joiners[4], joiners[5] }, s["m.heroes"])
    assert.equal(8, s["m.joined_member_count"])
    -- from a joiner's side: the owner first, never the joiner itself
    local s2 = summary(sync(joiners[2]), room)
    assert.same({ a.user_id, joiners[1].user_id, joiners[3].user_id, joiners[4].user_id, joiners[5].user_id },
      s2["m.heroes"])
  end)

  it("uses left and banned members when nobody else is joined or invited", function()
    local a, b, c = t:fresh("la"), t:fresh("lb"), t:fresh("lc")
    local room = t:create_room(a, { preset = "public_chat" })
    t:join(b, room)
    t:join(c, room)
    leave(b, room)
    post(a, "/rooms/" .. enc(room) .. "/ban", { user_id = c.user_id })
    assert.same({ ["m.joined_member_count"] = 1, ["m.invited_member_count"] = 0,
      ["m.heroes"] = { b.user_id, c.user_id } }, summary(sync(a), room))
    -- a room with nobody else at all: no heroes
    local alone = t:create_room(a, {})
    assert.same({ ["m.joined_member_count"] = 1, ["m.invited_member_count"] = 0, ["m.heroes"] = {} },
      summary(sync(a), alone))
  end)

  it("leaves the heroes out of a room that has a name or a canonical alias", function()
    local a, b = t:fresh("na"), t:fresh("nb")
    local named = t:create_room(a, { preset = "public_chat", name = "Lounge" })
    t:join(b, named)
    assert.same({ ["m.joined_member_count"] = 2, ["m.invited_member_count"] = 0 }, summary(sync(a), named))
    -- an empty name does not count
    local blank = t:create_room(a, { preset = "public_chat", name = "" })
    t:join(b, blank)
    assert.same({ b.user_id }, summary(sync(a), blank)["m.heroes"])
  end)

  it("is sent again on incremental syncs when the members change, and omitted otherwise", function()
    local a, b, c = t:fresh("ia"), t:fresh("ib"), t:fresh("ic")
    local room = t:create_room(a, { preset = "public_chat" })
    local s0 = sync(a)
    assert.same({ ["m.joined_member_count"] = 1, ["m.invited_member_count"] = 0, ["m.heroes"] = {} },
      summary(s0, room))
    -- a message changes nothing: the room is there, its summary empty
    assert.equal(200, t:send(a.access_token, room, { msgtype = "m.text", body = "hi" }).status)
    local s1 = sync(a, s0.next_batch)
    assert.same({}, summary(s1, room))
    -- a join
    t:join(b, room)
    local s2 = sync(a, s1.next_batch)
    assert.same({ ["m.joined_member_count"] = 2, ["m.invited_member_count"] = 0, ["m.heroes"] = { b.user_id } },
      summary(s2, room))
    -- an invite
    invite(a, room, c)
    local s3 = sync(a, s2.next_batch)
    assert.same({ ["m.joined_member_count"] = 2, ["m.invited_member_count"] = 1,
      ["m.heroes"] = { b.user_id, c.user_id } }, summary(s3, room))
    -- a leave
    leave(b, room)
    local s4 = sync(a, s3.next_batch)
    assert.same({ ["m.joined_member_count"] = 1, ["m.invited_member_count"] = 1, ["m.heroes"] = { c.user_id } },
      summary(s4, room))
    -- the change is seen even when the timeline is limited past it
    t:join(b, room)
    for i = 1, 3 do assert.equal(200, t:send(a.access_token, room, { msgtype = "m.text", body = "m" .. i }).status) end
    local s5 = sync(a, s4.next_batch, '{"room":{"timeline":{"limit":1}}}')
    assert.is_true(s5.rooms.join[room].timeline.limited)
    assert.equal(2, summary(s5, room)["m.joined_member_count"])
    -- naming the room sends the summary, without heroes
    assert.equal(200, t:request("PUT", V3 .. "/rooms/" .. enc(room) .. "/state/m.room.name", { name = "Now named" },
      a.access_token).status)
    assert.same({ ["m.joined_member_count"] = 2, ["m.invited_member_count"] = 1 },
      summary(sync(a, s5.next_batch), room))
  end)

  it("is sent when the members change even if the timeline filter leaves the member events out", function()
    local a, b = t:fresh("fa"), t:fresh("fb")
    local room = t:create_room(a, { preset = "public_chat" })
    local only_messages = '{"room":{"timeline":{"types":["m.room.message"]}}}'
    local s0 = sync(a, nil, only_messages)
    t:join(b, room)
    local s1 = sync(a, s0.next_batch, only_messages)
    assert.same({}, s1.rooms.join[room].timeline.events)
    assert.same({ ["m.joined_member_count"] = 2, ["m.invited_member_count"] = 0, ["m.heroes"] = { b.user_id } },
      summary(s1, room))
  end)

  it("is sent in full for a room joined since the token", function()
    local a, b = t:fresh("ja"), t:fresh("jb")
    local room = t:create_room(a, { preset = "public_chat" })
    local s0 = sync(b)
    t:join(b, room)
    assert.same({ ["m.joined_member_count"] = 2, ["m.invited_member_count"] = 0, ["m.heroes"] = { a.user_id } },
      summary(sync(b, s0.next_batch), room))
  end)

  it("is the same when the store reads the rooms in several chunks", function()
    local sql = require "loom.store.sql"
    local a = t:fresh("ca")
    local others, rooms = {}, {}
    for i = 1, 5 do
      others[i] = t:fresh("cb")
      rooms[i] = t:create_room(a, { preset = "public_chat" })
      -- room i has i others; room 5 has nobody joined but one who left
      for j = 1, (i < 5 and i or 1) do t:join(others[j], rooms[i]) end
    end
    leave(others[1], rooms[5])
    local function summaries()
      local body = sync(a)
      local out = {}
      for i, r in ipairs(rooms) do out[i] = summary(body, r) end
      return out
    end
    local whole = summaries()
    local saved = sql.CHUNK
    sql.CHUNK = 2
    local ok, chunked = pcall(summaries)
    sql.CHUNK = saved
    assert(ok, chunked)
    assert.same(whole, chunked)
    for i = 1, 4 do
      assert.equal(i + 1, whole[i]["m.joined_member_count"])
      assert.equal(i, #whole[i]["m.heroes"])
    end
    assert.same({ ["m.joined_member_count"] = 1, ["m.invited_member_count"] = 0,
      ["m.heroes"] = { others[1].user_id } }, whole[5])
  end)

  describe("with lazy-loaded members", function()
    local LL = '{"room":{"state":{"lazy_load_members":true},"timeline":{"limit":1}}}'
    local function members(body, room)
      local out = {}
      for _, ev in ipairs(body.rooms.join[room].state.events) do
        if ev.type == "m.room.member" then out[ev.state_key] = ev.content.membership end
      end
      return out
    end

    it("puts the heroes' member events in state, once per device", function()
      local a, b, c, d = t:fresh("za"), t:fresh("zb"), t:fresh("zc"), t:fresh("zd")
      local room = t:create_room(a, { preset = "public_chat" })
      t:join(b, room)
      invite(a, room, c)
      assert.equal(200, t:send(a.access_token, room, { msgtype = "m.text", body = "only me speaks" }).status)
      local s0 = sync(a, nil, LL)
      assert.same({ b.user_id, c.user_id }, summary(s0, room)["m.heroes"])
      -- the sender (the user) and both heroes, though neither is in the timeline
      assert.same({ [a.user_id] = "join", [b.user_id] = "join", [c.user_id] = "invite" }, members(s0, room))
      -- a new member: the summary comes again; the heroes the device has are not sent again
      t:join(d, room)
      assert.equal(200, t:send(a.access_token, room, { msgtype = "m.text", body = "welcome" }).status)
      local s1 = sync(a, s0.next_batch, LL)
      assert.same({ b.user_id, c.user_id, d.user_id }, summary(s1, room)["m.heroes"])
      local m1 = members(s1, room)
      assert.is_nil(m1[b.user_id])
      assert.is_nil(m1[c.user_id])
      assert.equal("join", m1[d.user_id])
      -- without lazy loading nothing is added: the full state has them all anyway
      local full = sync(a)
      assert.equal(3, #summary(full, room)["m.heroes"])
    end)
  end)
end)
