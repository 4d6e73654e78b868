-- loom.store.keys: the server's own signing keys, and other servers' verify
-- keys (federation).
--
--   local key_id, seed = store:signing_key()      -- the key in use, or nil
--   store:add_signing_key(key_id, seed)
--   store:retire_signing_keys(except_key_id)      -- rotation
--   for _, k in ipairs(store:old_signing_keys()) do ... k.key_id, k.seed, k.expired_ts end
--   store:put_remote_keys(server_name, from_server, key_json, keys)
--   local k = store:remote_key(server_name, key_id)   -- { public_key, valid_until_ts, expired }
--   local docs = store:remote_key_responses(server_name)   -- key_json texts
--
-- Mixed into the store. A database failure raises (loom.db.Error).
local core = require "loom.core"
local ipairs = ipairs

local blob, now_ms = core.sqlite.blob, core.now_ms

local keys = {}
local methods = {}
local _ENV = nil -- luacheck: ignore 211

--- The server's signing key in use: key_id, seed (32 bytes) — or nil when
-- none was made yet. The newest key that was not retired.
function methods:signing_key()
  local row = self.conn:first([[SELECT key_id, seed FROM server_signing_keys WHERE expired_ts IS NULL
    ORDER BY created_ts DESC, key_id LIMIT 1]])
  if not row then return nil end
  return row[1], row[2]
end

--- Store a new signing key (key_id "ed25519:...", seed: 32 bytes).
function methods:add_signing_key(key_id, seed)
  self.conn:run("INSERT INTO server_signing_keys (key_id, seed, created_ts) VALUES (?, ?, ?)",
    key_id, blob(seed), now_ms())
  return true
end

--- Retire every signing key but except_key_id (they go to old_verify_keys).
function methods:retire_signing_keys(except_key_id)
  self.conn:run("UPDATE server_signing_keys SET expired_ts = ? WHERE expired_ts IS NULL AND key_id <> ?",
    now_ms(), except_key_id)
  return true
end

--- The retired keys: { { key_id, seed, expired_ts } ... }, oldest first.
function methods:old_signing_keys()
  local out = {}
  for _, row in ipairs(self.conn:all([[SELECT key_id, seed, expired_ts FROM server_signing_keys
      WHERE expired_ts IS NOT NULL ORDER BY created_ts, key_id]])) do
    out[#out + 1] = { key_id = row[1], seed = row[2], expired_ts = row[3] }
  end
  return out
end

--- Record the keys of one verified key response of server_name, served by
-- from_server (itself or a notary): keys = { { key_id, public_key (raw),
-- valid_until_ts, expired (boolean) } ... }; key_json is the response text.
-- A key already known from the same source is replaced only by a response
-- valid for longer.
function methods:put_remote_keys(server_name, from_server, key_json, list)
  local conn, now = self.conn, now_ms()
  return self:transaction(function()
    for _, k in ipairs(list) do
      conn:run([[INSERT INTO remote_server_keys (server_name, key_id, from_server, public_key, valid_until_ts,
            expired, fetched_ts, key_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
          ON CONFLICT (server_name, key_id, from_server) DO UPDATE SET public_key = excluded.public_key,
            valid_until_ts = excluded.valid_until_ts, expired = excluded.expired,
            fetched_ts = excluded.fetched_ts, key_json = excluded.key_json
          WHERE excluded.valid_until_ts >= remote_server_keys.valid_until_ts]],
        server_name, k.key_id, from_server, blob(k.public_key), k.valid_until_ts, k.expired and 1 or 0, now,
        key_json)
    end
    return true
  end)
end

--- The best record of a key of another server: { public_key, valid_until_ts,
-- expired, from_server, fetched_ts } (the one valid longest) — or nil.
function methods:remote_key(server_name, key_id)
  local row = self.conn:first([[SELECT public_key, valid_until_ts, expired, from_server, fetched_ts
      FROM remote_server_keys WHERE server_name = ? AND key_id = ?
      ORDER BY valid_until_ts DESC LIMIT 1]], server_name, key_id)
  if not row then return nil end
  return { public_key = row[1], valid_until_ts = row[2], expired = row[3] == 1, from_server = row[4],
           fetched_ts = row[5] }
end

--- The key responses of server_name this server holds, as received (for
-- serving them as a notary): the key_json texts, each once.
function methods:remote_key_responses(server_name)
  return self.conn:column([[SELECT DISTINCT key_json FROM remote_server_keys
      WHERE server_name = ? AND from_server = server_name]], server_name)
end

keys.methods = methods
return keys
