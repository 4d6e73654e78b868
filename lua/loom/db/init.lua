-- loom.db: the database layer. One connection object over an engine (SQLite
-- now; PostgreSQL later behind the same methods): a prepared-statement cache,
-- transactions nested through savepoints, and the migrations runner.
--
--   local db = require "loom.db"
--   local conn = assert(db.open { path = "var/loom.db" })
--   conn:transaction(function()
--     conn:run("INSERT INTO t(a) VALUES (?)", 1)
--   end)
--   local rows = conn:all("SELECT a FROM t WHERE a > ?", 0)
--
-- Commits are durable by default (synchronous = FULL). Inside a task
-- (loom.async), transactions that start in the same loop turn share one
-- database transaction and one fsync (group commit): each runs in its own
-- savepoint and its task waits until the shared COMMIT, so a caller is only
-- told "done" once its work is on disk.
--
-- A statement the engine fails to run (busy, locked, I/O, constraint, bad
-- SQL) raises a loom.db.Error { code = engine code, message, sql }: a
-- failed read is never an empty result. db.open returns nil, message, code
-- when the database cannot be opened; misuse raises.
local core = require "loom.core"
local migrate = require "loom.db.migrate"
local async = require "loom.async"
local uv = require "luv"

local error, pcall, select, type, setmetatable, getmetatable = error, pcall, select, type, setmetatable, getmetatable
local ipairs, pairs, tostring, string_upper = ipairs, pairs, tostring, string.upper
local table_pack, table_unpack = table.pack, table.unpack
local co_running = coroutine.running
local stderr = io.stderr

local sqlite = core.sqlite

local _ENV = nil -- luacheck: ignore 211

local db = {}

local methods = {}
local mt = { __name = "loom.db.Conn", __index = methods }

local STMT_CACHE_MAX = 512
local SQL_IN_MESSAGE = 200

-- A database failure, raised by the statement methods.
local Error = { __name = "loom.db.Error" }
Error.__index = Error
function Error.__tostring(e)
  local sql = e.sql
  if sql and e.message:find("(in SQL:", 1, true) then sql = nil end   -- quoted already
  if sql and #sql > SQL_IN_MESSAGE then sql = sql:sub(1, SQL_IN_MESSAGE) .. "..." end
  return "database error (" .. e.code .. "): " .. e.message .. (sql and (" [" .. sql .. "]") or "")
end

--- Raise a loom.db.Error (code defaults to "db_error").
function db.raise(message, code, sql)
  error(setmetatable({ code = code or "db_error", message = tostring(message), sql = sql }, Error), 0)
end
local raise = db.raise

--- Is v a loom.db.Error?
function db.is_error(v) return getmetatable(v) == Error end
db.Error = Error
local SYNCHRONOUS = { OFF = true, NORMAL = true, FULL = true, EXTRA = true }

local function sqlite_open(config, synchronous)
  local handle, err, code = sqlite.open(config.path, {
    readonly = config.readonly,
    busy_timeout = config.busy_timeout or 5000,
  })
  if not handle then return nil, err, code end
  local pragmas = {
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = " .. synchronous,
    "PRAGMA foreign_keys = OFF",
    "PRAGMA temp_store = MEMORY",
    "PRAGMA cache_size = -" .. tostring(config.cache_kib or 65536),
  }
  for _, p in ipairs(pragmas) do
    local ok, perr, pcode = handle:exec(p)
    if not ok then handle:close(); return nil, perr, pcode end
  end
  return handle
end

