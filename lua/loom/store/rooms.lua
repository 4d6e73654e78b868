-- loom.store.rooms: what the store answers about a room and its members
-- beside the event stream: memberships as of a stream position, the
-- timeline event at a position, redactions, forgotten rooms, state key
-- names.
--
--   store:membership_at(user_id, room_nid, pos)     -- "join", "leave", ... or nil
--   store:ever_member(user_id, room_nid)            -- true / false
--   local nid, event_id, current = store:timeline_event_at(room_nid, pos)
--   store:record_redaction(target_id, redaction_id)
--   store:redactions_of({ event_id, ... })          -- { { event_id, redaction_id }, ... }
--   store:current_members(room_id, "join")          -- { user_id, ... } sorted
--
-- Mixed into the store. A database failure raises (loom.db.Error).
local sql = require "loom.store.sql"

local ipairs, table_unpack = ipairs, table.unpack

local rooms = {}
local methods = {}
local _ENV = nil -- luacheck: ignore 211

local TIMELINE = sql.TIMELINE

--- The users whose membership in the room's current state is `membership`,
-- sorted; {} for an unknown room. One indexed query over current_state.
function methods:current_members(room_id, membership)
  local room_nid = self:room_nid(room_id)
  local type_nid = self:type_nid("m.room.member")
  if not room_nid or not type_nid then return {} end
  return self.conn:column([[
    SELECT m.user_id FROM current_state c JOIN room_memberships m ON m.event_nid = c.event_nid
    WHERE c.room_nid = ? AND c.type_nid = ? AND m.membership = ? ORDER BY m.user_id]],
    room_nid, type_nid, membership)
end

--- The user's membership in a room as of stream position pos (by the
-- latest non-outlier membership event at or before it), or nil.
function methods:membership_at(user_id, room_nid, pos)
  return self.conn:value([[SELECT m.membership FROM room_memberships m JOIN events e ON e.event_nid = m.event_nid
    WHERE m.user_id = ? AND m.room_nid = ? AND m.stream_ordering <= ? AND e.outlier = 0
    ORDER BY m.stream_ordering DESC LIMIT 1]], user_id, room_nid, pos)
end

--- The stream positions of the user's joins to a room: { pos, ... }.
function methods:join_positions(user_id, room_nid)
  -- kept per user until the user's memberships change (the member change
  -- cache says so); never what an open transaction read
  local cache = self.join_cache
  if not cache or cache.n > 100000 then cache = { users = {}, n = 0 }; self.join_cache = cache end
  local mine = cache.users[user_id]
  if mine and self.member_changes:has_changed(user_id, mine.at) then mine = nil; cache.users[user_id] = nil end
  local hit = mine and mine.rooms[room_nid]
  if hit then return hit end
  local at = self.current_stream
  local list = self.conn:column([[SELECT stream_ordering FROM room_memberships
    WHERE user_id = ? AND room_nid = ? AND membership = 'join']], user_id, room_nid)
  if not self.conn:in_transaction() then
    if not mine then mine = { at = at, rooms = {} }; cache.users[user_id] = mine end
    mine.rooms[room_nid] = list
    cache.n = cache.n + 1
  end
  return list
end

--- Did the user ever have a membership event in the room?
function methods:ever_member(user_id, room_nid)
  return self.conn:value("SELECT 1 FROM room_memberships WHERE user_id = ? AND room_nid = ? LIMIT 1",
    user_id, room_nid) ~= nil
end

--- The room's last timeline event at or before stream position pos:
-- event_nid, event_id, current_after (the room's current-state snapshot
-- after it, when recorded) — or nil when there is none.
function methods:timeline_event_at(room_nid, pos)
  local row = self.conn:first("SELECT event_nid, event_id, current_after FROM events WHERE room_nid = ? AND"
    .. " stream_ordering <= ? AND " .. TIMELINE .. " ORDER BY stream_ordering DESC LIMIT 1", room_nid, pos)
  if not row then return nil end
  return row[1], row[2], row[3]
end

--- Record the room's current-state snapshot after an event.
function methods:set_current_after(event_nid, snapshot_nid)
  self.conn:run("UPDATE events SET current_after = ? WHERE event_nid = ?", snapshot_nid, event_nid)
  return true
end

--- Record that redaction_id redacts event_id (again: no change).
function methods:record_redaction(event_id, redaction_id)
  self.unredacted = nil
  self.conn:run("INSERT OR IGNORE INTO redactions (event_id, redaction_id) VALUES (?, ?)",
    event_id, redaction_id)
  return true
end

--- The redactions of some events: { { event_id, redaction_id }, ... }.
-- Events known to have no redaction are kept in memory (not while a
-- transaction is open) until the next redaction is recorded, so the syncs
-- one commit wakes ask once.
function methods:redactions_of(event_ids)
  local out = {}
  local known = self.unredacted
  if not known or known.n > 50000 then known = { ids = {}, n = 0 }; self.unredacted = known end
  local ask = {}
  for _, id in ipairs(event_ids) do if not known.ids[id] then ask[#ask + 1] = id end end
  local keep = not self.conn:in_transaction()
  for marks, chunk in sql.chunks(ask) do
    local rows = self.conn:all("SELECT event_id, redaction_id FROM redactions WHERE event_id IN ("
      .. marks .. ") ORDER BY event_id, redaction_id", table_unpack(chunk))
    local redacted = {}
    for _, r in ipairs(rows) do out[#out + 1] = r; redacted[r[1]] = true end
    if keep then
      for _, id in ipairs(chunk) do
        if not redacted[id] and not known.ids[id] then known.ids[id] = true; known.n = known.n + 1 end
      end
    end
  end
  return out
end

--- Mark a room forgotten by the user (after leaving it).
function methods:forget_room(user_id, room_id)
  self.conn:run("INSERT OR IGNORE INTO forgotten_rooms (user_id, room_id) VALUES (?, ?)", user_id, room_id)
  return true
end

--- The user joined the room again: it is no longer forgotten.
function methods:unforget_room(user_id, room_id)
  self.conn:run("DELETE FROM forgotten_rooms WHERE user_id = ? AND room_id = ?", user_id, room_id)
  return true
end

--- The state keys of state key NIDs: { [nid] = state_key } (unknown NIDs
-- are absent).
function methods:state_key_names(nids)
  local want, seen = {}, {}
  for _, n in ipairs(nids) do
    if not seen[n] then seen[n] = true; want[#want + 1] = n end
  end
  return sql.map_in(self.conn, "SELECT state_key_nid, state_key FROM state_keys WHERE state_key_nid IN (", want)
end

rooms.methods = methods
return rooms
