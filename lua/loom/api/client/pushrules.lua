-- loom.api.client.pushrules: the Client-Server API "Push Rules" endpoints:
-- GET /pushrules/ and /pushrules/global/ (the whole rule set),
-- /pushrules/global/{kind}/ (one kind's rules), GET/PUT/DELETE
-- /pushrules/global/{kind}/{ruleId} (PUT takes ?before= / ?after=), and the
-- enabled and actions sub-resources (GET/PUT). The rule set is the
-- predefined rules (loom.api.pushrules) with the user's rows from
-- loom.store.push_rules applied; every change also becomes the user's
-- m.push_rules account data, so /sync delivers it. See docs/push.md.
local core = require "loom.core"
local errors = require "loom.http.errors"
local ljson = require "loom.json"
local pushrules = require "loom.api.pushrules"
local glob = require "loom.push.glob"

local json = core.json
local ipairs, type = ipairs, type

local _ENV = nil -- luacheck: ignore 211

local pushrules_api = {}

local V3 = "/_matrix/client/v3"
local KINDS = { override = true, content = true, room = true, sender = true, underride = true }
local MAX_RULE_ID = 255
local MAX_CONDITIONS = 50
local MAX_ACTIONS = 50
local MAX_RULES = 500 -- rules one user may make (all kinds together)
local SIMPLE_ACTIONS = { notify = true, dont_notify = true, coalesce = true }

local function encode(v) return json.encode(v, { floats = true }) end

local function changed(hs, user_id)
  if hs.push then hs.push:invalidate(user_id) end
end

local function rule_set(hs, user_id)
  return pushrules.merge(user_id, hs.store:push_rule_rows(user_id))
end

local function render(user_id)
  return function(rows) return encode { global = pushrules.merge(user_id, rows) } end
end

-- The path's kind and rule; returns kind, rule_id or nil, error.
local function check_path(req)
  local p = req.params
  if not KINDS[p.kind] then return nil, errors.new("M_INVALID_PARAM", "Unknown push rule kind " .. p.kind) end
  local id = p.ruleId
  if #id == 0 or #id > MAX_RULE_ID then return nil, errors.new("M_INVALID_PARAM", "rule_id must be 1 to 255 bytes") end
  if id:find("[/\\]") then return nil, errors.new("M_INVALID_PARAM", "rule_id may not contain slashes") end
  return p.kind, id
end

local function find(rules, kind, rule_id)
  for _, r in ipairs(rules[kind]) do
    if r.rule_id == rule_id then return r end
  end
  return nil
end

-- Actions: an array of "notify", "dont_notify", "coalesce" or objects with a
-- string set_tweak (as Synapse). Returns an error or nil.
local function check_actions(actions)
  if not ljson.is_array(actions) then return errors.new("M_INVALID_PARAM", "actions must be an array") end
  if #actions > MAX_ACTIONS then return errors.new("M_INVALID_PARAM", "Too many actions") end
  for _, a in ipairs(actions) do
    if not (SIMPLE_ACTIONS[a] or (ljson.is_object(a) and type(a.set_tweak) == "string")) then
      return errors.new("M_INVALID_PARAM", "Unrecognised action")
    end
  end
  return nil
end

local function check_pattern(pattern, words)
  if type(pattern) ~= "string" then return errors.new("M_INVALID_PARAM", "pattern must be a string") end
  local ok, msg = glob.compile(pattern, { words = words })
  if not ok then return errors.new("M_INVALID_PARAM", "Bad pattern: " .. msg) end
  return nil
end

-- Conditions of an override or underride rule: an array of objects with a
-- string kind; event_match patterns must compile. Returns an error or nil.
local function check_conditions(conditions)
  if not ljson.is_array(conditions) then return errors.new("M_INVALID_PARAM", "Missing 'conditions'") end
  if #conditions > MAX_CONDITIONS then return errors.new("M_INVALID_PARAM", "Too many conditions") end
  for _, c in ipairs(conditions) do
    if not ljson.is_object(c) or type(c.kind) ~= "string" then
      return errors.new("M_INVALID_PARAM", "Condition without 'kind'")
    end
    if c.kind == "event_match" then
      if type(c.key) ~= "string" then return errors.new("M_INVALID_PARAM", "event_match needs a key") end
      local bad = check_pattern(c.pattern, c.key == "content.body")
      if bad then return bad end
    end
  end
  return nil
end

local function get_all(hs, req, scope_only)
  local rules = rule_set(hs, req.user_id)
  if scope_only then return rules end
  return { global = rules }
end

local function get_kind(hs, req)
  local kind = req.params.kind
  if not KINDS[kind] then return errors.new("M_INVALID_PARAM", "Unknown push rule kind " .. kind) end
  return rule_set(hs, req.user_id)[kind]
end

local function get_rule(hs, req, what)
  local kind, rule_id = check_path(req)
  if not kind then return rule_id end
  local r = find(rule_set(hs, req.user_id), kind, rule_id)
  if not r then return errors.new("M_NOT_FOUND", "Unknown push rule") end
  if what == "enabled" then return { enabled = r.enabled } end
  if what == "actions" then return { actions = r.actions } end
  return r
end

local function put_rule(hs, req)
  local kind, rule_id = check_path(req)
  if not kind then return rule_id end
  local body = req:json()
  if rule_id:sub(1, 1) == "." then
    return errors.new("M_INVALID_PARAM", "cannot add new rule_ids that start with '.'")
  end
  local fields = {}
  if kind == "override" or kind == "underride" then
    local bad = check_conditions(body.conditions)
    if bad then return bad end
    fields.conditions = encode(body.conditions)
  elseif kind == "content" then
    local bad = check_pattern(body.pattern, true)
    if bad then return bad end
    fields.pattern = body.pattern
  end
  local bad = check_actions(body.actions)
  if bad then return bad end
  fields.actions = encode(body.actions)
  local before, after = req:arg("before"), req:arg("after")
  if before == "" then before = nil end
  if after == "" then after = nil end
  local user_id = req.user_id
  local ok, msg = hs.store:change_push_rules(user_id, function(store)
    if #store:push_rule_rows(user_id) >= MAX_RULES and not find(rule_set(hs, user_id), kind, rule_id) then
      return nil, "Too many push rules", "limit"
    end
    return store:add_push_rule(user_id, kind, rule_id, fields, before, after)
  end, render(user_id))
  changed(hs, user_id)
  if not ok then
    if msg == "Too many push rules" then return errors.new("M_RESOURCE_LIMIT_EXCEEDED", msg) end
    return errors.new("M_NOT_FOUND", msg)
  end
  return {}
end

local function delete_rule(hs, req)
  local kind, rule_id = check_path(req)
  if not kind then return rule_id end
  local user_id = req.user_id
  local ok = hs.store:change_push_rules(user_id, function(store)
    return store:delete_push_rule(user_id, kind, rule_id)
  end, render(user_id))
  changed(hs, user_id)
  if not ok then return errors.new("M_NOT_FOUND", "Unknown push rule") end
  return {}
end

local function put_attr(hs, req, what)
  local kind, rule_id = check_path(req)
  if not kind then return rule_id end
  local body = req:json()
  local change = {}
  if what == "enabled" then
    if type(body.enabled) ~= "boolean" then return errors.new("M_INVALID_PARAM", "enabled must be a boolean") end
    change.enabled = body.enabled and 1 or 0
  else
    local bad = check_actions(body.actions)
    if bad then return bad end
    change.actions = encode(body.actions)
  end
  local user_id = req.user_id
  local r = find(rule_set(hs, user_id), kind, rule_id)
  if not r then return errors.new("M_NOT_FOUND", "Unknown push rule") end
  local ok = hs.store:change_push_rules(user_id, function(store)
    return store:set_push_rule_attr(user_id, kind, rule_id, r.default, change)
  end, render(user_id))
  changed(hs, user_id)
  if not ok then return errors.new("M_NOT_FOUND", "Unknown push rule") end
  return {}
end

local RULE = V3 .. "/pushrules/global/{kind}/{ruleId}"

pushrules_api.routes = {
  { "GET", V3 .. "/pushrules/", function(hs, req) return get_all(hs, req, false) end, auth = true },
  { "GET", V3 .. "/pushrules", function(hs, req) return get_all(hs, req, false) end, auth = true },
  { "GET", V3 .. "/pushrules/global/", function(hs, req) return get_all(hs, req, true) end, auth = true },
  { "GET", V3 .. "/pushrules/global/{kind}/", get_kind, auth = true },
  { "GET", RULE, get_rule, auth = true },
  { "PUT", RULE, put_rule, auth = true },
  { "DELETE", RULE, delete_rule, auth = true },
  { "GET", RULE .. "/enabled", function(hs, req) return get_rule(hs, req, "enabled") end, auth = true },
  { "PUT", RULE .. "/enabled", function(hs, req) return put_attr(hs, req, "enabled") end, auth = true },
  { "GET", RULE .. "/actions", function(hs, req) return get_rule(hs, req, "actions") end, auth = true },
  { "PUT", RULE .. "/actions", function(hs, req) return put_attr(hs, req, "actions") end, auth = true },
}

return pushrules_api
