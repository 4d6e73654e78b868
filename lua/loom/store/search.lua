-- loom.store.search: the full-text index behind server-side search
-- (Client-Server API "Server Side Search"). One SQLite FTS5 table
-- (schema 14, event_search) holds the searchable key of each live timeline
-- event: content.body of m.room.message, content.name of m.room.name,
-- content.topic of m.room.topic. persist indexes an event in the
-- transaction that stores it (never an outlier, a backfilled, rejected or
-- soft-failed event); record_redaction takes it out again.
--
--   local words = store:search_words("Martians and men")   -- { "martians", "and", "men" }
--   local rows = store:search_events { words = words, room_nids = { 3, 7 }, order = "recent",
--                                      limit = 20, before = 1234 }      -- NIDs below 1234
--     -- { { event_nid, event_id, room_id, stream_ordering, rank }, ... }
--   local n = store:search_count { words = words, room_nids = { 3, 7 } }
--   store:room_history_visibilities(3)               -- { "joined", "shared" }
--
-- Search text comes from clients: it is never used as an FTS5 query
-- expression. It is split into words, each word becomes a quoted prefix
-- term ("word"*), and the terms are ANDed; FTS5 operators in the text
-- (AND, OR, NOT, NEAR, quotes, parentheses, column filters) are words or
-- separators like any other. Mixed into the store. A database failure
-- raises (loom.db.Error).
local sql = require "loom.store.sql"
local json = require("loom.core").json

local type, ipairs, table_concat, table_unpack = type, ipairs, table.concat, table.unpack
local string_gmatch, string_gsub, string_lower, string_find = string.gmatch, string.gsub, string.lower, string.find
local utf8_len, utf8_codes = utf8.len, utf8.codes

local _ENV = nil -- luacheck: ignore 211

local search = {}
local methods = {}

--- The searchable key of each event type: { [type] = key }.
search.KEYS = { ["m.room.message"] = "content.body", ["m.room.name"] = "content.name",
  ["m.room.topic"] = "content.topic" }
local FIELD = { ["content.body"] = "body", ["content.name"] = "name", ["content.topic"] = "topic" }

--- At most this many words of a search term are used; longer words than
-- MAX_WORD bytes are dropped (no indexed token is that long).
search.MAX_WORDS = 32
search.MAX_WORD = 200

-- Code points the tokenizer treats as separators, beyond ASCII: Latin-1
-- punctuation and symbols, general punctuation to dingbats and arrows, CJK
-- punctuation, variation selectors, emoji. A word made of these alone has
-- no token: as a query term it would match nothing.
local SEPARATORS = { { 0xA0, 0xBF }, { 0xD7, 0xD7 }, { 0xF7, 0xF7 }, { 0x2000, 0x2BFF }, { 0x3000, 0x303F },
  { 0xFE00, 0xFE0F }, { 0x1F000, 0x1FAFF } }

local function has_token(w)
  if string_find(w, "^[\1-\127]*$") then return true end   -- ASCII letters and digits
  if not utf8_len(w) then return true end                    -- not UTF-8: left to the tokenizer
  for _, cp in utf8_codes(w) do
    local sep = false
    for _, r in ipairs(SEPARATORS) do
      if cp >= r[1] and cp <= r[2] then sep = true; break end
    end
    if not sep then return true end
  end
  return false
end

