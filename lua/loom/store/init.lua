-- loom.store: the event store. Numeric IDs, persisting events into the DAG
-- (edges, forward and backward extremities), and the stream queries that
-- /sync, /messages and /context are built on.
--
--   local store = require "loom.store"
--   local s = assert(store.open { path = "var/loom.db" })
--   local r = assert(s:persist(event_id, event))          -- {event_nid, stream_ordering, ...}
--   local page = assert(s:paginate(room_id, nil, { dir = "b", limit = 20 }))
--
-- Methods live in loom.store.persist, stream, events, state, rooms,
-- directory, txns, user_filters, keys, lazy_members, account_data, to_device,
-- receipts and search; this file opens the store and keeps the NID maps and caches.
-- Every SQL statement of loom is in the store (and loom.db): callers ask
-- methods named for what they answer.
-- Bad input returns nil, message, code; a database failure raises a
-- loom.db.Error, never an empty result.
local db = require "loom.db"
local changecache = require "loom.store.changecache"
local accounts = require "loom.store.accounts"
local sql = require "loom.store.sql"

local setmetatable, pairs, type, error, pcall, ipairs = setmetatable, pairs, type, error, pcall, ipairs
local require, tostring = require, tostring

local _ENV = nil -- luacheck: ignore 211

local store = {}
local methods = {}
local mt = { __name = "loom.store.Store", __index = methods }

-- Condition selecting timeline events; it matches the partial indexes.
store.TIMELINE = sql.TIMELINE

-- New event types get NIDs from here up; lower ones are well-known.
local FIRST_DYNAMIC_TYPE_NID = 1000
local CHANGE_CACHE_SIZE = 100000
local PREFILL = 10000

