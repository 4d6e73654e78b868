-- loom.db.housekeeping: PASSIVE WAL checkpoints on a timer instead of
-- SQLite's automatic ones, the collector's mode, and stopping both; and the
-- homeserver runs it from start to stop.
local uv = require "luv"
local db = require "loom.db"
local housekeeping = require "loom.db.housekeeping"
local tesths = require "support.hs"
local tmp = require "support.tmpdb"

local function turn(ms)
  local t = uv.new_timer()
  local done = false
  t:start(ms, 0, function() t:close(); done = true end)
  while not done do uv.run("once") end
end

describe("loom.db.housekeeping", function()
  local path
  before_each(function() path = tmp.path() end)
  after_each(function() tmp.remove(path) end)

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
    assert.is_true(hk.checkpoints > 0)
    local log_frames, copied = conn:checkpoint()
    assert.equal(log_frames, copied)
    -- nothing happens inside a transaction
    conn:transaction(function() assert.is_false(conn:checkpoint()); return true end)
    hk:stop()
    hk:stop()
    assert.equal(1000, conn:value("PRAGMA wal_autocheckpoint"))
    assert.equal("incremental", collectgarbage("incremental"))
    local n = hk.checkpoints
    turn(30)
    assert.equal(n, hk.checkpoints)
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
    assert.is_true(hk.checkpoints > 0)
    assert.equal(n, acked)
    assert.equal(n, conn:value("SELECT count(*) FROM t"))
    hk:stop()
    conn:close()
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
    turn(50)
    assert.is_true(hk.checkpoints > 0)
    t:stop()
    assert.is_nil(t.hs.housekeeping)
    assert.is_nil(hk.timer)
    assert.equal("incremental", collectgarbage("incremental"))
    collectgarbage(mode)
  end)
end)
