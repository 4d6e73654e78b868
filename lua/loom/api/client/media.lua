-- loom.api.client.media: the Client-Server API "Content repository".
--
--   POST /_matrix/media/v3/upload?filename=     -> { content_uri }
--   POST /_matrix/media/v1/create               -> { content_uri, unused_expires_at }
--   PUT  /_matrix/media/v3/upload/{serverName}/{mediaId}   (the upload of a created ID)
--   GET  /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]   (authenticated)
--   GET  /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}?width=&height=&method=
--   GET  /_matrix/client/v1/media/config        -> { "m.upload.size" }
--   GET  /_matrix/media/v3/download|thumbnail|config   (legacy, unauthenticated download
--        and thumbnail; config.media.legacy = false answers them 404 M_NOT_FOUND; the
--        same and POST upload under /_matrix/media/r0 too)
--
-- Files and records are loom.media's (hs.media). Every file response carries
-- the security section's headers: Content-Disposition (inline only for the
-- safe types), Content-Security-Policy, X-Content-Type-Options: nosniff and
-- Cross-Origin-Resource-Policy: cross-origin. See docs/media.md.
local errors = require "loom.http.errors"
local response = require "loom.http.response"
local media = require "loom.media"
local core = require "loom.core"

local type, tonumber = type, tonumber
local string_find, string_gsub, string_format, string_byte, string_lower, string_match =
  string.find, string.gsub, string.format, string.byte, string.lower, string.match

local _ENV = nil -- luacheck: ignore 211

local media_api = {}

local CLIENT_V1 = "/_matrix/client/v1/media"
local MEDIA_V3 = "/_matrix/media/v3"
local MEDIA_R0 = "/_matrix/media/r0"

