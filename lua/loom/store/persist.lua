-- loom.store.persist: writing events into the store. Each call is one
-- transaction: the event row, its prev_events edges, the forward and backward
-- extremities of its room and its membership row are written together or not
-- at all.
--
-- Extremities (the event-graph rules):
--  * forward: live (not backfilled) non-outlier events, neither rejected nor
--    soft-failed, that no such event lists in prev_events. Persisting one
--    removes its prev_events from the set and adds itself unless already
--    referenced. Backfilled events are old history: they never change the
--    forward extremities.
--  * backward: prev_events of non-outlier events that are not themselves
--    stored as non-outliers. Persisting a non-outlier clears it as a
--    backward extremity and adds its unknown prev_events.
--  * outliers touch neither, and get no edges.
local core = require "loom.core"
local sql_mod = require "loom.store.sql"
local json = core.json

local type, math_type, ipairs, pairs, pcall, error = type, math.type, ipairs, pairs, pcall, error
local assert, table = assert, table

local _ENV = nil -- luacheck: ignore 211

local persist = {}
local methods = {}

local MAX_ID = 255
local MAX_DEPTH = 9007199254740991
local MAX_PREV = 1000

local function bad(msg) return nil, msg, "bad_event" end

-- Database calls inside the transaction raise on failure, so the whole
-- transaction is rolled back.
local function must(res, err, ...)
  if res == nil then error(err, 0) end
  return res, err, ...
end
local function run(conn, sql, ...) return must(conn:run(sql, ...)) end
local function value(conn, sql, ...)
  local v, err = conn:value(sql, ...)
  if v == nil and err then error(err, 0) end
  return v
end
local function first(conn, sql, ...) return must(conn:first(sql, ...)) end

local function check_id(v, what)
  if type(v) ~= "string" or #v == 0 then return bad(what .. " must be a non-empty string") end
  if #v > MAX_ID then return bad(what .. " is longer than 255 bytes") end
  return true
end

