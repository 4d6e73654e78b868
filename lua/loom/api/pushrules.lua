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

local type = type
local array = json.array
local error = error

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

return pushrules
