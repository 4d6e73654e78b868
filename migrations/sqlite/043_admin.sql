-- loom schema 43: the admin API's blocked rooms (Synapse's admin API "Block
-- room"): nobody of this server may join or be invited into a blocked room,
-- nor create it again after a purge. The row stays until an admin unblocks.
CREATE TABLE blocked_rooms (
  room_id     TEXT PRIMARY KEY,
  user_id     TEXT NOT NULL,           -- the admin who blocked it
  blocked_ts  INTEGER NOT NULL
) WITHOUT ROWID;

-- Each local user's server-notices room (created on the first notice).
CREATE TABLE server_notice_rooms (
  user_id  TEXT PRIMARY KEY,
  room_id  TEXT NOT NULL
) WITHOUT ROWID;
