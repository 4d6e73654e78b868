-- loom.federation.sender: local events and EDUs to the other servers of a
-- room, as transactions, reliably.
--
--   local sender = require "loom.federation.sender"
--   hs.sender = sender.new(hs)
--   hs.sender:queue_event(ev, room_id)          -- inside the event's write transaction
--   hs.sender:queue_edu(destinations, "m.typing", content)
--   hs.sender:wake(server_name)                 -- it spoke to us: retry now
--   hs.sender:start(); hs.sender:close()
--
-- What is queued is written to the store (federation_outbox) in the same
-- transaction as the event, so an event clients were told about reaches
-- every server in the room even across a crash. One transaction per
-- destination is in flight at a time (at most 50 PDUs and 100 EDUs); it is
-- retried as it was (same ID, same content) until the destination answers
-- 200, with exponential backoff and jitter between attempts (2 s doubling to
-- a day). A destination that comes back after failures gets the newest
-- event of each room rather than the whole backlog: it fetches what lies
-- between with /get_missing_events. A 4xx answer other than 429 drops the
-- transaction (retrying it could never succeed).
local setmetatable, ipairs, pairs, tostring, type, pcall, error = setmetatable, ipairs, pairs, tostring, type, pcall,
  error
local math_min, math_floor, math_random = math.min, math.floor, math.random
local uv = require "luv"
local core = require "loom.core"
local async = require "loom.async"
local event_mod = require "loom.room.event"
local fedclient = require "loom.federation.client"

local json, now_ms, array_mt = core.json, core.now_ms, core.json.array_mt
local E = fedclient.encode

local _ENV = nil -- luacheck: ignore 211

local sender = {}

local MAX_PDUS, MAX_EDUS = 50, 100
local FIRST_RETRY, MAX_RETRY = 2000, 24 * 3600 * 1000
local CATCH_UP_OVER = 50      -- a backlog longer than this is sent as the newest event per room

local Sender = {}
Sender.__index = Sender
Sender.__name = "loom.federation.Sender"

--- sender.new(hs) -> Sender. sender.first_retry and sender.max_retry (ms)
-- may be changed (the lab shortens them).
function sender.new(hs)
  return setmetatable({ hs = hs, running = {}, again = {}, timers = {}, closed = false,
    first_retry = FIRST_RETRY, max_retry = MAX_RETRY }, Sender)
end

local function domain(user_id)
  return type(user_id) == "string" and user_id:match("^@[^:]*:(.+)$") or nil
end

