-- loom.store.push_actions: the notifications push-rule evaluation produced
-- (schema 51), the unread counts /sync reports from them and the list
-- GET /notifications pages through.
--
--   store:add_push_actions(room_id, stream_ordering, event_id, { { user_id, highlight, actions }, ... })
--   local counts = store:unread_counts(user_id)  -- { [room_id] = { notifications, highlights } }
--   local per = store:unread_thread_counts(user_id)
--     -- { [room_id] = { main = { n, h } | nil, threads = { [root_id] = { n, h } } } }
--   local list, next_from = store:notifications(user_id, { from = so, limit = 20, highlight = true })
--   store:recount_unread(room_id, user_id)        -- after a read receipt (loom.store.receipts does)
--   local rows = store:notifications_after(user_id, stream_ordering, since_ts, limit)
--
-- Each row belongs to the event's thread (store:event_thread): the root's
-- event ID, or "main". A row is read when its
-- stream ordering is at or before the user's latest unthreaded m.read or
-- m.read.private receipt in the room, or their latest receipt for the row's
-- thread (Client-Server API, "Threaded read receipts"). The unread counts
-- are kept per room, thread and user (push_counts): a message adds one to
-- each notified user's, a read receipt recounts the user's rows of the room
-- from the oldest unread one. Mixed into the store. A database failure
-- raises.
local core = require "loom.core"

local ipairs, type, pcall, setmetatable = ipairs, type, pcall, setmetatable
local concat, unpack, sort = table.concat, table.unpack, table.sort
local json = core.json

local push_actions = {}
local methods = {}
local _ENV = nil -- luacheck: ignore 211

local DEFAULT_ACTIONS = '["notify"]'
local HIGHLIGHT_ACTIONS = '["notify",{"set_tweak":"highlight"}]'

-- Rows go in CHUNK at a time through one cached multi-row statement (plus
-- one for the rest): ?1 is the stream ordering shared by every row.
local CHUNK = 500
local PER_ROW = 3

local function insert_sql(n)
  local values = {}
  for i = 1, n do
    local b = 1 + PER_ROW * (i - 1)
    values[i] = ("(?1, ?%d, ?%d, ?%d)"):format(b + 1, b + 2, b + 3)
  end
  return "INSERT INTO push_notifs (stream_ordering, user_id, highlight, actions_id) VALUES "
    .. concat(values, ", ")
end

local sql_of = setmetatable({}, { __index = function(t, n) local s = insert_sql(n) t[n] = s return s end })

-- The ID of a row's actions text (the rule's actions, shared by the rows of
-- one rule: looked up once per call through `cache`), or false for the
-- default actions.
local function actions_id(conn, r, cache)
  local a = r[3]
  if type(a) ~= "table" then return false end
  local id = cache[a]
  if id == nil then
    local copy = json.array {}
    for i, v in ipairs(a) do copy[i] = v end
    local ok, text = pcall(json.encode, copy)
    if not ok then
      id = false
    else
      id = cache[text]
      if id == nil then
        conn:run("INSERT INTO push_action_texts (actions) VALUES (?) ON CONFLICT (actions) DO NOTHING", text)
        id = conn:value("SELECT id FROM push_action_texts WHERE actions = ?", text)
        cache[text] = id
      end
    end
    cache[a] = id
  end
  return id
end

-- Each notified user's counts for the event's room and thread: one more
-- (and one more highlight), the event the oldest unread when there was none.
local COUNT_SQL = [[
  INSERT INTO push_counts (room_id, thread_id, user_id, notifications, highlights, first_unread)
    SELECT ?1, ?2, user_id, 1, highlight, ?3 FROM push_notifs WHERE stream_ordering = ?3
    ON CONFLICT (room_id, thread_id, user_id) DO UPDATE SET
      first_unread = CASE WHEN notifications = 0 THEN excluded.first_unread ELSE first_unread END,
      notifications = notifications + 1, highlights = highlights + excluded.highlights]]

