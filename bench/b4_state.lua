-- B4-state: storage per state change, and the full state at a random event.
--
-- A room of 10,000 joins, 2,000 other state changes (1,900 new keys of a
-- dozen types, 100 replacements: power levels, name, topic, profile changes)
-- and 200,000 messages, interleaved at random, written the way the event
-- store writes them: the event row, then in the same transaction the state
-- after it (state.snapshot_for), its before/after pointers
-- (state.set_event_state) and the room's current state (state.set_current).
--
-- Figures:
--   1. bytes of state storage per state change, amortised: real pages from
--      SQLite's dbstat (state_blocks + its hash index, state_segments,
--      state_snapshot_hashes, state_meta). Reported beside it: the
--      per-event pointers (two columns on events, measured as the size of a
--      packed copy of events with them minus one without), and the
--      current_state table (per room, the size of one state).
--   2. the full state at a random event, cold (cache dropped first): event
--      pointer lookup + segment chain + blocks + decode + build, median and
--      p99, over random events and over events whose state has >= 11,500
--      entries.
-- Baseline, same process, same states: every state stored in full, one row
-- per (state group, type, state key) in a WITHOUT ROWID table keyed by NIDs.
-- Its bytes per row are measured with dbstat on every 50th state group
-- (LOOM_B4_BASELINE_EVERY) and multiplied by the exact number of rows all
-- the groups would take.
--
-- Usage: LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/release/?.so;;' lua5.4 bench/b4_state.lua
local store_mod = require "loom.store"
local state = require "loom.store.state"
local core = require "loom.core"

local ok_uv, uv = pcall(require, "luv")
local function now() return ok_uv and uv.hrtime() or os.clock() * 1e9 end

local JOINS = tonumber(os.getenv("LOOM_B4_JOINS")) or 10000
local OTHERS = tonumber(os.getenv("LOOM_B4_OTHERS")) or 2000
local MESSAGES = tonumber(os.getenv("LOOM_B4_MESSAGES")) or 200000
local BASELINE_EVERY = tonumber(os.getenv("LOOM_B4_BASELINE_EVERY")) or 50
local SAMPLES = 400
local DIR = "bench/data"
local PATH = DIR .. "/b4-state.db"

local T_CREATE, T_POWER, T_JOIN_RULES, T_MEMBER, T_HISTORY, T_NAME, T_TOPIC = 1, 2, 3, 5, 7, 9, 10
local T_MESSAGE = 8
-- m.space.child, m.room.server_acl, m.room.pinned_events and custom types
local CUSTOM = { 22, 16, 18, 1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008 }

