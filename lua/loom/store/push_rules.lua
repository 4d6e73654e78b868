-- loom.store.push_rules: each user's push rules (Client-Server API "Push
-- Rules"), schema 32. A row is a rule the user made or the user's change to
-- a server-default rule (its enabled flag or actions); the predefined rules
-- themselves are not stored (loom.api.pushrules builds them).
--
--   local rows = store:push_rule_rows(user_id)   -- { {kind=, rule_id=, is_default=, ...}, ... }
--   store:change_push_rules(user_id, function(s)
--     return s:add_push_rule(user_id, "content", "cake", { pattern = "cake", actions = "[]" })
--   end, render)                                   -- render(rows) -> m.push_rules JSON text
--
-- change_push_rules runs the change and writes the user's m.push_rules
-- account data (render's text) in one transaction, so /sync delivers the new
-- rule set with the change. Mixed into the store. A database failure raises.
local ipairs = ipairs

local push_rules = {}
local methods = {}
local _ENV = nil -- luacheck: ignore 211

local SHAPE = { "kind", "rule_id", "is_default", "priority", "conditions", "pattern", "actions", "enabled" }
local COLS = "kind, rule_id, is_default, priority, conditions, pattern, actions, enabled"

--- Every stored row of a user, each kind's own rules highest priority first:
-- { { kind, rule_id, is_default (0/1), priority, conditions, pattern,
--     actions (JSON text or nil), enabled (0/1 or nil) }, ... }.
function methods:push_rule_rows(user_id)
  return self.conn:records("SELECT " .. COLS .. " FROM push_rules WHERE user_id = ? ORDER BY kind, priority DESC",
    SHAPE, user_id)
end

-- The user's own rules of one kind, highest priority first: { rule_id, ... }.
local function own_rules(conn, user_id, kind)
  return conn:column([[SELECT rule_id FROM push_rules WHERE user_id = ? AND kind = ? AND is_default = 0
    ORDER BY priority DESC]], user_id, kind)
end

--- Add or replace a rule the user made. fields: conditions (JSON text or
-- nil), pattern (or nil), actions (JSON text). before / after: the rule_id
-- of one of the user's rules of the same kind to place it just above /
-- below (before wins); with neither it goes above all of them. Returns true,
-- or nil, message, "not_found" when before/after names no such rule.
function methods:add_push_rule(user_id, kind, rule_id, fields, before, after)
  local conn = self.conn
  return conn:transaction(function()
    local ids = {}
    for _, id in ipairs(own_rules(conn, user_id, kind)) do
      if id ~= rule_id then ids[#ids + 1] = id end
    end
    local at = 1
    local anchor = before or after
    if anchor then
      at = nil
      for i, id in ipairs(ids) do
        if id == anchor then at = before and i or i + 1 end
      end
      if not at then return nil, "No push rule " .. anchor .. " to place this rule next to", "not_found" end
    end
    conn:run([[INSERT INTO push_rules (user_id, kind, rule_id, is_default, priority, conditions, pattern, actions,
        enabled) VALUES (?, ?, ?, 0, 0, ?, ?, ?, 1)
      ON CONFLICT (user_id, kind, rule_id) DO UPDATE SET conditions = excluded.conditions,
        pattern = excluded.pattern, actions = excluded.actions]],
      user_id, kind, rule_id, fields.conditions, fields.pattern, fields.actions)
    local order = {}
    for i = 1, at - 1 do order[#order + 1] = ids[i] end
    order[#order + 1] = rule_id
    for i = at, #ids do order[#order + 1] = ids[i] end
    for i, id in ipairs(order) do
      conn:run("UPDATE push_rules SET priority = ? WHERE user_id = ? AND kind = ? AND rule_id = ?",
        #order - i + 1, user_id, kind, id)
    end
    return true
  end)
end

--- Delete a rule the user made. Returns true, or false when there is none.
function methods:delete_push_rule(user_id, kind, rule_id)
  return self.conn:run("DELETE FROM push_rules WHERE user_id = ? AND kind = ? AND rule_id = ? AND is_default = 0",
    user_id, kind, rule_id) > 0
end

--- Set a rule's enabled flag (0/1) or actions (JSON text): what is a
-- table { enabled = } or { actions = }. For a rule the user made (is_default
-- false) returns false when there is none; a server-default rule's change
-- is kept beside the default (always true).
function methods:set_push_rule_attr(user_id, kind, rule_id, is_default, what)
  local conn = self.conn
  local enabled, actions = what.enabled, what.actions
  if not is_default then
    local col, v = "enabled", enabled
    if actions ~= nil then col, v = "actions", actions end
    return conn:run("UPDATE push_rules SET " .. col .. " = ? WHERE user_id = ? AND kind = ? AND rule_id = ? AND "
      .. "is_default = 0", v, user_id, kind, rule_id) > 0
  end
  conn:run([[INSERT INTO push_rules (user_id, kind, rule_id, is_default, priority, actions, enabled)
      VALUES (?, ?, ?, 1, 0, ?, ?)
    ON CONFLICT (user_id, kind, rule_id) DO UPDATE SET actions = coalesce(excluded.actions, actions),
      enabled = coalesce(excluded.enabled, enabled)]], user_id, kind, rule_id, actions, enabled)
  return true
end

--- Run change(store) in a transaction; when it returns a true value, also
-- set the user's m.push_rules account data to render(rows) (rows as
-- push_rule_rows gives them). Returns change's results.
function methods:change_push_rules(user_id, change, render)
  local conn = self.conn
  local function results(ok, ...)
    if ok then self:set_account_data(user_id, nil, "m.push_rules", render(self:push_rule_rows(user_id))) end
    return ok, ...
  end
  return conn:transaction(function() return results(change(self)) end)
end

push_rules.methods = methods
return push_rules
