-- loom schema 10: send-to-device messages (Client-Server API
-- "Send-to-Device messaging"). Each message waits in its target device's
-- inbox under a position of the to-device stream until a later /sync of
-- that device acknowledges it (its token's to_device part >= the position).
-- to_device_stream keeps the last position given out, so positions never go
-- back when inboxes empty.

CREATE TABLE to_device_inbox (
  user_id    TEXT NOT NULL,
  device_id  TEXT NOT NULL,
  stream_id  INTEGER NOT NULL,
  sender     TEXT NOT NULL,
  type       TEXT NOT NULL,
  content    TEXT NOT NULL,         -- JSON object
  PRIMARY KEY (user_id, device_id, stream_id)
) WITHOUT ROWID;

CREATE TABLE to_device_stream (
  id         INTEGER PRIMARY KEY CHECK (id = 1),
  last       INTEGER NOT NULL
);
INSERT INTO to_device_stream (id, last) VALUES (1, 0);

CREATE TABLE to_device_txns (
  sender         TEXT NOT NULL,
  sender_device  TEXT NOT NULL,
  txn_id         TEXT NOT NULL,
  PRIMARY KEY (sender, sender_device, txn_id)
) WITHOUT ROWID;
