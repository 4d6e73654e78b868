-- loom schema 44: the lowest positions a stream may answer. A stream's
-- position is the largest position in its table; purging a room (the admin
-- API) deletes rows, maybe the latest ones, and a position must never go
-- back (clients hold tokens past it). The purge records each stream's
-- position here first: 'events' (highest stream ordering), 'events_min'
-- (lowest, backfilled events count down), 'receipts', 'account_data'.
CREATE TABLE stream_floors (
  stream  TEXT PRIMARY KEY,
  pos     INTEGER NOT NULL
) WITHOUT ROWID;
