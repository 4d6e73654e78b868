-- loom.push.eval: push-rule evaluation (Client-Server API, Push
-- Notifications module, "Push Rules", "Conditions"). A user's rule set is
-- compiled once (its globs through loom.push.glob); each event is then run
-- through it: the first enabled rule, in the spec's kind order (override,
-- content, room, sender, underride), whose conditions all hold gives the
-- actions.
--
--   local eval = require "loom.push.eval"
--   local compiled = eval.compile(ruleset)            -- ruleset: GET /pushrules/global/
--   local actions, rule_id = eval.run(compiled, event, {
--     user_id = "@alice:example.org", display_name = "Alice", member_count = 2,
--     sender_power = 50, notifications = { room = 50 } })
--   local notify, highlight = eval.outcome(actions)
--
-- Conditions: event_match (glob on a string property; whole value, or words
-- for content.body), event_property_is (exact value: string, integer,
-- boolean or null), event_property_contains (an array property holding the
-- exact value), contains_display_name (the user's display name as words of
-- content.body), room_member_count (is = "[==|<|>|<=|>=]n"),
-- sender_notification_permission (the sender's power level reaches
-- notifications[key], default 50). An unknown condition kind, a bad glob or
-- a bad `is` never matches. Keys are dot-separated paths; "\." is a literal
-- dot and "\\" a backslash.
local glob = require "loom.push.glob"
local core = require "loom.core"

local ipairs, type, tonumber, math_type = ipairs, type, tonumber, math.type
local table_concat = table.concat
local null = core.json.null

local _ENV = nil -- luacheck: ignore 211

local eval = {}

local ORDER = { "override", "content", "room", "sender", "underride" }

--- Split a condition key into path parts ("content.m\.mentions.room" ->
-- { "content", "m.mentions", "room" }).
function eval.split_key(key)
  local parts, cur, i, n = {}, {}, 1, #key
  while i <= n do
    local c = key:sub(i, i)
    if c == "\\" and i < n and (key:sub(i + 1, i + 1) == "." or key:sub(i + 1, i + 1) == "\\") then
      cur[#cur + 1] = key:sub(i + 1, i + 1)
      i = i + 2
    elseif c == "." then
      parts[#parts + 1] = table_concat(cur)
      cur = {}
      i = i + 1
    else
      cur[#cur + 1] = c
      i = i + 1
    end
  end
  parts[#parts + 1] = table_concat(cur)
  return parts
end

local function lookup(event, path)
  local v = event
  for _, p in ipairs(path) do
    if type(v) ~= "table" then return nil end
    v = v[p]
  end
  return v
end

-- exact JSON equality for the scalar values the spec allows
local function same(a, b)
  if a == null or b == null then return a == b end
  if type(a) ~= type(b) then return false end
  if type(a) == "number" then return math_type(a) == "integer" and math_type(b) == "integer" and a == b end
  if type(a) == "string" or type(a) == "boolean" then return a == b end
  return false
end

local function parse_is(is)
  if type(is) ~= "string" then return nil end
  local op, num = is:match("^([<>=]*)(%d+)$")
  if not op or not ({ [""] = true, ["=="] = true, ["<"] = true, [">"] = true, ["<="] = true, [">="] = true })[op]
  then return nil end
  local n = tonumber(num)
  if not n or math_type(n) ~= "integer" then return nil end
  return op == "" and "==" or op, n
end

local function compile_condition(c)
  if type(c) ~= "table" then return function() return false end end
  local kind = c.kind
  if kind == "event_match" then
    if type(c.key) ~= "string" or type(c.pattern) ~= "string" then return function() return false end end
    local path = eval.split_key(c.key)
    local re = glob.compile(c.pattern, { words = c.key == "content.body" })
    if not re then return function() return false end end
    return function(event)
      local v = lookup(event, path)
      return type(v) == "string" and re:match(v) == true
    end
  elseif kind == "event_property_is" or kind == "event_property_contains" then
    if type(c.key) ~= "string" or c.value == nil then return function() return false end end
    local path, want = eval.split_key(c.key), c.value
    if kind == "event_property_is" then
      return function(event) return same(lookup(event, path), want) end
    end
    return function(event)
      local v = lookup(event, path)
      if type(v) ~= "table" then return false end
      for _, x in ipairs(v) do if same(x, want) then return true end end
      return false
    end
  elseif kind == "contains_display_name" then
    -- the last name's compiled pattern, kept with the rule set (one user's)
    local last_name, last_re
    return function(event, ctx)
      local name, body = ctx.display_name, lookup(event, { "content", "body" })
      if type(name) ~= "string" or name == "" or type(body) ~= "string" then return false end
      if name ~= last_name then
        last_name, last_re = name, glob.compile(name, { words = true, literal = true }) or false
      end
      return last_re and last_re:match(body) == true or false
    end
  elseif kind == "room_member_count" then
    local op, n = parse_is(c.is)
    if not op then return function() return false end end
    return function(_, ctx)
      local m = ctx.member_count
      if type(m) ~= "number" then return false end
      if op == "==" then return m == n elseif op == "<" then return m < n elseif op == ">" then return m > n
      elseif op == "<=" then return m <= n else return m >= n end
    end
  elseif kind == "sender_notification_permission" then
    if type(c.key) ~= "string" then return function() return false end end
    local key = c.key
    return function(_, ctx)
      local levels = ctx.notifications
      local need = type(levels) == "table" and levels[key]
      if type(need) ~= "number" then need = 50 end
      local have = ctx.sender_power
      return type(have) == "number" and have >= need
    end
  end
  return function() return false end
end

-- The conditions a rule of a kind stands for.
local function conditions_of(kind, r)
  if kind == "content" then
    return { { kind = "event_match", key = "content.body", pattern = r.pattern } }
  elseif kind == "room" then
    return { { kind = "event_match", key = "room_id", pattern = r.rule_id } }
  elseif kind == "sender" then
    return { { kind = "event_match", key = "sender", pattern = r.rule_id } }
  end
  return type(r.conditions) == "table" and r.conditions or {}
end

--- Compile a rule set ({override, content, room, sender, underride}) into
-- an ordered list of enabled rules: { { rule_id, actions, tests }, ... }.
function eval.compile(ruleset)
  local out = {}
  for _, kind in ipairs(ORDER) do
    for _, r in ipairs(type(ruleset) == "table" and type(ruleset[kind]) == "table" and ruleset[kind] or {}) do
      if type(r) == "table" and r.enabled ~= false then
        local tests = {}
        for _, c in ipairs(conditions_of(kind, r)) do tests[#tests + 1] = compile_condition(c) end
        out[#out + 1] = { rule_id = r.rule_id, actions = type(r.actions) == "table" and r.actions or {},
          tests = tests }
      end
    end
  end
  return out
end

--- The actions of the first rule whose conditions all hold, and its
-- rule_id; nil when none does. ctx: user_id, display_name, member_count,
-- sender_power, notifications (the power levels' notifications object).
function eval.run(compiled, event, ctx)
  for _, r in ipairs(compiled) do
    local ok = true
    for _, test in ipairs(r.tests) do
      if not test(event, ctx) then ok = false break end
    end
    if ok then return r.actions, r.rule_id end
  end
  return nil
end

--- notify, highlight: whether actions notify, and whether they highlight
-- (a highlight tweak whose value is not false).
function eval.outcome(actions)
  local notify, highlight = false, false
  for _, a in ipairs(actions or {}) do
    if a == "notify" then notify = true
    elseif type(a) == "table" and a.set_tweak == "highlight" and a.value ~= false then highlight = true end
  end
  return notify, notify and highlight
end

return eval
