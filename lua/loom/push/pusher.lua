-- loom.push.pusher: delivers notifications to the users' http pushers
-- (Push Gateway API, POST /_matrix/push/v1/notify).
--
--   local pusher = require "loom.push.pusher"
--   hs.pushers = pusher.new(hs, config.push)
--   hs.pushers:notified(event, rows, stream_ordering)  -- rows as given to store:add_push_actions
--   hs.pushers:resume()                -- at start: what each pusher was not sent yet
--   hs.pushers:receipt_moved(user_id)  -- after a read receipt: the new badge count
--   hs.pushers:forget(user_id, app_id, pushkey)
--   hs.pushers:close()
--   local ok, why = pusher.check_url(url)     -- a pusher's data.url
--
-- Each pusher (user, app_id, pushkey) has its own queue: notifications go out
-- in order, one request in flight per pusher. A request that fails (no
-- answer, or a status other than 2xx) is tried again after retry_base_ms,
-- doubling each time up to retry_max_ms; a notification that has failed for
-- give_up_ms is dropped (as Synapse does). A pushkey the gateway lists in
-- `rejected` loses its pusher. Requests go through their own loom.http.client
-- with the address guard on: loopback and private addresses are refused
-- unless listed in allow_ips. Nothing here waits: notified() only queues.
--
-- A notification delivered (or given up) moves the pusher's position
-- (store:pusher_delivered, schema 52); at start resume() queues, for each
-- http pusher, the notifications after its position (schema 51) made within
-- give_up_ms, at most max_queue: a restart loses none (one delivered just
-- before a crash, and not yet recorded, may go twice).
local core = require "loom.core"
local uv = require "luv"
local http_client = require "loom.http.client"

local setmetatable, ipairs, pairs, type, tostring, tonumber, xpcall, pcall = setmetatable, ipairs, pairs, type,
  tostring, tonumber, xpcall, pcall
local math_min = math.min
local table_remove, table_concat = table.remove, table.concat
local traceback = debug.traceback
local json = core.json

local _ENV = nil -- luacheck: ignore 211

local pusher = {}
local methods = {}
local mt = { __name = "loom.push.Pusher", __index = methods }

pusher.PATH = "/_matrix/push/v1/notify"
pusher.defaults = {
  retry_base_ms = 1000,          -- first retry delay (Synapse: 1 s)
  retry_max_ms = 3600000,        -- longest delay (Synapse: 1 h)
  give_up_ms = 86400000,         -- drop a notification failing this long (Synapse: 1 day)
  timeout_ms = 30000,            -- per request
  max_queue = 1000,              -- notifications waiting per pusher; the oldest go first
}

--- Parse a pusher URL: { tls, host, port, path (with the query) } or nil,
-- why. The scheme must be http or https and the path /_matrix/push/v1/notify.
function pusher.parse_url(url)
  if type(url) ~= "string" then return nil, "'url' required in data for HTTP pusher" end
  local scheme, authority, rest = url:match("^([%a][%w+.-]*)://([^/?#]*)(.*)$")
  if not scheme then return nil, "'url' must be an absolute http(s) URL" end
  scheme = scheme:lower()
  if scheme ~= "http" and scheme ~= "https" then return nil, "'url' must be an http or https URL" end
  local path, query = rest:match("^([^?#]*)(%??[^#]*)")
  if path ~= pusher.PATH then return nil, "'url' must have a path of '" .. pusher.PATH .. "'" end
  if authority:find("@", 1, true) then return nil, "'url' may not carry user information" end
  local host, port = authority:match("^%[([%x:.]+)%]:?(%d*)$")
  if host then host = "[" .. host .. "]" else host, port = authority:match("^([%w.-]+):?(%d*)$") end
  if not host or host == "" then return nil, "'url' has no valid host" end
  local p = port ~= "" and tonumber(port) or (scheme == "https" and 443 or 80)
  if not p or p < 1 or p > 65535 then return nil, "'url' has a bad port" end
  return { tls = scheme == "https", host = host, port = p, path = path .. query,
    host_header = authority }
