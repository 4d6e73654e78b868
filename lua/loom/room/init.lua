-- loom.room: rooms as a service over the event store. It builds local
-- events, checks received ones, authorises each against the state before it,
-- and persists it together with the state after it and the room's current
-- state, in one transaction.
--
--   local room = require "loom.room"
--   local rooms = room.new(store, { server_name = "example.org", key = signing_key })
--   local room_id = assert(rooms:create_room("@alice:example.org"))
--   local ev = assert(rooms:send(room_id, { type = "m.room.message", sender = "@alice:example.org",
--                                           content = { msgtype = "m.text", body = "hi" } }))
--
-- State before an event is the state after its prev_events; when those
-- differ it is their resolution (state resolution v2, or v2.1 in room v12).
-- The current state is the resolution of the states after the forward
-- extremities. Failures return nil, message, code (and the rule number for
-- "forbidden").
--
-- With opts.hooks (an object with fire and notify: the server), every event
-- passes the room/event/check veto hook before it is built (local) or
-- stored (received; federation/check first for another server's events),
-- and room/event/persisted observers hear of each event that joined a room
-- once it is committed. See docs/hooks/.
local core = require "loom.core"
local event_mod = require "loom.room.event"
local auth = require "loom.room.auth"
local version_mod = require "loom.room.version"
local stateres = require "loom.room.stateres"
local statemap = require "loom.room.statemap"

local json = core.json
local ipairs, pairs, type, setmetatable, table_sort = ipairs, pairs, type, setmetatable, table.sort
local getmetatable, tostring = getmetatable, tostring
local table_unpack = table.unpack
local table = table

local _ENV = nil -- luacheck: ignore 211

local room = {}
local methods = {}
local mt = { __name = "loom.room.Rooms", __index = methods }

--- A room service over a store. opts: server_name, key (a loom.crypto
-- signing key), default_version (default loom.room.version.DEFAULT), hooks
-- (an object with fire and notify, usually the server; none: no hooks),
-- outbound (function(ev, room_id), called for each new local event inside
-- the transaction that stores it: federation queues it there).
function room.new(store, opts)
  opts = opts or {}
  return setmetatable({
    store = store,
    hooks = opts.hooks,
    server_name = opts.server_name,
    key = opts.key,
    default_version = opts.default_version or version_mod.DEFAULT,
    outbound = opts.outbound, -- function(ev, room_id) inside the write transaction of each local event
    graphs = {},          -- room_id -> state-resolution graph
    ngraphs = 0,
  }, mt)
end

local function fail(msg, code) return nil, msg, code end

---------------------------------------------------------------------------
-- Hooks (docs/hooks/): room/event/check, federation/check, room/event/persisted.

-- A deep copy of a JSON value (json.array marks kept), so that what a hook
-- sees cannot change the event.
local function copy_json(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = copy_json(x) end
  return setmetatable(out, getmetatable(v))
end

-- A veto hook's verdict: true to go on, or nil, reason, code — "forbidden"
-- for a veto, "hook_error" with the error value a handler returned or raised
-- (the endpoints answer it as it is).
local function check_hook(self, name, ...)
  local verdict, reason = self.hooks:fire(name, ...)
  if verdict == nil or verdict == true then return true end
  if type(verdict) == "table" then return nil, verdict, "hook_error" end
  return nil, type(reason) == "string" and reason or "refused by server policy", "forbidden"
end

-- room/event/check for a local event about to be built from p (a copy of the
-- caller's proto): true, with p.content replaced when a handler assigned a
-- new event.content (event.build refuses one that is not a JSON object); or
-- nil, message, code.
local function check_local(self, version, p, opts)
  local content = p.content
  if type(p.redacts) == "string" and version.redacts_in_content and type(content) == "table"
     and content.redacts == nil then
    -- v11+: the stored redaction names its target in content.redacts
    content = copy_json(content)
    content.redacts = p.redacts
  end
  local event = { type = p.type, sender = p.sender, room_id = p.room_id, state_key = p.state_key,
    content = content, redacts = p.redacts }
  local ok, reason, code = check_hook(self, "room/event/check", event, {
    origin = "local", room_version = version.id, user_id = opts.user_id or p.sender,
    device_id = opts.device_id, txn_id = opts.txn_id, initial = opts.initial or nil,
  })
  if not ok then return nil, reason, code end
  p.content = event.content
  return true
end

-- federation/check (events of other servers) and room/event/check for a
-- received event: nil when it may be stored, else why it is rejected.
local function check_received(self, version, ev)
  local origin = type(ev.sender) == "string" and ev.sender:match("^@[^:]*:(.+)$") or nil
  local ok, reason
  if origin ~= self.server_name then
    ok, reason = check_hook(self, "federation/check", origin, { room_id = ev.room_id, event_id = ev.event_id })
    if not ok then return "refused by server policy: " .. tostring(reason) end
  end
  ok, reason = check_hook(self, "room/event/check", {
    type = ev.type, sender = ev.sender, room_id = ev.room_id, state_key = ev.state_key,
    content = copy_json(ev.content),
  }, { origin = "federation", room_version = version.id, user_id = ev.sender, origin_server = origin })
  if not ok then return "refused by server policy: " .. tostring(reason) end
  return nil
end

-- room/event/persisted observers, once the outermost transaction commits,
-- for an event that joined the room (not a duplicate, rejected or
-- soft-failed one).
local function announce(self, ev, room_id, r, origin)
  local hooks = self.hooks
  if not hooks or r.duplicate or r.rejected or r.soft_failed then return end
  local event = { event_id = ev.event_id, room_id = room_id, type = ev.type, sender = ev.sender,
    state_key = ev.state_key, content = copy_json(ev.content), origin_server_ts = ev.origin_server_ts }
  local context = { origin = origin, stream_ordering = r.stream_ordering }
  self.store:after_commit(function() hooks:notify("room/event/persisted", event, context) end)
end

local record_redaction     -- defined with persisting
local dedupe_entries

---------------------------------------------------------------------------
-- State as seen by the auth rules: lookups by (type, state_key) in a
-- loom.State of NIDs, answered with loaded events.

local function lookup_fn(self, st)
  local s = self.store
  return function(event_type, state_key)
    local t = s:type_nid(event_type)
    local k = t and s:state_key_nid(state_key)
    local e = k and st:get(t, k)
    if not e then return nil end
    return (s:event_by_nid(e))
  end
end

--- A loom.State as a state map (statemap keys -> event IDs).
function methods:state_map(st)
  local s = self.store
  local types, keys, evs = st:entries()
  local names = s:state_key_names(keys)
  local loaded = s:events_by_nid(evs)
  local m = {}
  for i = 1, #types do
    local ev = loaded[evs[i]]
    if not ev then return fail("state names an unknown event NID " .. tostring(evs[i]), "missing_event") end
    m[statemap.key(s:type_name(types[i]), names[keys[i]])] = ev[1].event_id
  end
  return m
end

-- A state map as triples of NIDs (every event in it is stored).
local function map_entries(self, m)
  local s = self.store
  local ids = {}
  for _, id in pairs(m) do ids[#ids + 1] = id end
  table_sort(ids)
  local loaded, err, code = s:events(ids)
  if not loaded then return nil, err, code end
  local entries = {}
  for k, id in pairs(m) do
    local t, sk = statemap.split(k)
    local tn, kn = s:type_nid(t), s:state_key_nid(sk)
    local ev = loaded[id]
    if not (tn and kn and ev) then return fail("resolved state names unknown event " .. id, "missing_event") end
    entries[#entries + 1] = { tn, kn, ev[2].event_nid }
  end
  return entries
end

-- The state-resolution graph kept for a room: events loaded into it once
-- are reused by later resolutions (a graph only ever sees one room). A
-- rolled-back transaction leaves nothing wrong in it: events are immutable,
-- and the graph only holds what fetch returned.
local GRAPHS_MAX = 64
local function graph_for(self, room_id)
  local graphs = self.graphs
  local g = graphs[room_id]
  if not g then
    if self.ngraphs >= GRAPHS_MAX then self.graphs, self.ngraphs = {}, 0; graphs = self.graphs end
    g = stateres.graph()
    graphs[room_id] = g
    self.ngraphs = self.ngraphs + 1
  end
  return g
end

-- Resolve the states of several snapshots of a room; returns a snapshot NID.
local function resolve_snapshots(self, version, room_id, nids)
  local s = self.store
  local sets = {}
  for i, nid in ipairs(nids) do
    local st, err, code = s:load_state(nid)
    if not st then return nil, err, code end
    sets[i], err, code = self:state_map(st)
    if not sets[i] then return nil, err, code end
  end
  local resolved, err, code = stateres.resolve(version, sets, function(id)
    local ev, meta = s:event(id)
    if not ev then return nil end
    return ev, meta.rejected
  end, { graph = graph_for(self, room_id) })
  if not resolved then return nil, err, code end
  local entries
  entries, err, code = map_entries(self, resolved)
  if not entries then return nil, err, code end
  return s:snapshot_from_entries(entries, nids[1])
end

-- The distinct snapshots after a list of events (IDs); unknown events and
-- events without state (outliers) are skipped.
local function states_after(self, ids)
  local s = self.store
  local loaded, err, code = s:events(ids)
  if not loaded then return nil, err, code end
  local nids, seen = {}, {}
  for _, id in ipairs(ids) do
    local ev = loaded[id]
    if ev and not ev[2].outlier then
      local before, after = s:event_state(ev[2].event_nid)
      if before then            -- nil, message, code: no state recorded (skipped)
        local snap = after or before
        if not seen[snap] then seen[snap] = true; nids[#nids + 1] = snap end
      end
    end
  end
  table_sort(nids)
  return nids
end

--- The snapshot NID of the state before an event, from its prev_events.
function methods:state_before(version, ev)
  local prevs = ev.prev_events or {}
  if #prevs == 0 then return 0 end
  local nids, err, code = states_after(self, prevs)
  if not nids then return nil, err, code end
  if #nids == 0 then return fail("no state is known for any of the event's prev_events", "missing_state") end
  if #nids == 1 then return nids[1] end
  local room_id = ev.room_id
  if ev.type == "m.room.create" and version.room_id_is_create_hash then
    room_id = event_mod.room_id_for_create(version, ev)
  end
  return resolve_snapshots(self, version, room_id, nids)
end

---------------------------------------------------------------------------
-- Persisting with state.

local function room_version(self, room_id)
  local id = self.store:room_version(room_id)
  if not id then return fail("unknown room " .. tostring(room_id), "not_found") end
  return version_mod.get(id)
end

-- The room's current state from its forward extremities; returns its
-- snapshot NID (true when the room has no state yet).
local function update_current(self, version, room_id, room_nid)
  local s = self.store
  local nids, err, code = states_after(self, s:forward_extremities(room_id))
  if not nids then return nil, err, code end
  local snap
  if #nids == 0 then return true end
  if #nids == 1 then snap = nids[1]
  else
    snap, err, code = resolve_snapshots(self, version, room_id, nids)
    if not snap then return nil, err, code end
  end
  local ok
  ok, err, code = s:set_current_state(room_nid, snap)
  if not ok then return nil, err, code end
  return snap
end

-- An accepted m.room.redaction applies to its target when the target is in
-- the same room and either has the same sender or the redaction's sender
-- has the redact power level (in the state before the redaction). Applied
-- redactions are recorded; events are served redacted from then on.
function record_redaction(self, version, ev, room_id, st_before)
  local target_id = version.redacts_in_content and type(ev.content) == "table" and ev.content.redacts
    or ev.redacts
  if type(target_id) ~= "string" then return true end
  local s = self.store
  local target, meta = s:event(target_id)
  if not target or meta.room_id ~= room_id then return true end
  local allowed = target.sender == ev.sender
  if not allowed then
    local lookup = lookup_fn(self, st_before)
    allowed = auth.power_level(version, lookup, ev.sender) >= auth.levels(version, lookup).redact
  end
  if not allowed then return true end
  return s:record_redaction(target_id, ev.event_id)
end

-- opts: local_send (an auth failure refuses the event instead of storing it
-- rejected), received (also check against the current state: soft failure).
local function persist(self, version, ev, opts)
  local s = self.store
  local room_id = ev.room_id
  if ev.type == "m.room.create" and version.room_id_is_create_hash then
    room_id = event_mod.room_id_for_create(version, ev)
  end
  local before, err, code = opts.state_before
  if not before then
    before, err, code = self:state_before(version, ev)
    if not before then return nil, err, code end
  end
  local st_before
  st_before, err, code = s:load_state(before)
  if not st_before then return nil, err, code end
  local verify = opts.keys and function(e, server)
    return event_mod.verify_signature(version, e, server, opts.keys)
  end
  local ok, reason, rule = auth.check(version, ev, lookup_fn(self, st_before),
    verify and { verify_signature = verify } or nil)
  if ok and opts.vetoed then ok, reason, rule = false, opts.vetoed, nil end
  local rejected, soft_failed
  if not ok then
    if opts.local_send then return nil, reason, "forbidden", rule end
    rejected = reason
  elseif opts.received and not opts.backfilled and ev.type ~= "m.room.create" then
    local rn = s:room_nid(room_id)
    local cur = rn and s:current_state(rn)
    if cur and #cur > 0 and not auth.check(version, ev, lookup_fn(self, cur)) then soft_failed = true end
  end
  local text
  text, err, code = json.encode(event_mod.pdu(ev))
  if not text then return nil, err, code end
  local row = ev
  if ev.room_id ~= room_id then
    row = {}
    for k, v in pairs(ev) do row[k] = v end
    row.room_id = room_id
  end
  local r
  r, err, code = s:persist(ev.event_id, row, { room_version = version.id, json = text,
    rejected = rejected and (rule and ("auth rule " .. tostring(rule) .. ": " .. tostring(reason)) or reason),
    soft_failed = soft_failed, backfilled = opts.backfilled })
  if not r then return nil, err, code end
  if r.duplicate then return r end
  local after = before
  if ev.state_key ~= nil and not rejected then
    after, err, code = s:snapshot_for(before, { { s:type_nid(ev.type), s:state_key_nid(ev.state_key), r.event_nid } })
    if not after then return nil, err, code end
  end
  ok, err, code = s:set_event_state(r.event_nid, before, after)
  if not ok then return nil, err, code end
  if not rejected and not soft_failed then
    local current
    current, err, code = update_current(self, version, room_id, r.room_nid)
    if not current then return nil, err, code end
    if current ~= true then
      s:set_current_after(r.event_nid, current)
    end
    if ev.type == "m.room.redaction" then
      ok, err, code = record_redaction(self, version, ev, room_id, st_before)
      if not ok then return nil, err, code end
    end
  end
  r.rejected, r.rule, r.soft_failed = rejected, rejected and rule, soft_failed
  r.state_before, r.state_after = before, after
  return r
end

-- What event.build needs from the room: its forward extremities with
-- depths, and its current state.
local function build_context(self, room_id)
  local s = self.store
  local rn = s:room_nid(room_id)
  local cur = rn and s:current_state(rn)
  local lookup = cur and lookup_fn(self, cur)
  return {
    forward_extremities = function()
      local ids = s:forward_extremities(room_id)
      local loaded = s:events(ids)
      local out = {}
      for _, id in ipairs(ids) do
        local e = loaded[id]
        if e then out[#out + 1] = { event_id = id, depth = e[2].depth } end
      end
      table_sort(out, function(a, b)
        if a.depth ~= b.depth then return a.depth > b.depth end
        return a.event_id < b.event_id
      end)
      return out
    end,
    state = function(_, event_type, state_key)
      if lookup then return lookup(event_type, state_key) end
    end,
  }
end

-- Inside a transaction: build a local event against ctx (event.build's
-- room argument), persist it and announce it. Returns the event and the
-- store's result, or nil, message, code[, rule].
local function store_local(self, version, proto, ctx, opts)
  local ev, berr, bcode = event_mod.build(version, proto, ctx, self.key, opts)
  if not ev then return nil, berr, bcode end
  local r, perr, pcode, rule = persist(self, version, ev, { local_send = true })
  if not r then return nil, perr, pcode, rule end
  local room_id = ev.room_id or event_mod.room_id_for_create(version, ev)
  if self.outbound and not r.duplicate then self.outbound(ev, room_id) end
  announce(self, ev, room_id, r, "local")
  return ev, r
end

--- Build, sign, authorise and store a local event. proto: { type, sender,
-- content, state_key?, redacts? } (room_id is the room's). opts: now, and
-- for the room/event/check hook's context user_id, device_id, txn_id,
-- initial. Returns the event (with event_id) and the store's result, or nil,
-- message, code[, rule] — "forbidden" with the auth rule that refused it (or
-- the reason a hook gave), "hook_error" with a hook's error value.
function methods:send(room_id, proto, opts)
  opts = opts or {}
  local version, err, code = room_version(self, room_id)
  if not version then return nil, err, code end
  local s = self.store
  local p = {}
  for k, v in pairs(proto) do p[k] = v end
  p.room_id = room_id
  if self.hooks then
    local ok
    ok, err, code = check_local(self, version, p, opts)
    if not ok then return nil, err, code end
  end
  local results = table.pack(s:transaction(function()
    return store_local(self, version, p, build_context(self, room_id), opts)
  end))
  return table_unpack(results, 1, results.n)
end

--- Create a room: its m.room.create event only (the rest of room creation
-- is a series of send calls). opts: room_version, content (extra create
-- content), now, and user_id, device_id, initial for room/event/check.
-- Returns room_id, create event.
function methods:create_room(creator, opts)
  opts = opts or {}
  local version, err, code = version_mod.get(opts.room_version or self.default_version)
  if not version then return nil, err, code end
  local content = {}
  for k, v in pairs(opts.content or {}) do content[k] = v end
  content.room_version = version.id
  local proto = { type = "m.room.create", state_key = "", sender = creator, content = content }
  if not version.room_id_is_create_hash then
    local rand = core.crypto.base64_encode(core.crypto.random_bytes(12), true):gsub("[-_]", "x")
    proto.room_id = "!" .. rand .. ":" .. tostring(self.server_name)
  end
  if self.hooks then
    local ok
    ok, err, code = check_local(self, version, proto, opts)
    if not ok then return nil, err, code end
  end
  local empty = { forward_extremities = function() return {} end, state = function() return nil end }
  -- (both are called as methods: room:forward_extremities(), room:state(type, state_key))
  local s = self.store
  local results = table.pack(s:transaction(function()
    local ev, r, scode, rule = store_local(self, version, proto, empty, opts)
    if not ev then return nil, r, scode, rule end
    return ev.room_id or event_mod.room_id_for_create(version, ev), ev
  end))
  return table_unpack(results, 1, results.n)
end

-- One entry per (type, state_key): the last given wins.
function dedupe_entries(entries)
  local at, out = {}, {}
  for _, e in ipairs(entries) do
    local k = e[1] .. ":" .. e[2]
    if at[k] then out[at[k]] = e else out[#out + 1] = e; at[k] = #out end
  end
  return out
end

--- Store an event received from another server, after the checks on
-- receipt: format and signatures (opts.keys(server, key_id) -> public key),
-- content hash (a mismatch stores the redacted form), authorisation against
-- its auth_events (which must be stored), against the state before it
-- (failure: stored as rejected), and against the current state (failure:
-- soft-failed). A veto of the federation/check or room/event/check hook
-- stores it as rejected too (without a rule). opts.room_version is needed
-- for a room the store does not know yet. Returns the store's result — with
-- rejected (the reason) and rule when the auth rules refused it, soft_failed
-- when the current state did — or nil, message, code.
function methods:receive(ev, opts)
  opts = opts or {}
  local version, err, code
  if opts.room_version then version, err, code = version_mod.get(opts.room_version)
  else version, err, code = room_version(self, ev.room_id) end
  if not version then return nil, err, code end
  local checked
  checked, err, code = event_mod.check(version, ev, { keys = opts.keys })
  if not checked then return nil, err, code end
  ev = checked.event
  local vetoed = self.hooks and check_received(self, version, ev)
  local s = self.store
  local results = table.pack(s:transaction(function()
    local auth_events = {}
    local loaded = s:events(ev.auth_events or {})
    for _, id in ipairs(ev.auth_events or {}) do
      local e = loaded[id]
      if not e then return nil, "auth event " .. id .. " is not known", "missing_auth_events" end
      auth_events[#auth_events + 1] = e[1]
    end
    local create
    if version.room_id_is_create_hash and ev.type ~= "m.room.create" then
      create = s:event("$" .. tostring(ev.room_id):sub(2))
    end
    local ok, reason, rule = auth.check_auth_events(version, ev, auth_events, {
      create = create,
      rejected = function(id) local e = loaded[id]; return e and e[2].rejected end,
    })
    if not ok then
      -- rejected on its own auth events: stored as rejected, with no state
      local text = json.encode(event_mod.pdu(ev))
      local r, perr, pcode = s:persist(ev.event_id, ev, { room_version = version.id, json = text,
        rejected = "auth rule " .. tostring(rule) .. ": " .. tostring(reason) })
      if not r then return nil, perr, pcode end
      r.rejected = reason
      r.rule = rule
      return r
    end
    local state_before
    if opts.state then
      -- the state before it comes with it (a join through another server):
      -- a snapshot of those events, which must be stored
      local entries = {}
      local sloaded = s:events(opts.state)
      for _, id in ipairs(opts.state) do
        local e = sloaded[id]
        if not e then return nil, "state event " .. id .. " is not known", "missing_state" end
        local se = e[1]
        if type(se.state_key) == "string" and not e[2].rejected then
          entries[#entries + 1] = { s:ensure_type_nid(se.type), s:ensure_state_key_nid(se.state_key), e[2].event_nid }
        end
      end
      local snap, serr, scode = s:snapshot_from_entries(dedupe_entries(entries))
      if not snap then return nil, serr, scode end
      state_before = snap
    end
    local r, perr, pcode = persist(self, version, ev, { received = true, keys = opts.keys, vetoed = vetoed,
      state_before = state_before, backfilled = opts.backfilled })
    if not r then return nil, perr, pcode end
    announce(self, ev, ev.room_id or event_mod.room_id_for_create(version, ev), r, "federation")
    return r
  end))
  return table_unpack(results, 1, results.n)
end

--- An event template for another server to complete (make_join,
-- make_leave, make_knock): the event this server would build now for proto
-- (prev_events, auth_events, depth from the room's current state), without
-- hashes, signatures or event ID. Returns the template and the room
-- version, or nil, message, code — "forbidden" (and the rule) when the
-- auth rules would refuse the event against the current state.
function methods:template(room_id, proto, opts)
  local version, err, code = room_version(self, room_id)
  if not version then return nil, err, code end
  local p = {}
  for k, v in pairs(proto) do p[k] = v end
  p.room_id = room_id
  local ctx = build_context(self, room_id)
  local ev
  ev, err, code = event_mod.build(version, p, ctx, self.key, opts)
  if not ev then return nil, err, code end
  local s = self.store
  local cur = s:current_state(s:room_nid(room_id))
  local ok, reason, rule = auth.check(version, ev, lookup_fn(self, cur),
    { verify_signature = function() return true end })
  if not ok then return nil, reason, "forbidden", rule end
  ev.hashes, ev.signatures, ev.event_id = nil, nil, nil
  return ev, version
end

-- events in an order where each comes after those of its auth_events that
-- are in the list (Kahn's algorithm; ties and cycles by depth, then ID).
local function auth_order(events)
  local by_id, indeg, children = {}, {}, {}
  for _, ev in ipairs(events) do by_id[ev.event_id] = ev; indeg[ev.event_id] = 0 end
  for _, ev in ipairs(events) do
    local seen = {}
    for _, a in ipairs(type(ev.auth_events) == "table" and ev.auth_events or {}) do
      if by_id[a] and not seen[a] and a ~= ev.event_id then
        seen[a] = true
        indeg[ev.event_id] = indeg[ev.event_id] + 1
        children[a] = children[a] or {}
        children[a][#children[a] + 1] = ev.event_id
      end
    end
  end
  local function before(x, y)
    local dx, dy = by_id[x].depth or 0, by_id[y].depth or 0
    if dx ~= dy then return dx < dy end
    return x < y
  end
  local ready, out, done = {}, {}, {}
  for id, d in pairs(indeg) do if d == 0 then ready[#ready + 1] = id end end
  while #out < #events do
    if #ready == 0 then
      -- a cycle (forged): take the rest in depth order
      for id in pairs(indeg) do if not done[id] then ready[#ready + 1] = id end end
    end
    table_sort(ready, before)
    local id = table.remove(ready, 1)
    if not done[id] then
      done[id] = true
      out[#out + 1] = by_id[id]
      for _, c in ipairs(children[id] or {}) do
        indeg[c] = indeg[c] - 1
        if indeg[c] == 0 then ready[#ready + 1] = c end
      end
    end
  end
  return out
end

--- Store events from another server as outliers (the state and auth chain
-- of a room being joined, missing auth events): each checked on receipt
-- (format, signatures with opts.keys, content hash) and against its own
-- auth_events (stored before, or earlier in the list); one that fails the
-- auth rules is stored rejected; one that fails its checks is left out.
-- Returns the number stored and a list of { event_id, reason } left out, or
-- nil, message, code when the store fails.
function methods:receive_outliers(events, opts)
  local version, err, code = version_mod.get(opts.room_version)
  if not version then return nil, err, code end
  local checked, dropped = {}, {}
  for _, ev in ipairs(events) do
    local c, msg = event_mod.check(version, ev, { keys = opts.keys })
    if c then checked[#checked + 1] = c.event
    else dropped[#dropped + 1] = { type(ev) == "table" and ev.event_id or "?", msg } end
  end
  local s = self.store
  local n = 0
  local results = table.pack(s:transaction(function()
    local create
    for _, ev in ipairs(auth_order(checked)) do
      local loaded = s:events(ev.auth_events or {})
      local auth_events, missing = {}, nil
      for _, id in ipairs(ev.auth_events or {}) do
        local e = loaded[id]
        if not e then missing = id; break end
        auth_events[#auth_events + 1] = e[1]
      end
      if missing then
        dropped[#dropped + 1] = { ev.event_id, "auth event " .. missing .. " is not known" }
      else
        if ev.type == "m.room.create" then create = ev end
        if version.room_id_is_create_hash and not create then
          create = s:event("$" .. tostring(ev.room_id):sub(2))
        end
        local ok, reason, rule = auth.check_auth_events(version, ev, auth_events, {
          create = version.room_id_is_create_hash and create or nil,
          rejected = function(id) local e = loaded[id]; return e and e[2].rejected end,
        })
        local text = json.encode(event_mod.pdu(ev))
        local r, perr, pcode = s:persist(ev.event_id, ev, { room_version = version.id, json = text, outlier = true,
          rejected = not ok and ("auth rule " .. tostring(rule) .. ": " .. tostring(reason)) or nil })
        if not r then return nil, perr, pcode end
        n = n + 1
      end
    end
    return true
  end))
  if not results[1] then return table_unpack(results, 1, results.n) end
  return n, dropped
end

--- The state before (which = "before") or after (default) an event, as a
-- state map.
function methods:state_at(event_id, which)
  local s = self.store
  local _, meta = s:event(event_id)
  if not meta then return fail("event " .. tostring(event_id) .. " not found", "not_found") end
  local before, after = s:event_state(meta.event_nid)
  if not before then return fail("no state is recorded for " .. event_id, "no_state") end
  local st, err, code = s:load_state(which == "before" and before or (after or before))
  if not st then return nil, err, code end
  return self:state_map(st)
end

--- The current state of a room as a state map.
function methods:current_state(room_id)
  local s = self.store
  local rn = s:room_nid(room_id)
  if not rn then return fail("unknown room " .. tostring(room_id), "not_found") end
  return self:state_map(s:current_state(rn))
end

--- The current state event of a room for (type, state_key), or nil.
function methods:state_event(room_id, event_type, state_key)
  local s = self.store
  local rn = s:room_nid(room_id)
  if not rn then return nil end
  return lookup_fn(self, s:current_state(rn))(event_type, state_key or "")
end

room.methods = methods
room.mt = mt
return room
