-- loom.store.dag: walks of a room's event graph for other servers, each one
-- SQL statement (a recursive walk inside SQLite over the edge index), never
-- one query per event.
--
--   store:backfill_walk(room_nid, { event_id, ... }, limit)   -- { event_nid, ... }
--   store:missing_events_walk(room_nid, earliest_ids, latest_ids, min_depth, limit)
--   store:server_users(room_nid, server_name)   -- users of a server with a membership in the room
--   store:host_joined(room_nid, server_name)    -- a user of the server is joined now
--
-- Mixed into the store. A database failure raises (loom.db.Error).
local ipairs, table_unpack, table_sort = ipairs, table.unpack, table.sort
local string_rep = string.rep

local dag = {}
local methods = {}
local _ENV = nil -- luacheck: ignore 211

-- n placeholders; an empty list matches nothing (NOT IN (NULL) would match nothing too, wrongly)
local function marks(n) return n == 0 and "''" or string_rep("?,", n - 1) .. "?" end

--- The events /backfill serves: from the given events back through
-- prev_events, deepest first (depth, then arrival, descending), each once,
-- at most limit; the starting events are included. Only events of the room
-- that are not outliers or rejected.
function methods:backfill_walk(room_nid, event_ids, limit)
  if #event_ids == 0 or limit <= 0 then return {} end
  local args = { room_nid }
  for _, id in ipairs(event_ids) do args[#args + 1] = id end
  args[#args + 1] = room_nid
  args[#args + 1] = limit
  return self.conn:column([[
    WITH RECURSIVE walk(event_nid, depth, stream) AS (
      SELECT event_nid, depth, stream_ordering FROM events
      WHERE room_nid = ? AND outlier = 0 AND rejected = 0 AND event_id IN (]] .. marks(#event_ids) .. [[)
      UNION
      SELECT p.event_nid, p.depth, p.stream_ordering FROM walk w
        JOIN event_edges g ON g.event_nid = w.event_nid
        JOIN events p ON p.event_id = g.prev_event_id
      WHERE p.room_nid = ? AND p.outlier = 0 AND p.rejected = 0
      ORDER BY 2 DESC, 3 DESC
      LIMIT ?
    ) SELECT event_nid FROM walk]], table_unpack(args))
end

--- The events /get_missing_events serves: from latest_ids back through
-- prev_events, nearest first (deepest first, as for backfill), not
-- including the latest events themselves, stopping at (and leaving out)
-- earliest_ids and events below min_depth; at most limit, returned oldest
-- first (by depth).
function methods:missing_events_walk(room_nid, earliest_ids, latest_ids, min_depth, limit)
  if #latest_ids == 0 or limit <= 0 then return {} end
  local args = { room_nid }
  for _, id in ipairs(latest_ids) do args[#args + 1] = id end
  args[#args + 1] = room_nid
  args[#args + 1] = min_depth
  for _, id in ipairs(earliest_ids) do args[#args + 1] = id end
  args[#args + 1] = limit + #latest_ids
  for _, id in ipairs(latest_ids) do args[#args + 1] = id end
  args[#args + 1] = limit
  return self.conn:column([[
    WITH RECURSIVE walk(event_nid, event_id, depth, stream) AS (
      SELECT event_nid, event_id, depth, stream_ordering FROM events
      WHERE room_nid = ? AND outlier = 0 AND event_id IN (]] .. marks(#latest_ids) .. [[)
      UNION
      SELECT p.event_nid, p.event_id, p.depth, p.stream_ordering FROM walk w
        JOIN event_edges g ON g.event_nid = w.event_nid
        JOIN events p ON p.event_id = g.prev_event_id
      WHERE p.room_nid = ? AND p.outlier = 0 AND p.rejected = 0 AND p.depth >= ?
        AND p.event_id NOT IN (]] .. marks(#earliest_ids) .. [[)
      ORDER BY 3 DESC, 4 DESC
      LIMIT ?
    )
    SELECT event_nid FROM (
      SELECT event_nid, depth, stream FROM walk WHERE event_id NOT IN (]] .. marks(#latest_ids) .. [[)
      ORDER BY depth DESC, stream DESC LIMIT ?
    ) ORDER BY depth, stream]], table_unpack(args))
end

-- The user_id suffix of a server's users.
local function suffix_pattern(server_name)
  return "%:" .. server_name:gsub("[%%_\\]", "\\%0")
end

--- The users of server_name that have (or had) a membership in the room:
-- { user_id, ... } sorted.
function methods:server_users(room_nid, server_name)
  return self.conn:column([[SELECT DISTINCT user_id FROM room_memberships
    WHERE room_nid = ? AND user_id LIKE ? ESCAPE '\' ORDER BY user_id]], room_nid, suffix_pattern(server_name))
end

--- Whether a user of server_name is joined to the room now.
function methods:host_joined(room_nid, server_name)
  local type_nid = self:type_nid("m.room.member")
  if not type_nid then return false end
  return self.conn:value([[
    SELECT 1 FROM current_state c JOIN room_memberships m ON m.event_nid = c.event_nid
    WHERE c.room_nid = ? AND c.type_nid = ? AND m.membership = 'join' AND m.user_id LIKE ? ESCAPE '\'
    LIMIT 1]], room_nid, type_nid, suffix_pattern(server_name)) ~= nil
end

--- The servers with a user joined to the room now (sorted).
function methods:joined_servers(room_nid)
  local type_nid = self:type_nid("m.room.member")
  if not type_nid then return {} end
  local users = self.conn:column([[
    SELECT m.user_id FROM current_state c JOIN room_memberships m ON m.event_nid = c.event_nid
    WHERE c.room_nid = ? AND c.type_nid = ? AND m.membership = 'join']], room_nid, type_nid)
  local seen, out = {}, {}
  for _, u in ipairs(users) do
    local server = u:match("^@[^:]*:(.+)$")
    if server and not seen[server] then seen[server] = true; out[#out + 1] = server end
  end
  table_sort(out)
  return out
end

--- The servers with a user joined to a room now, by room ID ({} for a room
-- this server does not know).
function methods:servers_in_room(room_id)
  local rn = self:room_nid(room_id)
  if not rn then return {} end
  return self:joined_servers(rn)
end

--- The IDs of the events in a room's graph (not outliers, not rejected),
-- sorted: what servers that share the room should agree on.
function methods:graph_event_ids(room_nid)
  return self.conn:column([[SELECT event_id FROM events WHERE room_nid = ? AND outlier = 0 AND rejected = 0
    ORDER BY event_id]], room_nid)
end

--- Every event of a room this server holds, outliers and rejected ones
-- included, for pictures of the graph: { { event_id, outlier, rejected,
-- soft_failed, json } ... } ordered by depth.
function methods:room_events_all(room_nid)
  local out = {}
  for _, r in ipairs(self.conn:all([[SELECT event_id, outlier, rejected, soft_failed, json FROM events
      WHERE room_nid = ? ORDER BY depth, event_id]], room_nid)) do
    out[#out + 1] = { event_id = r[1], outlier = r[2] == 1, rejected = r[3] == 1, soft_failed = r[4] == 1,
      json = r[5] }
  end
  return out
end

dag.methods = methods
return dag
