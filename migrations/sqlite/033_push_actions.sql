-- loom schema 33: push-rule results (Client-Server API, Push Notifications
-- module, "Receiving notifications"): one row per local user and event
-- whose push rules notify. /sync counts a user's rows after their read
-- receipt in each room (unread_notifications).

CREATE TABLE event_push_actions (
  user_id          TEXT NOT NULL,
  room_id          TEXT NOT NULL,
  stream_ordering  INTEGER NOT NULL,   -- of the event
  event_id         TEXT NOT NULL,
  highlight        INTEGER NOT NULL,   -- 0 or 1
  PRIMARY KEY (user_id, room_id, stream_ordering)
) WITHOUT ROWID;
