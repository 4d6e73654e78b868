-- Application services: a service whose user namespace matches 10,000 users
-- joined across 500 of 5,000 rooms, and 100,000 events spread over all the
-- rooms, 10% of them in the service's rooms. Measures, in process:
--   1. deciding interest for every new event (what the room/event/persisted
--      observer does): ns per event;
--   2. computing each transaction's events (100 interesting events: loading
--      and formatting them), median and p99;
-- against a baseline run in the same process: the way the store used to
-- answer — every transaction regex-matches every membership to find the
-- rooms of interest, then scans the stream until it has 100 events.
-- Target: cost proportional to the interesting events, not to all events or
-- all memberships.
--
-- Usage: lua5.4 bench/appservice.lua [events (100000)] [users (10000)]
package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local bl = require "benchlib"
local core = require "loom.core"
local loom = require "loom"
local api = require "loom.api"
local client_events = require "loom.api.client.events"

local json = core.json
local EVENTS = tonumber(arg and arg[1]) or 100000
local USERS = tonumber(arg and arg[2]) or 10000
local ROOMS, BRIDGED, BATCH = 5000, 500, 100

local path = os.tmpname()
os.remove(path)
path = path .. ".db"
local server = loom.new { port = 0, server_name = "bench", log_level = "error", logger = function() end,
  database = { path = path, synchronous = "OFF" },
  app_services = { { id = "bridge", url = "http://127.0.0.1:9", as_token = "as", hs_token = "hs",
    sender_localpart = "_bridge_bot", namespaces = { users = { { exclusive = true, regex = "@_bridge_.*:bench" } },
      aliases = {}, rooms = {} } } } }
local hs = api.install(server)
local reg, store = hs.appservices, hs.store
local svc = reg:by_id("bridge")

local function room_id(i) return ("!r%d:bench"):format(i) end

-- the service's users: USERS of them over the first BRIDGED rooms; and as
-- many other members, so that memberships are twice the service's users
local members = {}
for u = 1, USERS do
  local r = (u % BRIDGED) + 1
  members[#members + 1] = { room_id(r), ("@_bridge_%d:bench"):format(u) }
  members[#members + 1] = { room_id((u % ROOMS) + 1), ("@person%d:bench"):format(u) }
end
for _, m in ipairs(members) do reg:membership_changed(m[1], m[2], "join") end

-- the events, persisted in stream order: one chain per room
local t0 = bl.now()
local prev, depth = {}, {}
local batch = {}
local interesting = 0
math.randomseed(7)
for i = 1, EVENTS do
  -- 10% in bridged rooms
  local r = (i % 10 == 0) and math.random(1, BRIDGED) or math.random(BRIDGED + 1, ROOMS)
  if r <= BRIDGED then interesting = interesting + 1 end
  local rid = room_id(r)
  depth[r] = (depth[r] or 0) + 1
  local id = ("$e%d"):format(i)
  batch[#batch + 1] = { id, { room_id = rid, type = "m.room.message", sender = "@person1:bench",
    depth = depth[r], origin_server_ts = 1700000000000 + i, prev_events = json.array { prev[r] },
    auth_events = json.array {}, content = { msgtype = "m.text", body = "message " .. i } } }
  prev[r] = id
  if #batch >= 5000 or i == EVENTS then
    assert(store:persist_events(batch))
    batch = {}
  end
end
print(("built %d events in %d rooms (%d interest the service), %d memberships, in %.1f s"):format(EVENTS, ROOMS,
  interesting, #members, (bl.now() - t0) / 1e9))

-- 1. interest per event, as the observer decides it
local records = assert(store:appservice_stream(function() return true end, "s0", nil, 1000))
local evs = {}
local from = "s0"
repeat
  local page = assert(store:appservice_stream(function() return true end, from))
  for _, rec in ipairs(page.events) do
    evs[#evs + 1] = { room_id = rec.room_id, type = rec.type, event_id = rec.event_id, so = rec.stream_ordering }
  end
  local done = page.next == from
  from = page.next
until done or #page.events == 0
assert(#evs == EVENTS, #evs)
local queue = {}
t0 = bl.now()
for _, ev in ipairs(evs) do
  if reg:interested(svc, ev) then queue[#queue + 1] = ev.event_id end
end
local per_event = (bl.now() - t0) / #evs
assert(#queue == interesting, #queue .. " ~= " .. interesting)

-- 2. each transaction's events: load and format BATCH interesting events
local txn_ns = {}
for i = 1, #queue, BATCH do
  local ids = { table.unpack(queue, i, math.min(#queue, i + BATCH - 1)) }
  local t1 = bl.now()
  local loaded = store:events(ids)
  local list = {}
  for _, id in ipairs(ids) do list[#list + 1] = loaded[id][1] end
  local body = json.encode { events = client_events.clients({ store = store }, list) }
  txn_ns[#txn_ns + 1] = bl.now() - t1
  assert(#body > 0)
end
local n50, n99 = bl.stats(txn_ns)

-- baseline: per transaction, find the rooms of interest from every
-- membership, then scan the stream for BATCH events
local base_ns = {}
local pos = "s0"
local runs = 0
while runs < 30 do
  local t1 = bl.now()
  local rooms = {}
  local users_ns = svc.namespaces.users
  for _, m in ipairs(members) do
    for _, ns in ipairs(users_ns) do
      if ns.regex:match(m[2]) then rooms[m[1]] = true; break end
    end
  end
  local page = assert(store:appservice_stream(function(rid) return rooms[rid] == true end, pos, nil, BATCH))
  local loaded = store:events((function()
    local ids = {}
    for i, rec in ipairs(page.events) do ids[i] = rec.event_id end
    return ids
  end)())
  local list = {}
  for _, rec in ipairs(page.events) do list[#list + 1] = loaded[rec.event_id][1] end
  local body = json.encode { events = client_events.clients({ store = store }, list) }
  base_ns[#base_ns + 1] = bl.now() - t1
  assert(#body > 0)
  pos = page.next
  runs = runs + 1
end
local b50, b99 = bl.stats(base_ns)

print(("interest decision: %.0f ns per event (%d events, %d services)"):format(per_event, #evs, 1))
print(("transaction of %d events (load + format): p50 %.2f ms, p99 %.2f ms over %d transactions"):format(BATCH,
  n50, n99, #txn_ns))
print(("  per transaction including the interest decisions of its ~%d stream events: %.2f ms"):format(
  BATCH * 10, n50 + per_event * BATCH * 10 / 1e6))
print(("baseline (every membership matched, then the stream scanned): p50 %.2f ms, p99 %.2f ms; ratio %.1fx")
  :format(b50, b99, b50 / (n50 + per_event * BATCH * 10 / 1e6)))
assert(records)
store:close()
for _, s in ipairs { "", "-wal", "-shm" } do os.remove(path .. s) end
