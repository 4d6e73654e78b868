-- loom schema 13: presence (Client-Server API "Presence"): one row per user
-- who ever had a presence. Each change of what clients see (state,
-- status_msg, currently_active) takes the next position of the presence
-- stream (stream_id), so /sync sends only what changed since its token;
-- last_active_ts moves without a new position (clients compute
-- last_active_ago from it when the next change is sent).

CREATE TABLE presence (
  user_id           TEXT PRIMARY KEY,
  state             TEXT NOT NULL,      -- online, unavailable or offline
  status_msg        TEXT,               -- NULL when none
  last_active_ts    INTEGER NOT NULL,   -- ms since the epoch (0: never)
  currently_active  INTEGER NOT NULL,   -- 0 or 1
  stream_id         INTEGER NOT NULL    -- position of the last change in the presence stream
) WITHOUT ROWID;

CREATE INDEX presence_by_stream ON presence (stream_id);
CREATE INDEX presence_not_offline ON presence (state) WHERE state <> 'offline';
