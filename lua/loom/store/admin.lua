-- loom.store.admin: what the admin API keeps beside accounts and rooms —
-- blocked rooms and each user's server-notices room.
--
--   store:block_room(room_id, "@admin:example.org")
--   store:room_blocked(room_id)          -- { user_id, blocked_ts } or nil
--   store:unblock_room(room_id)          -- true when it was blocked
--   store:set_server_notice_room(user_id, room_id)
--   store:server_notice_room(user_id)    -- room_id or nil
--   store:purge_room(room_id)            -- every row of the room deleted
--   store:room_rows(room_id, room_nid)   -- { [table] = rows } still naming it
--
-- Mixed into the store. A database failure raises (loom.db.Error).
local core = require "loom.core"

local ipairs, pairs, pcall, error = ipairs, pairs, pcall, error

local admin = {}
local methods = {}
local _ENV = nil -- luacheck: ignore 211

--- Block a room (again: the first block's admin and time stay).
function methods:block_room(room_id, user_id)
  self.conn:run("INSERT INTO blocked_rooms (room_id, user_id, blocked_ts) VALUES (?, ?, ?)"
    .. " ON CONFLICT (room_id) DO NOTHING", room_id, user_id, core.now_ms())
  return true
end

--- Unblock a room: true when it was blocked.
function methods:unblock_room(room_id)
  return self.conn:run("DELETE FROM blocked_rooms WHERE room_id = ?", room_id) > 0
end

--- Is the room blocked: { user_id, blocked_ts } of the block, or nil.
function methods:room_blocked(room_id)
  local row = self.conn:first("SELECT user_id, blocked_ts FROM blocked_rooms WHERE room_id = ?", room_id)
  if not row then return nil end
  return { user_id = row[1], blocked_ts = row[2] }
end

--- The user's server-notices room, or nil before the first notice.
function methods:server_notice_room(user_id)
  return self.conn:value("SELECT room_id FROM server_notice_rooms WHERE user_id = ?", user_id)
end

--- Record the user's server-notices room (replacing an earlier one).
function methods:set_server_notice_room(user_id, room_id)
  self.conn:run("INSERT INTO server_notice_rooms (user_id, room_id) VALUES (?, ?)"
    .. " ON CONFLICT (user_id) DO UPDATE SET room_id = excluded.room_id", user_id, room_id)
  return true
end

---------------------------------------------------------------------------
-- Purging a room: every row of it, in every table, in one transaction.

-- Tables whose rows name the room by its NID, and by its ID (blocked_rooms
-- is not room data: the block outlives the room).
local BY_NID = { "forward_extremities", "backward_extremities", "room_memberships", "lazy_members_sent",
  "event_relations", "threads", "user_directory_public_rooms" }
local BY_ID = { "room_aliases", "room_directory", "forgotten_rooms", "account_data", "receipts", "room_keys",
  "push_counts", "push_events", "federation_outbox", "appservice_room_list", "server_notice_rooms", "reports" }
local OF_EVENTS = "(SELECT event_nid FROM events WHERE room_nid = ?)"
local IDS_OF_EVENTS = "(SELECT event_id FROM events WHERE room_nid = ?)"

-- Keep a stream's position from going back when its latest rows go.
local function keep_floor(conn, stream, pos, lowest)
  conn:run("INSERT INTO stream_floors (stream, pos) VALUES (?, ?) ON CONFLICT (stream) DO UPDATE SET pos = "
    .. (lowest and "min" or "max") .. "(pos, excluded.pos)", stream, pos)
end

local function purge(self, room_id, nid)
  local conn = self.conn
  keep_floor(conn, "events", self.max_stream)
  keep_floor(conn, "events_min", self.min_stream, true)
  keep_floor(conn, "receipts", self:receipts_position())
  keep_floor(conn, "account_data", self:account_data_position())
  -- the room's users, for the user directory's remote entries below
  local users = conn:column("SELECT DISTINCT user_id FROM room_memberships WHERE room_nid = ?", nid)
  conn:run("DELETE FROM event_search WHERE rowid IN " .. OF_EVENTS, nid)
  conn:run("DELETE FROM event_edges WHERE event_nid IN " .. OF_EVENTS, nid)
  conn:run("DELETE FROM event_rejections WHERE event_nid IN " .. OF_EVENTS, nid)
  conn:run("DELETE FROM redactions WHERE event_id IN " .. IDS_OF_EVENTS .. " OR redaction_id IN " .. IDS_OF_EVENTS,
    nid, nid)
  -- transaction IDs of sends and redactions in the room ("send:<room>:<type>", "redact:<room>")
  local send = "send:" .. room_id .. ":"
  conn:run("DELETE FROM txn_ids WHERE event_id IN " .. IDS_OF_EVENTS
    .. " OR substr(endpoint, 1, length(?)) = ? OR endpoint = ?", nid, send, send, "redact:" .. room_id)
  -- (current_state first: its triggers refill user_directory_public_rooms)
  conn:run("DELETE FROM current_state WHERE room_nid = ?", nid)
  for _, t in ipairs(BY_NID) do conn:run("DELETE FROM " .. t .. " WHERE room_nid = ?", nid) end
  conn:run("DELETE FROM events WHERE room_nid = ?", nid)
  conn:run("DELETE FROM push_notifs WHERE stream_ordering IN"
    .. " (SELECT stream_ordering FROM push_events WHERE room_id = ?)", room_id)
  for _, t in ipairs(BY_ID) do conn:run("DELETE FROM " .. t .. " WHERE room_id = ?", room_id) end
  conn:run("DELETE FROM rooms WHERE room_nid = ?", nid)
  -- users of other servers seen only here leave the user directory
  for _, u in ipairs(users) do
    conn:run([[DELETE FROM user_directory WHERE user_id = ?1
      AND NOT EXISTS (SELECT 1 FROM users WHERE user_id = ?1)
      AND NOT EXISTS (SELECT 1 FROM current_state c JOIN state_keys k ON k.state_key_nid = c.state_key_nid
        WHERE c.type_nid = 5 AND k.state_key = ?1)]], u)
  end
  return true
end

-- Forget whatever the store keeps in memory of the room (and the caches
-- that cannot be cut per room).
local function forget(self, room_id, nid)
  self.room_nids[room_id] = nil
  self.room_ids[nid] = nil
  self.nid_version = self.nid_version + 1
  self.room_max_depth[nid] = nil
  self.room_backfill_depth[nid] = nil
  self:cache_drop(nid)
  self._event_cache = nil
  self.user_rooms = nil
  self.join_cache = nil
  self.receipts_pos, self.account_data_pos = nil, nil
  self:state_clear_cache()
end

--- Delete the room from the database: its events, state, memberships,
-- aliases, directory entry, receipts, room account data, push actions,
-- relations, search index, key backups, federation queue, reports... in
-- one transaction, and forget it in memory. The state blocks (shared by
-- content, naming no room) stay. True; nil, message, "not_found" for a
-- room the store does not know.
function methods:purge_room(room_id)
  local nid = self:room_nid(room_id)
  if not nid then return nil, "unknown room " .. room_id, "not_found" end
  local ok, err = pcall(self.conn.transaction, self.conn, purge, self, room_id, nid)
  -- (what was read and cached meanwhile may name it: forgotten either way)
  forget(self, room_id, nid)
  if not ok then error(err, 0) end
  return true
end

--- The rows still naming a room, by table: { [table] = count } for every
-- table of the database with a room_id or room_nid column (room_nid: the
-- room's former NID) that holds any; blocked_rooms counts too.
function methods:room_rows(room_id, room_nid)
  local conn = self.conn
  local out = {}
  for _, t in ipairs(conn:column("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")) do
    local cols = {}
    for _, c in ipairs(conn:column("SELECT name FROM pragma_table_info(?)", t)) do cols[c] = true end
    local n = 0
    if cols.room_id then
      n = n + conn:value('SELECT count(*) FROM "' .. t .. '" WHERE room_id = ?', room_id)
    end
    if cols.room_nid and room_nid then
      n = n + conn:value('SELECT count(*) FROM "' .. t .. '" WHERE room_nid = ?', room_nid)
    end
    if n > 0 then out[t] = n end
  end
  return out
end

--- Rows of the tables keyed by event (edges, rejections, search index,
-- relations) whose event is not stored: { [table] = count } (none after a
-- purge).
function methods:orphan_event_rows()
  local out = {}
  for t, col in pairs { event_edges = "event_nid", event_rejections = "event_nid", event_search = "rowid",
      event_relations = "event_nid", room_memberships = "event_nid" } do
    local n = self.conn:value("SELECT count(*) FROM " .. t .. " WHERE " .. col
      .. " NOT IN (SELECT event_nid FROM events)")
    if n > 0 then out[t] = n end
  end
  return out
end

admin.methods = methods
return admin
