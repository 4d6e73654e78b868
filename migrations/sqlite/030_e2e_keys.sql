-- loom schema 30: end-to-end encryption keys (Client-Server API
-- "End-to-End Encryption"): each device's signed device keys, its one-time
-- and fallback keys, and the device-list stream (one row per change of a
-- user's devices or device keys; /sync's device_lists and /keys/changes
-- read it). AUTOINCREMENT: positions never go back when rows are pruned.

CREATE TABLE e2e_device_keys (
  user_id    TEXT NOT NULL,
  device_id  TEXT NOT NULL,
  key_json   TEXT NOT NULL,          -- the device_keys object as uploaded (canonical JSON)
  PRIMARY KEY (user_id, device_id)
) WITHOUT ROWID;

CREATE TABLE e2e_one_time_keys (
  user_id    TEXT NOT NULL,
  device_id  TEXT NOT NULL,
  algorithm  TEXT NOT NULL,
  key_id     TEXT NOT NULL,
  key_json   TEXT NOT NULL,          -- the key (a string or a signed object), JSON
  PRIMARY KEY (user_id, device_id, algorithm, key_id)
) WITHOUT ROWID;

CREATE TABLE e2e_fallback_keys (
  user_id    TEXT NOT NULL,
  device_id  TEXT NOT NULL,
  algorithm  TEXT NOT NULL,
  key_id     TEXT NOT NULL,
  key_json   TEXT NOT NULL,
  used       INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (user_id, device_id, algorithm)
) WITHOUT ROWID;

CREATE TABLE device_list_changes (
  stream_id  INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id    TEXT NOT NULL
);
CREATE INDEX device_list_changes_user ON device_list_changes (user_id, stream_id);

-- Cross-signing keys (usage: master, self_signing, user_signing), each the
-- uploaded key object with the signatures added later; and signatures of
-- another user's master key by a user's user-signing key (seen by the
-- signer only).
CREATE TABLE e2e_cross_signing_keys (
  user_id    TEXT NOT NULL,
  usage      TEXT NOT NULL,
  key_json   TEXT NOT NULL,
  PRIMARY KEY (user_id, usage)
) WITHOUT ROWID;

CREATE TABLE e2e_cross_signing_sigs (
  signer       TEXT NOT NULL,
  target_user  TEXT NOT NULL,
  target_key   TEXT NOT NULL,        -- the signed key's ID (its public key)
  key_id       TEXT NOT NULL,        -- "ed25519:<signing public key>"
  signature    TEXT NOT NULL,
  PRIMARY KEY (signer, target_user, target_key, key_id)
) WITHOUT ROWID;
