-- loom.store.state on a real SQLite file: snapshots against brute-force
-- replay, block sharing (counted, not just answered), content deduplication,
-- the current-state table, per-event pointers, rollbacks and reopening.
local store_mod = require "loom.store"
local state = require "loom.store.state"
local tmp = require "support.tmpdb"
local model = require "support.statemodel"
local key, apply_map, copy, sorted = model.key, model.apply, model.copy, model.sorted

local function signature(m)
  local parts = {}
  for i, v in ipairs(sorted(m)) do parts[i] = table.concat(v, ",") end
  return table.concat(parts, ";")
end

local function table_rows(s, room_nid)
  return s.conn:all([[SELECT type_nid, state_key_nid, event_nid FROM current_state
    WHERE room_nid = ? ORDER BY type_nid, state_key_nid]], room_nid)
end

-- A random change of a state map.
local function random_delta(rng, m, next_event)
  local keys = sorted(m)
  local d = {}
  local size = rng(1, 20) == 1 and rng(20, 60) or rng(1, 3)
  for _ = 1, size do
    local r = rng(1, 100)
    if r <= 10 and #keys > 0 then
      local v = keys[rng(1, #keys)]
      d[#d + 1] = { v[1], v[2], 0 }
    elseif r <= 40 and #keys > 0 then
      local v = keys[rng(1, #keys)]
      d[#d + 1] = { v[1], v[2], next_event() }
    else
      d[#d + 1] = { rng(1, 8), rng(1, 500), next_event() }
    end
  end
  return d
end

describe("state store", function()
  local path, s

  local function reopen()
    s:close()
    s = assert(store_mod.open { path = path })
  end

  before_each(function() s, path = tmp.open_store() end)
  after_each(function() tmp.close_store(s, path) end)

  it("stores random change sequences with forks; every snapshot loads as replayed", function()
    math.randomseed(2024)
    local rng = math.random
    local ev = 0
    local function next_event() ev = ev + 1; return ev end
    local snaps = { { nid = 0, map = {} } }
    local by_sig = { [signature({})] = 0 }
    for step = 1, 900 do
      local parent = snaps[#snaps]
      if rng(1, 10) <= 2 then parent = snaps[rng(1, #snaps)] end
      local m = copy(parent.map)
      local nid, st
      if step % 97 == 0 then
        -- a whole state, as state resolution produces, stored near its parent
        local d = random_delta(rng, m, next_event)
        apply_map(m, d)
        nid, st = assert(state.snapshot_from_entries(s, sorted(m), parent.nid))
      else
        local d = random_delta(rng, m, next_event)
        apply_map(m, d)
        nid, st = assert(state.snapshot_for(s, parent.nid, d))
      end
      assert.same(sorted(m), st:triples())
      local sig = signature(m)
      if by_sig[sig] then assert.equal(by_sig[sig], nid) else by_sig[sig] = nid end
      snaps[#snaps + 1] = { nid = nid, map = m }
    end
    -- different states have different NIDs
    local seen, stored = {}, 0
    for sig, nid in pairs(by_sig) do
      assert.is_nil(seen[nid], "two states share a NID")
      seen[nid] = sig
      if nid ~= 0 then stored = stored + 1 end
    end
    -- from the cache, then from the database
    for _, sn in ipairs(snaps) do assert.same(sorted(sn.map), assert(state.load(s, sn.nid)):triples()) end
    state.clear_cache(s)
    for i = #snaps, 1, -1 do
      local sn = snaps[i]
      assert.same(sorted(sn.map), assert(state.load(s, sn.nid)):triples())
      if i % 50 == 0 then state.clear_cache(s) end
    end
    -- and after reopening
    reopen()
    for i = 1, #snaps, 7 do
      assert.same(sorted(snaps[i].map), assert(state.load(s, snaps[i].nid)):triples())
    end
    local stats = assert(state.stats(s))
    assert.equal(stored, stats.snapshots)
  end)

  it("shares blocks: 100 one-event changes of a 1,000-entry state add a few small rows", function()
    local m = {}
    for i = 1, 1000 do m[key(i % 7 == 0 and 9 or 5, i)] = { i % 7 == 0 and 9 or 5, i, 10000 + i } end
    local nid = assert(state.snapshot_from_entries(s, sorted(m)))
    local before = assert(state.stats(s))
    assert.equal(1, before.snapshots)
    assert.is_true(before.block_bytes < 3000, before.block_bytes)
    local full = before.block_bytes
    local ev = 20000
    for i = 1, 100 do
      ev = ev + 1
      local d = { { 5, i % 3 == 0 and 2000 + i or i * 9, ev } }
      apply_map(m, d)
      nid = assert(state.snapshot_for(s, nid, d))
    end
    local after = assert(state.stats(s))
    assert.equal(101, after.snapshots)
    -- one block of the first 64 changes, not 100 copies of the state
    assert.equal(before.blocks + 1, after.blocks)
    assert.is_true(after.block_bytes - full < 400, after.block_bytes - full)
    assert.is_true(after.segments <= 3, after.segments)
    -- all new rows together: well under one copy of the state
    local added = (after.block_bytes - full) + after.segment_bytes + after.bucket_bytes
      - before.segment_bytes - before.bucket_bytes
    assert.is_true(added < 100 * 16, added)
    state.clear_cache(s)
    assert.same(sorted(m), assert(state.load(s, nid)):triples())
  end)

  it("gives identical states the same NID, whatever the path", function()
    local base = assert(state.snapshot_for(s, 0, { { 1, 1, 1 }, { 5, 2, 2 } }))
    local a1 = assert(state.snapshot_for(s, base, { { 5, 3, 3 } }))
    local a2 = assert(state.snapshot_for(s, a1, { { 5, 4, 4 } }))
    local b1 = assert(state.snapshot_for(s, base, { { 5, 4, 4 } }))
    local b2 = assert(state.snapshot_for(s, b1, { { 5, 3, 3 } }))
    assert.are_not.equal(a1, b1)
    assert.equal(a2, b2)
    assert.equal(a2, (assert(state.snapshot_from_entries(s, { { 5, 4, 4 }, { 5, 3, 3 }, { 1, 1, 1 }, { 5, 2, 2 } }))))
    assert.equal(a2, (assert(state.snapshot_from_entries(s, assert(state.load(s, b2)), a1))))
    -- an unchanged state is the parent itself
    assert.equal(a2, (assert(state.snapshot_for(s, a2, { { 5, 3, 3 } }))))
    assert.equal(a2, (assert(state.snapshot_for(s, a2, { { 7, 7, 0 } }))))
    -- removing everything is the empty state
    assert.equal(0, (assert(state.snapshot_for(s, base, { { 1, 1, 0 }, { 5, 2, 0 } }))))
    local n = assert(state.stats(s)).snapshots
    reopen()
    assert.equal(a2, (assert(state.snapshot_for(s, b1, { { 5, 3, 3 } }))))
    assert.equal(base, (assert(state.snapshot_from_entries(s, { { 5, 2, 2 }, { 1, 1, 1 } }))))
    assert.equal(n, assert(state.stats(s)).snapshots)
  end)

  it("compacts to the same blocks for the same state", function()
    local m = {}
    for i = 1, 3000 do m[key(5, i)] = { 5, i, i } end
    local a = assert(state.snapshot_from_entries(s, sorted(m)))
    local blocks = assert(state.stats(s)).blocks
    -- a long chain of changes that ends where it began shares every block
    local nid = a
    for i = 1, 200 do nid = assert(state.snapshot_for(s, nid, { { 5, i, 100000 + i } })) end
    for i = 1, 200 do nid = assert(state.snapshot_for(s, nid, { { 5, i, i } })) end
    assert.equal(a, nid)
    local m2 = copy(m)
    m2[key(5, 1)] = { 5, 1, 77 }
    -- a state stored from scratch reuses the unchanged chunks
    local before = assert(state.stats(s)).blocks
    local b = assert(state.snapshot_from_entries(s, sorted(m2)))
    assert.are_not.equal(a, b)
    assert.is_true(assert(state.stats(s)).blocks - before <= 2)
    assert.is_true(blocks >= 4)
  end)

  it("keeps forks of forks loadable past the delta limit", function()
    local nid = assert(state.snapshot_for(s, 0, { { 1, 1, 1 } }))
    local m = { [key(1, 1)] = { 1, 1, 1 } }
    local trunk = { { nid, copy(m) } }
    for i = 1, 10 do
      local d = { { 5, i, 10 + i } }
      apply_map(m, d)
      nid = assert(state.snapshot_for(s, nid, d))
      trunk[#trunk + 1] = { nid, copy(m) }
    end
    -- branch from an early snapshot again and again, 150 deep
    local all = {}
    local ev = 1000
    for b = 1, 3 do
      local start = trunk[2 + b]
      local bn, bm = start[1], copy(start[2])
      for i = 1, 150 do
        ev = ev + 1
        local d = { { 6, (b * 1000) + i, ev } }
        if i % 10 == 0 then
          -- and a side branch off the branch
          local side = assert(state.snapshot_for(s, bn, { { 7, i, ev + 100000 } }))
          local sm = copy(bm)
          apply_map(sm, { { 7, i, ev + 100000 } })
          all[#all + 1] = { side, sm }
        end
        apply_map(bm, d)
        bn = assert(state.snapshot_for(s, bn, d))
        all[#all + 1] = { bn, copy(bm) }
      end
    end
    state.clear_cache(s)
    for _, x in ipairs(all) do assert.same(sorted(x[2]), assert(state.load(s, x[1])):triples()) end
    for _, x in ipairs(trunk) do assert.same(sorted(x[2]), assert(state.load(s, x[1])):triples()) end
  end)

  it("keeps current_state equal to the latest state of each room", function()
    math.randomseed(77)
    local rng = math.random
    local ev = 0
    local function next_event() ev = ev + 1; return ev end
    local rooms = { {}, {}, {} }
    local snaps = { 0, 0, 0 }
    for step = 1, 300 do
      local r = rng(1, 3)
      local m = rooms[r]
      local d = random_delta(rng, m, next_event)
      if step % 50 == 0 then
        for i = 1, 40 do d[#d + 1] = { 3, 1000 + step + i, next_event() } end
      end
      apply_map(m, d)
      local how = rng(1, 3)
      local st
      if how == 1 then
        snaps[r] = assert(state.snapshot_for(s, snaps[r], d))
        st = assert(state.set_current(s, r, snaps[r]))
      elseif how == 2 then
        snaps[r] = assert(state.snapshot_for(s, snaps[r], d))
        st = assert(state.set_current(s, r, assert(state.load(s, snaps[r]))))
      else
        snaps[r] = assert(state.snapshot_for(s, snaps[r], d))
        st = assert(state.set_current(s, r, d))
      end
      assert.same(sorted(m), st:triples())
      assert.same(sorted(m), assert(state.current(s, r)):triples())
      assert.same(sorted(m), table_rows(s, r))
    end
    state.clear_cache(s)
    for r = 1, 3 do assert.same(sorted(rooms[r]), assert(state.current(s, r)):triples()) end
    reopen()
    for r = 1, 3 do
      assert.same(sorted(rooms[r]), assert(state.current(s, r)):triples())
      assert.same(sorted(rooms[r]), table_rows(s, r))
    end
    assert.equal(0, #state.current(s, 99))
  end)

  it("records the snapshots before and after events", function()
    local r1 = assert(s:persist("$create", { room_id = "!r:t", type = "m.room.create", state_key = "",
      sender = "@a:t", depth = 1, origin_server_ts = 1, content = {} }))
    local r2 = assert(s:persist("$msg", { room_id = "!r:t", type = "m.room.message", sender = "@a:t",
      depth = 2, origin_server_ts = 2, prev_events = { "$create" }, content = { body = "hi" } }))
    local r3 = assert(s:persist("$out", { room_id = "!r:t", type = "m.room.message", sender = "@a:t",
      depth = 2, origin_server_ts = 2, content = { body = "hi" } }, { outlier = true }))
    local type_nid = s:type_nid("m.room.create")
    local after = assert(state.snapshot_for(s, 0, { { type_nid, s:state_key_nid(""), r1.event_nid } }))
    assert.is_true(state.set_event_state(s, r1.event_nid, 0, after))
    assert.is_true(state.set_event_state(s, r2.event_nid, after))
    assert.same({ 0, after }, { state.event_state(s, r1.event_nid) })
    assert.same({ after, after }, { state.event_state(s, r2.event_nid) })
    -- unchanged state costs no second pointer
    assert.same({ after }, s.conn:first("SELECT state_before, state_after FROM events WHERE event_nid = ?",
      r2.event_nid))
    local res, msg, code = state.event_state(s, r3.event_nid)
    assert.is_nil(res); assert.is_string(msg); assert.equal("no_state", code)
    res, msg, code = state.event_state(s, 999999)
    assert.is_nil(res); assert.is_string(msg); assert.equal("not_found", code)
    res, msg, code = state.set_event_state(s, 999999, 0, 0)
    assert.is_nil(res); assert.is_string(msg); assert.equal("not_found", code)
    reopen()
    assert.same({ 0, after }, { state.event_state(s, r1.event_nid) })
  end)

  it("forgets what a rolled-back transaction stored", function()
    local a = assert(state.snapshot_for(s, 0, { { 1, 1, 1 } }))
    assert(state.set_current(s, 1, a))
    local ghost
    local res = s.conn:transaction(function()
      ghost = assert(state.snapshot_for(s, a, { { 5, 5, 5 } }))
      assert(state.set_current(s, 1, ghost))
      assert.equal(2, #state.current(s, 1))
      return nil, "changed my mind", "test"
    end)
    assert.is_nil(res)
    local st, _, code = state.load(s, ghost)
    assert.is_nil(st)
    assert.equal("not_found", code)
    assert.same({ { 1, 1, 1 } }, assert(state.current(s, 1)):triples())
    assert.same({ { 1, 1, 1 } }, table_rows(s, 1))
    -- the same state stored again is found and loads
    local again = assert(state.snapshot_for(s, a, { { 5, 5, 5 } }))
    assert.same({ { 1, 1, 1 }, { 5, 5, 5 } }, assert(state.load(s, again)):triples())
    assert.equal(again, (assert(state.snapshot_from_entries(s, { { 5, 5, 5 }, { 1, 1, 1 } }))))
  end)

  it("doubles the hash buckets as they fill and still finds every state", function()
    local saved = state.BUCKET_MAX
    state.BUCKET_MAX = 2
    local ok, err = pcall(function()
      local nid, snaps = 0, {}
      for i = 1, 700 do
        nid = assert(state.snapshot_for(s, nid, { { 5, i, i } }))
        snaps[i] = nid
      end
      local stats = assert(state.stats(s))
      assert.is_true(stats.hash_bits > 8, stats.hash_bits)
      reopen()
      for i = 1, 700, 13 do
        local m = {}
        for j = 1, i do m[#m + 1] = { 5, j, j } end
        assert.equal(snaps[i], (assert(state.snapshot_from_entries(s, m))))
      end
      assert.equal(700, assert(state.stats(s)).snapshots)
    end)
    state.BUCKET_MAX = saved
    assert(ok, err)
  end)

  it("reports damaged or unknown snapshots without raising", function()
    local m = {}
    for i = 1, 500 do m[#m + 1] = { 5, i, i } end
    local a = assert(state.snapshot_from_entries(s, m))
    local b = assert(state.snapshot_for(s, a, { { 6, 1, 9 } }))
    local res, msg, code = state.load(s, 12345 * 64)
    assert.is_nil(res); assert.is_string(msg); assert.equal("not_found", code)
    res, msg, code = state.snapshot_for(s, 12345 * 64, {})
    assert.is_nil(res); assert.is_string(msg); assert.equal("not_found", code)
    -- a damaged block
    s.conn:run([[UPDATE state_blocks SET data = substr(data, 1, 5)
      WHERE block_nid = (SELECT min(block_nid) FROM state_blocks)]])
    state.clear_cache(s)
    res, msg, code = state.load(s, b)
    assert.is_nil(res); assert.is_string(msg); assert.equal("bad_state_blob", code)
    -- a missing block
    s.conn:run("DELETE FROM state_blocks")
    res, msg, code = state.load(s, b)
    assert.is_nil(res); assert.is_string(msg); assert.equal("bad_state_blob", code)
    -- a segment whose parent chain loops
    s.conn:run("UPDATE state_segments SET parent = segment_nid * 64")
    res, msg, code = state.load(s, b)
    assert.is_nil(res); assert.is_string(msg); assert.equal("bad_state_blob", code)
    -- a damaged segment
    s.conn:run("UPDATE state_segments SET parent = NULL, data = x'0205'")
    res, msg, code = state.load(s, b)
    assert.is_nil(res); assert.is_string(msg); assert.equal("bad_state_blob", code)
  end)

  it("raises on misuse", function()
    assert.has_error(function() state.snapshot_for(s, -1, {}) end)
    assert.has_error(function() state.snapshot_for(s, 0, "x") end)
    assert.has_error(function() state.snapshot_for(s, 0, { { 1, 1, -5 } }) end)
    assert.has_error(function() state.snapshot_from_entries(s, { { 1, 1, 0 } }) end)
    assert.has_error(function() state.load(s, 1.5) end)
    assert.has_error(function() state.set_current(s, 0, 0) end)
    assert.has_error(function() state.set_current(s, 1, "x") end)
    assert.has_error(function() state.set_event_state(s, 1, -1) end)
    -- nothing was stored by the failed calls
    assert.equal(0, assert(state.stats(s)).snapshots)
  end)
end)
