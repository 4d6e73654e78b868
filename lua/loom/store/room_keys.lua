-- loom.store.room_keys: server-side key backups (Client-Server API
-- "Server-side key backups"): a user's backup versions and the room keys
-- stored under each.
--
--   local v = store:create_key_backup(user_id, algorithm, auth_data_json)   -- the new version (integer)
--   local b = store:key_backup(user_id, version)  -- { version, algorithm, auth_data, etag, count } or nil
--                                                 -- (version nil: the current one)
--   store:update_key_backup(user_id, version, auth_data_json)   -- false: no such version
--   store:delete_key_backup(user_id, version)                   -- false: no such version
--   store:put_room_keys(user_id, version, { { room_id, session_id, key }, ... })
--        -- key = { first_message_index, forwarded_count, is_verified, session_data = json_text }
--   local rows = store:room_keys(user_id, version, room_id, session_id)   -- filters optional
--   store:delete_room_keys(user_id, version, room_id, session_id)
--
-- A database failure raises.
local ipairs, table_unpack = ipairs, table.unpack

local room_keys = {}
local methods = {}
local _ENV = nil -- luacheck: ignore 211

--- A new backup version (the current one from now on).
function methods:create_key_backup(user_id, algorithm, auth_data)
  local conn = self.conn
  return conn:transaction(function()
    local v = conn:value("SELECT coalesce(max(version), 0) + 1 FROM room_key_versions WHERE user_id = ?", user_id)
    conn:run([[INSERT INTO room_key_versions (user_id, version, algorithm, auth_data) VALUES (?, ?, ?, ?)]],
      user_id, v, algorithm, auth_data)
    return v
  end)
end

--- A backup version (nil: the current one): { version, algorithm,
-- auth_data (JSON text), etag, count }, or nil.
function methods:key_backup(user_id, version)
  local row
  if version then
    row = self.conn:first([[SELECT version, algorithm, auth_data, etag FROM room_key_versions
      WHERE user_id = ? AND version = ? AND deleted = 0]], user_id, version)
  else
    row = self.conn:first([[SELECT version, algorithm, auth_data, etag FROM room_key_versions
      WHERE user_id = ? AND deleted = 0 ORDER BY version DESC LIMIT 1]], user_id)
  end
  if not row then return nil end
  local count = self.conn:value("SELECT count(*) FROM room_keys WHERE user_id = ? AND version = ?", user_id, row[1])
  return { version = row[1], algorithm = row[2], auth_data = row[3], etag = row[4], count = count }
end

--- Replace a version's auth_data; false when there is no such version.
function methods:update_key_backup(user_id, version, auth_data)
  return self.conn:run("UPDATE room_key_versions SET auth_data = ? WHERE user_id = ? AND version = ? AND deleted = 0",
    auth_data, user_id, version) > 0
end

--- Delete a version and its keys; false when there is no such version.
function methods:delete_key_backup(user_id, version)
  local conn = self.conn
  return conn:transaction(function()
    local n = conn:run("UPDATE room_key_versions SET deleted = 1 WHERE user_id = ? AND version = ? AND deleted = 0",
      user_id, version)
    conn:run("DELETE FROM room_keys WHERE user_id = ? AND version = ?", user_id, version)
    return n > 0
  end)
end

-- Does `new` replace `old`? (the spec: a verified key first, then the lower
-- first_message_index, then the lower forwarded_count)
local function better(new, old)
  if new.is_verified ~= old.is_verified then return new.is_verified end
  if new.first_message_index ~= old.first_message_index then
    return new.first_message_index < old.first_message_index
  end
  return new.forwarded_count < old.forwarded_count
end

--- Store room keys under a version, each replacing the stored one only when
-- better. Bumps the version's etag when a key changed.
function methods:put_room_keys(user_id, version, list)
  local conn = self.conn
  return conn:transaction(function()
    local changed = false
    for _, k in ipairs(list) do
      local room_id, session_id, key = k[1], k[2], k[3]
      local row = conn:first([[SELECT first_message_index, forwarded_count, is_verified FROM room_keys
        WHERE user_id = ? AND version = ? AND room_id = ? AND session_id = ?]], user_id, version, room_id, session_id)
      local old = row and { first_message_index = row[1], forwarded_count = row[2], is_verified = row[3] == 1 }
      if not old or better(key, old) then
        conn:run([[INSERT INTO room_keys (user_id, version, room_id, session_id, first_message_index,
          forwarded_count, is_verified, session_data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
          ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET
          first_message_index = excluded.first_message_index, forwarded_count = excluded.forwarded_count,
          is_verified = excluded.is_verified, session_data = excluded.session_data]],
          user_id, version, room_id, session_id, key.first_message_index, key.forwarded_count,
          key.is_verified and 1 or 0, key.session_data)
        changed = true
      end
    end
    if changed then
      conn:run("UPDATE room_key_versions SET etag = etag + 1 WHERE user_id = ? AND version = ?", user_id, version)
    end
    return changed
  end)
end

local function where(user_id, version, room_id, session_id)
  local sql, args = "user_id = ? AND version = ?", { user_id, version }
  if room_id then sql = sql .. " AND room_id = ?"; args[#args + 1] = room_id end
  if session_id then sql = sql .. " AND session_id = ?"; args[#args + 1] = session_id end
  return sql, args
end

--- The keys of a version (of one room, of one session):
-- { { room_id, session_id, { first_message_index, forwarded_count, is_verified, session_data } }, ... }.
function methods:room_keys(user_id, version, room_id, session_id)
  local w, args = where(user_id, version, room_id, session_id)
  local out = {}
  for _, row in ipairs(self.conn:all([[SELECT room_id, session_id, first_message_index, forwarded_count,
      is_verified, session_data FROM room_keys WHERE ]] .. w .. " ORDER BY room_id, session_id",
      table_unpack(args))) do
    out[#out + 1] = { row[1], row[2], { first_message_index = row[3], forwarded_count = row[4],
      is_verified = row[5] == 1, session_data = row[6] } }
  end
  return out
end

--- Delete the keys of a version (of one room, of one session); bumps the etag.
function methods:delete_room_keys(user_id, version, room_id, session_id)
  local conn = self.conn
  return conn:transaction(function()
    local w, args = where(user_id, version, room_id, session_id)
    local n = conn:run("DELETE FROM room_keys WHERE " .. w, table_unpack(args))
    if n > 0 then
      conn:run("UPDATE room_key_versions SET etag = etag + 1 WHERE user_id = ? AND version = ?", user_id, version)
    end
    return n
  end)
end

room_keys.methods = methods
return room_keys
