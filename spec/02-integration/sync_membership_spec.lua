-- /sync across membership transitions between two incremental syncs: one user
-- changes membership, another acts in between. Client-Server API, GET /sync:
-- `state` brings the client up to the start of the timeline; a room newly
-- joined since `since` gets the full state (as an initial sync would).
local tesths = require "support.hs"

local enc = tesths.enc
local V3 = "/_matrix/client/v3"

describe("sync across membership transitions", function()
  local t, alice, bob, carol
  before_each(function()
    t = tesths.start()
    alice, bob, carol = t:register("alice"), t:register("bob"), t:register("carol")
  end)
  after_each(function() t:stop() end)

  local function sync(who, since, filter)
    local q = {}
    if since then q[#q + 1] = "since=" .. enc(since) end
    if filter then q[#q + 1] = "filter=" .. enc(filter) end
    local r = t:request("GET", V3 .. "/sync" .. (#q > 0 and "?" .. table.concat(q, "&") or ""), nil,
      who.access_token)
    assert.equal(200, r.status, r.body)
    return r.json
  end

  local function membership(who, room, action)
    local r = t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/" .. action, {}, who.access_token)
    assert.equal(200, r.status, r.body)
  end

  -- the last membership of user_id seen in state, then timeline
  local function member_seen(sec, user_id)
    local m
    for _, list in ipairs { sec.state.events, sec.timeline.events } do
      for _, e in ipairs(list) do
        if e.type == "m.room.member" and e.state_key == user_id then m = e.content.membership end
      end
    end
    return m
  end

  local function find_state(sec, etype)
    for _, e in ipairs(sec.state.events) do if e.type == etype then return e end end
  end

  local function public_room(visibility)
    return t:create_room(alice, { preset = "public_chat", name = "hall", initial_state = {
      { type = "m.room.history_visibility", state_key = "", content = { history_visibility = visibility } } } })
  end

  it("a user who left and rejoined learns the joins made while away (history_visibility joined)", function()
    local room = public_room("joined")
    membership(bob, room, "join")
    local since = sync(bob).next_batch
    membership(bob, room, "leave")
    membership(carol, room, "join")
    t:send(alice.access_token, room, { msgtype = "m.text", body = "while bob was away" })
    membership(bob, room, "join")
    local body = sync(bob, since)
    local sec = body.rooms.join[room]
    assert.is_table(sec)
    assert.equal("join", member_seen(sec, carol.user_id))
    assert.equal("join", member_seen(sec, bob.user_id))
    assert.equal("join", member_seen(sec, alice.user_id))
    -- history bob may not see stays hidden
    for _, e in ipairs(sec.timeline.events) do assert.not_equal("while bob was away", e.content.body) end
    -- the next incremental sync is quiet for that room
    assert.is_nil(sync(bob, body.next_batch).rooms.join[room])
  end)

  it("a rejoin with a timeline limit of 1 still brings the joins made while away", function()
    local room = public_room("joined")
    membership(bob, room, "join")
    local since = sync(bob).next_batch
    membership(bob, room, "leave")
    membership(carol, room, "join")
    membership(bob, room, "join")
    local sec = sync(bob, since, '{"room":{"timeline":{"limit":1}}}').rooms.join[room]
    assert.equal(1, #sec.timeline.events)
    assert.equal(bob.user_id, sec.timeline.events[1].state_key)
    assert.is_true(sec.timeline.limited)
    assert.equal("join", member_seen(sec, carol.user_id))
    assert.is_table(find_state(sec, "m.room.create"))
  end)

  it("a user who left, came back and left again sees the joins made while away under leave", function()
    local room = public_room("joined")
    membership(bob, room, "join")
    local since = sync(bob).next_batch
    membership(bob, room, "leave")
    membership(carol, room, "join")
    membership(bob, room, "join")
    membership(bob, room, "leave")
    local body = sync(bob, since)
    assert.is_nil(body.rooms.join[room])
    local sec = body.rooms.leave[room]
    assert.is_table(sec)
    assert.equal("join", member_seen(sec, carol.user_id))
    assert.equal("leave", member_seen(sec, bob.user_id))
  end)

  it("a room joined and left between two syncs is under leave with its state and timeline", function()
    local room = public_room("shared")
    local since = sync(bob).next_batch
    membership(bob, room, "join")
    local msg = t:send(alice.access_token, room, { msgtype = "m.text", body = "hello" }).json.event_id
    membership(bob, room, "leave")
    local body = sync(bob, since, '{"room":{"timeline":{"limit":2}}}')
    assert.is_nil(body.rooms.join[room])
    local sec = body.rooms.leave[room]
    assert.is_table(sec)
    local tl = sec.timeline.events
    assert.equal(2, #tl)
    assert.equal(msg, tl[1].event_id)
    assert.equal("leave", tl[2].content.membership)
    assert.is_true(sec.timeline.limited)
    assert.is_table(find_state(sec, "m.room.create"))
    assert.equal("hall", find_state(sec, "m.room.name").content.name)
    assert.equal("join", member_seen(sec, alice.user_id))
    -- the state filter selects
    body = sync(bob, since, '{"room":{"timeline":{"limit":2},"state":{"types":["m.room.name"]}}}')
    sec = body.rooms.leave[room]
    assert.equal(1, #sec.state.events)
    assert.equal("m.room.name", sec.state.events[1].type)
  end)

  it("a room newly joined gets recent history up to the limit, limited, and the full state", function()
    local room = public_room("shared")
    local ids = {}
    for i = 1, 4 do
      ids[i] = t:send(alice.access_token, room, { msgtype = "m.text", body = "m" .. i }).json.event_id
    end
    local since = sync(bob).next_batch
    membership(bob, room, "join")
    local sec = sync(bob, since, '{"room":{"timeline":{"limit":3}}}').rooms.join[room]
    assert.is_table(sec)
    local tl = sec.timeline.events
    assert.equal(3, #tl)
    assert.equal(ids[3], tl[1].event_id)
    assert.equal(ids[4], tl[2].event_id)
    assert.equal("join", tl[3].content.membership)
    assert.is_true(sec.timeline.limited)
    assert.is_table(find_state(sec, "m.room.create"))
    assert.is_table(find_state(sec, "m.room.power_levels"))
    assert.equal("join", member_seen(sec, alice.user_id))
    assert.equal("hall", find_state(sec, "m.room.name").content.name)
    -- nothing of the timeline is repeated in state
    for _, e in ipairs(sec.state.events) do
      for _, x in ipairs(tl) do assert.not_equal(x.event_id, e.event_id) end
    end
  end)
end)
