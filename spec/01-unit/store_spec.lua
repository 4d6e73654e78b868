-- The event store's API: input checking, duplicates, stream queries, caches,
-- membership changes, application-service streams, transactions, migrations.
local store_mod = require "loom.store"
local db = require "loom.db"
local migrate = require "loom.db.migrate"
local core = require "loom.core"
local json, token = core.json, core.token

local tmp = require "support.tmpdb"
local tmpdb, cleanup = tmp.path, tmp.remove


local function ids_of(events)
  local out = {}
  for i, e in ipairs(events) do out[i] = e.event_id end
  return out
end

local msg = tmp.message

local function counts(s)
  local out = {}
  for _, t in ipairs { "events", "event_edges", "forward_extremities", "backward_extremities",
                       "room_memberships", "rooms", "event_types", "state_keys" } do
    out[t] = s.conn:value("SELECT count(*) FROM " .. t)
  end
  return out
end

describe("store", function()
  local path, s

  before_each(function() s, path = tmp.open_store() end)
  after_each(function() tmp.close_store(s, path) end)

  it("rejects bad events with nil, message, bad_event and changes nothing", function()
    assert(s:persist("$ok", msg("!r:t", 1)))
    local before = counts(s)
    local tok = s:current_token()
    local cases = {
      { "$1", "not a table" },
      { "", msg("!r:t", 2) },
      { ("$"):rep(256), msg("!r:t", 2) },
      { "$2", msg("!r:t", 0) },
      { "$3", msg("!r:t", 9007199254740992) },
      { "$4", msg("!r:t", 2, nil, { type = ("t"):rep(256) }) },
      { "$5", msg("!r:t", 2, nil, { state_key = 5 }) },
      { "$6", msg("!r:t", 2, nil, { origin_server_ts = "now" }) },
      { "$7", msg("!r:t", 2, { 42 }) },
      { "$8", msg(nil, 2) },
      { "$9", msg("!r:t", 2, nil, { sender = "" }) },
      { "$10", msg("!r:t", 2, nil, { depth = 2.5 }) },
      { "$11", msg("!r:t", 2, nil, { content = { n = 1.5 } }) },          -- not canonical JSON
      { "$12", msg("!new:t", 2, nil, { type = "x.new", content = { n = 2 ^ 60 } }) },
    }
    for i, c in ipairs(cases) do
      local r, m, code = s:persist(c[1], c[2])
      assert.is_nil(r, "case " .. i)
      assert.is_string(m)
      assert.is_truthy(code == "bad_event" or code:match("^json_"), "case " .. i .. ": " .. tostring(code))
    end
    assert.same(before, counts(s))
    assert.equal(tok, s:current_token())
    -- a batch with one bad event stores none of it, and NIDs it assigned are forgotten
    local r = s:persist_events {
      { "$b1", msg("!batch:t", 1, nil, { type = "x.batch.type", state_key = "@new:t" }) },
      { "$b2", msg("!batch:t", 0) },
    }
    assert.is_nil(r)
    assert.same(before, counts(s))
    assert.is_nil(s:room_nid("!batch:t"))
    assert.is_nil(s:type_nid("x.batch.type"))
    assert.is_nil(s:state_key_nid("@new:t"))
    assert.equal(tok, s:current_token())
    -- and the store still works afterwards, reusing the stream positions
    local ok = assert(s:persist("$b3", msg("!batch:t", 1, nil, { type = "x.batch.type" })))
    assert.equal(tonumber(tok:sub(2)) + 1, ok.stream_ordering)
  end)

  it("treats storing an event twice as a no-op, and lets an outlier join the DAG", function()
    local a = assert(s:persist("$a", msg("!r:t", 1)))
    local again = assert(s:persist("$a", msg("!r:t", 1)))
    assert.is_true(again.duplicate)
    assert.equal(a.stream_ordering, again.stream_ordering)
    local o = assert(s:persist("$o", msg("!r:t", 2, { "$a" }), { outlier = true }))
    assert.same({ "$a" }, s:forward_extremities("!r:t"))
    local page = assert(s:paginate("!r:t", nil, { dir = "f" }))
    assert.same({ "$a" }, ids_of(page.events))
    local joined = assert(s:persist("$o", msg("!r:t", 2, { "$a" })))
    assert.is_true(joined.deoutliered)
    assert.is_true(joined.stream_ordering > o.stream_ordering)
    assert.same({ "$o" }, s:forward_extremities("!r:t"))
    page = assert(s:paginate("!r:t", nil, { dir = "f" }))
    assert.same({ "$a", "$o" }, ids_of(page.events))
    -- an outlier stored again as an outlier stays as it was
    assert.is_true(assert(s:persist("$o", msg("!r:t", 2, { "$a" }), { outlier = true })).duplicate)
    -- the same event ID in another room is refused
    local r = s:persist("$x", msg("!r:t", 3), { outlier = true })
    assert.truthy(r)
    local _, code
    r, _, code = s:persist("$x", msg("!other:t", 3))
    assert.is_nil(r)
    assert.equal("bad_event", code)
  end)

  it("answers malformed tokens and parameters with errors, not raises", function()
    assert(s:persist("$a", msg("!r:t", 1)))
    for _, bad in ipairs { "garbage", "t0-1", "s01", "", "t1-", 12.5 } do
      local r, _, code = s:paginate("!r:t", bad, { dir = "b" })
      assert.is_nil(r)
      assert.equal("bad_token", code)
      r, _, code = s:paginate("!r:t", nil, { dir = "b", to = bad })
      assert.is_nil(r)
      assert.equal("bad_token", code)
    end
    local r, _, code = s:paginate("!r:t", nil, { dir = "x" })
    assert.is_nil(r); assert.equal("bad_param", code)
    r, _, code = s:paginate("!r:t", nil, { limit = -1 })
    assert.is_nil(r); assert.equal("bad_param", code)
    r, _, code = s:paginate("!r:t", nil, { filter = { types = "m.room.message" } })
    assert.is_nil(r); assert.equal("bad_filter", code)
    r, _, code = s:room_stream("!r:t", "t1-1x")
    assert.is_nil(r); assert.equal("bad_token", code)
    r, _, code = s:membership_changes("@a:test", "nope")
    assert.is_nil(r); assert.equal("bad_token", code)
    -- an unknown room is simply empty
    local page = assert(s:paginate("!unknown:t", nil, { dir = "b" }))
    assert.same({}, page.events)
    assert.is_nil(page.next)
    assert.truthy(token.parse(page.start))
  end)

  it("turns stream tokens into topological positions without losing events", function()
    -- live events at depth 1..6
    local prev = {}
    for d = 1, 6 do
      assert(s:persist("$l" .. d, msg("!r:t", d, prev)))
      prev = { "$l" .. d }
    end
    -- a backfilled event claiming a larger depth than the live ones had
    assert(s:persist("$bf", msg("!r:t", 9, { "$older" }), { backfilled = true }))
    local page = assert(s:paginate("!r:t", "s3", { dir = "b", limit = 50 }))
    local got = {}
    for _, id in ipairs(ids_of(page.events)) do got[id] = true end
    for _, id in ipairs { "$l1", "$l2", "$l3", "$bf" } do assert.is_true(got[id], id) end
    assert.equal("t9-6", s:max_topological_token("!r:t"))
    assert.equal("t9-2", s:max_topological_token("!r:t", 2))
    local st, tt = s:tokens_for_event("$l4")
    assert.equal("s4", st)
    assert.equal("t4-4", tt)
    local none, _, code = s:tokens_for_event("$missing")
    assert.is_nil(none); assert.equal("not_found", code)
  end)

  it("serves room streams for one and many rooms, skipping unchanged rooms", function()
    local rooms = {}
    for i = 1, 20 do
      rooms[i] = ("!r%d:t"):format(i)
      assert(s:persist(("$c%d"):format(i), msg(rooms[i], 1)))
    end
    local since = s:current_position()
    -- three rooms change: 5 events in r1, 1 in r2, 12 in r3
    local depth = {}
    local function send(room, n)
      for _ = 1, n do
        depth[room] = (depth[room] or 1) + 1
        assert(s:persist(("$%s_%d"):format(room, depth[room]), msg(room, depth[room])))
      end
    end
    send(rooms[1], 5); send(rooms[2], 1); send(rooms[3], 12)
    -- count the queries: wrappers around the connection's query methods
    local queries = 0
    local function counting(on)
      for _, m in ipairs { "all", "records", "first", "value", "column", "run" } do
        if on then
          local real = s.conn[m]
          s.conn[m] = function(c, ...) queries = queries + 1; return real(c, ...) end
        else
          s.conn[m] = nil
        end
      end
    end
    counting(true)
    local res = assert(s:rooms_stream(rooms, since, nil, 10))
    counting(false)
    assert.equal(1, queries)
    local changed = {}
    for r in pairs(res) do changed[#changed + 1] = r end
    table.sort(changed)
    assert.same({ rooms[1], rooms[2], rooms[3] }, changed)
    assert.equal(5, #res[rooms[1]].events)
    assert.is_false(res[rooms[1]].limited)
    assert.equal(10, #res[rooms[3]].events)
    assert.is_true(res[rooms[3]].limited)
    -- ascending stream order, the newest ten
    local evs = res[rooms[3]].events
    for i = 2, #evs do assert.is_true(evs[i - 1].stream_ordering < evs[i].stream_ordering) end
    assert.equal(("$%s_13"):format(rooms[3]), evs[#evs].event_id)
    -- prev_batch pages back to exactly the events before the timeline
    local back = assert(s:paginate(rooms[3], res[rooms[3]].prev_batch, { dir = "b", limit = 50 }))
    assert.same({ ("$%s_3"):format(rooms[3]), ("$%s_2"):format(rooms[3]), "$c3" }, ids_of(back.events))
    -- unchanged room: nothing, and no query
    queries = 0
    counting(true)
    local one = assert(s:room_stream(rooms[9], since))
    counting(false)
    assert.same({}, one.events)
    assert.equal(0, queries)
    -- a stream with a filter
    local f = assert(s:rooms_stream(rooms, since, nil, 10, { not_senders = { "@a:test" } }))
    assert.same({}, f[rooms[1]] and f[rooms[1]].events or {})
    -- backfilled events never show up as new
    local pos = s:current_position()
    assert(s:persist("$old", msg(rooms[1], 1, { "$older" }), { backfilled = true }))
    res = assert(s:rooms_stream(rooms, pos, nil, 10))
    assert.is_nil(res[rooms[1]])
  end)

  it("keeps a user's rooms until their memberships change, and lists the latest non-joins", function()
    local function member(id, room, user, membership, depth)
      return assert(s:persist(id, { room_id = room, type = "m.room.member", state_key = user,
        sender = user, depth = depth, origin_server_ts = 1, prev_events = json.array {},
        content = { membership = membership } }))
    end
    member("$a1", "!a:t", "@u:t", "join", 1)
    member("$b1", "!b:t", "@u:t", "join", 1)
    assert.same({ "!a:t", "!b:t" }, s:rooms_for_user("@u:t"))
    assert.same({}, s:memberships_not_joined("@u:t", s:current_position()))
    -- kept: a second call runs no statement
    local before = s.conn.statements
    assert.same({ "!a:t", "!b:t" }, s:rooms_for_user("@u:t"))
    assert.equal(before, s.conn.statements)
    assert.is_true(s:room_set_for_user("@u:t")["!b:t"])
    -- another user's change keeps it; the user's own change drops it
    member("$v1", "!a:t", "@v:t", "join", 2)
    before = s.conn.statements
    s:rooms_for_user("@u:t")
    assert.equal(before, s.conn.statements)
    member("$a2", "!a:t", "@u:t", "leave", 3)
    local at_leave = s:current_position()
    assert.same({ "!b:t" }, s:rooms_for_user("@u:t"))
    assert.is_nil(s:room_set_for_user("@u:t")["!a:t"])
    member("$c1", "!c:t", "@u:t", "invite", 1)
    local ids = {}
    for i, c in ipairs(s:memberships_not_joined("@u:t", s:current_position())) do ids[i] = c.event_id end
    assert.same({ "$a2", "$c1" }, ids)
    ids = {}
    for i, c in ipairs(s:memberships_not_joined("@u:t", at_leave)) do ids[i] = c.event_id end
    assert.same({ "$a2" }, ids)
    -- a rejoin: the room is no longer a non-join
    member("$a3", "!a:t", "@u:t", "join", 4)
    assert.same({ "!a:t", "!b:t" }, s:rooms_for_user("@u:t"))
    ids = {}
    for i, c in ipairs(s:memberships_not_joined("@u:t", s:current_position())) do ids[i] = c.event_id end
    assert.same({ "$c1" }, ids)
  end)

  it("reports a user's membership changes between two tokens", function()
    local function member(id, room, user, membership, depth)
      return assert(s:persist(id, { room_id = room, type = "m.room.member", state_key = user,
        sender = user, depth = depth, origin_server_ts = 1, prev_events = json.array {},
        content = { membership = membership } }))
    end
    member("$j1", "!a:t", "@u:t", "join", 1)
    local mid = s:current_token()
    member("$j2", "!b:t", "@u:t", "join", 1)
    member("$v1", "!b:t", "@v:t", "join", 2)
    member("$l1", "!a:t", "@u:t", "leave", 2)
    local all = assert(s:membership_changes("@u:t"))
    assert.same({ "$j1", "$j2", "$l1" }, ids_of(all))
    local since = assert(s:membership_changes("@u:t", mid))
    assert.same({ "$j2", "$l1" }, ids_of(since))
    assert.equal("!a:t", since[2].room_id)
    assert.equal("leave", since[2].membership)
    assert.same({}, assert(s:membership_changes("@nobody:t", mid)))
    assert.same({ "!b:t" }, s:rooms_for_user("@u:t"))
    assert.same({ "!a:t" }, s:rooms_for_user("@u:t", "leave"))
  end)

  it("caches recent events until the room changes", function()
    for d = 1, 5 do assert(s:persist("$e" .. d, msg("!r:t", d, d > 1 and { "$e" .. (d - 1) } or nil))) end
    local a = assert(s:recent_events("!r:t", 3))
    assert.same({ "$e3", "$e4", "$e5" }, ids_of(a.events))
    assert.is_true(a.limited)
    assert.equal(a, assert(s:recent_events("!r:t", 3)))        -- the cached table
    local older = assert(s:paginate("!r:t", a.start, { dir = "b" }))
    assert.same({ "$e2", "$e1" }, ids_of(older.events))
    -- a backfilled event changes old answers: the cache is dropped
    assert(s:persist("$bf", msg("!r:t", 4, { "$e3" }), { backfilled = true }))
    local b = assert(s:recent_events("!r:t", 3, a["end"]))
    assert.are_not.equal(a, b)
    assert.same({ "$bf", "$e4", "$e5" }, ids_of(b.events))   -- (4,-1) < (4,4)
  end)

  it("takes back NIDs and stream positions when an enclosing transaction rolls back", function()
    assert(s:persist("$keep", msg("!keep:t", 1)))
    local tok = s:current_token()
    local r, m = s.conn:transaction(function()
      assert(s:persist("$gone", msg("!gone:t", 1, nil, { type = "x.gone" })))
      assert(s:persist("$gone2", msg("!keep:t", 2, { "$keep" })))
      return nil, "caller gave up"
    end)
    assert.is_nil(r); assert.equal("caller gave up", m)
    assert.equal(tok, s:current_token())
    assert.is_nil(s:room_nid("!gone:t"))
    assert.is_nil(s:type_nid("x.gone"))
    assert.same({ "$keep" }, s:forward_extremities("!keep:t"))
    -- new rooms get fresh NIDs: no two rooms share one
    assert(s:persist("$new", msg("!new:t", 1)))
    assert(s:persist("$new2", msg("!keep:t", 2, { "$keep" })))
    assert.equal(s.conn:value("SELECT count(*) FROM rooms"),
      s.conn:value("SELECT count(DISTINCT room_nid) FROM events"))
    assert.equal(2, s.conn:value("SELECT count(*) FROM rooms"))
    assert.equal(tonumber(tok:sub(2)) + 2, s:current_position())
    -- and a committed enclosing transaction publishes the changes
    local since = s:current_position()
    assert(s.conn:transaction(function()
      assert(s:persist("$in_txn", msg("!keep:t", 3, { "$new2" })))
      assert.equal(since, s:current_position())        -- not yet visible
      return true
    end))
    assert.equal(since + 1, s:current_position())
    assert.same({ "$in_txn" }, ids_of(assert(s:room_stream("!keep:t", since)).events))
  end)

  it("rewrites membership and rejection rows when an outlier joins the DAG", function()
    local function member(membership)
      return { room_id = "!m:t", type = "m.room.member", state_key = "@u:t", sender = "@u:t", depth = 2,
        origin_server_ts = 1, prev_events = json.array { "$c" }, content = { membership = membership } }
    end
    assert(s:persist("$c", msg("!m:t", 1)))
    local pos0 = s:current_position()
    assert(s:persist("$inv", member("invite"), { outlier = true }))
    -- an outlier invite shows in the user's membership changes (invites over
    -- federation reach clients that way), not in rooms_for_user
    assert.same({ "$inv" }, ids_of(assert(s:membership_changes("@u:t", pos0))))
    assert.same({}, s:rooms_for_user("@u:t", "invite"))
    local pos = s:current_position()
    -- joins the DAG but rejected: its membership no longer counts
    assert(s:persist("$inv", member("invite"), { rejected = "not allowed" }))
    assert.same({}, assert(s:membership_changes("@u:t", pos0)))
    assert.equal("not allowed", s.conn:value(
      "SELECT reason FROM event_rejections r JOIN events e ON e.event_nid = r.event_nid WHERE e.event_id = '$inv'"))
    assert.same({}, assert(s:membership_changes("@u:t", pos)))
    -- a rejected outlier that joins the DAG as valid gets its membership row,
    -- and the change is seen by membership_changes
    assert(s:persist("$join", member("join"), { outlier = true, rejected = true }))
    pos = s:current_position()
    assert(s:persist("$join", member("join")))
    assert.same({ "$join" }, ids_of(assert(s:membership_changes("@u:t", pos))))
    assert.equal(0, s.conn:value(
      "SELECT count(*) FROM event_rejections r JOIN events e ON e.event_nid = r.event_nid WHERE e.event_id = '$join'"))
  end)

  it("never lets backfill change the forward extremities", function()
    assert(s:persist("$live", msg("!b:t", 5)))
    -- an old event arriving by backfill with no children and a greater depth
    assert(s:persist("$old", msg("!b:t", 9, { "$older" }), { backfilled = true }))
    assert.same({ "$live" }, s:forward_extremities("!b:t"))
    assert.same({ "$older" }, s:backward_extremities("!b:t"))
  end)

  it("refuses a stored event ID in another room even for plain duplicates", function()
    assert(s:persist("$d", msg("!a:t", 1)))
    local r, _, code = s:persist("$d", msg("!b:t", 1))
    assert.is_nil(r)
    assert.equal("bad_event", code)
  end)

  it("answers limit 0 with next when events remain", function()
    for d = 1, 3 do assert(s:persist("$z" .. d, msg("!z:t", d, d > 1 and { "$z" .. (d - 1) } or nil))) end
    local page = assert(s:paginate("!z:t", nil, { dir = "b", limit = 0 }))
    assert.same({}, page.events)
    assert.equal(page.start, page.next)
    local ctx = assert(s:context("!z:t", "$z2", 0, 0))
    assert.is_true(ctx.more_before)
    assert.is_true(ctx.more_after)
    ctx = assert(s:context("!z:t", "$z1", 0, 0))
    assert.is_false(ctx.more_before)
    -- stream queries refuse topological tokens
    local r, _, code = s:room_stream("!z:t", "t1-1")
    assert.is_nil(r); assert.equal("bad_token", code)
  end)

  it("never pages past until_event, either way", function()
    for d = 1, 6 do assert(s:persist("$u" .. d, msg("!u:t", d, d > 1 and { "$u" .. (d - 1) } or nil))) end
    assert.equal("t4-4", tostring(s:event_end_token(s:room_nid("!u:t"), "$u4")))
    assert.is_nil(s:event_end_token(s:room_nid("!u:t"), "$missing"))
    -- backwards from the end, or from a token after it: starts at the event
    local page = assert(s:paginate("!u:t", nil, { dir = "b", limit = 2, until_event = "$u4" }))
    assert.same({ "$u4", "$u3" }, ids_of(page.events))
    assert.equal("t4-4", page.start)
    page = assert(s:paginate("!u:t", "s6", { dir = "b", limit = 2, until_event = "$u4" }))
    assert.same({ "$u4", "$u3" }, ids_of(page.events))
    assert.equal("s6", page.start)
    -- a from before it is kept
    page = assert(s:paginate("!u:t", "t2-2", { dir = "b", limit = 5, until_event = "$u4" }))
    assert.same({ "$u2", "$u1" }, ids_of(page.events))
    -- forwards: up to and including it, then nothing left
    page = assert(s:paginate("!u:t", nil, { dir = "f", limit = 10, until_event = "$u4" }))
    assert.same({ "$u1", "$u2", "$u3", "$u4" }, ids_of(page.events))
    assert.is_nil(page.next); assert.is_nil(page.resume)
    -- an unknown event changes nothing
    page = assert(s:paginate("!u:t", nil, { dir = "b", limit = 1, until_event = "$missing" }))
    assert.same({ "$u6" }, ids_of(page.events))
    -- context: the events after stop at it
    local ctx = assert(s:context("!u:t", "$u2", 5, 5, nil, "$u4"))
    assert.same({ "$u3", "$u4" }, ids_of(ctx.after))
    assert.is_false(ctx.more_after)
  end)

  it("keeps a compiled filter's SQL apart between stores", function()
    local path2 = tmpdb()
    local s2 = assert(store_mod.open { path = path2 })
    -- the same custom type gets different NIDs in the two stores
    assert(s:persist("$x1", msg("!f:t", 1, nil, { type = "x.first" })))
    assert(s:persist("$x2", msg("!f:t", 2, { "$x1" }, { type = "x.second" })))
    assert(s2:persist("$y1", msg("!f:t", 1, nil, { type = "x.second" })))
    assert(s2:persist("$y2", msg("!f:t", 2, { "$y1" }, { type = "x.first" })))
    local f = require("loom.store.filter").compile { types = { "x.first" } }
    assert.same({ "$x1" }, ids_of(assert(s:paginate("!f:t", nil, { filter = f })).events))
    assert.same({ "$y2" }, ids_of(assert(s2:paginate("!f:t", nil, { filter = f })).events))
    s2:close()
    cleanup(path2)
  end)

  it("streams the events an application service wants, in stream order, in pages", function()
    local regex = core.regex
    local users = assert(regex.compile("@_bot_.*:t", { anchored = true }))
    local rooms = assert(regex.compile("!bridged.*", { anchored = true }))
    local joined = { ["!botroom:t"] = true }   -- what the service's registry knows
    local seen = {}
    local function wanted(room_id, etype, state_key)
      seen[#seen + 1] = { room_id, etype, state_key }
      return rooms:match(room_id) or joined[room_id] or (etype == "m.room.member" and users:match(state_key))
    end
    local from = s:current_token()
    assert(s:persist("$1", msg("!bridged1:t", 1)))
    assert(s:persist("$2", msg("!plain:t", 1)))
    assert(s:persist("$3", { room_id = "!plain2:t", type = "m.room.member", state_key = "@_bot_x:t",
      sender = "@a:t", depth = 2, origin_server_ts = 1, prev_events = json.array {},
      content = { membership = "invite" } }))
    assert(s:persist("$4", { room_id = "!botroom:t", type = "m.room.member", state_key = "@_bot_y:t",
      sender = "@_bot_y:t", depth = 1, origin_server_ts = 1, prev_events = json.array {},
      content = { membership = "join" } }))
    assert(s:persist("$5", msg("!botroom:t", 2, { "$4" })))
    local res = assert(s:appservice_stream(wanted, from))
    assert.same({ "$1", "$3", "$4", "$5" }, ids_of(res.events))
    assert.equal(s:current_token(), res.next)
    assert.same({ "!plain2:t", "m.room.member", "@_bot_x:t" }, seen[3])
    assert.same({ "!plain:t", "m.room.message" }, seen[2])
    local two = assert(s:appservice_stream(wanted, from, nil, 2))
    assert.same({ "$1", "$3" }, ids_of(two.events))
    local rest = assert(s:appservice_stream(wanted, two.next))
    assert.same({ "$4", "$5" }, ids_of(rest.events))
    assert.has_error(function() s:appservice_stream(nil, from) end)
    local _, _, code = s:appservice_stream(wanted, "bogus")
    assert.is_string(code)
  end)
  it("loads stored events by ID and NID, singly and in batches, with their metadata", function()
    local r1 = assert(s:persist("$e1", msg("!r:t", 1), { room_version = "11" }))
    local r2 = assert(s:persist("$e2", msg("!r:t", 2, { "$e1" }), { rejected = "no" }))
    local ev, meta = assert(s:event("$e1"))
    assert.equal("$e1", ev.event_id)
    assert.equal("x", ev.content.body)
    assert.is_true(json.is_array(ev.prev_events))
    assert.equal(r1.event_nid, meta.event_nid)
    assert.equal("!r:t", meta.room_id)
    assert.is_false(meta.rejected)
    local ev2, meta2 = assert(s:event_by_nid(r2.event_nid))
    assert.equal("$e2", ev2.event_id)
    assert.is_true(meta2.rejected)
    assert.equal(ev, (s:event_by_nid(r1.event_nid)))       -- cached
    local batch = assert(s:events_by_nid { r1.event_nid, r2.event_nid, 999 })
    assert.equal("$e1", batch[r1.event_nid][1].event_id)
    assert.equal("$e2", batch[r2.event_nid][1].event_id)
    assert.is_nil(batch[999])
    local by_id = assert(s:events { "$e1", "$nope" })
    assert.equal(r1.event_nid, by_id["$e1"][2].event_nid)
    assert.is_nil(by_id["$nope"])
    local none, _, code = s:event("$nope")
    assert.is_nil(none); assert.equal("not_found", code)
    assert.equal("11", s:room_version("!r:t"))
  end)

end)

describe("loom.db", function()
  local path, conn

  before_each(function()
    path = tmpdb()
    conn = assert(db.open { path = path })
  end)

  after_each(function()
    conn:close()
    cleanup(path)
  end)

  it("runs in WAL mode with migrations applied once", function()
    assert.equal("wal", conn:value("PRAGMA journal_mode"))
    local list = migrate.list("sqlite")
    assert.is_true(#list >= 1)
    assert.equal(list[#list].version, conn:value("SELECT max(version) FROM schema_version"))
    assert.equal(#list, conn:value("SELECT count(*) FROM schema_version"))
    conn:close()
    conn = assert(db.open { path = path })
    assert.equal(#list, conn:value("SELECT count(*) FROM schema_version"))
    assert.equal(0, migrate.run(conn))
  end)

  it("nests transactions with savepoints and rolls back on failure", function()
    assert(conn:exec("CREATE TABLE t (v INTEGER)"))
    local ok = conn:transaction(function()
      conn:run("INSERT INTO t VALUES (1)")
      local r, m, code = conn:transaction(function()
        conn:run("INSERT INTO t VALUES (2)")
        return nil, "changed my mind", "test"
      end)
      assert.is_nil(r); assert.equal("changed my mind", m); assert.equal("test", code)
      assert.has_error(function()
        conn:transaction(function()
          conn:run("INSERT INTO t VALUES (3)")
          error("boom")
        end)
      end)
      conn:transaction(function() conn:run("INSERT INTO t VALUES (4)"); return true end)
      return true
    end)
    assert.is_true(ok)
    assert.same({ 1, 4 }, conn:column("SELECT v FROM t ORDER BY v"))
    assert.is_false(conn:in_transaction())
    local r = conn:transaction(function() conn:run("INSERT INTO t VALUES (5)"); return nil, "no" end)
    assert.is_nil(r)
    assert.same({ 1, 4 }, conn:column("SELECT v FROM t ORDER BY v"))
  end)

  it("keeps statements callers hold usable when the statement cache turns over", function()
    local held = assert(conn:prepare("SELECT 42"))
    for i = 1, 600 do assert(conn:value("SELECT " .. i)) end
    assert.same({ 42 }, held:first())
  end)

  it("raises a loom.db.Error for a statement the engine fails; db.open reports nil, message, code", function()
    local ok, e = pcall(conn.run, conn, "INSERT INTO nowhere VALUES (1)")
    assert.is_false(ok)
    assert.is_true(db.is_error(e))
    assert.equal("sqlite_error", e.code)
    assert.matches("nowhere", e.message)
    assert.matches("^database error %(sqlite_error%)", tostring(e))
    conn:run("CREATE TABLE IF NOT EXISTS uniq (k INTEGER PRIMARY KEY)")
    conn:run("INSERT INTO uniq VALUES (1)")
    ok, e = pcall(conn.run, conn, "INSERT INTO uniq VALUES (1)")
    assert.is_false(ok); assert.equal("sqlite_constraint", e.code)
    ok, e = pcall(conn.value, conn, "SELECT nothing FROM uniq")
    assert.is_false(ok); assert.equal("sqlite_error", e.code)
    ok, e = pcall(conn.exec, conn, "THIS IS NOT SQL")
    assert.is_false(ok); assert.is_true(db.is_error(e))
    -- no row is not a failure
    assert.is_nil(conn:value("SELECT k FROM uniq WHERE k = 2"))
    assert.is_false(conn:first("SELECT k FROM uniq WHERE k = 2"))
    local bad, _, bcode = db.open { path = "/nonexistent-dir/x/y.db" }
    assert.is_nil(bad); assert.equal("sqlite_cantopen", bcode)
    local none, _, ecode = db.open { path = path, engine = "postgres" }
    assert.is_nil(none); assert.equal("db_engine", ecode)
  end)
end)

describe("store subscriptions", function()
  it("tell subscribers about committed events only, after the commit", function()
    local path = tmpdb()
    local s = assert(store_mod.open { path = path })
    local notes = {}
    local stop = s:subscribe(function(n) notes[#notes + 1] = n end)
    assert(s:persist("$a", msg("!r:t", 1)))
    assert.equal(1, #notes)
    assert.equal(1, notes[1].position)
    assert.equal(1, notes[1].rooms["!r:t"])
    s.conn:transaction(function()
      assert(s:persist("$b", msg("!r:t", 2, { "$a" })))
      assert.equal(1, #notes)                      -- not before the commit
      return nil, "rolled back"
    end)
    assert.equal(1, #notes)                        -- nor after a rollback
    assert(s:persist("$m", { room_id = "!r:t", type = "m.room.member", state_key = "@u:t", sender = "@u:t",
      depth = 2, origin_server_ts = 1, prev_events = json.array { "$a" }, content = { membership = "join" } }))
    assert.equal(2, #notes)
    assert.equal(notes[2].position, notes[2].users["@u:t"])
    assert(s:persist("$bf", msg("!r:t", 1, { "$x" }), { backfilled = true }))
    assert.is_nil(notes[3] and notes[3].rooms["!r:t"])   -- backfill is not news
    stop()
    assert(s:persist("$c", msg("!r:t", 3, { "$m" })))
    assert.is_true(#notes <= 3)
    s:close()
    cleanup(path)
  end)
end)
