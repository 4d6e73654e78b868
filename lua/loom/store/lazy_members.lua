-- loom.store.lazy_members: which m.room.member events each device was sent
-- while it lazy-loads members in /sync, per user, device and room (what
-- Synapse keeps in its lazy-loaded-members cache; kept in the database here,
-- so it outlives a restart).
--
--   local sent = store:lazy_members_sent(user_id, device_id, room_nid)  -- { [member] = event_id }
--   store:record_lazy_members_sent(user_id, device_id, room_nid, { [member] = event_id })
--   store:record_lazy_members_sent_many(user_id, device_id, { [room_nid] = { [member] = event_id } })
--   store:forget_lazy_members_sent(user_id, device_id)   -- the device's sync starts over
--
-- Mixed into the store. A database failure raises (loom.db.Error).
local ipairs, pairs, next = ipairs, pairs, next

local lazy_members = {}
local methods = {}
local _ENV = nil -- luacheck: ignore 211

--- The member events the device was sent in a room: { [member user ID] = event ID }.
function methods:lazy_members_sent(user_id, device_id, room_nid)
  local out = {}
  for _, row in ipairs(self.conn:all([[SELECT member, event_id FROM lazy_members_sent
      WHERE user_id = ? AND device_id = ? AND room_nid = ?]], user_id, device_id, room_nid)) do
    out[row[1]] = row[2]
  end
  return out
end

--- Record that the device was sent these member events in a room
-- ({ [member user ID] = event ID }; a member's later event replaces the earlier).
function methods:record_lazy_members_sent(user_id, device_id, room_nid, sent)
  if next(sent) == nil then return true end
  local conn = self.conn
  return conn:transaction(function()
    for member, event_id in pairs(sent) do
      conn:run([[INSERT INTO lazy_members_sent (user_id, device_id, room_nid, member, event_id)
        VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, device_id, room_nid, member)
        DO UPDATE SET event_id = excluded.event_id]], user_id, device_id, room_nid, member, event_id)
    end
    return true
  end)
end

--- record_lazy_members_sent for many rooms in one transaction:
-- by_room = { [room_nid] = { [member user ID] = event ID } }.
function methods:record_lazy_members_sent_many(user_id, device_id, by_room)
  if next(by_room) == nil then return true end
  local conn = self.conn
  return conn:transaction(function()
    for room_nid, sent in pairs(by_room) do
      for member, event_id in pairs(sent) do
        conn:run([[INSERT INTO lazy_members_sent (user_id, device_id, room_nid, member, event_id)
          VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, device_id, room_nid, member)
          DO UPDATE SET event_id = excluded.event_id]], user_id, device_id, room_nid, member, event_id)
      end
    end
    return true
  end)
end

--- Forget every member event the device was sent (its sync starts over).
function methods:forget_lazy_members_sent(user_id, device_id)
  self.conn:run("DELETE FROM lazy_members_sent WHERE user_id = ? AND device_id = ?", user_id, device_id)
  return true
end

lazy_members.methods = methods
return lazy_members
