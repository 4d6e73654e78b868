-- loom.store.receipts: read receipts (Client-Server API "Receipts"), the
-- latest per room, type, user and thread, and their stream: every change
-- takes the next receipts position, so /sync sends only what changed since
-- its token. A receipt never moves backwards: one for an event earlier in
-- the stream than the current receipt changes nothing.
--
--   local pos = store:set_receipt { room_id, receipt_type, user_id, thread_id, event_id,
--                                   event_stream, ts }            -- or false (not newer)
--   local list = store:receipts_changes({ room_id, ... }, since, to)
--     -- { { room_id, receipt_type, user_id, thread_id|nil, event_id, ts }, ... }
--   local now = store:receipts_position()
--   local rooms = store:receipt_rooms_changed_after(pos, max)  -- nil: cannot tell
--
-- The position seen by readers moves only when the change commits; then the
-- store's subscribers get a note (receipts = { [room_id] = pos }).
-- Mixed into the store. A database failure raises (loom.db.Error).
local sql = require "loom.store.sql"
local changecache = require "loom.store.changecache"

local ipairs, table_unpack = ipairs, table.unpack

local receipts = {}
local methods = {}
local _ENV = nil -- luacheck: ignore 211

--- The highest committed receipts position (0 when there is none).
function methods:receipts_position()
  local pos = self.receipts_pos
  if not pos then
    pos = self.conn:value([[SELECT max(coalesce(max(stream_id), 0),
      coalesce((SELECT pos FROM stream_floors WHERE stream = 'receipts'), 0)) FROM receipts]])
    self.receipts_pos = pos
  end
  return pos
end

--- Record a receipt r = { room_id, receipt_type, user_id, thread_id (nil:
-- unthreaded), event_id, event_stream, ts }. Returns its new position, or
-- false when the current receipt is at the same or a later event.
function methods:set_receipt(r)
  local conn = self.conn
  local thread = r.thread_id or ""
  return conn:transaction(function()
    local cur = conn:value([[SELECT event_stream FROM receipts
      WHERE room_id = ? AND receipt_type = ? AND user_id = ? AND thread_id = ?]],
      r.room_id, r.receipt_type, r.user_id, thread)
    if cur and cur >= r.event_stream then return false end
    local pos = conn:value([[SELECT max(coalesce(max(stream_id), 0),
      coalesce((SELECT pos FROM stream_floors WHERE stream = 'receipts'), 0)) + 1 FROM receipts]])
    conn:run([[INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id, event_stream, ts, stream_id)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (room_id, receipt_type, user_id, thread_id)
      DO UPDATE SET event_id = excluded.event_id, event_stream = excluded.event_stream, ts = excluded.ts,
        stream_id = excluded.stream_id]],
      r.room_id, r.receipt_type, r.user_id, thread, r.event_id, r.event_stream, r.ts, pos)
    -- a read receipt reads the user's notifications up to it (loom.store.push_actions)
    if r.receipt_type == "m.read" or r.receipt_type == "m.read.private" then
      self:recount_unread(r.room_id, r.user_id)
    end
    conn:after_commit(function()
      if pos > self:receipts_position() then self.receipts_pos = pos end
      if self.receipt_changes then self.receipt_changes:entity_changed(r.room_id, pos) end
      self:notify_subscribers { position = self.current_stream, rooms = {}, users = {},
        events = 0, receipts = { [r.room_id] = pos } }
    end)
    return pos
  end)
end

--- The rooms whose receipts changed after receipts position pos, from a
-- change cache (it knows the changes since its first use), at most max;
-- nil when it cannot tell or more changed.
function methods:receipt_rooms_changed_after(pos, max)
  local cache = self.receipt_changes
  if not cache then
    cache = changecache.new(self:receipts_position())
    self.receipt_changes = cache
  end
  return cache:changed_after(pos, max)
end

--- The receipts of rooms changed in (since, to] (since nil: all up to
-- `to`), in stream order: { { room_id, receipt_type, user_id, thread_id
-- (nil: unthreaded), event_id, ts }, ... }.
function methods:receipts_changes(room_ids, since, to)
  local out = {}
  for marks, chunk in sql.chunks(room_ids) do
    local args = { table_unpack(chunk) }
    args[#args + 1] = since or 0
    args[#args + 1] = to
    for _, row in ipairs(self.conn:all([[SELECT room_id, receipt_type, user_id, thread_id, event_id, ts, stream_id
        FROM receipts WHERE room_id IN (]] .. marks .. [[) AND stream_id > ? AND stream_id <= ?
        ORDER BY stream_id]], table_unpack(args))) do
      out[#out + 1] = { row[1], row[2], row[3], row[4] ~= "" and row[4] or nil, row[5], row[6], row[7] }
    end
  end
  return out
end

receipts.methods = methods
return receipts
