-- loom.store.remote_devices: the device lists of users of other servers
-- (Server-Server API "Device Management"), and the positions of a local
-- user's device changes that the m.device_list_update EDUs name.
--
--   local id = store:device_list_stream_id(user_id)        -- last device change of a local user (0: none)
--   local prev = store:device_list_prev_id(user_id, pos)   -- the one before pos, or nil
--   local held = store:remote_device_list(user_id)         -- stream_id of the list held, or nil
--   store:replace_remote_device_list(user_id, stream_id, { { device_id, display_name, key_json }, ... })
--   store:update_remote_device(user_id, stream_id, device_id, { deleted, display_name, key_json })
--   store:forget_remote_device_list(user_id)
--   local keys, names = store:remote_device_keys_of({ user_id, ... })
--       -- as device_keys_of, for the users whose list is held (others absent)
--
-- A change of a held list is a device-list change of the user (local users
-- sharing a room see it in /sync). Mixed into the store. A database
-- failure raises.
local sql = require "loom.store.sql"

local ipairs, table_unpack = ipairs, table.unpack

local remote_devices = {}
local methods = {}
local _ENV = nil -- luacheck: ignore 211

--- The position of the last change of one of the (local) user's devices,
-- 0 when there is none: the stream_id of GET /user/devices.
function methods:device_list_stream_id(user_id)
  return self.conn:value([[SELECT coalesce(max(stream_id), 0) FROM device_list_changes
    WHERE user_id = ? AND device_id IS NOT NULL]], user_id)
end

--- The position of the device change of the user before pos, or nil: the
-- prev_id of the EDU for the change at pos.
function methods:device_list_prev_id(user_id, pos)
  return self.conn:value([[SELECT max(stream_id) FROM device_list_changes
    WHERE user_id = ? AND device_id IS NOT NULL AND stream_id < ?]], user_id, pos)
end

--- The stream_id of the remote user's device list held here, or nil.
function methods:remote_device_list(user_id)
  return self.conn:value("SELECT stream_id FROM remote_device_lists WHERE user_id = ?", user_id)
end

--- Replace the held device list of a remote user (a resync): devices =
-- { { device_id, display_name, key_json }, ... }; keys: cross-signing keys
-- { [usage] = json_text } (may be empty).
function methods:replace_remote_device_list(user_id, stream_id, devices, keys)
  local conn = self.conn
  return conn:transaction(function()
    conn:run([[INSERT INTO remote_device_lists (user_id, stream_id) VALUES (?, ?)
      ON CONFLICT (user_id) DO UPDATE SET stream_id = excluded.stream_id]], user_id, stream_id)
    conn:run("DELETE FROM remote_devices WHERE user_id = ?", user_id)
    for _, d in ipairs(devices) do
      conn:run([[INSERT INTO remote_devices (user_id, device_id, display_name, key_json) VALUES (?, ?, ?, ?)
        ON CONFLICT DO NOTHING]], user_id, d[1], d[2], d[3])
    end
    if keys and (keys.master or keys.self_signing) then
      self:put_cross_signing_keys(user_id, keys)   -- a change of the user's list too
    else
      self:device_list_changed(user_id)
    end
    return true
  end)
end

--- Apply one m.device_list_update to a held list: the device is deleted,
-- or its display name and keys (JSON text or nil) replace those held.
function methods:update_remote_device(user_id, stream_id, device_id, c)
  local conn = self.conn
  return conn:transaction(function()
    conn:run("UPDATE remote_device_lists SET stream_id = ? WHERE user_id = ?", stream_id, user_id)
    if c.deleted then
      conn:run("DELETE FROM remote_devices WHERE user_id = ? AND device_id = ?", user_id, device_id)
    else
      conn:run([[INSERT INTO remote_devices (user_id, device_id, display_name, key_json) VALUES (?, ?, ?, ?)
        ON CONFLICT (user_id, device_id) DO UPDATE SET display_name = excluded.display_name,
        key_json = coalesce(excluded.key_json, remote_devices.key_json)]], user_id, device_id, c.display_name,
        c.key_json)
    end
    self:device_list_changed(user_id, device_id)
    return true
  end)
end

--- Stop holding the remote user's device list (they share no room with
-- this server any more): the next query asks their server.
function methods:forget_remote_device_list(user_id)
  local conn = self.conn
  return conn:transaction(function()
    conn:run("DELETE FROM remote_device_lists WHERE user_id = ?", user_id)
    conn:run("DELETE FROM remote_devices WHERE user_id = ?", user_id)
    conn:run("DELETE FROM e2e_cross_signing_keys WHERE user_id = ?", user_id)
    return true
  end)
end

--- The held device keys of remote users, as device_keys_of: { [user_id] =
-- { [device_id] = json_text } }, { [user_id] = { [device_id] = name } }, for
-- the users whose list is held (devices without keys left out).
function methods:remote_device_keys_of(user_ids)
  local out, names = {}, {}
  for marks, chunk in sql.chunks(user_ids) do
    for _, u in ipairs(self.conn:column("SELECT user_id FROM remote_device_lists WHERE user_id IN (" .. marks .. ")",
        table_unpack(chunk))) do
      out[u] = {}; names[u] = {}
    end
    for _, row in ipairs(self.conn:all([[SELECT user_id, device_id, key_json, display_name FROM remote_devices
        WHERE key_json IS NOT NULL AND user_id IN (]] .. marks .. ")", table_unpack(chunk))) do
      if out[row[1]] then
        out[row[1]][row[2]] = row[3]
        names[row[1]][row[2]] = row[4]
      end
    end
  end
  return out, names
end

remote_devices.methods = methods
return remote_devices
