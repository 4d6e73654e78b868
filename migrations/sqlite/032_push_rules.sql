-- loom schema 32: push rules (Client-Server API "Push Rules"), per user.
-- A row is either a rule the user made (is_default = 0: conditions,
-- pattern and actions as given, ordered within its kind by priority) or the
-- user's changes to a server-default rule (is_default = 1: enabled and/or
-- actions; NULL keeps the default). The rule set the user sees is the
-- predefined rules with these applied (loom.api.pushrules.merge).

CREATE TABLE push_rules (
  user_id     TEXT NOT NULL,
  kind        TEXT NOT NULL,      -- override, content, room, sender or underride
  rule_id     TEXT NOT NULL,
  is_default  INTEGER NOT NULL,   -- 1: changes to a server-default rule
  priority    INTEGER NOT NULL,   -- order within (user_id, kind), higher first; 0 for defaults
  conditions  TEXT,               -- JSON array (override and underride rules)
  pattern     TEXT,               -- content rules
  actions     TEXT,               -- JSON array; NULL: the default's
  enabled     INTEGER,            -- 0 or 1; NULL: the default's
  PRIMARY KEY (user_id, kind, rule_id)
) WITHOUT ROWID;
