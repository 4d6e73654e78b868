-- B1-http: the B1 room served over HTTP on loopback.
--   1. 100 backward /messages pages of 50 from random positions of a room of
--      N messages (default 1,000,000), with a type filter and history
--      visibility checks; p50/p99 per page (target p50 < 2 ms, p99 < 10 ms),
--      next to the same pages read from the store in process (the floor the
--      HTTP layer adds to).
--   2. Sends per second through PUT /rooms/{id}/send (target > 2,000/s on one
--      core), 8 clients on keep-alive connections in another process.
-- For the /messages pages the client shares the server's process and loop.
--
-- Usage: lua5.4 bench/b1_http.lua [messages]   (database built once into bench/data/)
package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local bl = require "benchlib"
local uv = require "luv"
local loom = require "loom"
local api = require "loom.api"
local core = require "loom.core"

local json, token = core.json, core.token

local N = tonumber(arg and arg[1]) or tonumber(os.getenv("LOOM_B1_EVENTS")) or 1000000
local PAGES, PAGE = 100, 50
local PATH = ("bench/data/b1http-%d.db"):format(N)
local now = bl.now

os.execute("mkdir -p bench/data")
local fresh = io.open(PATH, "rb") == nil
local server = loom.new { port = 0, server_name = "bench.local", log_level = "warn",
  database = { path = PATH, synchronous = "OFF" }, password_iterations = 1000 }
local hs = api.install(server)
assert(server:start())
local port = server:port()
local store, rooms = hs.store, hs.rooms

-- ---- the room -------------------------------------------------------------

