-- Child process for the send-crash spec and the send benchmarks: a loom
-- homeserver on 127.0.0.1 over the database at arg[1], with a user and a
-- room. Prints "ready <port> <pid> <access_token> <room_id>" once it
-- listens, then serves until it is stopped or killed. arg[2]: the
-- database's synchronous setting ("FULL" by default); arg[3]: "nogroup" turns
-- group commit off.
local uv = require "luv"
local loom = require "loom"
local api = require "loom.api"

local path, synchronous, grouping = arg[1], arg[2] or "FULL", arg[3]
-- LOOM_BENCH_GC ("generational", "incremental") and LOOM_BENCH_CHECKPOINT
-- (ms; 0 = SQLite's automatic checkpoints) set the housekeeping options.
local server = loom.new { host = "127.0.0.1", port = 0, server_name = "crash.local", log_level = "warn",
  password_iterations = 1000,
  housekeeping = { gc = os.getenv("LOOM_BENCH_GC"), checkpoint_interval = math.tointeger(
    tonumber(os.getenv("LOOM_BENCH_CHECKPOINT") or "")) },
  database = { path = path, synchronous = synchronous, group_commit = grouping ~= "nogroup" } }
local hs = api.install(server)
assert(server:start())
local housekeeper = hs.housekeeping  -- (gone from hs once the server stops)
assert(hs.accounts:register("alice", "alice-password"))
local login = assert(hs.accounts:login("@alice:crash.local", "alice-password"))
local room_id = assert(hs.rooms:create_room("@alice:crash.local"))
assert(hs.rooms:send(room_id, { type = "m.room.member", state_key = "@alice:crash.local",
  sender = "@alice:crash.local", content = { membership = "join" } }))
if os.getenv("LOOM_BENCH_STATS") then
  -- every 30 s on standard error: the Lua heap, GC cycles completed, and the
  -- loop's stalls (a 5 ms timer that fired more than 40 ms late)
  local cycles = 0
  local function sentinel() setmetatable({}, { __gc = function() cycles = cycles + 1; sentinel() end }) end
  sentinel()
  -- for each stall: how much of it this process spent on the CPU (the rest
  -- it was not scheduled: the machine is shared), and whether the heap shrank
  -- (a collection finished during it)
  local function cpu()
    local r = uv.getrusage()
    return (r.utime.sec + r.stime.sec) * 1e3 + (r.utime.usec + r.stime.usec) / 1e3
  end
  local stalls, worst, stalled, stalled_cpu, gc_stalls = 0, 0, 0, 0, 0
  local last, last_cpu, last_heap = uv.hrtime(), cpu(), collectgarbage("count")
  local probe, every = uv.new_timer(), uv.new_timer()
  probe:start(5, 5, function()
    local now, c, heap = uv.hrtime(), cpu(), collectgarbage("count")
    local late = (now - last) / 1e6 - 5
    if late > 40 then
      stalls = stalls + 1; stalled = stalled + late; stalled_cpu = stalled_cpu + (c - last_cpu)
      if late > worst then worst = late end
      if heap < last_heap then gc_stalls = gc_stalls + 1 end
    end
    last, last_cpu, last_heap = now, c, heap
  end)
  every:start(30000, 30000, function()
    io.stderr:write(("server: heap %.0f KiB, %d GC cycles, %d stalls > 40 ms (worst %.0f ms, total %.0f ms, "
      .. "on CPU %.0f ms, %d with the heap shrinking)\n")
      :format(collectgarbage("count"), cycles, stalls, worst, stalled, stalled_cpu, gc_stalls))
    stalls, worst, stalled, stalled_cpu, gc_stalls, cycles = 0, 0, 0, 0, 0, 0
  end)
  server:hook("server/stopping", function()
    probe:close(); every:close()
    local conn = hs.store.conn
    local hk = housekeeper
    io.stderr:write(("server: %d commit groups, %.2f members each; %d checkpoints, longest %.1f ms\n"):format(
      conn.group_commits, conn.group_members / math.max(1, conn.group_commits),
      hk and hk:stats().checkpoints or 0, hk and hk:stats().max_ms or 0))
  end)
end
io.stdout:write(("ready %d %d %s %s\n"):format(server:port(), uv.os_getpid(), login.access_token, room_id))
io.stdout:flush()
server:run()
