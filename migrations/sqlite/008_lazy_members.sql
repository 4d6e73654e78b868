-- loom schema 8: the m.room.member events each device was sent while it
-- lazy-loads members (filter room.state.lazy_load_members), so /sync sends
-- a member's event once per device and again only when it changes. A
-- device's rows are forgotten when its sync starts over (no `since`).

CREATE TABLE lazy_members_sent (
  user_id    TEXT NOT NULL,
  device_id  TEXT NOT NULL,
  room_nid   INTEGER NOT NULL,
  member     TEXT NOT NULL,         -- the state_key of the m.room.member event
  event_id   TEXT NOT NULL,         -- the member event last sent to the device
  PRIMARY KEY (user_id, device_id, room_nid, member)
) WITHOUT ROWID;
