-- loom.store.devices: a user's devices and their end-to-end encryption
-- keys (Client-Server API "Device management" and "End-to-End
-- Encryption"), and the device-list stream.
--
--   local list = store:user_devices(user_id)            -- { { device_id, display_name, last_seen_ts }, ... }
--   local d = store:user_device(user_id, device_id)     -- one of those, or nil
--   store:set_device_display_name(user_id, device_id, name)   -- false: no such device
--   store:delete_devices(user_id, { device_id, ... })   -- tokens, keys, to-device inbox go too
--   store:put_device_keys(user_id, device_id, json_text)
--   store:add_one_time_keys(user_id, device_id, { { algorithm, key_id, json_text }, ... })
--   store:put_fallback_keys(user_id, device_id, { { algorithm, key_id, json_text }, ... })
--   local counts = store:one_time_key_counts(user_id, device_id)   -- { [algorithm] = n }
--   local algs = store:unused_fallback_key_types(user_id, device_id) -- { algorithm, ... }
--   local counts, algs = store:device_key_counts(user_id, device_id)  -- both in one statement
--   local claimed = store:claim_keys({ { user_id, device_id, algorithm }, ... })
--                                      -- { { user_id, device_id, key_id, json_text }, ... }
--   local keys, names = store:device_keys_of({ user_id, ... })
--                          -- { [user_id] = { [device_id] = json_text } }, { [user_id] = { [device_id] = name } }
--   local pos = store:device_list_position()
--   local users = store:device_list_changes(since, to)  -- { [user_id] = true }
--   local members = store:joined_members(room_id)       -- { user_id, ... }
--
-- A change of a user's devices or device keys takes a new device-list
-- position; after the commit it wakes the user and the rooms they are
-- joined to (like presence). Mixed into the store. A database failure raises.
local sql = require "loom.store.sql"
local core = require "loom.core"

local ipairs, table_unpack = ipairs, table.unpack
local now_ms = core.now_ms

local devices = {}
local methods = {}
local _ENV = nil -- luacheck: ignore 211

local function device_row(row)
  return { device_id = row[1], display_name = row[2], last_seen_ts = row[3] }
end

--- The user's devices, by device ID.
function methods:user_devices(user_id)
  local out = {}
  for _, row in ipairs(self.conn:all(
      "SELECT device_id, display_name, last_seen_ts FROM devices WHERE user_id = ? ORDER BY device_id", user_id)) do
    out[#out + 1] = device_row(row)
  end
  return out
end

--- One device of the user, or nil.
function methods:user_device(user_id, device_id)
  local row = self.conn:first(
    "SELECT device_id, display_name, last_seen_ts FROM devices WHERE user_id = ? AND device_id = ?",
    user_id, device_id)
  return row and device_row(row) or nil
end

-- A new device-list position for user_id (inside the open transaction);
-- the waiting syncs are woken after the commit. device_id: the device that
-- changed (nil: the user's cross-signing keys). self.on_device_list_change,
-- when set, is called inside the transaction with (user_id, pos, device_id)
-- (loom.federation.device_lists queues the EDUs for other servers there).
local function changed(self, user_id, device_id)
  local conn = self.conn
  conn:run("INSERT INTO device_list_changes (user_id, device_id) VALUES (?, ?)", user_id, device_id)
  local pos = conn:value("SELECT last_insert_rowid()")
  if self.on_device_list_change then self.on_device_list_change(user_id, pos, device_id) end
  conn:after_commit(function()
    if pos > self:device_list_position() then self.device_list_pos = pos end
    local rooms = {}
    for _, r in ipairs(self:rooms_for_user(user_id, "join")) do rooms[r] = true end
    self:notify_subscribers { position = self.current_stream, rooms = {}, users = { [user_id] = pos },
      events = 0, presence_rooms = rooms }
  end)
  return pos
end

--- A device-list change of the user (inside a transaction of the caller's);
-- device_id: the device that changed (nil: the cross-signing keys).
function methods:device_list_changed(user_id, device_id)
  return changed(self, user_id, device_id)
end

--- Rename a device (name nil: no name). false when there is no such device.
function methods:set_device_display_name(user_id, device_id, name)
  local conn = self.conn
  return conn:transaction(function()
    local n = conn:run("UPDATE devices SET display_name = ? WHERE user_id = ? AND device_id = ?",
      name, user_id, device_id)
    if n == 0 then return false end
    changed(self, user_id, device_id)
    return true
  end)
end

--- Delete devices of the user: their access tokens (logged out), keys and
-- waiting to-device messages go with them. Returns how many existed. Also
-- used after a logout (the device row is gone already) to drop the keys.
function methods:delete_devices(user_id, ids)
  local conn = self.conn
  return conn:transaction(function()
    local n = 0
    for _, d in ipairs(ids) do
      local gone = conn:run("DELETE FROM devices WHERE user_id = ? AND device_id = ?", user_id, d)
      conn:run("DELETE FROM access_tokens WHERE user_id = ? AND device_id = ?", user_id, d)
      conn:run("DELETE FROM to_device_inbox WHERE user_id = ? AND device_id = ?", user_id, d)
      local keys = conn:run("DELETE FROM e2e_device_keys WHERE user_id = ? AND device_id = ?", user_id, d)
      conn:run("DELETE FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ?", user_id, d)
      conn:run("DELETE FROM e2e_fallback_keys WHERE user_id = ? AND device_id = ?", user_id, d)
      -- (a device logged out already has no row but may still have keys)
      if gone > 0 or keys > 0 then changed(self, user_id, d) end
      n = n + gone
    end
    return n
  end)
end

--- Store a device's keys (the JSON text of the signed device_keys object);
-- a new position unless the same keys were there.
function methods:put_device_keys(user_id, device_id, text)
  local conn = self.conn
  return conn:transaction(function()
    local old = conn:value("SELECT key_json FROM e2e_device_keys WHERE user_id = ? AND device_id = ?",
      user_id, device_id)
    if old == text then return false end
    conn:run([[INSERT INTO e2e_device_keys (user_id, device_id, key_json) VALUES (?, ?, ?)
      ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = excluded.key_json]], user_id, device_id, text)
    conn:run("UPDATE devices SET last_seen_ts = ? WHERE user_id = ? AND device_id = ?", now_ms(), user_id, device_id)
    changed(self, user_id, device_id)
    return true
  end)
end

--- The stored device keys of one device (JSON text), or nil.
function methods:device_keys_json(user_id, device_id)
  return self.conn:value("SELECT key_json FROM e2e_device_keys WHERE user_id = ? AND device_id = ?",
    user_id, device_id)
end

--- Add one-time keys ({ { algorithm, key_id, json_text }, ... }); a key ID
-- already there keeps its key (a retried upload).
function methods:add_one_time_keys(user_id, device_id, list)
  local conn = self.conn
  return conn:transaction(function()
    for _, k in ipairs(list) do
      conn:run([[INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json)
        VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING]], user_id, device_id, k[1], k[2], k[3])
    end
    return true
  end)
end

--- Replace the fallback key of each algorithm in list (unused again).
function methods:put_fallback_keys(user_id, device_id, list)
  local conn = self.conn
  return conn:transaction(function()
    for _, k in ipairs(list) do
      conn:run([[INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used)
        VALUES (?, ?, ?, ?, ?, 0) ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET
        key_id = excluded.key_id, key_json = excluded.key_json,
        used = CASE WHEN key_id = excluded.key_id AND key_json = excluded.key_json THEN used ELSE 0 END]],
        user_id, device_id, k[1], k[2], k[3])
    end
    return true
  end)
end

--- How many one-time keys of each algorithm the device has: { [algorithm] = n }.
function methods:one_time_key_counts(user_id, device_id)
  local out = {}
  for _, row in ipairs(self.conn:all([[SELECT algorithm, count(*) FROM e2e_one_time_keys
      WHERE user_id = ? AND device_id = ? GROUP BY algorithm]], user_id, device_id)) do
    out[row[1]] = row[2]
  end
  return out
end

--- What /sync tells a device about its keys, in one statement: the
-- one-time key counts { [algorithm] = n } and the algorithms of its unused
-- fallback keys (sorted).
function methods:device_key_counts(user_id, device_id)
  local counts, unused = {}, {}
  for _, row in ipairs(self.conn:all([[
      SELECT 0, algorithm, count(*) FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ? GROUP BY algorithm
      UNION ALL
      SELECT 1, algorithm, 0 FROM e2e_fallback_keys WHERE user_id = ? AND device_id = ? AND used = 0
      ORDER BY 1, 2]], user_id, device_id, user_id, device_id)) do
    if row[1] == 0 then counts[row[2]] = row[3] else unused[#unused + 1] = row[2] end
  end
  return counts, unused
end

--- The algorithms of the device's fallback keys not used yet, sorted.
function methods:unused_fallback_key_types(user_id, device_id)
  return self.conn:column([[SELECT algorithm FROM e2e_fallback_keys
    WHERE user_id = ? AND device_id = ? AND used = 0 ORDER BY algorithm]], user_id, device_id)
end

--- Claim one key per { user_id, device_id, algorithm }: a one-time key
-- (removed), else the fallback key (marked used, kept). In one transaction,
-- so a key is handed out once. { { user_id, device_id, key_id, json_text } }.
function methods:claim_keys(requests)
  local conn = self.conn
  return conn:transaction(function()
    local out = {}
    for _, r in ipairs(requests) do
      local user_id, device_id, alg = r[1], r[2], r[3]
      local row = conn:first([[SELECT key_id, key_json FROM e2e_one_time_keys
        WHERE user_id = ? AND device_id = ? AND algorithm = ? ORDER BY key_id LIMIT 1]], user_id, device_id, alg)
      if row then
        conn:run([[DELETE FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ? AND algorithm = ?
          AND key_id = ?]], user_id, device_id, alg, row[1])
      else
        row = conn:first([[SELECT key_id, key_json FROM e2e_fallback_keys
          WHERE user_id = ? AND device_id = ? AND algorithm = ?]], user_id, device_id, alg)
        if row then
          conn:run("UPDATE e2e_fallback_keys SET used = 1 WHERE user_id = ? AND device_id = ? AND algorithm = ?",
            user_id, device_id, alg)
        end
      end
      if row then out[#out + 1] = { user_id, device_id, alg .. ":" .. row[1], row[2] } end
    end
    return out
  end)
end

--- The device keys of the users' devices and the devices' display names:
-- { [user_id] = { [device_id] = json_text } }, { [user_id] = { [device_id]
-- = name } }; every user asked for has a table, empty without keys (one
-- statement per 500 users).
function methods:device_keys_of(user_ids)
  local out, names = {}, {}
  for _, u in ipairs(user_ids) do out[u] = {}; names[u] = {} end
  for marks, chunk in sql.chunks(user_ids) do
    for _, row in ipairs(self.conn:all([[SELECT k.user_id, k.device_id, k.key_json, d.display_name
        FROM e2e_device_keys k JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id
        WHERE k.user_id IN (]] .. marks .. ")", table_unpack(chunk))) do
      out[row[1]][row[2]] = row[3]
      names[row[1]][row[2]] = row[4]
    end
  end
  return out, names
end

--- The highest committed device-list position (0 when there is none).
function methods:device_list_position()
  local pos = self.device_list_pos
  if not pos then
    pos = self.conn:value("SELECT coalesce(max(stream_id), 0) FROM device_list_changes")
    self.device_list_pos = pos
  end
  return pos
end

--- The users whose devices or device keys changed in (since, to]:
-- { [user_id] = true } (no statement for an empty range).
function methods:device_list_changes(since, to)
  local out = {}
  if since >= to then return out end
  for _, u in ipairs(self.conn:column([[SELECT DISTINCT user_id FROM device_list_changes
      WHERE stream_id > ? AND stream_id <= ?]], since, to)) do
    out[u] = true
  end
  return out
end

--- The users joined to a room now, sorted ({} for an unknown room).
function methods:joined_members(room_id)
  local rn, type_nid = self:room_nid(room_id), self:type_nid("m.room.member")
  if not rn or not type_nid then return {} end
  return self.conn:column([[SELECT m.user_id FROM current_state c
    JOIN room_memberships m ON m.event_nid = c.event_nid
    WHERE c.room_nid = ? AND c.type_nid = ? AND m.membership = 'join' ORDER BY m.user_id]], rn, type_nid)
end

devices.methods = methods
return devices
