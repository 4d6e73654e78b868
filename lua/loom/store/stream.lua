-- loom.store.stream: reading the event stream in its two orders.
--
-- Rows come back as event records:
--   { event_nid, event_id, room_id, type, state_key_nid?, sender, depth,
--     stream_ordering, json }
-- json is the stored canonical text (decode it only when needed).
--
-- Tokens (loom.core.token) name gaps: a topological token t<d>-<s> sits
-- after the event at (d, s); paging backwards from it returns events at or
-- before it, paging forwards returns events after it. Pages fetch one row
-- more than asked so that `next` is nil exactly when nothing is left.
local core = require "loom.core"
local filter_mod = require "loom.store.filter"
local sql_mod = require "loom.store.sql"

local token, bound = core.token, core.bound
local type, ipairs, math_type, tostring, error = type, ipairs, math.type, tostring, error
local table_concat = table.concat
local getmetatable, table, select, pairs, math = getmetatable, table, select, pairs, math

local _ENV = nil -- luacheck: ignore 211

local stream = {}
local methods = {}

local TL = sql_mod.TIMELINE
local COLS = "event_nid, event_id, room_nid, type_nid, state_key_nid, sender, depth, stream_ordering, json"
local MAX_LIMIT = 1000
local APPSERVICE_MAX = 1000

local function bad_token(msg) return nil, msg, "bad_token" end

-- The shape of event records for rows selected with COLS: NIDs of rooms
-- and types are translated in C through the store's maps.
local function shape(self)
  local sh = self._record_shape
  if not sh then
    sh = { "event_nid", "event_id", { "room_id", self.room_ids }, { "type", self.type_names },
      "state_key_nid", "sender", "depth", "stream_ordering", "json" }
    self._record_shape = sh
  end
  return sh
end

-- Event records for a query selecting COLS. The rooms queried must be in
-- the NID map (self:room_nid puts them there); queries over any room use
-- records_any_room.
local function records(self, sql, ...)
  return self.conn:records(sql, shape(self), ...)
end

local function records_any_room(self, sql, ...)
  local recs = self.conn:records(sql, shape(self), ...)
  for i = 1, #recs do
    local r = recs[i]
    if r.room_id == nil then
      r.room_id = self:room_id(self.conn:value("SELECT room_nid FROM events WHERE event_nid = ?", r.event_nid))
    end
  end
  return recs
end

--- Parse a token argument: a loom.Token, a string, or nil.
local function arg_token(t)
  if t == nil then return nil end
  if type(t) == "string" then
    local tok, err = token.parse(t)
    if not tok then return nil, err end
    return tok
  end
  if type(t) == "userdata" and t.kind then return t end
  return nil, "token must be a string"
end

local function arg_limit(limit, default)
  if limit == nil then return default end
  if math_type(limit) ~= "integer" or limit < 0 then return nil end
  if limit > MAX_LIMIT then return MAX_LIMIT end
  return limit
end

local function arg_filter(f)
  if f == nil then return nil end
  if getmetatable(f) == filter_mod.mt then return f end
  return filter_mod.compile(f)
end

--- The largest timeline depth of a room among events at or before stream
-- position pos (0 when there is none).
function methods:max_depth_at(room_nid, pos)
  local conn = self.conn
  if pos > 0 then
    local d = conn:value("SELECT max_depth FROM events WHERE room_nid = ? AND stream_ordering <= ? AND "
      .. TL .. " ORDER BY stream_ordering DESC LIMIT 1", room_nid, pos) or 0
    local bd = self.room_backfill_depth[room_nid]
    if bd == nil then
      bd = conn:value("SELECT backfill_max_depth FROM rooms WHERE room_nid = ?", room_nid) or 0
      self.room_backfill_depth[room_nid] = bd
    end
    return d > bd and d or bd
  end
  return conn:value("SELECT coalesce(max(depth), 0) FROM events WHERE room_nid = ? AND stream_ordering <= ? AND "
    .. TL, room_nid, pos) or 0
end