-- Read what the store keeps in memory: event types, stream positions, the
-- change caches.
local function load(self)
  local conn = self.conn
  for _, row in ipairs(conn:all("SELECT type_nid, type FROM event_types")) do
    self.type_nids[row[2]] = row[1]
    self.type_names[row[1]] = row[2]
  end
  -- (a purged room's positions stay taken: stream_floors, schema 44)
  local maxs = conn:first([[SELECT
      max(coalesce(max(stream_ordering), 0), coalesce((SELECT pos FROM stream_floors WHERE stream = 'events'), 0)),
      min(coalesce(min(stream_ordering), 0), coalesce((SELECT pos FROM stream_floors WHERE stream = 'events_min'), 0))
    FROM events]])
  self.max_stream = maxs[1] > 0 and maxs[1] or 0       -- highest allocated
  self.min_stream = maxs[2] < 0 and maxs[2] or 0       -- lowest allocated (<= 0)
  self.current_stream = self.max_stream                -- highest committed
  self.room_changes = changecache.new(self.current_stream, CHANGE_CACHE_SIZE)
  self.member_changes = changecache.new(self.current_stream, CHANGE_CACHE_SIZE)
  self:prefill_caches()
end

--- Open a store over a new connection (config as loom.db.open), or over an
-- existing connection: store.open { conn = conn }. A database that cannot
-- be opened or read returns nil, message, code.
function store.open(config)
  local conn = config.conn
  if not conn then
    local err, code
    conn, err, code = db.open(config)
    if not conn then return nil, err, code end
  end
  local self = setmetatable({
    conn = conn,
    owns_conn = config.conn == nil,
    room_nids = {}, room_ids = {},          -- room_id <-> nid
    type_nids = {}, type_names = {},        -- type <-> nid
    state_key_nids = {},                    -- state_key -> nid
    room_max_depth = {},                    -- room nid -> max timeline depth
    room_backfill_depth = {},               -- room nid -> max depth of backfilled events
    pending = nil,                          -- NIDs assigned in the open transaction
    nid_version = 0,                        -- bumped whenever a NID map gains or loses an entry
    recent = {},                            -- room nid -> { [key] = result }
  }, mt)
  local ok, err = pcall(load, self)
  if not ok then
    if self.owns_conn then conn:close() end
    if not db.is_error(err) then error(err, 0) end
    return nil, err.message, err.code
  end
  return self
end

-- Warm the change caches from the most recent stream positions, so a sync
-- right after a restart need not query every room.
function methods:prefill_caches()
  local from = self.current_stream - PREFILL
  if from < 0 then from = 0 end
  local rooms = changecache.new(from, CHANGE_CACHE_SIZE)
  local members = changecache.new(from, CHANGE_CACHE_SIZE)
  for _, row in ipairs(self.conn:all([[
      SELECT r.room_id, e.stream_ordering FROM events e JOIN rooms r ON r.room_nid = e.room_nid
      WHERE e.stream_ordering > ? ORDER BY e.stream_ordering]], from)) do
    rooms:entity_changed(row[1], row[2])
  end
  for _, row in ipairs(self.conn:all([[
      SELECT user_id, stream_ordering FROM room_memberships
      WHERE stream_ordering > ? ORDER BY stream_ordering]], from)) do
    members:entity_changed(row[1], row[2])
  end
  self.room_changes, self.member_changes = rooms, members
end

function methods:close()
  if self.owns_conn then self.conn:close() end
end
mt.__close = methods.close

--- Run fn(...) in one transaction (a savepoint inside an open one), with
-- loom.db's contract: rolled back when fn raises or returns nil first.
function methods:transaction(fn, ...)
  return self.conn:transaction(fn, ...)
end

--- Start the database's housekeeping (loom.db.housekeeping: passive WAL
-- checkpoints on a timer, the collector's mode) while a server serves;
-- returns the handle whose :stop() ends it.
function methods:start_housekeeping(opts)
  return require("loom.db.housekeeping").start(self.conn, opts)
end

--- True while the caller runs inside a transaction of its own (whatever it
-- writes now shares that transaction's outcome).
function methods:inside_transaction()
  return self.conn:inside_transaction()
end

--- Time every database statement: wrap(f, ...) runs a statement and must
-- return f(...)'s results (the server's metrics measure with it); nil stops.
function methods:time_statements(wrap)
  self.conn.time_statement = wrap
end

--- Run fn() once the outermost open transaction has committed (at once
-- when none is open); what a transaction wrote is published from here.
function methods:after_commit(fn)
  return self.conn:after_commit(fn)
end

--- The accounts (loom.store.accounts) kept in this store's database.
-- opts: server_name, iterations.
function methods:accounts(opts)
  return accounts.new(self.conn, opts)
end

--- The schema version: the highest migration applied.
function methods:schema_version()
  return self.conn:value("SELECT max(version) FROM schema_version")
end

---------------------------------------------------------------------------
-- Numeric IDs. A NID assigned inside a transaction that is rolled back is
-- forgotten again (persist registers the rollback hook; self.pending lists
-- the NIDs assigned by the batch in progress).

local function remember(self, map, key, value)
  map[key] = value
  self.nid_version = self.nid_version + 1
  local p = self.pending
  if p then p[#p + 1] = { map, key } end
end

--- The NID of a room, or nil when the store has never seen it.
function methods:room_nid(room_id)
  local nid = self.room_nids[room_id]
  if nid then return nid end
  nid = self.conn:value("SELECT room_nid FROM rooms WHERE room_id = ?", room_id)
  if nid then
    self.room_nids[room_id] = nid
    self.room_ids[nid] = room_id
    self.nid_version = self.nid_version + 1
  end
  return nid
end

--- The room ID of a room NID.
function methods:room_id(nid)
  local id = self.room_ids[nid]
  if id then return id end
  id = self.conn:value("SELECT room_id FROM rooms WHERE room_nid = ?", nid)
  if id then self.room_ids[nid] = id; self.room_nids[id] = nid end
  return id
end

--- The IDs of every room the store knows, oldest first. Raises when the
-- database cannot be read.
function methods:all_room_ids()
  local ids, err = self.conn:column("SELECT room_id FROM rooms ORDER BY room_nid")
  if not ids then error("cannot list rooms: " .. tostring(err), 2) end
  return ids
end

-- Within a transaction: the room's NID, created on first sight.
function methods:ensure_room_nid(room_id, room_version)
  local nid = self:room_nid(room_id)
  if nid then return nid end
  local ok, err, code = self.conn:run("INSERT INTO rooms (room_id, room_version) VALUES (?, ?)",
    room_id, room_version)
  if not ok then return nil, err, code end
  nid = self.conn:last_insert_rowid()
  remember(self, self.room_nids, room_id, nid)
  remember(self, self.room_ids, nid, room_id)
  return nid
end

--- The NID of an event type, or nil when no event of that type was stored.
function methods:type_nid(t) return self.type_nids[t] end

--- The event type of a type NID.
function methods:type_name(nid) return self.type_names[nid] end

--- Every known event type: { [type] = nid } (do not modify).
function methods:all_types() return self.type_nids end

function methods:ensure_type_nid(t)
  local nid = self.type_nids[t]
  if nid then return nid end
  local ok, err, code = self.conn:run([[
    INSERT INTO event_types (type_nid, type)
    VALUES ((SELECT max(?, coalesce(max(type_nid), 0) + 1) FROM event_types), ?)]],
    FIRST_DYNAMIC_TYPE_NID, t)
  if not ok then return nil, err, code end
  nid = self.conn:last_insert_rowid()
  remember(self, self.type_nids, t, nid)
  remember(self, self.type_names, nid, t)
  return nid
end

function methods:state_key_nid(sk)
  local nid = self.state_key_nids[sk]
  if nid then return nid end
  nid = self.conn:value("SELECT state_key_nid FROM state_keys WHERE state_key = ?", sk)
  if nid then self.state_key_nids[sk] = nid end
  return nid
end

function methods:ensure_state_key_nid(sk)
  local nid = self:state_key_nid(sk)
  if nid then return nid end
  local ok, err, code = self.conn:run("INSERT INTO state_keys (state_key) VALUES (?)", sk)
  if not ok then return nil, err, code end
  nid = self.conn:last_insert_rowid()
  remember(self, self.state_key_nids, sk, nid)
  return nid
end

-- Resolver handed to filters for turning names into NIDs.
function methods:resolver()
  local r = self._resolver
  if not r then
    r = {
      types = function() return self.type_nids end,
      room_nid = function(room_id) return self:room_nid(room_id) end,
      version = function() return self.nid_version end,
    }
    self._resolver = r
  end
  return r
end

---------------------------------------------------------------------------
-- Per-room caches of recent-event queries, dropped whenever the room changes.

local COUNT = {}   -- the key under which a room's cache counts its entries

function methods:cache_get(room_nid, key)
  local c = self.recent[room_nid]
  return c and c[key]
end

function methods:cache_put(room_nid, key, value)
  local c = self.recent[room_nid]
  if not c then c = { [COUNT] = 0 }; self.recent[room_nid] = c end
  if c[key] == nil then c[COUNT] = c[COUNT] + 1 end
  c[key] = value
end

--- How many results are kept for the room (nil: none).
function methods:cache_count(room_nid)
  local c = self.recent[room_nid]
  return c and c[COUNT]
end

function methods:cache_drop(room_nid)
  self.recent[room_nid] = nil
end

store.methods = methods
store.mt = mt

-- Mix in the method groups.
for _, part in ipairs { "loom.store.persist", "loom.store.stream", "loom.store.events", "loom.store.state",
    "loom.store.rooms", "loom.store.directory", "loom.store.txns", "loom.store.user_filters",
    "loom.store.keys", "loom.store.lazy_members", "loom.store.account_data", "loom.store.to_device",
    "loom.store.receipts", "loom.store.search", "loom.store.dag", "loom.store.federation", "loom.store.presence",
    "loom.store.devices", "loom.store.room_keys", "loom.store.cross_signing",
    "loom.store.push_rules", "loom.store.push_actions",
    "loom.store.remote_devices", "loom.store.relations", "loom.store.user_directory", "loom.store.admin",
    "loom.store.media", "loom.store.appservices", "loom.store.pushers" } do
  for k, v in pairs(require(part).methods) do
    if type(v) == "function" then
      -- one name, one answer: a group may not replace another's method
      if methods[k] then error("loom.store: method " .. k .. " of " .. part .. " is defined twice") end
      methods[k] = v
    end
  end
end

return store
