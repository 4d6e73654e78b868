-- loom.sync.typing: who is typing in which room, kept in memory per
-- homeserver (hs.typing), each entry expiring on time. Every change (and
-- every expiry) takes the next typing position and wakes the room's waiting
-- /sync requests through the notifier; /sync sends a room's m.typing event
-- when the room changed after the token's typing position.
--
--   local tracker = typing.new(notifier)
--   tracker:set(room_id, user_id, true, 30000)   -- or false to stop
--   tracker:users(room_id)                        -- { user_id, ... } sorted
--   tracker:changed_since(room_id, pos)           -- true when changed after pos
--   tracker:rooms_changed_since(pos)              -- { room_id, ... } changed after pos
--   tracker.position                              -- the current typing position
--   tracker.on_change = function(room_id) end     -- called after each change (application services)
--   tracker:close()
local setmetatable, pairs, next, pcall = setmetatable, pairs, next, pcall
local table_sort = table.sort
local uv = require "luv"
local core = require "loom.core"
local changecache = require "loom.store.changecache"

local _ENV = nil -- luacheck: ignore 211

local typing = {}
local methods = {}
local mt = { __name = "loom.sync.Typing", __index = methods }
typing.methods, typing.mt = methods, mt

--- The longest a user is marked as typing (ms); longer timeouts are capped.
typing.MAX_TIMEOUT = 120000

--- typing.new(notifier[, now]) -> Typing (now: a clock in ms, for tests).
function typing.new(notifier, now)
  now = now or core.now_ms
  -- positions start at the clock (ms), so a restarted server is ahead of
  -- every token it handed out before (a token ahead of it is invalid)
  local position = now()
  return setmetatable({ notifier = notifier, now = now, position = position,
                        rooms = {}, closed = false, changes = changecache.new(position) }, mt)
end

-- A room changed: the next position, and wake its waiting syncs.
local function changed(self, room_id, room)
  self.position = self.position + 1
  room.changed = self.position
  self.changes:entity_changed(room_id, self.position)
  if self.notifier and not self.notifier.closed then self.notifier:notify { rooms = { [room_id] = true } } end
  if self.on_change then self.on_change(room_id) end
end

-- Drop expired entries (waking the rooms they leave), then arm the timer
-- for the next expiry.
local function expire(self)
  if self.closed then return end
  local t = self.now()
  local soonest
  for room_id, room in pairs(self.rooms) do
    local any = false
    for user, until_ms in pairs(room.users) do
      if until_ms <= t then
        room.users[user] = nil; any = true
      elseif not soonest or until_ms < soonest then
        soonest = until_ms
      end
    end
    if any then changed(self, room_id, room) end
  end
  if soonest then
    if not self.timer then self.timer = uv.new_timer() end
    self.timer:start(soonest - t, 0, function() pcall(expire, self) end)
  elseif self.timer then
    self.timer:stop()
  end
end

--- t:set(room_id, user_id, is_typing, timeout_ms): mark or unmark a user.
-- Marking again extends the timeout (no change, no wake-up); unmarking a
-- user who is not typing changes nothing.
function methods:set(room_id, user_id, is_typing, timeout_ms)
  local room = self.rooms[room_id]
  if not room then room = { users = {}, changed = 0 }; self.rooms[room_id] = room end
  local was = room.users[user_id] ~= nil
  if is_typing then
    if timeout_ms > typing.MAX_TIMEOUT then timeout_ms = typing.MAX_TIMEOUT end
    room.users[user_id] = self.now() + timeout_ms
    if not was then changed(self, room_id, room) end
  elseif was then
    room.users[user_id] = nil
    changed(self, room_id, room)
  end
  expire(self)
end

--- t:users(room_id) -> { user_id, ... } (sorted) of those typing now.
function methods:users(room_id)
  local out = {}
  local room = self.rooms[room_id]
  if room then
    local t = self.now()
    for user, until_ms in pairs(room.users) do
      if until_ms > t then out[#out + 1] = user end
    end
  end
  table_sort(out)
  return out
end

--- t:changed_since(room_id, pos) -> did the room's typing set change after
-- pos? A position from before a restart (ahead of ours) counts as changed.
function methods:changed_since(room_id, pos)
  local room = self.rooms[room_id]
  if pos > self.position then return room ~= nil and next(room.users) ~= nil end
  return room ~= nil and room.changed > pos
end

--- t:rooms_changed_since(pos) -> the rooms whose typing set changed after
-- pos (nil for a position ahead of ours: every room may have).
function methods:rooms_changed_since(pos)
  if pos > self.position then return nil end
  return self.changes:changed_after(pos)
end

--- t:close(): stop the expiry timer.
function methods:close()
  self.closed = true
  if self.timer then
    if not self.timer:is_closing() then self.timer:stop(); self.timer:close() end
    self.timer = nil
  end
end

return typing
