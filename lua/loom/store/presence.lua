-- loom.store.presence: each user's presence (Client-Server API "Presence")
-- and its stream: every change that clients see (state, status_msg,
-- currently_active) takes the next presence position, so /sync sends only
-- what changed since its token. last_active_ts moves on its own without a
-- new position.
--
--   local pos = store:set_presence(user_id, { state = "online", status_msg = nil,
--                                             last_active_ts = ms, currently_active = true })
--   store:touch_presence(user_id, ms)               -- last_active_ts only, no new position
--   local p = store:presence_of(user_id)            -- { state, status_msg, last_active_ts, currently_active } or nil
--   local list = store:presence_changes({ user_id, ... }, since, to)  -- since nil: every non-offline one
--   local list = store:presence_changes(nil, since, to)               -- every user's changes
--   local list = store:presence_not_offline()        -- { { user_id, state, ... }, ... } for the idle timer
--   local users = store:users_sharing_rooms(user_id) -- { user_id, ... } joined to a room the user is joined to
--   local set = store:sharing_among(user_id, { user_id, ... })  -- { [user_id] = true } of those who do
--   local now = store:presence_position()
--
-- The position seen by readers moves only when the change commits; then the
-- store's subscribers get a note (presence = { [user_id] = pos },
-- presence_rooms = { [room_id] = true } of the user's joined rooms).
-- Mixed into the store. A database failure raises (loom.db.Error).
local sql = require "loom.store.sql"

local ipairs, table_unpack = ipairs, table.unpack

local presence = {}
local methods = {}
local _ENV = nil -- luacheck: ignore 211

local COLS = "user_id, state, status_msg, last_active_ts, currently_active, stream_id"

local function row_of(r)
  return { user_id = r[1], state = r[2], status_msg = r[3], last_active_ts = r[4],
           currently_active = r[5] == 1, stream_id = r[6] }
end

--- The highest committed presence position (0 when there is none).
function methods:presence_position()
  local pos = self.presence_pos
  if not pos then
    pos = self.conn:value("SELECT coalesce(max(stream_id), 0) FROM presence")
    self.presence_pos = pos
  end
  return pos
end

--- Set a user's presence p = { state, status_msg (nil: none),
-- last_active_ts, currently_active }. Returns its new position.
function methods:set_presence(user_id, p)
  local conn = self.conn
  return conn:transaction(function()
    local pos = conn:value("SELECT coalesce(max(stream_id), 0) + 1 FROM presence")
    conn:run([[INSERT INTO presence (user_id, state, status_msg, last_active_ts, currently_active, stream_id)
      VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET state = excluded.state,
        status_msg = excluded.status_msg, last_active_ts = excluded.last_active_ts,
        currently_active = excluded.currently_active, stream_id = excluded.stream_id]],
      user_id, p.state, p.status_msg, p.last_active_ts or 0, p.currently_active and 1 or 0, pos)
    conn:after_commit(function()
      if pos > self:presence_position() then self.presence_pos = pos end
      local rooms = {}
      for _, r in ipairs(self:rooms_for_user(user_id, "join")) do rooms[r] = true end
      self:notify_subscribers { position = self.current_stream, rooms = {}, users = {},
        events = 0, presence = { [user_id] = pos }, presence_rooms = rooms }
    end)
    return pos
  end)
end

--- Move a user's last_active_ts (no new position; nothing when the user
-- has no presence row).
function methods:touch_presence(user_id, ts)
  local conn = self.conn
  return conn:transaction(function()
    return conn:run("UPDATE presence SET last_active_ts = ? WHERE user_id = ?", ts, user_id)
  end)
end

--- A user's presence { state, status_msg|nil, last_active_ts,
-- currently_active, stream_id }, or nil when the user never had one.
function methods:presence_of(user_id)
  local r = self.conn:first("SELECT " .. COLS .. " FROM presence WHERE user_id = ?", user_id)
  return r and row_of(r) or nil
end

