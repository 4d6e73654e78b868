-- Temporary SQLite database paths for specs, and their removal (with the
-- WAL and shared-memory files), stores opened on them, temporary directories.
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

--- A store (loom.store.open) on a fresh database file: store, path. opts:
-- more loom.store.open options.
function _M.open_store(opts)
  local path = _M.path()
  local cfg = { path = path }
  for k, v in pairs(opts or {}) do cfg[k] = v end
  return assert(require("loom.store").open(cfg)), path
end

--- Close a store from open_store and remove its database.
function _M.close_store(store, path)
  store:close()
  _M.remove(path)
end

--- A message event for store specs: depth, prev_events (IDs) and the
-- fields in extra, which replace the defaults.
function _M.message(room, depth, prevs, extra)
  local ev = { room_id = room, type = "m.room.message", sender = "@a:test", depth = depth,
    origin_server_ts = 1000 + depth, prev_events = require("loom.core").json.array(prevs or {}),
    content = { body = "x" } }
  for k, v in pairs(extra or {}) do ev[k] = v end
  return ev
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
