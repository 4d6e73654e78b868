-- loom.store.txns: client transaction IDs, so that a request sent again
-- with the same transaction ID does its work once.
--
--   local event_id = store:txn_event(user_id, device_id, endpoint, txn_id)
--   store:record_txn(user_id, device_id, endpoint, txn_id, event_id)
--   store:txn_ids(user_id, device_id, { event_id, ... })   -- { [event_id] = txn_id }
--
-- Mixed into the store. device_id nil is stored as "". A database failure
-- raises (loom.db.Error).
local core = require "loom.core"
local sql = require "loom.store.sql"

local now_ms = core.now_ms

local txns = {}
local methods = {}
local _ENV = nil -- luacheck: ignore 211

--- The event a transaction produced, or nil.
function methods:txn_event(user_id, device_id, endpoint, txn_id)
  return self.conn:value("SELECT event_id FROM txn_ids WHERE user_id = ? AND device_id = ?"
    .. " AND endpoint = ? AND txn_id = ?", user_id, device_id or "", endpoint, txn_id)
end

--- Record the event a transaction produced (in the caller's transaction,
-- with the event). Returns true.
function methods:record_txn(user_id, device_id, endpoint, txn_id, event_id)
  self.conn:run("INSERT INTO txn_ids (user_id, device_id, txn_id, endpoint, event_id, created_ts)"
    .. " VALUES (?, ?, ?, ?, ?, ?)", user_id, device_id or "", txn_id, endpoint, event_id, now_ms())
  return true
end

--- Transaction IDs of some events sent by the user's device:
-- { [event_id] = txn_id } (events sent otherwise are absent).
function methods:txn_ids(user_id, device_id, event_ids)
  return sql.map_in(self.conn, "SELECT event_id, txn_id FROM txn_ids WHERE user_id = ? AND device_id = ?"
    .. " AND event_id IN (", event_ids, user_id, device_id or "")
end

txns.methods = methods
return txns
