-- loom.sync.notifier: wakes long-polling /sync requests when something for
-- their user arrives. It listens to the store (store:subscribe) and wakes
-- only the waiters registered for the rooms or users of each commit. The
-- homeserver context makes one per server (hs.notifier) and closes it when
-- the server stops, so that waiting requests are answered at once.
--
--   local n = notifier.new(store)
--   local woken = n:wait(user_id, room_ids, timeout_ms)   -- inside a task (a request handler)
--   n:close()                                             -- every waiter returns false now
local setmetatable, pairs, ipairs, next, type, error = setmetatable, pairs, ipairs, next, type, error
local uv = require "luv"
local async = require "loom.async"

local _ENV = nil -- luacheck: ignore 211

local notifier = {}
local methods = {}
local mt = { __name = "loom.sync.Notifier", __index = methods }
notifier.methods, notifier.mt = methods, mt

--- notifier.new(store) -> Notifier, subscribed to the store's commits.
function notifier.new(store)
  local self = setmetatable({ by_room = {}, by_user = {}, all = {}, waiting = 0, closed = false,
                              woken_data = 0, woken_timeout = 0 }, mt)
  self.unsubscribe = store:subscribe(function(note) self:notify(note) end)
  return self
end

local function add(index, key, w)
  local set = index[key]
  if not set then set = {}; index[key] = set end
  set[w] = true
end

local function remove(index, key, w)
  local set = index[key]
  if set then
    set[w] = nil
    if next(set) == nil then index[key] = nil end
  end
end

-- Wake a waiter on the next loop turn (never inside the committing code),
-- with true (data) or false (closing). The waiters a commit wakes go in
-- one batch, woken from one timer.
local function fire(self, w, value)
  if w.fired then return end
  w.fired = true
  local batch = self.batch
  if not batch then
    batch = {}
    self.batch = batch
    local t = uv.new_timer()
    t:start(0, 0, function()
      t:close()
      self.batch = nil
      for i = 1, #batch, 2 do batch[i].wake(batch[i + 1]) end
    end)
  end
  batch[#batch + 1] = w
  batch[#batch + 1] = value
end

--- n:notify(note): a commit happened; note = { position, rooms =
-- {[room_id]=pos}, users = {[user_id]=pos}, receipts = {[room_id]=pos},
-- presence = {[user_id]=pos}, presence_rooms = {[room_id]=true} }
-- (receipts: the rooms whose receipts changed wake like rooms; a presence
-- change wakes the user and the rooms they are joined to).
function methods:notify(note)
  for _, rooms in ipairs { note.rooms or {}, note.receipts or {}, note.presence_rooms or {} } do
    for room_id in pairs(rooms) do
      local set = self.by_room[room_id]
      if set then for w in pairs(set) do fire(self, w, true) end end
    end
  end
  for _, users in ipairs { note.users or {}, note.presence or {} } do
    for user_id in pairs(users) do
      local set = self.by_user[user_id]
      if set then for w in pairs(set) do fire(self, w, true) end end
    end
  end
end

--- n:wait(user_id, room_ids, timeout_ms) -> woken
-- Waits (inside a task) until an event in one of room_ids or a membership
-- change of user_id is committed, or timeout_ms pass. Returns true when
-- woken by data, false on timeout or when the notifier is (or gets) closed.
-- n.waiting counts the waits in progress, n.woken_data and n.woken_timeout
-- those ended (for metrics).
function methods:wait(user_id, room_ids, timeout_ms)
  if type(timeout_ms) ~= "number" then error("notifier:wait: timeout_ms must be a number", 2) end
  if self.closed then return false end
  local w = {}
  local timer
  local result = async.wait(function(wake)
    w.wake = wake
    add(self.by_user, user_id, w)
    for _, r in ipairs(room_ids) do add(self.by_room, r, w) end
    self.all[w] = true
    self.waiting = self.waiting + 1
    timer = uv.new_timer()
    timer:start(timeout_ms, 0, function() w.fired = true; wake(false) end)
  end)
  if not timer:is_closing() then timer:stop(); timer:close() end
  remove(self.by_user, user_id, w)
  for _, r in ipairs(room_ids) do remove(self.by_room, r, w) end
  self.all[w] = nil
  self.waiting = self.waiting - 1
  if result then self.woken_data = self.woken_data + 1 else self.woken_timeout = self.woken_timeout + 1 end
  return result
end

--- n:close() -> the number of waiters woken
-- Wakes every waiter (their wait returns false on the next loop turn) and
-- unsubscribes from the store; later waits return false at once.
function methods:close()
  local n = 0
  if not self.closed then
    self.closed = true
    if self.unsubscribe then self.unsubscribe() end
  end
  for w in pairs(self.all) do
    if not w.fired then n = n + 1 end
    fire(self, w, false)
  end
  return n
end

return notifier
