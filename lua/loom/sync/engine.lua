-- loom.sync.engine: computes one /sync response.
--
--   local body, has_data = engine.sync(hs, {
--     user_id, device_id, since = <parsed sync token or nil>, full_state, filter = <Filter def> })
--
-- Joined rooms that changed come from one store:rooms_stream query over the
-- user's rooms (the change cache drops the quiet ones); joins, invites and
-- leaves come from store:membership_changes since the token. Rooms joined
-- since the token (or joined again after a leave) are synced as in an
-- initial sync: recent history from a second query, and (like every room in
-- an initial or full_state sync) the full state at the start of their
-- timeline; a limited timeline gets the state delta between `since` and its
-- start.
local core = require "loom.core"
local ljson = require "loom.json"
local store_filter = require "loom.store.filter"
local visibility = require "loom.room.visibility"
local sync_events = require "loom.api.client.events"
local sync_token = require "loom.sync.token"
local device_lists_mod = require "loom.sync.device_lists"

local json = core.json
local ipairs, pairs, type, next = ipairs, pairs, type, next
local table_sort = table.sort
local assert, setmetatable = assert, setmetatable

local _ENV = nil -- luacheck: ignore 211

local engine = {}

local DEFAULT_LIMIT = 10
local TO_DEVICE_LIMIT = 100   -- to-device messages per /sync; the rest come in the next one
local MAX_HEROES = 5          -- m.heroes in a room summary
local INVITE_STATE_TYPES = { "m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar",
  "m.room.canonical_alias", "m.room.encryption", "m.room.topic" }

local is_null = ljson.is_null
local function obj(v) return (not is_null(v) and type(v) == "table") and v or {} end

-- The user's membership in a room as of stream position pos.
local function membership_at(store, user_id, room_nid, pos)
  return store:membership_at(user_id, room_nid, pos)
end

-- The snapshot of a room's state as of stream position pos (the state after
-- its last timeline event by then), or nil.
local function snapshot_at(store, room_nid, pos)
  -- the room's current state as it stood at pos (recorded with each live
  -- event by the room service; exact when history forked) …
  local nid, _, current = store:timeline_event_at(room_nid, pos)
  if not nid then return nil end
  if current then return current end
  -- … or, for events stored without it, the state after that event
  local _, after = store:event_state(nid)
  return after
end

