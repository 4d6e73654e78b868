-- loom.store.push_actions: the notifications push-rule evaluation produced
-- (schemas 33 and 38), the unread counts /sync reports from them and the
-- list GET /notifications pages through.
--
--   store:add_push_actions(room_id, stream_ordering, event_id, { { user_id, highlight, actions }, ... })
--   local counts = store:unread_counts(user_id)  -- { [room_id] = { notifications, highlights } }
--   local per = store:unread_thread_counts(user_id)
--     -- { [room_id] = { main = { n, h } | nil, threads = { [root_id] = { n, h } } } }
--   local list = store:notifications(user_id, { from = so, limit = 20, highlight = true })
--
-- Each row belongs to a thread: the root's event ID when the event's
-- m.relates_to has rel_type m.thread, else "main". A row is read when its
-- stream ordering is at or before the user's latest unthreaded m.read or
-- m.read.private receipt in the room, or their latest receipt for the row's
-- thread (Client-Server API, "Threaded read receipts"). Mixed into the store.
-- A database failure raises.
local core = require "loom.core"

local ipairs, type, pcall, setmetatable = ipairs, type, pcall, setmetatable
local concat, unpack = table.concat, table.unpack
local json = core.json

local push_actions = {}
local methods = {}
local _ENV = nil -- luacheck: ignore 211

-- The thread an event belongs to (for its notifications).
local function thread_of(ev)
  local rel = type(ev) == "table" and type(ev.content) == "table" and ev.content["m.relates_to"]
  if type(rel) == "table" and rel.rel_type == "m.thread" and type(rel.event_id) == "string" then
    return rel.event_id
  end
  return "main"
end
push_actions.thread_of = thread_of

local DEFAULT_ACTIONS = '["notify"]'
local HIGHLIGHT_ACTIONS = '["notify",{"set_tweak":"highlight"}]'

-- Rows go in CHUNK at a time through one cached multi-row statement (plus
-- one for the rest): ?1..?5 are the room, stream ordering, event, thread and
-- time shared by every row.
local CHUNK = 200
local PER_ROW = 3

local function insert_sql(n)
  local values = {}
  for i = 1, n do
    local b = 5 + PER_ROW * (i - 1)
    values[i] = ("(?%d, ?1, ?2, ?3, ?%d, ?%d, ?4, ?5)"):format(b + 1, b + 2, b + 3)
  end
  return "INSERT OR REPLACE INTO event_push_actions"
    .. " (user_id, room_id, stream_ordering, event_id, highlight, actions, thread_id, ts) VALUES "
    .. concat(values, ", ")
end

local sql_of = setmetatable({}, { __index = function(t, n) local s = insert_sql(n) t[n] = s return s end })

-- The JSON text of a row's actions (the rule's actions, shared by the rows
-- of one rule: encoded once per call through `cache`).
local function actions_text(r, cache)
  local a = r[3]
  if type(a) ~= "table" then return r[2] and HIGHLIGHT_ACTIONS or DEFAULT_ACTIONS end
  local text = cache[a]
  if not text then
    local copy = json.array {}
    for i, v in ipairs(a) do copy[i] = v end
    local ok, enc = pcall(json.encode, copy)
    text = ok and enc or (r[2] and HIGHLIGHT_ACTIONS or DEFAULT_ACTIONS)
    cache[a] = text
  end
  return text
end

--- Record an event's notifications: rows = { { user_id, highlight (bool),
-- actions (the push rule's actions; optional) }, ... }. The thread comes
-- from the stored event. One transaction.
function methods:add_push_actions(room_id, stream_ordering, event_id, rows)
  local conn, total = self.conn, #rows
  if total == 0 then return end
  local thread = thread_of(self:event(event_id))
  local ts = core.now_ms()
  local cache = {}
  conn:transaction(function()
    local args = { room_id, stream_ordering, event_id, thread, ts }
    for first = 1, total, CHUNK do
      local n = total - first + 1
      if n > CHUNK then n = CHUNK end
      for i = 1, n do
        local r = rows[first + i - 1]
        local b = 5 + PER_ROW * (i - 1)
        args[b + 1], args[b + 2], args[b + 3] = r[1], r[2] and 1 or 0, actions_text(r, cache)
      end
      conn:run(sql_of[n], unpack(args, 1, 5 + PER_ROW * n))
    end
  end)
end

-- The condition "row a is unread": after the user's unthreaded receipt in
-- the room and after their receipt for a's thread.
local UNREAD = [[a.stream_ordering > max(
    coalesce((SELECT max(r.event_stream) FROM receipts r WHERE r.room_id = a.room_id AND r.user_id = a.user_id
      AND r.receipt_type IN ('m.read', 'm.read.private') AND r.thread_id = ''), 0),
    coalesce((SELECT max(r.event_stream) FROM receipts r WHERE r.room_id = a.room_id AND r.user_id = a.user_id
      AND r.receipt_type IN ('m.read', 'm.read.private') AND r.thread_id = a.thread_id), 0))]]

--- A user's unread notification and highlight counts per room and thread:
-- { [room_id] = { main = { n, h } (absent when none), threads = { [root] = { n, h } } } }
-- (rooms with none are absent). One query.
function methods:unread_thread_counts(user_id)
  local out = {}
  for _, row in ipairs(self.conn:all([[
      SELECT a.room_id, a.thread_id, count(*), sum(a.highlight) FROM event_push_actions a
      WHERE a.user_id = ? AND ]] .. UNREAD .. [[
      GROUP BY a.room_id, a.thread_id]], user_id)) do
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
  for _, row in ipairs(self.conn:all([[
      SELECT a.room_id, count(*), sum(a.highlight) FROM event_push_actions a
      WHERE a.user_id = ? AND ]] .. UNREAD .. [[
      GROUP BY a.room_id]], user_id)) do
    out[row[1]] = { row[2], row[3] }
  end
  return out
end

--- A user's notifications, newest first: opts = { from (a stream ordering:
-- only older ones), limit, highlight (only highlights) }. Returns
-- { { room_id, stream_ordering, event_id, highlight (bool), actions (table),
-- ts, read (bool) }, ... }.
function methods:notifications(user_id, opts)
  local out = {}
  local rows = self.conn:all([[
      SELECT a.room_id, a.stream_ordering, a.event_id, a.highlight, a.actions, a.ts, NOT (]] .. UNREAD .. [[)
      FROM event_push_actions a
      WHERE a.user_id = ? AND a.stream_ordering < ? AND a.highlight >= ?
      ORDER BY a.stream_ordering DESC LIMIT ?]], user_id, opts.from or (1 << 62), opts.highlight and 1 or 0,
    opts.limit or 50)
  for _, row in ipairs(rows) do
    local actions = row[5] and json.decode(row[5])
    if type(actions) ~= "table" then actions = json.decode(row[4] == 1 and HIGHLIGHT_ACTIONS or DEFAULT_ACTIONS) end
    out[#out + 1] = { room_id = row[1], stream_ordering = row[2], event_id = row[3], highlight = row[4] == 1,
      actions = actions, ts = row[6], read = row[7] == 1 }
  end
  return out
end

push_actions.methods = methods
return push_actions
