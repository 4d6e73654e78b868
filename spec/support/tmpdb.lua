-- Temporary SQLite database paths for specs, and their removal (with the
-- WAL and shared-memory files).
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

return _M
