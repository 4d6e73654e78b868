-- B6-stateres: auth-chain difference and state resolution v2 for two forks of
-- 1k state events each in a 50k-event room, events held in memory.
--
-- The room: a creator, then a common history of joins (with some leaves,
-- rejoins, power level and topic changes) and messages up to 50k events;
-- then two forks from its tip, each of 1k state events: new members joining,
-- power level changes (the admin promoting members, who then change the
-- topic) and topic changes.
--
-- Measured, in the same process on the same data:
--   loom       stateres.auth_difference / stateres.resolve: the events loaded
--              through fetch in batches, the graph work in C (cold: a new
--              graph per call; warm: opts.graph kept across calls, as a
--              server keeps a room's graph)
--   baseline   the straightforward pure-Lua shape: walk each state set's auth
--              chains one event at a time from a table with a visited set,
--              then union minus intersection; for the whole resolution the
--              same algorithm written plainly in Lua (Kahn with a linear scan
--              for the smallest candidate, mainline walks per event), whose
--              result must match loom's
--
--   floor      reading the two state maps once (pairs over each): what any
--              resolver taking Lua state maps pays before anything else
--
-- Two compositions of the 50k events by default: 20% of the common history
-- state events (about 10k members: a busy room), then 100% (every event a
-- state event: the state maps hold ~48k entries, the worst case).
--
-- Usage: LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/release/?.so;;' \
--          lua5.4 bench/b6_stateres.lua [events] [fork-size] [state-percent]
-- B6_ROUNDS (default 15) rounds each; B6_VERSION=12 for state res v2.1.
local stateres = require "loom.room.stateres"
local auth = require "loom.room.auth"
local room_version = require "loom.room.version"
local statemap = require "loom.room.statemap"

local N, FORK, STATE_PCT = 50000, 1000, 100
local RUNS = { { 50000, 1000, 20 }, { 50000, 1000, 100 } }
if arg and arg[1] then
  RUNS = { { tonumber(arg[1]), tonumber(arg[2]) or 1000, tonumber(arg[3]) or 100 } }
end
local ROUNDS = tonumber(os.getenv("B6_ROUNDS")) or 15
local VERSION = os.getenv("B6_VERSION") or "11"

-- CPU time of this process: the machines are shared, wall time would count
-- other processes' turns.
local clock = os.clock

local v = assert(room_version.get(VERSION))
local key = statemap.key

-- ---- the room -----------------------------------------------------------------

local events, nevents = {}, 0
local ROOM = v.room_id_is_create_hash and "!create" or "!big:bench"
local ADMIN = "@admin:bench"
local seq = 0

local function add(ev, state)
  seq = seq + 1
  nevents = nevents + 1
  ev.event_id = ("$%08d%s"):format(seq, ("x"):rep(35))
  ev.origin_server_ts = 1700000000000 + seq
  if not (v.room_id_is_create_hash and ev.type == "m.room.create") then ev.room_id = ROOM end
  if v.room_id_is_create_hash and ev.type == "m.room.create" then
    ev.event_id = "$create"
  end
  events[ev.event_id] = ev
  if state and ev.state_key then state[key(ev.type, ev.state_key)] = ev.event_id end
  return ev
end

local function state_event(state, ty, sender, sk, content, prev)
  -- auth events by the selection algorithm over `state`
  local ev = { type = ty, sender = sender, state_key = sk, content = content, prev_events = { prev } }
  local ae = auth.select(v, ev, function(t, k) return events[state[key(t, k)]] end)
  ev.auth_events = ae
  return add(ev, state)
end

local function pl_content(users, n)
  local u = {}
  for id, level in pairs(users) do
    if not (v.creators_have_infinite_power and id == ADMIN) then u[id] = level end
  end
  return { users = u, users_default = 0, state_default = 50, events = { ["m.room.topic"] = 50 }, ban = 50,
    kick = 50, invite = 0, redact = 50, events_default = 0, notifications = { room = 50 + (n % 2) } }
end

local function build()
  local state = {}
  local create = add({ type = "m.room.create", sender = ADMIN, state_key = "", content = { room_version = VERSION },
    prev_events = {}, auth_events = {} }, state)
  local tip = create.event_id
  tip = state_event(state, "m.room.member", ADMIN, ADMIN, { membership = "join" }, tip).event_id
  local users = { [ADMIN] = 100 }
  tip = state_event(state, "m.room.power_levels", ADMIN, "", pl_content(users, 0), tip).event_id
  tip = state_event(state, "m.room.join_rules", ADMIN, "", { join_rule = "public" }, tip).event_id
  local nusers, joined = 0, {}
  local common = N - 2 * FORK
  local i = nevents
  while i < common do
    i = i + 1
    local r = i % 100
    if (i * 7919) % 100 >= STATE_PCT then
      local ev = add({ type = "m.room.message", sender = ADMIN, content = { body = "message " .. i },
        prev_events = { tip }, auth_events = {} })
      ev.auth_events = auth.select(v, ev, function(t, k) return events[state[key(t, k)]] end)
      tip = ev.event_id
    elseif r == 17 and nusers > 10 then
      local u = joined[(i * 31) % nusers + 1]
      local m = events[state[key("m.room.member", u)]].content.membership
      tip = state_event(state, "m.room.member", u, u, { membership = m == "join" and "leave" or "join" }, tip).event_id
    elseif r == 42 then
      tip = state_event(state, "m.room.topic", ADMIN, "", { topic = "topic " .. i }, tip).event_id
    elseif i % 1000 == 500 then
      users[joined[nusers]] = 10
      tip = state_event(state, "m.room.power_levels", ADMIN, "", pl_content(users, i), tip).event_id
    else
      nusers = nusers + 1
      local u = ("@user%d:bench"):format(nusers)
      joined[nusers] = u
      tip = state_event(state, "m.room.member", u, u, { membership = "join" }, tip).event_id
    end
  end
  -- the two forks
  local forks = {}
  for f = 1, 2 do
    local s = {}
    for k, id in pairs(state) do s[k] = id end
    local t = tip
    local fusers = {}
    for k, lvl in pairs(users) do fusers[k] = lvl end
    local promoted = {}
    for j = 1, FORK do
      if j % 100 == 1 then
        -- the admin promotes a new member, who then changes the topic
        local u = ("@fork%d_%d:bench"):format(f, j - 1)
        fusers[u] = 50
        promoted[#promoted + 1] = u
        t = state_event(s, "m.room.power_levels", ADMIN, "", pl_content(fusers, j + f), t).event_id
      elseif j % 10 == 5 and #promoted > 0 then
        local u = promoted[#promoted]
        t = state_event(s, "m.room.topic", u, "", { topic = ("fork %d topic %d"):format(f, j) }, t).event_id
      else
        local u = ("@fork%d_%d:bench"):format(f, j)
        t = state_event(s, "m.room.member", u, u, { membership = "join" }, t).event_id
      end
    end
    forks[f] = s
  end
  return forks, nusers
end

-- ---- the baseline -----------------------------------------------------------------

local function fetch(id)
  return events[id]
end

-- One state set's auth chain: a visited set, one event at a time.
local function lua_chain_of(ids)
  local seen, stack, n = {}, {}, 0
  for i = 1, #ids do n = n + 1; stack[n] = ids[i] end
  while n > 0 do
    local id = stack[n]
    stack[n] = nil
    n = n - 1
    local ev = fetch(id)
    local ae = ev.auth_events
    for j = 1, #ae do
      local a = ae[j]
      if not seen[a] then
        seen[a] = true
        n = n + 1
        stack[n] = a
      end
    end
  end
  return seen
end

local function lua_difference(state_sets)
  local chains = {}
  for i, s in ipairs(state_sets) do
    local ids = {}
    for _, id in pairs(s) do ids[#ids + 1] = id end
    chains[i] = lua_chain_of(ids)
  end
  local out = {}
  local union = {}
  for _, c in ipairs(chains) do for id in pairs(c) do union[id] = true end end
  for id in pairs(union) do
    for _, c in ipairs(chains) do
      if not c[id] then out[#out + 1] = id break end
    end
  end
  table.sort(out)
  return out
end

-- The whole algorithm, written plainly.
local function lua_resolve(state_sets)
  local first = state_sets[1]
  local conflicted, keys = {}, {}
  for _, s in ipairs(state_sets) do for k in pairs(s) do keys[k] = true end end
  for k in pairs(keys) do
    local id = first[k]
    for i = 2, #state_sets do
      if state_sets[i][k] ~= id then conflicted[k] = true break end
    end
  end
  local full = {}
  for k in pairs(conflicted) do
    for _, s in ipairs(state_sets) do if s[k] then full[s[k]] = true end end
  end
  for _, id in ipairs(lua_difference(state_sets)) do full[id] = true end
  if v.state_res == "v2.1" then
    -- conflicted subgraph: on a path between two conflicted events
    local cset = {}
    for k in pairs(conflicted) do
      for _, s in ipairs(state_sets) do if s[k] then cset[s[k]] = true end end
    end
    local memo = {}
    local function reaches(id) -- reaches a conflicted event by >= 0 links
      if memo[id] ~= nil then return memo[id] end
      memo[id] = false
      local r = cset[id] or false
      for _, a in ipairs(fetch(id).auth_events) do
        if reaches(a) then r = true end
      end
      memo[id] = r
      return r
    end
    local seen = {}
    local stack = {}
    for id in pairs(cset) do stack[#stack + 1] = id end
    while #stack > 0 do
      local id = table.remove(stack)
      if not seen[id] then
        seen[id] = true
        if reaches(id) then full[id] = true end
        for _, a in ipairs(fetch(id).auth_events) do stack[#stack + 1] = a end
      end
    end
  end
  local function auth_state(ev)
    return function(t, sk)
      if v.room_id_is_create_hash and t == "m.room.create" then return fetch("$" .. ev.room_id:sub(2)) end
      for _, a in ipairs(ev.auth_events) do
        local e = fetch(a)
        if e.type == t and e.state_key == sk then return e end
      end
    end
  end
  -- power events and their chains within the full set
  local x = {}
  for id in pairs(full) do
    if auth.is_power_event(fetch(id)) then
      x[id] = true
      local chain = lua_chain_of({ id })
      for a in pairs(chain) do if full[a] then x[a] = true end end
    end
  end
  local power = {}
  for id in pairs(x) do
    local ev = fetch(id)
    power[id] = auth.power_level(v, auth_state(ev), ev.sender)
  end
  local function before(a, b)
    if power[a] ~= power[b] then return power[a] > power[b] end
    local ta, tb = fetch(a).origin_server_ts, fetch(b).origin_server_ts
    if ta ~= tb then return ta < tb end
    return a < b
  end
  local left, ordered = {}, {}
  for id in pairs(x) do left[id] = true end
  while next(left) do
    local best
    for id in pairs(left) do
      local ready = true
      for _, a in ipairs(fetch(id).auth_events) do
        if left[a] then ready = false break end
      end
      if ready and (best == nil or before(id, best)) then best = id end
    end
    left[best] = nil
    ordered[#ordered + 1] = best
  end
  local partial = {}
  local base = v.state_res ~= "v2.1"
  local function iterate(list)
    for _, id in ipairs(list) do
      local ev = fetch(id)
      local st = function(t, sk)
        local k = key(t, sk)
        local sid = partial[k]
        if sid == nil and base and not conflicted[k] then sid = first[k] end
        if sid then return fetch(sid) end
        if v.room_id_is_create_hash and t == "m.room.create" then return fetch("$" .. ev.room_id:sub(2)) end
        for _, a in ipairs(ev.auth_events) do
          local e = fetch(a)
          if e.type == t and e.state_key == sk then return e end
        end
      end
      if auth.check(v, ev, st) then partial[key(ev.type, ev.state_key)] = id end
    end
  end
  iterate(ordered)
  local plk = key("m.room.power_levels", "")
  local pl = partial[plk] or (base and not conflicted[plk] and first[plk]) or nil
  local mainline = {}
  local i = 0
  while pl do
    mainline[pl] = i
    i = i + 1
    local nxt
    for _, a in ipairs(fetch(pl).auth_events) do
      local e = fetch(a)
      if e.type == "m.room.power_levels" and e.state_key == "" then nxt = a break end
    end
    pl = nxt
  end
  local function position(id)
    local cur = id
    while true do
      local nxt
      for _, a in ipairs(fetch(cur).auth_events) do
        local e = fetch(a)
        if e.type == "m.room.power_levels" and e.state_key == "" then nxt = a break end
      end
      if not nxt then return math.huge end
      if mainline[nxt] then return mainline[nxt] end
      cur = nxt
    end
  end
  local rest, pos = {}, {}
  for id in pairs(full) do
    if not x[id] then
      rest[#rest + 1] = id
      pos[id] = position(id)
    end
  end
  table.sort(rest, function(a, b)
    if pos[a] ~= pos[b] then return pos[a] > pos[b] end
    local ta, tb = fetch(a).origin_server_ts, fetch(b).origin_server_ts
    if ta ~= tb then return ta < tb end
    return a < b
  end)
  iterate(rest)
  local out = {}
  for k, id in pairs(first) do if not conflicted[k] then out[k] = id end end
  for k, id in pairs(partial) do if not (first[k] and not conflicted[k]) then out[k] = id end end
  return out
end

-- ---- measuring ------------------------------------------------------------------------

-- Every round starts from a collected heap, so no round pays for the garbage
-- of another; the collector's work during a round is counted.
local function median_of(f)
  local times = {}
  local result
  for r = 1, ROUNDS do
    result = nil -- luacheck: ignore 311 (let the previous result go before collecting)
    collectgarbage("collect")
    local t0 = clock()
    result = f()
    times[r] = (clock() - t0) * 1000
  end
  table.sort(times)
  return times[(ROUNDS + 1) // 2], times[ROUNDS], result
end

local function same_list(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

local function line(what, base, base_max, cold, cold_max, warm, warm_max, target)
  print(("  %-18s baseline %7.2f ms (max %6.2f) | loom cold %7.2f ms (max %6.2f) %4.1fx"
    .. " | warm %6.2f ms (max %6.2f) %4.1fx | target < %d ms")
    :format(what, base, base_max, cold, cold_max, base / cold, warm, warm_max, base / warm, target))
end

for _, run in ipairs(RUNS) do
  N, FORK, STATE_PCT = run[1], run[2], run[3]
  events, nevents, seq = {}, 0, 0
  collectgarbage("collect")
  local t0 = clock()
  local forks, nusers = build()
  local nstate, nconf = 0, 0
  for _ in pairs(forks[1]) do nstate = nstate + 1 end
  for k, id in pairs(forks[1]) do if forks[2][k] ~= id then nconf = nconf + 1 end end
  for k in pairs(forks[2]) do if forks[1][k] == nil then nconf = nconf + 1 end end
  local sets = { forks[1], forks[2] }
  print(("B6 room v%s: %d events, %d%% of the common history state events (%d users), forks of %d state events;"
    .. " state maps of %d entries, %d conflicted keys (built in %.1f s)")
    :format(VERSION, nevents, STATE_PCT, nusers, FORK, nstate, nconf, clock() - t0))

  local floor, floor_max = median_of(function()
    local c = 0
    for _, s in ipairs(sets) do for _ in pairs(s) do c = c + 1 end end
    return c
  end)
  print(("  %-18s %.2f ms (max %.2f)"):format("floor", floor, floor_max))

  local graph = stateres.graph()
  assert(stateres.auth_difference(sets, fetch, { graph = graph })) -- warm the kept graph
  local d_base, d_base_max, diff_base = median_of(function() return lua_difference(sets) end)
  local d_cold, d_cold_max, diff_cold = median_of(function() return assert(stateres.auth_difference(sets, fetch)) end)
  local d_warm, d_warm_max, diff_warm = median_of(function()
    return assert(stateres.auth_difference(sets, fetch, { graph = graph }))
  end)
  assert(same_list(diff_base, diff_cold) and same_list(diff_base, diff_warm), "auth differences disagree")
  line(("auth difference"), d_base, d_base_max, d_cold, d_cold_max, d_warm, d_warm_max, 10)

  local r_base, r_base_max, res_base = median_of(function() return lua_resolve(sets) end)
  local r_cold, r_cold_max, res_cold = median_of(function() return assert(stateres.resolve(v, sets, fetch)) end)
  local r_warm, r_warm_max, res_warm = median_of(function()
    return assert(stateres.resolve(v, sets, fetch, { graph = graph }))
  end)
  assert(statemap.equal(res_base, res_cold) and statemap.equal(res_base, res_warm), "resolved states disagree")
  line("state resolution", r_base, r_base_max, r_cold, r_cold_max, r_warm, r_warm_max, 50)
  print(("  (auth difference: %d events; median and max of %d rounds, CPU time)"):format(#diff_cold, ROUNDS))
  graph:close()
end