--- The servers an event goes to: those with a user joined to its room now,
-- and, for a membership event, the target's server; never this one nor
-- `except` (the server it came from).
function Sender.destinations(self, ev, room_id, except)
  local hs = self.hs
  local store = hs.store
  local set = {}
  for _, s in ipairs(store:servers_in_room(room_id)) do set[s] = true end
  if ev.type == "m.room.member" then
    local t = domain(ev.state_key)
    if t then set[t] = true end
  end
  set[hs.server_name] = nil
  if except then set[except] = nil end
  local out = {}
  for s in pairs(set) do out[#out + 1] = s end
  return out
end

--- Queue an event for every other server of its room (but `except`). Call
-- inside the transaction that stores the event; the sends start once it
-- commits.
function Sender.queue_event(self, ev, room_id, except)
  local dests = self:destinations(ev, room_id, except)
  if #dests == 0 then return true end
  local store = self.hs.store
  store:queue_for(dests, "pdu", room_id, ev.event_id)
  store:after_commit(function()
    for _, d in ipairs(dests) do self:kick(d) end
  end)
  return true
end

--- Queue an EDU ({ edu_type, content }) for destinations.
function Sender.queue_edu(self, dests, edu_type, content, room_id)
  local list = {}
  for _, d in ipairs(dests) do if d ~= self.hs.server_name then list[#list + 1] = d end end
  if #list == 0 then return true end
  local text, err = json.encode { edu_type = edu_type, content = content }
  if not text then error("EDU " .. tostring(edu_type) .. " does not encode: " .. tostring(err), 2) end
  local store = self.hs.store
  store:queue_for(list, "edu", room_id, text)
  store:after_commit(function()
    for _, d in ipairs(list) do self:kick(d) end
  end)
  return true
end

--- Queue an EDU about a room for every other server joined to it.
function Sender.room_edu(self, room_id, edu_type, content)
  local store = self.hs.store
  local rn = store:room_nid(room_id)
  if not rn then return true end
  return self:queue_edu(store:joined_servers(rn), edu_type, content, room_id)
end

local function log(self, level, fmt, ...)
  self.hs.server:log(level, "federation sender: " .. fmt, ...)
end

-- Keep only the newest PDU of each room (the destination fetches the rest).
local function catch_up(self, dest)
  local store = self.hs.store
  local pdus = store:outbox_pdus(dest)
  if #pdus <= CATCH_UP_OVER then return end
  local newest, drop = {}, {}
  for _, p in ipairs(pdus) do
    local prev = newest[p.room_id or ""]
    if prev then drop[#drop + 1] = prev end
    newest[p.room_id or ""] = p.seq
  end
  store:outbox_drop(dest, drop)
  log(self, "info", "%s is back: sending the newest event of each room, %d older ones left to it", dest, #drop)
end

local function schedule(self, dest, at)
  local t = self.timers[dest]
  if not t then
    t = uv.new_timer()
    self.timers[dest] = t
  end
  local wait = at - now_ms()
  if wait < 0 then wait = 0 end
  t:start(wait, 0, function()
    t:close()
    self.timers[dest] = nil
    self:kick(dest)
  end)
end

-- Send what waits for dest until nothing does or an attempt fails.
local function run(self, dest)
  local hs = self.hs
  local store = hs.store
  while not self.closed do
    local d = store:destination(dest)
    if d.retry_at_ms > now_ms() then return schedule(self, dest, d.retry_at_ms) end
    local rows
    if d.txn_id then
      rows = store:outbox(dest, d.txn_upto)
    else
      if d.failures > 0 then catch_up(self, dest) end
      rows = store:outbox(dest, nil, MAX_PDUS, MAX_EDUS)
      if #rows == 0 then
        if d.failures > 0 then store:set_destination(dest, { failures = 0, retry_interval_ms = 0 }) end
        return
      end
      d.txn_id = tostring(now_ms()) .. "_" .. tostring(d.next_txn)
      d.txn_upto = rows[#rows].seq
      store:set_destination(dest, { txn_id = d.txn_id, txn_upto = d.txn_upto, next_txn = d.next_txn + 1 })
    end
    local pdus, edus = setmetatable({}, array_mt), setmetatable({}, array_mt)
    local ids = {}
    for _, r in ipairs(rows) do if r.kind == "pdu" then ids[#ids + 1] = r.payload end end
    local loaded = store:events(ids)
    for _, r in ipairs(rows) do
      if r.kind == "pdu" then
        local e = loaded[r.payload]
        if e then pdus[#pdus + 1] = event_mod.pdu(e[1]) end
      else
        local edu = json.decode(r.payload)
        if edu then edus[#edus + 1] = edu end
      end
    end
    local status, body = hs.federation:request(dest, "PUT", "/_matrix/federation/v1/send/" .. E(d.txn_id), {
      body = { origin = hs.server_name, origin_server_ts = now_ms(), pdus = pdus, edus = edus },
    })
    if status == 200 or (status and status >= 400 and status < 500 and status ~= 429) then
      if status ~= 200 then
        log(self, "warn", "%s refused transaction %s (%s): dropped", dest, d.txn_id, tostring(status))
      end
      store:transaction(function()
        store:outbox_done(dest, d.txn_upto)
        store:set_destination(dest, { txn_id = false, txn_upto = false, retry_interval_ms = 0, retry_at_ms = 0,
          failures = 0 })
        return true
      end)
    else
      local interval = d.retry_interval_ms > 0 and math_min(d.retry_interval_ms * 2, self.max_retry)
        or self.first_retry
      local jittered = math_floor(interval * (0.8 + 0.4 * math_random()))
      store:set_destination(dest, { retry_interval_ms = interval, retry_at_ms = now_ms() + jittered,
        failures = d.failures + 1 })
      log(self, d.failures == 0 and "info" or "debug", "%s unreachable (%s); retrying in %d ms", dest,
        tostring(status or body), jittered)
      return schedule(self, dest, now_ms() + jittered)
    end
  end
end

--- Start sending to dest unless a send is running (then it goes on after).
function Sender.kick(self, dest)
  if self.closed then return end
  if self.running[dest] then self.again[dest] = true; return end
  self.running[dest] = true
  async.spawn(function()
    repeat
      self.again[dest] = nil
      local ok, err = pcall(run, self, dest)
      if not ok then log(self, "error", "sending to %s failed: %s", dest, tostring(err)); break end
    until not self.again[dest] or self.closed
  end, nil, function() self.running[dest] = nil end)
end

--- dest answered or sent us something: it is reachable again.
function Sender.wake(self, dest)
  if self.closed then return end
  local store = self.hs.store
  local d = store:destination(dest)
  if d.retry_at_ms > 0 and d.retry_at_ms > now_ms() then
    store:set_destination(dest, { retry_at_ms = 0 })
    local t = self.timers[dest]
    if t then t:close(); self.timers[dest] = nil end
    self:kick(dest)
  end
end

--- Resume every destination with something queued (at server start).
function Sender.start(self)
  for _, d in ipairs(self.hs.store:pending_destinations()) do self:kick(d) end
end

function Sender.close(self)
  self.closed = true
  for dest, t in pairs(self.timers) do
    if not t:is_closing() then t:close() end
    self.timers[dest] = nil
  end
end

return sender