--- The presence of users changed in (since, to] in stream order; with
-- since nil, the current presence of those who are not offline (an initial
-- sync); user_ids nil: every user's changes in (since, to]. { { user_id,
-- state, status_msg|nil, last_active_ts, currently_active, stream_id }, ... }.
function methods:presence_changes(user_ids, since, to)
  local out = {}
  if not user_ids then
    -- every user's changes in (since, to]
    for _, r in ipairs(self.conn:all("SELECT " .. COLS .. " FROM presence WHERE stream_id > ? AND stream_id <= ?"
        .. " ORDER BY stream_id", since or 0, to)) do
      out[#out + 1] = row_of(r)
    end
    return out
  end
  for marks, chunk in sql.chunks(user_ids) do
    local args = { table_unpack(chunk) }
    local cond
    if since then
      args[#args + 1] = since
      cond = "stream_id > ?"
    else
      cond = "state <> 'offline'"
    end
    args[#args + 1] = to
    for _, r in ipairs(self.conn:all("SELECT " .. COLS .. " FROM presence WHERE user_id IN (" .. marks
        .. ") AND " .. cond .. " AND stream_id <= ? ORDER BY stream_id", table_unpack(args))) do
      out[#out + 1] = row_of(r)
    end
  end
  return out
end

--- Everyone who is online or unavailable (what the idle timer looks at):
-- { { user_id, state, status_msg|nil, last_active_ts, currently_active,
-- stream_id }, ... }.
function methods:presence_not_offline()
  local out = {}
  for _, r in ipairs(self.conn:all("SELECT " .. COLS .. " FROM presence WHERE state <> 'offline'")) do
    out[#out + 1] = row_of(r)
  end
  return out
end

--- The users joined to at least one room the user is joined to (the user
-- included when joined anywhere), sorted.
function methods:users_sharing_rooms(user_id)
  local type_nid = self:type_nid("m.room.member")
  if not type_nid then return {} end
  return self.conn:column([[
    SELECT DISTINCT m2.user_id FROM current_state c1
      JOIN room_memberships m1 ON m1.event_nid = c1.event_nid
      JOIN current_state c2 ON c2.room_nid = c1.room_nid AND c2.type_nid = c1.type_nid
      JOIN room_memberships m2 ON m2.event_nid = c2.event_nid
    WHERE c1.type_nid = ? AND m1.user_id = ? AND m1.membership = 'join' AND m2.membership = 'join'
    ORDER BY m2.user_id]], type_nid, user_id)
end

--- Which of `candidates` (user IDs) share a joined room with the user:
-- { [user_id] = true } (one statement per 500 candidates).
function methods:sharing_among(user_id, candidates)
  local out = {}
  local type_nid = self:type_nid("m.room.member")
  if not type_nid then return out end
  for marks, chunk in sql.chunks(candidates) do
    local args = { type_nid, user_id, table_unpack(chunk) }
    for _, u in ipairs(self.conn:column([[
        SELECT DISTINCT m2.user_id FROM current_state c1
          JOIN room_memberships m1 ON m1.event_nid = c1.event_nid
          JOIN current_state c2 ON c2.room_nid = c1.room_nid AND c2.type_nid = c1.type_nid
          JOIN room_memberships m2 ON m2.event_nid = c2.event_nid
        WHERE c1.type_nid = ? AND m1.user_id = ? AND m1.membership = 'join' AND m2.membership = 'join'
          AND m2.user_id IN (]] .. marks .. ")", table_unpack(args))) do
      out[u] = true
    end
  end
  return out
end

--- Do two users share a room both are joined to?
function methods:share_room(a, b)
  local type_nid = self:type_nid("m.room.member")
  if not type_nid then return false end
  return self.conn:value([[
    SELECT 1 FROM current_state c1
      JOIN room_memberships m1 ON m1.event_nid = c1.event_nid
      JOIN current_state c2 ON c2.room_nid = c1.room_nid AND c2.type_nid = c1.type_nid
      JOIN room_memberships m2 ON m2.event_nid = c2.event_nid
    WHERE c1.type_nid = ? AND m1.user_id = ? AND m1.membership = 'join'
      AND m2.user_id = ? AND m2.membership = 'join' LIMIT 1]], type_nid, a, b) ~= nil
end

presence.methods = methods
return presence