--- A topological token for a stream token in a room: the gap after every
-- event that had arrived by that stream position (and after events of lower
-- depth that came later, which paging then shows too — nothing is skipped).
function methods:topological_for(room_nid, tok)
  if tok.topological then return tok end
  local d = self:max_depth_at(room_nid, tok.stream)
  return token.topological(d < 1 and 1 or d, tok.stream)
end

local FILTER_COLS = { type = "type_nid", sender = "sender", url = "contains_url" }

local function filter_sql(self, f)
  if not f then return nil, {} end
  return f:sql(self:resolver(), FILTER_COLS)
end

local function append(params, list)
  for i = 1, #list do params[#params + 1] = list[i] end
end

-- The SQL of one part of a topological page, composed once per shape and
-- kept by the store (at most 256 shapes, then the cache starts again).
local function topo_sql(self, desc, part_sql, to_sql, fsql)
  local key = (desc and "d" or "a") .. "\0" .. (part_sql or "") .. "\0" .. (to_sql or "") .. "\0" .. (fsql or "")
  local cache = self.topo_sql_cache
  if not cache or cache.n >= 256 then
    cache = { n = 0, sql = {} }
    self.topo_sql_cache = cache
  end
  local sql = cache.sql[key]
  if sql then return sql end
  local parts = { "SELECT ", COLS, " FROM events INDEXED BY events_topological WHERE room_nid = ? AND ", TL }
  if part_sql then parts[#parts + 1] = " AND " .. part_sql end
  if to_sql then parts[#parts + 1] = " AND " .. to_sql end
  if fsql then parts[#parts + 1] = " AND " .. fsql end
  parts[#parts + 1] = desc and " ORDER BY depth DESC, stream_ordering DESC LIMIT ?"
    or " ORDER BY depth, stream_ordering LIMIT ?"
  sql = table_concat(parts)
  cache.sql[key] = sql
  cache.n = cache.n + 1
  return sql
end

-- Rows of one room in topological order between two bounds, at most n.
local function topo_rows(self, room_nid, from_b, to_b, desc, fsql, fparams, n)
  local to_sql, to_params
  if to_b then to_sql, to_params = to_b:sql("sqlite", "depth", "stream_ordering") end
  local parts = from_b and from_b:sql_parts("sqlite", "depth", "stream_ordering") or { { params = {} } }
  local rows = {}
  for _, part in ipairs(parts) do
    local need = n - #rows
    if need <= 0 then break end
    local params = { room_nid }
    if part.sql then append(params, part.params) end
    if to_sql then append(params, to_params) end
    if fsql then append(params, fparams) end
    params[#params + 1] = need
    local got = records(self, topo_sql(self, desc, part.sql, to_sql, fsql),
      table.unpack(params, 1, #params))
    if #rows == 0 then rows = got
    else for i = 1, #got do rows[#rows + 1] = got[i] end end
  end
  return rows
end

--- Page through a room's timeline in topological order.
-- from: token (string or Token; stream tokens are converted) or nil for the
-- end (dir "b") / the start (dir "f"). opts: dir ("b"|"f", default "b"),
-- to (token), limit (default 10, at most 1000), filter (definition or
-- compiled), until_event (an event ID of the room: the page never goes past
-- it — backwards it starts at the event, included, when `from` is later or
-- absent; forwards it stops there). Returns { events = {...}, start = token string, next = token
-- string or nil when nothing is left, resume = token string after the last
-- event when a forward page without `to` reached the live end }.
function methods:paginate(room_id, from, opts)
  opts = opts or {}
  local dir = opts.dir or "b"
  if dir ~= "b" and dir ~= "f" then return nil, "dir must be 'b' or 'f'", "bad_param" end
  local limit = arg_limit(opts.limit, 10)
  if not limit then return nil, "limit must be a non-negative integer", "bad_param" end
  local f, ferr, fcode = arg_filter(opts.filter)
  if opts.filter ~= nil and not f then return nil, ferr, fcode end
  if f and f.limit and f.limit < limit then limit = f.limit end
  local from_tok, terr = arg_token(from)
  if from ~= nil and not from_tok then return bad_token(terr) end
  local to_tok
  to_tok, terr = arg_token(opts.to)
  if opts.to ~= nil and not to_tok then return bad_token(terr) end

  local room_nid = self:room_nid(room_id)
  local desc = dir == "b"
  local start = from_tok and tostring(from_tok)
  local cap = room_nid and opts.until_event ~= nil and self:event_end_token(room_nid, opts.until_event)
  if cap then
    if desc then
      if not from_tok or cap < self:topological_for(room_nid, from_tok) then
        from_tok = cap
        start = start or tostring(cap)
      end
    elseif not to_tok or cap < self:topological_for(room_nid, to_tok) then
      to_tok = cap
    end
  end
  if not start then
    if desc then
      local d = room_nid and self:max_depth_at(room_nid, self.current_stream) or 1
      start = tostring(token.topological(d < 1 and 1 or d, self.current_stream))
    else
      start = "t1-" .. tostring(self.min_stream - 1)
    end
  end
  local result = { events = {}, start = start }
  if not room_nid or (f and not f:allows_room(room_id)) then return result end

  local from_b, to_b
  if from_tok then
    from_b = bound.new(self:topological_for(room_nid, from_tok), desc and "<=" or ">")
  end
  if to_tok then
    to_b = bound.new(self:topological_for(room_nid, to_tok), desc and ">" or "<=")
  end
  local fsql, fparams = filter_sql(self, f)
  if fsql == false then return result end
  local rows = topo_rows(self, room_nid, from_b, to_b, desc, fsql, fparams, limit + 1)
  local more = #rows > limit
  if more then rows[#rows] = nil end
  result.events = rows
  if more then
    local last = rows[#rows]
    if last then
      local before, after = token.for_event(last.depth, last.stream_ordering)
      result.next = tostring(desc and before or after)
    else
      result.next = start          -- limit 0: nothing read, more to come
    end
  elseif not desc and not to_tok and rows[1] then
    -- forwards to the live end: where the next forward page starts once the room grows
    result.resume = tostring(select(2, token.for_event(rows[#rows].depth, rows[#rows].stream_ordering)))
  end
  return result
end

--- The topological token just after an event of the room (the gap a
-- backwards page starts from to include it), or nil when the event is not
-- in the room's timeline.
function methods:event_end_token(room_nid, event_id)
  local row = self.conn:first("SELECT depth, stream_ordering FROM events WHERE event_id = ? AND +room_nid = ? AND "
    .. TL, event_id, room_nid)
  if not row then return nil end
  return (select(2, token.for_event(row[1], row[2])))
end

--- Events around an event, for /context. Returns { event, before (nearest
-- first), after (in order), start, ["end"], more_before, more_after } or
-- nil, message, "not_found" when the event is not in the room's timeline.
-- The filter applies to the surrounding events, not to the event itself.
-- until_event (optional): the events after never go past this event (see
-- paginate).
function methods:context(room_id, event_id, before_limit, after_limit, filter, until_event)
  local room_nid = self:room_nid(room_id)
  if not room_nid then return nil, "event not found", "not_found" end
  local found = records(self, "SELECT " .. COLS ..
    " FROM events WHERE event_id = ? AND +room_nid = ? AND " .. TL, event_id, room_nid)
  local ev = found[1]
  if not ev then return nil, "event not found", "not_found" end
  local before_tok, after_tok = token.for_event(ev.depth, ev.stream_ordering)
  local b, berr, bcode = self:paginate(room_id, before_tok, { dir = "b", limit = before_limit, filter = filter })
  if not b then return nil, berr, bcode end
  local a, aerr, acode = self:paginate(room_id, after_tok, { dir = "f", limit = after_limit, filter = filter,
    until_event = until_event })
  if not a then return nil, aerr, acode end
  local start, stop = tostring(before_tok), tostring(after_tok)
  local lb, la = b.events[#b.events], a.events[#a.events]
  if lb then start = tostring((token.for_event(lb.depth, lb.stream_ordering))) end
  if la then stop = tostring(select(2, token.for_event(la.depth, la.stream_ordering))) end
  return {
    event = ev,
    before = b.events,
    after = a.events,
    start = start,
    ["end"] = stop,
    more_before = b.next ~= nil,
    more_after = a.next ~= nil,
  }
end

-- A stream position from an integer or a stream token (s<n>); topological
-- tokens are refused, as their stream part alone means nothing here.
local function stream_pos(t, default)
  if t == nil then return default end
  if math_type(t) == "integer" then return t end
  local tok, err = arg_token(t)
  if not tok then return nil, err end
  if tok.topological then return nil, "a stream token (s<n>) is needed here" end
  return tok.stream
end

-- The stream range (from, to] of a query: from is required unless
-- from_optional; to defaults to now. Returns true, from_pos, to_pos or
-- nil, message.
local function stream_range(self, from, to, from_optional)
  local from_pos, err = stream_pos(from, nil)
  if err then return nil, err end
  if from_pos == nil and not from_optional then return nil, "from is required" end
  local to_pos
  to_pos, err = stream_pos(to, self.current_stream)
  if not to_pos then return nil, err end
  return true, from_pos, to_pos
end

--- The current stream token: "s<n>", the highest committed position.
function methods:current_token()
  return "s" .. tostring(self.current_stream)
end

--- The highest committed stream position.
function methods:current_position()
  return self.current_stream
end

--- The topological token at the end of a room as of stream position pos
-- (default now): t<max depth>-<pos>.
function methods:max_topological_token(room_id, pos)
  pos = pos or self.current_stream
  local nid = self:room_nid(room_id)
  local d = nid and self:max_depth_at(nid, pos) or 0
  return tostring(token.topological(d < 1 and 1 or d, pos))
end

--- Stream and topological tokens (after the event) for an event:
-- "s<n>", "t<d>-<n>"; nil, message, "not_found" when unknown.
function methods:tokens_for_event(event_id)
  local row = self.conn:first("SELECT depth, stream_ordering FROM events WHERE event_id = ?", event_id)
  if not row then return nil, "event not found", "not_found" end
  return "s" .. tostring(row[2]), ("t%d-%d"):format(row[1], row[2])
end

--- Recent timeline events of a room in topological order, ending at stream
-- position `end_pos` (default now), optionally only after `from_pos`.
-- Returns { events (oldest first), start = token before the first event,
-- ["end"] = "s<end_pos>", limited }. Cached until the room changes.
function methods:recent_events(room_id, limit, end_pos, from_pos)
  limit = arg_limit(limit, 10)
  if not limit then return nil, "limit must be a non-negative integer", "bad_param" end
  local err
  end_pos, err = stream_pos(end_pos, self.current_stream)
  if not end_pos then return bad_token(err) end
  from_pos, err = stream_pos(from_pos, nil)
  if err then return bad_token(err) end
  local room_nid = self:room_nid(room_id)
  local key = ("%d:%d:%s"):format(limit, end_pos, tostring(from_pos))
  if room_nid then
    local hit = self:cache_get(room_nid, key)
    if hit then return hit end
  end
  local result = { events = {}, ["end"] = "s" .. tostring(end_pos), limited = false }
  if not room_nid then
    result.start = result["end"]
    return result
  end
  local sql = "SELECT " .. COLS .. " FROM events WHERE room_nid = ? AND " .. TL ..
    " AND stream_ordering <= ?" .. (from_pos and " AND stream_ordering > ?" or "") ..
    " ORDER BY depth DESC, stream_ordering DESC LIMIT ?"
  local rows
  if from_pos then rows = records(self, sql, room_nid, end_pos, from_pos, limit + 1)
  else rows = records(self, sql, room_nid, end_pos, limit + 1) end
  if #rows > limit then rows[#rows] = nil; result.limited = true end
  local n = #rows
  for i = 1, n // 2 do rows[i], rows[n + 1 - i] = rows[n + 1 - i], rows[i] end
  result.events = rows
  if n > 0 then
    result.start = tostring((token.for_event(rows[1].depth, rows[1].stream_ordering)))
  else
    result.start = result["end"]
  end
  self:cache_put(room_nid, key, result)
  return result
end

-- The stream-window query for one or many rooms: newest `per_room` events
-- per room with from < stream <= to, ascending per room (rooms in chunks
-- of IN-list size).
local function window_rows(self, room_nids, from_pos, to_pos, per_room, fsql, fparams)
  local out = {}
  for marks, chunk in sql_mod.chunks(room_nids) do
    local params = chunk
    params[#params + 1] = from_pos
    params[#params + 1] = to_pos
    local where = "room_nid IN (" .. marks .. ") AND " .. TL ..
      " AND stream_ordering > ? AND stream_ordering <= ?"
    if fsql then where = where .. " AND " .. fsql; append(params, fparams) end
    params[#params + 1] = per_room
    local sql = "SELECT " .. COLS .. " FROM (SELECT " .. COLS ..
      ", row_number() OVER (PARTITION BY room_nid ORDER BY stream_ordering DESC) AS rn FROM events WHERE " ..
      where .. ") WHERE rn <= ? ORDER BY room_nid, stream_ordering"
    local rows = records(self, sql, table.unpack(params, 1, #params))
    if #out == 0 then out = rows else append(out, rows) end
  end
  return out
end

local NONE = {}   -- a room without events in the range (cached as such)

local function stream_result(rows, limit)
  local res = { events = rows, limited = #rows > limit }
  if res.limited then table.remove(rows, 1) end
  local first = rows[1]
  if first then
    local before = token.for_event(first.depth, first.stream_ordering)
    res.prev_batch = tostring(before)                                     -- topological
    res.prev_stream = "s" .. tostring(first.stream_ordering - 1)
  end
  return res
end

--- New timeline events of one room in arrival order: from < stream <= to
-- (positions or stream tokens; to defaults to now), the newest `limit`.
-- Returns { events (ascending), limited, prev_batch (topological token
-- before the first event), prev_stream } — events is empty and nothing is
-- queried when the change cache knows the room did not change.
function methods:room_stream(room_id, from, to, limit, filter)
  local res, err, code = self:rooms_stream({ room_id }, from, to, limit, filter)
  if not res then return nil, err, code end
  return res[room_id] or { events = {}, limited = false }
end

--- room_stream for many rooms with one query: { [room_id] = result } for
-- the rooms that changed (unchanged rooms are absent).
function methods:rooms_stream(room_ids, from, to, limit, filter)
  local ok, from_pos, to_pos = stream_range(self, from, to)
  if not ok then return bad_token(from_pos) end
  limit = arg_limit(limit, 10)
  if not limit then return nil, "limit must be a non-negative integer", "bad_param" end
  local f, ferr, fcode = arg_filter(filter)
  if filter ~= nil and not f then return nil, ferr, fcode end
  if f and f.limit and f.limit < limit then limit = f.limit end
  local out = {}
  if from_pos >= to_pos then return out end
  local changed = self.room_changes:changed_among(room_ids, from_pos)
  local fsql, fparams = filter_sql(self, f)
  if fsql == false then return out end
  -- what (from, to] holds never changes once `to` is committed: results
  -- are kept per room (with the recent-events cache, dropped when the room
  -- changes), so the syncs one commit wakes share one read
  local key
  if to_pos <= self.current_stream and not self.conn:in_transaction() then
    local ps = {}
    for i = 1, #fparams do ps[i] = tostring(fparams[i]) end
    key = ("rs:%d:%d:%d:%s:%s"):format(from_pos, to_pos, limit, fsql or "", table_concat(ps, "\0"))
  end
  local nids = {}
  for _, r in ipairs(changed) do
    local nid = self:room_nid(r)
    if nid and (not f or f:allows_room(r)) then
      local hit = key and self:cache_get(nid, key)
      if hit then
        if hit ~= NONE then out[r] = hit end
      else
        nids[#nids + 1] = nid
      end
    end
  end
  if #nids == 0 then return out end
  local rows = window_rows(self, nids, from_pos, to_pos, limit + 1, fsql, fparams)
  local groups = {}
  for _, rec in ipairs(rows) do
    local g = groups[rec.room_id]
    if not g then g = {}; groups[rec.room_id] = g end
    g[#g + 1] = rec
  end
  for room_id, g in pairs(groups) do out[room_id] = stream_result(g, limit) end
  if key then
    for _, nid in ipairs(nids) do
      local room_id = self:room_id(nid)
      if (self:cache_count(nid) or 0) > 32 then self:cache_drop(nid) end
      self:cache_put(nid, key, out[room_id] or NONE)
    end
  end
  return out
end

--- Membership events of a user with from < stream <= to (from nil: all up
-- to `to`), in arrival order: { { event_id, room_id, membership, sender,
-- stream_ordering, json }, ... }. Answered from memory when the user's
-- memberships did not change.
function methods:membership_changes(user_id, from, to)
  local ok, from_pos, to_pos = stream_range(self, from, to, true)
  if not ok then return bad_token(from_pos) end
  if from_pos and (from_pos >= to_pos or not self.member_changes:has_changed(user_id, from_pos)) then
    return {}
  end
  local rows = self.conn:all([[
    SELECT e.event_id, m.room_nid, m.membership, m.sender, m.stream_ordering, e.json
    FROM room_memberships m JOIN events e ON e.event_nid = m.event_nid
    WHERE m.user_id = ? AND m.stream_ordering > ? AND m.stream_ordering <= ?
    ORDER BY m.stream_ordering]], user_id, from_pos or math.mininteger, to_pos)
  local out = {}
  for i, r in ipairs(rows) do
    out[i] = { event_id = r[1], room_id = self:room_id(r[2]), membership = r[3], sender = r[4],
      stream_ordering = r[5], json = r[6] }
  end
  return out
end

--- The user's latest membership event per room as of stream position to,
-- for the rooms where it is not a join (invites, leaves, bans, knocks;
-- outliers included, as in membership_changes), in arrival order, shaped as
-- membership_changes' rows: what an initial sync needs besides the joined
-- rooms, without reading every join.
function methods:memberships_not_joined(user_id, to)
  -- a user who never left, was invited to or banned from a room: nothing
  if not self.conn:value([[SELECT 1 FROM room_memberships WHERE user_id = ? AND stream_ordering <= ?
      AND membership != 'join' LIMIT 1]], user_id, to) then
    return {}
  end
  -- (the latest per room by a window over the user's rows: one pass, not a
  -- subquery per row)
  local rows = self.conn:all([[
    SELECT e.event_id, m.room_nid, m.membership, m.sender, m.stream_ordering, e.json
    FROM room_memberships m JOIN events e ON e.event_nid = m.event_nid
    WHERE m.event_nid IN (SELECT event_nid FROM (SELECT m2.event_nid, m2.membership,
        row_number() OVER (PARTITION BY m2.room_nid ORDER BY m2.stream_ordering DESC) AS rn
        FROM room_memberships m2 WHERE m2.user_id = ? AND m2.stream_ordering <= ?)
      WHERE rn = 1 AND membership != 'join')
    ORDER BY m.stream_ordering]], user_id, to)
  local out = {}
  for i, r in ipairs(rows) do
    out[i] = { event_id = r[1], room_id = self:room_id(r[2]), membership = r[3], sender = r[4],
      stream_ordering = r[5], json = r[6] }
  end
  return out
end

--- Rooms in which a user is currently joined (or has another current
-- membership), by membership events, sorted. Kept in memory per user until
-- the user's memberships change (the member change cache says so); the
-- list returned is shared: callers must not modify it.
function methods:rooms_for_user(user_id, membership)
  membership = membership or "join"
  local cache = self.user_rooms
  if not cache then cache = {}; self.user_rooms = cache end
  local key = membership .. "\0" .. user_id
  local hit = cache[key]
  if hit and not self.member_changes:has_changed(user_id, hit.at) then return hit.rooms end
  local at = self.current_stream
  -- (the latest per room by a window over the user's rows: one pass, where a
  -- subquery per row made a user in 2,200 rooms cost half a second)
  local rows = self.conn:all([[
    SELECT room_nid, membership FROM (SELECT m.room_nid, m.membership,
        row_number() OVER (PARTITION BY m.room_nid ORDER BY m.stream_ordering DESC) AS rn
      FROM room_memberships m JOIN events e ON e.event_nid = m.event_nid
      WHERE m.user_id = ? AND e.outlier = 0)
    WHERE rn = 1]], user_id)
  local out = {}
  for _, r in ipairs(rows) do
    if r[2] == membership then out[#out + 1] = self:room_id(r[1]) end
  end
  table.sort(out)
  -- what an open transaction wrote may yet be rolled back: not kept
  if not self.conn:in_transaction() then cache[key] = { at = at, rooms = out } end
  return out
end

--- rooms_for_user as a set { [room_id] = true } (shared: not to be
-- modified), kept with the list.
function methods:room_set_for_user(user_id, membership)
  local list = self:rooms_for_user(user_id, membership)
  local hit = self.user_rooms[(membership or "join") .. "\0" .. user_id]
  if hit and hit.rooms == list then
    if not hit.set then
      local set = {}
      for _, r in ipairs(list) do set[r] = true end
      hit.set = set
    end
    return hit.set
  end
  local set = {}
  for _, r in ipairs(list) do set[r] = true end
  return set
end

--- The rooms (of any user) whose timeline changed after stream position
-- pos, from the change cache: at most max (nil: no cap); nil when the cache
-- cannot tell or more changed.
function methods:rooms_changed_after(pos, max)
  return self.room_changes:changed_after(pos, max)
end

--- Events with from < stream <= to that `wanted(room_id, type, state_key)`
-- accepts, for application services (loom.appservice decides what
-- interests a service from its namespaces and the rooms its users are in;
-- the sender reads back a service's undelivered range with this at start).
-- Returns events (records, ascending, at most `limit`, default and cap 1000)
-- and the next stream token. Reads the range in batches of 1000 events.
function methods:appservice_stream(wanted, from, to, limit)
  if type(wanted) ~= "function" then error("appservice_stream: wanted must be a function", 2) end
  local ok, from_pos, to_pos = stream_range(self, from, to)
  if not ok then return bad_token(from_pos) end
  limit = arg_limit(limit, APPSERVICE_MAX)
  if not limit then return nil, "limit must be a non-negative integer", "bad_param" end
  if limit == 0 then limit = APPSERVICE_MAX end
  if from_pos >= to_pos then return { events = {}, next = "s" .. tostring(to_pos) } end
  local out, last = {}, nil
  local pos = from_pos
  while #out < limit and pos < to_pos do
    local rows = records_any_room(self, "SELECT " .. COLS ..
      " FROM events WHERE stream_ordering > ? AND stream_ordering <= ? AND " .. TL ..
      " ORDER BY stream_ordering LIMIT ?", pos, to_pos, APPSERVICE_MAX)
    if #rows == 0 then break end
    for _, rec in ipairs(rows) do
      local sk
      if rec.type == "m.room.member" and rec.state_key_nid then
        sk = self.conn:value("SELECT state_key FROM state_keys WHERE state_key_nid = ?", rec.state_key_nid)
      end
      pos = rec.stream_ordering
      if wanted(rec.room_id, rec.type, sk) then
        out[#out + 1] = rec
        last = rec.stream_ordering
        if #out >= limit then break end
      end
    end
  end
  local next_pos = (#out >= limit) and last or to_pos
  return { events = out, next = "s" .. tostring(next_pos) }
end

stream.methods = methods
stream.records = records
stream.COLS = COLS
stream.TL = TL
stream.MAX_LIMIT = MAX_LIMIT
return stream
