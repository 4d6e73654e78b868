-- loom schema 4: what the Client-Server room endpoints keep beside the events.

-- Transaction IDs of PUT /send and /redact: a retry with the same txnId from the
-- same device returns the first event. /sync reads (user_id, device_id,
-- event_id) to give the sending device unsigned.transaction_id.
CREATE TABLE txn_ids (
  user_id     TEXT NOT NULL,
  device_id   TEXT NOT NULL,
  txn_id      TEXT NOT NULL,
  endpoint    TEXT NOT NULL,           -- "send:<room_id>:<type>" or "redact:<room_id>"
  event_id    TEXT NOT NULL,
  created_ts  INTEGER NOT NULL,
  PRIMARY KEY (user_id, device_id, endpoint, txn_id)
) WITHOUT ROWID;
CREATE INDEX txn_ids_event ON txn_ids (event_id);

-- Local room aliases (#name:server_name).
CREATE TABLE room_aliases (
  alias       TEXT PRIMARY KEY,
  room_id     TEXT NOT NULL,
  creator     TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX room_aliases_room ON room_aliases (room_id);

-- The public room directory: visibility "public" or "private".
CREATE TABLE room_directory (
  room_id     TEXT PRIMARY KEY,
  visibility  TEXT NOT NULL
) WITHOUT ROWID;

-- Rooms a user has forgotten (after leaving); a new join removes the row.
CREATE TABLE forgotten_rooms (
  user_id     TEXT NOT NULL,
  room_id     TEXT NOT NULL,
  PRIMARY KEY (user_id, room_id)
) WITHOUT ROWID;