--- Open a connection. config: path (required), engine ("sqlite"),
-- migrate (default true), busy_timeout (ms), synchronous ("FULL" (default),
-- "NORMAL", "OFF", "EXTRA"), group_commit (default true).
function db.open(config)
  if type(config) ~= "table" or type(config.path) ~= "string" then
    error("loom.db.open: config.path is required", 2)
  end
  local synchronous = config.synchronous == nil and "FULL"
    or type(config.synchronous) == "string" and string_upper(config.synchronous)
  if not SYNCHRONOUS[synchronous] then
    error("loom.db.open: config.synchronous must be one of OFF, NORMAL, FULL, EXTRA", 2)
  end
  local engine = config.engine or "sqlite"
  if engine ~= "sqlite" then
    return nil, "database engine '" .. tostring(engine) .. "' is not available", "db_engine"
  end
  local handle, err, code = sqlite_open(config, synchronous)
  if not handle then return nil, err, code end
  local self = setmetatable({
    engine = engine,
    handle = handle,
    path = config.path,
    stmts = {},
    nstmts = 0,
    statements = 0,    -- statements run (counted, for benchmarks and specs)
    depth = 0,         -- transaction nesting
    hooks = {},        -- per nesting level: { commit = {...}, rollback = {...} }
    synchronous = synchronous,
    group_commit = config.group_commit ~= false,
    group = nil,       -- the open commit group: { members = {...}, timer = its COMMIT }
    group_commits = 0, group_members = 0,  -- groups committed, and their members
    log = config.log,  -- log(level, message) for what has no caller to go to
  }, mt)
  if config.migrate ~= false then
    local pok, ok, merr, mcode = pcall(migrate.run, self, config.migrations_dir)
    if not pok then
      self:close()
      if not db.is_error(ok) then error(ok, 0) end
      return nil, ok.message, ok.code
    end
    if not ok then self:close(); return nil, merr, mcode end
  end
  return self
end

--- The prepared statement for sql, from the cache (raises a loom.db.Error
-- when the SQL does not compile).
function methods:prepare(sql)
  local stmt = self.stmts[sql]
  if stmt then return stmt end
  local err, code
  stmt, err, code = self.handle:prepare(sql)
  if not stmt then raise(err, code, sql) end
  if self.nstmts >= STMT_CACHE_MAX then
    -- Forget the cache; statements still held by callers stay usable and
    -- the rest are finalized by the collector.
    self.stmts, self.nstmts = {}, 0
  end
  self.stmts[sql] = stmt
  self.nstmts = self.nstmts + 1
  return stmt
end

-- A statement method's results, or a raised loom.db.Error when it failed.
local function checked(sql, res, err, code, ...)
  if res == nil and err ~= nil then raise(err, code, sql) end
  return res, err, code, ...
end

-- conn.time_statement, when set, runs every statement: it is called as
-- conn.time_statement(f, ...) and returns f(...)'s results (metrics time it).
-- conn.statements counts the statements run (benchmarks and specs read it).
local function call(self, method, sql, ...)
  local stmt = self:prepare(sql)
  self.statements = self.statements + 1
  if self.time_statement then return checked(sql, self.time_statement(stmt[method], stmt, ...)) end
  return checked(sql, stmt[method](stmt, ...))
end

--- Run a statement; returns the number of rows changed.
function methods:run(sql, ...) return call(self, "run", sql, ...) end
--- The first row (an array) or false.
function methods:first(sql, ...) return call(self, "first", sql, ...) end
--- Every row, as arrays, in one batch.
function methods:all(sql, ...) return call(self, "all", sql, ...) end
--- Every row as a table keyed by field name (see stmt:records for shape).
function methods:records(sql, shape, ...)
  local stmt = self:prepare(sql)
  self.statements = self.statements + 1
  if self.time_statement then return checked(sql, self.time_statement(stmt.records, stmt, shape, ...)) end
  return checked(sql, stmt:records(shape, ...))
end
--- The first column of every row.
function methods:column(sql, ...) return call(self, "column", sql, ...) end

--- The first column of the first row, or nil when there is no row.
function methods:value(sql, ...)
  local row = call(self, "first", sql, ...)
  if not row then return nil end
  return row[1]
end

--- Several statements without parameters (schema work).
function methods:exec(sql) return checked(sql, self.handle:exec(sql)) end

