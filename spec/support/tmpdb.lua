-- Temporary SQLite database paths for specs, and their removal (with the
-- WAL and shared-memory files); temporary directories.
local _M = {}

--- A fresh path for a database file that does not exist yet.
function _M.path()
  local path = os.tmpname()
  os.remove(path)
  return path .. ".db"
end

--- Remove a database file and its -wal and -shm companions.
function _M.remove(path)
  for _, sfx in ipairs { "", "-wal", "-shm" } do os.remove(path .. sfx) end
end

--- A fresh empty directory.
function _M.dir()
  local path = os.tmpname()
  os.remove(path)
  assert(os.execute("mkdir -p '" .. path .. "'"))
  return path
end

--- Remove a directory and all it holds.
function _M.remove_dir(path)
  os.execute("rm -rf '" .. path .. "'")
end

return _M
