-- Connection flood: N clients connect at once to a server whose
-- limits.max_connections is M, each sends one GET and reads its answer.
-- Prints how many got 200 and 503, the server's warning lines, and the time.
--
--   LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/release/?.so;;' \
--     lua5.4 bench/conn_flood.lua [N=2000] [M=64]
local uv = require "luv"
local loom = require "loom"
local async = require "loom.async"

local n = tonumber(arg[1]) or 2000
local m = tonumber(arg[2]) or 64

local warns = 0
local srv = loom.new { port = 0, log_level = "warn", limits = { max_connections = m },
  logger = function(level, message)
    if level == "warn" then warns = warns + 1; print("  log: " .. message) end
  end }
srv:route("GET", "/slow", function() async.sleep(200); return { ok = true } end)
assert(srv:start())
local port = srv:port()

local counts, done = {}, 0
local t0 = uv.hrtime()
for _ = 1, n do
  local tcp = uv.new_tcp()
  local buf = ""
  local function finish(what)
    if tcp:is_closing() then return end
    tcp:close()
    counts[what] = (counts[what] or 0) + 1
    done = done + 1
    if done == n then srv:stop() end
  end
  tcp:connect("127.0.0.1", port, function(err)
    if err then return finish("connect " .. err) end
    tcp:read_start(function(rerr, data)
      if data then buf = buf .. data end
      local status = buf:match("^HTTP/1%.1 (%d+)")
      if status and buf:find("\r\n\r\n", 1, true) then return finish(status) end
      if rerr or not data then finish(rerr and ("error " .. rerr) or "closed without answer") end
    end)
    tcp:write("GET /slow HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
  end)
end
local watchdog = uv.new_timer()
watchdog:start(30000, 0, function()
  print(("  gave up after 30 s: %d of %d answered"):format(done, n))
  srv:stop()
end)
watchdog:unref()
srv:run()
if not watchdog:is_closing() then watchdog:close() end
async.finish_closing()
local ms = (uv.hrtime() - t0) / 1e6
print(("%d clients, max_connections %d: %.0f ms"):format(n, m, ms))
for what, c in pairs(counts) do print(("  %-28s %d"):format(what, c)) end
print(("  warning lines: %d"):format(warns))