function methods:last_insert_rowid() return self.handle:last_insert_rowid() end
function methods:changes() return self.handle:changes() end
function methods:in_transaction() return self.depth > 0 end
--- True while the caller's own code runs inside a transaction it opened
-- (another task's transaction, open across a wait, does not count).
function methods:inside_transaction() return self.depth > 0 and self.owner == co_running() end

-- Hooks registered inside a transaction, one list per nesting level.
local function level_hooks(self)
  local levels = self.hooks
  local h = levels[self.depth]
  if not h then h = { commit = {}, rollback = {} }; levels[self.depth] = h end
  return h
end

--- Run fn() after the outermost transaction commits (at once when no
-- transaction is open). Used to publish what a transaction wrote.
function methods:after_commit(fn)
  if self.depth == 0 then fn(); return end
  local c = level_hooks(self).commit
  c[#c + 1] = fn
end

--- Run fn() if the work of the current transaction level is rolled back
-- (by its own savepoint or by any enclosing transaction). Hooks run newest
-- first, so in-memory state can be restored step by step.
function methods:on_rollback(fn)
  if self.depth == 0 then return end
  local r = level_hooks(self).rollback
  r[#r + 1] = fn
end

local function run_rollback_hooks(list)
  for i = #list, 1, -1 do list[i]() end
end

-- Ends the transaction level self.depth with pcall's results. Level 1 is
-- the real transaction, except for a member of a commit group, whose level 1
-- is a savepoint in the group's transaction: its hooks are handed to the
-- member record, to run when the group's COMMIT is known.
local function finish(self, ok, ...)
  local depth = self.depth
  local name = "loom_sp" .. depth
  local h = self.hooks[depth]
  self.hooks[depth] = nil
  self.depth = depth - 1
  local member
  if depth == 1 then
    member, self.member, self.owner = self.member, nil, nil
    local queued = self.queued
    if queued then
      -- tasks that waited for this transaction to end go on next turn
      self.queued = nil
      local t = uv.new_timer()
      t:start(0, 0, function()
        t:close()
        for _, wake in ipairs(queued) do wake() end
      end)
    end
  end
  local outer = depth == 1 and not member
  local failed = not ok or (select("#", ...) >= 1 and (...) == nil)
  if failed then
    if outer then self.handle:exec("ROLLBACK")
    else
      self.handle:exec("ROLLBACK TO " .. name)
      self.handle:exec("RELEASE " .. name)
    end
    if h then run_rollback_hooks(h.rollback) end
    if not ok then error((...), 0) end
    return ...
  end
  local cok, cerr, ccode
  if outer then cok, cerr, ccode = self.handle:exec("COMMIT")
  else cok, cerr, ccode = self.handle:exec("RELEASE " .. name) end
  if not cok then
    if outer then self.handle:exec("ROLLBACK")
    else
      self.handle:exec("ROLLBACK TO " .. name)
      self.handle:exec("RELEASE " .. name)
    end
    if h then run_rollback_hooks(h.rollback) end
    return nil, cerr, ccode
  end
  if h then
    if outer then
      for _, fn in ipairs(h.commit) do fn() end
    elseif member then
      member.commit, member.rollback = h.commit, h.rollback
    else
      -- the savepoint's work now belongs to the enclosing level
      local parent = level_hooks(self)
      for _, fn in ipairs(h.commit) do parent.commit[#parent.commit + 1] = fn end
      for _, fn in ipairs(h.rollback) do parent.rollback[#parent.rollback + 1] = fn end
    end
  end
  return ...
end

local function log(self, level, message)
  if self.log then
    local ok = pcall(self.log, level, message)
    if ok then return end
  end
  stderr:write("loom.db ", level, ": ", message, "\n")
end

local function wake_all(members)
  for _, m in ipairs(members) do m.wake(table_unpack(m.outcome, 1, m.outcome.n)) end
end

-- Commits the open group: one COMMIT (one fsync) for every member. Then each
-- member's after_commit hooks run, in the order the members joined; when the
-- COMMIT fails, every member's rollback hooks run, newest first. The members
-- are woken with their outcome at once, or on the next loop turn when
-- `deferred` (the caller is in the middle of other work).
local function flush(self, deferred)
  local g = self.group
  if not g then return end
  self.group = nil
  if not g.timer:is_closing() then g.timer:close() end
  local ok, err, code = self.handle:exec("COMMIT")
  if not ok then self.handle:exec("ROLLBACK") end
  local members = g.members
  self.group_commits = self.group_commits + 1
  self.group_members = self.group_members + #members
  if ok then
    for _, m in ipairs(members) do
      m.outcome = table_pack(true)
      for _, fn in ipairs(m.commit or {}) do
        local hok, herr = pcall(fn)
        if not hok then m.outcome = table_pack(false, herr) end
      end
    end
  else
    local outcome = table_pack(nil, err, code)
    for i = #members, 1, -1 do
      local m = members[i]
      m.outcome = outcome
      local list = m.rollback or {}
      for k = #list, 1, -1 do
        local hok, herr = pcall(list[k])
        if not hok then log(self, "error", "rollback hook failed: " .. tostring(herr)) end
      end
    end
  end
  if not deferred then return wake_all(members) end
  local t = uv.new_timer()
  t:start(0, 0, function()
    t:close()
    wake_all(members)
  end)
end

-- A transaction of a task with group commit on: a savepoint in the group's
-- transaction (opened, with its COMMIT scheduled for the end of this loop
-- turn, by the first member), then a wait for that COMMIT.
local function group_transaction(self, fn, ...)
  if not self.group then
    local ok, err, code = self.handle:exec("BEGIN IMMEDIATE")
    if not ok then return nil, err, code end
    -- a timer per group, closed when the group commits: no handle of the
    -- connection outlives it
    local timer = uv.new_timer()
    self.group = { members = {}, timer = timer }
    local function commit()
      -- a member still inside its savepoint (waiting in a task): later
      if self.depth > 0 then return timer:start(1, 0, commit) end
      local fok, ferr = pcall(flush, self)
      if not fok then log(self, "error", "group commit failed: " .. tostring(ferr)) end
    end
    timer:start(0, 0, commit)
  end
  local ok, err, code = self.handle:exec("SAVEPOINT loom_sp1")
  if not ok then return nil, err, code end
  local member = {}
  self.depth, self.member, self.owner = 1, member, co_running()
  local r = table_pack(finish(self, pcall(fn, ...)))
  if r.n >= 1 and r[1] == nil then return table_unpack(r, 1, r.n) end
  local group = self.group
  group.members[#group.members + 1] = member
  local w = table_pack(async.wait(function(wake) member.wake = wake end))
  if w[1] == true then return table_unpack(r, 1, r.n) end
  if w[1] == false then error(w[2], 0) end
  return nil, w[2], w[3]
end

--- Run fn(...) inside a transaction (a savepoint when nested). The work is
-- rolled back when fn raises (the error is raised again) or returns nil as
-- its first value (its nil, message, code are returned). Otherwise it is
-- committed and fn's results are returned. Hooks registered with
-- after_commit / on_rollback run when the outcome is known.
--
-- Inside a task, with group commit on, an outermost transaction joins the
-- commit group of this loop turn and returns once the group has committed
-- (nil, message, code for every member when that COMMIT fails). Outside a
-- task it first commits an open group.
function methods:transaction(fn, ...)
  if self.depth > 0 and self.owner ~= co_running() then
    -- another coroutine's transaction is open (its task waits inside it):
    -- nesting into it would tie this work to that outcome
    if not async.running() then
      error("loom.db: transaction while another coroutine's transaction is open", 2)
    end
    async.wait(function(wake)
      local q = self.queued
      if not q then q = {}; self.queued = q end
      q[#q + 1] = wake
    end)
    return self:transaction(fn, ...)
  end
  local depth = self.depth + 1
  if depth == 1 then
    if self.group_commit and async.running() then return group_transaction(self, fn, ...) end
    if self.group then flush(self, true) end
  end
  local ok, err, code
  if depth == 1 then ok, err, code = self.handle:exec("BEGIN IMMEDIATE")
  else ok, err, code = self.handle:exec("SAVEPOINT loom_sp" .. depth) end
  if not ok then return nil, err, code end
  self.depth = depth
  if depth == 1 then self.owner = co_running() end
  return finish(self, pcall(fn, ...))
end

--- Copy committed pages from the WAL into the database file without
-- waiting for readers or writers (PRAGMA wal_checkpoint(PASSIVE)). Returns
-- the WAL's size and the frames copied, in pages; or false when a
-- transaction or commit group is open (nothing is done then); or nil,
-- message, code.
function methods:checkpoint()
  if self.depth > 0 or self.group then return false end
  local row, err, code = self:first("PRAGMA wal_checkpoint(PASSIVE)")
  if not row then return nil, err, code end
  return row[2], row[3]
end

--- Commit the open commit group now (its members are woken on the next loop
-- turn). Nothing to do when no group is open, or inside a transaction.
function methods:flush()
  if self.group and self.depth == 0 then flush(self, true) end
end

function methods:close()
  if self.group then flush(self) end
  for _, s in pairs(self.stmts) do s:finalize() end
  self.stmts, self.nstmts = {}, 0
  if self.handle then self.handle:close() end
end

mt.__close = methods.close

db.methods = methods
db.mt = mt
return db
