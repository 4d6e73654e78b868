-- The stream change cache: exact answers after its horizon, "maybe" before.
local changecache = require "loom.store.changecache"

describe("changecache", function()
  it("agrees with a brute-force log after the horizon", function()
    math.randomseed(3)
    local c = changecache.new(0, 50)
    local log = {}
    for pos = 1, 5000 do
      local e = "room" .. math.random(1, 120)
      c:entity_changed(e, pos)
      log[#log + 1] = { e, pos }
      if pos % 97 == 0 then
        local since = math.random(0, pos)
        local truth = {}
        for _, item in ipairs(log) do if item[2] > since then truth[item[1]] = true end end
        for i = 1, 120 do
          local ent = "room" .. i
          local maybe = c:has_changed(ent, since)
          if truth[ent] then assert.is_true(maybe, ent) end
          if since >= c.earliest then assert.equal(truth[ent] == true, maybe, ent) end
        end
        -- changed_after reads the log: the same set, nil before the horizon
        local after = c:changed_after(since)
        if since >= c.earliest then
          local got = {}
          for _, ent in ipairs(after) do assert.is_nil(got[ent], ent); got[ent] = true end
          assert.same(truth, got)
          local n = #after
          if n > 0 then assert.is_nil(c:changed_after(since, n - 1)) end
          assert.equal(n, #c:changed_after(since, n))
        else
          assert.is_nil(after)
        end
        local all = c:all_changed(since)
        if since >= c.earliest then
          local n = 0
          for _ in pairs(truth) do n = n + 1 end
          assert.equal(n, #all)
        else
          assert.is_nil(all)
        end
      end
    end
    -- the log stays proportional to the tracked entities
    assert.is_true(c.tail - c.head + 1 <= 2 * c.size + 1024)
    assert.is_true(c.size <= 50)
  end)

  it("filters a list and ignores positions at or before its horizon", function()
    local c = changecache.new(10)
    c:entity_changed("a", 5)       -- before the horizon: ignored
    c:entity_changed("b", 12)
    assert.same({ "b" }, c:changed_among({ "a", "b", "c" }, 10))
    assert.same({ "a", "b", "c" }, c:changed_among({ "a", "b", "c" }, 9))
    assert.is_false(c:has_changed("b", 12))
  end)
end)
