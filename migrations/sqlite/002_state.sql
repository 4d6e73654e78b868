-- loom schema 2: room state (lua/loom/store/state.lua, docs/state.md).
--
-- The state at an event is a set of (type NID, state key NID, event NID)
-- triples, named by a snapshot NID (0 = the empty state). A snapshot is a
-- list of at most 64 blocks (merged in order, later blocks overriding earlier
-- ones) plus up to 63 small deltas on top. Snapshots live in segments of 64:
-- snapshot NID = segment_nid * 64 + slot. Blocks and snapshots are
-- content-deduplicated through hashes.

-- Blocks: sorted triples in loom's compact encoding (csrc/state.c).
CREATE TABLE state_blocks (
  block_nid  INTEGER PRIMARY KEY,
  hash       INTEGER NOT NULL,          -- 32-bit hash of data
  data       BLOB NOT NULL
);
CREATE INDEX state_blocks_hash ON state_blocks (hash);

-- Segments: up to 64 snapshots, each the previous one plus a delta. The first
-- delta applies to the snapshot `parent`, or, when parent is NULL, to the
-- blocks the segment lists.
CREATE TABLE state_segments (
  segment_nid  INTEGER PRIMARY KEY,
  parent       INTEGER,
  data         BLOB NOT NULL
);

-- Snapshot lookup by content: bucket = low bits of the state's 32-bit hash
-- (state_meta.snapshot_hash_bits of them; the buckets double as they fill),
-- entries = (hash >> 8 in 3 bytes, varint snapshot NID)*.
CREATE TABLE state_snapshot_hashes (
  bucket   INTEGER PRIMARY KEY,
  entries  BLOB NOT NULL
);

CREATE TABLE state_meta (
  name   TEXT PRIMARY KEY,
  value  INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO state_meta (name, value) VALUES ('snapshot_hash_bits', 8);

-- The state at each non-outlier event: state_before is the snapshot before
-- it, state_after the one after it, NULL when equal to state_before (every
-- non-state event). Both NULL: no state recorded (outliers).
ALTER TABLE events ADD COLUMN state_before INTEGER;
ALTER TABLE events ADD COLUMN state_after INTEGER;

-- The current state of every room, one row per entry, kept in step with the
-- room's latest state in the same transaction as the event.
CREATE TABLE current_state (
  room_nid       INTEGER NOT NULL,
  type_nid       INTEGER NOT NULL,
  state_key_nid  INTEGER NOT NULL,
  event_nid      INTEGER NOT NULL,
  PRIMARY KEY (room_nid, type_nid, state_key_nid)
) WITHOUT ROWID;
-- Which rooms hold an entry for a state key (a user's memberships).
CREATE INDEX current_state_key ON current_state (state_key_nid, type_nid);
