-- B1-store: backward pages of 50 with a type filter from random positions of
-- a 1M-event room (and of a room that forks every ~1k events), in process.
--
-- Three ways over the same database, in the same process:
--   loom       store:paginate — split-range bounds, prepared statements, one
--              query part at a time, rows and event JSON in one batch
--   reference  the reference stream store's shape: the OR-form bound built
--              into SQL text with the values formatted in, fetching the rows
--              and then the events by ID in a second query
--   floor      one prepared, indexed range scan of the same rows stepped in
--              C (stmt:drain), building no Lua values
--
-- Usage: lua5.4 bench/b1_store.lua [events-per-room] (default 1000000).
-- The database is built once into bench/data/ and reused.
local uv = require "luv"
local store_mod = require "loom.store"
local core = require "loom.core"
local json, token = core.json, core.token

local N = tonumber(arg and arg[1]) or tonumber(os.getenv("LOOM_B1_EVENTS")) or 1000000
local PAGES, PAGE = 100, 50
local DIR = "bench/data"
local PATH = ("%s/b1-%d.db"):format(DIR, N)

local function now() return uv.hrtime() end

local function build_room(s, room, n, fork_every)
  local t0 = now()
  local batch, prev, depth = {}, json.array {}, 0
  local fork = nil       -- the other branch's tip while a fork is open
  for i = 1, n do
    depth = depth + 1
    local id = ("$%s_%d"):format(room:sub(2, 2), i)
    local ty, content, sk = "m.room.message", { msgtype = "m.text", body = "message number " .. i }, nil
    local r = i % 10
    if r == 3 then ty, content = "m.reaction", { ["m.relates_to"] = { rel_type = "m.annotation",
      event_id = prev[1] or "$x", key = "+1" } }
    elseif r == 7 then ty, sk, content = "m.room.member", ("@user%d:bench"):format(i % 500),
      { membership = "join", displayname = "User " .. (i % 500) }
    end
    local ev = { room_id = room, type = ty, state_key = sk, sender = ("@user%d:bench"):format(i % 500),
      depth = depth, origin_server_ts = 1700000000000 + i, prev_events = prev, auth_events = json.array {},
      content = content }
    batch[#batch + 1] = { id, ev }
    -- forks: every fork_every events a second branch grows for 20 events
    if fork_every and i % fork_every == 0 then fork = { id = id, depth = depth, left = 20 } end
    if fork and fork.left > 0 and i % fork_every ~= 0 then
      fork.left = fork.left - 1
      local fid = id .. "f"
      local fev = { room_id = room, type = "m.room.message", sender = "@forker:bench", depth = fork.depth + 1,
        origin_server_ts = 1700000000000 + i, prev_events = json.array { fork.id }, auth_events = json.array {},
        content = { msgtype = "m.text", body = "fork " .. i } }
      batch[#batch + 1] = { fid, fev }
      fork.id, fork.depth = fid, fork.depth + 1
      prev = json.array { id }
      if fork.left == 0 then prev = json.array { id, fid }; fork = nil end
    else
      prev = json.array { id }
    end
    if #batch >= 5000 or i == n then
      assert(s:persist_events(batch))
      batch = {}
    end
  end
  return (now() - t0) / 1e9
end

local function percentile(sorted, p)
  local idx = math.max(1, math.ceil(#sorted * p))
  return sorted[idx]
end

local function stats(samples)
  table.sort(samples)
  return percentile(samples, 0.5) / 1e6, percentile(samples, 0.99) / 1e6
end

-- The reference shape: values formatted into SQL text, OR-form bound, rows
-- first, then the events by ID.
local function reference_page(conn, room_nid, tok, type_nid)
  local bound_sql = ("(%d > depth OR (%d = depth AND %d >= stream_ordering))"):format(
    tok.depth, tok.depth, tok.stream)
  local sql = ("SELECT * FROM events WHERE outlier = 0 AND rejected = 0 AND soft_failed = 0" ..
    " AND room_nid = %d AND %s AND (type_nid = %d)" ..
    " ORDER BY depth DESC, stream_ordering DESC LIMIT %d"):format(room_nid, bound_sql, type_nid, PAGE)
  local stmt = assert(conn.handle:prepare(sql))
  local rows = stmt:all()
  stmt:finalize()
  local quoted = {}
  for i, r in ipairs(rows) do quoted[i] = "'" .. r[2]:gsub("'", "''") .. "'" end
  local stmt2 = assert(conn.handle:prepare("SELECT event_id, json FROM events WHERE event_id IN (" ..
    table.concat(quoted, ",") .. ")"))
  local evs = stmt2:all()
  stmt2:finalize()
  local by_id = {}
  for _, e in ipairs(evs) do by_id[e[1]] = e[2] end
  local out = {}
  for i, r in ipairs(rows) do out[i] = { event_id = r[2], json = by_id[r[2]] } end
  return out
end

local function measure(s, room)
  local conn = s.conn
  local room_nid = s:room_nid(room)
  local type_nid = s:type_nid("m.room.message")
  local lo, hi = table.unpack(conn:first(
    "SELECT min(stream_ordering), max(stream_ordering) FROM events WHERE room_nid = ?", room_nid))
  math.randomseed(42)
  local positions = {}
  for i = 1, PAGES do
    local row
    repeat
      row = conn:first("SELECT depth, stream_ordering FROM events WHERE room_nid = ? AND stream_ordering >= ?" ..
        " AND outlier = 0 AND rejected = 0 AND soft_failed = 0 ORDER BY stream_ordering LIMIT 1",
        room_nid, math.random(lo, hi))
    until row
    positions[i] = token.topological(row[1], row[2])
  end
  local filter = { types = { "m.room.message" } }
  local floor_stmt = assert(conn.handle:prepare(
    "SELECT event_id, json FROM events WHERE room_nid = ? AND outlier = 0 AND rejected = 0 AND soft_failed = 0" ..
    " AND depth <= ? AND type_nid = ? ORDER BY depth DESC, stream_ordering DESC LIMIT ?"))

  -- warm up every path once over all positions
  for _, tok in ipairs(positions) do
    s:paginate(room, tok, { dir = "b", limit = PAGE, filter = filter })
    reference_page(conn, room_nid, tok, type_nid)
    floor_stmt:drain(room_nid, tok.depth, type_nid, PAGE)
  end

  -- Each path runs over all positions in its own phase, after a full
  -- collection, so that no path pays for another's garbage.
  local t_loom, t_ref, t_floor = {}, {}, {}
  local rounds = 5
  local pages, refs = {}, {}
  for round = 1, rounds do
    collectgarbage()
    for i, tok in ipairs(positions) do
      local t0 = now()
      pages[i] = s:paginate(room, tok, { dir = "b", limit = PAGE, filter = filter })
      t_loom[#t_loom + 1] = now() - t0
    end
    collectgarbage()
    for i, tok in ipairs(positions) do
      local t0 = now()
      refs[i] = reference_page(conn, room_nid, tok, type_nid)
      t_ref[#t_ref + 1] = now() - t0
    end
    collectgarbage()
    for i, tok in ipairs(positions) do
      local t0 = now()
      local rows = floor_stmt:drain(room_nid, tok.depth, type_nid, PAGE)
      t_floor[#t_floor + 1] = now() - t0
      assert(rows >= #refs[i] - 1)
    end
    if round == 1 then
      for i = 1, #positions do
        local page, ref = pages[i], refs[i]
        assert(#page.events == #ref, "loom and reference disagree on the page size")
        for j = 1, #ref do assert(page.events[j].event_id == ref[j].event_id, "pages differ") end
      end
    end
  end
  floor_stmt:finalize()
  local l50, l99 = stats(t_loom)
  local r50, r99 = stats(t_ref)
  local f50, f99 = stats(t_floor)
  return { l50 = l50, l99 = l99, r50 = r50, r99 = r99, f50 = f50, f99 = f99, n = #t_loom }
end

local function report(name, m)
  print(("%-22s pages=%d  loom p50 %.3f ms p99 %.3f ms | reference p50 %.3f ms p99 %.3f ms | floor p50 %.3f ms p99 %.3f ms")
    :format(name, m.n, m.l50, m.l99, m.r50, m.r99, m.f50, m.f99))
  print(("%-22s loom/floor %.2fx (target <= 3x)   reference/loom %.1fx   loom p50 %s 0.5 ms target")
    :format("", m.l50 / m.f50, m.r50 / m.l50, m.l50 < 0.5 and "meets" or "MISSES"))
end

os.execute("mkdir -p " .. DIR)
local fresh = io.open(PATH, "rb") == nil
local s = assert(store_mod.open { path = PATH, synchronous = "OFF" })
if fresh or not s:room_nid("!linear:bench") or not s:room_nid("!forked:bench") then
  io.write(("building %d events in a linear room ... "):format(N)); io.flush()
  local secs = build_room(s, "!linear:bench", N)
  print(("%.1f s (%.0f events/s through store:persist_events)"):format(secs, N / secs))
  io.write(("building %d events in a room forking every 1000 ... "):format(N)); io.flush()
  secs = build_room(s, "!forked:bench", N, 1000)
  print(("%.1f s"):format(secs))
  s.conn:exec("ANALYZE")
end
print(("B1-store: %d backward pages of %d with a type filter, x5 rounds; sqlite %s")
  :format(PAGES, PAGE, core.sqlite.version()))
report("linear room", measure(s, "!linear:bench"))
report("forked room", measure(s, "!forked:bench"))
s:close()
