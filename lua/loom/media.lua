-- loom.media: the content repository's files and rules. Files live under
-- the media store (config.media.store_path, default media_store beside the
-- database), named by their sha256 (ab/cd/abcd…), so identical uploads are
-- stored once; the records are the store's (loom.store.media). Thumbnails
-- are made by libvips (core.media.thumbnail) on libuv's thread pool, so a
-- big image never stalls the event loop, and kept like any other file.
--
--   local media = require "loom.media"
--   local repo = media.new(hs)
--   local m = repo:put(user_id, bytes, { content_type = "image/png", upload_name = "a.png" })
--   local path = repo:file_path(m.sha256)
--   local t, path = repo:thumbnail(m, 96, 96, "crop")   -- inside a task
--   repo:delete(server_name, media_id)
--
-- Bad input returns nil, error value (loom.http.errors); a storage failure
-- raises.
local setmetatable, type, tostring, error, ipairs, pairs, require =
  setmetatable, type, tostring, error, ipairs, pairs, require
local math_huge = math.huge
local io_open, os_remove, os_rename = io.open, os.remove, os.rename
local string_format, string_byte, string_find, string_match, string_sub, string_lower =
  string.format, string.byte, string.find, string.match, string.sub, string.lower
local table_concat = table.concat
local string_gmatch, string_gsub, string_char, tonumber = string.gmatch, string.gsub, string.char, tonumber
local xpcall_, traceback_ = xpcall, debug.traceback
local uv = require "luv"
local core = require "loom.core"
local async = require "loom.async"
local errors = require "loom.http.errors"

local _ENV = nil -- luacheck: ignore 211

local media = {}

--- Defaults of config.media (docs/media.md).
media.defaults = {
  store_path = nil,               -- default: media_store beside the database
  max_upload_size = 50 * 1024 * 1024,
  quota = nil,                    -- bytes a user may upload in all; nil: no quota
  max_pixels = 32 * 1000 * 1000,  -- images with more pixels get no thumbnail
  legacy = true,                  -- the unauthenticated /_matrix/media/v3 download, thumbnail, config
  max_pending = 10,               -- /create IDs a user may hold, not yet uploaded
  unused_expiry_ms = 24 * 3600 * 1000,   -- a /create ID's upload must come within this
  max_stall_ms = 20000,           -- longest timeout_ms a download may wait for a pending upload
  url_preview = false,            -- /preview_url (loom.api.client.preview)
  thumbnail_sizes = {             -- Synapse's default list
    { 32, 32, "crop" }, { 96, 96, "crop" }, { 320, 240, "scale" }, { 640, 480, "scale" },
    { 800, 600, "scale" },
  },
}

local methods = {}
local mt = { __name = "loom.media.Repository", __index = methods }
media.methods, media.mt = methods, mt

local function dirname(path)
  return string_match(path, "^(.*)/[^/]*$") or "."
end

local function mkdir_p(path)
  if uv.fs_stat(path) then return end
  local parent = dirname(path)
  if parent ~= path and parent ~= "" and parent ~= "." then mkdir_p(parent) end
  local ok, err = uv.fs_mkdir(path, 448)   -- 0700
  if not ok and not uv.fs_stat(path) then error("cannot create " .. path .. ": " .. tostring(err), 0) end
end

--- media.new(hs) -> Repository (hs: the homeserver context: store,
-- server_name, config.media, config.database.path)
function media.new(hs)
  local cfg = {}
  for k, v in pairs(media.defaults) do cfg[k] = v end
  local given = hs.config.media
  if given ~= nil and type(given) ~= "table" then error("config.media must be a table", 0) end
  for k, v in pairs(given or {}) do
    if media.defaults[k] == nil and k ~= "store_path" and k ~= "quota" then
      error("unknown config.media key '" .. tostring(k) .. "'", 0)
    end
    cfg[k] = v
  end
  local root = cfg.store_path
  if not root then
    -- beside the database, one store per database: var/loom.db -> var/loom_media
    local db = hs.config.database and hs.config.database.path or "var/loom.db"
    root = (string_match(db, "^(.*)%.db$") or db) .. "_media"
  end
  local self = setmetatable({ hs = hs, store = hs.store, server_name = hs.server_name,
    config = cfg, root = root, seq = 0 }, mt)
  return self
end

local ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

