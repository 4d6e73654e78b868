-- loom.db.migrate: applies migrations/<engine>/NNN_name.sql in order, each in
-- its own transaction, recording them in schema_version. Running it again on
-- an up-to-date database changes nothing.
local core = require "loom.core"

local io_open, tonumber, table_sort, os_time = io.open, tonumber, table.sort, os.time
local debug, ipairs = debug, ipairs

local _ENV = nil -- luacheck: ignore 211

local migrate = {}

-- Where the migrations are: <root>/migrations in a source tree (beside
-- lua/), or loom/migrations beside the installed modules (the rock installs
-- them there).
local function default_dir()
  local src = debug.getinfo(1, "S").source
  local here = src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/[^/]*$") or "."
  for _, dir in ipairs { here .. "/../../../migrations", here .. "/../migrations" } do
    local f = io_open(dir .. "/sqlite/001_events.sql", "rb")
    if f then f:close(); return dir end
  end
  return here .. "/../../../migrations"
end

local function list(dir, engine)
  local path = dir .. "/" .. engine
  local files = {}
  for _, name in ipairs(core.listdir(path) or {}) do
    local n, label = name:match("^(%d+)_([%w_]+)%.sql$")
    if n then files[#files + 1] = { version = tonumber(n), name = label, path = path .. "/" .. name } end
  end
  table_sort(files, function(a, b) return a.version < b.version end)
  return files
end

--- The migrations found for an engine, in order: { {version, name, path}, ... }.
function migrate.list(engine, dir) return list(dir or default_dir(), engine) end

--- Apply, in order, every migration not yet recorded in schema_version.
-- Returns the number applied, or nil, message, code.
function migrate.run(conn, dir)
  local ok, err, code = conn:exec([[
    CREATE TABLE IF NOT EXISTS schema_version (
      version INTEGER PRIMARY KEY,
      name TEXT NOT NULL,
      applied_ts INTEGER NOT NULL
    )]])
  if not ok then return nil, err, code end
  local files = list(dir or default_dir(), conn.engine)
  if #files == 0 then
    return nil, "no migrations found for engine " .. conn.engine, "db_migrations"
  end
  local done, derr, dcode = conn:column("SELECT version FROM schema_version")
  if not done then return nil, derr, dcode end
  local have = {}
  for _, v in ipairs(done) do have[v] = true end
  local applied = 0
  for _, m in ipairs(files) do
    if not have[m.version] then
      local f = io_open(m.path, "rb")
      if not f then return nil, "cannot read migration " .. m.path, "db_migrations" end
      local sql = f:read("a")
      f:close()
      local res, merr, mcode = conn:transaction(function()
        local eok, eerr, ecode = conn:exec(sql)
        if not eok then return nil, ("migration %d_%s: %s"):format(m.version, m.name, eerr), ecode end
        return conn:run("INSERT INTO schema_version(version, name, applied_ts) VALUES (?, ?, ?)",
          m.version, m.name, os_time())
      end)
      if not res then return nil, merr, mcode end
      applied = applied + 1
    end
  end
  return applied
end

return migrate
