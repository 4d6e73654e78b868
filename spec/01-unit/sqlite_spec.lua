-- loom.core.sqlite: the SQLite binding, against real database files.
local core = require("loom.core")
local sqlite = core.sqlite

local function tmp_path()
  local p = os.tmpname()
  os.remove(p) -- sqlite creates it; we only want a unique name
  return p
end

local function remove_db(p)
  for _, suffix in ipairs({ "", "-wal", "-shm", "-journal" }) do
    os.remove(p .. suffix)
  end
end

describe("loom.core.sqlite", function()
  local path, db

  before_each(function()
    path = tmp_path()
    db = assert(sqlite.open(path))
  end)

  after_each(function()
    if db then db:close() end
    collectgarbage()
    remove_db(path)
  end)

  describe("open and close", function()
    it("opens, closes idempotently and reopens a file database", function()
      assert.equal("userdata", type(db))
      assert.truthy(tostring(db):find("^loom%.Db %("))
      assert.is_true(db:is_open())
      assert.truthy(db:filename():find(path, 1, true))
      assert.is_true(db:exec("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (42)"))
      assert.is_true(db:close())
      assert.is_true(db:close())
      assert.is_false(db:is_open())
      assert.equal("loom.Db (closed)", tostring(db))
      db = assert(sqlite.open(path))
      assert.same({ 42 }, db:prepare("SELECT x FROM t"):first())
    end)

    it("reports a missing file with create=false as sqlite_cantopen", function()
      local other = tmp_path()
      local d, msg, code = sqlite.open(other, { create = false })
      assert.is_nil(d)
      assert.equal("string", type(msg))
      assert.equal("sqlite_cantopen", code)
      assert.is_nil(io.open(other, "rb"))
    end)

    it("opens read-only", function()
      assert(db:exec("CREATE TABLE t (x)"))
      local ro = assert(sqlite.open(path, { readonly = true }))
      local ok, msg, code = ro:exec("INSERT INTO t VALUES (1)")
      assert.is_nil(ok)
      assert.truthy(msg:find("readonly"))
      assert.equal("sqlite_readonly", code)
      assert.equal(0, ro:prepare("SELECT count(*) FROM t"):first()[1])
      ro:close()
    end)

    it("rejects bad options", function()
      assert.has_error(function() sqlite.open(path, { readonly = "yes" }) end)
      assert.has_error(function() sqlite.open(path, { busy_timeout = -1 }) end)
      assert.has_error(function() sqlite.open(path, 5) end)
      assert.has_error(function() sqlite.open() end)
    end)

    it("reports a file that is not a database", function()
      local other = os.tmpname()
      local f = assert(io.open(other, "wb"))
      f:write(string.rep("this is not a database file\n", 100))
      f:close()
      local d = assert(sqlite.open(other))
      local ok, _, code = d:exec("SELECT * FROM sqlite_master")
      assert.is_nil(ok)
      assert.equal("sqlite_notadb", code)
      d:close()
      os.remove(other)
    end)

    it("works with <close>", function()
      local outer
      do
        local d <close> = assert(sqlite.open(path))
        outer = d
        assert.is_true(d:is_open())
      end
      assert.is_false(outer:is_open())
      do
        local st <close> = db:prepare("SELECT 1")
        outer = st
        assert.same({ 1 }, st:first())
      end
      assert.is_true(outer:is_finalized())
    end)

    it("reports the library version", function()
      assert.truthy(sqlite.version():match("^3%.%d+%.%d+"))
    end)
  end)

  describe("exec and pragmas", function()
    it("sets WAL mode and reads it back", function()
      assert.is_true(db:exec("PRAGMA journal_mode=WAL"))
      assert.same({ "wal" }, db:prepare("PRAGMA journal_mode"):first())
      db:close()
      db = assert(sqlite.open(path))
      assert.same({ "wal" }, db:prepare("PRAGMA journal_mode"):first())
    end)

    it("runs several statements and reports errors", function()
      assert.is_true(db:exec("CREATE TABLE a (x); CREATE TABLE b (y); INSERT INTO a VALUES (1);"))
      local ok, msg, code = db:exec("INSERT INTO nope VALUES (1)")
      assert.is_nil(ok)
      assert.truthy(msg:find("no such table"))
      assert.equal("sqlite_error", code)
      assert.truthy(db:errmsg():find("no such table"))
    end)

    it("tracks changes, rowids and transactions", function()
      assert(db:exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v)"))
      assert.is_true(db:autocommit())
      assert(db:exec("BEGIN"))
      assert.is_false(db:autocommit())
      local ins = db:prepare("INSERT INTO t (v) VALUES (?)")
      assert.equal(1, ins:run("a"))
      assert.equal(1, db:last_insert_rowid())
      assert.equal(1, ins:run("b"))
      assert.equal(2, db:last_insert_rowid())
      assert(db:exec("COMMIT"))
      assert.is_true(db:autocommit())
      assert.equal(2, db:prepare("UPDATE t SET v = 'c'"):run())
      assert.equal(2, db:changes())
      assert.equal(4, db:total_changes())
    end)
  end)

  describe("prepare", function()
    it("returns the SQL text and column names", function()
      local st = assert(db:prepare("SELECT 1 AS one, 'x' AS two"))
      assert.equal("SELECT 1 AS one, 'x' AS two", st:sql())
      assert.same({ "one", "two" }, st:columns())
      assert.truthy(tostring(st):find("^loom%.Stmt %("))
    end)

    it("fails on syntax errors with the SQL quoted", function()
      local sql = "SELEC oops " .. string.rep("x", 200)
      local st, msg, code = db:prepare(sql)
      assert.is_nil(st)
      assert.equal("sqlite_error", code)
      assert.truthy(msg:find("syntax error", 1, true))
      assert.truthy(msg:find("SELEC oops", 1, true))
      assert.falsy(msg:find(string.rep("x", 100), 1, true))
    end)

    it("rejects more than one statement", function()
      local st, msg, code = db:prepare("SELECT 1; SELECT 2")
      assert.is_nil(st)
      assert.equal("sqlite_error", code)
      assert.truthy(msg:find("first statement", 1, true))
      assert.is_nil((db:prepare("SELECT 1; garbage")))
      assert.is_nil((db:prepare("SELECT 1\0 SELECT 2")))
    end)

    it("accepts trailing whitespace, semicolons and comments", function()
      for _, sql in ipairs({ "SELECT 1;", "SELECT 1 ;  \n", "SELECT 1; -- done",
                             "SELECT 1; /* done */ ;;", "  SELECT 1" }) do
        local st = assert(db:prepare(sql))
        assert.same({ 1 }, st:first())
      end
    end)

    it("rejects empty SQL", function()
      local st, _, code = db:prepare("  -- nothing\n")
      assert.is_nil(st)
      assert.equal("sqlite_error", code)
    end)
  end)

  describe("values", function()
    local ins, sel

    before_each(function()
      assert(db:exec("CREATE TABLE v (id INTEGER PRIMARY KEY, x)"))
      ins = db:prepare("INSERT INTO v (x) VALUES (?)")
      sel = db:prepare("SELECT x, typeof(x) FROM v WHERE id = ?")
    end)

    local function round_trip(value)
      assert.equal(1, ins:run(value))
      return sel:first(db:last_insert_rowid())
    end

    it("keeps int64 exact", function()
      for _, n in ipairs({ 0, -1, 1, math.maxinteger, math.mininteger, (1 << 53) + 1,
                           -((1 << 53) + 1), (1 << 62) + 7 }) do
        local row = round_trip(n)
        assert.equal("integer", row[2])
        assert.equal("integer", math.type(row[1]))
        assert.equal(n, row[1])
      end
      local row = db:prepare("SELECT 9223372036854775807, -9223372036854775808"):first()
      assert.equal(math.maxinteger, row[1])
      assert.equal(math.mininteger, row[2])
    end)

    it("round trips floats", function()
      for _, f in ipairs({ 0.5, -1.25, 1e300, 2.0 ^ 53, math.pi }) do
        local row = round_trip(f)
        assert.equal("real", row[2])
        assert.equal("float", math.type(row[1]))
        assert.equal(f, row[1])
      end
    end)

    it("round trips TEXT with NULs and invalid UTF-8", function()
      for _, s in ipairs({ "", "plain", "a\0b\0", "\255\254\0\128", ("\0"):rep(10) }) do
        local row = round_trip(s)
        assert.equal("text", row[2])
        assert.equal(s, row[1])
      end
      assert.equal(5, db:prepare("SELECT length(CAST(? AS BLOB))"):first("a\0b\0c")[1])
    end)

    it("binds blobs through sqlite.blob", function()
      local bytes = "\0\1\2\255 blob"
      local b = sqlite.blob(bytes)
      assert.equal("loom.Blob (9 bytes)", tostring(b))
      assert.equal(#bytes, #b)
      assert.equal(bytes, b:value())
      local row = round_trip(b)
      assert.equal("blob", row[2])
      assert.equal(bytes, row[1])
      row = round_trip(sqlite.blob(""))
      assert.equal("blob", row[2])
      assert.equal("", row[1])
      assert.has_error(function() sqlite.blob({}) end)
    end)

    it("binds booleans as 0/1", function()
      assert.equal(1, round_trip(true)[1])
      assert.equal(0, round_trip(false)[1])
    end)

    it("binds nil and json.null as NULL and reads NULL as nil", function()
      local row = round_trip(nil)
      assert.equal("null", row[2])
      assert.is_nil(row[1])
      assert.is_not_nil(core.json, "loom.core.json is not built yet")
      row = round_trip(core.json.null)
      assert.equal("null", row[2])
      assert.is_nil(row[1])
    end)

    it("leaves NULL columns as holes", function()
      local row = db:prepare("SELECT 1, NULL, 3, NULL"):first()
      assert.equal(1, row[1])
      assert.is_nil(row[2])
      assert.equal(3, row[3])
      assert.is_nil(row[4])
    end)

    it("binds several parameters positionally, missing ones as NULL", function()
      local st = db:prepare("SELECT ?, ?2, ?3")
      assert.same({ 1, "two", 3.5 }, st:first(1, "two", 3.5))
      local row = st:first(1)
      assert.equal(1, row[1])
      assert.is_nil(row[2])
      assert.is_nil(row[3])
      -- bindings do not leak into the next call
      assert.same({}, db:prepare("SELECT ?"):first())
    end)

    it("raises on too many parameters or unbindable types", function()
      local st = db:prepare("SELECT ?")
      assert.has_error(function() st:first(1, 2) end)
      assert.has_error(function() db:prepare("SELECT 1"):first(1) end)
      assert.has_error(function() st:first({}) end)
      assert.has_error(function() st:first(print) end)
      assert.has_error(function() st:first(coroutine.create(print)) end)
      assert.has_error(function() st:first(db) end)
      assert.has_error(function() st:run(io.stdout) end)
      -- the statement still works afterwards
      assert.same({ 7 }, st:first(7))
    end)
  end)

  describe("executing methods", function()
    local N = 10000

    before_each(function()
      assert(db:exec("CREATE TABLE big (id INTEGER PRIMARY KEY, name TEXT, score REAL, data BLOB, maybe)"))
      assert(db:exec("BEGIN"))
      local ins = db:prepare("INSERT INTO big VALUES (?, ?, ?, ?, ?)")
      for i = 1, N do
        assert(ins:run(i, "name" .. i, i / 4, sqlite.blob(string.char(i % 256, 0)),
                       i % 3 == 0 and i or nil))
      end
      assert(db:exec("COMMIT"))
    end)

    it("all, first, column, each and drain agree", function()
      local sql = "SELECT id, name, score, data, maybe FROM big WHERE id > ? ORDER BY id"
      local st = db:prepare(sql)
      local rows = st:all(0)
      assert.equal(N, #rows)
      assert.same({ 1, "name1", 0.25, "\1\0" }, rows[1])
      assert.same({ 3, "name3", 0.75, "\3\0", 3 }, rows[3])
      assert.same(rows[1], st:first(0))
      assert.same(rows[N], db:prepare(sql .. " DESC"):first(0))

      local ids = db:prepare("SELECT id FROM big WHERE id > ? ORDER BY id"):column(0)
      assert.equal(N, #ids)
      local maybes = db:prepare("SELECT maybe FROM big ORDER BY id"):column()
      local i, bytes = 0, 0
      for row in st:each(0) do
        i = i + 1
        assert.same(rows[i], row)
        assert.equal(row[1], ids[i])
        assert.equal(row[5], maybes[i])
        bytes = bytes + 8 + #row[2] + 8 + #row[4] + (row[5] and 8 or 0)
      end
      assert.equal(N, i)
      local count, drained = st:drain(0)
      assert.equal(N, count)
      assert.equal(bytes, drained)
      assert.is_true(db:autocommit())
    end)

    it("returns false or empty results when there are no rows", function()
      local st = db:prepare("SELECT id FROM big WHERE id < ?")
      assert.is_false(st:first(0))
      assert.same({}, st:all(0))
      assert.same({}, st:column(0))
      assert.same({ 0, 0 }, { st:drain(0) })
      for _ in st:each(0) do error("no rows expected") end
    end)

    it("resets after every call, so no read transaction stays open", function()
      local st = db:prepare("SELECT id FROM big ORDER BY id")
      assert.same({ 1 }, st:first())
      local other = assert(sqlite.open(path, { busy_timeout = 0 }))
      -- a writer would fail with sqlite_busy if our read lock were still held
      -- (rollback journal mode: the writer needs an exclusive lock)
      assert.equal(1, other:prepare("UPDATE big SET name = 'x' WHERE id = 1"):run())
      assert.same({ 1 }, st:each()()) -- like a loop broken after one row
      -- the broken loop holds a read lock until the next executing call resets it
      assert.same({ 1, 2 }, db:prepare("SELECT id FROM big WHERE id < 3"):column())
      assert.equal(N, #st:column())
      assert.equal(1, other:prepare("UPDATE big SET name = 'y' WHERE id = 1"):run())
      other:close()
    end)

    it("run steps statements that return rows to completion", function()
      assert.equal("integer", math.type(db:prepare("SELECT * FROM big"):run()))
      assert.equal(N, db:prepare("DELETE FROM big RETURNING id"):run())
      assert.same({ 0 }, db:prepare("SELECT count(*) FROM big"):first())
    end)

    it("each raises when the statement is re-executed mid-loop", function()
      local st = db:prepare("SELECT id FROM big")
      assert.has_error(function()
        for _ in st:each() do st:first() end
      end)
      local it = st:each()
      st:finalize()
      assert.has_error(function() it() end)
    end)

    it("each stops after the end and does not restart", function()
      local st = db:prepare("SELECT id FROM big WHERE id <= 2")
      local it = st:each()
      assert.same({ 1 }, it())
      assert.same({ 2 }, it())
      assert.is_nil(it())
      assert.is_nil(it())
    end)

    it("column raises for statements without columns", function()
      assert.has_error(function() db:prepare("DELETE FROM big"):column() end)
    end)
  end)

  describe("failures", function()
    it("reports constraint violations as sqlite_constraint and resets", function()
      assert(db:exec("CREATE TABLE u (k TEXT PRIMARY KEY)"))
      local ins = db:prepare("INSERT INTO u VALUES (?)")
      assert.equal(1, ins:run("a"))
      local n, msg, code = ins:run("a")
      assert.is_nil(n)
      assert.truthy(msg:find("UNIQUE", 1, true))
      assert.equal("sqlite_constraint", code)
      assert.equal(1, ins:run("b"))
      assert.is_true(db:autocommit())
      local row, _, code2 = db:prepare("INSERT INTO u VALUES (?) RETURNING k"):first("a")
      assert.is_nil(row)
      assert.equal("sqlite_constraint", code2)
      local all, _, code3 = db:prepare("INSERT INTO u VALUES (?) RETURNING k"):all("b")
      assert.is_nil(all)
      assert.equal("sqlite_constraint", code3)
    end)

    it("reports runtime errors from all and drain", function()
      local st = db:prepare("SELECT abs(?)")
      local r, msg, code = st:all(math.mininteger)
      assert.is_nil(r)
      assert.truthy(msg:find("overflow", 1, true))
      assert.equal("sqlite_error", code)
      assert.is_nil((st:drain(math.mininteger)))
      assert.is_nil((st:column(math.mininteger)))
      assert.has_error(function() for _ in st:each(math.mininteger) do end end)
      assert.same({ 5 }, st:first(-5))
    end)

    it("raises, without crashing, on a closed db or a finalized stmt", function()
      local st = db:prepare("SELECT 1")
      assert.is_true(st:finalize())
      assert.is_true(st:finalize())
      assert.equal("loom.Stmt (finalized)", tostring(st))
      for _, m in ipairs({ "run", "first", "all", "column", "each", "drain", "columns", "sql" }) do
        assert.has_error(function() st[m](st) end)
      end
      local live = db:prepare("SELECT 1")
      db:close()
      for _, m in ipairs({ "exec", "prepare", "changes", "total_changes", "last_insert_rowid",
                           "autocommit", "errmsg", "filename", "interrupt" }) do
        assert.has_error(function() db[m](db, "SELECT 1") end)
      end
      assert.has_error(function() db:busy_timeout(10) end)
      assert.has_error(function() live:first() end)
      assert.is_true(live:finalize())
      assert.has_error(function() sqlite.open(path).exec(st, "x") end)
      assert.has_error(function() live.first(db) end)
    end)

    it("collects a db with live statements safely", function()
      do
        local d = assert(sqlite.open(path))
        local a = d:prepare("SELECT 1")
        local b = d:prepare("SELECT 2")
        assert.same({ 1 }, a:first())
        assert.same({ 2 }, b:each()()) -- leave one mid-step
        d:close()
      end
      do
        local d = assert(sqlite.open(path))
        local _ = d:prepare("SELECT 1")
      end
      collectgarbage()
      collectgarbage()
    end)

    it("reports sqlite_busy when another connection holds the write lock", function()
      assert(db:exec("CREATE TABLE t (x)"))
      local other = assert(sqlite.open(path, { busy_timeout = 50 }))
      assert(db:exec("BEGIN IMMEDIATE"))
      local t0 = os.clock()
      local ok, msg, code = other:exec("INSERT INTO t VALUES (1)")
      assert.is_nil(ok)
      assert.equal("string", type(msg))
      assert.equal("sqlite_busy", code)
      local n, _, code2 = other:prepare("INSERT INTO t VALUES (1)"):run()
      assert.is_nil(n)
      assert.equal("sqlite_busy", code2)
      assert.truthy(os.clock() - t0 < 5)
      assert(db:exec("COMMIT"))
      assert.equal(1, other:prepare("INSERT INTO t VALUES (1)"):run())
      assert.is_true(other:busy_timeout(0))
      other:close()
    end)

    it("interrupt is callable", function()
      db:interrupt()
      assert.same({ 1 }, db:prepare("SELECT 1"):first())
    end)
  end)
end)

describe("stmt:records with many mapped columns", function()
  it("reserves stack for every {name, map} entry", function()
    local sq = require("loom.core").sqlite
    local db = assert(sq.open(":memory:"))
    local cols, shape, map = {}, {}, { [1] = "one" }
    for i = 1, 60 do cols[i] = "1 AS c" .. i; shape[i] = { "c" .. i, map } end
    local stmt = assert(db:prepare("SELECT " .. table.concat(cols, ", ")))
    local rows = assert(stmt:records(shape))
    assert.equal(1, #rows)
    for i = 1, 60 do assert.equal("one", rows[1]["c" .. i]) end
    stmt:finalize()
    db:close()
  end)
end)
