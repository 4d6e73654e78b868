-- loom.sync.presence: the presence handler of a homeserver (hs.presence).
-- It records what users set (PUT /presence/{userId}/status, /sync's
-- set_presence) in the store (loom.store.presence) and runs the timer that
-- ages presence as Synapse does: an online user idle for idle_ms becomes
-- unavailable; a user who is not syncing, and neither synced nor was active
-- for offline_ms, becomes offline. Which users are syncing right now (and
-- when each last stopped) is kept here, in memory, per homeserver.
--
--   local p = presence.new(store, { idle_ms = 300000, offline_ms = 30000, log = fn })
--   p:set(user_id, "online", "at lunch")        -- PUT: state and status_msg
--   local done = p:syncing(user_id, "online")   -- a /sync starts (set_presence); done() when it ends
--   p:content(user_id)                          -- { presence, last_active_ago, currently_active, status_msg }
--   p:start()                                   -- on "server/started": the timer, for presence left from before
--   p:close()                                   -- stops the timer
--
-- A disabled handler (presence.new(store, { enabled = false })) records
-- nothing, runs no timer and answers offline for everyone.
local setmetatable, pairs, tostring, type = setmetatable, pairs, tostring, type
local math_type = math.type
local math_max, math_min = math.max, math.min
local uv = require "luv"
local core = require "loom.core"
local async = require "loom.async"

local _ENV = nil -- luacheck: ignore 211

local presence = {}
local methods = {}
local mt = { __name = "loom.sync.Presence", __index = methods }
presence.methods, presence.mt = methods, mt

presence.STATES = { online = true, unavailable = true, offline = true }
presence.IDLE_MS = 300000      -- Synapse's IDLE_TIMER: 5 minutes without activity -> unavailable
presence.OFFLINE_MS = 30000    -- Synapse's SYNC_ONLINE_TIMEOUT: 30 s after the last sync -> offline
-- last_active_ts is written at most this often while a user stays active
local ACTIVE_GRANULARITY = 60000
-- a user of another server with no news this long goes offline
presence.REMOTE_TIMEOUT_MS = 30 * 60 * 1000
-- at most this many users' presence is kept in memory
local ROWS_MAX = 10000

--- presence.new(store, opts) -> Presence. opts: enabled (default true),
-- idle_ms, offline_ms, now (a clock in ms, for tests), log(level, message),
-- is_local(user_id) (default: every user is local) and on_change(user_id,
-- row) (called after a local user's presence changed: federation sends it
-- on). Other servers' users are not aged by idle or sync timeouts (their
-- server says when they change); they go offline after
-- presence.REMOTE_TIMEOUT_MS without news.
function presence.new(store, opts)
  opts = opts or {}
  return setmetatable({ store = store, enabled = opts.enabled ~= false,
    is_local = opts.is_local, on_change = opts.on_change,
    idle_ms = opts.idle_ms or presence.IDLE_MS, offline_ms = opts.offline_ms or presence.OFFLINE_MS,
    now = opts.now or core.now_ms, log = opts.log,
    rows = {}, nrows = 0, -- user_id -> the stored presence (false: none), for users seen lately
    syncs = {},        -- user_id -> number of /sync requests in progress
    last_sync = {},    -- user_id -> when the user's last /sync ended (ms)
    closed = false }, mt)
end

