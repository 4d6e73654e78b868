-- loom schema 35: pushers (Client-Server API "Push Notifications",
-- POST /pushers/set): where a user's notifications are pushed. One per
-- app_id, pushkey and user. Each belongs to the device of the access token
-- that set it: when the device goes (logout, device deletion, deactivation)
-- its pushers go with it, as in Synapse.

CREATE TABLE pushers (
  user_id              TEXT NOT NULL,
  app_id               TEXT NOT NULL,
  pushkey              TEXT NOT NULL,
  device_id            TEXT,               -- the setting access token's device
  kind                 TEXT NOT NULL,      -- http or email
  app_display_name     TEXT NOT NULL,
  device_display_name  TEXT NOT NULL,
  profile_tag          TEXT,
  lang                 TEXT NOT NULL,
  data                 TEXT NOT NULL,      -- the data object, JSON
  pushkey_ts           INTEGER NOT NULL,   -- ms since the epoch, when set
  PRIMARY KEY (user_id, app_id, pushkey)
) WITHOUT ROWID;

CREATE INDEX pushers_by_key ON pushers (app_id, pushkey);

CREATE TRIGGER pushers_device_deleted AFTER DELETE ON devices
BEGIN
  DELETE FROM pushers WHERE user_id = OLD.user_id AND device_id = OLD.device_id;
END;
