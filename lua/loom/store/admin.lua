-- loom.store.admin: what the admin API keeps beside accounts and rooms —
-- blocked rooms and each user's server-notices room.
--
--   store:block_room(room_id, "@admin:example.org")
--   store:room_blocked(room_id)          -- { user_id, blocked_ts } or nil
--   store:unblock_room(room_id)          -- true when it was blocked
--   store:set_server_notice_room(user_id, room_id)
--   store:server_notice_room(user_id)    -- room_id or nil
--
-- Mixed into the store. A database failure raises (loom.db.Error).
local core = require "loom.core"

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

admin.methods = methods
return admin