-- Validate what the store relies on; room-version checks live elsewhere.
local function check_event(event_id, ev)
  local ok, err = check_id(event_id, "event_id")
  if not ok then return nil, err, "bad_event" end
  if type(ev) ~= "table" then return bad("event must be an object") end
  for _, f in ipairs { "room_id", "type", "sender" } do
    ok, err = check_id(ev[f], f)
    if not ok then return nil, err, "bad_event" end
  end
  local sk = ev.state_key
  if sk ~= nil and (type(sk) ~= "string" or #sk > MAX_ID) then
    return bad("state_key must be a string of at most 255 bytes")
  end
  if math_type(ev.depth) ~= "integer" or ev.depth < 1 or ev.depth > MAX_DEPTH then
    return bad("depth must be an integer from 1 to 2^53-1")
  end
  if math_type(ev.origin_server_ts) ~= "integer" then
    return bad("origin_server_ts must be an integer")
  end
  local prev = ev.prev_events
  if prev ~= nil then
    if type(prev) ~= "table" then return bad("prev_events must be an array") end
    if #prev > MAX_PREV then return bad("too many prev_events") end
    for i, p in ipairs(prev) do
      -- room v3+ lists event IDs; v1/v2 list [event_id, hashes] pairs
      if type(p) == "table" then p = p[1] end
      ok, err = check_id(p, "prev_events[" .. i .. "]")
      if not ok then return nil, err, "bad_event" end
    end
  end
  return true
end

local function prev_ids(ev)
  local out = {}
  local prev = ev.prev_events
  if prev then
    local seen = {}
    for _, p in ipairs(prev) do
      if type(p) == "table" then p = p[1] end
      if not seen[p] then seen[p] = true; out[#out + 1] = p end
    end
  end
  return out
end

local function contains_url(ev)
  local c = ev.content
  return type(c) == "table" and type(c.url) == "string"
end

-- The room's largest timeline depth (cached).
local function room_max_depth(self, room_nid)
  local d = self.room_max_depth[room_nid]
  if d == nil then
    d = value(self.conn, "SELECT coalesce(max(depth), 0) FROM events WHERE room_nid = ? AND " .. sql_mod.TIMELINE,
      room_nid) or 0
    self.room_max_depth[room_nid] = d
  end
  return d
end

-- Queries here pin their plans (CROSS JOIN, unary +): on a database without
-- statistics SQLite would otherwise walk a room's timeline index.

-- Within the transaction: is event_id stored in the room as a non-outlier?
local function held(conn, room_nid, event_id)
  return value(conn, "SELECT 1 FROM events WHERE event_id = ? AND +room_nid = ? AND +outlier = 0",
    event_id, room_nid) ~= nil
end

-- Graph bookkeeping for a non-outlier event (edges and extremities).
local function link(self, nid, event_id, room_nid, prevs, valid)
  local conn = self.conn
  for _, p in ipairs(prevs) do
    run(conn, "INSERT OR IGNORE INTO event_edges (event_nid, prev_event_id) VALUES (?, ?)", nid, p)
  end
  if valid then
    for _, p in ipairs(prevs) do
      run(conn, [[DELETE FROM forward_extremities WHERE room_nid = ? AND event_nid =
        (SELECT event_nid FROM events WHERE event_id = ?)]], room_nid, p)
    end
    local referenced = value(conn, [[
      SELECT 1 FROM event_edges g CROSS JOIN events e ON e.event_nid = g.event_nid
      WHERE g.prev_event_id = ? AND +e.room_nid = ? AND e.event_nid != ?
        AND +e.outlier = 0 AND +e.rejected = 0 AND +e.soft_failed = 0 AND +e.stream_ordering > 0 LIMIT 1]],
      event_id, room_nid, nid)
    if not referenced then
      run(conn, "INSERT OR IGNORE INTO forward_extremities (room_nid, event_nid) VALUES (?, ?)",
        room_nid, nid)
    end
  end
  run(conn, "DELETE FROM backward_extremities WHERE room_nid = ? AND event_id = ?", room_nid, event_id)
  for _, p in ipairs(prevs) do
    if not held(conn, room_nid, p) then
      run(conn, "INSERT OR IGNORE INTO backward_extremities (room_nid, event_id) VALUES (?, ?)",
        room_nid, p)
    end
  end
end

local function next_stream(self, backfilled)
  if backfilled then
    self.min_stream = self.min_stream - 1
    return self.min_stream
  end
  self.max_stream = self.max_stream + 1
  return self.max_stream
end

-- One event inside the open transaction. Raises on database failure (the
-- transaction is rolled back by the caller); returns nil, msg, code for bad
-- input; otherwise the result record.
local function persist_one(self, event_id, ev, opts, changed)
  local ok, err, code = check_event(event_id, ev)
  if not ok then return nil, err, code end
  local conn = self.conn
  local outlier = opts.outlier and 1 or 0
  local rejected = opts.rejected and 1 or 0
  local soft_failed = opts.soft_failed and 1 or 0
  local valid = outlier == 0 and rejected == 0 and soft_failed == 0

  local existing = first(conn,
    "SELECT event_nid, outlier, stream_ordering, room_nid FROM events WHERE event_id = ?", event_id)
  if existing and (existing[2] == 0 or outlier == 1) then
    if self:room_nid(ev.room_id) ~= existing[4] then
      return bad("event " .. event_id .. " is already stored in another room")
    end
    return { event_nid = existing[1], stream_ordering = existing[3], duplicate = true }
  end

  local text = opts.json
  if text == nil then
    text, err, code = json.encode(ev)
    if not text then return nil, "event does not encode as canonical JSON: " .. err, code end
  end

  local room_nid = assert(self:ensure_room_nid(ev.room_id, opts.room_version))
  if existing and existing[4] ~= room_nid then
    return bad("event " .. event_id .. " is already stored in another room")
  end
  local type_nid = assert(self:ensure_type_nid(ev.type))
  local sk_nid = ev.state_key ~= nil and assert(self:ensure_state_key_nid(ev.state_key)) or nil
  local stream = next_stream(self, opts.backfilled)
  local depth = ev.depth

  -- Running max depth for the stream->topological conversion.
  local max_depth = room_max_depth(self, room_nid)
  if valid and depth > max_depth then max_depth = depth end
  if valid then self.room_max_depth[room_nid] = max_depth end
  if valid and stream < 0 then
    local bd = self.room_backfill_depth[room_nid]
    if bd == nil then
      bd = value(conn, "SELECT backfill_max_depth FROM rooms WHERE room_nid = ?", room_nid) or 0
    end
    if depth > bd then
      run(conn, "UPDATE rooms SET backfill_max_depth = ? WHERE room_nid = ?", depth, room_nid)
      bd = depth
    end
    self.room_backfill_depth[room_nid] = bd
  end

  local nid
  if existing then
    -- An outlier joins the DAG: it gets a fresh stream position so that
    -- streams see it where it now appears, and its flags, rejection and
    -- membership rows are written anew below.
    nid = existing[1]
    must(conn:run([[UPDATE events SET outlier = 0, rejected = ?, soft_failed = ?,
      stream_ordering = ?, max_depth = ?, json = ? WHERE event_nid = ?]],
      rejected, soft_failed, stream, max_depth, text, nid))
    run(conn, "DELETE FROM room_memberships WHERE event_nid = ?", nid)
    run(conn, "DELETE FROM event_rejections WHERE event_nid = ?", nid)
    -- the member's memberships changed (even when the row is not written anew)
    if ev.type == "m.room.member" and type(ev.state_key) == "string" then
      changed.members[#changed.members + 1] = { ev.state_key, stream }
    end
  else
    must(conn:run([[INSERT INTO events (event_id, room_nid, type_nid, state_key_nid, sender,
      depth, stream_ordering, outlier, rejected, soft_failed, origin_server_ts, contains_url,
      max_depth, json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)]],
      event_id, room_nid, type_nid, sk_nid, ev.sender, depth, stream, outlier, rejected,
      soft_failed, ev.origin_server_ts, contains_url(ev) and 1 or 0, max_depth, text))
    nid = conn:last_insert_rowid()
  end
  changed.nids[#changed.nids + 1] = nid
  if rejected == 1 then
    run(conn, "INSERT INTO event_rejections (event_nid, reason) VALUES (?, ?)",
      nid, type(opts.rejected) == "string" and opts.rejected or "rejected")
  end
  local content = ev.content
  if ev.type == "m.room.member" and sk_nid and rejected == 0 and soft_failed == 0
      and type(content) == "table" and type(content.membership) == "string" then
    run(conn, [[INSERT INTO room_memberships (event_nid, room_nid, user_id, sender, membership,
      stream_ordering) VALUES (?, ?, ?, ?, ?, ?)]],
      nid, room_nid, ev.state_key, ev.sender, content.membership, stream)
    changed.members[#changed.members + 1] = { ev.state_key, stream }
  end

  if outlier == 0 then
    link(self, nid, event_id, room_nid, prev_ids(ev), valid and stream > 0)
  end
  if valid and stream > 0 then self:index_for_search(nid, event_id, ev, existing ~= nil) end
  if valid then self:index_relation(nid, event_id, room_nid, ev, depth, stream, not existing and changed.fresh) end
  changed.rooms[#changed.rooms + 1] = { ev.room_id, stream, room_nid }
  return {
    event_nid = nid,
    stream_ordering = stream,
    room_nid = room_nid,
    depth = depth,
    deoutliered = existing ~= nil or nil,
  }
end

-- Make committed changes visible: the stream position, change caches and
-- recent-event caches.
local function publish(self, changed)
  if self.max_stream > self.current_stream then self.current_stream = self.max_stream end
  local fresh = {}
  for id in pairs(changed.fresh) do fresh[#fresh + 1] = id end
  self:note_relationless(fresh)
  for _, c in ipairs(changed.rooms) do
    self:cache_drop(c[3])
    if c[2] > 0 then self.room_changes:entity_changed(c[1], c[2]) end
  end
  for _, c in ipairs(changed.members) do
    if c[2] > 0 then self.member_changes:entity_changed(c[1], c[2]) end
  end
  local subs = self.subscribers
  if subs and #subs > 0 then
    local note = { position = self.current_stream, rooms = {}, users = {}, events = #changed.rooms }
    for _, c in ipairs(changed.rooms) do if c[2] > 0 then note.rooms[c[1]] = c[2] end end
    for _, c in ipairs(changed.members) do if c[2] > 0 then note.users[c[1]] = c[2] end end
    self:notify_subscribers(note)
  end
end

--- Give a committed change's note to every subscriber (see subscribe);
-- errors in a subscriber are caught (store.on_subscriber_error(err)).
function methods:notify_subscribers(note)
  local subs = self.subscribers
  if not subs then return end
  for i = 1, #subs do
    local ok, err = pcall(subs[i], note)
    if not ok and self.on_subscriber_error then self.on_subscriber_error(err) end
  end
end

--- Call fn(note) after every commit that added events, with note =
-- { position = current stream position, rooms = { [room_id] = position },
-- users = { [user_id] = position }, events = number of events added }
-- (users: whose membership changed), and after every account-data change,
-- with note = { position, rooms = {}, users = { [user_id] = account-data
-- position }, events = 0, account_data = true }.
-- Errors in fn are caught (store.on_subscriber_error(err) sees them).
-- Returns a function that unsubscribes.
function methods:subscribe(fn)
  local subs = self.subscribers
  if not subs then subs = {}; self.subscribers = subs end
  subs[#subs + 1] = fn
  return function()
    for i = #subs, 1, -1 do if subs[i] == fn then table.remove(subs, i) end end
  end
end

-- Run persist_one over a batch in one transaction (a savepoint when the
-- caller has one open). In-memory state follows the database: NIDs and
-- stream positions handed out are taken back if the work is rolled back, by
-- this batch or by an enclosing transaction, and changes are published only
-- once the outermost transaction commits.
local function persist_batch(self, items)
  local conn = self.conn
  local ok, res, err, code = pcall(conn.transaction, conn, function()
    local saved_max, saved_min = self.max_stream, self.min_stream
    local pending = {}
    local changed = { rooms = {}, members = {}, nids = {}, fresh = {} }
    conn:on_rollback(function()
      for i = #pending, 1, -1 do pending[i][1][pending[i][2]] = nil end
      self.nid_version = self.nid_version + 1
      self.max_stream, self.min_stream = saved_max, saved_min
      self.room_max_depth, self.room_backfill_depth = {}, {}
      -- a reader may have decoded the rows before the rollback (a commit
      -- group's rows are visible on the connection until its COMMIT)
      for _, nid in ipairs(changed.nids) do self:forget_event(nid) end
    end)
    local results = {}
    self.pending = pending
    for i, item in ipairs(items) do
      local r, e, c = persist_one(self, item[1], item[2], item[3] or {}, changed)
      if not r then self.pending = nil; return nil, e, c end
      results[i] = r
    end
    self.pending = nil
    conn:after_commit(function() publish(self, changed) end)
    return results
  end)
  if not ok then
    -- a database failure (or a bug) goes on up, after the rollback
    self.pending = nil
    error(res, 0)
  end
  return res, err, code
end

--- Persist one event. opts: outlier, backfilled (negative stream ordering),
-- rejected (true or a reason), soft_failed, room_version, json (the
-- canonical text, when the caller already has it). Returns
-- { event_nid, stream_ordering, room_nid, depth, duplicate?, deoutliered? }
-- or nil, message, code. Storing an event again is a no-op that reports
-- duplicate = true, except that an outlier stored again as a non-outlier
-- joins the DAG.
function methods:persist(event_id, event, opts)
  local res, err, code = persist_batch(self, { { event_id, event, opts } })
  if not res then return nil, err, code end
  return res[1]
end

--- Persist many events in one transaction: items = { {event_id, event, opts}, ... }.
-- All or nothing; returns the list of results.
function methods:persist_events(items)
  if type(items) ~= "table" then error("persist_events: items must be a list", 2) end
  return persist_batch(self, items)
end

--- Forward extremities of a room: event IDs, sorted.
function methods:forward_extremities(room_id)
  local nid = self:room_nid(room_id)
  if not nid then return {} end
  return self.conn:column([[SELECT e.event_id FROM forward_extremities f
    JOIN events e ON e.event_nid = f.event_nid WHERE f.room_nid = ? ORDER BY e.event_id]], nid)
end

--- Backward extremities of a room: event IDs, sorted.
function methods:backward_extremities(room_id)
  local nid = self:room_nid(room_id)
  if not nid then return {} end
  return self.conn:column(
    "SELECT event_id FROM backward_extremities WHERE room_nid = ? ORDER BY event_id", nid)
end

persist.methods = methods
return persist
