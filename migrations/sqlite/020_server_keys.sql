-- Federation keys: the server's own retired keys, and other servers' keys.

-- A rotated-out key of this server is kept (its seed is no longer used) and
-- published in old_verify_keys with the time it stopped being used.
ALTER TABLE server_signing_keys ADD COLUMN expired_ts INTEGER;

-- Other servers' verify keys, as served by the server itself or by a notary
-- (from_server). key_json is the whole signed key response the key came in,
-- exactly as received, so this server can serve it on as a notary.
CREATE TABLE remote_server_keys (
  server_name     TEXT NOT NULL,
  key_id          TEXT NOT NULL,
  from_server     TEXT NOT NULL,
  public_key      BLOB NOT NULL,
  valid_until_ts  INTEGER NOT NULL,   -- verify_keys: valid until; old_verify_keys: expired_ts
  expired         INTEGER NOT NULL,   -- 1: listed in old_verify_keys
  fetched_ts      INTEGER NOT NULL,
  key_json        TEXT NOT NULL,
  PRIMARY KEY (server_name, key_id, from_server)
) WITHOUT ROWID;
