-- B8: 10,000 concurrent long-poll /sync connections on loopback.
--   * the server's RSS with every connection waiting (target < 300 MB);
--   * wake-up: a message in one room of 100 of those users, from its
--     commit (the store's note) to each of the 100 answers arriving at the
--     client process; p50/p99 over every answer and the p50 of the last
--     answer of each round (target p99 < 5 ms); next to the baseline: the
--     same 100 answers' timelines read by the store alone, one by one.
-- Users: USERS (default 10,000), in rooms of 100; the clients run in their
-- own process (bench/b8_clients.lua), one connection per user. Raises the
-- open-file limit through a shell wrapper when it is too low; stops by
-- itself (a watchdog ends it after 10 minutes).
--
-- Usage: lua5.4 bench/b8_longpoll.lua [users=10000] [rounds=20]
-- B8_PHASES=1 adds the server's time in engine.sync and in encoding;
-- B8_PROFILE=1 samples the server's Lua stacks; B8_TRACE=1 prints the SQL
-- of one round.
local uv = require "luv"

local USERS = tonumber(arg and arg[1]) or 10000
local ROUNDS = tonumber(arg and arg[2]) or 20
local PER_ROOM = 100

-- ---- the open-file limit: re-run under `ulimit -n` when it is too low -----
local function nofile()
  local f = io.open("/proc/self/limits")
  if not f then return math.huge end
  local text = f:read("a")
  f:close()
  local soft = text:match("Max open files%s+(%d+)")
  return tonumber(soft) or math.huge
end
local need = USERS + 1024
if nofile() < need and not os.getenv("LOOM_B8_RAISED") then
  local cmd = ("ulimit -n %d && LOOM_B8_RAISED=1 exec lua5.4 bench/b8_longpoll.lua %d %d"):format(need, USERS, ROUNDS)
  print("raising the open-file limit: " .. cmd)
  os.exit(os.execute(cmd) and 0 or 1)
end

local loom = require "loom"
local api = require "loom.api"
local async = require "loom.async"
local sync_token = require "loom.sync.token"

local function now() return uv.hrtime() end
local function rss_mb()
  local f = assert(io.open("/proc/self/status"))
  local kb = f:read("a"):match("VmRSS:%s+(%d+)")
  f:close()
  return tonumber(kb) / 1024
end
local function percentile(sorted, p) return sorted[math.max(1, math.ceil(#sorted * p))] end

local path = os.tmpname()
-- presence off, as the configuration advises for deployments this large
-- (B8_PRESENCE=1 keeps it on: every first sync then sets its user online,
-- which wakes the long-polls of everyone sharing a room with them)
local server = loom.new { port = 0, server_name = "bench.local", log_level = "warn",
  database = { path = path, synchronous = "OFF" }, password_iterations = 1000,
  limits = { max_connections = USERS + 100 }, presence = os.getenv("B8_PRESENCE") == "1" }
local hs = api.install(server)
assert(server:start())
local port = server:port()
local store, rooms = hs.store, hs.rooms

local watchdog = uv.new_timer()
watchdog:start(600000, 0, function() print("watchdog: 10 minutes, stopping"); os.exit(2) end)
watchdog:unref()

-- ---- users and rooms --------------------------------------------------------

local t0 = now()
local users, tokens = {}, {}
for i = 1, USERS do
  local name = "u" .. i
  assert(hs.accounts:register(name, "pw"))
  local uid = "@" .. name .. ":bench.local"
  users[i] = uid
  tokens[i] = assert(hs.accounts:login(uid, "pw")).access_token
end
print(("registered %d users in %.1f s"):format(USERS, (now() - t0) / 1e9))
t0 = now()
local room_of, room_ids = {}, {}
for first = 1, USERS, PER_ROOM do
  local creator = users[first]
  local room_id = assert(rooms:create_room(creator))
  local function send(proto) return assert(rooms:send(room_id, proto)) end
  send { type = "m.room.member", state_key = creator, sender = creator, content = { membership = "join" } }
  send { type = "m.room.power_levels", state_key = "", sender = creator, content = { users = { [creator] = 100 } } }
  send { type = "m.room.join_rules", state_key = "", sender = creator, content = { join_rule = "public" } }
  send { type = "m.room.history_visibility", state_key = "", sender = creator,
    content = { history_visibility = "shared" } }
  for i = first + 1, math.min(first + PER_ROOM - 1, USERS) do
    send { type = "m.room.member", state_key = users[i], sender = users[i], content = { membership = "join" } }
  end
  room_ids[#room_ids + 1] = room_id
  room_of[#room_ids] = first
end
print(("%d rooms of %d in %.1f s"):format(#room_ids, PER_ROOM, (now() - t0) / 1e9))

local since = sync_token.format { stream = store:current_position(), typing = hs.typing.position,
  receipts = store:receipts_position(), to_device = 0, account_data = store:account_data_position() }
local tokens_file = os.tmpname()
local f = assert(io.open(tokens_file, "w"))
f:write(table.concat(tokens, "\n"), "\n")
f:close()

-- ---- the clients ------------------------------------------------------------

local stdin, stdout = uv.new_pipe(false), uv.new_pipe(false)
local child = uv.spawn("lua5.4", { args = { "bench/b8_clients.lua", tostring(port), tokens_file, since },
  stdio = { stdin, stdout, 2 }, env = { "LUA_PATH=" .. (os.getenv("LUA_PATH") or ""),
    "LUA_CPATH=" .. (os.getenv("LUA_CPATH") or ""), "PATH=" .. (os.getenv("PATH") or "") } },
  function() end)
assert(child, "cannot start bench/b8_clients.lua")
local answers, errors = {}, 0
local pending = ""
stdout:read_start(function(_, data)
  if not data then return end
  pending = pending .. data
  for line in pending:gmatch("([^\n]*)\n") do
    local kind, k, t = line:match("^(%a) (%d+) (%S+)")
    if kind == "R" then answers[#answers + 1] = { tonumber(k), tonumber(t) }
    elseif kind == "E" or kind == "C" then errors = errors + 1 end
  end
  pending = pending:match("[^\n]*$")
end)

local ticker = uv.new_timer()     -- a loop turn at least every 5 ms
ticker:start(5, 5, function() end)
ticker:unref()
local function turn_until(cond, limit_ms)
  local deadline = now() + limit_ms * 1e6
  while not cond() do
    if now() > deadline then return false end
    uv.run("once")
  end
  return true
end

local notifier = hs.notifier
t0 = now()
local all_waiting = turn_until(function() return notifier.waiting >= USERS end, 300000)
print(("%d of %d long-polls waiting after %.1f s (%d connection errors)"):format(notifier.waiting, USERS,
  (now() - t0) / 1e9, errors))
-- let the loop settle, then measure
turn_until(function() return false end, 500)
collectgarbage("collect")
local rss = rss_mb()
print(("server RSS with %d long-polls waiting: %.0f MB (target < 300 MB); Lua heap %.0f MB")
  :format(notifier.waiting, rss, collectgarbage("count") / 1024))

-- ---- wake-ups -------------------------------------------------------------

local committed
local unsubscribe = store:subscribe(function(note)
  if note.rooms and next(note.rooms) then committed = now() end
end)
local lat, last_of_round, cpu, stmts = {}, {}, {}, {}
-- B8_PHASES=1: time spent in engine.sync and in encoding answers
local phases = os.getenv("B8_PHASES") and { sync = 0, encode = 0, nsync = 0 }
if phases then
  local engine, response = require "loom.sync.engine", require "loom.http.response"
  local sync0, json0 = engine.sync, response.json
  engine.sync = function(...)
    local t = now()
    local a, b = sync0(...)
    phases.sync, phases.nsync = phases.sync + (now() - t), phases.nsync + 1
    return a, b
  end
  response.json = function(...)
    local t = now()
    local a, b, c = json0(...)
    phases.encode = phases.encode + (now() - t)
    return a, b, c
  end
end
-- B8_PROFILE=1: sample the server's Lua stacks during the wake-ups
local samples = os.getenv("B8_PROFILE") and {}
if samples then
  debug.sethook(function()
    local parts = {}
    for level = 2, 7 do
      local info = debug.getinfo(level, "Sl")
      if not info then break end
      parts[#parts + 1] = info.short_src:gsub("^.*/", "") .. ":" .. info.currentline
    end
    local key = table.concat(parts, " < ")
    samples[key] = (samples[key] or 0) + 1
  end, "", 1000)
end
for round = 1, all_waiting and ROUNDS or 0 do
  local r = (round * 7) % #room_ids + 1
  answers = {}
  committed = nil
  local c = os.clock()
  local stmts0 = store.conn.statements
  local trace = os.getenv("B8_TRACE") and round == 2
  local prepare = store.conn.prepare
  if trace then
    store.conn.prepare = function(cn, sql)
      io.stderr:write("SQL ", (sql:gsub("%s+", " ")):sub(1, 160), "\n")
      return prepare(cn, sql)
    end
  end
  async.spawn(function()
    assert(rooms:send(room_ids[r], { type = "m.room.message", sender = users[room_of[r]],
      content = { msgtype = "m.text", body = "wake " .. round } }))
  end)
  local members = math.min(PER_ROOM, USERS - room_of[r] + 1)
  if not turn_until(function() return #answers >= members end, 30000) then
    print(("round %d: only %d of %d answers"):format(round, #answers, members))
    break
  end
  cpu[#cpu + 1] = (os.clock() - c) * 1e3
  if trace then store.conn.prepare = nil end
  stmts[#stmts + 1] = store.conn.statements - stmts0
  local worst = 0
  for _, a in ipairs(answers) do
    local d = (a[2] - committed) / 1e6
    lat[#lat + 1] = d
    if d > worst then worst = d end
  end
  last_of_round[#last_of_round + 1] = worst
  -- the answered clients poll again: wait until all are back
  turn_until(function() return notifier.waiting >= USERS end, 30000)
end
unsubscribe()
if phases then
  print(("phases: %d engine.sync calls, %.3f ms each; encoding %.3f ms per sync"):format(phases.nsync,
    phases.sync / 1e6 / phases.nsync, phases.encode / 1e6 / phases.nsync))
end
if samples then
  debug.sethook()
  local list = {}
  for k, n in pairs(samples) do list[#list + 1] = { k, n } end
  table.sort(list, function(a, b) return a[2] > b[2] end)
  for i = 1, math.min(40, #list) do io.stderr:write(("%6d %s\n"):format(list[i][2], list[i][1])) end
end

if #lat > 0 then
  table.sort(lat)
  table.sort(last_of_round)
  table.sort(cpu)
  print(("wake-up of %d long-polls by one message, %d rounds: p50 %.2f ms, p99 %.2f ms (target p99 < 5 ms)")
    :format(PER_ROOM, #last_of_round, percentile(lat, 0.5), percentile(lat, 0.99)))
  print(("  last answer of a round: p50 %.2f ms, max %.2f ms; server CPU per round (send + %d answers): p50 %.1f ms")
    :format(percentile(last_of_round, 0.5), last_of_round[#last_of_round], PER_ROOM, percentile(cpu, 0.5)))
  table.sort(stmts)
  print(("  SQL statements per round (the send and %d answers): median %d"):format(PER_ROOM, percentile(stmts, 0.5)))
  -- the baseline: the store alone reading the 100 timelines, one by one
  local pos = store:current_position()
  local t = now()
  for _ = 1, PER_ROOM do assert(store:rooms_stream({ room_ids[1] }, pos - 1, pos, 10)) end
  local base = (now() - t) / 1e6
  print(("  baseline (store alone, the same %d timeline reads): %.2f ms; last answer p50 / baseline %.1fx")
    :format(PER_ROOM, base, percentile(last_of_round, 0.5) / base))
end

ticker:close()
stdin:close()
child:kill("sigterm")
server:stop()
async.finish_closing()
os.remove(path)
os.remove(tokens_file)
