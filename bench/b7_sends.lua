-- B7-sends: PUT /rooms/{id}/send throughput and latency, durable commits with
-- group commit against the old setting (synchronous = NORMAL, a COMMIT per
-- send), in one run. The server is a child process (spec/support/send_server.lua)
-- over a fresh database; 8 clients in this process send over keep-alive
-- connections, each its next message as soon as the previous is acknowledged.
-- Targets for durable + group commit: >= 1,400 sends/s, p99 < 10 ms.
--
-- Usage: lua5.4 bench/b7_sends.lua [sends per client (default 1000)] [clients (default 8)]
local load = dofile "bench/send_load.lua"

local EACH = tonumber(arg and arg[1]) or 1000
local CLIENTS = tonumber(arg and arg[2]) or 8
local lua = arg and arg[-1] or "lua5.4"

local modes = {
  { "durable + group commit (FULL)", "FULL", "group" },
  { "baseline (NORMAL, no group commit)", "NORMAL", "nogroup" },
  { "durable, no group commit (FULL)", "FULL", "nogroup" },
  { "not durable, group commit (NORMAL)", "NORMAL", "group" },
}
if os.getenv("B7_MODES") then       -- e.g. B7_MODES=1,4: only those rows
  local keep = {}
  for i in os.getenv("B7_MODES"):gmatch("%d+") do keep[#keep + 1] = modes[tonumber(i)] end
  modes = keep
end

os.execute("mkdir -p bench/data")
for _, m in ipairs(modes) do
  local path = "bench/data/b7-sends.db"
  for _, sfx in ipairs { "", "-wal", "-shm" } do os.remove(path .. sfx) end
  local child = assert(io.popen(("exec env LOOM_BENCH_STATS=1 %s spec/support/send_server.lua %s %s %s")
    :format(lua, path, m[2], m[3]), "r"))
  local port, pid, token, room = child:read("l"):match("^ready (%d+) (%d+) (%S+) (%S+)$")
  assert(port, "server did not start")
  local o = { port = tonumber(port), token = token, room = room, clients = CLIENTS }
  o.each = 50
  load.run(o)                                    -- warm up
  o.each = EACH
  local st = load.run(o)
  os.execute("kill " .. pid)
  child:close()
  assert(st.failed == 0, "sends failed")
  print(("%-36s %6d sends in %.2f s: %6.0f sends/s  p50 %6.2f ms  p99 %6.2f ms  max %6.2f ms"):format(
    m[1], st.ok, st.seconds, st.ok / st.seconds, load.pct(st.latencies, 0.5), load.pct(st.latencies, 0.99),
    load.pct(st.latencies, 1)))
end
for _, sfx in ipairs { "", "-wal", "-shm" } do os.remove("bench/data/b7-sends.db" .. sfx) end
