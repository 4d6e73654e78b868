-- loom.store.keys: the server's own signing keys.
--
--   local key_id, seed = store:signing_key()      -- the oldest key, or nil
--   store:add_signing_key(key_id, seed)
--
-- Mixed into the store. A database failure raises (loom.db.Error).
local core = require "loom.core"

local blob, now_ms = core.sqlite.blob, core.now_ms

local keys = {}
local methods = {}
local _ENV = nil -- luacheck: ignore 211

--- The server's signing key: key_id, seed (32 bytes) — or nil when none
-- was made yet.
function methods:signing_key()
  local row = self.conn:first("SELECT key_id, seed FROM server_signing_keys ORDER BY created_ts LIMIT 1")
  if not row then return nil end
  return row[1], row[2]
end

--- Store a new signing key (key_id "ed25519:...", seed: 32 bytes).
function methods:add_signing_key(key_id, seed)
  self.conn:run("INSERT INTO server_signing_keys (key_id, seed, created_ts) VALUES (?, ?, ?)",
    key_id, blob(seed), now_ms())
  return true
end

keys.methods = methods
return keys
