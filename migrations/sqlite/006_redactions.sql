-- loom schema 6: redactions that apply. An event listed here is served to
-- clients in its redacted form (the stored original stays, for federation),
-- with the redaction in unsigned.redacted_because.
CREATE TABLE redactions (
  event_id      TEXT NOT NULL,      -- the redacted event
  redaction_id  TEXT NOT NULL,      -- the m.room.redaction event
  PRIMARY KEY (event_id, redaction_id)
) WITHOUT ROWID;
