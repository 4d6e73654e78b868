-- loom schema 5: sync filters (POST /user/{userId}/filter).

CREATE TABLE filters (
  user_id    TEXT NOT NULL,
  filter_id  INTEGER NOT NULL,        -- per user, from 0; sent as a decimal string
  json       TEXT NOT NULL,
  PRIMARY KEY (user_id, filter_id)
) WITHOUT ROWID;
