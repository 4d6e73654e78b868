-- /keys/query for 500 users with 3 devices each (issue target: < 20 ms),
-- through the endpoint handler in process (no HTTP): each device has
-- signed device keys and a display name, each user master and self-signing
-- keys. Reports median and p99 (wall clock, and the process's CPU time)
-- over RUNS queries.
--
-- Usage: lua5.4 bench/keys_query.lua [users] (default 500).
local uv = require "luv"
local core = require "loom.core"
local loom = require "loom"
local api = require "loom.api"

local USERS = tonumber(arg and arg[1]) or 500
local DEVICES, RUNS = 3, 50
local json = core.json

local function now() return uv.hrtime() end
local function remove(p) for _, s in ipairs { "", "-wal", "-shm" } do os.remove(p .. s) end end

local path = os.tmpname()
os.remove(path)
path = path .. ".db"
local server = loom.new { port = 0, server_name = "bench", log_level = "error",
  database = { path = path, synchronous = "NORMAL" }, logger = function() end }
local hs = api.install(server)
local query
for _, r in ipairs(require("loom.api.client.keys").routes) do
  if r[2]:find("/keys/query$") then query = r[3] end
end
local b64 = function(s) return (core.crypto.base64_encode(s)) end

local t0 = now()
local users = {}
hs.store:transaction(function()
  for i = 1, USERS do
    local user_id = ("@u%d:bench"):format(i)
    users[i] = user_id
    assert(hs.accounts:register(("u%d"):format(i), nil))
    for d = 1, DEVICES do
      local device_id = ("DEV%d"):format(d)
      assert(hs.accounts:issue_token(user_id, device_id, "Device " .. d))
      local dk = { user_id = user_id, device_id = device_id,
        algorithms = { "m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2" },
        keys = { ["curve25519:" .. device_id] = b64(core.crypto.random_bytes(32)),
          ["ed25519:" .. device_id] = b64(core.crypto.random_bytes(32)) },
        signatures = { [user_id] = { ["ed25519:" .. device_id] = b64(core.crypto.random_bytes(64)) } } }
      hs.store:put_device_keys(user_id, device_id, json.encode(dk))
    end
    local pub = b64(core.crypto.random_bytes(32))
    hs.store:put_cross_signing_keys(user_id, {
      master = json.encode { user_id = user_id, usage = { "master" }, keys = { ["ed25519:" .. pub] = pub } },
      self_signing = json.encode { user_id = user_id, usage = { "self_signing" }, keys = { ["ed25519:" .. pub] = pub } },
    })
  end
  return true
end)
print(("%d users x %d devices stored in %.1f s"):format(USERS, DEVICES, (now() - t0) / 1e9))

local asked = {}
for _, u in ipairs(users) do asked[u] = json.array() end
local req = { user_id = users[1], device_id = "DEV1", params = {},
  json = function() return { device_keys = asked } end, arg = function() end }
local times, cpu = {}, {}
for i = 1, RUNS do
  local t1, c1 = now(), os.clock()
  local res = query(hs, req)          -- a Response: the JSON text is made already
  times[i] = (now() - t1) / 1e6
  cpu[i] = (os.clock() - c1) * 1e3
  res = json.decode(res.body)
  assert(res.device_keys)
  local n = 0
  for _, devs in pairs(res.device_keys) do for _ in pairs(devs) do n = n + 1 end end
  assert(n == USERS * DEVICES, "expected every device")
end
table.sort(times)
table.sort(cpu)
print(("/keys/query, %d users x %d devices: median %.2f ms, p99 %.2f ms (%d runs; target < 20 ms)"):format(
  USERS, DEVICES, times[math.ceil(RUNS / 2)], times[math.ceil(RUNS * 0.99)], RUNS))
-- on a shared machine the wall clock includes waiting for a core: the
-- process's own CPU time per query too
print(("  CPU time per query: median %.2f ms, p99 %.2f ms"):format(cpu[math.ceil(RUNS / 2)],
  cpu[math.ceil(RUNS * 0.99)]))
hs.store:close()
remove(path)
