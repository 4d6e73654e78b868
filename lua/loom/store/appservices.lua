-- loom.store.appservices: what loom.appservice keeps in the database (schema
-- 50): each application service's delivery position and its staged
-- transaction, and the local joined members its registry starts from.
--
--   store:appservice_position(id)             -- stream position, or nil for a service new here
--   store:appservice_init(id, pos)
--   local txn_id = store:appservice_stage(id, body_json, last_pos, acks)
--   store:appservice_staged(id)               -- { txn_id, body, last, acks } or nil
--   store:appservice_delivered(id, txn_id, last_pos)
--   store:local_joined_members(server_name)   -- { { room_id, user_id }, ... }
--   store:set_network_listing(service_id, network_id, room_id, listed)
--   store:network_room_ids(network_id)        -- { room_id, ... } sorted; nil network: every network
--
-- Mixed into the store. A database failure raises.
local json = require("loom.core").json

local ipairs = ipairs

local appservices = {}
local methods = {}
local _ENV = nil -- luacheck: ignore 211

--- The service's delivery position (nil: the database has not seen it).
function methods:appservice_position(id)
  return self.conn:value("SELECT stream_pos FROM appservice_state WHERE service_id = ?", id)
end

--- Record a service new to the database at position pos.
function methods:appservice_init(id, pos)
  self.conn:run("INSERT INTO appservice_state (service_id, stream_pos, next_txn) VALUES (?, ?, 1)"
    .. " ON CONFLICT (service_id) DO NOTHING", id, pos)
end

--- Stage the service's next transaction (there must be none staged): its
-- transaction ID. body: the JSON text to send; last_pos: the position it
-- delivers up to; acks: nil, or { { user_id, device_id, upto }, ... } — the
-- to-device messages it carries, dropped from the inboxes on delivery.
function methods:appservice_stage(id, body, last_pos, acks)
  local conn = self.conn
  local txn_id
  conn:transaction(function()
    txn_id = conn:value("SELECT next_txn FROM appservice_state WHERE service_id = ?", id)
    conn:run("UPDATE appservice_state SET next_txn = next_txn + 1 WHERE service_id = ?", id)
    conn:run("INSERT INTO appservice_txns (service_id, txn_id, body, last_pos, acks) VALUES (?, ?, ?, ?, ?)",
      id, txn_id, body, last_pos, acks and #acks > 0 and json.encode(acks) or nil)
  end)
  return txn_id
end

--- The service's staged transaction: { txn_id, body, last } or nil.
function methods:appservice_staged(id)
  local row = self.conn:first("SELECT txn_id, body, last_pos, acks FROM appservice_txns WHERE service_id = ?", id)
  if not row then return nil end
  return { txn_id = row[1], body = row[2], last = row[3], acks = row[4] and json.decode(row[4]) or nil }
end

--- The staged transaction was answered 200: it goes, the position moves,
-- the to-device messages it carried leave their inboxes.
function methods:appservice_delivered(id, txn_id, last_pos)
  local conn = self.conn
  conn:transaction(function()
    local acks = conn:value("SELECT acks FROM appservice_txns WHERE service_id = ? AND txn_id = ?", id, txn_id)
    for _, a in ipairs(acks and json.decode(acks) or {}) do self:ack_to_device(a[1], a[2], a[3]) end
    conn:run("DELETE FROM appservice_txns WHERE service_id = ? AND txn_id = ?", id, txn_id)
    conn:run("UPDATE appservice_state SET stream_pos = max(stream_pos, ?) WHERE service_id = ?", last_pos, id)
  end)
end

--- Every (room, user) where a user of this server is joined in the room's
-- current state: { { room_id, user_id }, ... }.
function methods:local_joined_members(server_name)
  local type_nid = self:type_nid("m.room.member")
  if not type_nid then return {} end
  local out = {}
  local rows = self.conn:all([[
    SELECT c.room_nid, m.user_id FROM current_state c JOIN room_memberships m ON m.event_nid = c.event_nid
    WHERE c.type_nid = ? AND m.membership = 'join' AND m.user_id LIKE ? ESCAPE '\']],
    type_nid, "%:" .. server_name:gsub("[%%_\\]", "\\%0"))
  for _, r in ipairs(rows) do out[#out + 1] = { self:room_id(r[1]), r[2] } end
  return out
end

--- List (listed true) or unlist a room in a service's third-party network
-- directory.
function methods:set_network_listing(service_id, network_id, room_id, listed)
  if listed then
    self.conn:run("INSERT INTO appservice_room_list (network_id, room_id, service_id) VALUES (?, ?, ?)"
      .. " ON CONFLICT (network_id, room_id) DO UPDATE SET service_id = excluded.service_id",
      network_id, room_id, service_id)
  else
    self.conn:run("DELETE FROM appservice_room_list WHERE network_id = ? AND room_id = ?", network_id, room_id)
  end
end

--- The rooms listed in a network's directory (nil: in any network), sorted.
function methods:network_room_ids(network_id)
  if network_id == nil then
    return self.conn:column("SELECT DISTINCT room_id FROM appservice_room_list ORDER BY room_id")
  end
  return self.conn:column("SELECT room_id FROM appservice_room_list WHERE network_id = ? ORDER BY room_id",
    network_id)
end

appservices.methods = methods
return appservices
