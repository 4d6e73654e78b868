-- loom.appservice.sender: pushes the events that interest each application
-- service to it as transactions (Application Service API, "Pushing events"):
-- PUT {url}/_matrix/app/v1/transactions/{txnId} with { events } in stream
-- order, the hs_token as Bearer token, one transaction in flight per
-- service.
--
--   local sender = require "loom.appservice.sender"
--   local s = sender.new(hs, hs.appservices, { retry_ms = 1000, max_retry_ms = 300000 })
--   s:start()                      -- recovers what was not yet delivered, then follows new events
--   s:event_persisted(ev, ctx)     -- a room/event/persisted observer
--   s:close()
--
-- Exactly once, across restarts: a transaction is written to the store
-- (its ID, body and the stream position it reaches) before it is sent, and
-- is resent unchanged until the service answers 200; only then does the
-- service's position move (in the same database transaction that drops the
-- staged one). At start each service's undelivered range (its position up
-- to the current stream position) is read back from the store: the events
-- of the rooms that interest it and the membership events of its users. A
-- service new to the database starts at the current position. While the
-- service is down the sender retries with exponential backoff (retry_ms
-- doubling to max_retry_ms); new events keep queueing in memory and go out
-- in order, at most `batch` per transaction, once it is back.
--
-- A service with receive_ephemeral also gets, under `ephemeral` (and the
-- unstable de.sorunome.msc2409.ephemeral), m.typing and m.receipt of the
-- rooms that interest it (private receipts only of its own users) and
-- m.presence of its users and of users sharing such a room; and, under
-- de.sorunome.msc2409.to_device, the to-device messages for its users'
-- devices, which leave the inboxes when the transaction is delivered. These
-- are held in memory until sent (ephemeral data is not replayed after a
-- restart; to-device messages wait in their inboxes and are).
local core = require "loom.core"
local async = require "loom.async"
local client_events = require "loom.api.client.events"
local presence_mod = require "loom.sync.presence"
local appservice = require "loom.appservice"

local setmetatable, pairs, ipairs, type, tostring, pcall, assert = setmetatable, pairs, ipairs, type, tostring, pcall,
  assert
local next = next
local math_min = math.min
local table_move, table_remove = table.move, table.remove
local json = core.json
local uv = require "luv"

local _ENV = nil -- luacheck: ignore 211

local sender = {}
local methods = {}
local mt = { __name = "loom.appservice.Sender", __index = methods }

sender.defaults = { retry_ms = 2000, max_retry_ms = 300000, batch = 100 }

function sender.new(hs, registry, opts)
  opts = opts or {}
  local self = setmetatable({ hs = hs, reg = registry, states = {}, closed = false,
    retry_ms = opts.retry_ms or sender.defaults.retry_ms,
    max_retry_ms = opts.max_retry_ms or sender.defaults.max_retry_ms,
    batch = opts.batch or sender.defaults.batch }, mt)
  return self
end

local function log(self, level, fmt, ...)
  self.hs.server:log(level, fmt, ...)
end