-- How often the timer looks: often enough for the shorter timeout.
local function interval(self)
  return math_max(10, math_min(5000, math_min(self.idle_ms, self.offline_ms) // 4))
end

local function arm(self)
  if self.closed or not self.enabled or self.timer then return end
  local every = interval(self)
  local timer = uv.new_timer()
  self.timer = timer
  timer:start(every, every, function()
    if self.ticking then return end
    self.ticking = true
    async.spawn(function() return self:tick() end, nil, function(ok, err)
      self.ticking = false
      if not ok and self.log then self.log("error", "presence timer: " .. tostring(err)) end
    end)
  end)
  timer:unref()     -- the timer alone does not keep the loop alive
end

local function disarm(self)
  local timer = self.timer
  self.timer = nil
  if timer and not timer:is_closing() then timer:stop(); timer:close() end
end

-- The user's stored presence (nil: none), from memory when seen lately
-- (every write goes through this handler, which keeps the copy).
local function current(self, user_id)
  local row = self.rows[user_id]
  if row == nil then
    row = self.store:presence_of(user_id) or false
    self.nrows = self.nrows + 1
    if self.nrows > ROWS_MAX then self.rows, self.nrows = {}, 1 end   -- start over rather than grow
    self.rows[user_id] = row
  end
  return row or nil
end

-- Write a new presence when what clients see changes.
local function update(self, user_id, cur, state, status_msg, last_active, active)
  if cur and cur.state == state and cur.status_msg == status_msg and cur.currently_active == active then
    if last_active ~= cur.last_active_ts then
      self.rows[user_id] = nil
      self.store:touch_presence(user_id, last_active)
      cur.last_active_ts = last_active
      self.rows[user_id] = cur
    end
    return false
  end
  self.rows[user_id] = nil     -- read again should the write fail
  local pos = self.store:set_presence(user_id, { state = state, status_msg = status_msg,
    last_active_ts = last_active, currently_active = active })
  local row = { user_id = user_id, state = state, status_msg = status_msg, last_active_ts = last_active,
    currently_active = active, stream_id = pos }
  self.rows[user_id] = row
  if state ~= "offline" then arm(self) end
  if self.on_change and (not self.is_local or self.is_local(user_id)) then self.on_change(user_id, row) end
  return true
end

--- p:start(): arm the timer (a serving homeserver calls it on
-- "server/started", so presence left online by an earlier run ages too;
-- the timer stops itself when nobody is online or unavailable).
function methods:start()
  arm(self)
end

--- p:set(user_id, state, status_msg): an explicit change (PUT
-- /presence/{userId}/status). online marks the user active now; the status
-- message is replaced (nil clears it).
function methods:set(user_id, state, status_msg)
  if not self.enabled then return false end
  local cur = current(self, user_id)
  local now = self.now()
  local last_active = cur and cur.last_active_ts or 0
  if state == "online" then last_active = now end
  return update(self, user_id, cur, state, status_msg, last_active, state == "online")
end

--- p:syncing(user_id, set_presence) -> done(): a /sync of the user starts.
-- set_presence online marks the user online and active (keeping the status
-- message), unavailable marks them unavailable, offline leaves presence as
-- it is. The user counts as syncing (never timed out to offline) until
-- done() is called.
function methods:syncing(user_id, set_presence)
  if not self.enabled then return function() end end
  if set_presence ~= "offline" then
    local cur = current(self, user_id)
    local now = self.now()
    local status = cur and cur.status_msg or nil
    if set_presence == "online" then
      local last_active = now
      if cur and cur.state == "online" and cur.currently_active and now - cur.last_active_ts < ACTIVE_GRANULARITY
          and now - cur.last_active_ts < self.idle_ms // 2 then
        last_active = cur.last_active_ts    -- active a moment ago: no write
      end
      update(self, user_id, cur, "online", status, last_active, true)
    else
      update(self, user_id, cur, "unavailable", status, cur and cur.last_active_ts or 0, false)
    end
    self.syncs[user_id] = (self.syncs[user_id] or 0) + 1
    arm(self)
  end
  local done = false
  return function()
    if done or set_presence == "offline" then return end
    done = true
    local n = (self.syncs[user_id] or 1) - 1
    self.syncs[user_id] = n > 0 and n or nil
    self.last_sync[user_id] = self.now()
  end
end

--- p:tick(): one look at everyone online or unavailable (the timer's work,
-- inside a task). Returns the number of users changed.
function methods:tick()
  if self.closed or not self.enabled then return 0 end
  local now, changed, left = self.now(), 0, 0
  for _, p in pairs(self.store:presence_not_offline()) do
    if self.closed then return changed end
    local state, active = p.state, p.currently_active
    if self.is_local and not self.is_local(p.user_id) then
      if now - p.last_active_ts >= presence.REMOTE_TIMEOUT_MS then state, active = "offline", false end
    else
      if state == "online" and now - p.last_active_ts >= self.idle_ms then
        state, active = "unavailable", false
      end
      if not self.syncs[p.user_id] then
        local seen = math_max(self.last_sync[p.user_id] or 0, p.last_active_ts)
        if now - seen >= self.offline_ms then state, active = "offline", false end
      end
    end
    if state ~= p.state or active ~= p.currently_active then
      update(self, p.user_id, p, state, p.status_msg, p.last_active_ts, active)
      changed = changed + 1
    end
    -- offline users are read again when they come back
    if state == "offline" and not self.syncs[p.user_id] then self.rows[p.user_id] = nil end
    if state ~= "offline" then left = left + 1 end
  end
  for user_id, t in pairs(self.last_sync) do
    if not self.syncs[user_id] and now - t >= self.offline_ms then self.last_sync[user_id] = nil end
  end
  if left == 0 and not self.closed then disarm(self) end
  return changed
end

--- p:remote(user_id, content): the presence of another server's user as
-- its server sent it (an m.presence EDU's push entry: presence,
-- last_active_ago, currently_active, status_msg).
function methods:remote(user_id, c)
  if not self.enabled or self.closed or not presence.STATES[c.presence] then return false end
  local cur = current(self, user_id)
  local ago = math_type(c.last_active_ago) == "integer" and c.last_active_ago >= 0 and c.last_active_ago or nil
  local last_active = ago and (self.now() - ago) or (cur and cur.last_active_ts or 0)
  local msg = type(c.status_msg) == "string" and c.status_msg:sub(1, 1024) or nil
  return update(self, user_id, cur, c.presence, msg, last_active, c.currently_active == true)
end

--- p:content(user_id) -> the m.presence content of a user: { presence,
-- last_active_ago (when ever active), currently_active, status_msg (when
-- set) }; offline for a user without presence (and when disabled).
function methods:content(user_id, row)
  if not self.enabled then return { presence = "offline" } end
  local p = row or current(self, user_id)
  if not p then return { presence = "offline" } end
  return presence.format(p, self.now())
end

--- presence.format(row, now) -> m.presence content of a store row.
function presence.format(p, now)
  local c = { presence = p.state, currently_active = p.currently_active and true or false }
  if p.last_active_ts and p.last_active_ts > 0 then c.last_active_ago = math_max(0, now - p.last_active_ts) end
  if p.status_msg then c.status_msg = p.status_msg end
  return c
end

--- p:close(): stop the timer; later calls record nothing.
function methods:close()
  self.closed = true
  disarm(self)
end

return presence
