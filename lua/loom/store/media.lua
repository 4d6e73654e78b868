-- loom.store.media: the content repository's records (migration 040). A
-- media row per mxc://server_name/media_id; the bytes are a file named by
-- sha256 (loom.media keeps the files); thumbnails per (size, method).
--
--   store:create_media { server_name, media_id, user_id, created_ts, unused_expires_ts }
--   store:finish_media(server_name, media_id, { content_type, upload_name, size, sha256, uploaded_ts })
--   local m = store:media(server_name, media_id)
--        -- { server_name, media_id, user_id, content_type, upload_name, size, sha256,
--        --   created_ts, uploaded_ts, unused_expires_ts, quarantined } or nil
--   store:media_usage(user_id)              -- bytes uploaded by a user
--   store:pending_media_count(user_id, now) -- /create IDs not yet uploaded nor expired
--   store:add_thumbnail { server_name, media_id, width, height, method, content_type, size, sha256,
--                         thumb_width, thumb_height }
--   local t = store:thumbnail(server_name, media_id, width, height, method)
--   local hashes = store:delete_media(server_name, media_id)  -- the files' hashes no row uses now
--   local list = store:media_of_user(user_id, before_ts)      -- { { server_name, media_id }, ... }
--   local list = store:media_before(ts)                        -- likewise, every local upload
--
-- A database failure raises.
local ipairs = ipairs

local media = {}
local methods = {}
local _ENV = nil -- luacheck: ignore 211

local COLUMNS = [[server_name, media_id, user_id, content_type, upload_name, size, sha256,
  created_ts, uploaded_ts, unused_expires_ts, quarantined]]

local function row_to_media(r)
  if not r then return nil end
  return { server_name = r[1], media_id = r[2], user_id = r[3], content_type = r[4],
           upload_name = r[5], size = r[6], sha256 = r[7], created_ts = r[8], uploaded_ts = r[9],
           unused_expires_ts = r[10], quarantined = r[11] ~= 0 }
end

--- A new media ID (not yet uploaded); false when the ID is taken.
function methods:create_media(m)
  local ok = self.conn:first("SELECT 1 FROM media WHERE server_name = ? AND media_id = ?",
    m.server_name, m.media_id)
  if ok then return false end
  self.conn:run([[INSERT INTO media (server_name, media_id, user_id, created_ts, unused_expires_ts)
    VALUES (?, ?, ?, ?, ?)]], m.server_name, m.media_id, m.user_id, m.created_ts, m.unused_expires_ts)
  return true
end

--- Records a media ID's content; false when it already has content (media
-- is never overwritten) or the ID does not exist.
function methods:finish_media(server_name, media_id, c)
  return self.conn:run([[UPDATE media SET content_type = ?, upload_name = ?, size = ?, sha256 = ?,
      uploaded_ts = ?, unused_expires_ts = NULL
    WHERE server_name = ? AND media_id = ? AND sha256 IS NULL]],
    c.content_type, c.upload_name, c.size, c.sha256, c.uploaded_ts, server_name, media_id) > 0
end

--- A media record, or nil.
function methods:media(server_name, media_id)
  return row_to_media(self.conn:first("SELECT " .. COLUMNS ..
    " FROM media WHERE server_name = ? AND media_id = ?", server_name, media_id))
end

--- Bytes of media a user has uploaded (their quota's use).
function methods:media_usage(user_id)
  return self.conn:value("SELECT coalesce(sum(size), 0) FROM media WHERE user_id = ?", user_id)
end

--- Media IDs a user created with /create, not uploaded and not expired at now.
function methods:pending_media_count(user_id, now)
  return self.conn:value([[SELECT count(*) FROM media WHERE user_id = ? AND sha256 IS NULL
    AND unused_expires_ts > ?]], user_id, now)
end

--- Records a thumbnail (replacing one of the same key).
function methods:add_thumbnail(t)
  self.conn:run([[INSERT OR REPLACE INTO media_thumbnails (server_name, media_id, width, height, method,
      content_type, size, sha256, thumb_width, thumb_height) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)]],
    t.server_name, t.media_id, t.width, t.height, t.method, t.content_type, t.size, t.sha256,
    t.thumb_width, t.thumb_height)
end

--- A thumbnail made earlier: { content_type, size, sha256, thumb_width, thumb_height } or nil.
function methods:thumbnail(server_name, media_id, width, height, method)
  local r = self.conn:first([[SELECT content_type, size, sha256, thumb_width, thumb_height
    FROM media_thumbnails WHERE server_name = ? AND media_id = ? AND width = ? AND height = ? AND method = ?]],
    server_name, media_id, width, height, method)
  if not r then return nil end
  return { content_type = r[1], size = r[2], sha256 = r[3], thumb_width = r[4], thumb_height = r[5] }
end

--- Whether any media or thumbnail row still uses a file.
function methods:media_hash_used(sha256)
  return self.conn:first("SELECT 1 FROM media WHERE sha256 = ? UNION ALL " ..
    "SELECT 1 FROM media_thumbnails WHERE sha256 = ? LIMIT 1", sha256, sha256) and true or false
end

--- Deletes a media record and its thumbnails; returns the hashes of the
-- files no record uses any more (the caller removes those files), or nil
-- when there was no such media.
function methods:delete_media(server_name, media_id)
  local conn = self.conn
  return conn:transaction(function()
    local m = conn:first("SELECT sha256 FROM media WHERE server_name = ? AND media_id = ?", server_name, media_id)
    if not m then return false end
    local hashes = conn:column("SELECT sha256 FROM media_thumbnails WHERE server_name = ? AND media_id = ?",
      server_name, media_id)
    if m[1] then hashes[#hashes + 1] = m[1] end
    conn:run("DELETE FROM media_thumbnails WHERE server_name = ? AND media_id = ?", server_name, media_id)
    conn:run("DELETE FROM media WHERE server_name = ? AND media_id = ?", server_name, media_id)
    local unused = {}
    for _, h in ipairs(hashes) do
      if not methods.media_hash_used(self, h) then unused[#unused + 1] = h end
    end
    return { unused = unused }
  end)
end

local function pairs_of(rows)
  local out = {}
  for i, r in ipairs(rows) do out[i] = { server_name = r[1], media_id = r[2] } end
  return out
end

--- A user's uploads created before before_ts (every one when nil).
function methods:media_of_user(user_id, before_ts)
  return pairs_of(self.conn:all([[SELECT server_name, media_id FROM media WHERE user_id = ?
    AND created_ts < ? ORDER BY created_ts]], user_id, before_ts or (1 << 62)))
end

--- Every local upload (a user's) created before ts.
function methods:media_before(ts)
  return pairs_of(self.conn:all([[SELECT server_name, media_id FROM media WHERE user_id IS NOT NULL
    AND created_ts < ? ORDER BY created_ts]], ts))
end

media.methods = methods
return media
