-- loom.store.relations: event relationships (Client-Server API,
-- "Relationships"), the rooms' thread lists, events by sending time
-- ("Jumping to a date") and content reports ("Reporting content").
--
--   -- persist: index_relation(nid, event_id, room_nid, ev, depth, stream) (inside its transaction)
--   -- record_redaction: unindex_relation(event_id)
--   local page = store:relations_page(room_id, parent_id, { rel_type =, type =, dir = "b",
--                                      from = "t5-9", to =, limit = 20, recurse = false, ignored = {} })
--     -- { ids = { event_id, ... }, next = "t5-8" | nil }
--   local agg = store:relations_of_parents({ parent_id, ... }, ignored)
--     -- { { parent_id, rel_type, event_id, sender, type, is_state }, ... } (m.replace, m.reference)
--   local th = store:thread_summaries({ root_id, ... }, user_id, ignored)
--     -- { [root_id] = { count =, participated =, latest_id = } }
--   local page = store:threads_page(room_id, { participated_by =, from =, limit = })
--     -- { ids = { root_id, ... }, next = token | nil }
--   local ids = store:events_near_ts(room_id, ts, dir, limit, skip)
--   if store:annotation_sent(room_id, parent_id, sender, type, key) then ... end
--   local thread = store:event_thread(ev)   -- "main" or the thread root's event ID
--   local id = store:add_report { reporter, room_id?, event_id?, user_id?, reason?, score? }
--   local list = store:reports_list(from, limit)
--
-- Rows are written for timeline events only (not outliers, rejected or
-- soft-failed), backfilled ones included. Mixed into the store; a
-- database failure raises (loom.db.Error).
local core = require "loom.core"
local sql = require "loom.store.sql"

local type, ipairs, pairs, tostring = type, ipairs, pairs, tostring
local table_unpack, table_concat = table.unpack, table.concat
local math_type, error = math.type, error
local bound, token = core.bound, core.token

local relations = {}
local methods = {}
local _ENV = nil -- luacheck: ignore 211

local MAX_KEY = 255

-- How far `recurse` follows relations of relations (as Synapse does).
relations.MAX_RECURSION = 3

local function must(res, err)
  if res == nil then error(err, 0) end
  return res
end

--- The relationship an event's content declares: rel_type, parent
-- event_id, annotation key (or nil when it declares none that loom indexes).
function relations.relates_to(ev)
  local c = ev.content
  if type(c) ~= "table" then return nil end
  local r = c["m.relates_to"]
  if type(r) ~= "table" then return nil end
  local rel, parent = r.rel_type, r.event_id
  if type(rel) ~= "string" or type(parent) ~= "string" or #rel == 0 or #parent == 0
      or #rel > MAX_KEY or #parent > MAX_KEY then
    return nil
  end
  local key = r.key
  if type(key) ~= "string" or #key > MAX_KEY then key = nil end
  return rel, parent, key
end

-- Make the thread row of a root follow its latest remaining reply.
local function refresh_thread(conn, room_nid, root_id)
  local row = conn:first([[SELECT event_id, depth, stream_ordering FROM event_relations
    WHERE parent_id = ? AND rel_type = 'm.thread' AND room_nid = ?
    ORDER BY depth DESC, stream_ordering DESC LIMIT 1]], root_id, room_nid)
  if row then
    must(conn:run([[INSERT INTO threads (room_nid, root_id, latest_id, latest_depth, latest_stream)
      VALUES (?, ?, ?, ?, ?) ON CONFLICT (room_nid, root_id) DO UPDATE SET latest_id = excluded.latest_id,
      latest_depth = excluded.latest_depth, latest_stream = excluded.latest_stream]],
      room_nid, root_id, row[1], row[2], row[3]))
  else
    must(conn:run("DELETE FROM threads WHERE room_nid = ? AND root_id = ?", room_nid, root_id))
  end
end

-- Events known to have no relations (so that serving them asks nothing):
-- filled after a query outside a transaction found none, and by persist
-- for new events once they commit; a new relation takes its parent out at
-- once. Bounded: forgotten wholesale past RELATIONLESS_MAX.
local RELATIONLESS_MAX = 50000