local function ephemeral_states(self)
  local out = {}
  for _, st in pairs(self.states) do
    if st.svc.receive_ephemeral then out[#out + 1] = st end
  end
  return out
end

-- One ephemeral event for a service.
local function push_ephemeral(self, st, ev)
  local list = st.ephemeral
  if #list >= 1000 then table_remove(list, 1) end   -- a service long down loses the oldest
  list[#list + 1] = ev
  self:kick(st)
end

-- The store's commit notes: receipts, presence, to-device messages.
function methods:on_note(note)
  if self.closed then return end
  local reg, store = self.reg, self.hs.store
  local states = ephemeral_states(self)
  if #states == 0 then return end
  for room_id, pos in pairs(note.receipts or {}) do
    local rows
    for _, st in ipairs(states) do
      if reg:room_interests(st.svc, room_id) then
        rows = rows or store:receipts_changes({ room_id }, pos - 1, pos)
        local content, any = {}, false
        for _, r in ipairs(rows) do
          local rtype, user_id, thread_id, event_id, ts = r[2], r[3], r[4], r[5], r[6]
          if rtype ~= "m.read.private" or reg:is_user(st.svc, user_id) then
            local by_type = content[event_id] or {}
            content[event_id] = by_type
            local by_user = by_type[rtype] or {}
            by_type[rtype] = by_user
            by_user[user_id] = { ts = ts, thread_id = thread_id }
            any = true
          end
        end
        if any then push_ephemeral(self, st, { type = "m.receipt", room_id = room_id, content = content }) end
      end
    end
  end
  for user_id in pairs(note.presence or {}) do
    local row, rooms
    for _, st in ipairs(states) do
      local wanted = reg:is_user(st.svc, user_id)
      if not wanted then
        rooms = rooms or store:rooms_for_user(user_id, "join")
        for _, room_id in ipairs(rooms) do
          if reg:room_interests(st.svc, room_id) then wanted = true; break end
        end
      end
      if wanted then
        row = row or store:presence_of(user_id)
        if row then
          push_ephemeral(self, st, { type = "m.presence", sender = user_id,
            content = presence_mod.format(row, core.now_ms()) })
        end
      end
    end
  end
  if note.to_device then
    for user_id in pairs(note.users or {}) do
      for _, st in ipairs(states) do
        if reg:is_user(st.svc, user_id) then
          st.to_device[user_id] = true
          self:kick(st)
        end
      end
    end
  end
end

--- Typing changed in a room (hs.typing's on_change).
function methods:on_typing(room_id)
  if self.closed then return end
  for _, st in ipairs(ephemeral_states(self)) do
    if self.reg:room_interests(st.svc, room_id) then
      push_ephemeral(self, st, { type = "m.typing", room_id = room_id,
        content = { user_ids = json.array(self.hs.typing:users(room_id)) } })
    end
  end
end

--- Read each service's position, queue what it has not received, and start
-- sending.
function methods:start()
  local store = self.hs.store
  local now = store:current_position()
  for _, svc in ipairs(self.reg.services) do
    if svc.endpoint then
      local pos = store:appservice_position(svc.id)
      if not pos then
        pos = now
        store:appservice_init(svc.id, pos)
      end
      local st = { svc = svc, queue = {}, head = 1, pos = pos, seen = now, scanned = now, attempt = 0,
        ephemeral = {}, to_device = {} }
      self.states[svc] = st
      -- the backlog: events of the rooms that interest it, and its users'
      -- membership events, after its position — or after the staged
      -- transaction, which is resent as it is
      local staged = store:appservice_staged(svc.id)
      if staged and staged.last > pos then pos = staged.last end
      if now > pos then
        local reg = self.reg
        local function wanted(room_id, etype, state_key)
          if reg:room_interests(svc, room_id) then return true end
          return etype == "m.room.member" and reg:is_user(svc, state_key)
        end
        local from = "s" .. tostring(pos)
        repeat
          local page = assert(store:appservice_stream(wanted, from, "s" .. tostring(now)))
          for _, rec in ipairs(page.events) do st.queue[#st.queue + 1] = { rec.stream_ordering, rec.event_id } end
          local done = page.next == from or #page.events == 0
          from = page.next
        until done
      end
      -- its users' to-device messages waiting from before
      if svc.receive_ephemeral then
        for _, row in ipairs(store:local_joined_members(self.hs.server_name)) do
          if self.reg:is_user(svc, row[2]) then st.to_device[row[2]] = true end
        end
        st.to_device[svc.sender] = true
      end
      self:kick(st)
    end
  end
  if #ephemeral_states(self) > 0 then
    self.unsubscribe = store:subscribe(function(note) self:on_note(note) end)
    if self.hs.typing then self.hs.typing.on_change = function(room_id) self:on_typing(room_id) end end
  end
end

--- A persisted event (room/event/persisted observer): queued for every
-- service it interests.
function methods:event_persisted(ev, ctx)
  local so = ctx and ctx.stream_ordering
  if self.closed or type(so) ~= "number" or so <= 0 then return end
  local reg = self.reg
  if ev.type == "m.room.member" and type(ev.state_key) == "string" and type(ev.content) == "table" then
    reg:membership_changed(ev.room_id, ev.state_key, ev.content.membership)
  end
  for _, svc in ipairs(reg.services) do
    local st = self.states[svc]
    if st and so > st.scanned then
      if so > st.seen then st.seen = so end
      if reg:interested(svc, ev) then
        st.queue[#st.queue + 1] = { so, ev.event_id }
        self:kick(st)
      end
    end
  end
end

-- Start the service's task unless it runs.
function methods:kick(st)
  if st.running or self.closed then return end
  st.running = true
  async.spawn(function() return self:run(st) end, nil, function(ok, err)
    st.running = false
    if not ok then log(self, "error", "application service %s: %s", st.svc.id, tostring(err)) end
  end)
end

-- Sleep ms, or less when the sender closes.
local function pause(st, ms)
  async.wait(function(wake)
    local t = uv.new_timer()
    st.timer, st.wake = t, wake
    t:start(ms, 0, function()
      if not t:is_closing() then t:close() end
      st.timer, st.wake = nil, nil
      wake()
    end)
  end)
end

-- The to-device messages waiting for the service's users: entries, acks.
local function to_device_part(self, st)
  local store = self.hs.store
  local entries, acks = json.array {}, {}
  local users = st.to_device
  st.to_device = {}
  for user_id in pairs(users) do
    for _, d in ipairs(store:user_devices(user_id)) do
      local msgs = store:to_device_messages(user_id, d.device_id, 0, 100)
      for _, m in ipairs(msgs) do
        entries[#entries + 1] = { type = m[3], sender = m[2], content = json.decode(m[4]),
          to_user_id = user_id, to_device_id = d.device_id }
      end
      if #msgs > 0 then acks[#acks + 1] = { user_id, d.device_id, msgs[#msgs][1] } end
      if #msgs >= 100 then st.to_device[user_id] = true end     -- more next time
    end
  end
  return entries, acks
end

-- The next transaction's body: body, last position, events taken, acks.
local function build(self, st)
  local n = math_min(self.batch, #st.queue - st.head + 1)
  local ids, positions = {}, {}
  for i = 1, n do
    local it = st.queue[st.head + i - 1]
    positions[i], ids[i] = it[1], it[2]
  end
  local events = {}
  if n > 0 then
    local loaded = self.hs.store:events(ids)
    for _, id in ipairs(ids) do
      local hit = loaded[id]
      if hit then events[#events + 1] = hit[1] end
    end
  end
  local body = { events = client_events.clients({ store = self.hs.store }, events) }
  local last = n > 0 and positions[n] or st.pos
  -- the queue empties: the position reaches everything seen so far
  if st.head + n > #st.queue and st.seen > last then last = st.seen end
  local acks
  if st.svc.receive_ephemeral then
    if #st.ephemeral > 0 then
      local eph = json.array {}
      local take = math_min(#st.ephemeral, self.batch)
      for i = 1, take do eph[i] = st.ephemeral[i] end
      table_move(st.ephemeral, take + 1, #st.ephemeral + take, 1)
      body.ephemeral = eph
      body["de.sorunome.msc2409.ephemeral"] = eph
    end
    if next(st.to_device) ~= nil then
      local entries
      entries, acks = to_device_part(self, st)
      if #entries > 0 then body["de.sorunome.msc2409.to_device"] = entries end
    end
  end
  return body, last, n, acks
end

-- Is there something to send?
local function pending(st)
  return st.head <= #st.queue or #st.ephemeral > 0 or next(st.to_device) ~= nil
end

--- The service's loop (a task): send the staged transaction until it is
-- delivered, then stage the next, while there is one.
function methods:run(st)
  local store, svc = self.hs.store, st.svc
  while not self.closed do
    local staged = store:appservice_staged(svc.id)
    if not staged then
      if not pending(st) then break end
      local body, last, n, acks = build(self, st)
      if #body.events == 0 and not body.ephemeral and not body["de.sorunome.msc2409.to_device"] and n == 0 then
        break
      end
      local text = json.encode(body)
      local txn_id = store:appservice_stage(svc.id, text, last, acks)
      staged = { txn_id = txn_id, body = text, last = last }
      st.head = st.head + n
      if st.head > 1024 and st.head > #st.queue // 2 then
        -- drop what was sent from the front of the queue
        local rest = #st.queue - st.head + 1
        table_move(st.queue, st.head, #st.queue, 1)
        for i = #st.queue, rest + 1, -1 do st.queue[i] = nil end
        st.head = 1
      end
    end
    local ok, res, err = pcall(self.reg.request, self.reg, svc, "PUT",
      "/transactions/" .. appservice.enc(tostring(staged.txn_id)), staged.body, 30000)
    if not ok then res, err = nil, res end
    if res and res.status == 200 then
      store:appservice_delivered(svc.id, staged.txn_id, staged.last)
      st.pos = staged.last
      st.attempt = 0
      self.delivered = (self.delivered or 0) + 1
    else
      st.attempt = st.attempt + 1
      local wait = math_min(self.retry_ms * 2 ^ (st.attempt - 1), self.max_retry_ms) // 1 | 0
      log(self, "info", "application service %s: transaction %s not delivered (%s); again in %d ms",
        svc.id, tostring(staged.txn_id), res and ("status " .. tostring(res.status)) or tostring(err), wait)
      pause(st, wait)
    end
  end
end

--- Stop sending (transactions staged stay in the store for the next start).
function methods:close()
  self.closed = true
  if self.unsubscribe then self.unsubscribe(); self.unsubscribe = nil end
  for _, st in pairs(self.states) do
    if st.timer and not st.timer:is_closing() then
      st.timer:stop()
      st.timer:close()
      local wake = st.wake
      st.timer, st.wake = nil, nil
      if wake then wake() end
    end
  end
end

return sender
