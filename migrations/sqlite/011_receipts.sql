-- loom schema 10: read receipts (Client-Server API "Receipts"): the latest
-- receipt per room, type, user and thread ('' for an unthreaded receipt).
-- Each change takes the next position of the receipts stream (stream_id),
-- so /sync sends only what changed since its token; event_stream is the
-- stream ordering of the event, so a receipt never moves backwards.

CREATE TABLE receipts (
  room_id       TEXT NOT NULL,
  receipt_type  TEXT NOT NULL,      -- m.read or m.read.private
  user_id       TEXT NOT NULL,
  thread_id     TEXT NOT NULL,      -- '' when unthreaded
  event_id      TEXT NOT NULL,
  event_stream  INTEGER NOT NULL,   -- stream ordering of the event
  ts            INTEGER NOT NULL,   -- ms since the epoch
  stream_id     INTEGER NOT NULL,   -- position of the last change in the receipts stream
  PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
) WITHOUT ROWID;

CREATE INDEX receipts_by_stream ON receipts (room_id, stream_id);
