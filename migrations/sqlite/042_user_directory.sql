-- loom schema 42: the user directory (Client-Server API "User directory")
-- and OpenID tokens.
--
-- user_directory holds one row per user the server knows a name for: every
-- local account (its profile) and every remote user seen joined to a room
-- (the display name of their member event). user_directory_search is the
-- full-text index over each row's localpart and display name (rowid = nid).
-- user_directory_public_rooms lists the rooms whose members anyone may find:
-- join rule public, or history visibility world_readable.
--
-- Triggers keep all three current in the write paths themselves, in the
-- same transaction: a profile change (users), a membership or a join rule /
-- history visibility change (current_state; type NIDs 5 m.room.member, 3
-- m.room.join_rules and 7 m.room.history_visibility are fixed in schema 1).
-- A search never scans memberships: who may see whom is read per candidate
-- through current_state's indexes.
CREATE TABLE user_directory (
  nid           INTEGER PRIMARY KEY,
  user_id       TEXT NOT NULL UNIQUE,
  display_name  TEXT,
  avatar_url    TEXT
);

CREATE VIRTUAL TABLE user_directory_search USING fts5(
  value,
  tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TABLE user_directory_public_rooms (
  room_nid  INTEGER PRIMARY KEY
);

-- The search text: the localpart (without '@' and server) and the display name.
CREATE TRIGGER user_directory_search_insert AFTER INSERT ON user_directory BEGIN
  INSERT INTO user_directory_search (rowid, value) VALUES (NEW.nid,
    substr(NEW.user_id, 2, instr(NEW.user_id, ':') - 2) || ' ' || coalesce(NEW.display_name, ''));
END;
CREATE TRIGGER user_directory_search_update AFTER UPDATE ON user_directory BEGIN
  DELETE FROM user_directory_search WHERE rowid = OLD.nid;
  INSERT INTO user_directory_search (rowid, value) VALUES (NEW.nid,
    substr(NEW.user_id, 2, instr(NEW.user_id, ':') - 2) || ' ' || coalesce(NEW.display_name, ''));
END;
CREATE TRIGGER user_directory_search_delete AFTER DELETE ON user_directory BEGIN
  DELETE FROM user_directory_search WHERE rowid = OLD.nid;
END;

-- Local accounts: their profile.
CREATE TRIGGER user_directory_user_insert AFTER INSERT ON users BEGIN
  INSERT INTO user_directory (user_id, display_name, avatar_url)
    VALUES (NEW.user_id, NEW.displayname, NEW.avatar_url)
    ON CONFLICT (user_id) DO UPDATE SET display_name = excluded.display_name, avatar_url = excluded.avatar_url;
END;
CREATE TRIGGER user_directory_user_update AFTER UPDATE OF displayname, avatar_url ON users BEGIN
  INSERT INTO user_directory (user_id, display_name, avatar_url)
    VALUES (NEW.user_id, NEW.displayname, NEW.avatar_url)
    ON CONFLICT (user_id) DO UPDATE SET display_name = excluded.display_name, avatar_url = excluded.avatar_url;
END;

-- Remote users: the display name and avatar of their current join event.
CREATE TRIGGER user_directory_member AFTER INSERT ON current_state WHEN NEW.type_nid = 5 BEGIN
  INSERT INTO user_directory (user_id, display_name, avatar_url)
    SELECT k.state_key,
      CASE WHEN json_type(e.json, '$.content.displayname') = 'text'
        THEN json_extract(e.json, '$.content.displayname') END,
      CASE WHEN json_type(e.json, '$.content.avatar_url') = 'text'
        THEN json_extract(e.json, '$.content.avatar_url') END
    FROM state_keys k JOIN events e ON e.event_nid = NEW.event_nid
    WHERE k.state_key_nid = NEW.state_key_nid AND json_valid(e.json)
      AND json_extract(e.json, '$.content.membership') = 'join'
      AND NOT EXISTS (SELECT 1 FROM users u WHERE u.user_id = k.state_key)
    ON CONFLICT (user_id) DO UPDATE SET display_name = excluded.display_name, avatar_url = excluded.avatar_url;
END;

-- Public rooms: recomputed when a join rule or history visibility changes.
CREATE TRIGGER user_directory_room_insert AFTER INSERT ON current_state WHEN NEW.type_nid IN (3, 7) BEGIN
  DELETE FROM user_directory_public_rooms WHERE room_nid = NEW.room_nid;
  INSERT INTO user_directory_public_rooms (room_nid)
    SELECT NEW.room_nid WHERE EXISTS (
      SELECT 1 FROM current_state c JOIN events e ON e.event_nid = c.event_nid
      WHERE c.room_nid = NEW.room_nid AND c.state_key_nid = 1 AND json_valid(e.json)
        AND ((c.type_nid = 3 AND json_extract(e.json, '$.content.join_rule') = 'public')
          OR (c.type_nid = 7 AND json_extract(e.json, '$.content.history_visibility') = 'world_readable')));
END;
CREATE TRIGGER user_directory_room_delete AFTER DELETE ON current_state WHEN OLD.type_nid IN (3, 7) BEGIN
  DELETE FROM user_directory_public_rooms WHERE room_nid = OLD.room_nid;
  INSERT INTO user_directory_public_rooms (room_nid)
    SELECT OLD.room_nid WHERE EXISTS (
      SELECT 1 FROM current_state c JOIN events e ON e.event_nid = c.event_nid
      WHERE c.room_nid = OLD.room_nid AND c.state_key_nid = 1 AND json_valid(e.json)
        AND ((c.type_nid = 3 AND json_extract(e.json, '$.content.join_rule') = 'public')
          OR (c.type_nid = 7 AND json_extract(e.json, '$.content.history_visibility') = 'world_readable')));
END;

-- What is already stored.
INSERT INTO user_directory (user_id, display_name, avatar_url)
  SELECT user_id, displayname, avatar_url FROM users;
INSERT INTO user_directory (user_id, display_name, avatar_url)
  SELECT k.state_key,
    CASE WHEN json_type(e.json, '$.content.displayname') = 'text' THEN json_extract(e.json, '$.content.displayname') END,
    CASE WHEN json_type(e.json, '$.content.avatar_url') = 'text' THEN json_extract(e.json, '$.content.avatar_url') END
  FROM current_state c JOIN state_keys k ON k.state_key_nid = c.state_key_nid
    JOIN events e ON e.event_nid = c.event_nid
  WHERE c.type_nid = 5 AND json_valid(e.json) AND json_extract(e.json, '$.content.membership') = 'join'
    AND NOT EXISTS (SELECT 1 FROM users u WHERE u.user_id = k.state_key)
  ORDER BY c.event_nid
  ON CONFLICT (user_id) DO UPDATE SET display_name = excluded.display_name, avatar_url = excluded.avatar_url;
INSERT INTO user_directory_public_rooms (room_nid)
  SELECT DISTINCT c.room_nid FROM current_state c JOIN events e ON e.event_nid = c.event_nid
  WHERE c.state_key_nid = 1 AND json_valid(e.json)
    AND ((c.type_nid = 3 AND json_extract(e.json, '$.content.join_rule') = 'public')
      OR (c.type_nid = 7 AND json_extract(e.json, '$.content.history_visibility') = 'world_readable'));

-- OpenID tokens (Client-Server API "OpenID"): stored as the sha256 of the
-- token, with the user they vouch for and when they expire.
CREATE TABLE openid_tokens (
  token_hash  BLOB PRIMARY KEY,
  user_id     TEXT NOT NULL,
  expires_ts  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX openid_tokens_expiry ON openid_tokens (expires_ts);
