-- loom.push.notify: runs each new event through the push rules of the
-- room's local members and records who it notifies (loom.store.push_actions),
-- which gives /sync's unread_notifications. The whole room is evaluated in
-- one call of loom.core.push (the C evaluator; loom.push.eval is its
-- reference).
--
--   local push_notify = require "loom.push.notify"
--   hs.push = push_notify.new(hs)
--   server:hook("room/event/persisted", function(ev, c) return hs.push:event_persisted(ev, c) end)
--   hs.push:invalidate(user_id)        -- after a push-rule change
--
-- Each local user joined to the room (and the target of an invite), except
-- the sender, is evaluated with the room's current member count, the
-- user's display name in the room and the sender's power level. Cached:
-- each user's compiled rule set (dropped by invalidate), and per room its
-- joined members, display names and the local members' rule sets (dropped
-- when a membership event of the room is persisted). The rows given to
-- store:add_push_actions are { user_id, highlight, actions }: actions are
-- those of the rule that matched (with their tweaks, for pushers).
local pushrules = require "loom.api.pushrules"
local version_mod = require "loom.room.version"
local core = require "loom.core"

local setmetatable, ipairs, pairs, type = setmetatable, ipairs, pairs, type
local huge = math.huge
local new_evaluator = core.push.new

local _ENV = nil -- luacheck: ignore 211

local notify = {}
local methods = {}
local mt = { __name = "loom.push.Notifier", __index = methods }

function notify.new(hs)
  return setmetatable({ hs = hs, cache = {}, rooms = {}, evaluator = new_evaluator(),
    suffix = ":" .. hs.server_name }, mt)
end

--- Forget a user's compiled rules (their rules changed).
function methods:invalidate(user_id)
  self.cache[user_id] = nil
  for _, room in pairs(self.rooms) do
    local i = room.pos[user_id]
    if i then room.rules[i] = nil room.stale = true end
  end
end

--- Forget a room's members (a membership event of the room was persisted).
function methods:invalidate_room(room_id) self.rooms[room_id] = nil end

--- A user's compiled rule set (a loom.PushRules, cached).
function methods:rules(user_id)
  local c = self.cache[user_id]
  if not c then
    c = self.evaluator:compile(pushrules.merge(user_id, self.hs.store:push_rule_rows(user_id)))
    self.cache[user_id] = c
  end
  return c
end

-- The room's cached evaluation input: { rules, names, users, pos, count,
-- member_count } over its local joined members.
function methods:room(room_id)
  local room = self.rooms[room_id]
  if not room then
    local suffix, n = self.suffix, 0
    local members = self.hs.store:current_member_names(room_id)
    room = { rules = {}, names = {}, users = {}, pos = {}, member_count = #members, stale = true }
    for _, m in ipairs(members) do
      local user = m[1]
      if user:sub(-#suffix) == suffix then
        n = n + 1
        room.users[n], room.names[n], room.pos[user] = user, m[2], n
      end
    end
    room.count = n
    self.rooms[room_id] = room
  end
  if room.stale then
    local rules, users = room.rules, room.users
    for i = 1, room.count do
      if not rules[i] then rules[i] = self:rules(users[i]) end
    end
    room.stale = false
  end
  return room
end

local function content_of(ev)
  return ev and type(ev.content) == "table" and ev.content or {}
end

--- Evaluate one persisted event (a room/event/persisted observer).
function methods:event_persisted(event, context)
  local hs = self.hs
  local room_id, so = event.room_id, context and context.stream_ordering
  if type(so) ~= "number" or type(room_id) ~= "string" then return end
  local member_event = event.type == "m.room.member" and type(event.state_key) == "string"
  if member_event then self:invalidate_room(room_id) end
  local room = self:room(room_id)
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
  room.sender_power, room.notifications = sender_power, pl.notifications
  room.skip = room.pos[event.sender] or 0
  local rows = self.evaluator:evaluate(event, room)
  room.notifications = nil
  -- the target of an invite is not a member yet
  local target = event.state_key
  if member_event and content_of(event).membership == "invite" and target ~= event.sender
      and target:sub(-#self.suffix) == self.suffix and not room.pos[target] then
    for _, r in ipairs(self.evaluator:evaluate(event, { rules = { self:rules(target) },
        names = { content_of(event).displayname }, users = { target }, count = 1,
        member_count = room.member_count, sender_power = sender_power, notifications = pl.notifications })) do
      rows[#rows + 1] = r
    end
  end
  if #rows > 0 then
    hs.store:add_push_actions(room_id, so, event.event_id, rows)
    -- to the users' push gateways (queued; loom.push.pusher)
    if hs.pushers then hs.pushers:notified(event, rows, so) end
  end
end

notify.methods = methods
notify.mt = mt
return notify