local function relationless(self)
  local known = self.relationless
  if not known or known.n > RELATIONLESS_MAX then known = { ids = {}, n = 0 }; self.relationless = known end
  return known
end

--- The event IDs among ids that may have relations (those not known to
-- have none).
function methods:relations_unknown(ids)
  local known = relationless(self).ids
  local out = {}
  for _, id in ipairs(ids) do if not known[id] then out[#out + 1] = id end end
  return out
end

--- Note that the events of ids have no relations, except those in found
-- ({ [event_id] = true }); nothing while a transaction is open (what it
-- reads may yet be rolled back).
function methods:note_relationless(ids, found)
  if self.conn:in_transaction() then return end
  local known = relationless(self)
  for _, id in ipairs(ids) do
    if not (found and found[id]) and not known.ids[id] then known.ids[id] = true; known.n = known.n + 1 end
  end
end

--- Record the relationship of a timeline event (inside persist's
-- transaction; again: no change). fresh: persist's set of the batch's new
-- events known to have no children, noted once the batch commits.
function methods:index_relation(nid, event_id, room_nid, ev, depth, stream, fresh)
  local conn = self.conn
  if fresh and conn:value("SELECT 1 FROM event_relations WHERE parent_id = ? LIMIT 1", event_id) == nil then
    fresh[event_id] = true
  end
  local rel, parent, key = relations.relates_to(ev)
  if not rel or parent == event_id then return end
  if fresh then fresh[parent] = nil end
  local known = self.relationless
  if known and known.ids[parent] then known.ids[parent] = nil; known.n = known.n - 1 end
  must(conn:run([[INSERT OR IGNORE INTO event_relations (event_nid, event_id, room_nid, parent_id, rel_type,
    aggregation_key, type, is_state, sender, depth, stream_ordering, origin_server_ts)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)]], nid, event_id, room_nid, parent, rel, key, ev.type,
    ev.state_key ~= nil and 1 or 0, ev.sender, depth, stream, ev.origin_server_ts))
  if rel == "m.thread" and ev.state_key == nil then
    must(conn:run([[INSERT INTO threads (room_nid, root_id, latest_id, latest_depth, latest_stream)
      VALUES (?, ?, ?, ?, ?) ON CONFLICT (room_nid, root_id) DO UPDATE SET latest_id = excluded.latest_id,
      latest_depth = excluded.latest_depth, latest_stream = excluded.latest_stream
      WHERE excluded.latest_depth > threads.latest_depth
         OR (excluded.latest_depth = threads.latest_depth AND excluded.latest_stream > threads.latest_stream)]],
      room_nid, parent, event_id, depth, stream))
  end
end

