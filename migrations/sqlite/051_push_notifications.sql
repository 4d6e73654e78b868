-- loom schema 51: notifications laid out as one message writes them. A
-- message in a room of thousands of local members notifies each of them; the
-- rows of schema 33 were keyed by user, so one message's rows landed on as
-- many pages. Now:
--   push_events  one row per notifying event (its room, thread and time);
--   push_notifs  one row per event and notified user, keyed by the event's
--                stream ordering first: one message's rows are appended
--                together;
--   push_counts  per room, thread and user, the unread notification and
--                highlight counts and the oldest unread row, keyed by room
--                first: one message updates one run of it. /sync reads it by
--                user through push_counts_by_user (an update of the counts
--                leaves that index alone). A read receipt recounts the user's
--                rows of the room from the oldest unread one.
--   push_action_texts  the actions (JSON) a rule gave, once per distinct text.

CREATE TABLE push_events (
  stream_ordering  INTEGER PRIMARY KEY,
  room_id          TEXT NOT NULL,
  event_id         TEXT NOT NULL,
  thread_id        TEXT NOT NULL,      -- 'main', or the thread root's event ID
  ts               INTEGER NOT NULL    -- ms since the epoch
);
CREATE INDEX push_events_by_room ON push_events (room_id, stream_ordering);

CREATE TABLE push_action_texts (
  id       INTEGER PRIMARY KEY,
  actions  TEXT NOT NULL UNIQUE
);

CREATE TABLE push_notifs (
  stream_ordering  INTEGER NOT NULL,
  user_id          TEXT NOT NULL,
  highlight        INTEGER NOT NULL,   -- 0 or 1
  actions_id       INTEGER,            -- push_action_texts.id (NULL: ["notify"], with the highlight tweak if set)
  PRIMARY KEY (stream_ordering, user_id)
) WITHOUT ROWID;

CREATE TABLE push_counts (
  room_id        TEXT NOT NULL,
  thread_id      TEXT NOT NULL,
  user_id        TEXT NOT NULL,
  notifications  INTEGER NOT NULL,   -- unread
  highlights     INTEGER NOT NULL,   -- unread
  first_unread   INTEGER NOT NULL,   -- the oldest unread row's stream ordering (when notifications > 0)
  PRIMARY KEY (room_id, thread_id, user_id)
) WITHOUT ROWID;
CREATE INDEX push_counts_by_user ON push_counts (user_id, room_id);

-- the rows of schema 33 and 38, carried over
INSERT INTO push_events (stream_ordering, room_id, event_id, thread_id, ts)
  SELECT stream_ordering, min(room_id), min(event_id), min(thread_id), max(ts)
  FROM event_push_actions GROUP BY stream_ordering;

INSERT OR IGNORE INTO push_action_texts (actions)
  SELECT DISTINCT actions FROM event_push_actions WHERE actions IS NOT NULL;

INSERT INTO push_notifs (stream_ordering, user_id, highlight, actions_id)
  SELECT a.stream_ordering, a.user_id, a.highlight, t.id
  FROM event_push_actions a LEFT JOIN push_action_texts t ON t.actions = a.actions;

-- unread: after the user's latest unthreaded m.read or m.read.private
-- receipt in the room and after their latest one for the row's thread
INSERT INTO push_counts (room_id, thread_id, user_id, notifications, highlights, first_unread)
  SELECT room_id, thread_id, user_id, count(u), coalesce(sum(u * highlight), 0), coalesce(min(u * stream_ordering), 0)
  FROM (SELECT a.room_id, a.thread_id, a.user_id, a.highlight, a.stream_ordering,
      CASE WHEN a.stream_ordering > max(
        coalesce((SELECT max(r.event_stream) FROM receipts r WHERE r.room_id = a.room_id AND r.user_id = a.user_id
          AND r.receipt_type IN ('m.read', 'm.read.private') AND r.thread_id = ''), 0),
        coalesce((SELECT max(r.event_stream) FROM receipts r WHERE r.room_id = a.room_id AND r.user_id = a.user_id
          AND r.receipt_type IN ('m.read', 'm.read.private') AND r.thread_id = a.thread_id), 0))
      THEN 1 END AS u
    FROM event_push_actions a)
  GROUP BY room_id, thread_id, user_id;

DROP TABLE event_push_actions;
