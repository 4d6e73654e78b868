-- The content repository under load, over real HTTP on 127.0.0.1:
--
--  1. thumbnails of a 12-megapixel JPEG (4000x3000, made with libvips here):
--     first requests (each of a fresh upload of the same file, so nothing is
--     cached) against cached ones, and the latency of /versions pings sent
--     meanwhile against idle pings (the thumbnailer runs off the event loop);
--  2. a 100 MB upload and its download: throughput against a plain loopback
--     TCP sink of the same bytes in this process, and the growth of the
--     process's peak RSS (VmHWM, reset before each phase) against the file
--     size: a body held in memory would grow it by 100 MB or more.
--
-- Usage: lua5.4 bench/media.lua [MB] (default 100). Prints median and p99
-- and each ratio.
local uv = require "luv"
local core = require "loom.core"
local loom = require "loom"
local api = require "loom.api"

local MB_N = tonumber(arg and arg[1]) or 100
local FIRST_RUNS, CACHED_RUNS = 8, 200
local MB = 1024 * 1024

local function now() return uv.hrtime() end
local function ms(ns) return ns / 1e6 end

local function pct(list, p)
  table.sort(list)
  return list[math.max(1, math.ceil(#list * p))]
end

local function proc_kb(field)
  local f = io.open("/proc/self/status")
  local v
  for line in f:lines() do
    local n = line:match("^" .. field .. ":%s+(%d+) kB")
    if n then v = tonumber(n) end
  end
  f:close()
  return v
end

local function reset_peak()
  local f = io.open("/proc/self/clear_refs", "w")
  if f then f:write("5"); f:close() end
end

local dir = assert(uv.fs_mkdtemp((uv.os_tmpdir() or "/tmp") .. "/loom-bench-media-XXXXXX"))
local db = dir .. "/bench.db"
local server = loom.new { port = 0, server_name = "bench", log_level = "error",
  database = { path = db, synchronous = "NORMAL" }, logger = function() end,
  media = { store_path = dir .. "/media", max_upload_size = (MB_N + 1) * MB, max_pixels = 50 * 1000 * 1000 } }
local hs = api.install(server)
assert(server:start())
local port = server:port()
assert(hs.accounts:register("bench", "bench-password"))
local user = assert(hs.accounts:login("@bench:bench", "bench-password"))
local token = user.access_token

local jpeg = dir .. "/12mp.jpg"
local t0 = now()
assert(core.media.test_image(jpeg, 4000, 3000))
local f = assert(io.open(jpeg, "rb"))
local jpeg_bytes = f:read("a")
f:close()
print(("12-megapixel JPEG made: %d bytes in %.0f ms"):format(#jpeg_bytes, ms(now() - t0)))

-- ---- a small HTTP client on the same loop ---------------------------------

local function run(fn)
  local done, res, err = false, nil, nil
  local co = coroutine.create(function() res = fn() end)
  local function check(ok, e) if not ok then err = debug.traceback(co, e) end end
  check(coroutine.resume(co))
  while not done and not err do
    if coroutine.status(co) == "dead" then done = true else uv.run("once") end
  end
  if err then error(err, 0) end
  return res
end

-- One request on a fresh connection: head, then the body from pieces(i) for
-- i = 1..n (each written when the previous one is out); the response's
-- status and length (its body is counted, not kept).
local function exchange(head, n, piece)
  local co = coroutine.running()
  local tcp = uv.new_tcp()
  local function wake() assert(coroutine.resume(co)) end
  tcp:connect("127.0.0.1", port, function(e) assert(not e, e); wake() end)
  coroutine.yield()
  local buf, len, got, status, eof, waiting = "", nil, 0, nil, false, false
  local body_start
  tcp:read_start(function(_, data)
    if not data then eof = true
    elseif not len then
      buf = buf .. data
      local e = buf:find("\r\n\r\n", 1, true)
      if e then
        status = tonumber(buf:match("^HTTP/1.1 (%d+)"))
        len = tonumber(buf:match("[Cc]ontent%-[Ll]ength: (%d+)")) or 0
        got = #buf - (e + 3)
        body_start = buf:sub(e + 4, e + 200)
        buf = nil
      end
    else
      got = got + #data
    end
    if waiting and (eof or (len and got >= len)) then waiting = false; wake() end
  end)
  local function write(s)
    tcp:write(s, function() wake() end)
    coroutine.yield()
  end
  write(head)
  for i = 1, n or 0 do write(piece(i)) end
  if not (eof or (len and got >= len)) then
    waiting = true
    coroutine.yield()
  end
  tcp:close()
  return status, got, body_start
end

local function get(path)
  return exchange("GET " .. path .. " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " .. token .. "\r\n\r\n")
end

local function upload(bytes_or_n, piece, ctype)
  local n = piece and bytes_or_n or 1
  local size = piece and n * MB or #bytes_or_n
  local status, _, body = exchange("POST /_matrix/media/v3/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
    .. token .. "\r\nContent-Type: " .. ctype .. "\r\nContent-Length: " .. size .. "\r\n\r\n",
    n, piece or function() return bytes_or_n end)
  assert(status == 200, "upload failed: " .. tostring(status) .. " " .. tostring(body))
  return body:match('"content_uri":"mxc://([^"]+)"')
end

-- ---- 1. thumbnails ---------------------------------------------------------------

local function ping_series(stop)
  -- /versions every 5 ms until stop(): latencies in ms
  local lat = {}
  while not stop() do
    local t = now()
    local status = get("/_matrix/client/versions")
    assert(status == 200)
    lat[#lat + 1] = ms(now() - t)
    local co = coroutine.running()
    local timer = uv.new_timer()
    timer:start(5, 0, function() timer:close(); assert(coroutine.resume(co)) end)
    coroutine.yield()
  end
  return lat
end

local function spawn(fn)
  local h = { done = false }
  local co = coroutine.create(function() h.res = fn(); h.done = true end)
  assert(coroutine.resume(co))
  return h
end

local function wait_for(h)
  local co = coroutine.running()
  local timer = uv.new_timer()
  timer:start(2, 2, function()
    if h.done then timer:close(); assert(coroutine.resume(co)) end
  end)
  if not h.done then coroutine.yield() else timer:close() end
end

local thumbs = run(function()
  local ids = {}
  for i = 1, FIRST_RUNS do ids[i] = upload(jpeg_bytes, nil, "image/jpeg") end
  local idle_stop = false
  local idle = spawn(function() return ping_series(function() return idle_stop end) end)
  local co = coroutine.running()
  local t = uv.new_timer()
  t:start(1000, 0, function() t:close(); idle_stop = true; assert(coroutine.resume(co)) end)
  coroutine.yield()
  wait_for(idle)
  local busy_stop = false
  local busy = spawn(function() return ping_series(function() return busy_stop end) end)
  local first = {}
  for i = 1, FIRST_RUNS do
    local s = now()
    local status = get("/_matrix/client/v1/media/thumbnail/" .. ids[i] .. "?width=320&height=240&method=scale")
    assert(status == 200, "thumbnail failed: " .. tostring(status))
    first[i] = ms(now() - s)
  end
  busy_stop = true
  wait_for(busy)
  local cached = {}
  for i = 1, CACHED_RUNS do
    local s = now()
    local status = get("/_matrix/client/v1/media/thumbnail/" .. ids[1] .. "?width=320&height=240&method=scale")
    assert(status == 200)
    cached[i] = ms(now() - s)
  end
  return { first = first, cached = cached, idle = idle.res, busy = busy.res }
end)

local f50, f99 = pct(thumbs.first, 0.5), pct(thumbs.first, 0.99)
local c50, c99 = pct(thumbs.cached, 0.5), pct(thumbs.cached, 0.99)
print(("thumbnail 320x240 of 12 MP JPEG, first request (%d): median %.1f ms, p99 %.1f ms"):format(#thumbs.first,
  f50, f99))
print(("thumbnail, cached (%d): median %.2f ms, p99 %.2f ms; first/cached median ratio %.0fx"):format(
  #thumbs.cached, c50, c99, f50 / c50))
local i50, i99 = pct(thumbs.idle, 0.5), pct(thumbs.idle, 0.99)
local b50, b99 = pct(thumbs.busy, 0.5), pct(thumbs.busy, 0.99)
print(("/versions while idle (%d): median %.2f ms, p99 %.2f ms"):format(#thumbs.idle, i50, i99))
print(("/versions while thumbnailing (%d): median %.2f ms, p99 %.2f ms; p99 ratio to idle %.2fx"):format(
  #thumbs.busy, b50, b99, b99 / i99))

-- ---- 2. a big upload and download -------------------------------------------------

local piece_bytes = string.rep("0123456789abcdef", MB // 16)
local function piece() return piece_bytes end

-- baseline: the same bytes into a plain TCP sink on this loop
local sink = uv.new_tcp()
sink:bind("127.0.0.1", 0)
local sink_port = sink:getsockname().port
sink:listen(16, function()
  local c = uv.new_tcp()
  sink:accept(c)
  local n = 0
  c:read_start(function(_, data)
    if data then
      n = n + #data
      if n >= MB_N * MB then c:write("done", function() c:close() end) end
    else
      c:close()
    end
  end)
end)
collectgarbage()
local base_ms = run(function()
  local co = coroutine.running()
  local tcp = uv.new_tcp()
  local function wake() assert(coroutine.resume(co)) end
  local t = now()
  tcp:connect("127.0.0.1", sink_port, function() wake() end)
  coroutine.yield()
  local finished = false
  tcp:read_start(function(_, data) if data and not finished then finished = true; wake() end end)
  for _ = 1, MB_N do
    tcp:write(piece_bytes, function() wake() end)
    coroutine.yield()
  end
  coroutine.yield()
  tcp:close()
  return ms(now() - t)
end)
sink:close()

collectgarbage()
local rss0 = proc_kb("VmRSS")
reset_peak()
local up_t = now()
local id = run(function() return upload(MB_N, piece, "application/octet-stream") end)
local up_ms = ms(now() - up_t)
local up_peak = proc_kb("VmHWM") - rss0
collectgarbage()
local rss1 = proc_kb("VmRSS")
reset_peak()
local down_t = now()
local down = run(function() return { get("/_matrix/client/v1/media/download/" .. id) } end)
local status, got = down[1], down[2]
local down_ms = ms(now() - down_t)
local down_peak = proc_kb("VmHWM") - rss1
assert(status == 200 and got == MB_N * MB, ("download failed: %s, %s bytes"):format(tostring(status), tostring(got)))

local function mbps(t) return MB_N / (t / 1000) end
print(("loopback TCP sink of %d MB (baseline): %.0f MB/s"):format(MB_N, mbps(base_ms)))
print(("upload of %d MB: %.0f MB/s (%.2fx of baseline); peak RSS growth %.1f MB (%.1f%% of the file)"):format(
  MB_N, mbps(up_ms), mbps(up_ms) / mbps(base_ms), up_peak / 1024, 100 * up_peak / 1024 / MB_N))
print(("download of %d MB: %.0f MB/s (%.2fx of baseline); peak RSS growth %.1f MB (%.1f%% of the file)"):format(
  MB_N, mbps(down_ms), mbps(down_ms) / mbps(base_ms), down_peak / 1024, 100 * down_peak / 1024 / MB_N))
if up_peak / 1024 > MB_N / 2 or down_peak / 1024 > MB_N / 2 then
  print("!! peak RSS grew by more than half the file size")
end

server:stop()
for _ = 1, 10 do uv.run("nowait") end
os.execute("rm -rf '" .. dir .. "'")
