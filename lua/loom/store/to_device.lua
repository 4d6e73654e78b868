-- loom.store.to_device: send-to-device messages (Client-Server API
-- "Send-to-Device messaging"). A message waits in its target device's inbox
-- under a position of the to-device stream until a /sync of that device
-- acknowledges it.
--
--   local sent = store:send_to_device(sender, sender_device, txn_id, type,
--     { { user_id, device_id_or_"*", json_text }, ... })       -- false: txn_id seen before
--   store:ack_to_device(user_id, device_id, upto)              -- drop messages at <= upto
--   local msgs = store:to_device_messages(user_id, device_id, after, limit)
--                                                  -- { { pos, sender, type, json text }, ... }
--   local now = store:to_device_position()
--
-- Subscribers get a note for each target user once the messages commit
-- (wakes a waiting /sync). Mixed into the store. A database failure raises.
local changecache = require "loom.store.changecache"

local ipairs, next, pairs = ipairs, next, pairs

local to_device = {}
local methods = {}
local _ENV = nil -- luacheck: ignore 211

--- Queue messages of one type from (sender, sender_device) under txn_id:
-- targets = { { user_id, device_id or "*", json text }, ... }; "*" means every
-- device of the user; devices that do not exist are skipped. Returns true, or
-- false when this sender device already used txn_id (nothing is queued again).
function methods:send_to_device(sender, sender_device, txn_id, type, targets)
  local conn = self.conn
  return conn:transaction(function()
    if conn:value("SELECT 1 FROM to_device_txns WHERE sender = ? AND sender_device = ? AND txn_id = ?",
        sender, sender_device or "", txn_id) then
      return false
    end
    conn:run("INSERT INTO to_device_txns (sender, sender_device, txn_id) VALUES (?, ?, ?)",
      sender, sender_device or "", txn_id)
    local pos = conn:value("SELECT last FROM to_device_stream WHERE id = 1")
    local users = {}
    for _, t in ipairs(targets) do
      local user_id, device, text = t[1], t[2], t[3]
      local devices
      if device == "*" then
        devices = conn:all("SELECT device_id FROM devices WHERE user_id = ? ORDER BY device_id", user_id)
      else
        devices = conn:all("SELECT device_id FROM devices WHERE user_id = ? AND device_id = ?", user_id, device)
      end
      for _, row in ipairs(devices) do
        pos = pos + 1
        conn:run([[INSERT INTO to_device_inbox (user_id, device_id, stream_id, sender, type, content)
          VALUES (?, ?, ?, ?, ?, ?)]], user_id, row[1], pos, sender, type, text)
        users[user_id] = pos
      end
    end
    conn:run("UPDATE to_device_stream SET last = ? WHERE id = 1", pos)
    conn:after_commit(function()
      if pos > self:to_device_position() then self.to_device_pos = pos end
      local cache = self.to_device_changes
      if cache then for user_id, p in pairs(users) do cache:entity_changed(user_id, p) end end
      if next(users) == nil then return end
      self:notify_subscribers { position = self.current_stream, rooms = {}, users = users,
        events = 0, to_device = true }
    end)
    return true
  end)
end

--- The highest committed to-device position (0 when there is none).
function methods:to_device_position()
  local pos = self.to_device_pos
  if not pos then
    pos = self.conn:value("SELECT last FROM to_device_stream WHERE id = 1") or 0
    self.to_device_pos = pos
  end
  return pos
end

--- A device acknowledged every message at positions <= upto: drop them.
function methods:ack_to_device(user_id, device_id, upto)
  -- what was acknowledged before is gone already: no statement for it
  local acked = self.to_device_acked
  if not acked then acked = {}; self.to_device_acked = acked end
  local key = user_id .. "\0" .. (device_id or "")
  if acked[key] and acked[key] >= upto then return end
  self.conn:run("DELETE FROM to_device_inbox WHERE user_id = ? AND device_id = ? AND stream_id <= ?",
    user_id, device_id or "", upto)
  if not self.conn:in_transaction() then acked[key] = upto end
end

--- A device's messages after position `after`, in order, at most `limit`:
-- { { position, sender, type, json text }, ... }.
function methods:to_device_messages(user_id, device_id, after, limit)
  local out = {}
  -- nothing was queued for the user after `after`: no query (the change
  -- cache knows every message queued since its first use)
  local cache = self.to_device_changes
  if not cache then
    cache = changecache.new(self:to_device_position())
    self.to_device_changes = cache
  end
  if not cache:has_changed(user_id, after) then return out end
  for _, row in ipairs(self.conn:all([[SELECT stream_id, sender, type, content FROM to_device_inbox
      WHERE user_id = ? AND device_id = ? AND stream_id > ? ORDER BY stream_id LIMIT ?]],
      user_id, device_id or "", after, limit)) do
    out[#out + 1] = { row[1], row[2], row[3], row[4] }
  end
  return out
end

to_device.methods = methods
return to_device
