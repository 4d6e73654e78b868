-- What metrics cost: the per-request counting in dispatch, the database
-- statement timer against the same statements untimed (a ratio, same process,
-- same data), and a scrape of a registry with many series.
--
--   LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/release/?.so;;' lua5.4 bench/metrics.lua
local uv = require "luv"
local metrics = require "loom.http.metrics"
local db = require "loom.db"

local ROUNDS = 5

local function median(list)
  table.sort(list)
  return list[(#list + 1) // 2]
end

-- median over ROUNDS of the seconds fn(n) takes, per item
local function per_item(n, fn)
  local times = {}
  for r = 1, ROUNDS do
    local t0 = uv.hrtime()
    fn(n)
    times[r] = (uv.hrtime() - t0) / 1e9 / n
  end
  return median(times)
end

-- 1. one request's counting, as dispatch does it
local reg = metrics.new()
local requests = reg:counter("r_total", "R.", { "route", "method", "code" })
local duration = reg:histogram("d_seconds", "D.", { "route", "method" },
  { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30 })
local routes = {}
for i = 1, 40 do routes[i] = "/_matrix/client/v3/route" .. i .. "/{param}" end
local per_req = per_item(100000, function(n)
  for i = 1, n do
    local route = routes[i % 40 + 1]
    requests:inc(1, route, "GET", 200)
    duration:observe((i % 1000) / 20000, route, "GET")
  end
end)
print(("request counting: %.0f ns per request (counter + histogram, 3 labels)"):format(per_req * 1e9))

-- 2. statement timer: the same indexed lookups with and without it
local path = os.tmpname()
local conn = assert(db.open { path = path, migrate = false })
assert(conn:exec("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)"))
assert(conn:transaction(function()
  for i = 1, 10000 do conn:run("INSERT INTO t (k, v) VALUES (?, ?)", i, "value " .. i) end
  return true
end))
local function lookups(n)
  for i = 1, n do conn:first("SELECT v FROM t WHERE k = ?", i % 10000 + 1) end
end
local dbh = reg:histogram("db_seconds", "DB.", nil,
  { 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5 })
local function timed(started, ...)
  dbh:observe((uv.hrtime() - started) / 1e9)
  return ...
end
local plain, with = {}, {}
for r = 1, ROUNDS do
  conn.time_statement = nil
  plain[r] = per_item(20000, lookups)
  conn.time_statement = function(f, ...) return timed(uv.hrtime(), f(...)) end
  with[r] = per_item(20000, lookups)
end
local p, w = median(plain), median(with)
print(("statement timer: %.2f us untimed, %.2f us timed per lookup (x%.2f)"):format(p * 1e6, w * 1e6, w / p))
conn:close()
os.remove(path); os.remove(path .. "-wal"); os.remove(path .. "-shm")

-- 3. a scrape: 40 routes x 2 methods x 5 codes plus their histograms
for i, route in ipairs(routes) do
  for _, code in ipairs { 200, 400, 401, 403, 404 } do requests:inc(1, route, "POST", code) end
  duration:observe(i / 1000, route, "POST")
end
local text = reg:render()
local scrape = per_item(50, function(n) for _ = 1, n do reg:render() end end)
local nlines = select(2, text:gsub("\n", ""))
print(("scrape: %.2f ms for %d lines, %d bytes"):format(scrape * 1e3, nlines, #text))
