-- Store properties on random DAGs with forks, outliers, backfilled
-- (negative stream) events, rejections and soft failures, on a real SQLite
-- file: extremities after every insert, pagination in both directions,
-- context, and survival of a restart.
local store_mod = require "loom.store"
local dag = require "support.dag"
local token = require("loom.core").token

local tmp = require "support.tmpdb"
local tmpdb, cleanup = tmp.path, tmp.remove


local function ids_of(events)
  local out = {}
  for i, e in ipairs(events) do out[i] = e.event_id end
  return out
end

local function reversed(list)
  local out = {}
  for i = #list, 1, -1 do out[#out + 1] = list[i] end
  return out
end

-- Page through the whole room with random page sizes; returns ids in the
-- order they came and the number of pages.
local function page_all(s, room, dir, from, rng, filter)
  local got, pages = {}, 0
  local tok = from
  repeat
    local limit = rng(1, 17)
    local page, perr = s:paginate(room, tok, { dir = dir, limit = limit, filter = filter })
    assert(page, tostring(perr) .. " " .. require("loom.core").json.encode(filter or {}))
    assert.is_true(#page.events <= limit)
    if page.next then assert.equal(limit, #page.events) end
    for _, e in ipairs(page.events) do got[#got + 1] = e.event_id end
    pages = pages + 1
    assert.is_true(pages < 10000)
    tok = page.next
  until tok == nil
  return got, pages
end

for _, seed in ipairs { 1, 2, 3 } do
  describe("store on a random DAG (seed " .. seed .. ")", function()
    local path, s, model
    local room, other = "!dag:test", "!other:test"
    local rng

    setup(function()
      path = tmpdb()
      s = assert(store_mod.open { path = path })
      model = dag.model()
      local gen = math.random
      math.randomseed(seed)
      rng = gen
    end)

    teardown(function()
      s:close()
      cleanup(path)
    end)

    it("keeps extremities equal to a brute-force recomputation after every insert", function()
      local list = dag.generate(rng, room, 260)
      local olist = dag.generate(rng, other, 40)
      local steps = dag.plan(rng, list)
      -- interleave the other room's events, live
      for i, item in ipairs(olist) do
        table.insert(steps, math.min(#steps, i * 5), { item, {} })
      end
      for _, step in ipairs(steps) do
        local item, opts = step[1], step[2]
        local r = assert(s:persist(item.id, item.ev, opts))
        dag.apply(model, item.id, item.ev, opts, r.stream_ordering)
        if opts.backfilled and not r.duplicate then assert.is_true(r.stream_ordering < 0) end
        local fwd, bwd = dag.extremities(model, item.ev.room_id)
        assert.same(fwd, s:forward_extremities(item.ev.room_id))
        assert.same(bwd, s:backward_extremities(item.ev.room_id))
      end
      -- an event whose prev_events are unknown everywhere
      local lone = { room_id = room, type = "m.room.message", sender = "@x:test", depth = 400,
        origin_server_ts = 1, prev_events = { "$unknown1", "$unknown2" }, content = {} }
      local r = assert(s:persist("$lone", lone, {}))
      dag.apply(model, "$lone", lone, {}, r.stream_ordering)
      local fwd, bwd = dag.extremities(model, room)
      assert.same(fwd, s:forward_extremities(room))
      assert.same(bwd, s:backward_extremities(room))
      assert.is_true(#bwd >= 2)
    end)

    it("pages backwards then forwards over every timeline event exactly once, in order", function()
      local want = dag.timeline(model, room)
      assert.is_true(#want > 150)
      local back = page_all(s, room, "b", nil, rng)
      assert.same(reversed(want), back)
      local fwd = page_all(s, room, "f", nil, rng)
      assert.same(want, fwd)
    end)

    it("pages both ways from random tokens without gaps or overlaps", function()
      local want, list = dag.timeline(model, room)
      for _ = 1, 25 do
        local pick = list[rng(1, #list)]
        local before_tok, after_tok = token.for_event(pick.depth, pick.stream)
        local tok = rng(1, 2) == 1 and before_tok or after_tok
        local back = page_all(s, room, "b", tostring(tok), rng)
        local fwd = page_all(s, room, "f", tostring(tok), rng)
        local joined = reversed(back)
        for _, id in ipairs(fwd) do joined[#joined + 1] = id end
        assert.same(want, joined)
      end
    end)

    it("honours the to token in both directions", function()
      local want, list = dag.timeline(model, room)
      for _ = 1, 20 do
        local a, b = rng(1, #list), rng(1, #list)
        if a > b then a, b = b, a end
        local _, ta = token.for_event(list[a].depth, list[a].stream)
        local _, tb = token.for_event(list[b].depth, list[b].stream)
        local expect = {}
        for i = a + 1, b do expect[#expect + 1] = want[i] end
        local page = assert(s:paginate(room, tostring(ta), { dir = "f", to = tostring(tb), limit = 1000 }))
        assert.same(expect, ids_of(page.events))
        assert.is_nil(page.next)
        page = assert(s:paginate(room, tostring(tb), { dir = "b", to = tostring(ta), limit = 1000 }))
        assert.same(reversed(expect), ids_of(page.events))
        assert.is_nil(page.next)
      end
    end)

    it("applies filters inside the query", function()
      local want = dag.timeline(model, room, function(m)
        return m.ev.type == "m.room.member" or (m.ev.sender ~= "@u1:test" and m.ev.content.url ~= nil)
      end)
      local f = { types = { "m.room.member" } }
      local got = page_all(s, room, "b", nil, rng, f)
      local members = dag.timeline(model, room, function(m) return m.ev.type == "m.room.member" end)
      assert.same(reversed(members), got)
      got = page_all(s, room, "f", nil, rng, { types = { "m.room.mem*" } })
      assert.same(members, got)
      got = page_all(s, room, "f", nil, rng, { not_types = { "m.room.message" } })
      assert.same(members, got)
      local urls = dag.timeline(model, room, function(m)
        return m.ev.content.url ~= nil and m.ev.sender ~= "@u1:test"
      end)
      got = page_all(s, room, "f", nil, rng, { contains_url = true, not_senders = { "@u1:test" } })
      assert.same(urls, got)
      assert.is_true(#want >= #urls)
      got = page_all(s, room, "f", nil, rng, { rooms = { other } })
      assert.same({}, got)
      got = page_all(s, room, "f", nil, rng, { types = {} })
      assert.same({}, got)
    end)

    it("gives context that agrees with pagination", function()
      local _, list = dag.timeline(model, room)
      for _ = 1, 30 do
        local pick = list[rng(1, #list)]
        local nb, na = rng(0, 8), rng(0, 8)
        local ctx = assert(s:context(room, pick.id, nb, na))
        assert.equal(pick.id, ctx.event.event_id)
        local before_tok, after_tok = token.for_event(pick.depth, pick.stream)
        local b = assert(s:paginate(room, tostring(before_tok), { dir = "b", limit = nb }))
        local a = assert(s:paginate(room, tostring(after_tok), { dir = "f", limit = na }))
        assert.same(ids_of(b.events), ids_of(ctx.before))
        assert.same(ids_of(a.events), ids_of(ctx.after))
        -- continuing from start/end yields the events beyond the context
        local more_b = assert(s:paginate(room, ctx.start, { dir = "b", limit = 3 }))
        local more_a = assert(s:paginate(room, ctx["end"], { dir = "f", limit = 3 }))
        local expect_b = assert(s:paginate(room, tostring(before_tok), { dir = "b", limit = nb + 3 }))
        local expect_a = assert(s:paginate(room, tostring(after_tok), { dir = "f", limit = na + 3 }))
        local eb, ea = ids_of(expect_b.events), ids_of(expect_a.events)
        assert.same({ table.unpack(eb, nb + 1) }, ids_of(more_b.events))
        assert.same({ table.unpack(ea, na + 1) }, ids_of(more_a.events))
      end
      local none, _, code = s:context(room, "$nope", 1, 1)
      assert.is_nil(none)
      assert.equal("not_found", code)
    end)

    it("keeps every committed event and token across a restart", function()
      local tok = s:current_token()
      local before = page_all(s, room, "b", nil, rng)
      local fwd_before = s:forward_extremities(room)
      local bwd_before = s:backward_extremities(room)
      s:close()
      s = assert(store_mod.open { path = path })
      assert.equal(tok, s:current_token())
      assert.same(before, page_all(s, room, "b", nil, rng))
      assert.same(fwd_before, s:forward_extremities(room))
      assert.same(bwd_before, s:backward_extremities(room))
      -- new events continue the stream after the old maximum
      local ev = { room_id = room, type = "m.room.message", sender = "@x:test", depth = 999,
        origin_server_ts = 5, prev_events = fwd_before, content = { body = "after restart" } }
      local r = assert(s:persist("$after_restart", ev))
      assert.equal(tonumber(tok:sub(2)) + 1, r.stream_ordering)
      dag.apply(model, "$after_restart", ev, {}, r.stream_ordering)
      local fwd = dag.extremities(model, room)
      assert.same(fwd, s:forward_extremities(room))
      assert.same({ "$after_restart" }, fwd)
    end)
  end)
end
