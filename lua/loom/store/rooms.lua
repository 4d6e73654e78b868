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
--   store:member_counts({ room_nid, ... })          -- { [room_nid] = { joined, invited } }
--   store:heroes({ room_nid, ... }, user_id, 5)     -- { [room_nid] = { { user_id, event_nid }, ... } }
--   store:summary_changed({ room_id, ... }, since, to)   -- { [room_id] = true }
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

--- The joined members of the room's current state with their display
-- names: { { user_id, displayname or nil }, ... } sorted by user ID ({} for
-- an unknown room; a displayname that is not a string is nil). One query.
function methods:current_member_names(room_id)
  local room_nid = self:room_nid(room_id)
  local type_nid = self:type_nid("m.room.member")
  if not room_nid or not type_nid then return {} end
  return self.conn:all([[
    SELECT m.user_id, CASE WHEN json_type(e.json, '$.content.displayname') = 'text'
      THEN json_extract(e.json, '$.content.displayname') END
    FROM current_state c JOIN room_memberships m ON m.event_nid = c.event_nid
    JOIN events e ON e.event_nid = c.event_nid
    WHERE c.room_nid = ? AND c.type_nid = ? AND m.membership = 'join' ORDER BY m.user_id]],
    room_nid, type_nid)
end

--- The numbers of joined and invited members in the current state of
-- rooms (NIDs): { [room_nid] = { joined, invited } } (a room with no member
-- is absent). One query per 500 rooms.
function methods:member_counts(room_nids)
  local out = {}
  local type_nid = self:type_nid("m.room.member")
  if not type_nid then return out end
  for marks, chunk in sql.chunks(room_nids) do
    chunk[#chunk + 1] = type_nid
    for _, row in ipairs(self.conn:all([[
        SELECT c.room_nid, sum(m.membership = 'join'), sum(m.membership = 'invite')
        FROM current_state c JOIN room_memberships m ON m.event_nid = c.event_nid
        WHERE c.room_nid IN (]] .. marks .. [[) AND c.type_nid = ? GROUP BY c.room_nid]],
        table_unpack(chunk))) do
      out[row[1]] = { row[2], row[3] }
    end
  end
  return out
end

-- Per room, the first `limit` members other than user_id whose current
-- membership is a or b, by the stream ordering of that membership.
local function first_members(self, type_nid, room_nids, user_id, limit, a, b, out)
  for marks, chunk in sql.chunks(room_nids) do
    local n = #chunk
    chunk[n + 1], chunk[n + 2], chunk[n + 3], chunk[n + 4], chunk[n + 5] = type_nid, a, b, user_id, limit
    for _, row in ipairs(self.conn:all([[
        SELECT room_nid, user_id, event_nid FROM (
          SELECT c.room_nid, m.user_id, m.event_nid, row_number() OVER (
            PARTITION BY c.room_nid ORDER BY m.stream_ordering, m.user_id) AS rank
          FROM current_state c JOIN room_memberships m ON m.event_nid = c.event_nid
          WHERE c.room_nid IN (]] .. marks .. [[) AND c.type_nid = ? AND m.membership IN (?, ?)
            AND m.user_id <> ?)
        WHERE rank <= ? ORDER BY room_nid, rank]], table_unpack(chunk))) do
      local list = out[row[1]]
      if not list then list = {}; out[row[1]] = list end
      list[#list + 1] = { row[2], row[3] }
    end
  end
end

--- The heroes of rooms (NIDs) for user_id (Client-Server API /sync,
-- `m.heroes`): per room, the first `limit` members other than the user, by
-- the stream ordering of their current membership event, who are joined or
-- invited — or, when there are none, who left or were banned.
-- { [room_nid] = { { user_id, event_nid }, ... } } (event_nid: the member
-- event in the current state; a room with nobody else is absent).
function methods:heroes(room_nids, user_id, limit)
  local out = {}
  local type_nid = self:type_nid("m.room.member")
  if not type_nid then return out end
  first_members(self, type_nid, room_nids, user_id, limit, "join", "invite", out)
  local rest = {}
  for _, rn in ipairs(room_nids) do if not out[rn] then rest[#rest + 1] = rn end end
  first_members(self, type_nid, rest, user_id, limit, "leave", "ban", out)
  return out
end

-- What a room summary depends on: the members, the name, the canonical alias.
local SUMMARY_TYPES = { "m.room.member", "m.room.name", "m.room.canonical_alias" }

--- The rooms (IDs) among room_ids in whose timeline a state event that a
-- room summary depends on (membership, name, canonical alias) arrived in
-- (since, to]: { [room_id] = true }. The change cache skips quiet rooms;
-- one query per 500 of the others.
function methods:summary_changed(room_ids, since, to)
  local out = {}
  local types = {}
  for _, t in ipairs(SUMMARY_TYPES) do types[#types + 1] = self:type_nid(t) end
  if #types == 0 or since >= to then return out end
  local nids = {}
  for _, r in ipairs(self.room_changes:changed_among(room_ids, since)) do
    local rn = self:room_nid(r)
    if rn then nids[#nids + 1] = rn end
  end
  for marks, chunk in sql.chunks(nids) do
    local n = #chunk
    chunk[n + 1], chunk[n + 2] = since, to
    for i, t in ipairs(types) do chunk[n + 2 + i] = t end
    for _, rn in ipairs(self.conn:column("SELECT DISTINCT room_nid FROM events WHERE room_nid IN (" .. marks
        .. ") AND stream_ordering > ? AND stream_ordering <= ? AND type_nid IN (" .. sql.marks(#types)
        .. ") AND state_key_nid IS NOT NULL AND " .. TIMELINE, table_unpack(chunk))) do
      out[self:room_id(rn)] = true
    end
  end
  return out
end

--- Whether the user (of any server) is joined to some room in its current
-- state here — as the rooms' state says, outlier memberships included.
function methods:joined_anywhere(user_id)
  local type_nid, sk = self:type_nid("m.room.member"), self:state_key_nid(user_id)
  if not type_nid or not sk then return false end
  return self.conn:value([[SELECT 1 FROM room_memberships m JOIN current_state c ON c.room_nid = m.room_nid
      AND c.type_nid = ? AND c.state_key_nid = ? AND c.event_nid = m.event_nid
    WHERE m.user_id = ? AND m.membership = 'join' LIMIT 1]], type_nid, sk, user_id) ~= nil
end

--- The user's membership in a room as of stream position pos (by the
-- latest non-outlier membership event at or before it), or nil.
function methods:membership_at(user_id, room_nid, pos)
  return self.conn:value([[SELECT m.membership FROM room_memberships m JOIN events e ON e.event_nid = m.event_nid
    WHERE m.user_id = ? AND m.room_nid = ? AND m.stream_ordering <= ? AND e.outlier = 0
    ORDER BY m.stream_ordering DESC LIMIT 1]], user_id, room_nid, pos)
end

--- The user's latest membership in a room counting outliers too (an invite
-- from another server to a room this server is not in): membership, sender,
-- event ID; or nil.
function methods:latest_membership(user_id, room_nid)
  local r = self.conn:all([[SELECT m.membership, m.sender, e.event_id FROM room_memberships m
    JOIN events e ON e.event_nid = m.event_nid
    WHERE m.user_id = ? AND m.room_nid = ? ORDER BY m.stream_ordering DESC LIMIT 1]], user_id, room_nid)[1]
  if not r then return nil end
  return r[1], r[2], r[3]
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

--- Record that redaction_id redacts event_id (again: no change); the event
-- leaves the search index.
function methods:record_redaction(event_id, redaction_id)
  self.unredacted = nil
  self.conn:run("INSERT OR IGNORE INTO redactions (event_id, redaction_id) VALUES (?, ?)",
    event_id, redaction_id)
  self:unindex_for_search(event_id)
  self:unindex_relation(event_id)
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

--- The rooms the user has forgotten, as a set { [room_id] = true }.
function methods:forgotten_rooms(user_id)
  local out = {}
  for _, r in ipairs(self.conn:all("SELECT room_id FROM forgotten_rooms WHERE user_id = ?", user_id)) do
    out[r[1]] = true
  end
  return out
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
