-- loom.push.notify: runs each new event through the push rules of the
-- room's local members and records who it notifies (loom.store.push_actions),
-- which gives /sync's unread_notifications. Compiled rule sets are cached per
-- user and dropped when the user changes a rule.
--
--   local push_notify = require "loom.push.notify"
--   hs.push = push_notify.new(hs)
--   server:hook("room/event/persisted", function(ev, c) return hs.push:event_persisted(ev, c) end)
--   hs.push:invalidate(user_id)        -- after a push-rule change
--
-- Each local user joined to the room (and the target of an invite), except
-- the sender, is evaluated with the room's current member count, the
-- user's display name in the room and the sender's power level. Correctness
-- first, in Lua; the issue's C evaluator for whole rooms is to follow.
local pushrules = require "loom.api.pushrules"
local eval = require "loom.push.eval"
local version_mod = require "loom.room.version"

local setmetatable, ipairs, type = setmetatable, ipairs, type
local huge = math.huge

local _ENV = nil -- luacheck: ignore 211

local notify = {}
local methods = {}
local mt = { __name = "loom.push.Notifier", __index = methods }

function notify.new(hs)
  return setmetatable({ hs = hs, cache = {}, suffix = ":" .. hs.server_name }, mt)
end

--- Forget a user's compiled rules (their rules changed).
function methods:invalidate(user_id) self.cache[user_id] = nil end

--- A user's compiled rule set (cached).
function methods:rules(user_id)
  local c = self.cache[user_id]
  if not c then
    c = eval.compile(pushrules.merge(user_id, self.hs.store:push_rule_rows(user_id)))
    self.cache[user_id] = c
  end
  return c
end

local function content_of(ev)
  return ev and type(ev.content) == "table" and ev.content or {}
end

--- Evaluate one persisted event (a room/event/persisted observer).
function methods:event_persisted(event, context)
  local hs = self.hs
  local room_id, so = event.room_id, context and context.stream_ordering
  if type(so) ~= "number" or type(room_id) ~= "string" then return end
  local members = hs.store:current_members(room_id, "join")
  local targets = {}
  for _, u in ipairs(members) do targets[#targets + 1] = u end
  if event.type == "m.room.member" and type(event.state_key) == "string"
      and content_of(event).membership == "invite" then
    targets[#targets + 1] = event.state_key
  end
  local pl = content_of(hs.rooms:state_event(room_id, "m.room.power_levels", ""))
  local users = type(pl.users) == "table" and pl.users or {}
  local sender_power = users[event.sender]
  if type(sender_power) ~= "number" then sender_power = pl.users_default end
  if type(sender_power) ~= "number" then sender_power = 0 end
  -- room versions 12+: the creators have infinite power
  local create = hs.rooms:state_event(room_id, "m.room.create", "")
  local cc = content_of(create)
  local v = version_mod.get(type(cc.room_version) == "string" and cc.room_version or "1")
  if v and v.creators_have_infinite_power and create then
    local extra = type(cc.additional_creators) == "table" and cc.additional_creators or {}
    if create.sender == event.sender then sender_power = huge end
    for _, c in ipairs(extra) do if c == event.sender then sender_power = huge end end
  end
  local rows = {}
  local suffix = self.suffix
  for _, user in ipairs(targets) do
    if user ~= event.sender and user:sub(-#suffix) == suffix then
      local name = content_of(hs.rooms:state_event(room_id, "m.room.member", user)).displayname
      local actions = eval.run(self:rules(user), event, {
        user_id = user, display_name = name, member_count = #members,
        sender_power = sender_power, notifications = pl.notifications,
      })
      local n, h = eval.outcome(actions)
      if n then rows[#rows + 1] = { user, h, actions } end
    end
  end
  if #rows > 0 then hs.store:add_push_actions(room_id, so, event.event_id, rows) end
  -- to the users' push gateways (queued; loom.push.pusher)
  if #rows > 0 and hs.pushers then hs.pushers:notified(event, rows) end
end

notify.methods = methods
notify.mt = mt
return notify
