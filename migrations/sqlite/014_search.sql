-- loom schema 14: server-side search (Client-Server API "Server Side
-- Search"). A full-text index over the searchable key of each timeline
-- event: content.body of m.room.message, content.name of m.room.name,
-- content.topic of m.room.topic. The rowid is the event's NID; `key` names
-- which key the text came from. Live (positive stream) timeline events are
-- indexed when persisted; backfilled events, outliers, rejected and
-- soft-failed events are not; a redacted event leaves the index.
CREATE VIRTUAL TABLE event_search USING fts5(
  key UNINDEXED,
  value,
  tokenize = 'unicode61 remove_diacritics 2'
);

-- Index what is already stored.
INSERT INTO event_search (rowid, key, value)
  SELECT e.event_nid, k.key, json_extract(e.json, k.path)
  FROM events e
  JOIN (SELECT 8 AS type_nid, 'content.body' AS key, '$.content.body' AS path
        UNION ALL SELECT 9, 'content.name', '$.content.name'
        UNION ALL SELECT 10, 'content.topic', '$.content.topic') k ON k.type_nid = e.type_nid
  WHERE e.outlier = 0 AND e.rejected = 0 AND e.soft_failed = 0 AND e.stream_ordering > 0
    AND json_valid(e.json) AND json_type(e.json, k.path) = 'text'
    AND e.event_id NOT IN (SELECT event_id FROM redactions);