end

--- true, or nil and why a data.url is refused.
function pusher.check_url(url)
  local u, why = pusher.parse_url(url)
  if not u then return nil, why end
  return true
end

--- A sender for hs (opts: config.push: allow_ips, verify_certificates and
-- the keys of pusher.defaults).
function pusher.new(hs, opts)
  opts = opts or {}
  -- badges: the last count queued per pusher
  local self = setmetatable({ hs = hs, queues = {}, badges = {}, closed = false }, mt)
  for k, v in pairs(pusher.defaults) do self[k] = opts[k] or v end
  local server = hs.server
  self.log = function(level, fmt, ...) server:log(level, fmt, ...) end
  self.http = opts.http or http_client.new { allow_ips = opts.allow_ips,
    verify = opts.verify_certificates ~= false, user_agent = "loom",
    log = function(level, message) server:log(level, "%s", message) end }
  return self
end

local function key_of(user_id, app_id, pushkey)
  return table_concat({ user_id, app_id, pushkey }, "\0")
end

local function content_of(ev)
  return type(ev) == "table" and type(ev.content) == "table" and ev.content or {}
end

-- The tweaks of an action list ({ set_tweak = name, value = v }; no value: true).
local function tweaks_of(actions)
  local t = {}
  for _, a in ipairs(actions) do
    if type(a) == "table" and type(a.set_tweak) == "string" then
      local v = a.value
      if v == nil then v = true end
      t[a.set_tweak] = v
    end
  end
  return t
end

local function has_notify(actions)
  for _, a in ipairs(actions) do if a == "notify" then return true end end
  return false
end

