-- The SQL forms of bounds select exactly the rows the C predicate selects,
-- on real SQLite data, for every operator and both token kinds.
local core = require "loom.core"
local token, bound, sqlite = core.token, core.bound, core.sqlite

describe("bound SQL against SQLite", function()
  local path = os.tmpname()
  local db

  setup(function()
    db = assert(sqlite.open(path))
    assert(db:exec([[CREATE TABLE ev (id INTEGER PRIMARY KEY, depth INTEGER NOT NULL, stream INTEGER NOT NULL);
                     CREATE INDEX ev_topo ON ev (depth, stream);]]))
    math.randomseed(20261123)
    local ins = assert(db:prepare("INSERT INTO ev (depth, stream) VALUES (?, ?)"))
    assert(db:exec("BEGIN"))
    local used = {}
    for _ = 1, 600 do
      local s
      repeat s = math.random(-300, 300) until not used[s]
      used[s] = true
      ins:run(math.random(1, 40), s)
    end
    assert(db:exec("COMMIT"))
    ins:finalize()
  end)

  teardown(function()
    db:close()
    os.remove(path); os.remove(path .. "-wal"); os.remove(path .. "-shm")
  end)

  local all_rows
  local function rows()
    if not all_rows then all_rows = db:prepare("SELECT id, depth, stream FROM ev ORDER BY id"):all() end
    return all_rows
  end

  local function expected(b)
    local ids = {}
    for _, r in ipairs(rows()) do if b:test(r[2], r[3]) then ids[#ids + 1] = r[1] end end
    return ids
  end

  local function by_expr(b, engine)
    local sql, params = b:sql(engine, "depth", "stream")
    local stmt = assert(db:prepare("SELECT id FROM ev WHERE " .. sql .. " ORDER BY id"))
    local ids = stmt:column(table.unpack(params))
    stmt:finalize()
    return ids
  end

  local function by_parts(b)
    local ids = {}
    local desc = b.op == "<" or b.op == "<="
    local order = desc and " ORDER BY depth DESC, stream DESC" or " ORDER BY depth, stream"
    local ordered = {}
    for _, part in ipairs(b:sql_parts("sqlite", "depth", "stream")) do
      local stmt = assert(db:prepare("SELECT id, depth, stream FROM ev WHERE " .. part.sql .. order))
      for _, r in ipairs(stmt:all(table.unpack(part.params))) do
        ids[#ids + 1] = r[1]
        ordered[#ordered + 1] = r
      end
      stmt:finalize()
    end
    -- the concatenation is already in scan order
    for i = 2, #ordered do
      local a, c = ordered[i - 1], ordered[i]
      if desc then assert.is_true(a[2] > c[2] or (a[2] == c[2] and a[3] > c[3]))
      else assert.is_true(a[2] < c[2] or (a[2] == c[2] and a[3] < c[3])) end
    end
    table.sort(ids)
    return ids
  end

  it("selects the same rows as the predicate (topological tokens)", function()
    for _ = 1, 150 do
      local t = token.topological(math.random(1, 41), math.random(-310, 310))
      for _, op in ipairs { "<", "<=", ">", ">=" } do
        local b = bound.new(t, op)
        local want = expected(b)
        assert.same(want, by_expr(b, "sqlite"))
        assert.same(want, by_parts(b))
      end
    end
  end)

  it("selects the same rows as the predicate (stream tokens)", function()
    for _ = 1, 60 do
      local t = token.stream(math.random(-310, 310))
      for _, op in ipairs { "<", "<=", ">", ">=" } do
        local b = bound.new(t, op)
        assert.same(expected(b), by_expr(b, "sqlite"))
        assert.same(expected(b), by_parts(b))
      end
    end
  end)

  it("row-value form (PostgreSQL's) selects the same rows too", function()
    -- SQLite understands row values as well, so the PostgreSQL form is checked here.
    for _ = 1, 60 do
      local b = bound.new(token.topological(math.random(1, 41), math.random(-310, 310)),
        ({ "<", "<=", ">", ">=" })[math.random(4)])
      assert.same(expected(b), by_expr(b, "postgres"))
    end
  end)
end)
