-- loom.store.user_directory: the user directory (Client-Server API "User
-- directory") and OpenID tokens (Client-Server API "OpenID"). Schema 42's
-- triggers keep the directory current as profiles, memberships, join rules
-- and history visibilities change (see migrations/sqlite/042_user_directory.sql);
-- this module only reads it.
--
--   local rows = store:search_user_directory("@al:example.org", {
--     words = store:search_words("ali"), limit = 11, all_local = false })
--     -- { { user_id, display_name, avatar_url }, ... } best first
--   store:add_openid_token(hash, "@al:example.org", expires_ts)
--   store:openid_token_user(hash, now_ms)      -- "@al:example.org" | nil
--
-- Mixed into the store. A database failure raises (loom.db.Error).
local type, ipairs, table_concat, string_gsub = type, ipairs, table.concat, string.gsub

local _ENV = nil -- luacheck: ignore 211

local user_directory = {}
local methods = {}

local MEMBER = 5   -- m.room.member's fixed type NID (schema 1)

--- The directory entries matching every word (prefixes of the localpart's
-- or the display name's words, case- and accent-insensitive) that the
-- searcher may find: users joined to a room the searcher is joined to,
-- users joined to a public or world-readable room, and with
-- opts.all_local every local account. Deactivated accounts never.
-- opts.words: from store:search_words (empty: no rows); opts.limit rows at
-- most. Rows { user_id, display_name, avatar_url } (nil for absent).
function methods:search_user_directory(searcher, opts)
  local words = opts.words
  if #words == 0 then return {} end
  local terms = {}
  for i, w in ipairs(words) do terms[i] = '"' .. string_gsub(w, '"', '""') .. '"*' end
  local rows = self.conn:all([[
    SELECT d.user_id, d.display_name, d.avatar_url FROM user_directory_search s
      JOIN user_directory d ON d.nid = s.rowid
      LEFT JOIN users u ON u.user_id = d.user_id
    WHERE user_directory_search MATCH ?1 AND coalesce(u.deactivated, 0) = 0
      AND ((?3 AND u.user_id IS NOT NULL AND u.is_guest = 0)
        OR EXISTS (SELECT 1 FROM state_keys k
          JOIN current_state c2 ON c2.state_key_nid = k.state_key_nid AND c2.type_nid = ?5
          JOIN room_memberships m2 ON m2.event_nid = c2.event_nid AND m2.membership = 'join'
          JOIN user_directory_public_rooms p ON p.room_nid = c2.room_nid
          WHERE k.state_key = d.user_id)
        OR EXISTS (SELECT 1 FROM state_keys k
          JOIN current_state c2 ON c2.state_key_nid = k.state_key_nid AND c2.type_nid = ?5
          JOIN room_memberships m2 ON m2.event_nid = c2.event_nid AND m2.membership = 'join'
          JOIN state_keys ks ON ks.state_key = ?2
          JOIN current_state c1 ON c1.room_nid = c2.room_nid AND c1.type_nid = ?5
            AND c1.state_key_nid = ks.state_key_nid
          JOIN room_memberships m1 ON m1.event_nid = c1.event_nid AND m1.membership = 'join'
          WHERE k.state_key = d.user_id))
    ORDER BY s.rank, d.display_name IS NULL, d.avatar_url IS NULL, d.user_id
    LIMIT ?4]], table_concat(terms, " AND "), searcher, opts.all_local and 1 or 0, opts.limit, MEMBER)
  local out = {}
  for i, r in ipairs(rows) do out[i] = { user_id = r[1], display_name = r[2], avatar_url = r[3] } end
  return out
end

--- The directory entry of a user ({ user_id, display_name, avatar_url }),
-- or nil when the server knows no name for them.
function methods:user_directory_entry(user_id)
  local r = self.conn:first("SELECT user_id, display_name, avatar_url FROM user_directory WHERE user_id = ?",
    user_id)
  if not r then return nil end
  return { user_id = r[1], display_name = r[2], avatar_url = r[3] }
end

--- Store an OpenID token (hash: the token's sha256 as a blob) for a user
-- until expires_ts (ms); tokens expired before now_ms are dropped.
function methods:add_openid_token(hash, user_id, expires_ts, now_ms)
  self.conn:run("DELETE FROM openid_tokens WHERE expires_ts <= ?", now_ms or 0)
  self.conn:run("INSERT INTO openid_tokens (token_hash, user_id, expires_ts) VALUES (?, ?, ?)",
    hash, user_id, expires_ts)
  return true
end

--- The user an OpenID token vouches for, when it is known and has not
-- expired at now_ms; else nil.
function methods:openid_token_user(hash, now_ms)
  local v = self.conn:value("SELECT user_id FROM openid_tokens WHERE token_hash = ? AND expires_ts > ?",
    hash, now_ms)
  if type(v) ~= "string" then return nil end
  return v
end

user_directory.methods = methods
return user_directory
