-- Search: query time of the FTS5 index (loom.store.search) against a LIKE
-- scan of the same events, in the same process, over N messages (default
-- 100000) in 20 rooms with words drawn from a 5000-word vocabulary (Zipf-
-- like: a few common words, many rare ones). Also what indexing costs a
-- write: persisting 10000 messages with and without the index.
--
--   loom-rank    store:search_events, best match first, 10 results
--   loom-recent  store:search_events, newest first, 10 results
--   loom-count   store:search_count (every match)
--   like-recent  json_extract(body) LIKE '%word%', newest first, 10 results
--   like-count   the same LIKE, counted
--
-- Then the same words through the POST /search handler (see the end).
--
-- Usage: lua5.4 bench/search.lua [messages] (default 100000).
local uv = require "luv"
local store_mod = require "loom.store"
local core = require "loom.core"
local json = core.json

local N = tonumber(arg and arg[1]) or 100000
local ROOMS, VOCAB, QUERIES, BATCH = 20, 5000, 200, 1000

local function now() return uv.hrtime() end

local seed = 42
local function rand(n)      -- deterministic LCG: the same data on every run
  seed = (seed * 1103515245 + 12345) % 2147483648
  return seed % n + 1
end

local vocab = {}
for i = 1, VOCAB do
  local w = {}
  local n = i
  repeat w[#w + 1] = string.char(97 + n % 26); n = n // 26 until n == 0
  vocab[i] = "w" .. table.concat(w) .. (i % 7 == 0 and "ing" or "")
end
-- Zipf-like: word i with weight ~ 1/i
local function word()
  local u = rand(1000000) / 1000000
  return vocab[math.max(1, math.floor(VOCAB ^ u))]
end

local function tmp_path()
  local p = os.tmpname()
  os.remove(p)
  return p .. ".db"
end
local function remove(p) for _, s in ipairs { "", "-wal", "-shm" } do os.remove(p .. s) end end

local depth = {}
local function messages(n, from)
  local items = {}
  for i = 1, n do
    local k = from + i
    local room = "!r" .. (k % ROOMS) .. ":bench"
    depth[room] = (depth[room] or 0) + 1
    local words = {}
    for j = 1, 4 + rand(12) do words[j] = word() end
    items[i] = { ("$e%d"):format(k), { room_id = room, type = "m.room.message", sender = "@u" .. (k % 50) .. ":bench",
      depth = depth[room], origin_server_ts = 1700000000000 + k, prev_events = json.array {},
      auth_events = json.array {}, content = { msgtype = "m.text", body = table.concat(words, " ") } } }
  end
  return items
end

local function fill(s, n, from)
  local t0 = now()
  for b = 0, n - 1, BATCH do
    assert(s:persist_events(messages(math.min(BATCH, n - b), from + b)))
  end
  return (now() - t0) / 1e9
end

local function stats(list)
  table.sort(list)
  local function q(p) return list[math.max(1, math.ceil(#list * p))] end
  return q(0.5), q(0.99)
end

-- Writes: 10000 messages with the index and with it switched off.
do
  local M = 10000
  local p1, p2 = tmp_path(), tmp_path()
  local s1 = assert(store_mod.open { path = p1, synchronous = "NORMAL" })
  seed = 7
  local with = fill(s1, M, 0)
  s1:close()
  local saved = store_mod.methods.index_for_search
  store_mod.methods.index_for_search = function() return true end
  local s2 = assert(store_mod.open { path = p2, synchronous = "NORMAL" })
  seed, depth = 7, {}
  local without = fill(s2, M, 0)
  s2:close()
  store_mod.methods.index_for_search = saved
  remove(p1); remove(p2)
  print(("writes: %d messages in batches of %d: %.0f/s with the index, %.0f/s without (%.1f%% slower)")
    :format(M, BATCH, M / with, M / without, (with / without - 1) * 100))
end

local path = tmp_path()
local s = assert(store_mod.open { path = path, synchronous = "NORMAL" })
seed, depth = 42, {}
local secs = fill(s, N, 0)
print(("built %d messages in %d rooms in %.1f s"):format(N, ROOMS, secs))

local rooms = {}
for r = 0, ROOMS - 1 do rooms[#rooms + 1] = s:room_nid("!r" .. r .. ":bench") end
local room_list = table.concat(rooms, ",")

-- Queries: one mid-frequency word (ranks 20..500) each.
local terms = {}
for i = 1, QUERIES do terms[i] = vocab[20 + rand(480)] end

local conn = s.conn
local LIKE_FROM = "FROM events WHERE room_nid IN (" .. room_list .. ") AND type_nid = 8"
  .. " AND json_extract(json, '$.content.body') LIKE ?"

local runs = {
  { "loom-rank", function(w)
    return #s:search_events { words = s:search_words(w), room_nids = rooms, order = "rank", limit = 10 } end },
  { "loom-recent", function(w)
    return #s:search_events { words = s:search_words(w), room_nids = rooms, order = "recent", limit = 10 } end },
  { "loom-count", function(w) return s:search_count { words = s:search_words(w), room_nids = rooms } end },
  { "like-recent", function(w)
    return #conn:all("SELECT event_nid " .. LIKE_FROM .. " ORDER BY stream_ordering DESC LIMIT 10", "%" .. w .. "%")
  end },
  { "like-count", function(w) return conn:value("SELECT count(*) " .. LIKE_FROM, "%" .. w .. "%") end },
}

print(("%d queries of one word each (median / p99 ms):"):format(QUERIES))
local counts = {}
for _, run in ipairs(runs) do
  local times = {}
  for i, w in ipairs(terms) do
    local t0 = now()
    local n = run[2](w)
    times[i] = (now() - t0) / 1e6
    if run[1]:match("count$") then counts[run[1]] = (counts[run[1]] or 0) + n end
  end
  local med, p99 = stats(times)
  print(("  %-12s %8.3f %8.3f"):format(run[1], med, p99))
end
-- LIKE matches substrings ("wab" in "wabing"), FTS5 words and their prefixes:
-- the totals differ a little, which is the point of a word index
print(("matches over all queries: fts %d, like %d"):format(counts["loom-count"], counts["like-count"]))
s:close()
remove(path)

-- Through the endpoint handler, in process (no HTTP): rooms, history
-- visibility, the count and the client events included. alice is in 5
-- shared rooms and a joined-only one; bob joined the joined-only room half
-- way, so his count checks each match.
do
  local loom = require "loom"
  local api = require "loom.api"
  local search_route = require("loom.api.client.search").routes[1][3]
  local M = math.max(1000, N // 5)
  local hpath = tmp_path()
  local server = loom.new { port = 0, server_name = "bench", log_level = "error", database = { path = hpath,
    synchronous = "NORMAL" }, logger = function() end }
  local hs = api.install(server)
  local alice, bob = "@alice:bench", "@bob:bench"
  local function route(method, rpath)
    for _, r in ipairs(require("loom.api.client.rooms").routes) do
      if r[1] == method and r[2] == "/_matrix/client/v3" .. rpath then return r[3] end
    end
  end
  local create, join = route("POST", "/createRoom"), route("POST", "/rooms/{roomId}/join")
  local function req(user, body, params)
    return { user_id = user, params = params or {}, json = function() return body end, arg = function() end }
  end
  local hrooms = {}
  for i = 1, 6 do
    hrooms[i] = assert(create(hs, req(alice, { preset = "public_chat" })).room_id)
  end
  local closed = hrooms[6]
  assert(hs.rooms:send(closed, { type = "m.room.history_visibility", sender = alice, state_key = "",
    content = { history_visibility = "joined" } }))
  seed = 99
  local t0 = now()
  for b = 0, M - 1, 500 do
    hs.store:transaction(function()
      for i = b + 1, math.min(M, b + 500) do
        if i == M // 2 then
          assert(join(hs, req(bob, {}, { roomId = closed })).room_id)
        end
        local words = {}
        for j = 1, 4 + rand(12) do words[j] = word() end
        assert(hs.rooms:send(hrooms[i % 6 + 1], { type = "m.room.message", sender = alice,
          content = { msgtype = "m.text", body = table.concat(words, " ") } }))
      end
      return true
    end)
  end
  print(("endpoint: %d messages in 6 rooms sent in %.1f s"):format(M, (now() - t0) / 1e9))
  print(("%d queries each (median / p99 ms; count is the mean count):"):format(QUERIES // 4))
  for _, case in ipairs {
    { "alice rank", alice, "rank" }, { "alice recent", alice, "recent" },
    { "bob rank", bob, "rank" }, { "bob recent", bob, "recent" } } do
    local times, total = {}, 0
    for i = 1, QUERIES // 4 do
      local w = terms[i]
      local t1 = now()
      local res = search_route(hs, req(case[2], { search_categories = { room_events = {
        search_term = w, order_by = case[3] } } }))
      times[i] = (now() - t1) / 1e6
      assert(res.search_categories, "search failed")
      total = total + res.search_categories.room_events.count
    end
    local med, p99 = stats(times)
    print(("  %-13s %8.3f %8.3f   count %d"):format(case[1], med, p99, total // (QUERIES // 4)))
  end
  hs.store:close()
  remove(hpath)
end
