-- loom.async: tasks, wait/wake, sleep, and where a task's errors go.
local uv = require "luv"
local async = require "loom.async"

local turn_until = require("support.loop").turn_until

-- A log that keeps its lines.
local function capture()
  local lines = {}
  return lines, function(level, message) lines[#lines + 1] = { level, message } end
end

describe("loom.async", function()
  it("runs a task that never waits to completion inside spawn", function()
    local got
    local task = async.spawn(function(x) return x * 2, "ignored" end, 21, function(ok, res) got = { ok, res } end)
    assert.same({ true, 42 }, got)
    assert.equal("done", task:state())
    assert.is_false(async.running())
    local inside
    async.spawn(function() inside = async.running() end)
    assert.is_true(inside)
  end)

  it("waits until a luv timer wakes it, with the values passed to wake", function()
    local got
    local task = async.spawn(function()
      local a, b = async.wait(function(wake)
        local t = uv.new_timer()
        t:start(5, 0, function() t:close(); wake(7, "seven") end)
      end)
      return { a, b }
    end, nil, function(ok, res) got = { ok, res } end)
    assert.is_nil(got)
    assert.equal("waiting", task:state())
    assert.is_true(turn_until(function() return got ~= nil end))
    assert.same({ true, { 7, "seven" } }, got)
    assert.equal("done", task:state())
  end)

  it("returns at once when wake is called inside register", function()
    local got
    local task = async.spawn(function()
      return async.wait(function(wake) wake("now"); wake("again") end)
    end, nil, function(ok, res) got = { ok, res } end)
    assert.same({ true, "now" }, got)
    assert.equal("done", task:state())
  end)

  it("ignores a second wake, also while the task waits again", function()
    local wakes, got = {}, nil
    async.spawn(function()
      local first = async.wait(function(wake) wakes[1] = wake end)
      local second = async.wait(function(wake) wakes[2] = wake end)
      return { first, second }
    end, nil, function(ok, res) got = { ok, res } end)
    wakes[1]("one")
    assert.is_function(wakes[2])
    wakes[1]("one again")   -- must not resume the second wait
    assert.is_nil(got)
    wakes[2]("two")
    wakes[2]("two again")
    assert.same({ true, { "one", "two" } }, got)
  end)

  it("raises an error of register inside the task", function()
    local got, caught
    async.spawn(function()
      local ok, err = pcall(async.wait, function() error("register broke") end)
      caught = { ok, err }
      async.wait(function() error("again") end)
    end, nil, function(ok, res) got = { ok, res } end)
    assert.is_false(caught[1])
    assert.matches("register broke", caught[2])
    assert.is_false(got[1])
    assert.matches("again", got[2])
  end)

  it("hands a task's error to on_done with a traceback, or else to its log", function()
    local got
    local lines, log = capture()
    local task = async.spawn(function()
      async.sleep(1)
      error("task broke")
    end, nil, function(ok, res) got = { ok, res } end, log)
    assert.is_true(turn_until(function() return got ~= nil end))
    assert.is_false(got[1])
    assert.matches("task broke", got[2])
    assert.matches("stack traceback", got[2])
    assert.equal("failed", task:state())
    assert.same({}, lines)

    local t2 = async.spawn(function() error("nobody listens") end, nil, nil, log)
    assert.equal("failed", t2:state())
    assert.equal(1, #lines)
    assert.equal("error", lines[1][1])
    assert.matches("^task failed: .*nobody listens", lines[1][2])
  end)

  it("logs an on_done that raises, without raising into spawn or the loop", function()
    local lines, log = capture()
    assert.has_no.errors(function()
      async.spawn(function() return 1 end, nil, function() error("handler broke") end, log)
    end)
    assert.equal(1, #lines)
    assert.matches("^task completion handler failed: .*handler broke", lines[1][2])
    local finished = false
    async.spawn(function() async.sleep(1); finished = true end, nil, function() error("late") end, log)
    assert.has_no.errors(function() turn_until(function() return #lines == 2 end) end)
    assert.is_true(finished)
    assert.matches("late", lines[2][2])
  end)

  it("ends a task that yields outside async.wait with an error", function()
    local got
    local task = async.spawn(function() coroutine.yield("stray") return "never" end, nil,
      function(ok, res) got = { ok, res } end)
    assert.same({ false, "task yielded outside async.wait" }, got)
    assert.equal("failed", task:state())
  end)

  it("refuses to wait outside a task, and bad arguments", function()
    assert.has_error(function() async.wait(function() end) end,
      "async.wait: not inside a task (async.spawn or a request handler)")
    assert.has_error(function() async.spawn("nope") end, "async.spawn: fn must be a function")
    assert.has_error(function() async.spawn(print, nil, 5) end, "async.spawn: on_done must be a function")
    local got
    async.spawn(function()
      local ok1, e1 = pcall(async.wait, "nope")
      local ok2, e2 = pcall(async.sleep, -1)
      local ok3, e3 = pcall(async.sleep, 0 / 0)
      return { ok1, e1, ok2, e2, ok3, e3 }
    end, nil, function(_, res) got = res end)
    assert.is_false(got[1]); assert.matches("register must be a function", got[2])
    assert.is_false(got[3]); assert.matches("bad milliseconds", got[4])
    assert.is_false(got[5]); assert.matches("bad milliseconds", got[6])
  end)

  it("interleaves many sleeping tasks in the order of their wake-up times", function()
    local order, n = {}, 40
    local perm = {}
    for i = 1, n do perm[i] = i end
    for i = n, 2, -1 do
      local j = math.random(i)
      perm[i], perm[j] = perm[j], perm[i]
    end
    local done = 0
    for _, k in ipairs(perm) do
      async.spawn(function()
        async.sleep(k)              -- all timers start in one loop turn: fire by duration
        order[#order + 1] = k
        async.sleep(n + 1)          -- then a second round, same order
        order[#order + 1] = k
      end, nil, function(ok, res) assert(ok, res); done = done + 1 end)
    end
    assert.equal(0, #order)
    assert.is_true(turn_until(function() return done == n end))
    local want = {}
    for i = 1, n do want[i] = i; want[n + i] = i end
    assert.same(want, order)
  end)

  it("finish_closing lets handles closed outside the loop finish closing", function()
    local closed = false
    local t = uv.new_timer()
    t:close(function() closed = true end)
    assert.is_true(t:is_closing())
    assert.is_true(async.finish_closing())
    assert.is_true(closed)
    -- inside the loop it leaves the loop alone
    local inside
    local t2 = uv.new_timer()
    t2:start(0, 0, function() t2:close(); inside = async.finish_closing() end)
    turn_until(function() return inside ~= nil end)
    assert.is_false(inside)
  end)
end)
