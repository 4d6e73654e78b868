-- Federation in the lab (loom.lab): servers in one process over the
-- in-memory transport. Remote joins, messages both ways, a partition with
-- messages and state changes on both sides, healing, and convergence of
-- every server on the same events, state and extremities.
local lab_mod = require "loom.lab"

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
local SEEDS = tonumber(os.getenv("LOOM_LAB_SEEDS") or "4")

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
