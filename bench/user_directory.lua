-- User directory search: POST /user_directory/search through its handler
-- in process (the FTS5 index of schema 42, visibility checked per candidate
-- through current_state) against a baseline in the same process that does
-- what a directory without its own table would: list the users sharing a
-- room with the searcher and the members of every public room
-- (store:users_sharing_rooms, store:current_members), then match their
-- profiles in Lua. USERS local users in ROOMS rooms of USERS/ROOMS members
-- each, every other room public; the searcher is in 10 rooms. Reports
-- median and p99 over QUERIES searches of each kind, and the ratio.
--
-- Usage: lua5.4 bench/user_directory.lua [users] (default 5000).
local uv = require "luv"
local loom = require "loom"
local api = require "loom.api"

local USERS = tonumber(arg and arg[1]) or 5000
local ROOMS, QUERIES = 100, 200

local function now() return uv.hrtime() end
local function remove(p) for _, s in ipairs { "", "-wal", "-shm" } do os.remove(p .. s) end end
local function percentile(sorted, p) return sorted[math.max(1, math.ceil(#sorted * p))] end

local path = os.tmpname()
os.remove(path)
path = path .. ".db"
local server = loom.new { port = 0, server_name = "bench", log_level = "error",
  database = { path = path, synchronous = "NORMAL" }, logger = function() end }
local hs = api.install(server)
local store, rooms = hs.store, hs.rooms
local search
for _, r in ipairs(require("loom.api.client.user_directory").routes) do search = r[3] end

local WORDS = { "amber", "birch", "cedar", "delta", "ember", "fjord", "grove", "harbor", "island", "juniper" }
local t0 = now()
local users = {}
store:transaction(function()
  for i = 1, USERS do
    local lp = ("user%d"):format(i)
    assert(hs.accounts:register(lp, nil))
    users[i] = hs.accounts:user_id(lp)
    hs.accounts:set_profile(users[i], "displayname", ("%s %s%d"):format(WORDS[i % #WORDS + 1]:upper(), "Person", i))
  end
  return true
end)
local SEARCHER = users[1]
local per_room = USERS // ROOMS
for r = 1, ROOMS do
  local creator = users[(r - 1) * per_room + 1]
  local room_id = assert(rooms:create_room(creator))
  local function send(proto) return assert(rooms:send(room_id, proto)) end
  send { type = "m.room.member", state_key = creator, sender = creator, content = { membership = "join" } }
  send { type = "m.room.join_rules", state_key = "", sender = creator,
    content = { join_rule = r % 2 == 0 and "public" or "invite" } }
  for k = 2, per_room do
    local u = users[(r - 1) * per_room + k]
    if r % 2 == 0 then
      send { type = "m.room.member", state_key = u, sender = u, content = { membership = "join" } }
    else
      send { type = "m.room.member", state_key = u, sender = creator, content = { membership = "invite" } }
      send { type = "m.room.member", state_key = u, sender = u, content = { membership = "join" } }
    end
  end
  if r <= 20 and r % 2 == 1 and creator ~= SEARCHER then
    send { type = "m.room.member", state_key = SEARCHER, sender = creator, content = { membership = "invite" } }
    send { type = "m.room.member", state_key = SEARCHER, sender = SEARCHER, content = { membership = "join" } }
  end
end
print(("%d users in %d rooms stored in %.1f s"):format(USERS, ROOMS, (now() - t0) / 1e9))

-- the baseline: every visible user listed, then matched in Lua
local function baseline(term)
  local words = store:search_words(term)
  local candidates = {}
  for _, u in ipairs(store:users_sharing_rooms(SEARCHER)) do candidates[u] = true end
  for _, room_id in ipairs(store:all_room_ids()) do
    local jr = rooms:state_event(room_id, "m.room.join_rules", "")
    if jr and jr.content.join_rule == "public" then
      for _, u in ipairs(store:current_members(room_id, "join")) do candidates[u] = true end
    end
  end
  local out = {}
  for u in pairs(candidates) do
    local p = hs.accounts:user(u)
    local text = (u:match("^@([^:]+)") .. " " .. (p.displayname or "")):lower()
    local ok = true
    for _, w in ipairs(words) do
      if not (text:find("^" .. w, 1) or text:find("[^%w]" .. w)) then ok = false; break end
    end
    if ok then out[#out + 1] = u end
  end
  table.sort(out)
  return out
end

local terms = {}
for i = 1, QUERIES do
  local w = WORDS[i % #WORDS + 1]
  terms[i] = i % 3 == 0 and w:sub(1, 3) or (i % 3 == 1 and ("user" .. (i * 37 % USERS)) or (w .. " pers"))
end
local function measure(fn)
  local times = {}
  for i, term in ipairs(terms) do
    local t1 = now()
    fn(term)
    times[i] = (now() - t1) / 1e6
  end
  table.sort(times)
  return percentile(times, 0.5), percentile(times, 0.99)
end

local req = { user_id = SEARCHER, params = {} }
-- both find the same users (loom: the first 10 of them)
for i = 1, QUERIES, 10 do
  req.json = function() return { search_term = terms[i], limit = 10 } end
  local want = baseline(terms[i])
  local set = {}
  for _, u in ipairs(want) do set[u] = true end
  local got = search(hs, req).results
  assert(#got == math.min(10, #want), "different counts for " .. terms[i])
  for _, r in ipairs(got) do assert(set[r.user_id], "not visible: " .. r.user_id) end
end

local ours_med, ours_p99 = measure(function(term)
  req.json = function() return { search_term = term, limit = 10 } end
  local res = search(hs, req)
  assert(res.results)
end)
local base_med, base_p99 = measure(baseline)
print(("user_directory/search (FTS5 + per-candidate check), %d users: median %.2f ms, p99 %.2f ms"):format(
  USERS, ours_med, ours_p99))
print(("baseline (list visible users, match in Lua):           median %.2f ms, p99 %.2f ms"):format(
  base_med, base_p99))
print(("ratio baseline / loom: median %.1fx, p99 %.1fx (%d searches each)"):format(base_med / ours_med,
  base_p99 / ours_p99, QUERIES))
store:close()
remove(path)
