-- loom.sync.notifier: wakes long-polling /sync requests when something for
-- their user arrives. It listens to the store (store:subscribe) and wakes
-- only the waiters registered for the rooms or users of each commit.
--
--   local n = notifier.new(store)
--   local woken = n:wait(user_id, room_ids, timeout_ms)   -- inside a handler
local uv = require "luv"
local async = require "loom.async"

local pairs, ipairs, next = pairs, ipairs, next
local setmetatable = setmetatable

local _ENV = nil -- luacheck: ignore 211

local _M = {}
local methods = {}
local mt = { __name = "loom.sync.Notifier", __index = methods }

function _M.new(store)
  local self = setmetatable({ by_room = {}, by_user = {}, waiting = 0 }, mt)
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

-- Wake a waiter on the next loop turn (never inside the committing code).
local function fire(w)
  if w.fired then return end
  w.fired = true
  local t = uv.new_timer()
  t:start(0, 0, function() t:close(); w.wake(true) end)
end

--- A commit happened: note = { position, rooms = {[room_id]=pos}, users = {[user_id]=pos} }.
function methods:notify(note)
  for room_id in pairs(note.rooms or {}) do
    local set = self.by_room[room_id]
    if set then for w in pairs(set) do fire(w) end end
  end
  for user_id in pairs(note.users or {}) do
    local set = self.by_user[user_id]
    if set then for w in pairs(set) do fire(w) end end
  end
end

--- Wait (inside a request handler) until an event in one of room_ids or a
-- membership change of user_id is committed, or timeout_ms pass. Returns
-- true when woken by data, false on timeout.
function methods:wait(user_id, room_ids, timeout_ms)
  local w = {}
  local timer
  local result = async.wait(function(wake)
    w.wake = wake
    add(self.by_user, user_id, w)
    for _, r in ipairs(room_ids) do add(self.by_room, r, w) end
    self.waiting = self.waiting + 1
    timer = uv.new_timer()
    timer:start(timeout_ms, 0, function() w.fired = true; wake(false) end)
  end)
  if not timer:is_closing() then timer:stop(); timer:close() end
  remove(self.by_user, user_id, w)
  for _, r in ipairs(room_ids) do remove(self.by_room, r, w) end
  self.waiting = self.waiting - 1
  return result
end

return _M
