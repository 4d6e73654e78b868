-- loom schema 31: server-side key backups (Client-Server API "Server-side
-- key backups"). A user's backup versions (the newest not deleted is the
-- current one; etag goes up with every change of its keys), and the room
-- keys backed up under each version.

CREATE TABLE room_key_versions (
  user_id     TEXT NOT NULL,
  version     INTEGER NOT NULL,
  algorithm   TEXT NOT NULL,
  auth_data   TEXT NOT NULL,          -- JSON object
  etag        INTEGER NOT NULL DEFAULT 0,
  deleted     INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (user_id, version)
) WITHOUT ROWID;

CREATE TABLE room_keys (
  user_id              TEXT NOT NULL,
  version              INTEGER NOT NULL,
  room_id              TEXT NOT NULL,
  session_id           TEXT NOT NULL,
  first_message_index  INTEGER NOT NULL,
  forwarded_count      INTEGER NOT NULL,
  is_verified          INTEGER NOT NULL,
  session_data         TEXT NOT NULL,  -- JSON object
  PRIMARY KEY (user_id, version, room_id, session_id)
) WITHOUT ROWID;
