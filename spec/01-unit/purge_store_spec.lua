-- store:purge_room (loom.store.admin): every row of one room deleted in one
-- transaction, the store's memory of it dropped, other rooms untouched, and
-- stream positions that never go back, across a reopen too.
local store_mod = require "loom.store"
local tmp = require "support.tmpdb"

local ev = tmp.message

local function member(room, depth, prevs, user, membership)
  return ev(room, depth, prevs, { type = "m.room.member", state_key = user, sender = user,
    content = { membership = membership } })
end

describe("store:purge_room", function()
  local path, s

  before_each(function() s, path = tmp.open_store() end)
  after_each(function() tmp.close_store(s, path) end)

  -- a room of three events: create, a join of @u:test, a message
  local function room_of(room, p)
    assert(s:persist(p .. "c", ev(room, 1, {}, { type = "m.room.create", state_key = "" })))
    assert(s:persist(p .. "j", member(room, 2, { p .. "c" }, "@u:test", "join")))
    return assert(s:persist(p .. "m", ev(room, 3, { p .. "j" })))
  end

  it("deletes the room's rows and its cached events, memberships and NIDs; keeps the other room", function()
    room_of("!keep:test", "$k")
    room_of("!gone:test", "$g")
    local nid = s:room_nid("!gone:test")
    -- warm the caches
    assert(s:event("$gm"))
    assert.same({ "!gone:test", "!keep:test" }, s:rooms_for_user("@u:test"))
    assert.equal(1, #s:join_positions("@u:test", nid))
    assert.is_true((s:room_rows("!gone:test", nid).events or 0) == 3)
    local max = s.max_stream
    assert.is_true(s:purge_room("!gone:test"))
    assert.same({}, s:room_rows("!gone:test", nid))
    assert.same({}, s:orphan_event_rows())
    assert.is_nil(s:room_nid("!gone:test"))
    assert.is_nil(s:room_id(nid))
    local none, _, code = s:event("$gm")
    assert.is_nil(none)
    assert.equal("not_found", code)
    assert.same({ "!keep:test" }, s:rooms_for_user("@u:test"))
    assert.is_true(select(2, assert(s:event("$km"))).event_nid > 0)
    assert.equal(3, s:room_rows("!keep:test", s:room_nid("!keep:test")).events)
    -- purging again, or a room never seen: not_found, nothing changes
    local ok, _, code2 = s:purge_room("!gone:test")
    assert.is_nil(ok)
    assert.equal("not_found", code2)
    assert.equal("not_found", select(3, s:purge_room("!never:test")))
    -- the positions stay taken: the next event comes after the purged ones
    local r = assert(s:persist("$k4", ev("!keep:test", 4, { "$km" })))
    assert.is_true(r.stream_ordering > max)
    -- the room may come again (a join through another server), with only its new events
    room_of("!gone:test", "$h")
    local rn = s:room_nid("!gone:test")
    assert.equal(3, s:room_rows("!gone:test", rn).events)
    assert.is_nil(s:event("$gc"))
    assert.equal("!gone:test", select(2, assert(s:event("$hm"))).room_id)
    assert.same({ "!gone:test", "!keep:test" }, s:rooms_for_user("@u:test"))
  end)

  it("keeps the stream positions across a reopen when the purged room held the latest", function()
    room_of("!keep:test", "$k")
    room_of("!gone:test", "$g")
    local max = s.max_stream
    assert.is_true(s:purge_room("!gone:test"))
    s:close()
    s = assert(store_mod.open { path = path })
    assert.equal(max, s.max_stream)
    local r = assert(s:persist("$k4", ev("!keep:test", 4, { "$km" })))
    assert.is_true(r.stream_ordering > max)
  end)
end)