--- A redacted event leaves the aggregations of its parent (and the thread
-- list follows the thread's latest remaining reply).
function methods:unindex_relation(event_id)
  local conn = self.conn
  local row = conn:first("SELECT room_nid, parent_id, rel_type FROM event_relations WHERE event_id = ?", event_id)
  if not row then return end
  must(conn:run("DELETE FROM event_relations WHERE event_id = ?", event_id))
  if row[3] == "m.thread" then refresh_thread(conn, row[1], row[2]) end
end

-- A client's pagination token as a bound on (depth, stream): nil, message
-- when it does not parse.
local function token_bound(text, op)
  local t, err = token.parse(text)
  if not t then return nil, err end
  return bound.new(t, op)
end

local function ignored_clause(ignored, col)
  local list = {}
  for who in pairs(ignored or {}) do list[#list + 1] = who end
  if #list == 0 then return "", list end
  return " AND " .. col .. " NOT IN (" .. sql.marks(#list) .. ")", list
end

local function append(args, list) for _, v in ipairs(list) do args[#args + 1] = v end end

--- One page of the events that relate to parent_id in the room. opts:
-- rel_type, type (only with rel_type), dir ("b": newest first, default;
-- "f"), from and to (store tokens s<n> / t<d>-<n>), limit (>= 1),
-- recurse (follow relations of relations up to MAX_RECURSION levels),
-- ignored ({ [user_id] = true }: left out). Returns { ids, next } or nil,
-- message, "bad_token".
function methods:relations_page(room_id, parent_id, opts)
  local room_nid = self:room_nid(room_id)
  local out = { ids = {} }
  if not room_nid then return out end
  local dir = opts.dir == "f" and "f" or "b"
  local limit = opts.limit
  if math_type(limit) ~= "integer" or limit < 1 then error("relations_page: limit must be a positive integer", 2) end
  local where, args = { "r.room_nid = ?" }, { room_nid }
  if opts.rel_type then where[#where + 1] = "r.rel_type = ?"; args[#args + 1] = opts.rel_type end
  if opts.type then where[#where + 1] = "r.type = ?"; args[#args + 1] = opts.type end
  if opts.to then
    local bnd, err = token_bound(opts.to, dir == "b" and ">" or "<=")
    if not bnd then return nil, err, "bad_token" end
    local s, params = bnd:sql("sqlite", "r.depth", "r.stream_ordering")
    where[#where + 1] = s
    append(args, params)
  end
  -- `from` as plain ranges of the (parent, depth, stream) index, scanned in
  -- order (bound:sql_parts)
  local parts = { { sql = "1", params = {} } }
  if opts.from then
    local bnd, err = token_bound(opts.from, dir == "b" and "<=" or ">")
    if not bnd then return nil, err, "bad_token" end
    parts = bnd:sql_parts("sqlite", "r.depth", "r.stream_ordering")
  end
  local ign, ign_args = ignored_clause(opts.ignored, "r.sender")
  local order = dir == "b" and "r.depth DESC, r.stream_ordering DESC" or "r.depth, r.stream_ordering"
  local rows
  if opts.recurse then
    -- the children, their children, ... (MAX_RECURSION levels, each ignored
    -- sender's events and what hangs from them left out)
    local cte_args = { parent_id, room_nid }
    append(cte_args, ign_args)
    cte_args[#cte_args + 1] = room_nid
    append(cte_args, ign_args)
    cte_args[#cte_args + 1] = relations.MAX_RECURSION
    append(cte_args, args)
    local from_sql = {}
    for i, part in ipairs(parts) do from_sql[i] = "(" .. part.sql .. ")"; append(cte_args, part.params) end
    append(cte_args, ign_args)
    cte_args[#cte_args + 1] = limit + 1
    rows = self.conn:all([[WITH RECURSIVE tree(event_id, level) AS (
        SELECT event_id, 1 FROM event_relations WHERE parent_id = ? AND room_nid = ?]] .. ign:gsub("r%.", "") .. [[
        UNION SELECT c.event_id, tree.level + 1 FROM event_relations c JOIN tree ON c.parent_id = tree.event_id
        WHERE c.room_nid = ?]] .. ign:gsub("r%.", "c.") .. [[ AND tree.level < ?)
      SELECT DISTINCT r.event_id, r.depth, r.stream_ordering FROM tree CROSS JOIN event_relations r
        ON r.event_id = tree.event_id WHERE ]] .. table_concat(where, " AND ") .. " AND ("
      .. table_concat(from_sql, " OR ") .. ")" .. ign .. " ORDER BY " .. order .. " LIMIT ?", table_unpack(cte_args))
  else
    rows = {}
    local head = "SELECT r.event_id, r.depth, r.stream_ordering FROM event_relations r WHERE r.parent_id = ? AND "
      .. table_concat(where, " AND ")
    for _, part in ipairs(parts) do
      local a = { parent_id }
      append(a, args)
      append(a, part.params)
      append(a, ign_args)
      a[#a + 1] = limit + 1 - #rows
      append(rows, self.conn:all(head .. " AND " .. part.sql .. ign .. " ORDER BY " .. order .. " LIMIT ?",
        table_unpack(a)))
      if #rows > limit then break end
    end
  end
  for i = 1, #rows < limit and #rows or limit do out.ids[i] = rows[i][1] end
  if #rows > limit then
    local last = rows[limit]
    local before, after = token.for_event(last[2], last[3])
    out.next = tostring(dir == "b" and before or after)
  end
  return out
end

--- The m.replace and m.reference children of some events:
-- { { parent_id, rel_type, event_id, sender, type, is_state, origin_server_ts }, ... },
-- replacements in (origin_server_ts, event_id) order; ignored senders left out.
function methods:relations_of_parents(parent_ids, ignored)
  local ign, ign_args = ignored_clause(ignored, "r.sender")
  local out = {}
  for marks, chunk in sql.chunks(parent_ids) do
    local args = {}
    append(args, chunk)
    append(args, ign_args)
    -- (a child counts only in its parent's room)
    for _, r in ipairs(self.conn:all([[SELECT r.parent_id, r.rel_type, r.event_id, r.sender, r.type, r.is_state,
        r.origin_server_ts FROM event_relations r CROSS JOIN events e ON e.event_id = r.parent_id
        WHERE r.parent_id IN (]] .. marks .. ") AND r.rel_type IN ('m.replace', 'm.reference')"
        .. " AND r.room_nid = e.room_nid" .. ign .. " ORDER BY r.origin_server_ts, r.event_id",
        table_unpack(args))) do
      out[#out + 1] = r
    end
  end
  return out
end

--- The thread summaries of some events (those that are thread roots):
-- { [root_id] = { count, participated (user_id sent a reply), latest_id } },
-- ignored senders' replies left out.
function methods:thread_summaries(root_ids, user_id, ignored)
  local ign, ign_args = ignored_clause(ignored, "sender")
  local ign2 = ign:gsub("sender", "l.sender")
  local out = {}
  for marks, chunk in sql.chunks(root_ids) do
    local args = { user_id }
    append(args, ign_args)
    append(args, chunk)
    append(args, ign_args)
    -- (a reply counts only in its root's room)
    for _, r in ipairs(self.conn:all([[SELECT p.parent_id, count(*), max(p.sender = ?),
        (SELECT l.event_id FROM event_relations l WHERE l.parent_id = p.parent_id AND l.rel_type = 'm.thread'
           AND l.is_state = 0 AND l.room_nid = e.room_nid]] .. ign2 .. [[
           ORDER BY l.depth DESC, l.stream_ordering DESC LIMIT 1)
        FROM event_relations p CROSS JOIN events e ON e.event_id = p.parent_id
        WHERE p.parent_id IN (]] .. marks .. [[) AND p.rel_type = 'm.thread'
        AND p.is_state = 0 AND p.room_nid = e.room_nid]] .. ign:gsub("sender", "p.sender")
        .. " GROUP BY p.parent_id", table_unpack(args))) do
      out[r[1]] = { count = r[2], participated = r[3] == 1, latest_id = r[4] }
    end
  end
  return out
end

--- One page of a room's thread roots, latest activity first. opts:
-- participated_by (only threads whose root or a reply that user sent),
-- from (a token from an earlier page), limit. { ids, next } or nil,
-- message, "bad_token".
function methods:threads_page(room_id, opts)
  local room_nid = self:room_nid(room_id)
  local out = { ids = {} }
  if not room_nid then return out end
  local limit = opts.limit
  local where, args = { "t.room_nid = ?" }, { room_nid }
  local parts = { { sql = "1", params = {} } }
  if opts.from then
    local bnd, err = token_bound(opts.from, "<=")
    if not bnd then return nil, err, "bad_token" end
    parts = bnd:sql_parts("sqlite", "t.latest_depth", "t.latest_stream")
  end
  if opts.participated_by then
    where[#where + 1] = [[(EXISTS (SELECT 1 FROM events e WHERE e.event_id = t.root_id AND e.sender = ?)
      OR EXISTS (SELECT 1 FROM event_relations r WHERE r.parent_id = t.root_id AND r.rel_type = 'm.thread'
        AND r.sender = ? AND r.room_nid = t.room_nid))]]
    args[#args + 1] = opts.participated_by
    args[#args + 1] = opts.participated_by
  end
  local rows = {}
  for _, part in ipairs(parts) do
    local a = { room_nid }
    append(a, part.params)
    for i = 2, #args do a[#a + 1] = args[i] end
    a[#a + 1] = limit + 1 - #rows
    append(rows, self.conn:all([[SELECT t.root_id, t.latest_depth, t.latest_stream FROM threads t
      WHERE t.room_nid = ? AND ]] .. part.sql .. (#where > 1 and " AND " .. table_concat(where, " AND ", 2) or "")
      .. [[
      AND EXISTS (SELECT 1 FROM events e WHERE e.event_id = t.root_id AND e.room_nid = t.room_nid)
      ORDER BY t.latest_depth DESC, t.latest_stream DESC LIMIT ?]], table_unpack(a)))
    if #rows > limit then break end
  end
  for i = 1, #rows < limit and #rows or limit do out.ids[i] = rows[i][1] end
  if #rows > limit then
    local last = rows[limit]
    out.next = tostring((token.for_event(last[2], last[3])))
  end
  return out
end

-- How many relationships event_thread follows from an event (the spec's
-- "Threaded read receipts" recommends 3).
local THREAD_HOPS = 3

--- The thread an event is in (Client-Server API, "Threaded read receipts"):
-- the root's event ID when it has an m.thread relation, or when a parent it
-- reaches through at most 3 relationships (an edit, a reaction, a reference
-- of a threaded event) has one; else "main" (thread roots, events related to
-- a root by other relations, events with none).
function methods:event_thread(ev)
  local room_id = type(ev) == "table" and ev.room_id
  for hop = 0, THREAD_HOPS do
    local content = type(ev) == "table" and ev.content
    local rel = type(content) == "table" and content["m.relates_to"]
    if type(rel) ~= "table" or type(rel.rel_type) ~= "string" or type(rel.event_id) ~= "string" then break end
    if rel.rel_type == "m.thread" then return rel.event_id end
    if hop == THREAD_HOPS then break end
    ev = self:event(rel.event_id)
    if not ev or ev.room_id ~= room_id then break end
  end
  return "main"
end

--- Whether sender has an annotation of this event type and key on
-- parent_id in the room (redacted ones are gone).
function methods:annotation_sent(room_id, parent_id, sender, event_type, key)
  local room_nid = self:room_nid(room_id)
  if not room_nid then return false end
  return self.conn:value([[SELECT 1 FROM event_relations WHERE parent_id = ? AND rel_type = 'm.annotation'
    AND sender = ? AND type = ? AND aggregation_key = ? AND room_nid = ? LIMIT 1]],
    parent_id, sender, event_type, key, room_nid) ~= nil
end

--- Timeline events of a room sent at or after ts (dir "f", earliest
-- first) or at or before it (dir "b", latest first): up to limit event
-- IDs, skipping the first `skip`.
function methods:events_near_ts(room_id, ts, dir, limit, skip)
  local room_nid = self:room_nid(room_id)
  if not room_nid then return {} end
  local cond = dir == "f" and "origin_server_ts >= ? ORDER BY origin_server_ts, stream_ordering"
    or "origin_server_ts <= ? ORDER BY origin_server_ts DESC, stream_ordering DESC"
  return self.conn:column("SELECT event_id FROM events WHERE room_nid = ? AND " .. sql.TIMELINE .. " AND "
    .. cond .. " LIMIT ? OFFSET ?", room_nid, ts, limit, skip or 0)
end

--- Store a report r = { reporter, room_id?, event_id?, user_id?, reason?,
-- score?, ts? } for the server's admins; returns its report_id.
function methods:add_report(r)
  self.conn:run([[INSERT INTO reports (received_ts, reporter, room_id, event_id, user_id, reason, score)
    VALUES (?, ?, ?, ?, ?, ?, ?)]], r.ts or core.now_ms(), r.reporter, r.room_id, r.event_id, r.user_id,
    r.reason, r.score)
  return self.conn:last_insert_rowid()
end

--- Reports, newest first: from (a report_id: those below it; nil: the
-- newest), limit. { { report_id, received_ts, reporter, room_id, event_id,
-- user_id, reason, score }, ... } (absent fields nil).
function methods:reports_list(from, limit)
  local rows
  if from then
    rows = self.conn:all([[SELECT report_id, received_ts, reporter, room_id, event_id, user_id, reason, score
      FROM reports WHERE report_id < ? ORDER BY report_id DESC LIMIT ?]], from, limit)
  else
    rows = self.conn:all([[SELECT report_id, received_ts, reporter, room_id, event_id, user_id, reason, score
      FROM reports ORDER BY report_id DESC LIMIT ?]], limit)
  end
  local out = {}
  for i, r in ipairs(rows) do
    out[i] = { report_id = r[1], received_ts = r[2], reporter = r[3], room_id = r[4], event_id = r[5],
      user_id = r[6], reason = r[7], score = r[8] }
  end
  return out
end

relations.methods = methods
return relations
