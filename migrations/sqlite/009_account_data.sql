-- loom schema 9: account data (Client-Server API "Client Config"): per user,
-- global (room_id '') or per room, one JSON object per type. Each change
-- takes the next position of the account-data stream (stream_id), so /sync
-- sends only what changed since its token. Room tags are the m.tag room
-- account data.

CREATE TABLE account_data (
  user_id    TEXT NOT NULL,
  room_id    TEXT NOT NULL,         -- '' for global account data
  type       TEXT NOT NULL,
  content    TEXT NOT NULL,         -- JSON object
  stream_id  INTEGER NOT NULL,      -- position of the last change in the account-data stream
  PRIMARY KEY (user_id, room_id, type)
) WITHOUT ROWID;

CREATE INDEX account_data_by_stream ON account_data (user_id, stream_id);
