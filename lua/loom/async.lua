-- loom.async: tasks over luv. A task is a coroutine run by its own runner;
-- inside it, code that waits (for a timer, a long-poll, a database commit, a
-- remote server) is written straight-line with async.wait or async.sleep,
-- while other tasks and connections go on.
--
--   local async = require "loom.async"
--   async.spawn(function(name)
--     async.sleep(100)                               -- other tasks run meanwhile
--     local n = async.wait(function(wake)            -- any callback may wake it
--       some_luv_handle:start(function(v) wake(v) end)
--     end)
--     return "done " .. name
--   end, "a", function(ok, result_or_traceback) print(ok, result_or_traceback) end)
--
-- A task knows its runner through the coroutine it runs in, so nothing here
-- is shared between servers in one process: each task carries its own
-- completion handler and its own log. Waiting only works in the task's own
-- coroutine (not in a coroutine the task creates).
local setmetatable, type, tostring, xpcall, error = setmetatable, type, tostring, xpcall, error
local co_create, co_resume, co_status, co_running, co_yield =
  coroutine.create, coroutine.resume, coroutine.status, coroutine.running, coroutine.yield
local traceback = debug.traceback
local table_pack, table_unpack = table.pack, table.unpack
local stderr = io.stderr
local uv = require "luv"

local _ENV = nil -- luacheck: ignore 211

local async = {}

-- What async.wait yields to the runner: this marker, then the register function.
local WAIT = setmetatable({}, { __name = "loom.async.wait", __newindex = function() error("read-only", 2) end })

-- The coroutines that are tasks (weak keys): async.running tells them from
-- coroutines that other code (a test harness, say) resumes itself. It holds
-- no server's state, so servers sharing the process still share nothing.
local tasks = setmetatable({}, { __mode = "k" })

local function stderr_log(level, message)
  stderr:write("loom.async ", level, ": ", message, "\n")
end

local task_methods = {}
local task_mt = { __name = "loom.async.Task", __index = task_methods }

-- The task has ended: hand its result to its completion handler.
local function finish(task, ok, res)
  task.status = ok and "done" or "failed"
  local done = task.done
  if not done then
    if not ok then task.log("error", "task failed: " .. tostring(res)) end
    return
  end
  local dok, derr = xpcall(done, traceback, ok, res)
  if not dok then task.log("error", "task completion handler failed: " .. tostring(derr)) end
end

-- Resumes the task with the values of a wake-up (ok, ...) and then handles
-- what it yields, until it ends or waits for a callback. Never raises.
local function step(task, ...)
  local args = table_pack(...)
  while true do
    local co = task.co
    local r = table_pack(co_resume(co, table_unpack(args, 1, args.n)))
    if co_status(co) == "dead" then
      local ok, res = r[1], r[2]
      if not ok then res = traceback(co, tostring(res)) end
      return finish(task, ok, res)
    end
    if r[2] ~= WAIT or type(r[3]) ~= "function" then
      -- a bare coroutine.yield in a task: nothing would ever resume it
      task.co = nil
      return finish(task, false, "task yielded outside async.wait")
    end
    local state, early = "registering", nil
    local function wake(...)
      if state == "registering" then
        state, early = "woken", table_pack(true, ...)
      elseif state == "waiting" then
        state = "woken"
        step(task, true, ...)
      end
    end
    local rok, rerr = xpcall(r[3], traceback, wake)
    if not rok then
      state = "woken"
      args = table_pack(false, rerr)
    elseif state == "woken" then
      args = early
    else
      state = "waiting"
      task.status = "waiting"
      return
    end
  end
end

--- async.spawn(fn, arg, [on_done], [log]) -> task
-- Runs fn(arg) as a task at once; when it ends, on_done(ok, result) is
-- called with fn's first result, or false and the error with the task's
-- traceback (maybe before spawn returns). log(level, message) receives what
-- cannot be handed to anyone else (on_done itself failing; a task without
-- on_done failing); it defaults to standard error.
function async.spawn(fn, arg, on_done, log)
  if type(fn) ~= "function" then error("async.spawn: fn must be a function", 2) end
  if on_done ~= nil and type(on_done) ~= "function" then error("async.spawn: on_done must be a function", 2) end
  local task = setmetatable({ co = co_create(fn), done = on_done, log = log or stderr_log,
                              status = "running" }, task_mt)
  tasks[task.co] = true
  step(task, arg)
  return task
end

--- task:state() -> "running" | "waiting" | "done" | "failed"
function task_methods.state(self) return self.status end

--- async.running() -> true inside a task's coroutine (where wait works)
function async.running()
  local co, main = co_running()
  return not main and tasks[co] == true
end

--- async.wait(register) -> the values passed to wake
-- Suspends the current task until wake(...) is called; register(wake) is
-- called first and arranges for that (a luv callback, another task …). A
-- second call of wake has no effect; a call from inside register returns at
-- once. An error raised by register is raised here. Raises outside a task.
function async.wait(register)
  if type(register) ~= "function" then error("async.wait: register must be a function", 2) end
  local _, main = co_running()
  if main then error("async.wait: not inside a task (async.spawn or a request handler)", 2) end
  local r = table_pack(co_yield(WAIT, register))
  if r[1] ~= true then error(r[2], 0) end
  return table_unpack(r, 2, r.n)
end

--- async.sleep(ms): suspends the current task for ms milliseconds.
function async.sleep(ms)
  if type(ms) ~= "number" or ms ~= ms or ms < 0 then error("async.sleep: bad milliseconds", 2) end
  return async.wait(function(wake)
    local t = uv.new_timer()
    t:start(ms // 1 | 0, 0, function()
      t:close()
      wake()
    end)
  end)
end

--- async.finish_closing([max_turns]) -> true when no handle is left closing
-- Outside the loop (uv.run not running), turns it without blocking until
-- every handle being closed has finished closing (at most max_turns turns,
-- default 100). Call it before the process exits: a handle still closing
-- when luv's loop is collected has its close callback run while Lua is being
-- torn down, which crashes the process. Inside the loop it does nothing.
function async.finish_closing(max_turns)
  if uv.loop_mode() then return false end
  local function closing()
    local found = false
    uv.walk(function(h) if h:is_closing() then found = true end end)
    return found
  end
  for _ = 1, max_turns or 100 do
    if not closing() then return true end
    uv.run("nowait")
  end
  return not closing()
end

return async
