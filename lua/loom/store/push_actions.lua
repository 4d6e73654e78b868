-- loom.store.push_actions: the notifications push-rule evaluation produced
-- (schema 33) and the unread counts /sync reports from them.
--
--   store:add_push_actions(room_id, stream_ordering, event_id, { { user_id, highlight }, ... })
--   local counts = store:unread_counts(user_id)  -- { [room_id] = { notifications, highlights } }
--
-- A user's count in a room is their rows after the stream ordering of their
-- latest m.read or m.read.private receipt there. Mixed into the store. A
-- database failure raises.
local ipairs = ipairs

local push_actions = {}
local methods = {}
local _ENV = nil -- luacheck: ignore 211

--- Record an event's notifications: rows = { { user_id, highlight (bool) }, ... }.
function methods:add_push_actions(room_id, stream_ordering, event_id, rows)
  local conn = self.conn
  conn:transaction(function()
    for _, r in ipairs(rows) do
      conn:run([[INSERT OR REPLACE INTO event_push_actions (user_id, room_id, stream_ordering, event_id, highlight)
        VALUES (?, ?, ?, ?, ?)]], r[1], room_id, stream_ordering, event_id, r[2] and 1 or 0)
    end
  end)
end

--- A user's unread notification and highlight counts per room (rooms with
-- none are absent): { [room_id] = { notifications, highlights } }. One query.
function methods:unread_counts(user_id)
  local out = {}
  for _, row in ipairs(self.conn:all([[
      SELECT a.room_id, count(*), sum(a.highlight) FROM event_push_actions a
      WHERE a.user_id = ? AND a.stream_ordering > coalesce((SELECT max(r.event_stream) FROM receipts r
        WHERE r.room_id = a.room_id AND r.user_id = a.user_id AND r.receipt_type IN ('m.read', 'm.read.private')),
        0)
      GROUP BY a.room_id]], user_id)) do
    out[row[1]] = { row[2], row[3] }
  end
  return out
end

push_actions.methods = methods
return push_actions
