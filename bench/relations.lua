-- Relations and threads: GET /relations and GET /threads through the
-- endpoint handlers, in process (no HTTP), on a room with THREADS thread
-- roots (default 10000), each with one reply, and one big thread of
-- BIG replies with as many reactions on its root. Baseline, in the same
-- process and room: a /messages page of the same size. Each figure is the
-- handler plus encoding the JSON answer; median and p99 over RUNS calls,
-- and the ratio of the medians against /messages.
--
--   threads-all        /threads?limit=20 (newest activity first)
--   threads-deep       /threads?limit=20 from a token half way down
--   threads-mine       /threads?include=participated&limit=20 (bob: every 10th thread)
--   relations          /relations/{big root}?limit=20
--   relations-thread   /relations/{big root}/m.thread?limit=20 from a token half way
--   messages (base)    /messages?dir=b&limit=20
--
-- Usage: lua5.4 bench/relations.lua [threads] (default 10000).
local uv = require "luv"
local core = require "loom.core"
local loom = require "loom"
local api = require "loom.api"
local request = require "loom.http.request"

local THREADS = tonumber(arg and arg[1]) or 10000
local BIG, RUNS, BATCH = 500, 200, 500
local json = core.json

local function now() return uv.hrtime() end
local function remove(p) for _, s in ipairs { "", "-wal", "-shm" } do os.remove(p .. s) end end

local path = os.tmpname()
os.remove(path)
path = path .. ".db"
local server = loom.new { port = 0, server_name = "bench", log_level = "error",
  database = { path = path, synchronous = "NORMAL" }, logger = function() end }
local hs = api.install(server)

local function route(module, method, suffix)
  for _, r in ipairs(require(module).routes) do
    if r[1] == method and r[2]:sub(-#suffix) == suffix then return r[3] end
  end
  error("no route " .. suffix)
end
local create = route("loom.api.client.rooms", "POST", "/createRoom")
local join = route("loom.api.client.rooms", "POST", "/rooms/{roomId}/join")
local relations = route("loom.api.client.relations", "GET", "/relations/{eventId}")
local relations_typed = route("loom.api.client.relations", "GET", "/relations/{eventId}/{relType}")
local threads = route("loom.api.client.relations", "GET", "/threads")
local messages = route("loom.api.client.sync", "GET", "/messages")

local alice, bob = "@alice:bench", "@bob:bench"
local function req(user, params, args, body)
  local a = {}
  for k, v in pairs(args or {}) do a[k] = { v } end
  return request.new { user_id = user, params = params or {}, args = a, headers = {},
    body = body and json.encode(body) or nil }
end

local room = assert(create(hs, req(alice, nil, nil, { preset = "public_chat" })).room_id)
assert(join(hs, req(bob, { roomId = room }, nil, {})).room_id)

local function send(sender, content, etype)
  local ev = assert(hs.rooms:send(room, { type = etype or "m.room.message", sender = sender, content = content }))
  return ev.event_id
end
local function text(body, rel) return { msgtype = "m.text", body = body, ["m.relates_to"] = rel } end

local t0 = now()
local roots = {}
for b = 0, THREADS - 1, BATCH do
  hs.store:transaction(function()
    for i = b + 1, math.min(THREADS, b + BATCH) do roots[i] = send(alice, text("root " .. i)) end
    return true
  end)
end
for b = 0, THREADS - 1, BATCH do
  hs.store:transaction(function()
    for i = b + 1, math.min(THREADS, b + BATCH) do
      send(i % 10 == 0 and bob or alice, text("reply " .. i, { rel_type = "m.thread", event_id = roots[i] }))
    end
    return true
  end)
end
local big = send(alice, text("the big thread"))
hs.store:transaction(function()
  for i = 1, BIG do
    send(bob, text("big reply " .. i, { rel_type = "m.thread", event_id = big }))
    send(alice, { ["m.relates_to"] = { rel_type = "m.annotation", event_id = big, key = "k" .. i } }, "m.reaction")
  end
  return true
end)
print(("%d threads (+ one of %d replies and %d reactions) sent in %.1f s"):format(THREADS, BIG, BIG,
  (now() - t0) / 1e9))

local function answer(res)
  if type(res) == "table" and res.status then error("handler failed: " .. tostring(res.body)) end
  return res
end

-- tokens half way down
local half_threads, half_relations
do
  local from
  for _ = 1, THREADS // 2 // 100 do
    local r = answer(threads(hs, req(alice, { roomId = room }, { limit = "100", from = from })))
    from = r.next_batch
  end
  half_threads = from
  local r = answer(relations_typed(hs, req(alice, { roomId = room, eventId = big, relType = "m.thread" },
    { limit = tostring(BIG // 2) })))
  half_relations = r.next_batch
end

-- wall clock, and the process's own CPU time (on a shared machine the wall
-- clock includes waiting for a core)
local function measure(fn)
  local times, cpu = {}, {}
  for i = 1, RUNS do
    local t1, c1 = now(), os.clock()
    local res = answer(fn())
    json.encode(res)
    times[i] = (now() - t1) / 1e6
    cpu[i] = (os.clock() - c1) * 1e3
    assert(#res.chunk > 0, "empty page")
  end
  table.sort(times)
  table.sort(cpu)
  return times[math.ceil(RUNS / 2)], times[math.ceil(RUNS * 0.99)], cpu[math.ceil(RUNS / 2)], cpu[math.ceil(RUNS * 0.99)]
end

local cases = {
  { "messages (base)", function() return messages(hs, req(alice, { roomId = room }, { dir = "b", limit = "20" })) end },
  { "threads-all", function() return threads(hs, req(alice, { roomId = room }, { limit = "20" })) end },
  { "threads-deep", function()
    return threads(hs, req(alice, { roomId = room }, { limit = "20", from = half_threads })) end },
  { "threads-mine", function()
    return threads(hs, req(bob, { roomId = room }, { limit = "20", include = "participated" })) end },
  { "relations", function()
    return relations(hs, req(alice, { roomId = room, eventId = big }, { limit = "20" })) end },
  { "relations-thread", function()
    return relations_typed(hs, req(alice, { roomId = room, eventId = big, relType = "m.thread" },
      { limit = "20", from = half_relations })) end },
}
print(("%d calls each, page of 20: wall median / p99 ms, CPU median / p99 ms, ratio of the CPU medians "
  .. "against /messages"):format(RUNS))
local base
for _, c in ipairs(cases) do
  local med, p99, cmed, cp99 = measure(c[2])
  base = base or cmed
  print(("  %-18s %8.3f %8.3f   %8.3f %8.3f   x%.2f"):format(c[1], med, p99, cmed, cp99, cmed / base))
end
hs.store:close()
remove(path)
