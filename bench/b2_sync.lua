-- B2: incremental /sync of a user in 1,000 rooms when 10 of them changed
-- (a message in each, a typing notice in one, a receipt in another), over
-- HTTP on loopback (the client shares the server's process and loop).
--   1. p50/p99 of the incremental /sync (target p99 < 5 ms) and the SQL
--      statements it runs (target <= 15), next to the baseline: the same
--      rows read by the store alone (rooms_stream of the 10 changed rooms,
--      their receipts, the device's to-device inbox) in the same process;
--   2. wake-up: from the commit of a send (the store's note) to the waiting
--      long-poll's answer at the client, p50/p99 (target p99 < 2 ms).
--
-- Usage: lua5.4 bench/b2_sync.lua [rooms=1000] [rounds=200]
-- B2_TRACE=1 prints the SQL of one /sync; B2_SLOW=1 prints each /sync over
-- 3 ms with its statements and the Lua heap after it (a heap that shrank:
-- the collector ran a major collection during that /sync).
package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local bl = require "benchlib"
local uv = require "luv"
local loom = require "loom"
local api = require "loom.api"
local core = require "loom.core"
local async = require "loom.async"

local json = core.json
local ROOMS = tonumber(arg and arg[1]) or 1000
local ROUNDS = tonumber(arg and arg[2]) or 200
local CHANGED = 10
local WAKES = 100
local now = bl.now

local path = os.tmpname()
local server = loom.new { port = 0, server_name = "bench.local", log_level = "warn",
  database = { path = path, synchronous = "OFF" }, password_iterations = 1000 }
local hs = api.install(server)
assert(server:start())
local port = server:port()
local store, rooms = hs.store, hs.rooms
local conn = store.conn
-- statements run: the db layer counts them (conn.statements); builds
-- without the counter count through the statement-timing hook
local counted = 0
local function statements() return conn.statements or counted end
if not conn.statements then
  store:time_statements(function(f, ...) counted = counted + 1; return f(...) end)
end

local ALICE, BOB = "@alice:bench.local", "@bob:bench.local"
assert(hs.accounts:register("alice", "alice-password"))
assert(hs.accounts:register("bob", "bob-password"))
local alice = assert(hs.accounts:login(ALICE, "alice-password"))
local bob = assert(hs.accounts:login(BOB, "bob-password"))

-- ---- a keep-alive client on the same loop (benchlib) ----------------------

local function client(access_token) return bl.client(port, access_token) end
local run, enc, percentile, stats = bl.run, bl.enc, bl.percentile, bl.stats

-- ---- the rooms ------------------------------------------------------------

local t0 = now()
local room_ids = {}
run(function()
  for i = 1, ROOMS do
    local room_id, send = bl.public_room(rooms, ALICE, "room " .. i)
    if i <= CHANGED then
      send { type = "m.room.member", state_key = BOB, sender = BOB, content = { membership = "join" } }
    end
    room_ids[i] = room_id
  end
end)
print(("built %d rooms in %.1f s"):format(ROOMS, (now() - t0) / 1e9))
local changed_rooms = {}
for i = 1, CHANGED do changed_rooms[i] = room_ids[i] end

-- ---- 1. incremental /sync ---------------------------------------------------

local sync_ns, base_ns, stmts, sizes, cpu_ns = {}, {}, {}, {}, {}
run(function()
  local ca, cb = client(alice.access_token), client(bob.access_token)
  local status, body = ca.call("GET", "/_matrix/client/v3/sync?timeout=0")
  assert(status == 200, body)
  local since = assert(body:match('"next_batch":"([^"]+)"'))  -- (an initial sync: too big for json.decode)
  for round = 1, ROUNDS do
    -- the changes (not timed): a message in each changed room, bob typing
    -- in one, a receipt in another
    local last_ev
    for _, r in ipairs(changed_rooms) do
      local ev = assert(rooms:send(r, { type = "m.room.message", sender = BOB,
        content = { msgtype = "m.text", body = "round " .. round } }))
      last_ev = last_ev or ev.event_id
    end
    hs.typing:set(changed_rooms[(round % CHANGED) + 1], BOB, round % 2 == 0, 30000)
    status = cb.call("POST", "/_matrix/client/v3/rooms/" .. enc(changed_rooms[1]) .. "/receipt/m.read/"
      .. enc(last_ev), {})
    assert(status == 200)
    -- B2_TRACE=1: print the SQL of the third /sync
    local trace = os.getenv("B2_TRACE") and round == 3
    local prepare = conn.prepare
    if trace then
      conn.prepare = function(c, sql) io.stderr:write("SQL ", (sql:gsub("%s+", " ")), "\n"); return prepare(c, sql) end
    end
    local before_stmts = statements()
    local t, c = now(), os.clock()
    status, body = ca.call("GET", "/_matrix/client/v3/sync?timeout=0&since=" .. enc(since))
    sync_ns[#sync_ns + 1] = now() - t
    cpu_ns[#cpu_ns + 1] = (os.clock() - c) * 1e9
    if os.getenv("B2_SLOW") and sync_ns[#sync_ns] > 3e6 then
      io.stderr:write(("slow round %d: %.2f ms, %d statements, heap %.0f MB\n"):format(round, sync_ns[#sync_ns] / 1e6,
        statements() - before_stmts, collectgarbage("count") / 1024))
    end
    stmts[#stmts + 1] = statements() - before_stmts
    if trace then conn.prepare = nil end
    sizes[#sizes + 1] = #body
    assert(status == 200, body)
    local b = json.decode(body)
    local n = 0
    for _ in pairs(b.rooms.join) do n = n + 1 end
    assert(n == CHANGED, "rooms in the answer: " .. n)
    -- the baseline: the same rows read by the store alone
    local to = store:current_position()
    local from = math.tointeger(since:match("^s(%d+)"))
    t = now()
    assert(store:rooms_stream(changed_rooms, from, to, 10))
    store:receipts_changes(changed_rooms, 0, store:receipts_position())
    store:to_device_messages(ALICE, alice.device_id, 0, 100)
    base_ns[#base_ns + 1] = now() - t
    since = b.next_batch
  end
end)
local p50, p99 = stats(sync_ns)
local p90, pmax = percentile(sync_ns, 0.9) / 1e6, sync_ns[#sync_ns] / 1e6
local b50, b99 = stats(base_ns)
table.sort(stmts)
print(("incremental /sync, %d of %d rooms changed, %d rounds: p50 %.2f ms, p99 %.2f ms (target p99 < 5 ms)")
  :format(CHANGED, ROOMS, ROUNDS, p50, p99))
local c50, c99 = stats(cpu_ns)
print(("  p90 %.2f ms, max %.2f ms; CPU time of the process per /sync (client included): p50 %.2f ms, p99 %.2f ms")
  :format(p90, pmax, c50, c99))
print(("  SQL statements per /sync: median %d, max %d (target <= 15); answer %d bytes")
  :format(percentile(stmts, 0.5), stmts[#stmts], sizes[1]))
print(("  baseline (store alone, same rows): p50 %.3f ms, p99 %.3f ms; /sync / baseline p50 %.1fx")
  :format(b50, b99, p50 / b50))

-- ---- 2. wake-up latency ---------------------------------------------------

local wake_ns = {}
run(function()
  local ca = client(alice.access_token)
  local status, body = ca.call("GET", "/_matrix/client/v3/sync?timeout=0")
  assert(status == 200)
  local since = assert(body:match('"next_batch":"([^"]+)"'))
  local committed
  local unsubscribe = store:subscribe(function(note)
    if note.rooms and note.rooms[changed_rooms[1]] then committed = now() end
  end)
  for i = 1, WAKES do
    committed = nil
    local timer = uv.new_timer()
    timer:start(2, 0, function()
      timer:close()
      assert(rooms:send(changed_rooms[1], { type = "m.room.message", sender = BOB,
        content = { msgtype = "m.text", body = "wake " .. i } }))
    end)
    status, body = ca.call("GET", "/_matrix/client/v3/sync?timeout=10000&since=" .. enc(since))
    local t = now()
    assert(status == 200 and committed, body)
    wake_ns[#wake_ns + 1] = t - committed
    since = json.decode(body).next_batch
  end
  unsubscribe()
end)
p50, p99 = stats(wake_ns)
print(("wake-up, commit to long-poll answer at the client, %d sends: p50 %.2f ms, p99 %.2f ms (target p99 < 2 ms)")
  :format(WAKES, p50, p99))

server:stop()
async.finish_closing()
os.remove(path)
