-- loom.api.client.search: the Client-Server API "Server Side Search"
-- module, POST /search with search_categories.room_events. See
-- docs/api-client-search.md.
--
-- Searched: the rooms the user is joined to or was joined to (left,
-- banned), and in them only the events history visibility lets the user
-- see (loom.room.visibility, as /messages); the text index is the store's
-- (loom.store.search). Ordering: "rank" (closest match first, the default)
-- or "recent" (newest first). next_batch is opaque: r<offset>_<position>
-- for rank (the offset among the matches up to stream position
-- <position>, so later events do not shift the pages), t<nid>_<position>
-- for recent (matches stored before event NID <nid>), each optionally followed by
-- _R<hex room ID> or _S<hex sender> for a group's own pages.
local errors = require "loom.http.errors"
local ljson = require "loom.json"
local store_filter = require "loom.store.filter"
local visibility = require "loom.room.visibility"
local statemap = require "loom.room.statemap"
local client_events = require "loom.api.client.events"
local core = require "loom.core"

local json = core.json
local ipairs, pairs, next, type, math_type, tonumber = ipairs, pairs, next, type, math.type, tonumber
local math_tointeger, math_floor = math.tointeger, math.floor
local string_format, string_char, string_gsub, string_lower = string.format, string.char, string.gsub, string.lower
local string_gmatch, string_sub = string.gmatch, string.sub
local table_sort = table.sort

local _ENV = nil -- luacheck: ignore 211

local search_api = {}

local V3 = "/_matrix/client/v3"
local KEYS = { ["content.body"] = true, ["content.name"] = true, ["content.topic"] = true }
local FIELD = { ["m.room.message"] = "body", ["m.room.name"] = "name", ["m.room.topic"] = "topic" }
local DEFAULT_LIMIT, MAX_LIMIT = 10, 100
local DEFAULT_CONTEXT, MAX_CONTEXT = 5, 100
-- Matches read per store query beyond what the page still needs (hidden
-- ones are skipped), and at most this many read for one page.
local SCAN_BATCH, SCAN_MAX = 20, 2000
-- Up to this many matches the count is exact (each one checked for
-- visibility); beyond, it is scaled from the share visible among them.
local COUNT_EXACT = 1000
-- Room upgrades followed back from a room that filter.rooms names.
local MAX_PREDECESSORS = 20

local function bad_json(msg) return errors.new("M_BAD_JSON", msg) end
local function invalid(msg) return errors.new("M_INVALID_PARAM", msg) end

---------------------------------------------------------------------------
-- The opaque next_batch token.

local function hex(s)
  return (string_gsub(s, ".", function(c) return string_format("%02x", c:byte()) end))
end

local function unhex(h)
  if #h % 2 ~= 0 then return nil end
  return (string_gsub(h, "%x%x", function(x) return string_char(tonumber(x, 16)) end))
end

local function format_token(t)
  local s = (t.order == "rank" and "r" or "t") .. t.pos .. "_" .. t.max
  if t.group then s = s .. "_" .. (t.group == "room_id" and "R" or "S") .. hex(t.value) end
  return s
end

local function int(s)
  if #s > 16 then return nil end
  return math_tointeger(tonumber(s))
end

local function parse_token(text)
  local o, pos, max, rest = text:match("^([rt])(%d+)_(%d+)(.*)$")
  if not o then return nil end
  local t = { order = o == "r" and "rank" or "recent", pos = int(pos), max = int(max) }
  if not t.pos or not t.max then return nil end
  if rest ~= "" then
    local g, h = rest:match("^_([RS])(%x+)$")
    if not g then return nil end
    t.group, t.value = g == "R" and "room_id" or "sender", unhex(h)
    if not t.value or not store_filter.is_id(g == "R" and "room" or "user", t.value) then return nil end
  end
  return t
end

---------------------------------------------------------------------------
-- The request.

local function optional_bool(v, name)
  if v == nil or ljson.is_null(v) then return false end
  if type(v) ~= "boolean" then return nil, bad_json(name .. " must be a boolean") end
  return v
end

local function context_limit(v, name)
  if v == nil or ljson.is_null(v) then return DEFAULT_CONTEXT end
  if math_type(v) ~= "integer" or v < 0 then return nil, bad_json(name .. " must be a non-negative integer") end
  return v > MAX_CONTEXT and MAX_CONTEXT or v
end

