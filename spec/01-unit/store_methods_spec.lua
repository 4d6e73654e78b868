-- The store methods that answer for the endpoints, the room service and the
-- sync engine (aliases, the directory, transaction IDs, filters, signing
-- keys, memberships as of a position, redactions), the chunked IN lists
-- past SQLite's parameter limit, and failures that raise instead of
-- answering empty.
local store_mod = require "loom.store"
local sql = require "loom.store.sql"
local db = require "loom.db"
local core = require "loom.core"

local tmp = require "support.tmpdb"

local ev = tmp.message

local function member(room, depth, prevs, user, membership)
  return ev(room, depth, prevs, { type = "m.room.member", state_key = user, sender = user,
    content = { membership = membership } })
end

describe("store methods", function()
  local path, s

  before_each(function() s, path = tmp.open_store() end)
  after_each(function() tmp.close_store(s, path) end)

  describe("loom.store.sql", function()
    it("writes IN lists in chunks that cover every key once", function()
      assert.equal("?", sql.marks(1))
      assert.equal("?,?,?", sql.marks(3))
      local keys = {}
      for i = 1, 1234 do keys[i] = i end
      local seen, sizes = {}, {}
      for marks, chunk in sql.chunks(keys) do
        sizes[#sizes + 1] = #chunk
        assert.equal(#chunk, select(2, marks:gsub("%?", "")))
        for _, k in ipairs(chunk) do assert.is_nil(seen[k]); seen[k] = true end
      end
      assert.same({ 500, 500, 234 }, sizes)
      for i = 1, 1234 do assert.is_true(seen[i]) end
      local steps = 0
      for _ in sql.chunks({}) do steps = steps + 1 end
      assert.equal(0, steps)
      sizes = {}
      for _, chunk in sql.chunks({ 1, 2, 3, 4, 5 }, 2) do sizes[#sizes + 1] = #chunk end
      assert.same({ 2, 2, 1 }, sizes)
      assert.equal(sql.TIMELINE, store_mod.TIMELINE)
    end)

    it("maps keys to values over chunked IN lists, the statement's own parameters first", function()
      s.conn:exec("CREATE TABLE kv (owner TEXT, k INTEGER, v TEXT)")
      local keys = {}
      for i = 1, 1234 do
        keys[i] = i
        assert(s.conn:run("INSERT INTO kv VALUES (?, ?, ?)", i % 2 == 0 and "even" or "odd", i, "v" .. i))
      end
      local got = sql.map_in(s.conn, "SELECT k, v FROM kv WHERE owner = ? AND k IN (", keys, "even")
      local n = 0
      for k, v in pairs(got) do
        n = n + 1
        assert.equal(0, k % 2)
        assert.equal("v" .. k, v)
      end
      assert.equal(617, n)
      assert.same({ [3] = "v3" }, sql.map_in(s.conn, "SELECT k, v FROM kv WHERE k IN (", { 3, 5000 }))
      assert.same({}, sql.map_in(s.conn, "SELECT k, v FROM kv WHERE k IN (", {}))
    end)
  end)

  it("keeps aliases and directory visibility", function()
    assert.is_nil(s:alias_room("#a:test"))
    assert.is_true(s:add_alias("#a:test", "!r:test", "@u:test"))
    local ok, msg, code = s:add_alias("#a:test", "!other:test", "@v:test")
    assert.is_nil(ok); assert.is_string(msg); assert.equal("alias_taken", code)
    assert.equal("!r:test", s:alias_room("#a:test"))
    assert.same({ "!r:test", "@u:test" }, { s:alias_entry("#a:test") })
    assert.is_true(s:delete_alias("#a:test"))
    assert.is_false(s:delete_alias("#a:test"))
    assert.is_nil(s:alias_entry("#a:test"))

    assert.is_nil(s:room_visibility("!r:test"))
    s:set_room_visibility("!r:test", "public")
    s:set_room_visibility("!b:test", "public")
    s:set_room_visibility("!c:test", "private")
    assert.equal("public", s:room_visibility("!r:test"))
    assert.same({ "!b:test", "!r:test" }, s:public_room_ids())
    s:set_room_visibility("!r:test", "private")
    assert.same({ "!b:test" }, s:public_room_ids())
  end)

  it("keeps transaction IDs per user and device, and finds them for many events", function()
    assert.is_nil(s:txn_event("@u:test", "DEV", "send:!r:test", "t1"))
    local ids = {}
    s:transaction(function()
      for i = 1, 1200 do
        ids[i] = "$e" .. i
        s:record_txn("@u:test", "DEV", "send:!r:test", "t" .. i, ids[i])
      end
      return true
    end)
    s:record_txn("@u:test", nil, "send:!r:test", "t1", "$nodevice")
    assert.equal("$e1", s:txn_event("@u:test", "DEV", "send:!r:test", "t1"))
    assert.equal("$nodevice", s:txn_event("@u:test", nil, "send:!r:test", "t1"))
    assert.is_nil(s:txn_event("@u:test", "OTHER", "send:!r:test", "t1"))
    ids[#ids + 1] = "$unknown"
    local found = s:txn_ids("@u:test", "DEV", ids)
    local n = 0
    for _ in pairs(found) do n = n + 1 end
    assert.equal(1200, n)
    assert.equal("t777", found["$e777"])
    assert.same({}, s:txn_ids("@v:test", "DEV", ids))
    -- the same transaction twice is a database failure, and it raises
    local ok, e = pcall(s.record_txn, s, "@u:test", "DEV", "send:!r:test", "t1", "$again")
    assert.is_false(ok); assert.is_true(db.is_error(e)); assert.equal("sqlite_constraint", e.code)
  end)

  it("keeps filters per user, numbered from 0", function()
    assert.equal(0, s:save_filter("@u:test", '{"a":1}'))
    assert.equal(1, s:save_filter("@u:test", '{"a":2}'))
    assert.equal(0, s:save_filter("@v:test", '{"b":1}'))
    assert.equal('{"a":2}', s:filter_json("@u:test", 1))
    assert.equal('{"b":1}', s:filter_json("@v:test", 0))
    assert.is_nil(s:filter_json("@v:test", 1))
  end)

  it("keeps the server's signing key", function()
    assert.is_nil(s:signing_key())
    local seed = string.rep("\0\1", 16)
    s:add_signing_key("ed25519:abc", seed)
    assert.same({ "ed25519:abc", seed }, { s:signing_key() })
    local migrations = require("loom.db.migrate").list("sqlite")
    assert.equal(s:schema_version(), migrations[#migrations].version)
    local acc = s:accounts { server_name = "test", iterations = 1000 }
    assert.equal("@alice:test", acc:register("alice", "pw"))
    local _, _, code = acc:register("alice", "pw")
    assert.equal("user_in_use", code)
  end)

  it("answers memberships as of a position, joins and the timeline event at a position", function()
    local room = "!m:test"
    local c = assert(s:persist("$c", ev(room, 1, {}, { type = "m.room.create", state_key = "" })))
    local j = assert(s:persist("$j", member(room, 2, { "$c" }, "@u:test", "join")))
    local m = assert(s:persist("$m", ev(room, 3, { "$j" })))
    local l = assert(s:persist("$l", member(room, 4, { "$m" }, "@u:test", "leave")))
    local rn = s:room_nid(room)
    assert.is_nil(s:membership_at("@u:test", rn, c.stream_ordering))
    assert.equal("join", s:membership_at("@u:test", rn, j.stream_ordering))
    assert.equal("join", s:membership_at("@u:test", rn, m.stream_ordering))
    assert.equal("leave", s:membership_at("@u:test", rn, l.stream_ordering))
    assert.same({ j.stream_ordering }, s:join_positions("@u:test", rn))
    assert.is_true(s:ever_member("@u:test", rn))
    assert.is_false(s:ever_member("@x:test", rn))
    local nid, id, current = s:timeline_event_at(rn, m.stream_ordering)
    assert.equal(m.event_nid, nid); assert.equal("$m", id); assert.is_nil(current)
    s:set_current_after(m.event_nid, 42)
    assert.same({ m.event_nid, "$m", 42 }, { s:timeline_event_at(rn, m.stream_ordering) })
    assert.is_nil(s:timeline_event_at(rn, 0))
    -- a soft-failed event is not in the timeline
    local sf = assert(s:persist("$sf", ev(room, 5, { "$l" }), { soft_failed = true }))
    assert.equal("$l", select(2, s:timeline_event_at(rn, sf.stream_ordering)))
  end)

  it("records redactions and finds them for many events", function()
    local ids = {}
    for i = 1, 1100 do ids[i] = "$t" .. i end
    s:transaction(function()
      for i = 1, 1100, 3 do s:record_redaction(ids[i], "$r" .. i) end
      s:record_redaction("$t1", "$r1")
      s:record_redaction("$t1", "$r0")
      return true
    end)
    local found = s:redactions_of(ids)
    assert.equal(367 + 1, #found)
    assert.same({ "$t1", "$r0" }, found[1])
    assert.same({ "$t1", "$r1" }, found[2])
    assert.same({}, s:redactions_of({}))
  end)

  it("names many state keys past the IN-list size", function()
    local nids, want = {}, {}
    s:transaction(function()
      for i = 1, 700 do
        local n = assert(s:ensure_state_key_nid("@k" .. i .. ":test"))
        nids[#nids + 1] = n; nids[#nids + 1] = n
        want[n] = "@k" .. i .. ":test"
      end
      return true
    end)
    assert.same(want, s:state_key_names(nids))
  end)

  it("streams more rooms than one IN list holds", function()
    local rooms, from = {}, s:current_position()
    local items = {}
    for i = 1, 620 do
      rooms[i] = ("!r%d:test"):format(i)
      items[i] = { "$ev" .. i, ev(rooms[i], 1) }
    end
    assert(s:persist_events(items))
    local res = assert(s:rooms_stream(rooms, from, nil, 5))
    local n = 0
    for room_id, r in pairs(res) do
      n = n + 1
      assert.equal(1, #r.events)
      assert.equal(room_id, r.events[1].room_id)
    end
    assert.equal(620, n)
  end)

  it("store.open reports a database it cannot read as nil, message, code", function()
    local p = tmp.path()
    local bare, msg, code = store_mod.open { path = p, migrate = false }
    assert.is_nil(bare); assert.matches("event_types", msg); assert.equal("sqlite_error", code)
    tmp.remove(p)
    local garbage = os.tmpname()
    local f = assert(io.open(garbage, "wb"))
    f:write(("not a database\n"):rep(100))
    f:close()
    local none, _, gcode = store_mod.open { path = garbage }
    assert.is_nil(none); assert.equal("sqlite_notadb", gcode)
    os.remove(garbage)
  end)

  it("raises when the database fails to read; a write it cannot begin is not done", function()
    local room = "!f:test"
    assert(s:persist("$a", ev(room, 1)))
    local rn = s:room_nid(room)
    local garbage = os.tmpname()
    local f = assert(io.open(garbage, "wb"))
    f:write(("not a database\n"):rep(100))
    f:close()
    local conn = s.conn
    local good, stmts = conn.handle, conn.stmts
    conn.handle, conn.stmts, conn.nstmts = assert(core.sqlite.open(garbage)), {}, 0
    local function fails(name, ...)
      local ok, e = pcall(s[name], s, ...)
      assert.is_false(ok, name)
      assert.is_true(db.is_error(e), name .. ": " .. tostring(e))
      assert.equal("sqlite_notadb", e.code, name)
    end
    fails("rooms_for_user", "@a:test")
    fails("membership_changes", "@a:test", nil)
    fails("recent_events", room, 10)
    fails("paginate", room, nil, { dir = "b" })
    fails("events", { "$a" })
    fails("alias_room", "#x:test")
    fails("public_room_ids")
    fails("membership_at", "@a:test", rn, 1)
    fails("timeline_event_at", rn, 1)
    fails("txn_ids", "@a:test", "D", { "$a" })
    -- a write the engine refuses to begin reports it (loom.db's transaction contract)
    local r, _, code = s:persist("$b", ev(room, 2, { "$a" }))
    assert.is_nil(r); assert.equal("sqlite_notadb", code)
    conn.handle:close()
    conn.handle, conn.stmts, conn.nstmts = good, stmts, 0
    os.remove(garbage)
    -- nothing was half-written, and the store works again
    assert.is_nil(s:event("$b"))
    assert(s:persist("$b", ev(room, 2, { "$a" })))
    assert.equal(2, #assert(s:recent_events(room, 10)).events)
  end)
end)
