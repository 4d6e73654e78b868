-- loom.api.federation.media: this server's media for other servers
-- (Server-Server API "Content repository"):
--
--   GET /_matrix/federation/v1/media/download/{mediaId}
--   GET /_matrix/federation/v1/media/thumbnail/{mediaId}?width=&height=&method=
--
-- Both answer multipart/mixed: a JSON part (the metadata: {} today), then
-- the file with its Content-Type and Content-Disposition. Only media of this
-- server is served (never what it cached from others); unknown or
-- quarantined media is 404 M_NOT_FOUND. See docs/media.md.
local errors = require "loom.http.errors"
local response = require "loom.http.response"
local media = require "loom.media"
local client_media = require "loom.api.client.media"

local io_open, tostring, error = io.open, tostring, error

local _ENV = nil -- luacheck: ignore 211

local fed_media = {}

local V1 = "/_matrix/federation/v1/media"

local function local_media(hs, req)
  local media_id = req.params.mediaId
  if not media.valid_id(media_id) then return nil, errors.new("M_NOT_FOUND", "Unknown media") end
  local m = hs.store:media(hs.server_name, media_id)
  if not m or not m.sha256 or m.quarantined then return nil, errors.new("M_NOT_FOUND", "Unknown media") end
  return m
end

local function read_file(path)
  local f, err = io_open(path, "rb")
  if not f then error("cannot read media file: " .. tostring(err), 0) end
  local data = f:read("a")
  f:close()
  return data
end

local function multipart(content_type, name, path)
  local body, ct = media.multipart_body("{}", content_type, client_media.disposition(content_type, name),
    read_file(path))
  return response.new(200, body, { ["Content-Type"] = ct })
end

local function download(hs, req)
  local m, err = local_media(hs, req)
  if not m then return err end
  local repo = client_media.repo(hs)
  return multipart(m.content_type or "application/octet-stream", m.upload_name, repo:file_path(m.sha256))
end

local function thumbnail(hs, req)
  local m, err = local_media(hs, req)
  if not m then return err end
  local t, path = client_media.thumbnail_of(hs, req, m)
  if not t then return path end
  return multipart(t.content_type, nil, path)
end

fed_media.routes = {
  { "GET", V1 .. "/download/{mediaId}", download, auth = "server" },
  { "GET", V1 .. "/thumbnail/{mediaId}", thumbnail, auth = "server" },
}

return fed_media