local function percentile(sorted, p) return sorted[math.max(1, math.ceil(#sorted * p))] end

os.execute("mkdir -p " .. DIR)
for _, sfx in ipairs { "", "-wal", "-shm" } do os.remove(PATH .. sfx) end
local s = assert(store_mod.open { path = PATH, synchronous = "OFF" })
local conn = s.conn

-- The plan: which events are state changes, and of what kind.
math.randomseed(4)
local kinds = {}
for _ = 1, JOINS do kinds[#kinds + 1] = "join" end
for _ = 1, OTHERS - OTHERS // 20 do kinds[#kinds + 1] = "new" end
for _ = 1, OTHERS // 20 do kinds[#kinds + 1] = "replace" end
for i = #kinds, 2, -1 do local j = math.random(i); kinds[i], kinds[j] = kinds[j], kinds[i] end
table.insert(kinds, 1, "create")
local total = #kinds + MESSAGES
local is_state = {}
do
  local positions = { 1 }
  local chosen = { [1] = true }
  while #positions < #kinds do
    local p = math.random(2, total)
    if not chosen[p] then chosen[p] = true; positions[#positions + 1] = p end
  end
  table.sort(positions)
  for i, p in ipairs(positions) do is_state[p] = kinds[i] end
end

local room_nid = assert(s:ensure_room_nid("!b4:bench", "10"))
local next_sk = 2               -- state key NIDs; 1 is ""
local members = {}
local custom_count = 0

local function state_change(kind, nid)
  if kind == "create" then return { T_CREATE, 1, nid } end
  if kind == "join" then
    next_sk = next_sk + 1
    members[#members + 1] = next_sk
    return { T_MEMBER, next_sk, nid }
  end
  if kind == "new" then
    custom_count = custom_count + 1
    next_sk = next_sk + 1
    return { CUSTOM[custom_count % #CUSTOM + 1], next_sk, nid }
  end
  local r = math.random(5)
  if r == 1 and #members > 0 then return { T_MEMBER, members[math.random(#members)], nid } end
  return ({ { T_POWER, 1, nid }, { T_NAME, 1, nid }, { T_TOPIC, 1, nid }, { T_JOIN_RULES, 1, nid },
            { T_HISTORY, 1, nid } })[r]
end

-- Baseline table: every state in full.
conn:exec([[CREATE TABLE b4_full_state (
  state_group INTEGER NOT NULL, type_nid INTEGER NOT NULL, state_key_nid INTEGER NOT NULL,
  event_nid INTEGER NOT NULL, PRIMARY KEY (state_group, type_nid, state_key_nid)) WITHOUT ROWID]])

io.write(("building %d events (%d state changes) ... "):format(total, #kinds)); io.flush()
local t_build = now()
local t_state, n_changes = 0, 0
local before = 0
local event_sizes = {}          -- event nid -> size of the state after it
local baseline_rows, baseline_sampled_rows, baseline_groups = 0, 0, 0
local insert_event = [[INSERT INTO events (event_nid, event_id, room_nid, type_nid, state_key_nid, sender,
  depth, stream_ordering, origin_server_ts, max_depth, json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '{}')]]
local size = 0
local BATCH = 2000
local i = 0
while i < total do
  assert(conn:transaction(function()
    for _ = 1, BATCH do
      i = i + 1
      if i > total then break end
      local kind = is_state[i]
      local t = kind and (kind == "create" and T_CREATE or T_MEMBER) or T_MESSAGE
      assert(conn:run(insert_event, i, "$" .. i, room_nid, t, kind and 1 or nil, "@u:bench", i, i,
        1700000000000 + i, i))
      if kind then
        local t0 = now()
        local d = { state_change(kind, i) }
        local after, st = assert(state.snapshot_for(s, before, d))
        assert(state.set_event_state(s, i, before, after))
        assert(state.set_current(s, room_nid, d))
        t_state = t_state + (now() - t0)
        n_changes = n_changes + 1
        size = #st
        baseline_rows = baseline_rows + size
        if n_changes % BASELINE_EVERY == 0 then
          baseline_groups = baseline_groups + 1
          local ts, ks, es = st:entries()
          for j = 1, #ts do
            assert(conn:run("INSERT INTO b4_full_state VALUES (?, ?, ?, ?)", n_changes, ts[j], ks[j], es[j]))
          end
          baseline_sampled_rows = baseline_sampled_rows + #ts
        end
        before = after
      else
        assert(state.set_event_state(s, i, before))
      end
      event_sizes[i] = size
    end
    return true
  end))
end
print(("%.1f s; state work %.1f µs per state change"):format((now() - t_build) / 1e9, t_state / 1e3 / n_changes))

-- 1. Bytes.
local function pages(names)
  local q = {}
  for j, n in ipairs(names) do q[j] = "'" .. n .. "'" end
  return conn:value("SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name IN (" .. table.concat(q, ",") .. ")")
end
conn:exec("PRAGMA wal_checkpoint(TRUNCATE)")
local state_tables = { "state_blocks", "state_blocks_hash", "state_segments", "state_snapshot_hashes", "state_meta" }
local state_bytes = pages(state_tables)
local stats = assert(state.stats(s))
local current_bytes = pages { "current_state", "current_state_key" }

-- per-event pointers: packed copies of events with and without the two columns
local cols = [[event_nid INTEGER PRIMARY KEY, event_id TEXT NOT NULL, room_nid INTEGER NOT NULL,
  type_nid INTEGER NOT NULL, state_key_nid INTEGER, sender TEXT NOT NULL, depth INTEGER NOT NULL,
  stream_ordering INTEGER NOT NULL, outlier INTEGER NOT NULL, rejected INTEGER NOT NULL,
  soft_failed INTEGER NOT NULL, origin_server_ts INTEGER NOT NULL, contains_url INTEGER NOT NULL,
  max_depth INTEGER NOT NULL, json TEXT NOT NULL]]
local names = [[event_nid, event_id, room_nid, type_nid, state_key_nid, sender, depth, stream_ordering,
  outlier, rejected, soft_failed, origin_server_ts, contains_url, max_depth, json]]
assert(conn:exec("CREATE TABLE b4_ev_without (" .. cols .. ")"))
assert(conn:exec("CREATE TABLE b4_ev_with (" .. cols .. ", state_before INTEGER, state_after INTEGER)"))
assert(conn:exec("INSERT INTO b4_ev_without SELECT " .. names .. " FROM events ORDER BY event_nid"))
assert(conn:exec("INSERT INTO b4_ev_with SELECT " .. names .. ", state_before, state_after FROM events ORDER BY event_nid"))
conn:exec("PRAGMA wal_checkpoint(TRUNCATE)")
local ptr_bytes = pages { "b4_ev_with" } - pages { "b4_ev_without" }
local ptr_in_place = pages { "events" } - pages { "b4_ev_without" }

local baseline_per_row = pages { "b4_full_state" } / baseline_sampled_rows
local baseline_bytes = baseline_per_row * baseline_rows
local loom_per_change = state_bytes / n_changes
local base_per_change = baseline_bytes / n_changes

print(("B4-state: %d events, %d state changes, final state %d entries; sqlite %s, bytes from dbstat (real pages)")
  :format(total, n_changes, size, core.sqlite.version()))
print(("  stored: %d snapshots in %d segments (%d B of blobs), %d blocks (%d B of blobs), hash buckets %d (%d B),"
  .. " %d hash bits"):format(stats.snapshots, stats.segments, stats.segment_bytes, stats.blocks, stats.block_bytes,
  stats.buckets, stats.bucket_bytes, stats.hash_bits))
print(("  loom state storage      %9d B = %6.1f B per state change (target <= 32: %s)")
  :format(state_bytes, loom_per_change, loom_per_change <= 32 and "meets" or "MISSES"))
do
  local parts = {}
  for _, name in ipairs(state_tables) do parts[#parts + 1] = ("%s %d"):format(name, pages { name }) end
  print("    pages: " .. table.concat(parts, ", "))
end
print(("  baseline, full states   %9.0f B = %6.0f B per state change (%.1f B/row x %d rows; measured on %d groups)")
  :format(baseline_bytes, base_per_change, baseline_per_row, baseline_rows, baseline_groups))
print(("  baseline / loom         %9.0fx"):format(base_per_change / loom_per_change))
print(("  per-event pointers      %9d B = %6.2f B per event (packed; %.2f B per event as written in place)")
  :format(ptr_bytes, ptr_bytes / total, ptr_in_place / total))
print(("  current_state table     %9d B for %d entries (per room, not per change)"):format(current_bytes, size))

-- 2. Full state at a random event, cold.
local function sample(filter)
  local picks = {}
  while #picks < SAMPLES do
    local e = math.random(1, total)
    if filter(e) then picks[#picks + 1] = e end
  end
  return picks
end

local function timed(picks, cold)
  local times, entries = {}, 0
  for round = 1, 3 do
    for _, e in ipairs(picks) do
      if cold then state.clear_cache(s) end
      collectgarbage("step", 0)
      local t0 = now()
      local _, after = assert(state.event_state(s, e))
      local st = assert(state.load(s, after))
      times[#times + 1] = now() - t0
      if round == 1 then
        assert(#st == event_sizes[e])
        entries = entries + #st
      end
    end
  end
  table.sort(times)
  return percentile(times, 0.5) / 1e6, percentile(times, 0.99) / 1e6, entries / #picks
end

math.randomseed(11)
local any = sample(function() return true end)
local big = sample(function(e) return event_sizes[e] >= 11500 end)
local m1, p1, n1 = timed(any, true)
local m2, p2, n2 = timed(big, true)
print(("  full state, random event        cold: median %.3f ms, p99 %.3f ms (mean %.0f entries)"):format(m1, p1, n1))
print(("  full state, event with >= 11.5k cold: median %.3f ms, p99 %.3f ms (mean %.0f entries; target < 1 ms: %s)")
  :format(m2, p2, n2, m2 < 1 and "meets" or "MISSES"))
s:close()
