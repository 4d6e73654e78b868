-- loom.store.state: the state of rooms on disk. A snapshot NID names the
-- state at an event (0 is the empty state); the state itself is a loom.State
-- (csrc/state.c): sorted (type NID, state key NID, event NID) triples.
--
--   local state = require "loom.store.state"
--   local after = assert(state.snapshot_for(s, before, { { type_nid, sk_nid, event_nid } }))
--   assert(state.set_event_state(s, event_nid, before, after))
--   assert(state.set_current(s, room_nid, after))
--   local st = assert(state.load(s, after))       -- st:get(type_nid, sk_nid) -> event NID
--
-- Every function takes the store (s.conn is its loom.db connection); the
-- same functions are in `methods` for mixing into the store. Writes run in
-- the caller's transaction (a savepoint) or their own. Expected failures
-- return nil, message, code; misuse raises. See docs/state.md.
--
-- Storage (migrations/sqlite/002_state.sql). A snapshot is a list of up to 64
-- blocks merged in order (later blocks override earlier ones; event NID 0
-- removes) plus up to 63 deltas on top. Snapshots live in segments of 64
-- consecutive NIDs: a snapshot that differs from its parent by a small delta
-- is appended to the parent's segment (a few bytes) and shares every block.
-- When the deltas reach 63, the changes since the blocks become one more
-- block; when the block list is full (or overridden entries outweigh the
-- state) the state is cut into content-defined chunks (st:chunks()), so the
-- same state always gives the same blocks. Blocks are found again by a hash
-- of their bytes, snapshots by a hash of their content.
local core = require "loom.core"
local sql_mod = require "loom.store.sql"

local cstate = core.state
local blob = core.sqlite.blob
local error, getmetatable, setmetatable, ipairs, type, pcall = error, getmetatable, setmetatable, ipairs, type, pcall
local math_type, table_concat, table_unpack, string_format = math.type, table.concat, table.unpack, string.format
local tostring = tostring

local _ENV = nil -- luacheck: ignore 211

local state_mod = {}
local methods = {}

local SLOT_BITS = 6
local SLOTS = 1 << SLOT_BITS            -- snapshots per segment
local CHAIN_MAX = SLOTS - 1             -- deltas on top of a block list
local INLINE_MAX = 32                   -- a larger change becomes a block at once
local MAX_BLOCKS = cstate.MAX_BLOCKS
local MAX_HASH_BITS = 28
local MAX_SEGMENT = 1 << 56
local CACHE_ENTRIES = 1 << 20           -- triples kept in the snapshot cache
local CURRENT_ENTRIES = 1 << 20         -- triples kept in the current-state cache
local BATCH_ROWS = 16                   -- larger current-state changes go in one statement

local EMPTY = cstate.new {}
local STATE_MT = getmetatable(EMPTY)

state_mod.EMPTY = EMPTY
state_mod.SLOTS = SLOTS
-- A hash bucket with more entries than this doubles the buckets.
state_mod.BUCKET_MAX = 128

local function is_state(x) return getmetatable(x) == STATE_MT end
state_mod.is_state = is_state

---------------------------------------------------------------------------
-- Failures. Inside this module a database failure raises a Fail, which the
-- public functions turn into nil, message, code; anything else raised is a
-- bug or misuse and goes on up.

local Fail = {}

local function raise(msg, code) error(setmetatable({ msg = msg, code = code }, Fail), 0) end

local function must(v, err, code)
  if v == nil then raise(tostring(err), code or "db_error") end
  return v
end

-- conn:value returns nil both for "no row" and for a failure.
local function value(conn, sql, ...)
  local v, err, code = conn:value(sql, ...)
  if v == nil and err then raise(err, code) end
  return v
end

local function unpack_fail(ok, a, ...)
  if ok then return a, ... end
  if getmetatable(a) == Fail then return nil, a.msg, a.code end
  error(a, 0)
end

---------------------------------------------------------------------------
-- Caches: a bounded LRU of loaded snapshots (by NID) and one of current
-- states (by room NID), weighed in triples.

local function lru_new(limit) return { map = {}, weight = 0, limit = limit } end

local function lru_unlink(c, e)
  if e.prev then e.prev.next = e.next else c.head = e.next end
  if e.next then e.next.prev = e.prev else c.tail = e.prev end
  e.prev, e.next = nil, nil
