-- loom.db.housekeeping: the work a serving homeserver does off the request
-- path, on timers of its own: WAL checkpoints (PASSIVE, so they never wait
-- for a reader or writer) instead of SQLite's automatic checkpoint inside
-- whichever COMMIT crosses 1000 pages, and the Lua collector's mode.
--
--   local housekeeping = require "loom.db.housekeeping"
--   local hk = housekeeping.start(conn, { checkpoint_interval = 1000, gc = "generational" })
--   ...
--   hk:stop()     -- automatic checkpoints and the previous collector mode again
--
-- Checkpoints run on a thread of their own (core.sqlite.checkpointer) with
-- its own connection, so their fsync never stalls the loop; where that cannot
-- be, on a timer that does not keep the loop alive. hk:stats() counts them.
local uv = require "luv"
local sqlite = require("loom.core").sqlite

local setmetatable, type, tostring, pcall, error, collectgarbage = setmetatable, type, tostring, pcall, error,
  collectgarbage
local math_type = math.type
local stderr = io.stderr

local _ENV = nil -- luacheck: ignore 211

local housekeeping = {}
local methods = {}
local mt = { __name = "loom.db.Housekeeping", __index = methods }

local DEFAULTS = { checkpoint_interval = 1000, gc = "generational" }

local function log(self, level, message)
  if self.log and pcall(self.log, level, message) then return end
  stderr:write("loom.db.housekeeping ", level, ": ", message, "\n")
end

--- housekeeping.start(conn, [opts]) -> hk
-- opts: checkpoint_interval (ms between PASSIVE checkpoints; 0 leaves
-- checkpoints to SQLite, default 1000), checkpoint_thread (default true for
-- a database file: the checkpoints run on a thread of their own with its own
-- connection, core.sqlite.checkpointer, so their fsync never stalls the
-- loop; false, or when the thread cannot start: from a timer on the loop),
-- gc ("generational" (default), "incremental", or false to leave the
-- collector alone), log(level, message). Bad options raise.
function housekeeping.start(conn, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("housekeeping: opts must be a table", 2) end
  local interval = opts.checkpoint_interval
  if interval == nil then interval = DEFAULTS.checkpoint_interval end
  if math_type(interval) ~= "integer" or interval < 0 then
    error("housekeeping: checkpoint_interval must be a non-negative integer (ms)", 2)
  end
  local gc = opts.gc
  if gc == nil then gc = DEFAULTS.gc end
  if gc ~= false and gc ~= "generational" and gc ~= "incremental" then
    error("housekeeping: gc must be \"generational\", \"incremental\" or false", 2)
  end
  local threaded = opts.checkpoint_thread
  if threaded ~= nil and type(threaded) ~= "boolean" then
    error("housekeeping: checkpoint_thread must be a boolean", 2)
  end
  local self = setmetatable({ conn = conn, log = opts.log, runs = 0, failures = 0, max_ms = 0 }, mt)
  if gc then self.previous_gc = collectgarbage(gc) end
  if interval > 0 then
    local ok, err = conn:exec("PRAGMA wal_autocheckpoint = 0")
    if not ok then log(self, "warn", "cannot turn automatic checkpoints off: " .. tostring(err)) end
    local path = conn.path
    if threaded ~= false and type(path) == "string" and path ~= "" and path ~= ":memory:"
       and not path:find("^file:") then
      local cp, cerr = sqlite.checkpointer(path, interval)
      if cp then
        self.checkpointer = cp
        return self
      end
      log(self, "warn", "checkpoints run on the loop: " .. tostring(cerr))
    end
    local timer = uv.new_timer()
    timer:start(interval, interval, function()
      local t0 = uv.hrtime()
      -- an open commit group would make the checkpoint a no-op: commit it
      -- now (its members wake on the next turn)
      local cok, res, cerr = pcall(conn.flush, conn)
      if cok then cok, res, cerr = pcall(conn.checkpoint, conn) end
      local ms = (uv.hrtime() - t0) / 1e6
      if ms > self.max_ms then self.max_ms = ms end
      self.runs = self.runs + 1
      if not cok or res == nil then
        self.failures = self.failures + 1
        log(self, "warn", "WAL checkpoint failed: " .. tostring(cok and cerr or res))
      end
    end)
    timer:unref()
    self.timer = timer
  end
  return self
end

--- hk:stats() -> { checkpoints = runs that checkpointed, failures,
-- max_ms = the longest, thread = true when they run on their own thread }
function methods:stats()
  if self.final_stats then return self.final_stats end
  local cp = self.checkpointer
  if cp then
    local st = cp:stats()
    return { checkpoints = st.checkpoints or 0, failures = st.failures or 0, max_ms = st.max_ms or 0,
             last_error = st.last_error, thread = true }
  end
  return { checkpoints = self.runs - self.failures, failures = self.failures, max_ms = self.max_ms,
           thread = false }
end

--- hk:stop(): stop the timers; SQLite's automatic checkpoints and the
-- collector's previous mode are back. Can be called more than once.
function methods:stop()
  if self.checkpointer then
    self.checkpointer:stop()   -- joins the thread
    self.final_stats = self:stats()
    self.checkpointer = nil
    pcall(self.conn.exec, self.conn, "PRAGMA wal_autocheckpoint = 1000")  -- fails once closed
  end
  if self.timer then
    if not self.timer:is_closing() then self.timer:close() end
    self.timer = nil
    pcall(self.conn.exec, self.conn, "PRAGMA wal_autocheckpoint = 1000")  -- fails once closed
  end
  if self.previous_gc then
    collectgarbage(self.previous_gc)
    self.previous_gc = nil
  end
end

housekeeping.methods = methods
housekeeping.mt = mt
return housekeeping
