-- loom.store.sql: the small pieces of SQL the store methods share.
--
--   local sql = require "loom.store.sql"
--   local where = "room_nid = ? AND " .. sql.TIMELINE
--   for marks, keys in sql.chunks(event_ids) do
--     rows = conn:all("SELECT ... WHERE event_id IN (" .. marks .. ")", table.unpack(keys))
--   end
--
-- Only the store builds SQL; this module is how it writes the timeline
-- condition and `IN (?, ?, ...)` lists once.
local math_min, string_rep = math.min, string.rep
local ipairs, select, table_unpack = ipairs, select, table.unpack

local sql = {}
local _ENV = nil -- luacheck: ignore 211

--- The condition selecting timeline events (not outliers, rejected or
-- soft-failed); it matches the partial indexes.
sql.TIMELINE = "outlier = 0 AND rejected = 0 AND soft_failed = 0"

--- Keys bound per statement in an IN list: well below SQLite's limit on
-- host parameters (32766; 999 before SQLite 3.32), leaving room for the
-- statement's other parameters.
sql.CHUNK = 500

--- The placeholders of an IN list of n values: "?,?,?" (n >= 1).
function sql.marks(n) return string_rep("?,", n - 1) .. "?" end

--- Iterate over keys in chunks of at most size (default CHUNK): each step
-- gives the placeholders for the chunk and the chunk itself (an array).
-- An empty list gives no step.
function sql.chunks(keys, size)
  size = size or sql.CHUNK
  local i = 1
  return function()
    if i > #keys then return nil end
    local j = math_min(#keys, i + size - 1)
    local chunk = {}
    for k = i, j do chunk[k - i + 1] = keys[k] end
    i = j + 1
    return sql.marks(#chunk), chunk
  end
end

--- { [first column] = second column } over the rows of the statement
-- head .. "?,?,...)" run once per chunk of keys: head ends with "IN (", and
-- the statement's other parameters (...) come before the chunk's keys.
--
--   sql.map_in(conn, "SELECT event_id, txn_id FROM txn_ids WHERE user_id = ? AND event_id IN (", ids, user_id)
function sql.map_in(conn, head, keys, ...)
  local out, n, args = {}, select("#", ...), { ... }
  for marks, chunk in sql.chunks(keys) do
    for i = 1, #chunk do args[n + i] = chunk[i] end
    for _, r in ipairs(conn:all(head .. marks .. ")", table_unpack(args, 1, n + #chunk))) do out[r[1]] = r[2] end
  end
  return out
end

return sql
