-- loom schema 34: guest accounts (Client-Server API "Guest Access"). A guest
-- is a user row with is_guest = 1 and no password; registering with the
-- guest's access token turns the same row into a full account (is_guest 0).
ALTER TABLE users ADD COLUMN is_guest INTEGER NOT NULL DEFAULT 0;