-- The badge: the user's pending invites plus the joined rooms with unread
-- notifications (Synapse's count grouped by room).
local function badge(store, user_id)
  local n = #store:rooms_for_user(user_id, "invite")
  local unread = store:unread_counts(user_id)
  for _, room_id in ipairs(store:rooms_for_user(user_id, "join")) do
    local u = unread[room_id]
    if u and u[1] > 0 then n = n + 1 end
  end
  return n
end

-- What a full-format notification says of the event (same for every user).
local function event_context(hs, event)
  local room_id = event.room_id
  local ctx = { room_name = content_of(hs.rooms:state_event(room_id, "m.room.name", "")).name,
    room_alias = content_of(hs.rooms:state_event(room_id, "m.room.canonical_alias", "")).alias,
    sender_display_name = content_of(hs.rooms:state_event(room_id, "m.room.member", event.sender)).displayname }
  for k, v in pairs(ctx) do if type(v) ~= "string" or v == "" then ctx[k] = nil end end
  return ctx
end

local function notification_body(p, event, ctx, tweaks, unread, user_id)
  local data = json.decode(p.data) or {}
  data.url = nil
  local prio = (event.type == "m.room.encrypted" or tweaks.highlight or tweaks.sound) and "high" or "low"
  local device = { app_id = p.app_id, pushkey = p.pushkey, pushkey_ts = p.pushkey_ts // 1000,
    data = data }
  local n = { event_id = event.event_id, room_id = event.room_id, prio = prio, counts = { unread = unread },
    devices = json.array { device } }
  if data.format ~= "event_id_only" then
    device.tweaks = tweaks
    n.type, n.sender = event.type, event.sender
    n.content = event.content
    n.room_name, n.room_alias, n.sender_display_name = ctx.room_name, ctx.room_alias, ctx.sender_display_name
    if event.type == "m.room.member" and type(event.state_key) == "string" then
      n.membership = content_of(event).membership
      n.user_is_target = event.state_key == user_id
    end
  end
  return json.encode({ notification = n }, { floats = true })
end

--- Queue the notifications of a persisted event for the users' http
-- pushers: rows = { { user_id, highlight, actions }, ... } (the rows of
-- store:add_push_actions; those whose actions lack "notify" are skipped).
function methods:notified(event, rows, stream_ordering)
  if self.closed then return end
  local ok, err = xpcall(function()
    local hs = self.hs
    local store = hs.store
    local users, actions_of = {}, {}
    for _, r in ipairs(rows) do
      local actions = type(r[3]) == "table" and r[3] or { "notify", r[2] and { set_tweak = "highlight" } or nil }
      if has_notify(actions) then
        users[#users + 1] = r[1]
        actions_of[r[1]] = actions
      end
    end
    if #users == 0 then return end
    local by_user = store:pushers_of_users(users)
    local ctx
    for _, user_id in ipairs(users) do
      local list = by_user[user_id]
      if list then
        ctx = ctx or event_context(hs, event)
        local unread = badge(store, user_id)
        local tweaks = tweaks_of(actions_of[user_id])
        for _, p in ipairs(list) do
          if p.kind == "http" then
            local body = notification_body(p, event, ctx, tweaks, unread, user_id)
            if body then self:enqueue(p, body, unread, stream_ordering) end
          end
        end
      end
    end
  end, traceback)
  if not ok then self.log("error", "push: cannot queue notifications of %s: %s", tostring(event.event_id), err) end
end

--- A receipt of user_id moved: when the badge count changed since the last
-- push to a pusher of theirs, send it the new count alone (a notification
-- with only counts and devices), as Synapse does after a read receipt.
function methods:receipt_moved(user_id)
  if self.closed then return end
  local ok, err = xpcall(function()
    local list = self.hs.store:user_pushers(user_id)
    if #list == 0 then return end
    local unread = badge(self.hs.store, user_id)
    for _, p in ipairs(list) do
      local key = key_of(p.user_id, p.app_id, p.pushkey)
      if p.kind == "http" and self.badges[key] ~= unread then
        local data = json.decode(p.data) or {}
        data.url = nil
        local body = json.encode({ notification = { counts = { unread = unread }, devices = json.array {
          { app_id = p.app_id, pushkey = p.pushkey, pushkey_ts = p.pushkey_ts // 1000, data = data } } } },
          { floats = true })
        if body then self:enqueue(p, body, unread) end
      end
    end
  end, traceback)
  if not ok then self.log("error", "push: cannot send the badge of %s: %s", tostring(user_id), err) end
end

local pump

--- Queue one request body for pusher row p (unread: the badge it carries;
-- stream_ordering: the notification's, nil for a badge alone).
function methods:enqueue(p, body, unread, stream_ordering)
  local key = key_of(p.user_id, p.app_id, p.pushkey)
  self.badges[key] = unread
  local q = self.queues[key]
  if not q then
    q = { key = key, user_id = p.user_id, app_id = p.app_id, pushkey = p.pushkey, items = {}, busy = false }
    self.queues[key] = q
  end
  -- full: the oldest waiting one goes (never the one in flight)
  if #q.items >= self.max_queue then table_remove(q.items, q.busy and 2 or 1) end
  q.items[#q.items + 1] = { body = body, so = stream_ordering }
  pump(self, q)
end

local function drop_queue(self, q)
  q.dropped = true
  if q.timer then q.timer:close(); q.timer = nil end
  if self.queues[q.key] == q then self.queues[q.key] = nil end
end

--- Drop what is queued for a pusher (it was deleted).
function methods:forget(user_id, app_id, pushkey)
  local key = key_of(user_id, app_id, pushkey)
  self.badges[key] = nil
  local q = self.queues[key]
  if q then drop_queue(self, q) end
end

local function guarded(self, f)
  return function(...)
    local ok, err = xpcall(f, traceback, ...)
    if not ok then self.log("error", "push: %s", tostring(err)) end
  end
end

-- The gateway's answer to one request: delivered (true) or not, and the
-- pushkeys it rejected.
local function outcome(err, res)
  if err then return false, nil, err end
  if res.status < 200 or res.status >= 300 then return false, nil, "status " .. tostring(res.status) end
  local ok, body = pcall(json.decode, res.body or "")
  local rejected = ok and type(body) == "table" and type(body.rejected) == "table" and body.rejected or nil
  return true, rejected
end

-- An item of q was delivered or given up: the pusher's position moves.
local function went(self, q, item)
  if item and item.so then self.hs.store:pusher_delivered(q.user_id, q.app_id, q.pushkey, item.so) end
end

local function retry_later(self, q, why)
  local now = uv.now()
  q.failing_since = q.failing_since or now
  if now - q.failing_since >= self.give_up_ms then
    self.log("warn", "push: giving up a notification to %s (pushkey %s): %s", q.user_id, q.pushkey, why)
    went(self, q, table_remove(q.items, 1))
    q.failing_since, q.delay = nil, nil
    return pump(self, q)
  end
  local delay = q.delay or self.retry_base_ms
  q.delay = math_min(delay * 2, self.retry_max_ms)
  self.log("warn", "push to %s (pushkey %s) failed: %s; again in %d ms", q.user_id, q.pushkey, why, delay)
  q.timer = q.timer or uv.new_timer()
  q.waiting = true
  q.timer:start(delay, 0, guarded(self, function() q.waiting = false; pump(self, q) end))
end

function pump(self, q)
  if q.busy or q.dropped or self.closed then return end
  if q.waiting then return end   -- a retry is due later
  local item = q.items[1]
  if not item then return drop_queue(self, q) end
  local p = self.hs.store:pusher(q.user_id, q.app_id, q.pushkey)
  local u = p and pusher.parse_url((json.decode(p.data) or {}).url)
  if not u then return drop_queue(self, q) end
  q.busy = true
  self.http:request({ method = "POST", host = (u.host:gsub("^%[(.*)%]$", "%1")), port = u.port, tls = u.tls,
    host_header = u.host_header, path = u.path, body = item.body, timeout = self.timeout_ms,
    headers = { ["Content-Type"] = "application/json" } }, guarded(self, function(err, res)
      q.busy = false
      if q.dropped or self.closed then return end
      local delivered, rejected, why = outcome(err, res)
      if not delivered then return retry_later(self, q, why) end
      went(self, q, table_remove(q.items, 1))
      q.failing_since, q.delay = nil, nil
      for _, pk in ipairs(rejected or {}) do
        if pk == q.pushkey then
          self.log("info", "push: the gateway rejected pushkey %s of %s: pusher removed", q.pushkey, q.user_id)
          self.hs.store:delete_pusher(q.user_id, q.app_id, q.pushkey)
          self.badges[q.key] = nil
          return drop_queue(self, q)
        end
      end
      pump(self, q)
    end))
end

--- Queue, for each http pusher, the notifications after its position made
-- within give_up_ms (at most max_queue, the newest), with today's badge.
function methods:resume()
  if self.closed then return end
  local ok, err = xpcall(function()
    local hs = self.hs
    local store = hs.store
    local since = core.now_ms() - self.give_up_ms
    local n = 0
    for _, p in ipairs(store:pushers_to_resume()) do
      local rows = store:notifications_after(p.user_id, p.last_stream_ordering, since, 1000000000)
      local first = #rows - self.max_queue + 1
      if first < 1 then first = 1 end
      local unread = #rows > 0 and badge(store, p.user_id)
      for i = first, #rows do
        local row = rows[i]
        local event = store:event(row.event_id)
        if event and has_notify(row.actions) then
          local body = notification_body(p, event, event_context(hs, event), tweaks_of(row.actions), unread,
            p.user_id)
          if body then
            self:enqueue(p, body, unread, row.stream_ordering)
            n = n + 1
          end
        end
      end
    end
    if n > 0 then self.log("info", "push: %d notifications not sent before the restart queued again", n) end
  end, traceback)
  if not ok then self.log("error", "push: cannot resume the pushers: %s", err) end
end

--- The number of notifications waiting (all pushers).
function methods:pending()
  local n = 0
  for _, q in pairs(self.queues) do n = n + #q.items end
  return n
end

--- Stop: nothing more is sent; queued notifications are dropped.
function methods:close()
  self.closed = true
  for _, q in pairs(self.queues) do drop_queue(self, q) end
  if self.http then self.http:close() end
end

pusher.methods = methods
pusher.mt = mt
return pusher