end

local function lru_front(c, e)
  e.next = c.head
  if c.head then c.head.prev = e end
  c.head = e
  if not c.tail then c.tail = e end
end

local function lru_get(c, key)
  local e = c.map[key]
  if e and c.head ~= e then lru_unlink(c, e); lru_front(c, e) end
  return e
end

local function lru_put(c, key, e)
  local old = c.map[key]
  if old then lru_unlink(c, old); c.weight = c.weight - old.weight end
  e.weight = #e.state + 1
  c.map[key] = e
  lru_front(c, e)
  c.weight = c.weight + e.weight
  while c.weight > c.limit and c.tail ~= e do
    local t = c.tail
    lru_unlink(c, t)
    c.map[t.key] = nil
    c.weight = c.weight - t.weight
  end
end

-- Per-store state, created on first use.
local function ctx(s)
  local c = s._state
  if not c then
    c = { cache = lru_new(CACHE_ENTRIES), current = lru_new(CURRENT_ENTRIES), bits = nil }
    s._state = c
  end
  return c
end

-- Forget everything cached (after a rollback the caches may name snapshots
-- and current states that no longer exist).
local function reset(c)
  c.cache = lru_new(c.cache.limit)
  c.current = lru_new(c.current.limit)
  c.bits = nil
end

-- Run fn(s, c, ...) in a transaction (a savepoint inside the caller's).
local function write(s, fn, ...)
  local conn = s.conn
  local c = ctx(s)
  return unpack_fail(pcall(conn.transaction, conn, function(...)
    conn:on_rollback(function() reset(c) end)
    return fn(s, c, ...)
  end, ...))
end

local function read(s, fn, ...)
  return unpack_fail(pcall(fn, s, ctx(s), ...))
end

local function check_nid(v, what, min)
  if math_type(v) ~= "integer" or v < min then
    error(string_format("%s must be an integer >= %d", what, min), 3)
  end
end

---------------------------------------------------------------------------
-- Loading snapshots.

-- Info about a snapshot: { key = nid, state = loom.State, depth = deltas
-- above the blocks, seg, slot, head = { blocks = {NIDs}, base = state of
-- the blocks, decoded = entries the blocks hold } }.
local function empty_info()
  return { key = 0, state = EMPTY, depth = 0, head = { blocks = {}, base = EMPTY, decoded = 0 } }
end

local CHAIN_SQL = ([[
WITH RECURSIVE chain(n, seg, parent, data) AS (
  SELECT 0, segment_nid, parent, data FROM state_segments WHERE segment_nid = ?
  UNION ALL
  SELECT c.n + 1, g.segment_nid, g.parent, g.data
  FROM chain c JOIN state_segments g ON g.segment_nid = c.parent >> %d
  WHERE c.n < %d)
SELECT seg, parent, data FROM chain ORDER BY n]]):format(SLOT_BITS, CHAIN_MAX + 2)

-- (a snapshot lists at most MAX_BLOCKS blocks: one IN list)
local block_sql = setmetatable({}, { __index = function(t, n)
  local sql = "SELECT block_nid, data FROM state_blocks WHERE block_nid IN (" .. sql_mod.marks(n) .. ")"
  t[n] = sql
  return sql
end })

local function load_info(s, c, nid)
  if nid == 0 then return empty_info() end
  local e = lru_get(c.cache, nid)
  if e then return e end
  local conn = s.conn
  local seg, slot = nid >> SLOT_BITS, nid & (SLOTS - 1)
  local rows = must(conn:all(CHAIN_SQL, seg))
  local n = #rows
  if n == 0 then return nil, "unknown state snapshot " .. nid, "not_found" end
  if rows[n][2] ~= nil then
    return nil, "state snapshot " .. nid .. ": segment chain broken or too long", "bad_state_blob"
  end
  local blobs, slots, want = {}, {}, slot
  for i = 1, n do
    local row = rows[i]
    blobs[n - i + 1], slots[n - i + 1] = row[3], want
    if row[2] then want = row[2] & (SLOTS - 1) end
  end
  local blocks, err, code = cstate.segment_info(blobs[1])
  if not blocks then return nil, err, code end
  local nslots = err
  if n > 1 then
    local _, tip_slots, tcode = cstate.segment_info(rows[1][3])
    if not tip_slots then return nil, _, tcode end
    nslots = tip_slots
  end
  if slot >= nslots then return nil, "unknown state snapshot " .. nid, "not_found" end
  local block_blobs = {}
  if #blocks > 0 then
    local by = {}
    for _, r in ipairs(must(conn:all(block_sql[#blocks], table_unpack(blocks)))) do by[r[1]] = r[2] end
    for i, b in ipairs(blocks) do
      block_blobs[i] = by[b]
      if not by[b] then return nil, "state block " .. b .. " is missing", "bad_state_blob" end
    end
  end
  local st, base, decoded = cstate.assemble(block_blobs, blobs, slots)
  if not st then return nil, base, decoded end
  local depth = -1
  for i = 1, n do depth = depth + slots[i] + 1 end
  e = { key = nid, state = st, depth = depth, seg = seg, slot = slot,
        head = { blocks = blocks, base = base, decoded = decoded } }
  lru_put(c.cache, nid, e)
  return e
end

---------------------------------------------------------------------------
-- Content lookup.

local function hash_bits(s, c)
  local bits = c.bits
  if not bits then
    bits = must(value(s.conn, "SELECT value FROM state_meta WHERE name = 'snapshot_hash_bits'"),
      "state_meta has no snapshot_hash_bits", "bad_state_blob")
    c.bits = bits
  end
  return bits
end

local function find_snapshot(s, c, st)
  local h = st:hash() >> 32
  local bits = hash_bits(s, c)
  local entries = value(s.conn, "SELECT entries FROM state_snapshot_hashes WHERE bucket = ?",
    h & ((1 << bits) - 1))
  if not entries then return nil end
  local nids, err, code = cstate.bucket_find(entries, h)
  if not nids then raise(err, code) end
  for _, nid in ipairs(nids) do
    local e, lerr, lcode = load_info(s, c, nid)
    if not e then raise(lerr, lcode) end
    if e.state == st then return nid end
  end
  return nil
end

-- Double the buckets: every bucket splits on the next bit of the hash.
local function grow(s, c, bits)
  local conn = s.conn
  for _, row in ipairs(must(conn:all("SELECT bucket, entries FROM state_snapshot_hashes"))) do
    local lo, hi, code = cstate.bucket_split(row[2], bits)
    if not lo then raise(hi, code) end
    if lo == "" then
      must(conn:run("DELETE FROM state_snapshot_hashes WHERE bucket = ?", row[1]))
    else
      must(conn:run("UPDATE state_snapshot_hashes SET entries = ? WHERE bucket = ?", blob(lo), row[1]))
    end
    if hi ~= "" then
      must(conn:run("INSERT INTO state_snapshot_hashes (bucket, entries) VALUES (?, ?)",
        row[1] + (1 << bits), blob(hi)))
    end
  end
  must(conn:run("UPDATE state_meta SET value = ? WHERE name = 'snapshot_hash_bits'", bits + 1))
  c.bits = bits + 1
end

local function add_hash(s, c, st, nid)
  local conn = s.conn
  local h = st:hash() >> 32
  local bits = hash_bits(s, c)
  local bucket = h & ((1 << bits) - 1)
  local old = value(conn, "SELECT entries FROM state_snapshot_hashes WHERE bucket = ?", bucket)
  local new, count, code = cstate.bucket_add(old, h, nid)
  if not new then raise(count, code) end
  must(conn:run("INSERT OR REPLACE INTO state_snapshot_hashes (bucket, entries) VALUES (?, ?)",
    bucket, blob(new)))
  if count > state_mod.BUCKET_MAX and bits < MAX_HASH_BITS then grow(s, c, bits) end
end

-- The NID of a block with these bytes, stored if new.
local function put_block(conn, data)
  local h = cstate.blob_hash(data)
  for _, row in ipairs(must(conn:all("SELECT block_nid, data FROM state_blocks WHERE hash = ?", h))) do
    if row[2] == data then return row[1] end
  end
  must(conn:run("INSERT INTO state_blocks (hash, data) VALUES (?, ?)", h, blob(data)))
  return conn:last_insert_rowid()
end

local function insert_segment(conn, parent, data)
  must(conn:run("INSERT INTO state_segments (parent, data) VALUES (?, ?)", parent, blob(data)))
  local seg = conn:last_insert_rowid()
  if seg >= MAX_SEGMENT then raise("state segment NIDs exhausted", "db_error") end
  return seg
end

---------------------------------------------------------------------------
-- Storing a new state st (not stored yet) near the snapshot p.

local function contains(list, x)
  for _, v in ipairs(list) do if v == x then return true end end
  return false
end

local function store_state(s, c, st, p, d)
  local conn = s.conn
  d = d or p.state:delta(st)
  local e
  if p.key ~= 0 and #d <= INLINE_MAX and p.depth < CHAIN_MAX then
    -- a delta: appended to the parent's segment when the parent is its last
    -- snapshot, else the first of a new segment
    if p.slot < SLOTS - 1 then
      local data = value(conn, "SELECT data FROM state_segments WHERE segment_nid = ?", p.seg)
      local new, slot = nil, nil
      if data then new, slot = cstate.segment_append(data, d) end
      if new and slot == p.slot + 1 then
        must(conn:run("UPDATE state_segments SET data = ? WHERE segment_nid = ?", blob(new), p.seg))
        e = { key = (p.seg << SLOT_BITS) | slot, state = st, depth = p.depth + 1, seg = p.seg, slot = slot,
              head = p.head }
      end
    end
    if not e then
      local seg = insert_segment(conn, p.key, cstate.encode_segment({}, { d }))
      e = { key = seg << SLOT_BITS, state = st, depth = p.depth + 1, seg = seg, slot = 0, head = p.head }
    end
  else
    -- a new block list: the old one plus a block of the changes since, or,
    -- when that list would be too long, the state cut into chunks
    local head = p.head
    local overlay = head.base:delta(st)
    local blocks, decoded
    if p.key ~= 0 and #overlay > 0 and #head.blocks < MAX_BLOCKS
        and head.decoded + #overlay <= 2 * #st + 64 then
      local b = put_block(conn, cstate.encode_block(overlay))
      if not contains(head.blocks, b) then
        blocks = { table_unpack(head.blocks) }
        blocks[#blocks + 1] = b
        decoded = head.decoded + #overlay
      end
    end
    if not blocks then
      blocks = {}
      for i, chunk in ipairs(st:chunks()) do blocks[i] = put_block(conn, chunk) end
      decoded = #st
    end
    local seg = insert_segment(conn, nil, cstate.encode_segment(blocks, { {} }))
    e = { key = seg << SLOT_BITS, state = st, depth = 0, seg = seg, slot = 0,
          head = { blocks = blocks, base = st, decoded = decoded } }
  end
  add_hash(s, c, st, e.key)
  lru_put(c.cache, e.key, e)
  return e.key
end

-- The snapshot NID of st, stored near snapshot p if it is new (d: the
-- delta from p to st, when known).
local function snapshot_of(s, c, st, p, d)
  if d and #d == 0 or not d and st == p.state then return p.key, p.state end
  if #st == 0 then return 0, st end
  local found = find_snapshot(s, c, st)
  if found then return found, st end
  return store_state(s, c, st, p, d), st
end

---------------------------------------------------------------------------
-- Public functions.

--- The snapshot of the parent's state with delta applied: parent is a
-- snapshot NID (0: the empty state), delta an array of {type_nid,
-- state_key_nid, event_nid} (event 0 removes the key; for a key given twice
-- the later entry wins). Returns snapshot_nid, loom.State. An unchanged
-- state returns the parent; a state stored before returns its NID.
function methods.snapshot_for(s, parent, delta)
  check_nid(parent, "parent snapshot", 0)
  if type(delta) ~= "table" then error("delta must be an array of triples", 2) end
  return write(s, function(_, c)
    local p, err, code = load_info(s, c, parent)
    if not p then return nil, err, code end
    local st, d = p.state:apply(delta)
    return snapshot_of(s, c, st, p, d)
  end)
end

--- The snapshot of a whole state: entries is an array of {type_nid,
-- state_key_nid, event_nid} (one per key, event NIDs >= 1) or a loom.State.
-- near (optional) is a snapshot the state is expected to be close to (the
-- state before a state resolution, say); storage is then a small delta.
-- Returns snapshot_nid, loom.State.
function methods.snapshot_from_entries(s, entries, near)
  local st
  if is_state(entries) then st = entries
  elseif type(entries) == "table" then st = cstate.new(entries)
  else error("entries must be an array of triples or a loom.State", 2) end
  if near ~= nil then check_nid(near, "near snapshot", 0) end
  return write(s, function(_, c)
    local p, err, code = load_info(s, c, near or 0)
    if not p then return nil, err, code end
    return snapshot_of(s, c, st, p)
  end)
end

--- The state of a snapshot: a loom.State, or nil, message, code
-- ("not_found" for an unknown NID, "bad_state_blob" for damaged storage).
function methods.load_state(s, nid)
  check_nid(nid, "snapshot", 0)
  local e, err, code = read(s, load_info, nid)
  if not e then return nil, err, code end
  return e.state
end

--- Record the snapshots before and after an event (after defaults to
-- before). Call after the event's row is written, in the same transaction.
function methods.set_event_state(s, event_nid, before, after)
  check_nid(event_nid, "event NID", 1)
  check_nid(before, "state before", 0)
  if after == nil then after = before end
  check_nid(after, "state after", 0)
  local c = s._event_states
  if c then c.map[event_nid] = nil end
  -- one statement: no savepoint needed
  local n, err, code = s.conn:run("UPDATE events SET state_before = ?, state_after = ? WHERE event_nid = ?",
    before, after ~= before and after or nil, event_nid)
  if not n then return nil, err, code end
  if n == 0 then return nil, "unknown event " .. event_nid, "not_found" end
  return true
end

--- The snapshots before and after an event: before, after | nil, message,
-- code ("not_found": no such event; "no_state": none recorded, an outlier).
-- Snapshots of events read outside transactions are kept in memory (what
-- an open transaction reads may be rolled back; set_event_state drops an
-- event's entry): { map = { [event_nid] = { before, after } }, n }.
local EVENT_STATES_MAX = 20000

local function event_states_cache(s)
  local c = s._event_states
  if not c or c.n >= EVENT_STATES_MAX then
    c = { map = {}, n = 0 }
    s._event_states = c
  end
  return c
end

local function keep_event_state(s, nid, before, after)
  if s.conn:in_transaction() then return end
  local c = event_states_cache(s)
  if not c.map[nid] then c.n = c.n + 1 end
  c.map[nid] = { before, after }
end

function methods.event_state(s, event_nid)
  check_nid(event_nid, "event NID", 1)
  local c = s._event_states
  local hit = c and c.map[event_nid]
  if hit then return hit[1], hit[2] end
  return read(s, function()
    local row = must(s.conn:first("SELECT state_before, state_after FROM events WHERE event_nid = ?", event_nid))
    if not row then return nil, "unknown event " .. event_nid, "not_found" end
    if row[1] == nil then return nil, "no state recorded for event " .. event_nid, "no_state" end
    keep_event_state(s, event_nid, row[1], row[2] or row[1])
    return row[1], row[2] or row[1]
  end)
end

--- Read the snapshots of many events in one statement, so that
-- event_state answers them from memory (events without state are skipped).
function methods.prefetch_event_states(s, event_nids)
  local c = s._event_states
  local missing = {}
  for _, n in ipairs(event_nids) do
    if not (c and c.map[n]) then missing[#missing + 1] = n end
  end
  if #missing == 0 or s.conn:in_transaction() then return end
  for marks, chunk in sql_mod.chunks(missing) do
    local rows = s.conn:all("SELECT event_nid, state_before, state_after FROM events WHERE event_nid IN ("
      .. marks .. ") AND state_before IS NOT NULL", table_unpack(chunk))
    for _, r in ipairs(rows) do keep_event_state(s, r[1], r[2], r[3] or r[2]) end
  end
end

local function current_of(s, c, room_nid)
  local e = lru_get(c.current, room_nid)
  if e then return e.state end
  local rows = must(s.conn:all(
    "SELECT type_nid, state_key_nid, event_nid FROM current_state WHERE room_nid = ?", room_nid))
  local st = cstate.new(rows)
  lru_put(c.current, room_nid, { key = room_nid, state = st })
  return st
end

local function apply_rows(conn, room_nid, d)
  if #d <= BATCH_ROWS then
    for _, t in ipairs(d) do
      if t[3] == 0 then
        must(conn:run("DELETE FROM current_state WHERE room_nid = ? AND type_nid = ? AND state_key_nid = ?",
          room_nid, t[1], t[2]))
      else
        must(conn:run([[INSERT OR REPLACE INTO current_state (room_nid, type_nid, state_key_nid, event_nid)
          VALUES (?, ?, ?, ?)]], room_nid, t[1], t[2], t[3]))
      end
    end
    return
  end
  local parts = {}
  for i, t in ipairs(d) do parts[i] = string_format("[%d,%d,%d]", t[1], t[2], t[3]) end
  local j = "[" .. table_concat(parts, ",") .. "]"
  must(conn:run([[DELETE FROM current_state WHERE room_nid = ?1 AND (type_nid, state_key_nid) IN
    (SELECT value ->> 0, value ->> 1 FROM json_each(?2) WHERE value ->> 2 = 0)]], room_nid, j))
  must(conn:run([[INSERT OR REPLACE INTO current_state (room_nid, type_nid, state_key_nid, event_nid)
    SELECT ?1, value ->> 0, value ->> 1, value ->> 2 FROM json_each(?2) WHERE value ->> 2 != 0]], room_nid, j))
end

--- Make the room's current state x: a snapshot NID, a loom.State, or a
-- delta (array of triples, event 0 removes) applied to the current state.
-- Only the rows that change are written. Returns the new current loom.State.
function methods.set_current_state(s, room_nid, x)
  check_nid(room_nid, "room NID", 1)
  if not (math_type(x) == "integer" or is_state(x) or type(x) == "table") then
    error("set_current_state: expected a snapshot NID, a loom.State or a delta", 2)
  end
  return write(s, function(_, c)
    local cur = current_of(s, c, room_nid)
    local st, d
    if math_type(x) == "integer" then
      local e, err, code = load_info(s, c, x)
      if not e then return nil, err, code end
      st = e.state
    elseif is_state(x) then
      st = x
    else
      st, d = cur:apply(x)
    end
    d = d or cur:delta(st)
    if #d > 0 then apply_rows(s.conn, room_nid, d) end
    lru_put(c.current, room_nid, { key = room_nid, state = st })
    return st
  end)
end

--- The room's current state (a loom.State; empty for an unknown room).
function methods.current_state(s, room_nid)
  check_nid(room_nid, "room NID", 1)
  return read(s, current_of, room_nid)
end

--- Storage figures: blocks, block_bytes, segments, segment_bytes, snapshots
-- (stored snapshots), buckets, bucket_bytes, hash_bits.
function methods.state_stats(s)
  return read(s, function(_, c)
    local conn = s.conn
    local out = { hash_bits = hash_bits(s, c), snapshots = 0 }
    local r = must(conn:first("SELECT count(*), coalesce(sum(length(data)), 0) FROM state_blocks"))
    out.blocks, out.block_bytes = r[1], r[2]
    r = must(conn:first("SELECT count(*), coalesce(sum(length(entries)), 0) FROM state_snapshot_hashes"))
    out.buckets, out.bucket_bytes = r[1], r[2]
    out.segments, out.segment_bytes = 0, 0
    for _, data in ipairs(must(conn:column("SELECT data FROM state_segments"))) do
      local _, n, code = cstate.segment_info(data)
      if not n then raise(n, code) end
      out.segments, out.segment_bytes, out.snapshots = out.segments + 1, out.segment_bytes + #data, out.snapshots + n
    end
    return out
  end)
end

--- Drop the cached snapshots and current states (for measurements).
function methods.state_clear_cache(s)
  reset(ctx(s))
  s._event_states = nil
end

--- Bound the caches, in triples (defaults 2^20 each).
function methods.state_cache_limits(s, snapshots, current)
  local c = ctx(s)
  if snapshots then check_nid(snapshots, "cache limit", 0); c.cache.limit = snapshots end
  if current then check_nid(current, "cache limit", 0); c.current.limit = current end
end

state_mod.methods = methods
state_mod.snapshot_for = methods.snapshot_for
state_mod.snapshot_from_entries = methods.snapshot_from_entries
state_mod.load = methods.load_state
state_mod.set_event_state = methods.set_event_state
state_mod.event_state = methods.event_state
state_mod.prefetch_event_states = methods.prefetch_event_states
state_mod.set_current = methods.set_current_state
state_mod.current = methods.current_state
state_mod.stats = methods.state_stats
state_mod.clear_cache = methods.state_clear_cache
state_mod.cache_limits = methods.state_cache_limits

return state_mod
