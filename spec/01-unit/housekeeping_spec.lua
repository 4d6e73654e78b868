-- loom.db.housekeeping: PASSIVE WAL checkpoints on a thread of their own
-- (or a timer) instead of SQLite's automatic ones, the collector's mode, and
-- stopping both; and the homeserver runs it from start to stop.
local uv = require "luv"
local db = require "loom.db"
local housekeeping = require "loom.db.housekeeping"
local tesths = require "support.hs"
local tmp = require "support.tmpdb"

local function turn(ms)
  uv.update_time()                       -- the loop's clock, not the one of its last turn
  local t = uv.new_timer()
  local done = false
  t:start(ms, 0, function() t:close(); done = true end)
  while not done do uv.run("once") end
end

describe("loom.db.housekeeping", function()
  local path
  before_each(function() path = tmp.path() end)
  after_each(function()
    require("loom.async").finish_closing()   -- no handle is left closing for the loop's finaliser
    tmp.remove(path)
  end)

  it("checkpoints the WAL from a timer, with automatic checkpoints off until stopped", function()
    local conn = assert(db.open { path = path, migrate = false })
    assert(conn:exec("CREATE TABLE t (v INTEGER)"))
    local mode = collectgarbage("incremental")
    local hk = housekeeping.start(conn, { checkpoint_interval = 10, gc = "generational" })
    assert.equal(0, conn:value("PRAGMA wal_autocheckpoint"))
    assert.equal("generational", collectgarbage("generational"))
    for i = 1, 50 do assert(conn:run("INSERT INTO t (v) VALUES (?)", i)) end
    -- frames are in the WAL, not yet in the database file
    turn(60)
    assert.is_true(hk:stats().checkpoints > 0)
    local log_frames, copied = conn:checkpoint()
    assert.equal(log_frames, copied)
    -- nothing happens inside a transaction
    conn:transaction(function() assert.is_false(conn:checkpoint()); return true end)
    hk:stop()
    hk:stop()
    assert.equal(1000, conn:value("PRAGMA wal_autocheckpoint"))
    assert.equal("incremental", collectgarbage("incremental"))
    local n = hk:stats().checkpoints
    turn(30)
    assert.equal(n, hk:stats().checkpoints)
    collectgarbage(mode)
    conn:close()
  end)

  it("checkpoints under steady group-committed writes, losing none", function()
    local conn = assert(db.open { path = path, migrate = false })
    assert(conn:exec("CREATE TABLE t (v INTEGER)"))
    local hk = housekeeping.start(conn, { checkpoint_interval = 5, gc = false })
    local async = require "loom.async"
    local n, acked = 0, 0
    -- writes after every poll (as requests come in), every loop turn
    local spin, writers = uv.new_idle(), uv.new_check()
    spin:start(function() end)
    writers:start(function()
      for _ = 1, 3 do
        n = n + 1
        async.spawn(function(v)
          assert(conn:transaction(function() return conn:run("INSERT INTO t (v) VALUES (?)", v) end))
          acked = acked + 1
        end, n)
      end
    end)
    turn(80)
    writers:close(); spin:close()
    turn(5)
    assert.is_true(hk:stats().checkpoints > 0)
    assert.equal(n, acked)
    assert.equal(n, conn:value("SELECT count(*) FROM t"))
    hk:stop()
    conn:close()
    require("loom.async").finish_closing()   -- the group's timer closes with the connection
  end)

  it("leaves the collector alone with gc = false, checkpoints to SQLite with interval 0", function()
    local conn = assert(db.open { path = path, migrate = false })
    local mode = collectgarbage("incremental")
    local hk = housekeeping.start(conn, { checkpoint_interval = 0, gc = false })
    assert.equal("incremental", collectgarbage("incremental"))
    assert.equal(1000, conn:value("PRAGMA wal_autocheckpoint"))
    assert.is_nil(hk.timer)
    hk:stop()
    collectgarbage(mode)
    conn:close()
  end)

  it("raises on bad options", function()
    local conn = assert(db.open { path = path, migrate = false })
    assert.has_error(function() housekeeping.start(conn, { checkpoint_interval = -1 }) end,
      "housekeeping: checkpoint_interval must be a non-negative integer (ms)")
    assert.has_error(function() housekeeping.start(conn, { checkpoint_interval = 1.5 }) end)
    assert.has_error(function() housekeeping.start(conn, { gc = "fast" }) end,
      'housekeeping: gc must be "generational", "incremental" or false')
    conn:close()
  end)

  it("runs while a homeserver serves and stops with it", function()
    local mode = collectgarbage("incremental")
    local t = tesths.start { housekeeping = { checkpoint_interval = 10 } }
    local hk = t.hs.housekeeping
    assert.truthy(hk)
    assert.equal(0, t.hs.store.conn:value("PRAGMA wal_autocheckpoint"))
    t:register("alice")
    for _ = 1, 100 do                    -- at most a second
      if hk:stats().checkpoints > 0 then break end
      turn(10)
    end
    assert.is_true(hk:stats().checkpoints > 0)
    t:stop()
    assert.is_nil(t.hs.housekeeping)
    assert.is_nil(hk.timer)
    assert.equal("incremental", collectgarbage("incremental"))
    collectgarbage(mode)
  end)

  it("checkpoints on its own thread while the loop does not turn", function()
    local conn = assert(db.open { path = path, migrate = false })
    assert(conn:exec("CREATE TABLE t (v INTEGER)"))
    local hk = housekeeping.start(conn, { checkpoint_interval = 5, gc = false })
    assert.is_true(hk:stats().thread)
    assert.is_nil(hk.timer)
    local function db_size()
      local f = assert(io.open(path, "rb"))
      local n = f:seek("end")
      f:close()
      return n
    end
    uv.sleep(30)                         -- the thread's first checkpoints copy the table's page
    local before = db_size()
    conn:transaction(function()
      for i = 1, 2000 do assert(conn:run("INSERT INTO t (v) VALUES (?)", i * 1000003)) end
      return true
    end)
    uv.sleep(80)                         -- the loop is blocked; only the thread can checkpoint
    assert.is_true(hk:stats().checkpoints > 0)
    assert.is_true(db_size() > before)   -- the thread copied the WAL into the database file
    hk:stop()
    local n = hk:stats().checkpoints
    uv.sleep(20)
    assert.equal(n, hk:stats().checkpoints)
    assert.equal(1000, conn:value("PRAGMA wal_autocheckpoint"))
    assert.equal(2000, conn:value("SELECT count(*) FROM t"))
    conn:close()
  end)

  it("checkpoints from a timer on the loop with checkpoint_thread = false", function()
    local conn = assert(db.open { path = path, migrate = false })
    assert(conn:exec("CREATE TABLE t (v INTEGER)"))
    local hk = housekeeping.start(conn, { checkpoint_interval = 5, gc = false, checkpoint_thread = false })
    assert.is_false(hk:stats().thread)
    assert.truthy(hk.timer)
    for i = 1, 20 do assert(conn:run("INSERT INTO t (v) VALUES (?)", i)) end
    uv.sleep(20)
    assert.equal(0, hk:stats().checkpoints)   -- nothing runs while the loop is blocked
    turn(30)
    assert.is_true(hk:stats().checkpoints > 0)
    hk:stop()
    turn(1)                              -- let the timer's close finish
    conn:close()
    assert.has_error(function() housekeeping.start(conn, { checkpoint_thread = "yes" }) end,
      "housekeeping: checkpoint_thread must be a boolean")
  end)
end)

describe("core.sqlite.checkpointer", function()
  local sqlite = require("loom.core").sqlite

  it("raises on misuse and reports a database it cannot open", function()
    assert.has_error(function() sqlite.checkpointer("x.db", 0) end)
    assert.has_error(function() sqlite.checkpointer("", 10) end)
    assert.has_error(function() sqlite.checkpointer("a\0b", 10) end)
    assert.has_error(function() sqlite.checkpointer({}, 10) end)
    local cp = assert(sqlite.checkpointer("/nonexistent-dir/none.db", 10))
    uv.sleep(30)
    local st = cp:stats()
    assert.is_true(st.failures >= 1)
    assert.matches("open", st.last_error)
    cp:stop()
    cp:stop()
    assert.is_false(cp:stats().running)
    assert.matches("stopped", tostring(cp))
  end)

  it("stops its thread when collected", function()
    local p = tmp.path()
    local conn = assert(db.open { path = p, migrate = false })
    do
      local cp <close> = assert(sqlite.checkpointer(p, 1))
      assert.is_true(cp:stats().running)
    end
    for _ = 1, 20 do assert(sqlite.checkpointer(p, 1)) end
    collectgarbage(); collectgarbage()
    conn:close()
    tmp.remove(p)
  end)
end)
