-- loom.store.push_actions: the notifications push-rule evaluation produced
-- (schema 33) and the unread counts /sync reports from them.
--
--   store:add_push_actions(room_id, stream_ordering, event_id, { { user_id, highlight }, ... })
--   local counts = store:unread_counts(user_id)  -- { [room_id] = { notifications, highlights } }
--
-- A user's count in a room is their rows after the stream ordering of their
-- latest m.read or m.read.private receipt there. Mixed into the store. A
-- database failure raises.
local ipairs, setmetatable = ipairs, setmetatable
local concat, unpack = table.concat, table.unpack

local push_actions = {}
local methods = {}
local _ENV = nil -- luacheck: ignore 211

--- Record an event's notifications: rows = { { user_id, highlight (bool) [, actions] }, ... }
-- (actions, r[3], are not stored here). One transaction; rows go in CHUNK
-- at a time through one cached multi-row statement (plus one for the rest).
local CHUNK = 200

local function insert_sql(n)
  local values = {}
  for i = 1, n do values[i] = ("(?%d, ?1, ?2, ?3, ?%d)"):format(2 * i + 2, 2 * i + 3) end
  return "INSERT OR REPLACE INTO event_push_actions (user_id, room_id, stream_ordering, event_id, highlight) VALUES "
    .. concat(values, ", ")
end

local sql_of = setmetatable({}, { __index = function(t, n) local s = insert_sql(n) t[n] = s return s end })

function methods:add_push_actions(room_id, stream_ordering, event_id, rows)
  local conn, total = self.conn, #rows
  if total == 0 then return end
  conn:transaction(function()
    local args = { room_id, stream_ordering, event_id }
    for first = 1, total, CHUNK do
      local n = total - first + 1
      if n > CHUNK then n = CHUNK end
      for i = 1, n do
        local r = rows[first + i - 1]
        args[2 * i + 2], args[2 * i + 3] = r[1], r[2] and 1 or 0
      end
      conn:run(sql_of[n], unpack(args, 1, 2 * n + 3))
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
