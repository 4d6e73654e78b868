-- B5: federation over a large DAG.
--
--   1. serving /backfill (limit 100) and /get_missing_events (limit 20) in a
--      room of 100k events with forks: the store's walk (one recursive
--      statement) plus loading the events and making their PDUs — what the
--      handler does besides HTTP; target < 2 ms each. Baseline in the same
--      process: the storage engine alone reading 100 (or 20) rows of the
--      room by its depth index, without any graph walk (the floor).
--   2. receiving a transaction of 50 signed PDUs (signatures, content hashes,
--      auth against auth events, the state before each, soft-failure check),
--      through the federation endpoint of a lab server (in-memory transport,
--      no sockets); target < 50 ms per transaction.
--   3. three lab servers exchanging 10,000 messages over slow links, then
--      converging (lab:check): the time it takes.
--
-- Usage: LUA_PATH='lua/?.lua;lua/?/init.lua;spec/?.lua;;' LUA_CPATH='build/release/?.so;;' \
--          lua5.4 bench/b5_federation.lua [events] [lab-messages]
-- (defaults 100000 and 10000). Times are CPU time (os.clock) for 1 and wall
-- time (the loop's clock) for 2 and 3.
local core = require "loom.core"
local store_mod = require "loom.store"
local event_mod = require "loom.room.event"
local lab_mod = require "loom.lab"
local uv = require "luv"

local N = tonumber(arg and arg[1]) or 100000
local LAB_MESSAGES = tonumber(arg and arg[2]) or 10000
local clock = os.clock

local function pct(list, p)
  table.sort(list)
  return list[math.max(1, math.ceil(#list * p))]
end

local function report(name, ms)
  print(("  %-44s median %7.3f ms   p99 %7.3f ms"):format(name, pct(ms, 0.5), pct(ms, 0.99)))
  return pct(ms, 0.5)
end

-- ---- 1. serving backfill and get_missing_events ------------------------------

local function serving()
  local dir = assert(uv.fs_mkdtemp("/tmp/loom-b5-XXXXXX"))
  local path = dir .. "/b5.db"
  local s = assert(store_mod.open { path = path, synchronous = "OFF" })
  local room = "!b5:bench"
  -- a DAG with forks: mostly a chain, every 50th event a fork of 2-4
  -- branches of 1-5 events that the next event merges
  local rng = 12345
  local function rand(n)
    rng = (rng * 1103515245 + 12345) % 2147483648
    return rng % n
  end
  local ids, depth_of = {}, {}
  local tips = {}
  local t0 = clock()
  local n = 0
  local function add(prevs)
    n = n + 1
    local id = ("$e%07d"):format(n)
    local depth = 0
    for _, p in ipairs(prevs) do if depth_of[p] > depth then depth = depth_of[p] end end
    depth = depth + 1
    local ev = { room_id = room, type = "m.room.message", sender = "@u" .. (n % 50) .. ":bench", depth = depth,
      origin_server_ts = 1000 + n, prev_events = prevs, auth_events = {},
      content = { msgtype = "m.text", body = "message " .. n } }
    assert(s:persist(id, ev, {}))
    ids[#ids + 1] = id
    depth_of[id] = depth
    return id
  end
  s:transaction(function()
    tips = { add({}) }
    while n < N do
      if n % 50 == 0 then
        local branches = {}
        for b = 1, 2 + rand(3) do
          local tip = tips[1]
          for _ = 1, 1 + rand(5) do tip = add({ tip }) end
          branches[b] = tip
        end
        tips = { add(branches) }
      else
        tips = { add(tips) }
      end
      if n % 10000 == 0 then
        -- commit in slices
        s.conn:exec("SAVEPOINT slice"); s.conn:exec("RELEASE slice")
      end
    end
    return true
  end)
  print(("built a %d-event DAG with forks in %.1f s"):format(n, clock() - t0))
  local rn = s:room_nid(room)
  local ROUNDS = 300
  local walk_b, walk_m, floor_b, floor_m = {}, {}, {}, {}
  for _ = 1, ROUNDS do
    local pick = ids[1 + rand(#ids)]
    local t = clock()
    local nids = s:backfill_walk(rn, { pick }, 100)
    local loaded = s:events_by_nid(nids)
    local out = {}
    for i, nid in ipairs(nids) do out[i] = event_mod.pdu(loaded[nid][1]) end
    walk_b[#walk_b + 1] = (clock() - t) * 1000
    assert(#out == #nids and #out > 0)
    t = clock()
    local latest = ids[1 + rand(#ids)]
    local m = s:missing_events_walk(rn, {}, { latest }, 0, 20)
    local ml = s:events_by_nid(m)
    local mout = {}
    for i, nid in ipairs(m) do mout[i] = event_mod.pdu(ml[nid][1]) end
    walk_m[#walk_m + 1] = (clock() - t) * 1000
    assert(#mout == #m)
    -- the floor: the same number of rows of the room by its depth index
    local d = depth_of[pick]
    t = clock()
    local rows = s.conn:all([[SELECT event_nid, json FROM events WHERE room_nid = ? AND depth <= ?
      AND outlier = 0 AND rejected = 0 AND soft_failed = 0 ORDER BY depth DESC LIMIT 100]], rn, d)
    for _, r in ipairs(rows) do core.json.decode(r[2]) end
    floor_b[#floor_b + 1] = (clock() - t) * 1000
    t = clock()
    rows = s.conn:all([[SELECT event_nid, json FROM events WHERE room_nid = ? AND depth <= ?
      AND outlier = 0 AND rejected = 0 AND soft_failed = 0 ORDER BY depth DESC LIMIT 20]], rn, depth_of[latest])
    for _, r in ipairs(rows) do core.json.decode(r[2]) end
    floor_m[#floor_m + 1] = (clock() - t) * 1000
  end
  print("1. serving (" .. ROUNDS .. " requests each, random starting events)")
  local a = report("/backfill limit 100: walk + load + PDUs", walk_b)
  local fa = report("  floor: 100 rows by depth index", floor_b)
  local b = report("/get_missing_events limit 20", walk_m)
  local fb = report("  floor: 20 rows by depth index", floor_m)
  print(("  ratio to floor: backfill %.1fx, get_missing_events %.1fx (targets: < 2 ms each)"):format(a / fa, b / fb))
  s:close()
  os.remove(path); os.remove(path .. "-wal"); os.remove(path .. "-shm")
  uv.fs_rmdir(dir)
end

-- ---- 2 and 3: the lab ------------------------------------------------------------

local function ingest()
  local lab = lab_mod.new { seed = 5 }
  local a, b = lab:server("a.b5"), lab:server("b.b5")
  local times = {}
  -- time b's handling of every /send carrying 50 PDUs
  local deliver = lab.deliver
  lab.deliver = function(self, from, dest, method, target, headers, body, timeout)
    local is_txn = dest == "b.b5" and method == "PUT" and target:find("/send/", 1, true)
    local t = uv.hrtime()
    local st, h, bd = deliver(self, from, dest, method, target, headers, body, timeout)
    if is_txn and body then
      local doc = core.json.decode(body)
      if doc and #doc.pdus == 50 then times[#times + 1] = (uv.hrtime() - t) / 1e6 end
    end
    return st, h, bd
  end
  lab:run(function()
    local alice, bob = a:register("alice"), b:register("bob")
    local room = a:create_room(alice, { preset = "public_chat" })
    b:join(bob, room, { "a.b5" })
    assert(lab:settle())
    for _ = 1, 30 do
      -- a's sender held while 50 messages queue up: they go as one transaction
      a.hs.sender.closed = true
      for i = 1, 50 do a:say(alice, room, "ingest " .. i) end
      a.hs.sender.closed = false
      a.hs.sender:kick("b.b5")
      assert(lab:settle())
    end
    lab:backfill(room)
    local report_ = lab:check(room)
    assert(report_.ok, table.concat(report_.problems, "; "))
  end, 600000)
  lab:close()
  print("2. receiving transactions of 50 signed PDUs (" .. #times .. " transactions, lab transport)")
  report("/send with 50 PDUs, whole handler", times)
  print("  (target < 50 ms)")
end

local function converge()
  local lab = lab_mod.new { seed = 9 }
  local names = { "a.b5", "b.b5", "c.b5" }
  local servers = {}
  for i, nm in ipairs(names) do servers[i] = lab:server(nm) end
  local t0
  local result
  lab:run(function()
    local users = {}
    for i, s in ipairs(servers) do users[i] = s:register("u" .. i) end
    local room = servers[1]:create_room(users[1], { preset = "public_chat" })
    servers[2]:join(users[2], room, { "a.b5" })
    servers[3]:join(users[3], room, { "a.b5" })
    for _, x in ipairs(names) do
      for _, y in ipairs(names) do
        if x ~= y then lab:link(x, y, { delay = 2, jitter = 5 }) end
      end
    end
    t0 = uv.hrtime()
    local r = lab.random
    for i = 1, LAB_MESSAGES do
      local k = 1 + (r() * 3) // 1
      servers[k]:say(users[k], room, "m" .. i)
    end
    local sent = (uv.hrtime() - t0) / 1e9
    assert(lab:settle(600000))
    lab:backfill(room)
    local settled = (uv.hrtime() - t0) / 1e9
    result = { lab:check(room), sent, settled }
  end, 900000)
  lab:close()
  local check, sent, settled = result[1], result[2], result[3]
  print(("3. three servers, %d messages over 2-7 ms links: sent in %.1f s, converged after %.1f s: %s"):format(
    LAB_MESSAGES, sent, settled, check.ok and "converged" or ("NOT converged: " .. table.concat(check.problems, "; "))))
  print(("   (%.0f events/s across the lab; requests %d)"):format(LAB_MESSAGES / settled, lab.stats.requests))
end

print(("B5 federation (%s)"):format(os.date("!%Y-%m-%d %H:%M UTC")))
serving()
ingest()
converge()
