-- loom schema 36: end-to-end encryption keys over federation (Server-Server
-- API "Device Management" and "End-to-End Encryption").
--
-- device_list_changes rows now say which device changed (NULL: a change of
-- the user's cross-signing keys), so that the m.device_list_update EDUs of a
-- local user chain their prev_id over device changes only.
ALTER TABLE device_list_changes ADD COLUMN device_id TEXT;

-- The device lists of users of other servers that this server tracks (they
-- share a room with a local user): the stream_id of the list held (the last
-- m.device_list_update applied, or the /user/devices answer), and the
-- devices. key_json is the device_keys object as received (canonical JSON),
-- NULL for a device without keys. Their cross-signing keys go to
-- e2e_cross_signing_keys like those of local users.
CREATE TABLE remote_device_lists (
  user_id    TEXT PRIMARY KEY,
  stream_id  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE remote_devices (
  user_id       TEXT NOT NULL,
  device_id     TEXT NOT NULL,
  display_name  TEXT,
  key_json      TEXT,
  PRIMARY KEY (user_id, device_id)
) WITHOUT ROWID;
