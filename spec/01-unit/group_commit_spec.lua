-- Durable commits and group commit (loom.db): transactions of tasks started
-- in one loop turn share one COMMIT, each is acknowledged only after it, a
-- member's failure is its own, a failed COMMIT fails every member and takes
-- back the store's in-memory state, and callers outside tasks commit an open
-- group first. All on real SQLite files.
local uv = require "luv"
local db = require "loom.db"
local async = require "loom.async"
local store_mod = require "loom.store"
local json = require("loom.core").json

local tmp = require "support.tmpdb"

-- Count the COMMITs the connection sends to the engine (and remember when,
-- as a sequence number shared with the tasks' acknowledgements).
local function count_commits(conn, seq)
  local real = conn.handle
  local counter = { commits = 0 }
  conn.handle = setmetatable({
    exec = function(_, sql)
      if sql == "COMMIT" then
        counter.commits = counter.commits + 1
        seq[#seq + 1] = "COMMIT"
      end
      return real:exec(sql)
    end,
  }, { __index = function(_, k)
    local f = real[k]
    return function(_, ...) return f(real, ...) end
  end })
  return counter
end

local function open(path, opts)
  local conn = assert(db.open { path = path, migrate = false, group_commit = opts and opts.group_commit })
  assert(conn:exec("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER)"))
  return conn
end

-- Run the loop until every task ended; errors in tasks fail the test.
local function spawn_all(n, fn)
  local results, ended = {}, 0
  for i = 1, n do
    async.spawn(fn, i, function(ok, res)
      assert(ok, res)
      results[i] = res
      ended = ended + 1
    end)
  end
  local guard = uv.new_timer()
  guard:start(5000, 0, function() guard:close(); uv.stop() end)
  while ended < n and uv.loop_alive() do uv.run("once") end
  if not guard:is_closing() then guard:close() end
  uv.run("nowait")
  assert.equal(n, ended, "tasks did not end")
  return results
end

describe("loom.db durable commits", function()
  local path
  before_each(function() path = tmp.path() end)
  after_each(function() tmp.remove(path) end)

  it("are synchronous = FULL by default; NORMAL on request; bad values raise", function()
    local conn = open(path)
    assert.equal(2, conn:value("PRAGMA synchronous"))
    conn:close()
    local normal = assert(db.open { path = path, migrate = false, synchronous = "normal" })
    assert.equal(1, normal:value("PRAGMA synchronous"))
    normal:close()
    assert.has_error(function() db.open { path = path, synchronous = "FULL; DROP TABLE t" } end,
      "loom.db.open: config.synchronous must be one of OFF, NORMAL, FULL, EXTRA")
    assert.has_error(function() db.open { path = path, synchronous = 2 } end)
  end)
end)

describe("loom.db group commit", function()
  local path
  before_each(function() path = tmp.path() end)
  after_each(function() tmp.remove(path) end)

  it("commits N tasks of one loop turn with one COMMIT, acknowledging each after it", function()
    local conn = open(path)
    local seq = {}
    local counter = count_commits(conn, seq)
    local published = {}
    local N = 8
    local results = spawn_all(N, function(i)
      local r = assert(conn:transaction(function()
        assert(conn:run("INSERT INTO t (k, v) VALUES (?, ?)", "k" .. i, i))
        -- a member sees what earlier members of its group wrote
        local before = conn:value("SELECT count(*) FROM t")
        assert.equal(i, before)
        conn:after_commit(function() published[#published + 1] = i end)
        return "r" .. i, i
      end))
      -- acknowledged: the row is on disk, as another connection sees
      local other = assert(db.open { path = path, migrate = false })
      local seen = other:value("SELECT count(*) FROM t")
      other:close()
      seq[#seq + 1] = "ack" .. i
      return { r, seen }
    end)
    assert.equal(1, counter.commits)
    assert.equal("COMMIT", seq[1])
    for i = 1, N do
      assert.same({ "r" .. i, N }, results[i])
      assert.equal("ack" .. i, seq[i + 1])
    end
    assert.same({ 1, 2, 3, 4, 5, 6, 7, 8 }, published)
    conn:close()
  end)

  it("commits each task alone with group_commit = false", function()
    local conn = open(path, { group_commit = false })
    local counter = count_commits(conn, {})
    spawn_all(5, function(i)
      return assert(conn:transaction(function()
        return conn:run("INSERT INTO t (k, v) VALUES (?, ?)", "k" .. i, i)
      end))
    end)
    assert.equal(5, counter.commits)
    conn:close()
  end)

  it("rolls back only the member that fails, with only its hooks", function()
    local conn = open(path)
    local counter = count_commits(conn, {})
    local log = {}
    local results = spawn_all(4, function(i)
      local ok, r, msg = pcall(conn.transaction, conn, function()
        assert(conn:run("INSERT INTO t (k, v) VALUES (?, ?)", "k" .. i, i))
        conn:on_rollback(function() log[#log + 1] = "rollback" .. i end)
        conn:after_commit(function() log[#log + 1] = "commit" .. i end)
        if i == 2 then return nil, "refused", "bad_input" end
        if i == 3 then error("boom", 0) end
        return "ok"
      end)
      return { ok, r, msg }
    end)
    assert.same({ true, "ok" }, { results[1][1], results[1][2] })
    assert.same({ true, nil, "refused" }, results[2])
    assert.same({ false, "boom" }, { results[3][1], results[3][2] })
    assert.same({ true, "ok" }, { results[4][1], results[4][2] })
    assert.equal(1, counter.commits)
    assert.same({ "k1", "k4" }, conn:column("SELECT k FROM t ORDER BY k"))
    -- failures are known (and their hooks run) at once; commits after the COMMIT
    assert.same({ "rollback2", "rollback3", "commit1", "commit4" }, log)
    conn:close()
  end)

  it("keeps nested transactions of a member working", function()
    local conn = open(path)
    spawn_all(3, function(i)
      return assert(conn:transaction(function()
        assert(conn:run("INSERT INTO t (k, v) VALUES (?, ?)", "outer" .. i, i))
        local r, msg = conn:transaction(function()
          assert(conn:run("INSERT INTO t (k, v) VALUES (?, ?)", "inner" .. i, i))
          if i == 2 then return nil, "inner refused" end
          return true
        end)
        assert.equal(i ~= 2 and true or nil, r)
        if i == 2 then assert.equal("inner refused", msg) end
        assert.is_true(conn:in_transaction())
        return true
      end))
    end)
    assert.same({ "inner1", "inner3", "outer1", "outer2", "outer3" }, conn:column("SELECT k FROM t ORDER BY k"))
    conn:close()
  end)

  it("fails every member when the COMMIT fails, running their rollback hooks", function()
    local conn = open(path)
    -- a deferred foreign key is checked by COMMIT itself: a real COMMIT failure
    assert(conn:exec([[CREATE TABLE parent (id INTEGER PRIMARY KEY);
      CREATE TABLE child (pid INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)]]))
    assert(conn:exec("PRAGMA foreign_keys = ON"))
    local log = {}
    local results = spawn_all(3, function(i)
      return table.pack(conn:transaction(function()
        assert(conn:run("INSERT INTO t (k, v) VALUES (?, ?)", "k" .. i, i))
        if i == 3 then assert(conn:run("INSERT INTO child (pid) VALUES (42)")) end
        conn:on_rollback(function() log[#log + 1] = "rollback" .. i end)
        conn:after_commit(function() log[#log + 1] = "commit" .. i end)
        return "ok"
      end))
    end)
    for i = 1, 3 do
      assert.is_nil(results[i][1])
      assert.matches("FOREIGN KEY", results[i][2])
      assert.equal("sqlite_constraint", results[i][3])
    end
    assert.same({ "rollback3", "rollback2", "rollback1" }, log)
    assert.equal(0, conn:value("SELECT count(*) FROM t"))
    -- the connection goes on working
    spawn_all(1, function() return assert(conn:transaction(function()
      return conn:run("INSERT INTO t (k, v) VALUES ('after', 1)") end)) end)
    assert.equal(1, conn:value("SELECT count(*) FROM t"))
    conn:close()
  end)

  it("restores the store's NIDs and stream positions when the COMMIT fails", function()
    local s = assert(store_mod.open { path = path })
    local conn = s.conn
    local function ev(room, depth, prev)
      return { room_id = room, type = "m.room.message", sender = "@a:test", depth = depth,
        origin_server_ts = depth, prev_events = json.array(prev), content = { body = "x" } }
    end
    assert(s:persist("$a1", ev("!a:test", 1, {})))
    local max0, cur0 = s.max_stream, s.current_stream
    assert(conn:exec([[CREATE TABLE parent (id INTEGER PRIMARY KEY);
      CREATE TABLE child (pid INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)]]))
    assert(conn:exec("PRAGMA foreign_keys = ON"))
    local notes = {}
    s:subscribe(function(note) notes[#notes + 1] = note.position end)
    local read
    local results = spawn_all(4, function(i)
      if i == 3 then
        return table.pack(conn:transaction(function() return conn:run("INSERT INTO child (pid) VALUES (7)") end))
      end
      if i == 4 then
        -- a reader outside any transaction sees the open group's rows (and
        -- the store caches what it decoded)
        local e, meta = s:event("$g1")
        read = { e.event_id, meta.event_nid }
        return table.pack(nil, "reader", "sqlite_constraint")
      end
      -- a new room (new room and type NIDs) and the existing one
      local room = i == 1 and "!new:test" or "!a:test"
      return table.pack(s:persist("$g" .. i, ev(room, i == 1 and 1 or 2, i == 1 and {} or { "$a1" })))
    end)
    for i = 1, 3 do assert.is_nil(results[i][1]); assert.equal("sqlite_constraint", results[i][3]) end
    assert.equal("$g1", read[1])
    -- what it decoded was forgotten with the rollback
    assert.is_nil(s:event_by_nid(read[2]))
    assert.equal(max0, s.max_stream)
    assert.equal(cur0, s.current_stream)
    assert.is_nil(s:room_nid("!new:test"))
    assert.same({}, notes)
    assert.equal(1, conn:value("SELECT count(*) FROM events"))
    assert(conn:exec("PRAGMA foreign_keys = OFF"))
    -- the same events persist afterwards, at the next positions
    local again = spawn_all(2, function(i)
      local room = i == 1 and "!new:test" or "!a:test"
      return assert(s:persist("$g" .. i, ev(room, i == 1 and 1 or 2, i == 1 and {} or { "$a1" })))
    end)
    assert.equal(max0 + 1, again[1].stream_ordering)
    assert.equal("$g2", (s:event_by_nid(again[2].event_nid)).event_id)
    assert.equal(max0 + 2, again[2].stream_ordering)
    assert.equal(max0 + 2, s.current_stream)
    assert.same({ max0 + 2, max0 + 2 }, notes)  -- one note per member, after the one COMMIT
    s:close()
  end)

  it("is committed first by a transaction outside any task; members wake on the next turn", function()
    local conn = open(path)
    local counter = count_commits(conn, {})
    local acked = {}
    for i = 1, 3 do
      async.spawn(function()
        assert(conn:transaction(function() return conn:run("INSERT INTO t (k, v) VALUES (?, ?)", "k" .. i, i) end))
        acked[#acked + 1] = i
      end)
    end
    assert.equal(0, counter.commits)
    assert.same({}, acked)
    -- not a task: the group commits, then this transaction runs on its own
    assert(conn:transaction(function()
      assert.equal(3, conn:value("SELECT count(*) FROM t"))
      return conn:run("INSERT INTO t (k, v) VALUES ('main', 0)")
    end))
    assert.equal(2, counter.commits)
    assert.same({}, acked)
    local other = assert(db.open { path = path, migrate = false })
    assert.equal(4, other:value("SELECT count(*) FROM t"))
    other:close()
    uv.run("nowait")
    uv.run("nowait")
    assert.same({ 1, 2, 3 }, acked)
    conn:close()
  end)

  it("makes a task wait while another task's transaction is open across a wait", function()
    local conn = open(path)
    local order = {}
    spawn_all(2, function(i)
      if i == 1 then
        return table.pack(conn:transaction(function()
          assert(conn:run("INSERT INTO t (k, v) VALUES ('slow', 1)"))
          async.sleep(20)              -- task 2 comes in meanwhile
          order[#order + 1] = "slow done"
          return nil, "slow refused"   -- rolls back its own work only
        end))
      end
      local r = assert(conn:transaction(function()
        order[#order + 1] = "second runs"
        return conn:run("INSERT INTO t (k, v) VALUES ('second', 2)")
      end))
      return r
    end)
    assert.same({ "slow done", "second runs" }, order)
    assert.same({ "second" }, conn:column("SELECT k FROM t"))
    -- outside any task the same situation is a misuse
    local co = coroutine.create(function()
      return conn:transaction(function() coroutine.yield(); return true end)
    end)
    assert(coroutine.resume(co))
    assert.has_error(function() conn:transaction(function() return true end) end,
      "loom.db: transaction while another coroutine's transaction is open")
    assert(coroutine.resume(co))
    assert.equal("dead", coroutine.status(co))
    conn:close()
  end)

  it("commits an open group on close", function()
    local conn = open(path)
    local acked = false
    async.spawn(function()
      assert(conn:transaction(function() return conn:run("INSERT INTO t (k, v) VALUES ('x', 1)") end))
      acked = true
    end)
    conn:close()
    assert.is_true(acked)
    uv.run("nowait")
    local other = assert(db.open { path = path, migrate = false })
    assert.equal(1, other:value("SELECT count(*) FROM t"))
    other:close()
  end)
end)
