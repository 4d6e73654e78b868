-- B3: initial /sync.
--   1. a user in 1,000 rooms, timeline limit 10, lazy-loaded members
--      (target < 500 ms), next to the baseline: the same timelines read by
--      the store alone (one rooms_stream over the 1,000 rooms);
--   2. a filtered initial sync of one room (filter room.rooms = [one]) for
--      a user in 2,200 rooms (target < 20 ms), next to the store reading
--      that room's timeline.
-- Over HTTP on loopback (the client shares the server's process and loop).
--
-- Usage: lua5.4 bench/b3_initial.lua [rooms=1000] [all_rooms=2200] [runs=20]
-- B3_PHASES=1 adds the server's time in engine.sync and in encoding.
package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local bl = require "benchlib"
local loom = require "loom"
local api = require "loom.api"
local core = require "loom.core"
local async = require "loom.async"

local json = core.json
local ROOMS = tonumber(arg and arg[1]) or 1000
local ALL = tonumber(arg and arg[2]) or 2200
local RUNS = tonumber(arg and arg[3]) or 20
local now = bl.now

local path = os.tmpname()
local server = loom.new { port = 0, server_name = "bench.local", log_level = "warn",
  database = { path = path, synchronous = "OFF" }, password_iterations = 1000 }
local hs = api.install(server)
assert(server:start())
local port = server:port()
local store, rooms = hs.store, hs.rooms
local ALICE, BOB = "@alice:bench.local", "@bob:bench.local"
assert(hs.accounts:register("alice", "alice-password"))
assert(hs.accounts:register("bob", "bob-password"))
local alice = assert(hs.accounts:login(ALICE, "alice-password"))
local bob = assert(hs.accounts:login(BOB, "bob-password"))

-- ---- a keep-alive client on the same loop (benchlib) ----------------------

local function client(access_token) return bl.client(port, access_token) end
local run, enc, stats = bl.run, bl.enc, bl.stats

-- ---- the rooms: alice in ALL rooms, bob in ROOMS of them ---------------

local t0 = now()
local room_ids = {}
run(function()
  for i = 1, ALL do
    local room_id, send = bl.public_room(rooms, ALICE, "room " .. i)
    if i <= ROOMS then
      send { type = "m.room.member", state_key = BOB, sender = BOB, content = { membership = "join" } }
    end
    for m = 1, 4 do
      send { type = "m.room.message", sender = ALICE, content = { msgtype = "m.text", body = "message " .. m } }
    end
    room_ids[i] = room_id
  end
end)
print(("built %d rooms in %.1f s"):format(ALL, (now() - t0) / 1e9))

local LAZY = enc(json.encode { room = { timeline = { limit = 10 }, state = { lazy_load_members = true } } })

-- B3_PHASES=1: time spent in engine.sync and in encoding the answer
local phases = os.getenv("B3_PHASES") and { sync = 0, encode = 0, n = 0 }
if phases then
  local engine, response = require "loom.sync.engine", require "loom.http.response"
  local sync0, json0 = engine.sync, response.json
  engine.sync = function(...)
    local t = now()
    local a, b = sync0(...)
    phases.sync, phases.n = phases.sync + (now() - t), phases.n + 1
    return a, b
  end
  response.json = function(...)
    local t = now()
    local a, b, c = json0(...)
    phases.encode = phases.encode + (now() - t)
    return a, b, c
  end
end
-- each measured sync and baseline reads the timelines afresh (the store
-- keeps rooms_stream results per range)
local function cold()
  for _, r in ipairs(room_ids) do store:cache_drop(store:room_nid(r)) end
end

local initial_ns, initial_base, single_ns, single_base, size = {}, {}, {}, {}, 0
run(function()
  local cb, ca = client(bob.access_token), client(alice.access_token)
  local bob_rooms = {}
  for i = 1, ROOMS do bob_rooms[i] = room_ids[i] end
  for r = 1, RUNS do
    cold()
    local t = now()
    local status, body = cb.call("GET", "/_matrix/client/v3/sync?filter=" .. LAZY)
    initial_ns[#initial_ns + 1] = now() - t
    assert(status == 200, body)
    size = #body
    cold()
    t = now()
    assert(store:rooms_stream(bob_rooms, 0, store:current_position(), 10))
    initial_base[#initial_base + 1] = now() - t
    local one = room_ids[(r * 37) % ALL + 1]
    local f = enc(json.encode { room = { rooms = { one }, timeline = { limit = 10 },
      state = { lazy_load_members = true } } })
    cold()
    t = now()
    status, body = ca.call("GET", "/_matrix/client/v3/sync?filter=" .. f)
    single_ns[#single_ns + 1] = now() - t
    assert(status == 200, body)
    local b = json.decode(body)
    assert(b.rooms.join[one] and #b.rooms.join[one].timeline.events == 10)
    cold()
    t = now()
    assert(store:rooms_stream({ one }, 0, store:current_position(), 10))
    single_base[#single_base + 1] = now() - t
  end
end)
local p50, p99 = stats(initial_ns)
local b50 = stats(initial_base)
print(("initial /sync, %d rooms, timeline 10, lazy members, %d runs: p50 %.1f ms, p99 %.1f ms (target < 500 ms); "
  .. "%d bytes"):format(ROOMS, RUNS, p50, p99, size))
print(("  baseline (store alone, the same timelines): p50 %.1f ms; /sync / baseline %.1fx"):format(b50, p50 / b50))
if phases then
  print(("  in the server: engine.sync %.1f ms, encoding %.1f ms per /sync (both kinds)")
    :format(phases.sync / 1e6 / phases.n, phases.encode / 1e6 / phases.n))
end
if phases then
  local list = {}
  for i, v in ipairs(single_ns) do list[i] = ("%.1f"):format(v / 1e6) end
  print("  filtered syncs in order (ms): " .. table.concat(list, " "))
end
p50, p99 = stats(single_ns)
b50 = stats(single_base)
print(("filtered initial /sync of one room in %d: p50 %.2f ms, p99 %.2f ms (target < 20 ms)"):format(ALL, p50, p99))
print(("  baseline (store alone, that room's timeline): p50 %.3f ms; /sync / baseline %.1fx"):format(b50, p50 / b50))

server:stop()
async.finish_closing()
os.remove(path)
