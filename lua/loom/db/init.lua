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
-- A statement the engine fails to run (busy, locked, I/O, constraint, bad
-- SQL) raises a loom.db.Error { code = engine code, message, sql }: a
-- failed read is never an empty result. db.open returns nil, message, code
-- when the database cannot be opened; misuse raises.
local core = require "loom.core"
local migrate = require "loom.db.migrate"

local error, pcall, select, type, setmetatable, getmetatable = error, pcall, select, type, setmetatable, getmetatable
local tostring = tostring

local sqlite = core.sqlite
local ipairs, pairs = ipairs, pairs

local _ENV = nil -- luacheck: ignore 211

local _M = {}

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
function _M.raise(message, code, sql)
  error(setmetatable({ code = code or "db_error", message = tostring(message), sql = sql }, Error), 0)
end
local raise = _M.raise

--- Is v a loom.db.Error?
function _M.is_error(v) return getmetatable(v) == Error end
_M.Error = Error

local function sqlite_open(config)
  local handle, err, code = sqlite.open(config.path, {
    readonly = config.readonly,
    busy_timeout = config.busy_timeout or 5000,
  })
  if not handle then return nil, err, code end
  local pragmas = {
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = " .. (config.synchronous or "NORMAL"),
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
-- migrate (default true), busy_timeout (ms), synchronous ("NORMAL"/"FULL").
function _M.open(config)
  if type(config) ~= "table" or type(config.path) ~= "string" then
    error("loom.db.open: config.path is required", 2)
  end
  local engine = config.engine or "sqlite"
  if engine ~= "sqlite" then
    return nil, "database engine '" .. tostring(engine) .. "' is not available", "db_engine"
  end
  local handle, err, code = sqlite_open(config)
  if not handle then return nil, err, code end
  local self = setmetatable({
    engine = engine,
    handle = handle,
    path = config.path,
    stmts = {},
    nstmts = 0,
    depth = 0,         -- transaction nesting
    hooks = {},        -- per nesting level: { commit = {...}, rollback = {...} }
  }, mt)
  if config.migrate ~= false then
    local pok, ok, merr, mcode = pcall(migrate.run, self, config.migrations_dir)
    if not pok then
      self:close()
      if not _M.is_error(ok) then error(ok, 0) end
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
local function call(self, method, sql, ...)
  local stmt = self:prepare(sql)
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

local function finish(self, ok, ...)
  local depth = self.depth
  local name = "loom_sp" .. depth
  local h = self.hooks[depth]
  self.hooks[depth] = nil
  self.depth = depth - 1
  local failed = not ok or (select("#", ...) >= 1 and (...) == nil)
  if failed then
    if depth == 1 then self.handle:exec("ROLLBACK")
    else
      self.handle:exec("ROLLBACK TO " .. name)
      self.handle:exec("RELEASE " .. name)
    end
    if h then run_rollback_hooks(h.rollback) end
    if not ok then error((...), 0) end
    return ...
  end
  local cok, cerr, ccode
  if depth == 1 then cok, cerr, ccode = self.handle:exec("COMMIT")
  else cok, cerr, ccode = self.handle:exec("RELEASE " .. name) end
  if not cok then
    if depth == 1 then self.handle:exec("ROLLBACK") end
    if h then run_rollback_hooks(h.rollback) end
    return nil, cerr, ccode
  end
  if h then
    if depth == 1 then
      for _, fn in ipairs(h.commit) do fn() end
    else
      -- the savepoint's work now belongs to the enclosing level
      local parent = level_hooks(self)
      for _, fn in ipairs(h.commit) do parent.commit[#parent.commit + 1] = fn end
      for _, fn in ipairs(h.rollback) do parent.rollback[#parent.rollback + 1] = fn end
    end
  end
  return ...
end

--- Run fn(...) inside a transaction (a savepoint when nested). The work is
-- rolled back when fn raises (the error is raised again) or returns nil as
-- its first value (its nil, message, code are returned). Otherwise it is
-- committed and fn's results are returned. Hooks registered with
-- after_commit / on_rollback run when the outcome is known.
function methods:transaction(fn, ...)
  local depth = self.depth + 1
  local ok, err, code
  if depth == 1 then ok, err, code = self.handle:exec("BEGIN IMMEDIATE")
  else ok, err, code = self.handle:exec("SAVEPOINT loom_sp" .. depth) end
  if not ok then return nil, err, code end
  self.depth = depth
  return finish(self, pcall(fn, ...))
end

function methods:close()
  for _, s in pairs(self.stmts) do s:finalize() end
  self.stmts, self.nstmts = {}, 0
  if self.handle then self.handle:close() end
end

mt.__close = methods.close

_M.methods = methods
_M.mt = mt
return _M
