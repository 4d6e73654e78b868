-- loom.sync.notifier over a stand-in store: who is woken by a commit, the
-- timeout, and close() answering every waiter at once.
local uv = require "luv"
local async = require "loom.async"
local notifier = require "loom.sync.notifier"

-- A store that only has subscribe; commit(note) calls the subscribers.
local function fake_store()
  local s = { subs = {} }
  function s.subscribe(_, fn)
    s.subs[fn] = true
    return function() s.subs[fn] = nil end
  end
  function s.commit(note) for fn in pairs(s.subs) do fn(note) end end
  return s
end

local turn_until = require("support.loop").turn_until

-- Starts a waiting task; returns a table that gets .result and .ms.
local function waiter(n, user, rooms, timeout)
  local w = {}
  uv.update_time()   -- the loop's clock may be stale between specs; timers start from it
  local started = uv.hrtime()
  async.spawn(function() return n:wait(user, rooms, timeout) end, nil, function(ok, res)
    assert(ok, res)
    w.result, w.ms = res, (uv.hrtime() - started) / 1e6
  end)
  return w
end

describe("loom.sync.notifier", function()
  it("wakes the waiters of a commit's rooms and users only, on the next loop turn", function()
    local store = fake_store()
    local n = notifier.new(store)
    local in_room = waiter(n, "@a:x", { "!r1:x", "!r2:x" }, 5000)
    local the_user = waiter(n, "@b:x", {}, 5000)
    local other = waiter(n, "@c:x", { "!r3:x" }, 500)
    assert.equal(3, n.waiting)
    store.commit({ position = 5, rooms = { ["!r2:x"] = 5 }, users = { ["@b:x"] = 5 } })
    assert.is_nil(in_room.result)                -- not inside the committing code
    assert.is_true(turn_until(function() return in_room.result ~= nil and the_user.result ~= nil end))
    assert.is_true(in_room.result)
    assert.is_true(the_user.result)
    assert.is_nil(other.result)
    assert.is_true(turn_until(function() return other.result ~= nil end))
    assert.is_false(other.result)               -- its timeout
    assert.is_true(other.ms >= 490, other.ms)
    assert.equal(0, n.waiting)
    assert.is_nil(next(n.by_room))
    assert.is_nil(next(n.by_user))
  end)

  it("close() answers every waiter at once and later waits without waiting", function()
    local store = fake_store()
    local n = notifier.new(store)
    local ws = {}
    for i = 1, 5 do ws[i] = waiter(n, "@u" .. i .. ":x", { "!r:x" }, 30000) end
    assert.equal(5, n:close())
    assert.is_nil(next(store.subs))              -- unsubscribed
    assert.is_true(turn_until(function()
      for _, w in ipairs(ws) do if w.result == nil then return false end end
      return true
    end))
    for _, w in ipairs(ws) do
      assert.is_false(w.result)
      assert.is_true(w.ms < 1000)
    end
    assert.equal(0, n.waiting)
    assert.equal(0, n:close())
    local late = waiter(n, "@late:x", { "!r:x" }, 30000)
    assert.is_false(late.result)                 -- at once, inside spawn
  end)
end)
