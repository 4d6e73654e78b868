-- loom schema 40: the content repository (Client-Server API "Content
-- repository"). A media row per mxc:// URI; the bytes live on disk under the
-- media store, named by their sha256, so identical uploads share one file.
-- A row created by POST /media/v1/create has no sha256 until its upload.
-- Remote media fetched over federation is cached with its origin server's
-- name (user_id NULL). Thumbnails, made on first request, are keyed by the
-- size and method asked for after rounding to a configured size.
CREATE TABLE media (
  server_name TEXT NOT NULL,
  media_id TEXT NOT NULL,
  user_id TEXT,                       -- the uploader (local media)
  content_type TEXT,
  upload_name TEXT,
  size INTEGER,                       -- bytes; NULL until uploaded
  sha256 TEXT,                        -- hex; NULL until uploaded
  created_ts INTEGER NOT NULL,
  uploaded_ts INTEGER,
  unused_expires_ts INTEGER,          -- POST /create: the upload must come before this
  quarantined INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (server_name, media_id)
) WITHOUT ROWID;
CREATE INDEX media_by_user ON media (user_id, created_ts) WHERE user_id IS NOT NULL;
CREATE INDEX media_by_sha256 ON media (sha256) WHERE sha256 IS NOT NULL;

CREATE TABLE media_thumbnails (
  server_name TEXT NOT NULL,
  media_id TEXT NOT NULL,
  width INTEGER NOT NULL,             -- the size asked for (one of the configured sizes)
  height INTEGER NOT NULL,
  method TEXT NOT NULL,               -- scale | crop
  content_type TEXT NOT NULL,
  size INTEGER NOT NULL,
  sha256 TEXT NOT NULL,
  thumb_width INTEGER NOT NULL,       -- the thumbnail's own size
  thumb_height INTEGER NOT NULL,
  PRIMARY KEY (server_name, media_id, width, height, method),
  FOREIGN KEY (server_name, media_id) REFERENCES media (server_name, media_id) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX media_thumbnails_by_sha256 ON media_thumbnails (sha256);
