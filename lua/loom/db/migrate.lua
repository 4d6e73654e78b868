-- loom.db.migrate: applies migrations/<engine>/NNN_name.sql in order, each in
-- its own transaction, recording them in schema_version. Running it again on
-- an up-to-date database changes nothing.
local io_open, tonumber, table_sort, os_time = io.open, tonumber, table.sort, os.time

local _M = {}

-- The migrations folder shipped beside lua/: <root>/migrations.
local function default_dir()
  local src = debug.getinfo(1, "S").source
  local here = src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/[^/]*$") or "."
  return here .. "/../../../migrations"
end

local function list(dir, engine)
  local path = dir .. "/" .. engine
  local p = io.popen('ls -1 "' .. path:gsub('"', '\\"') .. '" 2>/dev/null')
  local files = {}
  if p then
    for name in p:lines() do
      local n, label = name:match("^(%d+)_([%w_]+)%.sql$")
      if n then files[#files + 1] = { version = tonumber(n), name = label, path = path .. "/" .. name } end
    end
    p:close()
  end
  table_sort(files, function(a, b) return a.version < b.version end)
  return files
end

--- The migrations found for an engine, in order: { {version, name, path}, ... }.
function _M.list(engine, dir) return list(dir or default_dir(), engine) end

--- Apply every migration newer than the recorded schema version.
-- Returns the number applied, or nil, message, code.
function _M.run(conn, dir)
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
  local current = conn:value("SELECT coalesce(max(version), 0) FROM schema_version") or 0
  local applied = 0
  for _, m in ipairs(files) do
    if m.version > current then
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

return _M
