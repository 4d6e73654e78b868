-- loom schema 1: rooms, numeric IDs, events, the DAG's edges and extremities.
-- Numeric IDs (NIDs) never leave the server.

CREATE TABLE rooms (
  room_nid      INTEGER PRIMARY KEY,
  room_id       TEXT NOT NULL UNIQUE,
  room_version  TEXT,
  -- largest depth among backfilled (negative stream) timeline events
  backfill_max_depth INTEGER NOT NULL DEFAULT 0
);

-- Event types: well-known types have fixed NIDs below 1000; others are
-- assigned from 1000 upwards on first sight.
CREATE TABLE event_types (
  type_nid  INTEGER PRIMARY KEY,
  type      TEXT NOT NULL UNIQUE
);
INSERT INTO event_types (type_nid, type) VALUES
  (1, 'm.room.create'),
  (2, 'm.room.power_levels'),
  (3, 'm.room.join_rules'),
  (4, 'm.room.third_party_invite'),
  (5, 'm.room.member'),
  (6, 'm.room.redaction'),
  (7, 'm.room.history_visibility'),
  (8, 'm.room.message'),
  (9, 'm.room.name'),
  (10, 'm.room.topic'),
  (11, 'm.room.canonical_alias'),
  (12, 'm.room.guest_access'),
  (13, 'm.room.avatar'),
  (14, 'm.room.encryption'),
  (15, 'm.room.encrypted'),
  (16, 'm.room.server_acl'),
  (17, 'm.room.tombstone'),
  (18, 'm.room.pinned_events'),
  (19, 'm.room.aliases'),
  (20, 'm.reaction'),
  (21, 'm.sticker'),
  (22, 'm.space.child'),
  (23, 'm.space.parent'),
  (24, 'm.call.invite'),
  (25, 'm.room.related_groups');

-- State keys: the empty state key is NID 1.
CREATE TABLE state_keys (
  state_key_nid  INTEGER PRIMARY KEY,
  state_key      TEXT NOT NULL UNIQUE
);
INSERT INTO state_keys (state_key_nid, state_key) VALUES (1, '');

-- Every stored event. stream_ordering is the server-wide arrival order:
-- positive and increasing for new events, negative and decreasing for
-- backfilled ones. depth is the topological ordering.
CREATE TABLE events (
  event_nid         INTEGER PRIMARY KEY,
  event_id          TEXT NOT NULL UNIQUE,
  room_nid          INTEGER NOT NULL,
  type_nid          INTEGER NOT NULL,
  state_key_nid     INTEGER,            -- NULL for non-state events
  sender            TEXT NOT NULL,
  depth             INTEGER NOT NULL,
  stream_ordering   INTEGER NOT NULL UNIQUE,
  outlier           INTEGER NOT NULL DEFAULT 0,
  rejected          INTEGER NOT NULL DEFAULT 0,
  soft_failed       INTEGER NOT NULL DEFAULT 0,
  origin_server_ts  INTEGER NOT NULL,
  contains_url      INTEGER NOT NULL DEFAULT 0,
  -- the largest depth of the room's timeline at or before this position
  -- (for positive stream orderings): turns stream tokens into topological
  -- positions with one index seek.
  max_depth         INTEGER NOT NULL,
  json              TEXT NOT NULL
);

-- The timeline: non-outlier events that were neither rejected nor soft-failed.
-- Topological order, with the type for filters answered from the index.
CREATE INDEX events_topological ON events (room_nid, depth, stream_ordering, type_nid)
  WHERE outlier = 0 AND rejected = 0 AND soft_failed = 0;
-- Arrival order per room (sync).
CREATE INDEX events_room_stream ON events (room_nid, stream_ordering, type_nid, max_depth)
  WHERE outlier = 0 AND rejected = 0 AND soft_failed = 0;

CREATE TABLE event_rejections (
  event_nid  INTEGER PRIMARY KEY,
  reason     TEXT NOT NULL
);

-- prev_events edges of non-outlier events.
CREATE TABLE event_edges (
  event_nid      INTEGER NOT NULL,
  prev_event_id  TEXT NOT NULL,
  PRIMARY KEY (event_nid, prev_event_id)
) WITHOUT ROWID;
CREATE INDEX event_edges_prev ON event_edges (prev_event_id);

-- Events nothing else points at yet (the next event's prev_events).
CREATE TABLE forward_extremities (
  room_nid   INTEGER NOT NULL,
  event_nid  INTEGER NOT NULL,
  PRIMARY KEY (room_nid, event_nid)
) WITHOUT ROWID;

-- prev_events we do not hold as non-outliers: where backfill starts.
CREATE TABLE backward_extremities (
  room_nid  INTEGER NOT NULL,
  event_id  TEXT NOT NULL,
  PRIMARY KEY (room_nid, event_id)
) WITHOUT ROWID;

-- Membership events (also outliers such as invites over federation).
CREATE TABLE room_memberships (
  event_nid   INTEGER PRIMARY KEY,
  room_nid    INTEGER NOT NULL,
  user_id     TEXT NOT NULL,
  sender      TEXT NOT NULL,
  membership  TEXT NOT NULL,
  stream_ordering INTEGER NOT NULL
);
CREATE INDEX room_memberships_user ON room_memberships (user_id, stream_ordering);
CREATE INDEX room_memberships_room ON room_memberships (room_nid);
