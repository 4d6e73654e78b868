-- loom.store.federation: federation transactions received, and the queue of
-- what waits to be sent to other servers.
--
--   store:received_txn(origin, txn_id)                 -- the stored response JSON, or nil
--   store:record_received_txn(origin, txn_id, json)
--   store:queue_for(destinations, kind, room_id, payload)   -- kind "pdu" (payload: event ID) or "edu" (JSON)
--   local rows = store:outbox(dest, upto, limit_pdus, limit_edus)  -- { { seq, kind, room_id, payload } ... }
--   store:outbox_done(dest, upto_seq)                  -- drop what a transaction carried
--   store:outbox_drop(dest, seqs)                      -- drop some rows (catch-up)
--   store:destination(dest)                            -- { txn_id, txn_upto, next_txn, retry_interval_ms, ... }
--   store:set_destination(dest, fields)
--   store:pending_destinations()                       -- destinations with queued rows
--
-- Mixed into the store. A database failure raises (loom.db.Error).
local core = require "loom.core"

local ipairs, pairs, table_concat = ipairs, pairs, table.concat
local now_ms = core.now_ms

local federation = {}
local methods = {}
local _ENV = nil -- luacheck: ignore 211

local KEEP_RECEIVED_MS = 24 * 3600 * 1000   -- received transaction IDs are remembered a day

function methods:received_txn(origin, txn_id)
  return self.conn:value("SELECT response FROM federation_txns_received WHERE origin = ? AND txn_id = ?",
    origin, txn_id)
end

function methods:record_received_txn(origin, txn_id, response)
  local conn, now = self.conn, now_ms()
  conn:run([[INSERT INTO federation_txns_received (origin, txn_id, received_ts, response) VALUES (?, ?, ?, ?)
    ON CONFLICT (origin, txn_id) DO NOTHING]], origin, txn_id, now, response)
  conn:run("DELETE FROM federation_txns_received WHERE received_ts < ?", now - KEEP_RECEIVED_MS)
  return true
end

function methods:queue_for(destinations, kind, room_id, payload)
  local conn, now = self.conn, now_ms()
  return self:transaction(function()
    for _, d in ipairs(destinations) do
      conn:run("INSERT INTO federation_outbox (destination, kind, room_id, payload, queued_ts) VALUES (?, ?, ?, ?, ?)",
        d, kind, room_id, payload, now)
    end
    return true
  end)
end

--- The next rows for dest in order: those up to seq `upto` when given (a
-- transaction being retried), else at most limit_pdus PDUs and limit_edus
-- EDUs.
function methods:outbox(dest, upto, limit_pdus, limit_edus)
  local rows
  if upto then
    rows = self.conn:all([[SELECT seq, kind, room_id, payload FROM federation_outbox
      WHERE destination = ? AND seq <= ? ORDER BY seq]], dest, upto)
  else
    rows = self.conn:all([[SELECT seq, kind, room_id, payload FROM federation_outbox
      WHERE destination = ? ORDER BY seq LIMIT ?]], dest, (limit_pdus + limit_edus) * 4)
  end
  local out, np, ne = {}, 0, 0
  for _, r in ipairs(rows) do
    local kind = r[2]
    if not upto then
      if kind == "pdu" then
        if np >= limit_pdus then break end
        np = np + 1
      else
        if ne >= limit_edus then break end
        ne = ne + 1
      end
    end
    out[#out + 1] = { seq = r[1], kind = kind, room_id = r[3], payload = r[4] }
  end
  return out
end

function methods:outbox_count(dest, kind)
  return self.conn:value("SELECT count(*) FROM federation_outbox WHERE destination = ? AND kind = ?", dest, kind)
end

function methods:outbox_done(dest, upto)
  self.conn:run("DELETE FROM federation_outbox WHERE destination = ? AND seq <= ?", dest, upto)
  return true
end

function methods:outbox_drop(dest, seqs)
  if #seqs == 0 then return true end
  local conn = self.conn
  return self:transaction(function()
    for _, s in ipairs(seqs) do conn:run("DELETE FROM federation_outbox WHERE destination = ? AND seq = ?", dest, s) end
    return true
  end)
end

--- All PDU rows for dest: { { seq, room_id, payload } ... } in order.
function methods:outbox_pdus(dest)
  local out = {}
  for _, r in ipairs(self.conn:all([[SELECT seq, room_id, payload FROM federation_outbox
      WHERE destination = ? AND kind = 'pdu' ORDER BY seq]], dest)) do
    out[#out + 1] = { seq = r[1], room_id = r[2], payload = r[3] }
  end
  return out
end

local DEST_COLS = { "txn_id", "txn_upto", "next_txn", "retry_interval_ms", "retry_at_ms", "failures" }

function methods:destination(dest)
  local row = self.conn:first("SELECT " .. table_concat(DEST_COLS, ", ")
    .. " FROM federation_destinations WHERE destination = ?", dest)
  local out = { destination = dest, next_txn = 1, retry_interval_ms = 0, retry_at_ms = 0, failures = 0 }
  if row then
    for i, k in ipairs(DEST_COLS) do out[k] = row[i] end
  end
  return out
end

function methods:set_destination(dest, fields)
  local cur = self:destination(dest)
  for k, v in pairs(fields) do
    if v == false then cur[k] = nil else cur[k] = v end
  end
  self.conn:run([[INSERT INTO federation_destinations (destination, txn_id, txn_upto, next_txn, retry_interval_ms,
      retry_at_ms, failures) VALUES (?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (destination) DO UPDATE SET txn_id = excluded.txn_id, txn_upto = excluded.txn_upto,
      next_txn = excluded.next_txn, retry_interval_ms = excluded.retry_interval_ms,
      retry_at_ms = excluded.retry_at_ms, failures = excluded.failures]],
    dest, cur.txn_id, cur.txn_upto, cur.next_txn, cur.retry_interval_ms, cur.retry_at_ms, cur.failures)
  return true
end

function methods:pending_destinations()
  return self.conn:column("SELECT DISTINCT destination FROM federation_outbox ORDER BY destination")
end

federation.methods = methods
return federation