--- The words of a client's search text (lower-cased ASCII; UTF-8 kept):
-- runs of bytes that are not ASCII space, punctuation or control
-- characters, leaving out those of only non-ASCII punctuation, symbols or
-- emoji. At most MAX_WORDS, each at most MAX_WORD bytes; duplicates
-- dropped. A non-string gives {}.
function methods.search_words(_, text)
  local out, seen = {}, {}
  if type(text) ~= "string" then return out end
  for w in string_gmatch(text, "[^%s%p%c]+") do
    if #w <= search.MAX_WORD and has_token(w) then
      w = string_lower(w)
      if not seen[w] then
        seen[w] = true
        out[#out + 1] = w
        if #out >= search.MAX_WORDS then break end
      end
    end
  end
  return out
end

-- The FTS5 expression for words: each a quoted prefix term, all required.
local function match_expression(words)
  local terms = {}
  for i, w in ipairs(words) do terms[i] = '"' .. string_gsub(w, '"', '""') .. '"*' end
  return table_concat(terms, " AND ")
end

--- Within the persisting transaction: index a live timeline event (NID
-- event_nid) when it has a searchable key holding a string. stored_before:
-- the event was stored already (an outlier joining the timeline), and may
-- have been redacted meanwhile. Returns true.
function methods:index_for_search(event_nid, event_id, ev, stored_before)
  local key = search.KEYS[ev.type]
  local content = ev.content
  if not key or type(content) ~= "table" then return true end
  local value = content[FIELD[key]]
  if type(value) ~= "string" or value == "" then return true end
  -- an outlier redacted before it joined the timeline stays out
  if stored_before and self.conn:value("SELECT 1 FROM redactions WHERE event_id = ? LIMIT 1", event_id) then
    return true
  end
  self.conn:run("INSERT OR REPLACE INTO event_search (rowid, key, value) VALUES (?, ?, ?)", event_nid, key, value)
  return true
end

--- Take an event out of the search index (it was redacted). Returns true.
function methods:unindex_for_search(event_id)
  self.conn:run("DELETE FROM event_search WHERE rowid = (SELECT event_nid FROM events WHERE event_id = ?)",
    event_id)
  return true
end

--- Is the event in the search index?
function methods:is_search_indexed(event_id)
  return self.conn:value([[SELECT 1 FROM event_search
    WHERE rowid = (SELECT event_nid FROM events WHERE event_id = ?)]], event_id) ~= nil
end

--- The history_visibility settings a room's timeline ever had: a sorted
-- list of the distinct content.history_visibility values of its
-- m.room.history_visibility events (strings only; {} when it never had
-- one). Cached until the room changes.
function methods:room_history_visibilities(room_nid)
  local hit = self:cache_get(room_nid, "search_hv")
  if hit then return hit end
  local tn = self:type_nid("m.room.history_visibility")
  local list = {}
  if tn then
    list = self.conn:column([[SELECT DISTINCT json_extract(json, '$.content.history_visibility') AS v
      FROM events WHERE room_nid = ? AND type_nid = ? AND state_key_nid = 1 AND ]] .. sql.TIMELINE .. [[
      AND json_type(json, '$.content.history_visibility') = 'text' ORDER BY v]], room_nid, tn)
  end
  self:cache_put(room_nid, "search_hv", list)
  return list
end

--- The rooms the user was ever joined to (by a non-outlier membership
-- event): { room_nid, ... } ascending.
function methods:rooms_ever_joined(user_id)
  return self.conn:column([[SELECT DISTINCT m.room_nid FROM room_memberships m
    JOIN events e ON e.event_nid = m.event_nid
    WHERE m.user_id = ? AND m.membership = 'join' AND e.outlier = 0 ORDER BY m.room_nid]], user_id)
end

local FILTER_COLS = { type = "e.type_nid", sender = "e.sender", url = "e.contains_url" }

-- The FROM/WHERE part of a search and its parameters, or nil when nothing
-- can match. q: words, room_nids, keys (default all), filter (a
-- loom.store.filter Filter: types, senders, contains_url), max_stream and
-- after_stream (stream positions in (after_stream, max_stream]), before
-- (event NID, exclusive), sender (one sender only).
local function where(self, q)
  local words, rooms = q.words, q.room_nids
  if not words or #words == 0 or not rooms or #rooms == 0 then return nil end
  local keys = q.keys or { "content.body", "content.name", "content.topic" }
  if #keys == 0 then return nil end
  local params = { match_expression(words) }
  local clauses = { "event_search MATCH ?" }
  clauses[#clauses + 1] = "s.key IN (" .. sql.marks(#keys) .. ")"
  for _, k in ipairs(keys) do params[#params + 1] = k end
  -- any number of rooms in one parameter
  clauses[#clauses + 1] = "e.room_nid IN (SELECT value FROM json_each(?))"
  params[#params + 1] = json.encode(json.array(rooms))
  if q.filter then
    local fsql, fparams = q.filter:build_sql(self:resolver(), FILTER_COLS)
    if fsql == false then return nil end
    if fsql then
      clauses[#clauses + 1] = fsql
      for _, p in ipairs(fparams) do params[#params + 1] = p end
    end
  end
  if q.sender then clauses[#clauses + 1] = "e.sender = ?"; params[#params + 1] = q.sender end
  if q.max_stream then clauses[#clauses + 1] = "e.stream_ordering <= ?"; params[#params + 1] = q.max_stream end
  if q.after_stream then
    clauses[#clauses + 1] = "e.stream_ordering > ?"; params[#params + 1] = q.after_stream
  end
  if q.before then clauses[#clauses + 1] = "s.rowid < ?"; params[#params + 1] = q.before end
  return " FROM event_search s JOIN events e ON e.event_nid = s.rowid WHERE "
    .. table_concat(clauses, " AND ") .. " AND e." .. sql.TIMELINE, params
end

--- Indexed events matching a search, best first: q as for search_count,
-- plus order ("rank": best match first, ties newest first; "recent":
-- newest first, by NID), limit and offset. Returns { { event_nid, event_id,
-- room_id, stream_ordering, rank }, ... } where rank is higher for a
-- closer match.
function methods:search_events(q)
  local body, params = where(self, q)
  if not body then return {} end
  -- recent: by NID, the order events were first stored (the stream order
  -- but for outliers that joined the timeline later); FTS5 walks its rowids
  -- backwards and stops at the limit
  local order = q.order == "recent" and " ORDER BY s.rowid DESC"
    or " ORDER BY s.rank, s.rowid DESC"
  params[#params + 1] = q.limit or 10
  params[#params + 1] = q.offset or 0
  local rows = self.conn:all("SELECT e.event_nid, e.event_id, e.room_nid, e.stream_ordering, -s.rank"
    .. body .. order .. " LIMIT ? OFFSET ?", table_unpack(params))
  local out = {}
  for i, r in ipairs(rows) do
    out[i] = { event_nid = r[1], event_id = r[2], room_id = self:room_id(r[3]), stream_ordering = r[4],
      rank = r[5] }
  end
  return out
end

--- How many indexed events match a search. q: words (from search_words),
-- room_nids (any number), keys, filter, sender, max_stream, after_stream,
-- before.
function methods:search_count(q)
  local body, params = where(self, q)
  if not body then return 0 end
  return self.conn:value("SELECT count(*)" .. body, table_unpack(params))
end

search.methods = methods
return search