-- Types a browser may show inline (Client-Server API, "Security
-- considerations" of the content repository); anything else is an attachment.
media_api.INLINE_TYPES = {
  ["text/css"] = true, ["text/plain"] = true, ["text/csv"] = true,
  ["application/json"] = true, ["application/ld+json"] = true,
  ["image/jpeg"] = true, ["image/gif"] = true, ["image/png"] = true, ["image/apng"] = true,
  ["image/webp"] = true, ["image/avif"] = true,
  ["video/mp4"] = true, ["video/webm"] = true, ["video/ogg"] = true, ["video/quicktime"] = true,
  ["audio/mp4"] = true, ["audio/webm"] = true, ["audio/aac"] = true, ["audio/mpeg"] = true,
  ["audio/ogg"] = true, ["audio/wave"] = true, ["audio/wav"] = true, ["audio/x-wav"] = true,
  ["audio/x-pn-wav"] = true, ["audio/flac"] = true, ["audio/x-flac"] = true,
}

media_api.CSP = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; "
  .. "style-src 'unsafe-inline'; media-src 'self'; object-src 'self';"

local function repo(hs)
  local r = hs.media
  if not r then
    r = media.new(hs)
    hs.media = r
  end
  return r
end

local function pct(c) return string_format("%%%02X", string_byte(c)) end

--- The Content-Disposition value for a type and a file name (nil: none):
-- inline for the safe types, attachment otherwise; an ASCII name as a quoted
-- filename, any other as filename*=utf-8''… (RFC 6266).
function media_api.disposition(content_type, name)
  local base = string_lower(string_match(content_type or "", "^[^;%s]*") or "")
  local d = media_api.INLINE_TYPES[base] and "inline" or "attachment"
  if type(name) ~= "string" or name == "" then return d end
  if not string_find(name, "[^%w!#$&+%-%.%^_`|~ ]") then
    return d .. '; filename="' .. name .. '"'
  end
  return d .. "; filename*=utf-8''" .. string_gsub(name, "[^%w!#$&+%-%.%^_`|~]", pct)
end

-- Text types served without a charset get "; charset=UTF-8", as Synapse
-- does (its list).
local TEXT_TYPES = {
  ["text/css"] = true, ["text/csv"] = true, ["text/html"] = true, ["text/calendar"] = true,
  ["text/plain"] = true, ["text/javascript"] = true, ["application/json"] = true,
  ["application/ld+json"] = true, ["application/rtf"] = true, ["image/svg+xml"] = true, ["text/xml"] = true,
}

local function file_headers(content_type, name)
  local base = string_lower(string_match(content_type or "", "^[^;%s]*") or "")
  if TEXT_TYPES[base] and not string_find(string_lower(content_type), "charset", 1, true) then
    content_type = content_type .. "; charset=UTF-8"
  end
  return {
    ["Content-Type"] = content_type,
    ["Content-Disposition"] = media_api.disposition(content_type, name),
    ["Content-Security-Policy"] = media_api.CSP,
    ["X-Content-Type-Options"] = "nosniff",
    ["Cross-Origin-Resource-Policy"] = "cross-origin",
    ["Cache-Control"] = "public, max-age=86400, immutable",
  }
end

local function content_uri(hs, media_id)
  return "mxc://" .. hs.server_name .. "/" .. media_id
end

-- The upload's Content-Type and file name (the filename query parameter).
local function upload_opts(req)
  local name = req:arg("filename")
  if name and (#name > 255 or string_find(name, "[%c/\\]")) then
    return nil, errors.new("M_INVALID_PARAM", "Bad filename")
  end
  local length = req:header("content-length")
  return { content_type = req:header("content-type"), upload_name = name,
           length = length and string_find(length, "^%d+$") and #length < 16 and tonumber(length) or nil }
end

-- The body, streamed when the server streams it (one piece otherwise).
local function body_reader(req)
  return function() return req:read_body() end
end

local function upload(hs, req)
  local opts, err = upload_opts(req)
  if not opts then return err end
  local m, perr = repo(hs):put(req.user_id, body_reader(req), opts)
  if not m then return perr end
  return { content_uri = content_uri(hs, m.media_id) }
end

local function create(hs, req)
  -- the body (if any: clients send {}) streams in like an upload's; it is read and dropped
  local n = 0
  repeat
    local piece, err = req:read_body()
    if err then return err end
    n = n + (piece and #piece or 0)
    if n > 65536 then return errors.new("M_TOO_LARGE", "Request body too large") end
  until not piece
  local id, expires = repo(hs):create(req.user_id)
  if not id then return expires end
  return { content_uri = content_uri(hs, id), unused_expires_at = expires }
end

local function upload_to(hs, req)
  local server_name, media_id = req.params.serverName, req.params.mediaId
  if server_name ~= hs.server_name or not media.valid_id(media_id) then
    return errors.new("M_NOT_FOUND", "Unknown media ID")
  end
  local opts, err = upload_opts(req)
  if not opts then return err end
  opts.media_id = media_id
  local m, perr = repo(hs):put(req.user_id, body_reader(req), opts)
  if not m then return perr end
  return {}
end

-- The record of a local media ID, waiting up to timeout_ms for a pending
-- upload (the spec's M_NOT_YET_UPLOADED after the wait); nil, error value.
local function find(hs, req)
  local server_name, media_id = req.params.serverName, req.params.mediaId
  if not media.valid_id(media_id) then return nil, errors.new("M_NOT_FOUND", "Unknown media") end
  local r = repo(hs)
  if server_name ~= hs.server_name then
    if req:arg("allow_remote") == "false" then return nil, errors.new("M_NOT_FOUND", "Unknown media") end
    local cached = hs.store:media(server_name, media_id)
    if cached and cached.sha256 then
      if cached.quarantined then return nil, errors.new("M_NOT_FOUND", "Unknown media") end
      return cached
    end
    return r:fetch_remote(server_name, media_id)
  end
  local m = hs.store:media(server_name, media_id)
  if not m or m.quarantined then return nil, errors.new("M_NOT_FOUND", "Unknown media") end
  if not m.sha256 then
    if m.unused_expires_ts and m.unused_expires_ts <= core.now_ms() then
      return nil, errors.new("M_NOT_FOUND", "Unknown media")
    end
    local wait = req:arg_integer("timeout_ms", 20000, 0, 1 << 40)
    if wait > r.config.max_stall_ms then wait = r.config.max_stall_ms end
    m = r:wait_uploaded(m, wait)
    if not m then return nil, errors.new("M_NOT_YET_UPLOADED", "The media has not been uploaded yet") end
  end
  return m
end

local function download(hs, req)
  local m, err = find(hs, req)
  if not m then return err end
  local path = repo(hs):file_path(m.sha256)
  local name = req.params.fileName or m.upload_name
  return response.file(200, path, m.size, file_headers(m.content_type or "application/octet-stream", name))
end

-- The thumbnail of media m for a request's width, height and method:
-- record, path | nil, error value (shared with the federation endpoint).
function media_api.thumbnail_of(hs, req, m)
  local width = req:arg_integer("width", nil, 1, 10000)
  local height = req:arg_integer("height", nil, 1, 10000)
  if not width or not height then
    return nil, errors.new("M_MISSING_PARAM", "width and height are required")
  end
  local method = req:arg("method", "scale")
  if method ~= "scale" and method ~= "crop" then
    return nil, errors.new("M_INVALID_PARAM", "method must be scale or crop")
  end
  local animated = req:arg("animated")
  if animated ~= nil and animated ~= "true" and animated ~= "false" then
    return nil, errors.new("M_INVALID_PARAM", "animated must be true or false")
  end
  return repo(hs):thumbnail(m, width, height, method)
end

media_api.file_headers = file_headers
media_api.repo = repo

local function thumbnail(hs, req)
  -- the parameters first: a bad request is 400 whether or not the media exists
  local width = req:arg_integer("width", nil, 1, 10000)
  local height = req:arg_integer("height", nil, 1, 10000)
  if not width or not height then
    return errors.new("M_MISSING_PARAM", "width and height are required")
  end
  local m, err = find(hs, req)
  if not m then return err end
  local t, path = media_api.thumbnail_of(hs, req, m)
  if not t then return path end
  return response.file(200, path, t.size, file_headers(t.content_type, nil))
end

local function config(hs)
  return { ["m.upload.size"] = repo(hs).config.max_upload_size }
end

-- The legacy unauthenticated endpoints, unless config.media.legacy is false.
local function legacy(fn)
  return function(hs, req)
    if not repo(hs).config.legacy then
      return errors.new("M_NOT_FOUND", "Unauthenticated media is off: use /_matrix/client/v1/media")
    end
    return fn(hs, req)
  end
end

media_api.routes = {
  { "POST", MEDIA_V3 .. "/upload", upload, auth = true },
  { "POST", "/_matrix/media/v1/create", create, auth = true },
  { "PUT", MEDIA_V3 .. "/upload/{serverName}/{mediaId}", upload_to, auth = true },
  { "GET", CLIENT_V1 .. "/download/{serverName}/{mediaId}", download, auth = true },
  { "GET", CLIENT_V1 .. "/download/{serverName}/{mediaId}/{fileName}", download, auth = true },
  { "GET", CLIENT_V1 .. "/thumbnail/{serverName}/{mediaId}", thumbnail, auth = true },
  { "GET", CLIENT_V1 .. "/config", config, auth = true },
  { "GET", MEDIA_V3 .. "/download/{serverName}/{mediaId}", legacy(download), auth = false },
  { "GET", MEDIA_V3 .. "/download/{serverName}/{mediaId}/{fileName}", legacy(download), auth = false },
  { "GET", MEDIA_V3 .. "/thumbnail/{serverName}/{mediaId}", legacy(thumbnail), auth = false },
  { "GET", MEDIA_V3 .. "/config", legacy(config), auth = true },
  -- r0: the same legacy endpoints under their older name (clients such as matrix-nio 0.20 use it)
  { "POST", MEDIA_R0 .. "/upload", upload, auth = true },
  { "GET", MEDIA_R0 .. "/download/{serverName}/{mediaId}", legacy(download), auth = false },
  { "GET", MEDIA_R0 .. "/download/{serverName}/{mediaId}/{fileName}", legacy(download), auth = false },
  { "GET", MEDIA_R0 .. "/thumbnail/{serverName}/{mediaId}", legacy(thumbnail), auth = false },
  { "GET", MEDIA_R0 .. "/config", legacy(config), auth = true },
}

return media_api