--- A fresh media ID: 24 random letters and digits.
function media.new_id()
  local bytes = core.crypto.random_bytes(24)
  local out = {}
  for i = 1, 24 do
    local b = string_byte(bytes, i) % 62 + 1
    out[i] = string_sub(ID_CHARS, b, b)
  end
  return table_concat(out)
end

--- Whether s may be a media ID (the spec's opaque ID: letters, digits, _ and -).
function media.valid_id(s)
  return type(s) == "string" and #s > 0 and #s <= 255 and not string_find(s, "[^%w_%-]")
end

--- The path of the file with this sha256 (hex).
function methods:file_path(sha256)
  return string_format("%s/%s/%s/%s", self.root, string_sub(sha256, 1, 2), string_sub(sha256, 3, 4), sha256)
end

-- A temporary file name under the store (same file system: rename is atomic).
function methods:temp_path()
  self.seq = self.seq + 1
  mkdir_p(self.root .. "/tmp")
  return string_format("%s/tmp/%d-%d-%s", self.root, uv.os_getpid(), self.seq, media.new_id())
end

-- Moves a finished temporary file into place under its hash; a file with
-- that hash already there is kept (identical content) and tmp removed.
function methods:adopt(tmp, sha256)
  local path = self:file_path(sha256)
  if uv.fs_stat(path) then
    os_remove(tmp)
    return path
  end
  mkdir_p(dirname(path))
  local ok, err = os_rename(tmp, path)
  if not ok then
    os_remove(tmp)
    error("cannot store media file: " .. tostring(err), 0)
  end
  return path
end

-- Writes what read() yields (pieces, then nil; or nil, error value) to a
-- temporary file, hashing as it goes, then moves it under its hash. limit(size)
-- -> error value stops it early (too large, over quota). Returns sha256
-- (hex), size | nil, error value. Only one piece is in memory at a time.
function methods:store_stream(read, limit)
  local tmp = self:temp_path()
  local f, err = io_open(tmp, "wb")
  if not f then error("cannot write media file: " .. tostring(err), 0) end
  local h <close> = core.media.hasher()
  local size = 0
  while true do
    local chunk, rerr = read()
    if not chunk then
      if rerr then
        f:close()
        os_remove(tmp)
        return nil, rerr
      end
      break
    end
    size = size + #chunk
    local lerr = limit(size)
    if lerr then
      f:close()
      os_remove(tmp)
      return nil, lerr
    end
    local ok, werr = f:write(chunk)
    if not ok then
      f:close()
      os_remove(tmp)
      error("cannot write media file: " .. tostring(werr), 0)
    end
    h:update(chunk)
  end
  local ok, cerr = f:close()
  if not ok then
    os_remove(tmp)
    error("cannot write media file: " .. tostring(cerr), 0)
  end
  local sha256 = h:hex()
  self:adopt(tmp, sha256)
  return sha256, size
end

-- A reader over one string (the whole body at once).
function media.string_reader(bytes)
  local done = false
  return function()
    if done or bytes == "" then return nil end
    done = true
    return bytes
  end
end

--- Checks a user may store size more bytes (quota); nil or an error value.
function methods:check_quota(user_id, size)
  local quota = self.config.quota
  if quota and self.store:media_usage(user_id) + size > quota then
    return errors.new("M_FORBIDDEN", "Media quota exceeded")
  end
  if size > self.config.max_upload_size then
    return errors.new("M_TOO_LARGE", "Upload is larger than " .. self.config.max_upload_size .. " bytes")
  end
  return nil
end

-- The content type as stored: a media type, lowercase, without CR/LF.
local function clean_type(ct)
  if type(ct) ~= "string" or ct == "" or #ct > 255 or string_find(ct, "[%c]") then
    return "application/octet-stream"
  end
  return ct
end

--- repo:put(user_id, body, { content_type, upload_name, media_id, length }) ->
-- media record | nil, error value. body: the bytes, or a reader function
-- (req:read_body: pieces, then nil); length: the size announced
-- (Content-Length), checked against the limits before any byte is read.
-- Without media_id a new one is made; with one (from create), it must be
-- the user's, still empty.
function methods:put(user_id, body, opts)
  local read = type(body) == "string" and media.string_reader(body) or body
  local err = self:check_quota(user_id, opts.length or (type(body) == "string" and #body) or 0)
  if err then return nil, err end
  local store, now = self.store, core.now_ms()
  local media_id = opts.media_id
  if media_id then
    local m = store:media(self.server_name, media_id)
    if not m then return nil, errors.new("M_NOT_FOUND", "Unknown media ID") end
    if m.user_id ~= user_id then return nil, errors.new("M_FORBIDDEN", "This media ID is someone else's") end
    if m.sha256 then return nil, errors.new("M_CANNOT_OVERWRITE_MEDIA", "Media already uploaded") end
    if m.unused_expires_ts and m.unused_expires_ts <= now then
      return nil, errors.new("M_NOT_FOUND", "The media ID has expired")
    end
  end
  local used = self.config.quota and store:media_usage(user_id) or 0
  local sha256, size = self:store_stream(read, function(n)
    if n > self.config.max_upload_size then
      return errors.new("M_TOO_LARGE", "Upload is larger than " .. self.config.max_upload_size .. " bytes")
    end
    if self.config.quota and used + n > self.config.quota then
      return errors.new("M_FORBIDDEN", "Media quota exceeded")
    end
  end)
  if not sha256 then return nil, size end
  local ok = store:transaction(function()
    if not media_id then
      repeat media_id = media.new_id() until store:create_media { server_name = self.server_name,
        media_id = media_id, user_id = user_id, created_ts = now }
    end
    return store:finish_media(self.server_name, media_id, { content_type = clean_type(opts.content_type),
      upload_name = opts.upload_name, size = size, sha256 = sha256, uploaded_ts = now })
  end)
  if not ok then
    self:forget_file(sha256)
    return nil, errors.new("M_CANNOT_OVERWRITE_MEDIA", "Media already uploaded")
  end
  return store:media(self.server_name, media_id)
end

--- repo:create(user_id) -> media_id, unused_expires_at | nil, error value
-- (POST /media/v1/create).
function methods:create(user_id)
  local now = core.now_ms()
  if self.store:pending_media_count(user_id, now) >= self.config.max_pending then
    return nil, errors.new("M_LIMIT_EXCEEDED", "Too many media IDs waiting for their upload",
      { retry_after_ms = 60000 })
  end
  local expires = now + self.config.unused_expiry_ms
  local id
  repeat id = media.new_id() until self.store:create_media { server_name = self.server_name, media_id = id,
    user_id = user_id, created_ts = now, unused_expires_ts = expires }
  return id, expires
end

-- Removes a file when no record uses its hash.
function methods:forget_file(sha256)
  if not self.store:media_hash_used(sha256) then os_remove(self:file_path(sha256)) end
end

--- repo:delete(server_name, media_id) -> true | false (no such media).
-- Removes the record, its thumbnails and the files no other record uses.
function methods:delete(server_name, media_id)
  local r = self.store:delete_media(server_name, media_id)
  if not r then return false end
  for _, h in ipairs(r.unused) do os_remove(self:file_path(h)) end
  return true
end

--- repo:wait_uploaded(m, timeout_ms) -> the media record once its content
-- is there, or nil after timeout_ms (inside a task).
function methods:wait_uploaded(m, timeout_ms)
  local deadline = uv.now() + timeout_ms
  while not m.sha256 do
    if uv.now() >= deadline then return nil end
    async.sleep(100)
    m = self.store:media(m.server_name, m.media_id)
    if not m then return nil end
  end
  return m
end

--- The configured thumbnail size for a request: the smallest one at least
-- as large as asked with the same method, else the largest (as Synapse
-- picks); returns width, height, method.
function methods:pick_size(width, height, method)
  local best, best_area, largest, largest_area
  for _, s in ipairs(self.config.thumbnail_sizes) do
    local area = s[1] * s[2]
    if s[3] == method then
      if s[1] >= width and s[2] >= height and area < (best_area or math_huge) then best, best_area = s, area end
      if area > (largest_area or -1) then largest, largest_area = s, area end
    end
  end
  local s = best or largest
  if not s then
    -- no size of that method: the nearest of any method
    for _, t in ipairs(self.config.thumbnail_sizes) do
      if t[1] >= width and t[2] >= height then s = t break end
    end
    s = s or self.config.thumbnail_sizes[#self.config.thumbnail_sizes]
  end
  return s[1], s[2], s[3]
end

-- Runs in a libuv worker thread, in a Lua state of its own (source text:
-- nothing of this state crosses but the strings and numbers passed).
local THUMBNAIL_WORK = [[
  local cpath, path, src, dst, w, h, method, max_pixels = ...
  package.cpath, package.path = cpath, path
  local m = require("loom.core").media
  local t, msg, code = m.thumbnail(src, dst, w, h, method, max_pixels)
  if not t then return false, msg, code end
  return true, t.width, t.height, t.type
]]

--- repo:thumbnail(m, width, height, method) -> thumbnail record, path |
-- nil, error value. Made on first request (off the event loop) and kept.
function methods:thumbnail(m, width, height, method)
  local w, h, meth = self:pick_size(width, height, method)
  local store = self.store
  local t = store:thumbnail(m.server_name, m.media_id, w, h, meth)
  if t and uv.fs_stat(self:file_path(t.sha256)) then return t, self:file_path(t.sha256) end
  local ct = string_lower(m.content_type or "")
  if not (ct == "image/jpeg" or ct == "image/png" or ct == "image/webp" or ct == "image/gif") then
    return nil, errors.new("BAD_REQUEST", "This media has no thumbnail (not an image)")
  end
  local src = self:file_path(m.sha256)
  local tmp = self:temp_path()
  local pkg = require "package"
  local ok, a, b, c = async.wait(function(wake)
    local work = uv.new_work(THUMBNAIL_WORK, function(...) wake(...) end)
    work:queue(pkg.cpath, pkg.path, src, tmp, w, h, meth, self.config.max_pixels)
  end)
  if not ok then
    os_remove(tmp)
    if b == "media_io" then error("thumbnail failed: " .. tostring(a), 0) end
    return nil, errors.new("BAD_REQUEST", "Cannot thumbnail this media: " .. tostring(a))
  end
  local sha256, size = core.media.sha256_file(tmp)
  if not sha256 then
    os_remove(tmp)
    error("thumbnail failed: " .. tostring(size), 0)
  end
  local path = self:adopt(tmp, sha256)
  t = { server_name = m.server_name, media_id = m.media_id, width = w, height = h, method = meth,
    content_type = c, size = size, sha256 = sha256, thumb_width = a, thumb_height = b }
  store:add_thumbnail(t)
  return t, path
end

-- ---- remote media (Server-Server API "Content repository") ---------------

--- media.multipart(content_type, body) -> { { headers = { name = value }, body }, ... }
-- | nil, message: the parts of a multipart/mixed body.
function media.multipart(content_type, body)
  if type(content_type) ~= "string" or type(body) ~= "string" then return nil, "not multipart" end
  if not string_find(string_lower(content_type), "^%s*multipart/mixed") then return nil, "not multipart/mixed" end
  local boundary = string_match(content_type, '[Bb][Oo][Uu][Nn][Dd][Aa][Rr][Yy]="([^"]+)"')
    or string_match(content_type, "[Bb][Oo][Uu][Nn][Dd][Aa][Rr][Yy]=([^;%s]+)")
  if not boundary or #boundary > 200 then return nil, "no boundary" end
  local delim = "--" .. boundary
  local pos = string_find(body, delim, 1, true)
  if not pos then return nil, "no first boundary" end
  local parts = {}
  pos = pos + #delim
  while true do
    if string_sub(body, pos, pos + 1) == "--" then break end   -- the closing delimiter
    local line_end = string_find(body, "\r\n", pos, true)
    if not line_end then return nil, "truncated part" end
    local start = line_end + 2
    local next_at = string_find(body, "\r\n" .. delim, start, true)
    if not next_at then return nil, "unterminated part" end
    local head_end = string_find(body, "\r\n\r\n", start, true)
    local headers, content = {}
    if string_sub(body, start, start + 1) == "\r\n" then
      content = string_sub(body, start + 2, next_at - 1)
    elseif head_end and head_end < next_at then
      local head = string_sub(body, start, head_end - 1) .. "\r\n"
      for name, value in string_gmatch(head, "([^:\r\n]+):%s*([^\r\n]*)\r\n") do
        headers[string_lower(name)] = value
      end
      content = string_sub(body, head_end + 4, next_at - 1)
    else
      return nil, "part without headers"
    end
    parts[#parts + 1] = { headers = headers, body = content }
    if #parts > 16 then return nil, "too many parts" end
    pos = next_at + 2 + #delim
  end
  return parts
end

--- media.multipart_body(metadata_json, content_type, disposition, bytes) ->
-- body, content_type: the federation download answer (JSON part, then the file).
function media.multipart_body(meta, content_type, disposition, bytes)
  local boundary = media.new_id()
  local out = { "--", boundary, "\r\nContent-Type: application/json\r\n\r\n", meta, "\r\n--", boundary,
    "\r\nContent-Type: ", content_type, "\r\n" }
  if disposition then out[#out + 1] = "Content-Disposition: " .. disposition .. "\r\n" end
  out[#out + 1] = "\r\n"
  out[#out + 1] = bytes
  out[#out + 1] = "\r\n--" .. boundary .. "--\r\n"
  return table_concat(out), "multipart/mixed; boundary=" .. boundary
end

local function header_of(headers, name)
  for k, v in pairs(headers or {}) do
    if string_lower(k) == name then return v end
  end
end

-- The upload name in a Content-Disposition value (filename or filename*).
local function disposition_name(d)
  if type(d) ~= "string" then return nil end
  local star = string_match(d, "filename%*=[Uu][Tt][Ff]%-8''([^;%s]+)")
  if star then
    return (string_gsub(star, "%%(%x%x)", function(h) return string_char(tonumber(h, 16)) end))
  end
  return string_match(d, 'filename="([^"]*)"') or string_match(d, "filename=([^;%s]+)")
end

--- repo:fetch_remote(server_name, media_id) -> media record | nil, error
-- value (inside a task): the remote media, fetched once over federation
-- (GET /_matrix/federation/v1/media/download, multipart/mixed; an older
-- server's /_matrix/media/v3/download as a fallback) and kept like local
-- media (user_id nil).
function methods:fetch_remote(server_name, media_id)
  local key = server_name .. "/" .. media_id
  local waiting = self.fetching and self.fetching[key]
  if waiting then
    -- another request fetches it already: wait for that one
    async.wait(function(wake) waiting[#waiting + 1] = wake end)
    local m = self.store:media(server_name, media_id)
    if m and m.sha256 then return m end
    return nil, errors.new("M_NOT_FOUND", "Remote media not found")
  end
  self.fetching = self.fetching or {}
  waiting = {}
  self.fetching[key] = waiting
  local ok, m, err = xpcall_(self.fetch_remote_now, traceback_, self, server_name, media_id)
  self.fetching[key] = nil
  for _, wake in ipairs(waiting) do wake() end
  if not ok then error(m, 0) end
  return m, err
end

function methods:fetch_remote_now(server_name, media_id)
  local fed = self.hs.federation
  if not fed then return nil, errors.new("M_NOT_FOUND", "Remote media not found") end
  local enc = require("loom.federation.client").encode
  local status, body, headers = fed:request(server_name, "GET",
    "/_matrix/federation/v1/media/download/" .. enc(media_id), { raw = true, timeout = 20000 })
  local content_type, name, bytes
  if status == 200 then
    local parts, perr = media.multipart(header_of(headers, "content-type"), body)
    if not parts or #parts < 2 then
      self.hs.server:log("info", "remote media %s: bad answer: %s", server_name, tostring(perr))
      return nil, errors.new("M_NOT_FOUND", "Remote media not found")
    end
    local file = parts[2]
    content_type = file.headers["content-type"]
    name = disposition_name(file.headers["content-disposition"])
    bytes = file.body
  elseif status == 404 or status == 400 or status == 401 or status == 403 then
    -- an older server: the legacy download over its federation listener
    local s2, b2, h2 = fed:request(server_name, "GET", "/_matrix/media/v3/download/" .. enc(server_name) .. "/"
      .. enc(media_id), { raw = true, unsigned = true, query = { allow_remote = "false" }, timeout = 20000 })
    if s2 ~= 200 or type(b2) ~= "string" then return nil, errors.new("M_NOT_FOUND", "Remote media not found") end
    content_type = header_of(h2, "content-type")
    name = disposition_name(header_of(h2, "content-disposition"))
    bytes = b2
  else
    if not status then self.hs.server:log("info", "remote media %s: %s", server_name, tostring(body)) end
    return nil, errors.new("M_NOT_FOUND", "Remote media not found")
  end
  if type(bytes) ~= "string" then return nil, errors.new("M_NOT_FOUND", "Remote media not found") end
  if #bytes > self.config.max_upload_size then
    return nil, errors.new("M_TOO_LARGE", "Remote media is larger than " .. self.config.max_upload_size .. " bytes")
  end
  local sha256, size = self:store_stream(media.string_reader(bytes), function() end)
  local now = core.now_ms()
  self.store:transaction(function()
    self.store:create_media { server_name = server_name, media_id = media_id, created_ts = now }
    self.store:finish_media(server_name, media_id, { content_type = clean_type(content_type),
      upload_name = name, size = size, sha256 = sha256, uploaded_ts = now })
    return true
  end)
  return self.store:media(server_name, media_id)
end

return media
