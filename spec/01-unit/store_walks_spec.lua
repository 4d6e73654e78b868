-- The graph walks other servers are served (loom.store.dag): /backfill's
-- deepest-first walk and /get_missing_events' walk, on random DAGs with
-- forks, outliers, rejected and backfilled events, against a reference walk
-- written here the slow, obvious way.
local store_mod = require "loom.store"
local dag = require "support.dag"
local tmp = require "support.tmpdb"

-- The reference: a priority walk (deepest, then latest arrival, first) from
-- starts; visits each event once; events pass `ok`.
local function walk(model, starts, ok, limit)
  local queued, queue, out = {}, {}, {}
  local function push(id)
    local m = model.events[id]
    if m and not queued[id] and ok(m) then
      queued[id] = true
      queue[#queue + 1] = m
    end
  end
  for _, id in ipairs(starts) do push(id) end
  while #queue > 0 and #out < limit do
    table.sort(queue, function(a, b)
      if a.ev.depth ~= b.ev.depth then return a.ev.depth > b.ev.depth end
      return a.stream > b.stream
    end)
    local m = table.remove(queue, 1)
    out[#out + 1] = m
    for _, p in ipairs(m.ev.prev_events) do push(p) end
  end
  return out
end

local function usable(m) return not m.outlier and not m.rejected end

local function ids(s, nids)
  local out = {}
  local loaded = s:events_by_nid(nids)
  for i, n in ipairs(nids) do out[i] = loaded[n][1].event_id end
  return out
end

for _, seed in ipairs { 1, 2, 3 } do
  describe("graph walks on a random DAG (seed " .. seed .. ")", function()
    local path, s, model, list
    local room = "!walk:test"
    local rng = math.random

    setup(function()
      math.randomseed(seed)
      path = tmp.path()
      s = assert(store_mod.open { path = path })
      model = dag.model()
      list = dag.generate(rng, room, 300)
      for _, step in ipairs(dag.plan(rng, list)) do
        local r = assert(s:persist(step[1].id, step[1].ev, step[2]))
        dag.apply(model, step[1].id, step[1].ev, step[2], r.stream_ordering)
      end
    end)

    teardown(function()
      s:close()
      tmp.remove(path)
    end)

    it("backfills deepest first from the given events, each once, up to the limit", function()
      local rn = s:room_nid(room)
      for _ = 1, 40 do
        local starts = {}
        for _ = 1, rng(1, 3) do starts[#starts + 1] = list[rng(1, #list)].id end
        local limit = rng(1, 100)
        local want = {}
        for i, m in ipairs(walk(model, starts, usable, limit)) do want[i] = m.id end
        assert.same(want, ids(s, s:backfill_walk(rn, starts, limit)))
      end
      assert.same({}, s:backfill_walk(rn, { "$nope" }, 10))
      assert.same({}, s:backfill_walk(rn, { list[1].id }, 0))
    end)

    it("finds missing events between earliest and latest, above min_depth, oldest first", function()
      local rn = s:room_nid(room)
      for _ = 1, 40 do
        local latest = { list[rng(#list // 2, #list)].id }
        local earliest = {}
        for _ = 1, rng(0, 3) do earliest[#earliest + 1] = list[rng(1, #list)].id end
        local min_depth = rng(0, 1) == 0 and 0 or rng(1, 40)
        local limit = rng(1, 20)
        local skip = {}
        for _, id in ipairs(earliest) do skip[id] = true end
        local is_latest = { [latest[1]] = true }
        local walked = walk(model, latest, function(m)
          -- a latest event only needs its edges (any event not an outlier)
          if is_latest[m.id] then return not m.outlier end
          return usable(m) and not skip[m.id] and m.ev.depth >= min_depth
        end, limit + 1)
        local got = {}
        for _, m in ipairs(walked) do
          if not is_latest[m.id] and #got < limit then got[#got + 1] = m end
        end
        table.sort(got, function(a, b)
          if a.ev.depth ~= b.ev.depth then return a.ev.depth < b.ev.depth end
          return a.stream < b.stream
        end)
        local want = {}
        for i, m in ipairs(got) do want[i] = m.id end
        assert.same(want, ids(s, s:missing_events_walk(rn, earliest, latest, min_depth, limit)))
      end
    end)

    it("knows which servers are in the room", function()
      local rn = s:room_nid(room)
      assert.is_table(s:server_users(rn, "test"))
      assert.is_false(s:host_joined(rn, "nowhere.test"))
      assert.same({}, s:server_users(rn, "t%st"))
    end)
  end)
end