--- Record an event's notifications: rows = { { user_id, highlight (bool),
-- actions (the push rule's actions; optional) }, ... }. The thread comes
-- from the stored event. One transaction; an event already recorded is
-- left as it is.
function methods:add_push_actions(room_id, stream_ordering, event_id, rows)
  local conn, total = self.conn, #rows
  if total == 0 then return end
  local thread = self:event_thread(self:event(event_id))
  local ts = core.now_ms()
  local cache = {}
  conn:transaction(function()
    if conn:value("SELECT 1 FROM push_events WHERE stream_ordering = ?", stream_ordering) then return end
    conn:run("INSERT INTO push_events (stream_ordering, room_id, event_id, thread_id, ts) VALUES (?, ?, ?, ?, ?)",
      stream_ordering, room_id, event_id, thread, ts)
    local args, seen, n = { stream_ordering }, {}, 0
    -- one row per user (a repeated user keeps its first row)
    local function flush()
      if n > 0 then conn:run(sql_of[n], unpack(args, 1, 1 + PER_ROW * n)) end
      n = 0
    end
    for i = 1, total do
      local r = rows[i]
      local user = r[1]
      if type(user) == "string" and not seen[user] then
        seen[user] = true
        local b = 1 + PER_ROW * n
        local id = actions_id(conn, r, cache)
        args[b + 1], args[b + 2], args[b + 3] = user, r[2] and 1 or 0, id or nil
        n = n + 1
        if n == CHUNK then flush() end
      end
    end
    flush()
    conn:run(COUNT_SQL, room_id, thread, stream_ordering)
  end)
end

-- The condition "the row of event e for user ?1 is unread": after the
-- user's unthreaded receipt in the room and after their receipt for e's
-- thread.
local UNREAD = [[e.stream_ordering > max(
    coalesce((SELECT max(r.event_stream) FROM receipts r WHERE r.room_id = e.room_id AND r.user_id = ?1
      AND r.receipt_type IN ('m.read', 'm.read.private') AND r.thread_id = ''), 0),
    coalesce((SELECT max(r.event_stream) FROM receipts r WHERE r.room_id = e.room_id AND r.user_id = ?1
      AND r.receipt_type IN ('m.read', 'm.read.private') AND r.thread_id = e.thread_id), 0))]]

--- Count again the user's unread rows of the room (after a read receipt):
-- only the rows from the oldest unread one on are read.
function methods:recount_unread(room_id, user_id)
  local conn = self.conn
  local first = conn:value([[SELECT min(first_unread) FROM push_counts
    WHERE user_id = ? AND room_id = ? AND notifications > 0]], user_id, room_id)
  if not first then return end
  conn:run([[UPDATE push_counts SET notifications = 0, highlights = 0
    WHERE user_id = ? AND room_id = ? AND notifications > 0]], user_id, room_id)
  conn:run([[
    INSERT INTO push_counts (room_id, thread_id, user_id, notifications, highlights, first_unread)
      SELECT e.room_id, e.thread_id, ?1, count(*), sum(n.highlight), min(e.stream_ordering)
      FROM push_events e JOIN push_notifs n ON n.stream_ordering = e.stream_ordering AND n.user_id = ?1
      WHERE e.room_id = ?2 AND e.stream_ordering >= ?3 AND ]] .. UNREAD .. [[
      GROUP BY e.thread_id
      ON CONFLICT (room_id, thread_id, user_id) DO UPDATE SET notifications = excluded.notifications,
        highlights = excluded.highlights, first_unread = excluded.first_unread]], user_id, room_id, first)
end

--- A user's unread notification and highlight counts per room and thread:
-- { [room_id] = { main = { n, h } (absent when none), threads = { [root] = { n, h } } } }
-- (rooms with none are absent). One query.
function methods:unread_thread_counts(user_id)
  local out = {}
  for _, row in ipairs(self.conn:all([[SELECT room_id, thread_id, notifications, highlights FROM push_counts
      WHERE user_id = ? AND notifications > 0]], user_id)) do
    local room = out[row[1]]
    if not room then room = { threads = {} }; out[row[1]] = room end
    if row[2] == "main" then room.main = { row[3], row[4] } else room.threads[row[2]] = { row[3], row[4] } end
  end
  return out
end

--- A user's unread notification and highlight counts per room, all threads
-- together (rooms with none are absent): { [room_id] = { notifications, highlights } }.
function methods:unread_counts(user_id)
  local out = {}
  for _, row in ipairs(self.conn:all([[SELECT room_id, sum(notifications), sum(highlights) FROM push_counts
      WHERE user_id = ? AND notifications > 0 GROUP BY room_id]], user_id)) do
    out[row[1]] = { row[2], row[3] }
  end
  return out
end

-- /notifications reads at most SCAN notifying events of each room per page.
local SCAN = 2000

--- A user's notifications, newest first: opts = { from (a stream ordering:
-- only older ones), limit, highlight (only highlights), scan (events read per
-- room; default 2000) }. Returns { { room_id, stream_ordering, event_id,
-- highlight (bool), actions (table), ts, read (bool) }, ... } and, when a
-- room had more notifying events than it read, the stream ordering the next
-- page starts before (the list holds every row at or after it).
function methods:notifications(user_id, opts)
  local conn = self.conn
  local from, limit, scan = opts.from or (1 << 62), opts.limit or 50, opts.scan or SCAN
  local rows, boundary = {}, nil
  for _, room_id in ipairs(conn:column("SELECT DISTINCT room_id FROM push_counts WHERE user_id = ?", user_id)) do
    -- the room's oldest event read, when there are older ones
    local last = conn:value([[SELECT stream_ordering FROM push_events WHERE room_id = ? AND stream_ordering < ?
      ORDER BY stream_ordering DESC LIMIT 1 OFFSET ?]], room_id, from, scan - 1)
    if last and conn:value("SELECT 1 FROM push_events WHERE room_id = ? AND stream_ordering < ? LIMIT 1",
        room_id, last) then
      if not boundary or last > boundary then boundary = last end
    end
    for _, row in ipairs(conn:all([[
        SELECT e.room_id, e.stream_ordering, e.event_id, n.highlight, t.actions, e.ts, NOT (]] .. UNREAD .. [[)
        FROM (SELECT * FROM push_events WHERE room_id = ?2 AND stream_ordering < ?3
          ORDER BY stream_ordering DESC LIMIT ?4) e
        JOIN push_notifs n ON n.stream_ordering = e.stream_ordering AND n.user_id = ?1
        LEFT JOIN push_action_texts t ON t.id = n.actions_id
        WHERE n.highlight >= ?5
        ORDER BY e.stream_ordering DESC LIMIT ?6]], user_id, room_id, from, scan, opts.highlight and 1 or 0,
        limit)) do
      rows[#rows + 1] = row
    end
  end
  sort(rows, function(a, b) return a[2] > b[2] end)
  local out = {}
  for _, row in ipairs(rows) do
    if #out >= limit or (boundary and row[2] < boundary) then break end
    local actions = row[5] and json.decode(row[5])
    if type(actions) ~= "table" then actions = json.decode(row[4] == 1 and HIGHLIGHT_ACTIONS or DEFAULT_ACTIONS) end
    out[#out + 1] = { room_id = row[1], stream_ordering = row[2], event_id = row[3], highlight = row[4] == 1,
      actions = actions, ts = row[6], read = row[7] == 1 }
  end
  return out, #out < limit and boundary or nil
end

--- A user's notifications after stream ordering `after`, oldest first, made
-- at or after since_ts (ms), at most limit: { { room_id, stream_ordering,
-- event_id, highlight, actions }, ... } (a pusher's resumed queue).
function methods:notifications_after(user_id, after, since_ts, limit)
  local out = {}
  for _, row in ipairs(self.conn:all([[
      SELECT e.room_id, e.stream_ordering, e.event_id, n.highlight, t.actions
      FROM push_events e JOIN push_notifs n ON n.stream_ordering = e.stream_ordering AND n.user_id = ?1
      LEFT JOIN push_action_texts t ON t.id = n.actions_id
      WHERE e.stream_ordering > ?2 AND e.ts >= ?3
      ORDER BY e.stream_ordering LIMIT ?4]], user_id, after, since_ts, limit)) do
    local actions = row[5] and json.decode(row[5])
    if type(actions) ~= "table" then actions = json.decode(row[4] == 1 and HIGHLIGHT_ACTIONS or DEFAULT_ACTIONS) end
    out[#out + 1] = { room_id = row[1], stream_ordering = row[2], event_id = row[3], highlight = row[4] == 1,
      actions = actions }
  end
  return out
end

push_actions.methods = methods
return push_actions