-- Decoded events for event NIDs, in the given order.
local function events_for_nids(store, nids)
  local loaded = store:events_by_nid(nids)
  local out = {}
  for _, n in ipairs(nids) do
    local hit = loaded[n]
    if hit then out[#out + 1] = hit[1] end
  end
  return out
end

-- The state section: events of `nids`, minus those in the timeline,
-- through the state filter and lazy loading.
local function state_section(ctx, room_id, nids, timeline)
  local in_timeline, senders = {}, {}
  for _, ev in ipairs(timeline) do in_timeline[ev.event_id] = true; senders[ev.sender] = true end
  senders[ctx.user_id] = true
  local out = {}
  for _, ev in ipairs(events_for_nids(ctx.store, nids)) do
    local keep = not in_timeline[ev.event_id]
    if keep and ctx.state_filter and not ctx.state_filter:match { type = ev.type, sender = ev.sender,
        room_id = room_id, contains_url = type(ev.content) == "table" and type(ev.content.url) == "string" } then
      keep = false
    end
    if keep and ctx.lazy_members and ev.type == "m.room.member" and not senders[ev.state_key] then
      keep = false
    end
    if keep then out[#out + 1] = ev end
  end
  return out
end

-- Lazy loading: the timeline senders whose membership the client needs,
-- i.e. each sender unless their member event came earlier in the timeline.
local function lazy_senders(timeline)
  local wanted, seen = {}, {}
  for _, ev in ipairs(timeline) do
    if not seen[ev.sender] then wanted[ev.sender] = true end
    if ev.type == "m.room.member" and type(ev.state_key) == "string" then seen[ev.state_key] = true end
  end
  return wanted
end

-- Lazy loading: the state NIDs plus the member event, in the state at the
-- start of the timeline, of every sender the client needs (the section's
-- filter then drops the other members; what the device was sent already is
-- dropped by lazy_dedupe).
local function lazy_nids(ctx, nids, start_state, timeline)
  if not start_state then return nids end
  local member_nid = ctx.store:type_nid("m.room.member")
  if not member_nid then return nids end
  local out, have = {}, {}
  for i, n in ipairs(nids) do out[i] = n; have[n] = true end
  for sender in pairs(lazy_senders(timeline)) do
    local sk = ctx.store:state_key_nid(sender)
    local n = sk and start_state:get(member_nid, sk)
    if n and not have[n] then out[#out + 1] = n; have[n] = true end
  end
  return out
end

-- Lazy loading: drop the member events this device was sent already (unless
-- include_redundant_members), and record the member events it is sent now,
-- in the state section and in the timeline.
local function has_member(events)
  for _, ev in ipairs(events) do if ev.type == "m.room.member" then return true end end
  return false
end

local function lazy_dedupe(ctx, rn, state, timeline)
  if not has_member(state) and not has_member(timeline) then return state end
  local store, device = ctx.store, ctx.device_id or ""
  -- (a sync that starts over forgot what the device was sent)
  local sent = ctx.lazy_forgotten and {} or store:lazy_members_sent(ctx.user_id, device, rn)
  local out, now = {}, {}
  for _, ev in ipairs(state) do
    if ev.type ~= "m.room.member" then
      out[#out + 1] = ev
    elseif ctx.redundant_members or sent[ev.state_key] ~= ev.event_id then
      out[#out + 1] = ev
      now[ev.state_key] = ev.event_id
    end
  end
  for _, ev in ipairs(timeline) do
    if ev.type == "m.room.member" and type(ev.state_key) == "string" then now[ev.state_key] = ev.event_id end
  end
  for member, id in pairs(now) do
    if sent[member] == id then now[member] = nil end
  end
  -- written for all rooms at once, in one transaction, after the sections
  if next(now) ~= nil then ctx.lazy_record[rn] = now end
  return out
end

local function client_list(ctx, room_id, events)
  return sync_events.clients({ store = ctx.store, user_id = ctx.user_id, device_id = ctx.device_id,
    room_id = room_id, fields = ctx.fields, redactions = ctx.redactions, txns = ctx.txns,
    relations = ctx.relations }, events)
end

-- What the rooms' sections will read for their timelines, read for all of
-- them at once (a few statements, not a few per room): the events (only
-- for small answers: the event cache is bounded), their state snapshots,
-- their redactions, the transaction IDs of the user's own, what their
-- aggregations need.
local PREFETCH_MAX = 1000
-- the timelines' events as { event_id } (their aggregations are read for
-- all rooms at once)
local function st_events(streams)
  local out = {}
  for _, st in pairs(streams) do
    for _, r in ipairs(st.events) do out[#out + 1] = { event_id = r.event_id } end
  end
  return out
end
local function prefetch(ctx, streams)
  local nids, ids, own = {}, {}, {}
  for _, st in pairs(streams) do
    for _, r in ipairs(st.events) do
      nids[#nids + 1] = r.event_nid; ids[#ids + 1] = r.event_id
      if r.sender == ctx.user_id then own[#own + 1] = r end
    end
  end
  if #nids == 0 then return end
  local store = ctx.store
  if #nids <= PREFETCH_MAX then store:events_by_nid(nids) end
  store:prefetch_event_states(nids)
  ctx.redactions = sync_events.prefetch_redactions(store, ids)
  ctx.relations = sync_events.prefetch_relations(store, ctx.user_id, st_events(streams))
  if ctx.device_id then ctx.txns = sync_events.prefetch_txn_ids(store, ctx.user_id, ctx.device_id, own) end
end

-- The full state sent with a room that is new to the client: the state
-- before the first timeline event the user may see, with each key whose
-- value at the end of the timeline differs and is not in the visible
-- timeline taken from the end instead. So what history visibility hides
-- from the timeline (a join while the user was away) still reaches the
-- client's member list. records: the timeline's store records; visible:
-- { [event_nid] = true } of those the user may see.
local function full_state_nids(store, rn, records, visible, end_pos)
  local start_snap, end_snap
  for _, r in ipairs(records) do
    if visible[r.event_nid] then start_snap = store:event_state(r.event_nid); break end
  end
  if records[1] then
    local _, after = store:event_state(records[#records].event_nid)
    end_snap = after
  elseif rn then
    end_snap = snapshot_at(store, rn, end_pos)
  end
  start_snap = start_snap or end_snap
  if not start_snap then return {} end
  -- a snapshot the database names is stored: failing to load it is an error
  local start_state = assert(store:load_state(start_snap))
  local types, keys, nids = start_state:entries()
  local out, at = {}, {}
  for i, n in ipairs(nids) do out[i] = n; at[types[i] .. ":" .. keys[i]] = i end
  if end_snap and end_snap ~= start_snap then
    local _, added = start_state:diff(assert(store:load_state(end_snap)))
    for _, t in ipairs(added) do
      if not visible[t[3]] then
        local k = t[1] .. ":" .. t[2]
        local i = at[k] or #out + 1
        out[i] = t[3]; at[k] = i
      end
    end
  end
  return out
end

-- Lazy loading: the heroes' member events (event NIDs) join the state
-- section unless the state or the timeline has the member already (those
-- the device was sent go in lazy_dedupe).
local function with_heroes(ctx, state, timeline, heroes)
  local have = {}
  for _, list in ipairs { state, timeline } do
    for _, ev in ipairs(list) do
      if ev.type == "m.room.member" and type(ev.state_key) == "string" then have[ev.state_key] = true end
    end
  end
  for _, ev in ipairs(events_for_nids(ctx.store, heroes)) do
    if not have[ev.state_key] then state[#state + 1] = ev; have[ev.state_key] = true end
  end
  return state
end

-- Were all of these events sent by users the syncing user ignores (so a
-- section they emptied need not be sent)?
local function all_ignored(ignored, events)
  if not next(ignored) or not events[1] then return false end
  for _, ev in ipairs(events) do
    if not ignored[ev.sender] or ev.state_key ~= nil then return false end
  end
  return true
end

-- A room's counts from store:unread_thread_counts: the main timeline's
-- { n, h } (or nil) and the unread_thread_notifications object.
local function unread_threads(u)
  local threads = {}
  for root, c in pairs(u and u.threads or {}) do
    threads[root] = { notification_count = c[1], highlight_count = c[2] }
  end
  return u and u.main, threads
end

-- One room's timeline and state. st: a rooms_stream result (or nil); full:
-- send the full state at the start of the timeline; since: the stream
-- position of the token (for the state delta); end_pos: the state at the
-- end when the timeline is empty; heroes: the heroes' member event NIDs
-- (lazy loading sends them). Returns the section and whether every event of
-- the timeline was left out for being from an ignored user.
local function room_section(ctx, room_id, st, full, since, end_pos, heroes)
  local store = ctx.store
  st = st or { events = {}, limited = false }
  local rn = store:room_nid(room_id)
  local decoded = sync_events.decode_records(store, st.events)
  local metas = {}
  for _, r in ipairs(st.events) do metas[r.event_id] = r end   -- records carry event_nid, stream_ordering
  local timeline = visibility.filter(ctx.hs, ctx.user_id, room_id, decoded, ctx.ignored, metas)
  local state_nids = {}
  local start_snap, start_state
  if st.events[1] and (st.limited or ctx.lazy_members) then
    start_snap = store:event_state(st.events[1].event_nid)
  elseif (st.limited or ctx.lazy_members) and rn and not st.events[1] then
    -- an empty timeline (a limit of 0) starts at the end
    start_snap = snapshot_at(store, rn, end_pos)
  end
  if start_snap and (st.limited or ctx.lazy_members) then
    -- a snapshot the database names is stored: failing to load it is an error
    start_state = assert(store:load_state(start_snap))
  end
  if full or not since then
    local shown, visible, nids = {}, {}, {}
    for _, ev in ipairs(timeline) do shown[ev.event_id] = true end
    for i, r in ipairs(st.events) do nids[i] = r.event_nid end
    local loaded = store:events_by_nid(nids) -- cached by decode_records
    for _, r in ipairs(st.events) do
      local hit = loaded[r.event_nid]
      if hit and shown[hit[1].event_id] then visible[r.event_nid] = true end
    end
    state_nids = full_state_nids(store, rn, st.events, visible, end_pos)
  elseif st.limited then
    if start_state then
      local since_snap = snapshot_at(store, rn, since)
      local since_state = since_snap and assert(store:load_state(since_snap))
      if since_state then
        local _, added = since_state:diff(start_state)
        for i, t in ipairs(added) do state_nids[i] = t[3] end
      else
        local _, _, evs = start_state:entries()
        state_nids = evs
      end
    end
  end
  if ctx.lazy_members then state_nids = lazy_nids(ctx, state_nids, start_state, timeline) end
  local state = state_section(ctx, room_id, state_nids, timeline)
  if ctx.lazy_members and heroes then state = with_heroes(ctx, state, timeline, heroes) end
  if ctx.lazy_members and rn then state = lazy_dedupe(ctx, rn, state, timeline) end
  return {
    timeline = {
      events = client_list(ctx, room_id, timeline),
      limited = st.limited and true or false,
      prev_batch = st.prev_batch or sync_token.format { stream = end_pos },
    },
    state = { events = client_list(ctx, room_id, state) },
  }, all_ignored(ctx.ignored, decoded)
end

-- Does the room have a name or a canonical alias (non-empty)? Then clients
-- need no heroes to name it.
local function named(hs, room_id)
  for t, field in pairs { ["m.room.name"] = "name", ["m.room.canonical_alias"] = "alias" } do
    local ev = hs.rooms:state_event(room_id, t, "")
    local v = ev and type(ev.content) == "table" and ev.content[field]
    if type(v) == "string" and v ~= "" then return true end
  end
  return false
end

-- The summaries of joined rooms: m.joined_member_count and
-- m.invited_member_count, and m.heroes when the room has neither a name nor
-- a canonical alias. Sent for the rooms in `full` ({ [room_id] = true }: new
-- to the client) and for the others in `rooms` whose membership, name or
-- canonical alias changed in (since, to]. A handful of store queries for all
-- rooms together. Returns { [room_id] = { summary, heroes' member event NIDs } }.
local function room_summaries(ctx, rooms, full, since, to)
  local store = ctx.store
  local out, want, check = {}, {}, {}
  for _, r in ipairs(rooms) do
    if full[r] then want[#want + 1] = r elseif since then check[#check + 1] = r end
  end
  if check[1] then
    for r in pairs(store:summary_changed(check, since, to)) do want[#want + 1] = r end
  end
  local nids, unnamed, is_unnamed = {}, {}, {}
  for _, r in ipairs(want) do
    local rn = store:room_nid(r)
    if rn then
      nids[#nids + 1] = rn
      if not named(ctx.hs, r) then unnamed[#unnamed + 1] = rn; is_unnamed[rn] = true end
    end
  end
  if not nids[1] then return out end
  local counts = store:member_counts(nids)
  local heroes = {}
  if unnamed[1] then heroes = store:heroes(unnamed, ctx.user_id, MAX_HEROES) end
  for _, rn in ipairs(nids) do
    local c = counts[rn] or { 0, 0 }
    local summary = { ["m.joined_member_count"] = c[1], ["m.invited_member_count"] = c[2] }
    local member_nids
    if is_unnamed[rn] then
      local list = json.array {}
      member_nids = {}
      for i, h in ipairs(heroes[rn] or {}) do list[i] = h[1]; member_nids[i] = h[2] end
      summary["m.heroes"] = list
    end
    out[store:room_id(rn)] = { summary, member_nids }
  end
  return out
end

-- invite_state: stripped current state of the room plus the invite event.
local function invite_section(ctx, room_id, change)
  local evs = json.array {}
  local invite = json.decode(change.json)
  if type(invite) == "table" then
    local carried = type(invite.unsigned) == "table" and invite.unsigned.invite_room_state
    if type(carried) == "table" then
      for _, e in ipairs(carried) do evs[#evs + 1] = e end
    end
  end
  if #evs == 0 then
    for _, t in ipairs(INVITE_STATE_TYPES) do
      local ev = ctx.hs.rooms:state_event(room_id, t, "")
      if ev then evs[#evs + 1] = sync_events.stripped(ev) end
    end
  end
  if type(invite) == "table" then
    invite.event_id = change.event_id
    evs[#evs + 1] = sync_events.stripped(invite)
  end
  return { invite_state = { events = evs } }
end

-- knock_state: the stripped state the knock was answered with (or the
-- room's own) plus the knock event.
local function knock_section(ctx, room_id, change)
  local evs = json.array {}
  local knock = json.decode(change.json)
  local carried = type(knock) == "table" and type(knock.unsigned) == "table" and knock.unsigned.knock_room_state
  if type(carried) == "table" then
    for _, e in ipairs(carried) do evs[#evs + 1] = e end
  else
    for _, t in ipairs(INVITE_STATE_TYPES) do
      local ev = ctx.hs.rooms:state_event(room_id, t, "")
      if ev then evs[#evs + 1] = sync_events.stripped(ev) end
    end
  end
  if type(knock) == "table" then
    knock.event_id = change.event_id
    evs[#evs + 1] = sync_events.stripped(knock)
  end
  return { knock_state = { events = evs } }
end

-- room.rooms / room.not_rooms as sets, kept on the filter definition
-- (a filter is read once per sync; the sets are not part of its JSON)
local allow_cache = setmetatable({}, { __mode = "k" })
local function room_allowed(room_filter, room_id)
  local a = allow_cache[room_filter]
  if not a then
    a = {}
    local rooms, not_rooms = room_filter.rooms, room_filter.not_rooms
    if not is_null(not_rooms) and type(not_rooms) == "table" then
      a.deny = {}
      for _, r in ipairs(not_rooms) do a.deny[r] = true end
    end
    if not is_null(rooms) and type(rooms) == "table" then
      a.only = {}
      for _, r in ipairs(rooms) do a.only[r] = true end
    end
    allow_cache[room_filter] = a
  end
  if a.deny and a.deny[room_id] then return false end
  if a.only then return a.only[room_id] == true end
  return true
end

-- The user's account data changed in (since, to] (since nil: all of it) as
-- events, through the filter's account_data (global) and
-- room.account_data (per room): global events, { [room_id] = events }.
local function account_data_events(store, user_id, since, to, fdef)
  local global = json.array {}
  local by_room = {}
  if to <= (since or 0) then return global, by_room end
  local gf = assert(store_filter.compile(obj(fdef.account_data)))
  local room_filter = obj(fdef.room)
  local rf = assert(store_filter.compile(obj(room_filter.account_data)))
  for _, c in ipairs(store:account_data_changes(user_id, since, to)) do
    local room_id, etype = c[1], c[2]
    local content = json.decode(c[3])
    if not room_id then
      if gf:match { type = etype } then global[#global + 1] = { type = etype, content = content } end
    elseif room_allowed(room_filter, room_id) and rf:match { type = etype, room_id = room_id } then
      local list = by_room[room_id]
      if not list then list = json.array {}; by_room[room_id] = list end
      list[#list + 1] = { type = etype, content = content }
    end
  end
  -- a limit keeps the latest changes
  local function cut(list, limit)
    if not limit or #list <= limit then return list end
    local out = json.array {}
    for i = #list - limit + 1, #list do out[#out + 1] = list[i] end
    return out
  end
  global = cut(global, gf.limit)
  for r, list in pairs(by_room) do by_room[r] = cut(list, rf.limit) end
  return global, by_room
end

-- The room's ephemeral events: m.typing with the current typers when the
-- set changed after `since` (initial syncs and rooms new to the client: when
-- someone is typing), through the filter's room.ephemeral.
local function typing_events(typing, room_id, since, new, eph_filter)
  local out = json.array {}
  if not typing or not eph_filter:match { type = "m.typing", room_id = room_id } then return out end
  local users = typing:users(room_id)
  local send
  if since and not new then send = typing:changed_since(room_id, since) else send = #users > 0 end
  if send then out[#out + 1] = { type = "m.typing", content = { user_ids = json.array(users) } } end
  if eph_filter.limit and #out > eph_filter.limit then return json.array {} end
  return out
end

-- The m.receipt event of each joined room whose receipts changed in
-- (since, to] (all of them for an initial sync and for rooms new to the
-- client): { [room_id] = event }. m.read.private only for its owner.
local function receipt_events(store, user_id, joined, newly, since, to, eph_filter)
  local out = {}
  local old, new = {}, {}
  for _, r in ipairs(joined) do
    if eph_filter:match { type = "m.receipt", room_id = r } then
      if since and not newly[r] then old[#old + 1] = r else new[#new + 1] = r end
    end
  end
  local function add(list, from)
    if #list == 0 or to <= (from or 0) then return end
    for _, c in ipairs(store:receipts_changes(list, from, to)) do
      local room_id, rtype, who, thread, event_id, ts = c[1], c[2], c[3], c[4], c[5], c[6]
      if rtype ~= "m.read.private" or who == user_id then
        local ev = out[room_id]
        if not ev then ev = { type = "m.receipt", content = {} }; out[room_id] = ev end
        local by_type = ev.content[event_id]
        if not by_type then by_type = {}; ev.content[event_id] = by_type end
        local users = by_type[rtype]
        if not users then users = {}; by_type[rtype] = users end
        users[who] = { ts = ts, thread_id = thread }
      end
    end
  end
  add(old, since)
  add(new, nil)
  return out
end

-- The m.presence events for the user and those sharing a joined room with
-- them: the current presence of those not offline on an initial sync, the
-- changes in (since, to] otherwise, through the filter's presence (a limit
-- keeps the latest).
local function presence_events(hs, user_id, since, to, fdef)
  local out = json.array {}
  local p = hs.presence
  if not p or not p.enabled or to <= (since or 0) then return out end
  local f = assert(store_filter.compile(obj(fdef.presence)))
  local store = hs.store
  local rows
  if since then
    -- incremental: the few changes first, then who of them shares a room
    rows = {}
    local changed = store:presence_changes(nil, since, to)
    if #changed > 0 then
      local who = {}
      for i, row in ipairs(changed) do who[i] = row.user_id end
      local sharing = store:sharing_among(user_id, who)
      sharing[user_id] = true
      for _, row in ipairs(changed) do
        if sharing[row.user_id] then rows[#rows + 1] = row end
      end
    end
  else
    local users = store:users_sharing_rooms(user_id)
    local me = false
    for _, u in ipairs(users) do if u == user_id then me = true; break end end
    if not me then users[#users + 1] = user_id end
    rows = store:presence_changes(users, nil, to)
  end
  for _, row in ipairs(rows) do
    if f:match { type = "m.presence", sender = row.user_id } then
      out[#out + 1] = { type = "m.presence", sender = row.user_id, content = p:content(row.user_id, row) }
    end
  end
  if f.limit and #out > f.limit then
    local cut = json.array {}
    for i = #out - f.limit + 1, #out do cut[#cut + 1] = out[i] end
    out = cut
  end
  return out
end

-- Incremental syncs, as Synapse does: the current presence of users who
-- newly share a room with the user (every member of a room joined since the
-- token, those whose join or invite is in a timeline sent now), unless
-- already in `out`. Appended to out.
local function newly_shared_presence(hs, user_id, joins, fresh, out, fdef)
  local p = hs.presence
  if not p or not p.enabled then return end
  local extra, have = {}, { [user_id] = true }
  for _, ev in ipairs(out) do have[ev.sender] = true end
  local function add(u)
    if not have[u] then have[u] = true; extra[#extra + 1] = u end
  end
  for _, r in ipairs(fresh) do
    for _, u in ipairs(hs.store:current_members(r, "join")) do add(u) end
  end
  for _, sec in pairs(joins) do
    for _, ev in ipairs(sec.timeline.events) do
      local c = ev.content
      if ev.type == "m.room.member" and type(ev.state_key) == "string" and type(c) == "table"
          and (c.membership == "join" or c.membership == "invite") then
        add(ev.state_key)
      end
    end
  end
  if #extra == 0 then return end
  local f = assert(store_filter.compile(obj(fdef.presence)))
  for _, u in ipairs(extra) do
    local row = hs.store:presence_of(u)
    if row and f:match { type = "m.presence", sender = u } and (not f.limit or #out < f.limit) then
      out[#out + 1] = { type = "m.presence", sender = u, content = p:content(u, row) }
    end
  end
end

-- The joined rooms an incremental sync looks at: those where something
-- changed after the token — new events (the store's change cache), typing,
-- receipts, room account data — and those new to the client, sorted. So
-- its cost follows what changed, not how many rooms the user is in. nil
-- when a source cannot tell (its memory starts after the token) or more
-- changed than the user has rooms: then every joined room.
local function changed_joined(hs, user_id, since, typing_since, rc_since, room_ad, newly, room_filter)
  local store = hs.store
  local set = store:room_set_for_user(user_id, "join")
  local max = #store:rooms_for_user(user_id, "join")
  local lists = { store:rooms_changed_after(since, max), store:receipt_rooms_changed_after(rc_since or 0, max) }
  if not hs.typing then lists[3] = {}
  else lists[3] = hs.typing:rooms_changed_since(typing_since or 0) end
  if not lists[1] or not lists[2] or not lists[3] then return nil end
  local seen, out = {}, {}
  local function add(r)
    if set[r] and not seen[r] and room_allowed(room_filter, r) then seen[r] = true; out[#out + 1] = r end
  end
  for i = 1, 3 do for _, r in ipairs(lists[i]) do add(r) end end
  for r in pairs(room_ad) do add(r) end
  for r in pairs(newly) do add(r) end
  table_sort(out)
  return out
end

-- Device lists (loom.sync.device_lists) and key counts of the device.
-- Returns whether there is a device-list change to send.
local function device_lists(hs, user_id, device_id, since, to, newly, left, body)
  local store = hs.store
  local counts, unused = store:device_key_counts(user_id, device_id)
  if not counts.signed_curve25519 then counts.signed_curve25519 = 0 end
  body.device_one_time_keys_count = counts
  body.device_unused_fallback_key_types = json.array(unused)
  if not since then return false end
  -- those who joined a room of the user: from the join events being sent
  local joiners, leavers = {}, {}
  for _, sec in pairs(body.rooms.join) do
    for _, part in ipairs { sec.timeline, sec.state } do
      for _, ev in ipairs(part and part.events or {}) do
        if ev.type == "m.room.member" and type(ev.content) == "table" then
          local m = ev.content.membership
          if m == "join" then joiners[ev.state_key] = true
          elseif m == "leave" or m == "ban" then leavers[ev.state_key] = true end
        end
      end
    end
  end
  local changed, gone = device_lists_mod.between(store, user_id, since, to, newly, left, joiners, leavers)
  body.device_lists = { changed = json.array(changed), left = json.array(gone) }
  return #changed > 0 or #gone > 0
end

--- Compute a sync response: body, has_data (something for the client).
function engine.sync(hs, opts)
  local store = hs.store
  local user_id = opts.user_id
  local to = store:current_position()
  local since = opts.since and opts.since.stream
  if since and since > to then since = to end
  local fdef = obj(opts.filter)
  local room_filter = obj(fdef.room)
  local tl_def = obj(room_filter.timeline)
  local state_def = obj(room_filter.state)
  local ctx = {
    hs = hs, store = store, user_id = user_id, device_id = opts.device_id,
    fields = not is_null(fdef.event_fields) and fdef.event_fields or nil,
    lazy_members = state_def.lazy_load_members == true,
    redundant_members = state_def.include_redundant_members == true,
    ignored = store:ignored_users(user_id),   -- their events and invites are not sent
  }
  -- account data: everything on an initial sync, the changes since `since` otherwise
  local ad_to = store:account_data_position()
  local ad_since = opts.since and opts.since.account_data or nil
  if ad_since and ad_since > ad_to then ad_since = ad_to end
  -- to-device: the messages the token acknowledges go; the next ones (at
  -- most TO_DEVICE_LIMIT) are sent until a later token acknowledges them
  local td_since = opts.since and opts.since.to_device or 0
  if td_since < 0 then td_since = 0 end
  local device = opts.device_id or ""
  -- (opts.skip_to_device: neither sent nor acknowledged; the deprecated /events)
  if td_since > 0 and not opts.skip_to_device then store:ack_to_device(user_id, device, td_since) end
  local td_events, td_to = {}, td_since
  local td_list = opts.skip_to_device and {} or store:to_device_messages(user_id, device, td_since, TO_DEVICE_LIMIT)
  for _, m in ipairs(td_list) do
    td_events[#td_events + 1] = { type = m[3], sender = m[2], content = json.decode(m[4]) }
    td_to = m[1]
  end
  -- typing: the rooms whose typing set changed after the token's typing position
  local typing = hs.typing
  local typing_since = opts.since and opts.since.typing or nil
  -- receipts: all of the rooms' receipts on an initial sync, the changes
  -- after the token's receipts position otherwise
  local rc_to = store:receipts_position()
  local rc_since = opts.since and opts.since.receipts or nil
  if rc_since and rc_since > rc_to then rc_since = rc_to end
  -- presence: of those not offline on an initial sync, the changes after
  -- the token's presence position otherwise
  local pr_to = store:presence_position()
  local pr_since = opts.since and opts.since.presence or nil
  if pr_since and pr_since > pr_to then pr_since = pr_to end
  local dl_to = store:device_list_position()
  local dl_since = opts.since and opts.since.device_lists or nil
  if dl_since and dl_since > dl_to then dl_since = dl_to end
  ctx.next_batch = sync_token.format { stream = to, to_device = td_to, account_data = ad_to,
    typing = typing and typing.position or 0, receipts = rc_to, presence = pr_to, device_lists = dl_to }
  local sf = store_filter.compile(state_def)
  if sf and not sf:is_empty() then ctx.state_filter = sf end
  local tl_filter = assert(store_filter.compile(tl_def))
  local limit = tl_filter.limit or DEFAULT_LIMIT
  local full_state = opts.full_state or not since
  -- a sync that starts over: the device keeps none of the members it was sent
  if ctx.lazy_members and not since then
    store:forget_lazy_members_sent(user_id, opts.device_id or "")
    ctx.lazy_forgotten = true
  end
  ctx.lazy_record = {}

  -- memberships: the last change per room in (since, to]
  -- (an initial sync: the joined rooms come from rooms_for_user, so only
  -- the rooms whose latest membership is not a join)
  local changes = since and assert(store:membership_changes(user_id, since, to))
    or store:memberships_not_joined(user_id, to)
  -- away: the user was not joined at some point in (since, to) (left and
  -- came back); came: the user joined in (since, to]
  local last, away, came = {}, {}, {}
  for _, c in ipairs(changes) do
    local prev = last[c.room_id]
    if prev and prev.membership ~= "join" then away[c.room_id] = true end
    if c.membership == "join" then came[c.room_id] = true end
    last[c.room_id] = c
  end
  -- new to the client: joined since `since`, or joined back after leaving
  local function is_new(room_id)
    if not since or not came[room_id] then return false end
    if away[room_id] then return true end
    local rn = store:room_nid(room_id)
    return not rn or membership_at(store, user_id, rn, since) ~= "join"
  end
  local newly, invited, left, fresh_left, knocked = {}, {}, {}, {}, {}
  -- an initial sync has the rooms one was banned or kicked from (as Synapse;
  -- those one left oneself only with include_leave), never forgotten ones
  local forgotten
  local function shows_leave(room_id, c)
    if since then return true end
    if room_filter.include_leave ~= true and c.sender == user_id then return false end
    forgotten = forgotten or store:forgotten_rooms(user_id)
    return not forgotten[room_id]
  end
  for room_id, c in pairs(last) do
    if room_allowed(room_filter, room_id) then
      if c.membership == "join" then
        if is_new(room_id) then newly[room_id] = true end
      elseif c.membership == "invite" then
        if not ctx.ignored[c.sender] then invited[room_id] = c end
      elseif c.membership == "knock" then
        knocked[room_id] = c
      elseif (c.membership == "leave" or c.membership == "ban") and shows_leave(room_id, c) then
        left[room_id] = c
        -- joined and left since `since`: new to the client as well
        if is_new(room_id) then fresh_left[room_id] = true end
      end
    end
  end

  local global_ad, room_ad = account_data_events(store, user_id, ad_since, ad_to, fdef)
  local presence_evs = presence_events(hs, user_id, pr_since, pr_to, fdef)
  local joined = since and not full_state
    and changed_joined(hs, user_id, since, typing_since, rc_since, room_ad, newly, room_filter)
  if not joined then
    joined = {}
    for _, r in ipairs(store:rooms_for_user(user_id, "join")) do
      if room_allowed(room_filter, r) then joined[#joined + 1] = r end
    end
  end
  local body = {
    next_batch = ctx.next_batch,
    rooms = { join = {}, invite = {}, leave = {} },
    account_data = { events = global_ad },
    presence = { events = presence_evs },
    to_device = { events = json.array(td_events) },
    device_lists = { changed = json.array {}, left = json.array {} },
    device_one_time_keys_count = {},
  }
  local has_data = #global_ad > 0 or #td_events > 0 or #presence_evs > 0

  -- a room new to the client is synced as in an initial sync: recent
  -- history up to the limit and the full state at its start
  local streams, known, fresh = {}, {}, {}
  for _, r in ipairs(joined) do
    if newly[r] then fresh[#fresh + 1] = r else known[#known + 1] = r end
  end
  if #known > 0 then
    streams = assert(store:rooms_stream(known, since or 0, to, limit, tl_filter))
  end
  if #fresh > 0 then
    for r, st in pairs(assert(store:rooms_stream(fresh, 0, to, limit, tl_filter))) do streams[r] = st end
  end
  local full_rooms = {}
  for _, r in ipairs(joined) do if full_state or newly[r] then full_rooms[r] = true end end
  local summaries = room_summaries(ctx, joined, full_rooms, since, to)
  prefetch(ctx, streams)
  local eph_filter = assert(store_filter.compile(obj(room_filter.ephemeral)))
  local receipt_evs = receipt_events(store, user_id, joined, newly, rc_since, rc_to, eph_filter)
  -- unread counts: per thread when the filter asks (room.timeline.unread_thread_notifications)
  local threaded = tl_def.unread_thread_notifications == true
  local unread = threaded and store:unread_thread_counts(user_id) or store:unread_counts(user_id)
  for _, room_id in ipairs(joined) do
    local st = streams[room_id]
    local full = full_state or newly[room_id]
    local ephemeral = typing_events(typing, room_id, typing_since, newly[room_id], eph_filter)
    if receipt_evs[room_id] then ephemeral[#ephemeral + 1] = receipt_evs[room_id] end
    local sm = summaries[room_id] or {}
    local summary = sm[1] or {}
    if st or full or room_ad[room_id] or #ephemeral > 0 or sm[1] then
      local sec, ignored_only = room_section(ctx, room_id, st, full, since, to, sm[2])
      -- a room whose only news came from ignored users is left out
      if not (ignored_only and not full and #sec.state.events == 0 and #ephemeral == 0
          and not room_ad[room_id] and next(summary) == nil) then
        sec.ephemeral = { events = ephemeral }
        sec.account_data = { events = room_ad[room_id] or json.array {} }
        local u = unread[room_id]
        if threaded then u, sec.unread_thread_notifications = unread_threads(u) end
        sec.unread_notifications = { notification_count = u and u[1] or 0, highlight_count = u and u[2] or 0 }
        sec.summary = summary
        body.rooms.join[room_id] = sec
        has_data = true
      end
    end
  end

  if since then newly_shared_presence(hs, user_id, body.rooms.join, fresh, presence_evs, fdef) end

  for room_id, c in pairs(invited) do
    body.rooms.invite[room_id] = invite_section(ctx, room_id, c)
    has_data = true
  end

  for room_id, c in pairs(knocked) do
    body.rooms.knock = body.rooms.knock or {}
    body.rooms.knock[room_id] = knock_section(ctx, room_id, c)
    has_data = true
  end

  for room_id, c in pairs(left) do
    -- the timeline runs from `since` to the leave (Synapse's archived room);
    -- a room joined since `since` gets the full state at its start
    local res = assert(store:rooms_stream({ room_id }, since or 0, c.stream_ordering, limit, tl_filter))
    local sec = room_section(ctx, room_id, res[room_id], not since or fresh_left[room_id], since, c.stream_ordering)
    sec.account_data = { events = room_ad[room_id] or json.array {} }
    body.rooms.leave[room_id] = sec
    has_data = true
  end

  if device_lists(hs, user_id, device, since and dl_since, dl_to, newly, left, body) then
    has_data = true
  end
  store:record_lazy_members_sent_many(user_id, opts.device_id or "", ctx.lazy_record)
  return body, has_data
end

--- The rooms a waiting sync listens to: the user's joined rooms.
function engine.watch_rooms(hs, user_id)
  return hs.store:rooms_for_user(user_id, "join")
end

engine.membership_at = membership_at
engine.is_empty = function(t) return next(t) == nil end
return engine
