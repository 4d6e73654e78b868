-- Federation in the lab (loom.lab): servers in one process over the
-- in-memory transport. Remote joins, messages both ways, a partition with
-- messages and state changes on both sides, healing, and convergence of
-- every server on the same events, state and extremities.
local lab_mod = require "loom.lab"
local async_sleep = require("loom.async").sleep

describe("the federation lab", function()
  it("converges after a partition with messages on both sides", function()
    local lab = lab_mod.new { seed = 1 }
    local a, b, c = lab:server("a.lab"), lab:server("b.lab"), lab:server("c.lab")
    local report, room = lab:run(function()
      local alice, bob, carol = a:register("alice"), b:register("bob"), c:register("carol")
      local room = a:create_room(alice, { preset = "public_chat" })
      b:join(bob, room, { "a.lab" })
      c:join(carol, room, { "a.lab" })
      a:say(alice, room, "hello all")
      assert(lab:settle())
      lab:partition({ "a.lab" }, { "b.lab", "c.lab" })
      for i = 1, 3 do a:say(alice, room, "a side " .. i) end
      for i = 1, 3 do b:say(bob, room, "b side " .. i); c:say(carol, room, "c side " .. i) end
      lab:heal()
      assert(lab:settle())
      -- a last message from each side points at everything it knows
      a:say(alice, room, "after heal a")
      b:say(bob, room, "after heal b")
      assert(lab:settle())
      -- history from before b and c joined
      lab:backfill(room)
      return lab:check(room), room
    end)
    assert.same({}, report.problems)
    assert.is_true(report.ok)
    assert.equal(3, #report.servers)
    assert.is_string(room)
    lab:close()
  end)
end)

-- Seeded random runs: lossy, duplicating, slow links; messages from random
-- servers; a partition and a heal; every run must converge.
local SEEDS = tonumber(os.getenv("LOOM_LAB_SEEDS") or "8")

describe("the federation lab on lossy links", function()
  for seed = 1, SEEDS do
    it("converges (seed " .. seed .. ")", function()
      local lab = lab_mod.new { seed = seed }
      local names = { "a.lab", "b.lab", "c.lab" }
      local servers = {}
      for i, n in ipairs(names) do servers[i] = lab:server(n) end
      for _, x in ipairs(names) do
        for _, y in ipairs(names) do
          if x ~= y then lab:link(x, y, { delay = 1, jitter = 15, drop = 0.15, duplicate = 0.1 }) end
        end
      end
      local report = lab:run(function()
        local users = {}
        for i, s in ipairs(servers) do users[i] = s:register("u" .. i) end
        local room = servers[1]:create_room(users[1], { preset = "public_chat" })
        -- joins over clean links (a client retries a failed join itself)
        local saved = lab.links
        lab.links = {}
        servers[2]:join(users[2], room, { "a.lab" })
        servers[3]:join(users[3], room, { "a.lab" })
        lab.links = saved
        local r = lab.random
        for i = 1, 12 do
          local k = 1 + (r() * 3) // 1
          servers[k]:say(users[k], room, "m" .. i)
          if i == 5 then lab:partition({ names[1] }, { names[2], names[3] }) end
          if i == 9 then lab:heal() end
        end
        lab:heal()
        assert(lab:settle(30000), "did not settle")
        for k = 1, 3 do servers[k]:say(users[k], room, "last " .. k) end
        assert(lab:settle(30000), "did not settle")
        lab:backfill(room)
        return lab:check(room)
      end, 90000)
      assert.same({}, report.problems)
      lab:close()
    end)
  end
end)

describe("the federation lab with a gap get_missing_events cannot close", function()
  it("takes the state at the gap from the origin and converges, the topic included", function()
    local lab = lab_mod.new { seed = 21 }
    local a, b = lab:server("a.lab"), lab:server("b.lab")
    local report = lab:run(function()
      local alice, bob = a:register("alice"), b:register("bob")
      local room = a:create_room(alice, { preset = "public_chat" })
      b:join(bob, room, { "a.lab" })
      assert(lab:settle())
      -- a's sender held: a topic change, then more events than one
      -- /get_missing_events returns (10), all kept from b but the newest
      a.hs.sender.closed = true
      local gap = { [a:state(alice, room, "m.room.topic", "", { topic = "changed in the gap" })] = true }
      local last
      for i = 1, 14 do last = a:say(alice, room, "gap " .. i); gap[last] = true end
      local rows = a.hs.store:outbox("b.lab", nil, 50, 100)
      local older = {}
      for _, row in ipairs(rows) do if row.payload ~= last then older[#older + 1] = row.seq end end
      a.hs.store:outbox_drop("b.lab", older)
      a.hs.sender.closed = false
      a.hs.sender:kick("b.lab")
      assert(lab:settle())
      assert(b.hs.store:event(last), "b never got the newest event")
      local topic = b.hs.rooms:state_event(room, "m.room.topic", "")
      assert.equal("changed in the gap", topic and topic.content.topic)
      -- the gap is still there (a backward extremity inside it): the state came from a
      local open = false
      for _, id in ipairs(b.hs.store:backward_extremities(room)) do if gap[id] then open = true end end
      assert.is_true(open)
      -- b speaks: a gets an event whose prev it has; then both backfill
      b:say(bob, room, "after the gap")
      assert(lab:settle())
      lab:backfill(room)
      return lab:check(room)
    end)
    assert.same({}, report.problems)
    lab:close()
  end)
end)

describe("/messages reaching history another server holds", function()
  it("answers with what is here and an end token that continues once the backfill landed", function()
    local lab = lab_mod.new { seed = 31 }
    local a, b = lab:server("a.lab"), lab:server("b.lab")
    lab:run(function()
      local alice, bob = a:register("alice"), b:register("bob")
      local room = a:create_room(alice, { preset = "public_chat" })
      for i = 1, 5 do a:say(alice, room, "old " .. i) end
      b:join(bob, room, { "a.lab" })
      assert(lab:settle())
      -- a slow link: the backfill outlasts /messages' wait
      lab:link("b.lab", "a.lab", { delay = 2500 })
      local path = "/_matrix/client/v3/rooms/" .. require("loom.federation.client").encode(room)
        .. "/messages?dir=b&limit=20"
      local r = b:client("GET", path, nil, bob.access_token)
      assert.equal(200, r.status)
      local function bodies(chunk)
        local out = {}
        for _, ev in ipairs(chunk) do if ev.content and ev.content.body then out[#out + 1] = ev.content.body end end
        return out
      end
      assert.same({}, bodies(r.json.chunk))   -- nothing old yet
      assert.is_string(r.json["end"], "no end token while the backfill runs")
      lab:link("b.lab", "a.lab", {})
      assert(lab:settle(10000))
      async_sleep(3000)
      local r2 = b:client("GET", path:gsub("dir=b", "dir=b&from=" .. r.json["end"]), nil, bob.access_token)
      assert.equal(200, r2.status)
      local got = bodies(r2.json.chunk)
      assert.equal("old 5", got[1])
      assert.equal("old 1", got[5])
    end, 60000)
    lab:close()
  end)
end)
