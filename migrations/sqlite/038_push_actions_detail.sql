-- loom schema 38: what GET /notifications and unread_thread_notifications
-- need from each push action (schema 33): the actions the push rules gave
-- (JSON), the thread the event belongs to ('main' unless its m.relates_to
-- has rel_type m.thread: then the thread root's event ID) and when the row
-- was made (ms since the epoch).

ALTER TABLE event_push_actions ADD COLUMN actions TEXT;
ALTER TABLE event_push_actions ADD COLUMN thread_id TEXT NOT NULL DEFAULT 'main';
ALTER TABLE event_push_actions ADD COLUMN ts INTEGER NOT NULL DEFAULT 0;

CREATE INDEX event_push_actions_by_stream ON event_push_actions (user_id, stream_ordering);
