-- Federation transactions: those received (deduplicated by origin and
-- transaction ID), and what waits to be sent to each destination.

CREATE TABLE federation_txns_received (
  origin      TEXT NOT NULL,
  txn_id      TEXT NOT NULL,
  received_ts INTEGER NOT NULL,
  response    TEXT NOT NULL,          -- the JSON answered, answered again to a retry
  PRIMARY KEY (origin, txn_id)
) WITHOUT ROWID;
CREATE INDEX federation_txns_received_ts ON federation_txns_received (received_ts);

-- One row per destination and PDU or EDU, in order (seq). A PDU names its
-- event; an EDU carries its JSON ({ edu_type, content }). Rows stay until
-- the destination acknowledged the transaction that carried them.
CREATE TABLE federation_outbox (
  seq          INTEGER PRIMARY KEY AUTOINCREMENT,
  destination  TEXT NOT NULL,
  kind         TEXT NOT NULL CHECK (kind IN ('pdu', 'edu')),
  room_id      TEXT,
  payload      TEXT NOT NULL,         -- pdu: the event ID; edu: the EDU's JSON
  queued_ts    INTEGER NOT NULL
);
CREATE INDEX federation_outbox_dest ON federation_outbox (destination, seq);

-- Per destination: the transaction in flight (retried as it was, so the
-- destination can deduplicate it) and the backoff after failures.
CREATE TABLE federation_destinations (
  destination        TEXT PRIMARY KEY,
  txn_id             TEXT,            -- in flight: its ID and the last seq it carries
  txn_upto           INTEGER,
  next_txn           INTEGER NOT NULL DEFAULT 1,
  retry_interval_ms  INTEGER NOT NULL DEFAULT 0,
  retry_at_ms        INTEGER NOT NULL DEFAULT 0,
  failures           INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
