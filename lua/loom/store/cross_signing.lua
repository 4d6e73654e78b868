-- loom.store.cross_signing: cross-signing keys (Client-Server API
-- "Cross-signing") and the signatures users upload for them.
--
--   store:put_cross_signing_keys(user_id, { master = json_text, self_signing = ..., user_signing = ... })
--   local keys = store:cross_signing_keys(user_id)      -- { [usage] = json_text }
--   local all = store:cross_signing_keys_of({ user_id, ... })  -- { [user_id] = { [usage] = json_text } }
--   store:replace_device_keys_json(user_id, device_id, json_text)  -- signatures added; no new position
--   store:replace_cross_signing_key(user_id, usage, json_text)
--   store:add_cross_signing_signature(signer, target_user, target_key, key_id, signature)
--   local sigs = store:cross_signing_signatures(signer, { user_id, ... })
--        -- { { target_user, target_key, key_id, signature }, ... }
--
-- A change is a device-list change of the key's owner (loom.store.devices).
-- A database failure raises.
local sql = require "loom.store.sql"

local ipairs, pairs, table_unpack = ipairs, pairs, table.unpack

local cross_signing = {}
local methods = {}
local _ENV = nil -- luacheck: ignore 211

--- Store the given cross-signing keys of a user (usage -> JSON text).
function methods:put_cross_signing_keys(user_id, keys)
  local conn = self.conn
  return conn:transaction(function()
    for usage, text in pairs(keys) do
      conn:run([[INSERT INTO e2e_cross_signing_keys (user_id, usage, key_json) VALUES (?, ?, ?)
        ON CONFLICT (user_id, usage) DO UPDATE SET key_json = excluded.key_json]], user_id, usage, text)
    end
    self:device_list_changed(user_id)
    return true
  end)
end

--- The user's cross-signing keys: { [usage] = json_text }.
function methods:cross_signing_keys(user_id)
  local out = {}
  for _, row in ipairs(self.conn:all("SELECT usage, key_json FROM e2e_cross_signing_keys WHERE user_id = ?",
      user_id)) do
    out[row[1]] = row[2]
  end
  return out
end

--- The cross-signing keys of several users: { [user_id] = { [usage] = json_text } }.
function methods:cross_signing_keys_of(user_ids)
  local out = {}
  for marks, chunk in sql.chunks(user_ids) do
    for _, row in ipairs(self.conn:all("SELECT user_id, usage, key_json FROM e2e_cross_signing_keys WHERE user_id IN ("
        .. marks .. ")", table_unpack(chunk))) do
      out[row[1]] = out[row[1]] or {}
      out[row[1]][row[2]] = row[3]
    end
  end
  return out
end

--- Replace a device's stored keys with the same keys carrying more
-- signatures (a device-list change of the user).
function methods:replace_device_keys_json(user_id, device_id, text)
  local conn = self.conn
  return conn:transaction(function()
    conn:run("UPDATE e2e_device_keys SET key_json = ? WHERE user_id = ? AND device_id = ?", text, user_id, device_id)
    self:device_list_changed(user_id, device_id)
    return true
  end)
end

--- Replace a cross-signing key with the same key carrying more signatures.
function methods:replace_cross_signing_key(user_id, usage, text)
  local conn = self.conn
  return conn:transaction(function()
    conn:run("UPDATE e2e_cross_signing_keys SET key_json = ? WHERE user_id = ? AND usage = ?", text, user_id, usage)
    self:device_list_changed(user_id)
    return true
  end)
end

--- A signature by signer's user-signing key of another user's master key.
function methods:add_cross_signing_signature(signer, target_user, target_key, key_id, signature)
  local conn = self.conn
  return conn:transaction(function()
    conn:run([[INSERT INTO e2e_cross_signing_sigs (signer, target_user, target_key, key_id, signature)
      VALUES (?, ?, ?, ?, ?) ON CONFLICT (signer, target_user, target_key, key_id)
      DO UPDATE SET signature = excluded.signature]], signer, target_user, target_key, key_id, signature)
    self:device_list_changed(target_user)
    return true
  end)
end

--- The signer's signatures of the users' keys:
-- { { target_user, target_key, key_id, signature }, ... }.
function methods:cross_signing_signatures(signer, user_ids)
  local out = {}
  for marks, chunk in sql.chunks(user_ids) do
    for _, row in ipairs(self.conn:all([[SELECT target_user, target_key, key_id, signature
        FROM e2e_cross_signing_sigs WHERE signer = ? AND target_user IN (]] .. marks .. ")",
        signer, table_unpack(chunk))) do
      out[#out + 1] = { row[1], row[2], row[3], row[4] }
    end
  end
  return out
end

cross_signing.methods = methods
return cross_signing
