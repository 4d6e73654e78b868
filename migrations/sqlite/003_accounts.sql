-- loom schema 3: accounts, devices and access tokens.

CREATE TABLE users (
  user_id        TEXT PRIMARY KEY,
  password_hash  TEXT,                 -- "pbkdf2-sha256$<iterations>$<salt b64>$<key b64>", NULL: no password
  admin          INTEGER NOT NULL DEFAULT 0,
  deactivated    INTEGER NOT NULL DEFAULT 0,
  displayname    TEXT,
  avatar_url     TEXT,
  created_ts     INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE devices (
  user_id       TEXT NOT NULL,
  device_id     TEXT NOT NULL,
  display_name  TEXT,
  last_seen_ts  INTEGER,
  PRIMARY KEY (user_id, device_id)
) WITHOUT ROWID;

-- Access tokens are stored as the sha256 of the token, never the token.
CREATE TABLE access_tokens (
  token_hash  BLOB PRIMARY KEY,
  user_id     TEXT NOT NULL,
  device_id   TEXT NOT NULL,
  created_ts  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX access_tokens_device ON access_tokens (user_id, device_id);

-- The server's own ed25519 signing keys (the seed stays in the database).
CREATE TABLE server_signing_keys (
  key_id      TEXT PRIMARY KEY,
  seed        BLOB NOT NULL,
  created_ts  INTEGER NOT NULL
) WITHOUT ROWID;
