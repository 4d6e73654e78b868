-- loom.api.pushrules: the spec's predefined push rules ("Predefined rules" in
-- the Client-Server API, Push Notifications module) for one user, as the
-- JSON that GET /pushrules/ returns.
--
--   local pushrules = require "loom.api.pushrules"
--   local rules = pushrules.defaults("@alice:example.org")
--   -- rules.override[1].rule_id == ".m.rule.master"
--
-- Every rule has rule_id, default = true, enabled, actions; override and
-- underride rules have conditions, content rules a pattern. The user's ID
-- and localpart are substituted where the spec says so. Empty arrays carry
-- json.array_mt so they encode as [].
local json = require("loom.core").json

local type, ipairs = type, ipairs
local array = json.array
local error = error
local decode = json.decode

local _ENV = nil -- luacheck: ignore 211

local pushrules = {}

local function notify() return "notify" end
local function sound(value) return { set_tweak = "sound", value = value or "default" } end
local function highlight() return { set_tweak = "highlight" } end

local function match(key, pattern) return { kind = "event_match", key = key, pattern = pattern } end

local function rule(rule_id, conditions, actions, enabled)
  return {
    rule_id = rule_id,
    default = true,
    enabled = enabled ~= false,
    conditions = array(conditions),
    actions = array(actions),
  }
end

--- The predefined rule set for a user: { override, content, room, sender,
-- underride }, each an array in the spec's order.
function pushrules.defaults(user_id)
  if type(user_id) ~= "string" then error("pushrules.defaults: user_id must be a string", 2) end
  local localpart = user_id:match("^@([^:]+):") or user_id:sub(2)
  local override = {
    rule(".m.rule.master", {}, {}, false),
    rule(".m.rule.suppress_notices", { match("content.msgtype", "m.notice") }, {}),
    rule(".m.rule.invite_for_me", {
      match("type", "m.room.member"),
      match("content.membership", "invite"),
      match("state_key", user_id),
    }, { notify(), sound() }),
    rule(".m.rule.member_event", { match("type", "m.room.member") }, {}),
    rule(".m.rule.is_user_mention", {
      { kind = "event_property_contains", key = "content.m\\.mentions.user_ids", value = user_id },
    }, { notify(), sound(), highlight() }),
    rule(".m.rule.contains_display_name", { { kind = "contains_display_name" } },
      { notify(), sound(), highlight() }),
    rule(".m.rule.is_room_mention", {
      { kind = "event_property_is", key = "content.m\\.mentions.room", value = true },
      { kind = "sender_notification_permission", key = "room" },
    }, { notify(), highlight() }),
    rule(".m.rule.roomnotif", {
      { kind = "sender_notification_permission", key = "room" },
      match("content.body", "@room"),
    }, { notify(), highlight() }),
    rule(".m.rule.tombstone", { match("type", "m.room.tombstone"), match("state_key", "") },
      { notify(), highlight() }),
    rule(".m.rule.reaction", { match("type", "m.reaction") }, {}),
    rule(".m.rule.room.server_acl", { match("type", "m.room.server_acl"), match("state_key", "") }, {}),
    rule(".m.rule.suppress_edits", {
      { kind = "event_property_is", key = "content.m\\.relates_to.rel_type", value = "m.replace" },
    }, {}),
  }
  local content = {
    {
      rule_id = ".m.rule.contains_user_name",
      default = true,
      enabled = true,
      pattern = localpart,
      actions = array { notify(), sound(), highlight() },
    },
  }
  local underride = {
    rule(".m.rule.call", { match("type", "m.call.invite") }, { notify(), sound("ring") }),
    rule(".m.rule.encrypted_room_one_to_one", {
      { kind = "room_member_count", is = "2" },
      match("type", "m.room.encrypted"),
    }, { notify(), sound() }),
    rule(".m.rule.room_one_to_one", {
      { kind = "room_member_count", is = "2" },
      match("type", "m.room.message"),
    }, { notify(), sound() }),
    rule(".m.rule.message", { match("type", "m.room.message") }, { notify() }),
    rule(".m.rule.encrypted", { match("type", "m.room.encrypted") }, { notify() }),
  }
  return {
    override = array(override),
    content = array(content),
    room = array(),
    sender = array(),
    underride = array(underride),
  }
end

pushrules.KINDS = { "override", "content", "room", "sender", "underride" }

local function own_rule(kind, row)
  local r = { rule_id = row.rule_id, default = false, enabled = row.enabled ~= 0, actions = decode(row.actions) }
  if kind == "override" or kind == "underride" then
    r.conditions = row.conditions and decode(row.conditions) or array()
  elseif kind == "content" then
    r.pattern = row.pattern
  end
  return r
end

--- A user's rule set: the predefined rules with the user's stored rows
-- (store:push_rule_rows) applied. The user's own rules of a kind come
-- before the predefined ones of that kind, except .m.rule.master, which
-- stays first (as in Synapse); a row for a predefined rule changes its
-- enabled flag and/or actions.
function pushrules.merge(user_id, rows)
  local base = pushrules.defaults(user_id)
  local own, changed = {}, {}
  for _, kind in ipairs(pushrules.KINDS) do own[kind] = {} end
  for _, row in ipairs(rows) do
    if row.is_default == 1 then
      changed[row.kind .. "\0" .. row.rule_id] = row
    elseif own[row.kind] then
      local list = own[row.kind]
      list[#list + 1] = own_rule(row.kind, row)
    end
  end
  local out = {}
  for _, kind in ipairs(pushrules.KINDS) do
    local list = array()
    local rest = base[kind]
    local first = 1
    if kind == "override" and rest[1] and rest[1].rule_id == ".m.rule.master" then
      list[1] = rest[1]
      first = 2
    end
    for _, r in ipairs(own[kind]) do list[#list + 1] = r end
    for i = first, #rest do list[#list + 1] = rest[i] end
    for _, r in ipairs(list) do
      local c = r.default and changed[kind .. "\0" .. r.rule_id]
      if c then
        if c.enabled ~= nil then r.enabled = c.enabled ~= 0 end
        if c.actions ~= nil then r.actions = decode(c.actions) end
      end
    end
    out[kind] = list
  end
  return out
end

return pushrules
