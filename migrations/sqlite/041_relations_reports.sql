-- loom schema 41: event relationships (Client-Server API "Relationships":
-- annotations, replacements, threads, references), the thread list, the
-- origin_server_ts index that "Jumping to a date" seeks, and content
-- reports ("Reporting content").

-- One row per timeline event whose content.m.relates_to names a rel_type
-- and a parent event_id. Written in the child's own transaction; a
-- redaction of the child deletes its row.
CREATE TABLE event_relations (
  event_nid        INTEGER PRIMARY KEY,  -- the child
  event_id         TEXT NOT NULL,        -- the child
  room_nid         INTEGER NOT NULL,
  parent_id        TEXT NOT NULL,
  rel_type         TEXT NOT NULL,
  aggregation_key  TEXT,                 -- m.annotation's key
  type             TEXT NOT NULL,        -- the child's event type
  is_state         INTEGER NOT NULL,     -- 1 when the child is a state event
  sender           TEXT NOT NULL,
  depth            INTEGER NOT NULL,     -- topological order of the child
  stream_ordering  INTEGER NOT NULL,
  origin_server_ts INTEGER NOT NULL
);
CREATE UNIQUE INDEX event_relations_child ON event_relations (event_id);
CREATE INDEX event_relations_parent ON event_relations (parent_id, depth, stream_ordering);
CREATE INDEX event_relations_parent_rel ON event_relations (parent_id, rel_type, depth, stream_ordering);

-- Thread roots with their latest m.thread reply (topological position),
-- so the room's threads list pages newest activity first from an index.
CREATE TABLE threads (
  room_nid       INTEGER NOT NULL,
  root_id        TEXT NOT NULL,
  latest_id      TEXT NOT NULL,
  latest_depth   INTEGER NOT NULL,
  latest_stream  INTEGER NOT NULL,
  PRIMARY KEY (room_nid, root_id)
) WITHOUT ROWID;
CREATE INDEX threads_activity ON threads (room_nid, latest_depth, latest_stream);

-- GET /rooms/{roomId}/timestamp_to_event: the timeline by sending time.
CREATE INDEX events_room_ts ON events (room_nid, origin_server_ts, stream_ordering)
  WHERE outlier = 0 AND rejected = 0 AND soft_failed = 0;

-- Reports of events, rooms and users, kept for the server admins.
CREATE TABLE reports (
  report_id    INTEGER PRIMARY KEY,
  received_ts  INTEGER NOT NULL,
  reporter     TEXT NOT NULL,
  room_id      TEXT,                 -- event and room reports
  event_id     TEXT,                 -- event reports
  user_id      TEXT,                 -- user reports
  reason       TEXT,
  score        INTEGER
);
