-- The graph work of state resolution (loom.core.stateres) against brute force
-- on random auth DAGs: auth chains, auth difference, conflicted subgraph,
-- Kahn's power ordering and the mainline.
local core = require "loom.core"
local sr = core.stateres

local PL = "m.room.power_levels"

-- A random ID alphabet so that ID order and creation order differ.
local function random_id(rng, used)
  local chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
  while true do
    local t = { "$" }
    for i = 2, rng(2, 6) do
      local c = rng(1, #chars)
      t[i] = chars:sub(c, c)
    end
    local id = table.concat(t)
    if not used[id] then
      used[id] = true
      return id
    end
  end
end

-- n events; event i names up to max_auth earlier events (later ones too when
-- cyclic), about a quarter are power levels events.
local function random_dag(rng, n, max_auth, cyclic)
  local used, list, by_id = {}, {}, {}
  for i = 1, n do
    local ev = { event_id = random_id(rng, used), auth_events = {} }
    if rng(1, 4) == 1 then ev.type, ev.state_key = PL, "" else ev.type, ev.state_key = "m.room.member", "@u:x" end
    list[i] = ev
    by_id[ev.event_id] = ev
  end
  for i = 1, n do
    local ae = list[i].auth_events
    local hi = cyclic and n or i - 1
    if hi >= 1 then
      for _ = 1, rng(0, max_auth) do
        local j = rng(1, hi)
        if cyclic or j < i then ae[#ae + 1] = list[j].event_id end
      end
    end
  end
  return list, by_id
end

-- A graph with every event loaded, interned in a shuffled order.
local function load_all(rng, list)
  local g = sr.graph()
  local order = {}
  for i = 1, #list do order[i] = i end
  for i = #order, 2, -1 do
    local j = rng(1, i)
    order[i], order[j] = order[j], order[i]
  end
  local ids, evs = {}, {}
  for i, k in ipairs(order) do
    ids[i] = list[k].event_id
    evs[i] = list[k]
  end
  local nodes = g:intern(ids)
  local rest = assert(g:load(nodes, evs))
  assert.equal(0, #rest)
  return g
end

local function node_of(g, id) return assert(g:find(id)) end
local function ids_of(g, nodes)
  local out = g:ids(nodes)
  table.sort(out)
  return out
end
local function sorted_keys(set)
  local out = {}
  for k in pairs(set) do out[#out + 1] = k end
  table.sort(out)
  return out
end

-- ---- brute force -----------------------------------------------------------------

-- Events reachable from id by one or more auth_events links.
local function reach(by_id, id)
  local seen, stack = {}, { id }
  while #stack > 0 do
    local cur = table.remove(stack)
    for _, a in ipairs(by_id[cur].auth_events) do
      if not seen[a] then
        seen[a] = true
        stack[#stack + 1] = a
      end
    end
  end
  return seen
end

local function chain_of(by_id, ids)
  local out = {}
  for _, id in ipairs(ids) do
    for a in pairs(reach(by_id, id)) do out[a] = true end
  end
  return out
end

local function brute_difference(by_id, sets, common)
  local chains, union = {}, {}
  for i, s in ipairs(sets) do
    local ids = {}
    for _, id in ipairs(s) do ids[#ids + 1] = id end
    for _, id in ipairs(common) do ids[#ids + 1] = id end
    chains[i] = chain_of(by_id, ids)
    for a in pairs(chains[i]) do union[a] = true end
  end
  local out = {}
  for a in pairs(union) do
    for _, c in ipairs(chains) do
      if not c[a] then out[a] = true break end
    end
  end
  return sorted_keys(out)
end

local function brute_subgraph(by_id, conflicted)
  local cset = {}
  for _, c in ipairs(conflicted) do cset[c] = true end
  local out = {}
  for id in pairs(by_id) do
    local r = reach(by_id, id)
    r[id] = true
    local down = false
    for c in pairs(cset) do if r[c] then down = true break end end
    local up = false
    if down then
      for c in pairs(cset) do
        if c == id or reach(by_id, c)[id] then up = true break end
      end
    end
    if up and down then out[id] = true end
  end
  return sorted_keys(out)
end

local function before(x, y)
  if x.power ~= y.power then return x.power > y.power end
  if x.ts ~= y.ts then return x.ts < y.ts end
  return x.id < y.id
end

-- Kahn by definition: repeatedly the smallest event whose auth events among
-- the set are all placed.
local function brute_order(by_id, items)
  local left, out = {}, {}
  for _, it in ipairs(items) do left[it.id] = it end
  while next(left) do
    local best
    for id, it in pairs(left) do
      local ready = true
      for _, a in ipairs(by_id[id].auth_events) do
        if left[a] and a ~= id then ready = false break end
        if a == id then ready = false break end
      end
      if ready and (best == nil or before(it, best)) then best = it end
    end
    if not best then return nil end
    left[best.id] = nil
    out[#out + 1] = best.id
  end
  return out
end

-- Every topological order of a small set, the smallest by the comparison.
local function smallest_topological(by_id, items)
  local n = #items
  local best
  local in_set = {}
  for _, it in ipairs(items) do in_set[it.id] = it end
  local placed, seq = {}, {}
  local function less(a, b)
    for i = 1, n do
      if a[i] ~= b[i] then return before(in_set[a[i]], in_set[b[i]]) end
    end
    return false
  end
  local function rec()
    if #seq == n then
      if best == nil or less(seq, best) then best = { table.unpack(seq) } end
      return
    end
    for _, it in ipairs(items) do
      if not placed[it.id] then
        local ready = true
        for _, a in ipairs(by_id[it.id].auth_events) do
          if in_set[a] and not placed[a] then ready = false break end
        end
        if ready then
          placed[it.id] = true
          seq[#seq + 1] = it.id
          rec()
          seq[#seq] = nil
          placed[it.id] = nil
        end
      end
    end
  end
  rec()
  return best
end

local function pl_parent(by_id, id)
  for _, a in ipairs(by_id[id].auth_events) do
    if by_id[a].type == PL and by_id[a].state_key == "" then return a end
  end
  return nil
end

local function brute_positions(by_id, pl, ids)
  local mainline, i = {}, 0
  local p = pl
  while p do
    mainline[p] = i
    i = i + 1
    p = pl_parent(by_id, p)
  end
  local out = {}
  for k, id in ipairs(ids) do
    local pos = math.huge
    local e = pl_parent(by_id, id)
    while e do
      if mainline[e] then pos = mainline[e] break end
      e = pl_parent(by_id, e)
    end
    out[k] = pos
  end
  return out
end

local function random_subset(rng, list, p)
  local out = {}
  for _, ev in ipairs(list) do
    if rng() < p then out[#out + 1] = ev.event_id end
  end
  return out
end

local function seeded(seed)
  local r = math.random
  math.randomseed(seed)
  return r
end

-- ---- tests ---------------------------------------------------------------------------

describe("stateres graph", function()
  it("interns IDs once, finds them and gives them back", function()
    local g = sr.graph()
    local a = g:intern { "$a", "$b", "$a", "$\0zero", ("$" .. ("x"):rep(300)) }
    assert.same({ 1, 2, 1, 3, 4 }, a)
    assert.equal(4, #g)
    assert.equal(2, g:find("$b"))
    assert.is_nil(g:find("$c"))
    assert.same({ "$\0zero", "$a" }, g:ids { 3, 1 })
    assert.same({ "$\0zero", "$a", "$b" }, g:ids({ 2, 1, 3 }, true))
    assert.equal(("$" .. ("x"):rep(300)), g:id(4))
    assert.is_false(g:loaded(1))
    assert.is_nil(g:auth(1))
    assert.matches("loom.StateGraph %(4 nodes", tostring(g))
    assert.is_true(sr.is_graph(g))
    assert.is_false(sr.is_graph({}))
    g:close()
    g:close()
    assert.equal("loom.StateGraph (closed)", tostring(g))
    assert.has_error(function() g:intern { "$a" } end)
  end)

  it("interns many IDs (table growth) and finds each", function()
    local g = sr.graph()
    local ids = {}
    for i = 1, 5000 do ids[i] = ("$event%d"):format(i * 7919 % 100003) end
    local nodes = g:intern(ids)
    for i = 1, 5000, 97 do
      assert.equal(nodes[i], g:find(ids[i]))
      assert.equal(ids[i], g:id(nodes[i]))
    end
    assert.same(nodes, g:intern(ids))
  end)

  it("raises on misuse", function()
    local g = sr.graph()
    g:intern { "$a", "$b" }
    assert.has_error(function() g:intern { 1 } end)
    assert.has_error(function() g:intern "x" end)
    assert.has_error(function() g:chain { 3 } end)
    assert.has_error(function() g:chain { 0 } end)
    assert.has_error(function() g:chain { 1.5 } end)
    assert.has_error(function() g:id(7) end)
    assert.has_error(function() g:load({ 1 }, {}) end)
    assert.has_error(function() g:order({ 1, 1 }, { 0, 0 }, { 0, 0 }) end)
    assert.has_error(function() g:order({ 1, 2 }, { 0 }, { 0, 0 }) end)
    assert.has_error(function() g:order({ 1 }, { "x" }, { 0 }) end)
    assert.has_error(function() g:difference { 1 } end)
    assert.has_error(function() g:separate {} end)
  end)

  it("fails with missing_event and bad_event as values", function()
    local g = sr.graph()
    local n = g:intern { "$a" }
    local ok, msg, code = g:chain(n)
    assert.is_nil(ok)
    assert.equal("missing_event", code)
    assert.matches("%$a", msg)
    for _, bad in ipairs {
      { "not a table" },
      { { event_id = "$b", auth_events = {} } },
      { { event_id = "$a" } },
      { { event_id = "$a", auth_events = { "$x", 7 } } },
    } do
      local r, m, c = g:load(n, bad)
      assert.is_nil(r)
      assert.equal("bad_event", c)
      assert.is_string(m)
    end
    assert.is_false(g:loaded(1))
    local rest, ids = assert(g:load(n, { { event_id = "$a", auth_events = { "$b", "$b" } } }))
    assert.same({ 2 }, rest)
    assert.same({ "$b" }, ids)
    assert.same({ 2, 2 }, g:auth(1))
    local _, _, c2 = g:difference({ { 1 }, {} })
    assert.equal("missing_event", c2)
    -- loading again changes nothing
    assert.same({}, (g:load({ 1 }, { { event_id = "$a", auth_events = {} } })))
    assert.same({ 2, 2 }, g:auth(1))
  end)

  it("loads exactly the auth closure through unloaded/load batches", function()
    local rng = seeded(11)
    for _ = 1, 20 do
      local list, by_id = random_dag(rng, 60, 4)
      local starts = random_subset(rng, list, 0.1)
      local g = sr.graph()
      local nodes = g:intern(starts)
      local fetched = {}
      local frontier, ids = g:unloaded(nodes)
      while #frontier > 0 do
        local evs = {}
        for i, id in ipairs(ids) do
          assert.is_nil(fetched[id], "fetched twice")
          fetched[id] = true
          evs[i] = by_id[id]
        end
        frontier, ids = assert(g:load(frontier, evs))
      end
      assert.same({}, (g:unloaded(nodes)))
      local want = chain_of(by_id, starts)
      for _, s in ipairs(starts) do want[s] = true end
      assert.same(sorted_keys(want), sorted_keys(fetched))
    end
  end)

  it("auth chains match brute force", function()
    local rng = seeded(1)
    for round = 1, 40 do
      local list, by_id = random_dag(rng, rng(5, 80), 4, round % 5 == 0)
      local g = load_all(rng, list)
      local starts = random_subset(rng, list, 0.2)
      local nodes = {}
      for i, id in ipairs(starts) do nodes[i] = node_of(g, id) end
      local got = assert(g:chain(nodes))
      for i = 2, #got do assert.is_true(got[i - 1] < got[i]) end
      assert.same(sorted_keys(chain_of(by_id, starts)), ids_of(g, got))
    end
  end)

  it("auth differences match brute force (2 to 70 sets, with common nodes and cycles)", function()
    local rng = seeded(2)
    for round = 1, 60 do
      local list, by_id = random_dag(rng, rng(5, 70), 3, round % 6 == 0)
      local g = load_all(rng, list)
      local k = (round % 10 == 0) and rng(64, 70) or rng(2, 4)
      local sets, set_nodes = {}, {}
      for i = 1, k do
        sets[i] = random_subset(rng, list, 0.15)
        set_nodes[i] = {}
        for j, id in ipairs(sets[i]) do set_nodes[i][j] = node_of(g, id) end
      end
      local common = random_subset(rng, list, 0.05)
      local common_nodes = {}
      for j, id in ipairs(common) do common_nodes[j] = node_of(g, id) end
      local got = assert(g:difference(set_nodes, common_nodes))
      assert.same(brute_difference(by_id, sets, common), ids_of(g, got))
      -- common nodes are the same as listing them in every set
      local with = {}
      for i = 1, k do
        with[i] = { table.unpack(set_nodes[i]) }
        for _, v in ipairs(common_nodes) do with[i][#with[i] + 1] = v end
      end
      assert.same(got, assert(g:difference(with)))
    end
  end)

  it("conflicted subgraphs match brute force", function()
    local rng = seeded(3)
    for round = 1, 40 do
      local list, by_id = random_dag(rng, rng(5, 60), 3, round % 7 == 0)
      local g = load_all(rng, list)
      local conflicted = random_subset(rng, list, 0.15)
      local nodes = {}
      for i, id in ipairs(conflicted) do nodes[i] = node_of(g, id) end
      local got = assert(g:subgraph(nodes))
      assert.same(brute_subgraph(by_id, conflicted), ids_of(g, got))
    end
  end)

  local function items_for(rng, g, ids, ties)
    local items, nodes, power, ts = {}, {}, {}, {}
    for i, id in ipairs(ids) do
      local it = { id = id, power = ties and rng(0, 1) * 50 or rng(0, 100), ts = ties and rng(1, 2) or rng(1, 1000) }
      if rng(1, 15) == 1 then it.power = math.huge end
      items[i] = it
      nodes[i], power[i], ts[i] = node_of(g, id), it.power, it.ts
    end
    return items, nodes, power, ts
  end

  it("Kahn's order is a topological order and the smallest one by the key", function()
    local rng = seeded(4)
    for round = 1, 80 do
      local list, by_id = random_dag(rng, rng(3, 40), 3)
      local g = load_all(rng, list)
      local ids = random_subset(rng, list, round % 4 == 0 and 1 or 0.5)
      local items, nodes, power, ts = items_for(rng, g, ids, round % 2 == 0)
      local got = assert(g:order(nodes, power, ts))
      local got_ids = g:ids(got)
      -- a topological order of the auth edges among the set
      local at = {}
      for i, id in ipairs(got_ids) do at[id] = i end
      for _, id in ipairs(ids) do
        for _, a in ipairs(by_id[id].auth_events) do
          if at[a] then assert.is_true(at[a] < at[id]) end
        end
      end
      assert.same(brute_order(by_id, items), got_ids)
      if #ids <= 7 then assert.same(smallest_topological(by_id, items), got_ids) end
    end
  end)

  it("Kahn's order reports a cycle among the nodes as auth_cycle", function()
    local g = sr.graph()
    local n = g:intern { "$a", "$b", "$c" }
    assert(g:load(n, {
      { event_id = "$a", auth_events = { "$b" } },
      { event_id = "$b", auth_events = { "$a" } },
      { event_id = "$c", auth_events = {} },
    }))
    local ok, msg, code = g:order({ 1, 2, 3 }, { 0, 0, 0 }, { 0, 0, 0 })
    assert.is_nil(ok)
    assert.equal("auth_cycle", code)
    assert.is_string(msg)
    -- the cycle outside the set does not matter
    assert.same({ 3, 1 }, (g:order({ 1, 3 }, { 0, 0 }, { 5, 1 })))
  end)

  it("mainline positions and order match brute force", function()
    local rng = seeded(5)
    for round = 1, 60 do
      local list, by_id = random_dag(rng, rng(5, 60), 3)
      local g = load_all(rng, list)
      local pls = {}
      for _, ev in ipairs(list) do if ev.type == PL then pls[#pls + 1] = ev.event_id end end
      local pl = (#pls > 0 and round % 5 ~= 0) and pls[rng(1, #pls)] or nil
      local ids = random_subset(rng, list, 0.5)
      local nodes, ts = {}, {}
      for i, id in ipairs(ids) do nodes[i], ts[i] = node_of(g, id), rng(1, round % 2 == 0 and 3 or 1000) end
      local pl_node = pl and node_of(g, pl) or nil
      local want = brute_positions(by_id, pl, ids)
      assert.same(want, assert(g:positions(pl_node, nodes)))
      local items = {}
      for i, id in ipairs(ids) do items[i] = { id = id, pos = want[i], ts = ts[i] } end
      table.sort(items, function(x, y)
        if x.pos ~= y.pos then return x.pos > y.pos end
        if x.ts ~= y.ts then return x.ts < y.ts end
        return x.id < y.id
      end)
      local want_order = {}
      for i, it in ipairs(items) do want_order[i] = it.id end
      assert.same(want_order, g:ids(assert(g:mainline(pl_node, nodes, ts))))
    end
  end)

  it("mainline reports a power levels cycle as auth_cycle", function()
    local g = sr.graph()
    local n = g:intern { "$p", "$q", "$e" }
    assert(g:load(n, {
      { event_id = "$p", type = PL, state_key = "", auth_events = { "$q" } },
      { event_id = "$q", type = PL, state_key = "", auth_events = { "$p" } },
      { event_id = "$e", type = "m.room.topic", state_key = "", auth_events = { "$q" } },
    }))
    local ok, _, code = g:positions(1, { 3 })
    assert.is_nil(ok)
    assert.equal("auth_cycle", code)
    -- no power levels: every position is infinite
    assert.same({ math.huge, math.huge }, (g:positions(nil, { 3, 1 })))
  end)

  it("handles empty inputs, an empty ID and a long auth list", function()
    local g = sr.graph()
    assert.same({}, (g:unloaded()))
    assert.same({}, (g:chain {}))
    assert.same({}, (g:difference {}))
    assert.same({}, (g:difference({ {}, {} }, {})))
    assert.same({}, (g:subgraph {}))
    assert.same({}, (g:order({}, {}, {})))
    assert.same({}, (g:mainline(nil, {}, {})))
    local e = g:intern { "" }
    assert.equal("", g:id(e[1]))
    assert(g:load(e, { { event_id = "", auth_events = { "" } } }))
    assert.equal("auth_cycle", select(3, g:order(e, { 0 }, { 0 })))
    local ae = {}
    for i = 1, 3000 do ae[i] = "$a" .. i end
    local big = g:intern { "$big" }
    local frontier, ids = assert(g:load(big, { { event_id = "$big", auth_events = ae } }))
    assert.equal(3000, #frontier)
    local evs = {}
    for i, id in ipairs(ids) do evs[i] = { event_id = id, auth_events = { "$big" }, type = PL, state_key = "" } end
    assert.same({}, (g:load(frontier, evs)))
    assert.equal(3001, #g:subgraph { big[1], frontier[7] })
    assert.same({}, (g:difference { big, { frontier[1] } }))
    assert.same({ 0 }, (g:positions(frontier[1], big)))
  end)

  it("separates state maps and assembles results", function()
    local g = sr.graph()
    local a = { k1 = "$1", k2 = "$2", k3 = "$3" }
    local b = { k1 = "$1", k2 = "$9", k4 = "$4" }
    assert.equal(4, select("#", g:separate { a, b }))
    local conflicted, common, per_set, cnodes, keys, ids = g:separate({ a, b }, true)
    assert.same({ k2 = true, k3 = true, k4 = true }, conflicted)
    assert.same({ "$1" }, g:ids(common))
    assert.same({ "k1" }, keys)
    assert.same({ "$1" }, ids)
    assert.same({ "$2", "$3" }, ids_of(g, per_set[1]))
    assert.same({ "$4", "$9" }, ids_of(g, per_set[2]))
    assert.same({ "$2", "$3", "$4", "$9" }, ids_of(g, cnodes))
    for i = 2, #cnodes do assert.is_true(cnodes[i - 1] < cnodes[i]) end
    -- the unconflicted map, then the partial state under every other key
    assert.same({ k1 = "$1", k2 = "$X", k4 = "$4", k5 = "$5" },
      sr.assemble(keys, ids, { k1 = "$Y", k2 = "$X", k4 = "$4", k5 = "$5" }, a, conflicted))
    assert.has_error(function() sr.assemble({ "k" }, {}, {}, {}, {}) end)
    assert.has_error(function() g:separate { { k = 1 } } end)
  end)
end)