local ALICE = "@alice:bench.local"
local room_id
if fresh or not store.conn:value("SELECT room_id FROM rooms LIMIT 1") then
  assert(hs.accounts:register("alice", "alice-password"))
  local t0 = now()
  room_id = assert(rooms:create_room(ALICE))
  local function send(proto) return assert(rooms:send(room_id, proto)) end
  send { type = "m.room.member", state_key = ALICE, sender = ALICE, content = { membership = "join" } }
  send { type = "m.room.power_levels", state_key = "", sender = ALICE, content = { users = { [ALICE] = 100 } } }
  send { type = "m.room.history_visibility", state_key = "", sender = ALICE,
    content = { history_visibility = "shared" } }
  local last = send { type = "m.room.join_rules", state_key = "", sender = ALICE, content = { join_rule = "invite" } }
  -- N messages in bulk through the store (the room service would sign and
  -- authorise each; here the messages only need to be there, with the state
  -- before each one recorded as the room's current state).
  local _, meta = store:event(last.event_id)
  local state_nid = select(2, store:event_state(meta.event_nid))
  local prev, depth = last.event_id, meta.depth
  local batch = {}
  for i = 1, N do
    depth = depth + 1
    local id = ("$b1http_%d"):format(i)
    local ty, content = "m.room.message", { msgtype = "m.text", body = "message number " .. i }
    if i % 10 == 3 then ty, content = "m.reaction", { ["m.relates_to"] = { rel_type = "m.annotation",
      event_id = prev, key = "+1" } } end
    local ev = { room_id = room_id, type = ty, sender = ALICE, depth = depth, origin_server_ts = 1700000000000 + i,
      prev_events = json.array { prev }, auth_events = json.array {}, content = content }
    batch[#batch + 1] = { id, ev, { room_version = "11" } }
    prev = id
    if #batch == 5000 or i == N then
      assert(store:persist_events(batch))
      batch = {}
    end
  end
  assert(store.conn:run("UPDATE events SET state_before = ? WHERE event_id LIKE '$b1http_%'", state_nid))
  store.conn:exec("ANALYZE")
  print(("built %d messages in %.1f s"):format(N, (now() - t0) / 1e9))
else
  room_id = store.conn:value("SELECT room_id FROM rooms LIMIT 1")
  assert(hs.accounts:available("alice") == nil)
end
local login = assert(hs.accounts:login(ALICE, "alice-password"))

-- ---- a keep-alive client on the same loop ---------------------------------

local function client() return bl.client(port, login.access_token) end
local run, enc = bl.run, bl.enc

local function pct(list, p)
  table.sort(list)
  return bl.percentile(list, p) / 1e6
end

-- ---- 1. /messages ------------------------------------------------------------

math.randomseed(42)
local room_nid = store:room_nid(room_id)
local lo, hi = table.unpack(store.conn:first(
  "SELECT min(stream_ordering), max(stream_ordering) FROM events WHERE room_nid = ?", room_nid))
local positions = {}
for i = 1, PAGES do
  local row = store.conn:first("SELECT depth, stream_ordering FROM events WHERE room_nid = ? AND stream_ordering >= ?" ..
    " AND outlier = 0 ORDER BY stream_ordering LIMIT 1", room_nid, math.random(lo, hi))
  positions[i] = tostring(token.topological(row[1], row[2]))
end
local filter = enc('{"types":["m.room.message"]}')
local http_t, store_t = {}, {}
run(function()
  local c = client()
  local base = "/_matrix/client/v3/rooms/" .. enc(room_id) .. "/messages?dir=b&limit=" .. PAGE .. "&filter=" .. filter
  for round = 1, 6 do
    for _, pos in ipairs(positions) do
      local t0 = now()
      local status, body = c.call("GET", base .. "&from=" .. enc(pos))
      local t1 = now()
      assert(status == 200, body)
      if round == 1 then
        local page = json.decode(body)
        assert(#page.chunk == PAGE or page["end"] == nil, "short page")
      else
        http_t[#http_t + 1] = t1 - t0
      end
      t0 = now()
      store:paginate(room_id, pos, { dir = "b", limit = PAGE, filter = { types = { "m.room.message" } } })
      if round > 1 then store_t[#store_t + 1] = now() - t0 end
    end
  end
  c.tcp:close()
end)
local h50, h99 = pct(http_t, 0.5), pct(http_t, 0.99)
local s50 = pct(store_t, 0.5)
print(("B1-http /messages: %d pages of %d (type filter, history visibility), room of %d events")
  :format(#http_t, PAGE, N))
print(("  over HTTP  p50 %.3f ms  p99 %.3f ms   (targets p50 < 2 ms: %s, p99 < 10 ms: %s)")
  :format(h50, h99, h50 < 2 and "met" or "MISSED", h99 < 10 and "met" or "MISSED"))
print(("  store only p50 %.3f ms  (HTTP, auth, visibility and JSON add %.3f ms)"):format(s50, h50 - s50))

-- ---- 2. sends per second -----------------------------------------------------
-- The clients run in their own process (bench/b1_http_client.lua), so the
-- server has one core to itself, as the target says.

local CLIENTS, EACH = 8, 500
local elapsed
run(function()
  local co = coroutine.running()
  local out = uv.new_pipe(false)
  local text, code = {}, nil
  local pending = 2
  local function done() pending = pending - 1; if pending == 0 then coroutine.resume(co) end end
  local handle
  handle = uv.spawn("lua5.4", { args = { "bench/b1_http_client.lua", tostring(port), login.access_token,
    enc(room_id), tostring(CLIENTS), tostring(EACH) }, stdio = { nil, out, 2 } }, function(c)
      code = c
      handle:close()
      done()
    end)
  out:read_start(function(_, data) if data then text[#text + 1] = data else out:close(); done() end end)
  coroutine.yield()
  assert(code == 0, "client process failed")
  elapsed = tonumber(table.concat(text))
end)
local rate = CLIENTS * EACH / elapsed
print(("B1-http sends: %d PUT /send from %d clients (another process) in %.2f s = %.0f sends/s (target > 2,000/s: %s)")
  :format(CLIENTS * EACH, CLIENTS, elapsed, rate, rate > 2000 and "met" or "MISSED"))

server:stop(function() end)
for _ = 1, 20 do uv.run("nowait") end
store:close()
