-- loom.store.events: reading stored events back as Lua tables.
--
-- The store keeps each event's JSON as given (loom stores the PDU form: for
-- room versions 3 and later that has no event_id). Loaded events are decoded
-- tables with `event_id` set, and come with their metadata:
--   { event_nid, room_id, depth, stream_ordering, outlier, rejected,
--     soft_failed }
-- Decoded events are cached (bounded); callers must not modify them.
local core = require "loom.core"
local db = require "loom.db"
local sql = require "loom.store.sql"

local json = core.json
local ipairs, type, tostring, table_unpack = ipairs, type, tostring, table.unpack

local _ENV = nil -- luacheck: ignore 211

local events = {}
local methods = {}

local CACHE_MAX = 4000  -- decoded events (~1.7 KB each): a bigger live heap lengthens every GC cycle
local COLS = "event_nid, event_id, room_nid, depth, stream_ordering, outlier, rejected, soft_failed, json"

local function cache(self)
  local c = self._event_cache
  if not c then
    c = { by_nid = {}, by_id = {}, n = 0 }
    self._event_cache = c
  end
  return c
end

local function remember(self, nid, ev, meta)
  local c = cache(self)
  if c.n >= CACHE_MAX then c.by_nid, c.by_id, c.n = {}, {}, 0 end
  if not c.by_nid[nid] then c.n = c.n + 1 end
  c.by_nid[nid] = { ev, meta }
  c.by_id[ev.event_id] = nid
end

--- Drop an event from the cache (after its stored JSON changed).
function methods:forget_event(nid)
  local c = self._event_cache
  if c and c.by_nid[nid] then c.by_nid[nid] = nil; c.n = c.n - 1 end
end

-- A stored event that does not decode is damaged storage: it raises, like
-- any other failed read.
local function decode_row(self, r)
  local ev, err = json.decode(r[9])
  if not ev then db.raise("stored event " .. r[2] .. " does not decode: " .. tostring(err), "bad_stored_event") end
  ev.event_id = r[2]
  local meta = {
    event_nid = r[1], room_id = self:room_id(r[3]), depth = r[4], stream_ordering = r[5],
    outlier = r[6] == 1, rejected = r[7] == 1, soft_failed = r[8] == 1,
  }
  remember(self, r[1], ev, meta)
  return ev, meta
end

--- An event by ID: event, meta — or nil, message, "not_found".
function methods:event(event_id)
  local c = self._event_cache
  local known = c and c.by_id[event_id]
  local hit = known and c.by_nid[known]
  if hit and hit[1].event_id == event_id then return hit[1], hit[2] end
  local row = self.conn:first("SELECT " .. COLS .. " FROM events WHERE event_id = ?", event_id)
  if not row then return nil, "event " .. tostring(event_id) .. " not found", "not_found" end
  hit = cache(self).by_nid[row[1]]
  if hit then return hit[1], hit[2] end
  return decode_row(self, row)
end

--- An event by NID: event, meta — or nil, message, "not_found".
function methods:event_by_nid(nid)
  local hit = cache(self).by_nid[nid]
  if hit then return hit[1], hit[2] end
  local row = self.conn:first("SELECT " .. COLS .. " FROM events WHERE event_nid = ?", nid)
  if not row then return nil, "event NID " .. tostring(nid) .. " not found", "not_found" end
  return decode_row(self, row)
end

local function fetch_batch(self, column, keys, out, key_of)
  for marks, chunk in sql.chunks(keys) do
    local rows = self.conn:all("SELECT " .. COLS .. " FROM events WHERE " .. column .. " IN (" .. marks .. ")",
      table_unpack(chunk))
    for _, r in ipairs(rows) do
      local ev, meta = decode_row(self, r)
      out[key_of(r)] = { ev, meta }
    end
  end
  return out
end

--- Many events by NID in few queries: { [nid] = {event, meta} } (unknown
-- NIDs are absent).
function methods:events_by_nid(nids)
  local out, missing = {}, {}
  local by_nid = cache(self).by_nid
  for _, nid in ipairs(nids) do
    local hit = by_nid[nid]
    if hit then out[nid] = hit elseif type(nid) == "number" then missing[#missing + 1] = nid end
  end
  if #missing == 0 then return out end
  return fetch_batch(self, "event_nid", missing, out, function(r) return r[1] end)
end

--- Many events by ID: { [event_id] = {event, meta} } (unknown IDs absent).
function methods:events(event_ids)
  return fetch_batch(self, "event_id", event_ids, {}, function(r) return r[2] end)
end

--- The room version a room was created with (as stored with its events).
function methods:room_version(room_id)
  return self.conn:value("SELECT room_version FROM rooms WHERE room_id = ?", room_id)
end

events.methods = methods
return events
