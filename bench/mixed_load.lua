-- Mixed load: a steady 200 sends/s, 50 incremental /sync/s and 20 /messages/s
-- against a homeserver child process (spec/support/send_server.lua) for a
-- few minutes; p50/p99 per request type per 30 s window, and the server's
-- Lua heap (KiB) at the end of each window. Requests go out on schedule
-- (open loop) over a pool of keep-alive connections, so a stall shows up as
-- latency instead of a lower rate.
--
-- Usage: lua5.4 bench/mixed_load.lua [seconds (default 150)] [synchronous (FULL)] [group|nogroup]
local uv = require "luv"
local json = require("loom.core").json
local load = dofile "bench/send_load.lua"

local SECONDS = tonumber(arg and arg[1]) or 150
local SYNC_MODE, GROUPING = arg and arg[2] or "FULL", arg and arg[3] or "group"
local WINDOW = 30
local RATES = { send = 200, sync = 50, messages = 20 }
local lua = arg and arg[-1] or "lua5.4"

os.execute("mkdir -p bench/data")
local path = "bench/data/mixed-load.db"
for _, sfx in ipairs { "", "-wal", "-shm" } do os.remove(path .. sfx) end
local child = assert(io.popen(("exec env LOOM_BENCH_STATS=1 %s spec/support/send_server.lua %s %s %s"):format(
  lua, path, SYNC_MODE, GROUPING), "r"))
local port, pid, token, room = child:read("l"):match("^ready (%d+) (%d+) (%S+) (%S+)$")
assert(port, "server did not start")
port = tonumber(port)
local function enc(s) return (s:gsub("[^%w%-%._~]", function(ch) return ("%%%02X"):format(ch:byte()) end)) end
local eroom = enc(room)

-- ---- a pool of keep-alive connections ---------------------------------------
local idle = {}
local function connection()
  local c = table.remove(idle)
  if c then return c end
  c = { tcp = uv.new_tcp(), buf = "" }
  c.tcp:connect("127.0.0.1", port, function(err)
    if err then io.stderr:write("connect: ", err, "\n") end
  end)
  c.tcp:read_start(function(err, data)
    if err or not data then
      if not c.tcp:is_closing() then c.tcp:close() end
      if c.cb then local cb = c.cb; c.cb = nil; cb(0, "") end
      return
    end
    c.buf = c.buf .. data
    local head_end = c.buf:find("\r\n\r\n", 1, true)
    if not head_end then return end
    local len = tonumber(c.buf:sub(1, head_end):match("[Cc]ontent%-[Ll]ength: (%d+)")) or 0
    if #c.buf < head_end + 3 + len then return end
    local status = tonumber(c.buf:match("^HTTP/1%.1 (%d+)"))
    local body = c.buf:sub(head_end + 4, head_end + 3 + len)
    c.buf = c.buf:sub(head_end + 4 + len)
    local cb = c.cb
    c.cb = nil
    idle[#idle + 1] = c
    cb(status, body)
  end)
  return c
end
local function request(method, target, body, cb)
  local c = connection()
  c.cb = cb
  body = body or ""
  c.tcp:write(("%s %s HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s")
    :format(method, target, token, #body, body))
end

-- ---- the load ------------------------------------------------------------------
local windows = {}
local function record(kind, ns, status)
  local w = windows[#windows]
  local l = w[kind]
  if not l then l = {}; w[kind] = l end
  l[#l + 1] = ns
  if status ~= 200 then w.errors = (w.errors or 0) + 1 end
end
local since
local sent = 0
local issue = {
  send = function()
    sent = sent + 1
    local t = uv.hrtime()
    request("PUT", ("/_matrix/client/v3/rooms/%s/send/m.room.message/m%d"):format(eroom, sent),
      ('{"msgtype":"m.text","body":"mixed load %d"}'):format(sent),
      function(status) record("send", uv.hrtime() - t, status) end)
  end,
  sync = function()
    local t = uv.hrtime()
    request("GET", "/_matrix/client/v3/sync?timeout=0" .. (since and ("&since=" .. enc(since)) or ""), nil,
      function(status, body)
        record("sync", uv.hrtime() - t, status)
        if status == 200 then since = json.decode(body).next_batch end
      end)
  end,
  messages = function()
    local t = uv.hrtime()
    request("GET", ("/_matrix/client/v3/rooms/%s/messages?dir=b&limit=20"):format(eroom), nil,
      function(status) record("messages", uv.hrtime() - t, status) end)
  end,
}

local t0 = uv.hrtime()
local due = { send = 0, sync = 0, messages = 0 }
windows[1] = {}
local tick = uv.new_timer()
local stats_timer = uv.new_timer()
local function report(w, n)
  local parts = {}
  for _, kind in ipairs { "send", "sync", "messages" } do
    local l = w[kind] or {}
    table.sort(l)
    parts[#parts + 1] = ("%s n=%d p50 %.1f p99 %.1f ms"):format(kind, #l, load.pct(l, 0.5), load.pct(l, 0.99))
  end
  print(("%3d-%3d s  %s%s"):format((n - 1) * WINDOW, n * WINDOW, table.concat(parts, " | "),
    w.errors and ("  errors " .. w.errors) or ""))
  io.stdout:flush()
end
tick:start(5, 5, function()
  local elapsed = (uv.hrtime() - t0) / 1e9
  if elapsed >= SECONDS then
    tick:stop(); tick:close(); stats_timer:close()
    report(windows[#windows], #windows)
    os.execute("kill " .. pid)
    for _, c in ipairs(idle) do if not c.tcp:is_closing() then c.tcp:close() end end
    uv.stop()
    return
  end
  if elapsed >= #windows * WINDOW then
    report(windows[#windows], #windows)
    windows[#windows + 1] = {}
  end
  for kind, rate in pairs(RATES) do
    local want = math.floor(elapsed * rate)
    while due[kind] < want do due[kind] = due[kind] + 1; issue[kind]() end
  end
end)
stats_timer:start(WINDOW * 1000, WINDOW * 1000, function() end)
local ok, err = pcall(uv.run)
if not ok then os.execute("kill " .. pid); error(err) end
print("server: " .. (child:read("a") or ""))
child:close()