-- The room_events criteria as a table, or nil and the error response.
-- ignored: { [user_id] = true } the searcher ignores (added to the
-- filter's not_senders: their messages are neither found nor counted).
local function criteria(body, ignored)
  local cats = body.search_categories
  if cats == nil then return nil, errors.new("M_MISSING_PARAM", "search_categories is required") end
  if not ljson.is_object(cats) then return nil, bad_json("search_categories must be an object") end
  local rc = cats.room_events
  -- room_events is the only category; others are ignored, as Synapse does
  if rc == nil then return nil, errors.new("M_MISSING_PARAM", "search_categories.room_events is required") end
  if not ljson.is_object(rc) then return nil, bad_json("room_events must be an object") end
  local c = {}
  if rc.search_term == nil then return nil, errors.new("M_MISSING_PARAM", "search_term is required") end
  if type(rc.search_term) ~= "string" then return nil, bad_json("search_term must be a string") end
  c.term = rc.search_term
  if rc.keys ~= nil and not ljson.is_null(rc.keys) then
    if not ljson.is_array(rc.keys) then
      return nil, bad_json("keys must be an array")
    end
    local keys, seen = {}, {}
    for _, k in ipairs(rc.keys) do
      if type(k) ~= "string" or not KEYS[k] then
        return nil, bad_json("keys may hold content.body, content.name and content.topic only")
      end
      if not seen[k] then seen[k] = true; keys[#keys + 1] = k end
    end
    c.keys = keys
  end
  local fdef = rc.filter
  if fdef == nil or ljson.is_null(fdef) then fdef = {} end
  if ignored and next(ignored) and ljson.is_object(fdef) then
    local copy = {}
    for k, v in pairs(fdef) do copy[k] = v end
    local ns = {}
    if ljson.is_array(fdef.not_senders) then for _, u in ipairs(fdef.not_senders) do ns[#ns + 1] = u end end
    for u in pairs(ignored) do ns[#ns + 1] = u end
    copy.not_senders = json.array(ns)
    fdef = copy
  end
  local f, ferr = store_filter.compile(fdef)
  if not f then return nil, bad_json(ferr) end
  c.filter = f
  c.limit = f.limit or DEFAULT_LIMIT
  if c.limit > MAX_LIMIT then c.limit = MAX_LIMIT end
  local order = rc.order_by
  if order == nil or ljson.is_null(order) then order = "rank" end
  if order ~= "rank" and order ~= "recent" then return nil, bad_json("order_by must be 'rank' or 'recent'") end
  c.order = order
  local ec = rc.event_context
  if ec ~= nil and not ljson.is_null(ec) then
    if not ljson.is_object(ec) then return nil, bad_json("event_context must be an object") end
    local before, after, profile, err
    before, err = context_limit(ec.before_limit, "before_limit")
    if not before then return nil, err end
    after, err = context_limit(ec.after_limit, "after_limit")
    if not after then return nil, err end
    profile, err = optional_bool(ec.include_profile, "include_profile")
    if profile == nil then return nil, err end
    c.context = { before = before, after = after, profile = profile }
  end
  local err
  c.include_state, err = optional_bool(rc.include_state, "include_state")
  if c.include_state == nil then return nil, err end
  c.group_by = {}
  local g = rc.groupings
  if g ~= nil and not ljson.is_null(g) then
    if not ljson.is_object(g) then return nil, bad_json("groupings must be an object") end
    local list = g.group_by
    if list ~= nil and not ljson.is_null(list) then
      if not ljson.is_array(list) then
        return nil, bad_json("group_by must be an array")
      end
      for _, item in ipairs(list) do
        if not ljson.is_object(item) or (item.key ~= "room_id" and item.key ~= "sender") then
          return nil, bad_json("group_by keys must be room_id or sender")
        end
        c.group_by[item.key] = true
      end
    end
  end
  return c
end

---------------------------------------------------------------------------
-- Searching.

-- The rooms searched: those the user is, or ever was, joined to (whatever
-- the membership now: left, banned, invited again) that the filter's
-- rooms/not_rooms allow: { room_nid, ... }, and the set of the rooms the
-- user is joined to now { [room_nid] = true }.
-- Rooms that filter.rooms names and their predecessors (m.room.create's
-- predecessor, room upgrades), as Synapse searches them: { [room_id] = true }
-- (nil when the filter names no rooms).
local function named_rooms(hs, f)
  if not f.rooms then return nil end
  local out = {}
  for _, room_id in ipairs(f.rooms) do
    local id, hops = room_id, 0
    while id and not out[id] and hops <= MAX_PREDECESSORS do
      out[id] = true
      hops = hops + 1
      local create = hs.rooms:state_event(id, "m.room.create", "")
      local pred = create and ljson.is_object(create.content) and create.content.predecessor
      id = ljson.is_object(pred) and type(pred.room_id) == "string" and pred.room_id or nil
    end
  end
  return out
end

local function searched_rooms(hs, user_id, f, only_room)
  local store = hs.store
  local nids, joined = {}, {}
  local named = named_rooms(hs, f)
  local function allowed(room_id)
    if f.not_rooms_set and f.not_rooms_set[room_id] then return false end
    if named then return named[room_id] == true end
    return true
  end
  for _, room_id in ipairs(store:rooms_for_user(user_id, "join")) do
    local rn = store:room_nid(room_id)
    if rn then joined[rn] = true end
  end
  for _, rn in ipairs(store:rooms_ever_joined(user_id)) do
    local room_id = store:room_id(rn)
    if room_id and allowed(room_id) and (not only_room or only_room == room_id) then nids[#nids + 1] = rn end
  end
  table_sort(nids)
  return nids, joined
end

-- Does a joined user see every timeline event of the room? Yes when the
-- room's history was only ever shared or world_readable: such an event is
-- visible to anyone joined after it (the rules of loom.room.visibility).
local function sees_all(hs, room_nid)
  for _, v in ipairs(hs.store:room_history_visibilities(room_nid)) do
    if v ~= "shared" and v ~= "world_readable" then return false end
  end
  return true
end

-- The rows (from store:search_events) the user may see, in order, with
-- their decoded events: { { row, event }, ... }.
local function visible(hs, user_id, rows)
  local store = hs.store
  local nids = {}
  for i, r in ipairs(rows) do nids[i] = r.event_nid end
  local loaded = store:events_by_nid(nids)
  local by_room, order = {}, {}
  for _, r in ipairs(rows) do
    local hit = loaded[r.event_nid]
    if hit then
      local list = by_room[r.room_id]
      if not list then list = {}; by_room[r.room_id] = list; order[#order + 1] = r.room_id end
      list[#list + 1] = hit[1]
    end
  end
  local seen = {}
  local ignored = store:ignored_users(user_id)   -- their messages are not found
  for _, room_id in ipairs(order) do
    for _, ev in ipairs(visibility.filter(hs, user_id, room_id, by_room[room_id], ignored)) do
      seen[ev.event_id] = ev
    end
  end
  local out = {}
  for _, r in ipairs(rows) do
    local ev = seen[r.event_id]
    if ev then out[#out + 1] = { r, ev } end
  end
  return out
end

-- One page: up to c.limit visible matches after the token's position.
-- Returns the hits and the next token (nil when no match is left).
local function page(hs, user_id, c, q, tok)
  local store = hs.store
  local hits = {}
  local pos = tok.pos                      -- rank: offset; recent: NID bound (nil: from the newest)
  local scanned = 0
  while #hits < c.limit do
    local want = c.limit - #hits + SCAN_BATCH
    q.limit = want
    if c.order == "rank" then q.offset = pos else q.before = pos end
    local rows = store:search_events(q)
    local shown = visible(hs, user_id, rows)
    local k = 1
    for i, r in ipairs(rows) do
      local hit = shown[k]
      if hit and hit[1] == r then
        k = k + 1
        hits[#hits + 1] = hit
      end
      pos = c.order == "rank" and pos + 1 or r.event_nid
      if #hits >= c.limit then
        if i == #rows and #rows < want then return hits, nil end
        return hits, pos
      end
    end
    scanned = scanned + #rows
    if #rows < want then return hits, nil end
    if scanned >= SCAN_MAX then return hits, pos end
  end
  return hits, pos
end

-- How many matches the user may see. In rooms the user is joined to whose
-- history was only ever shared or world_readable every match counts, and
-- in the other rooms the user is joined to every match since their latest
-- join (both: one query). The rest is checked match by match for
-- visibility: exactly up to COUNT_EXACT matches in all, scaled from the
-- visible share of those checked beyond.
local function count(hs, user_id, q, joined)
  local store = hs.store
  local function sub(room_nids, extra)
    local s = { words = q.words, room_nids = room_nids, keys = q.keys, filter = q.filter, sender = q.sender,
      max_stream = q.max_stream }
    for k, v in pairs(extra or {}) do s[k] = v end
    return s
  end
  local open, checked, since_join = {}, {}, {}
  for _, rn in ipairs(q.room_nids) do
    if joined[rn] and sees_all(hs, rn) then
      open[#open + 1] = rn
    elseif joined[rn] then
      local last = 0
      for _, pos in ipairs(store:join_positions(user_id, rn)) do if pos > last then last = pos end end
      since_join[#since_join + 1] = { rn, last }
    else
      checked[#checked + 1] = rn
    end
  end
  local n = #open > 0 and store:search_count(sub(open)) or 0
  local budget = COUNT_EXACT
  -- matches in rooms, up to stream position max_stream, checked one by one
  local function check(room_nids, max_stream)
    local total = store:search_count(sub(room_nids, { max_stream = max_stream }))
    if total == 0 then return 0 end
    local rows = store:search_events(sub(room_nids, { max_stream = max_stream, order = "recent",
      limit = budget > 100 and budget or 100 }))
    budget = budget - #rows
    local seen = #visible(hs, user_id, rows)
    if total <= #rows then return seen end
    return math_floor(seen * total / #rows + 0.5)
  end
  for _, r in ipairs(since_join) do
    local rn, last = r[1], r[2]
    n = n + store:search_count(sub({ rn }, { after_stream = last }))
    n = n + check({ rn }, last < q.max_stream and last or q.max_stream)
  end
  if #checked > 0 then n = n + check(checked, q.max_stream) end
  return n
end

-- The words of the results' text that the search words are prefixes of,
-- and the search words themselves (what a client highlights).
local function highlights(words, hits)
  local out, seen = json.array {}, {}
  local function add(w) if not seen[w] then seen[w] = true; out[#out + 1] = w end end
  for _, w in ipairs(words) do add(w) end
  for _, h in ipairs(hits) do
    local ev = h[2]
    local text = type(ev.content) == "table" and ev.content[FIELD[ev.type] or ""]
    if type(text) == "string" then
      for tw in string_gmatch(text, "[^%s%p%c]+") do
        local lw = string_lower(tw)
        for _, w in ipairs(words) do
          if #lw <= 200 and string_sub(lw, 1, #w) == w then add(lw); break end
        end
      end
    end
  end
  return out
end

-- The event a departed user's view of a room ends at (their leave or ban),
-- or nil while joined or when the room is world_readable.
local function departed_at(hs, user_id, room_id)
  local ev = hs.rooms:state_event(room_id, "m.room.member", user_id)
  local m = ev and ljson.is_object(ev.content) and ev.content.membership
  if m ~= "leave" and m ~= "ban" then return nil end
  if visibility.current_setting(hs, room_id) == "world_readable" then return nil end
  return ev
end

-- State events of a state map (sorted by key), decoded.
local function state_events(hs, map)
  local keys, ids = {}, {}
  for k in pairs(map) do keys[#keys + 1] = k end
  table_sort(keys)
  for i, k in ipairs(keys) do ids[i] = map[k] end
  local loaded = hs.store:events(ids)
  local out = {}
  for _, id in ipairs(ids) do if loaded[id] then out[#out + 1] = loaded[id][1] end end
  return out
end

local function ectx(hs, req, room_id)
  return { store = hs.store, user_id = req.user_id, device_id = req.device_id, room_id = room_id }
end

-- The context of one result (Synapse's shape: events_before, events_after,
-- start, end, profile_info when asked).
local function result_context(hs, req, c, ev, room_id)
  local store = hs.store
  local dep = departed_at(hs, req.user_id, room_id)
  local ctx, err, code = store:context(room_id, ev.event_id, c.context.before, c.context.after, nil,
    dep and dep.event_id)
  if not ctx then return nil, err, code end
  local ignored = store:ignored_users(req.user_id)
  local client_events_of = function(records)
    local decoded = client_events.decode_records(store, records)
    return visibility.filter(hs, req.user_id, room_id, decoded, ignored)
  end
  local before, after = client_events_of(ctx.before), client_events_of(ctx.after)
  local out = {
    events_before = client_events.clients(ectx(hs, req, room_id), before),
    events_after = client_events.clients(ectx(hs, req, room_id), after),
    start = ctx.start,
    ["end"] = ctx["end"],
  }
  if c.context.profile then
    local senders = { [ev.sender] = true }
    for _, e in ipairs(before) do senders[e.sender] = true end
    for _, e in ipairs(after) do senders[e.sender] = true end
    local last = after[#after] or ev
    local map = hs.rooms:state_at(last.event_id)
    local profiles = {}
    if map then
      local ids, users = {}, {}
      for user in pairs(senders) do
        local id = map[statemap.key("m.room.member", user)]
        if id then ids[#ids + 1] = id; users[#users + 1] = user end
      end
      local loaded = store:events(ids)
      for i, id in ipairs(ids) do
        local m = loaded[id] and loaded[id][1]
        local content = m and m.content
        if ljson.is_object(content) then
          profiles[users[i]] = {
            displayname = type(content.displayname) == "string" and content.displayname or nil,
            avatar_url = type(content.avatar_url) == "string" and content.avatar_url or nil,
          }
        end
      end
    end
    out.profile_info = profiles
  end
  return out
end

local function search(hs, req)
  local body = req:json()
  local c, cerr = criteria(body, hs.store:ignored_users(req.user_id))
  if not c then return cerr end
  local batch = req:arg("next_batch")
  local tok
  if batch ~= nil and batch ~= "" then
    tok = parse_token(batch)
    if not tok then return invalid("invalid next_batch token") end
    if tok.order ~= c.order then return invalid("next_batch was made for another order_by") end
  end
  local store = hs.store
  local user_id = req.user_id
  local max_stream = tok and tok.max or store:current_position()
  tok = tok or { order = c.order, pos = c.order == "rank" and 0 or nil, max = max_stream }
  local room_nids, joined = searched_rooms(hs, user_id, c.filter, tok.group == "room_id" and tok.value or nil)
  local words = store:search_words(c.term)
  local out = { results = json.array {}, count = 0, highlights = json.array {} }
  if #words == 0 or #room_nids == 0 or c.limit == 0 or (c.keys and #c.keys == 0) then
    return { search_categories = { room_events = out } }
  end
  local q = { words = words, room_nids = room_nids, keys = c.keys, filter = c.filter, order = c.order,
    max_stream = max_stream, sender = tok.group == "sender" and tok.value or nil }
  local hits, next_pos = page(hs, user_id, c, q, tok)
  out.count = count(hs, user_id, q, joined)
  out.highlights = highlights(words, hits)

  -- results, in order, as client events (redactions, transaction IDs)
  local by_room, rooms_order = {}, {}
  for _, h in ipairs(hits) do
    local rid = h[1].room_id
    if not by_room[rid] then by_room[rid] = {}; rooms_order[#rooms_order + 1] = rid end
    local l = by_room[rid]
    l[#l + 1] = h[2]
  end
  local formatted = {}
  for _, rid in ipairs(rooms_order) do
    local list = client_events.clients(ectx(hs, req, rid), by_room[rid])
    for i, e in ipairs(by_room[rid]) do formatted[e.event_id] = list[i] end
  end
  for i, h in ipairs(hits) do
    local res = { rank = h[1].rank, result = formatted[h[2].event_id] }
    if c.context then
      local ctx, err, code = result_context(hs, req, c, h[2], h[1].room_id)
      if not ctx then return hs:error(err, code) end
      res.context = ctx
    else
      res.context = {}
    end
    out.results[i] = res
  end

  local function token_at(group, value)
    if not next_pos then return nil end
    return format_token { order = c.order, pos = next_pos, max = max_stream, group = group or tok.group,
      value = value or tok.value }
  end
  out.next_batch = token_at()

  if c.include_state then
    local state = {}
    for _, rid in ipairs(rooms_order) do
      local dep = departed_at(hs, user_id, rid)
      -- a user who left sees the room as it was when they left
      local map, err, code
      if dep then
        map, err, code = hs.rooms:state_at(dep.event_id)
      else
        map, err, code = hs.rooms:current_state(rid)
      end
      if not map then return hs:error(err, code) end
      state[rid] = client_events.clients(ectx(hs, req, rid), state_events(hs, map))
    end
    out.state = state
  end

  if next(c.group_by) then
    local groups = {}
    for key in pairs(c.group_by) do
      local g, n = {}, 0
      for _, h in ipairs(hits) do
        local v = key == "room_id" and h[1].room_id or h[2].sender
        local entry = g[v]
        if not entry then
          n = n + 1
          entry = { results = json.array {}, order = n, next_batch = token_at(key, v) }
          g[v] = entry
        end
        entry.results[#entry.results + 1] = h[2].event_id
      end
      groups[key] = g
    end
    out.groups = groups
  end
  return { search_categories = { room_events = out } }
end

search_api.routes = {
  { "POST", V3 .. "/search", search, auth = true },
}

return search_api
