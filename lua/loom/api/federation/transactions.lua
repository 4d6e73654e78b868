-- loom.api.federation.transactions: PUT /_matrix/federation/v1/send/{txnId}.
--
-- A transaction carries up to 50 PDUs and 100 EDUs (more: 400 M_BAD_JSON,
-- nothing processed). A transaction ID seen before from the same origin is
-- answered as it was the first time, without processing anything again;
-- transactions of one origin are processed one at a time. Each PDU gets a
-- result ({} or { error }): unknown rooms and servers the room's ACL denies
-- are refused; events whose prev_events are missing are filled in first
-- (loom.federation.inbound: /get_missing_events, then the state at the
-- event). EDUs: m.typing, m.receipt, m.presence, m.direct_to_device,
-- m.device_list_update and m.signing_key_update, each for users of
-- the origin only (and, for typing and receipts, joined to the room, from a
-- server the room's ACL allows).
local type, ipairs, pairs, tostring, next, pcall, error, select = type, ipairs, pairs, tostring, next, pcall, error,
  select
local math_type = math.type
local core = require "loom.core"
local ljson = require "loom.json"
local errors = require "loom.http.errors"
local async = require "loom.async"
local inbound = require "loom.federation.inbound"
local acl = require "loom.federation.acl"
local response = require "loom.http.response"
local fed_devices = require "loom.federation.devices"

local json = core.json
local is_object, is_array = ljson.is_object, ljson.is_array

local _ENV = nil -- luacheck: ignore 211

local transactions = {}

local MAX_PDUS, MAX_EDUS = 50, 100
local TYPING_TIMEOUT = 30000

local function domain(user_id)
  return type(user_id) == "string" and user_id:match("^@[^:]*:(.+)$") or nil
end

local function joined(hs, room_id, user_id)
  local ev = hs.rooms:state_event(room_id, "m.room.member", user_id)
  return ev and is_object(ev.content) and ev.content.membership == "join"
end

local edu_handlers = {}

edu_handlers["m.typing"] = function(hs, origin, c)
  if not is_object(c) or type(c.room_id) ~= "string" or domain(c.user_id) ~= origin
      or type(c.typing) ~= "boolean" then
    return
  end
  if acl.check(hs, c.room_id, origin) or not joined(hs, c.room_id, c.user_id) then return end
  hs.typing:set(c.room_id, c.user_id, c.typing, TYPING_TIMEOUT)
end

edu_handlers["m.receipt"] = function(hs, origin, c)
  if not is_object(c) then return end
  local store = hs.store
  for room_id, by_type in pairs(c) do
    if type(room_id) == "string" and is_object(by_type) and not acl.check(hs, room_id, origin) then
      for rtype, users in pairs(by_type) do
        if (rtype == "m.read") and is_object(users) then
          for user_id, r in pairs(users) do
            if domain(user_id) == origin and is_object(r) and is_array(r.event_ids)
                and joined(hs, room_id, user_id) then
              local data = is_object(r.data) and r.data or {}
              local ts = math_type(data.ts) == "integer" and data.ts or core.now_ms()
              local thread = type(data.thread_id) == "string" and data.thread_id ~= "main" and data.thread_id or nil
              for _, event_id in ipairs(r.event_ids) do
                local meta
                if type(event_id) == "string" then meta = select(2, store:event(event_id)) end
                if meta and meta.room_id == room_id then
                  store:set_receipt { room_id = room_id, receipt_type = rtype, user_id = user_id,
                    thread_id = thread, event_id = event_id, event_stream = meta.stream_ordering, ts = ts }
                end
              end
            end
          end
        end
      end
    end
  end
end

edu_handlers["m.presence"] = function(hs, origin, c)
  if not is_object(c) or not is_array(c.push) then return end
  local store = hs.store
  for i, p in ipairs(c.push) do
    if i > 1000 then break end
    -- users of the origin who are in a room here
    if is_object(p) and domain(p.user_id) == origin and store:joined_anywhere(p.user_id) then
      hs.presence:remote(p.user_id, p)
    end
  end
end

edu_handlers["m.direct_to_device"] = function(hs, origin, c)
  if not is_object(c) or domain(c.sender) ~= origin or type(c.type) ~= "string"
      or type(c.message_id) ~= "string" or not is_object(c.messages) then
    return
  end
  local targets = {}
  for user_id, devices in pairs(c.messages) do
    if domain(user_id) == hs.server_name and is_object(devices) then
      for device, content in pairs(devices) do
        if type(device) == "string" and is_object(content) then
          local text = json.encode(content, { floats = true })
          if text then targets[#targets + 1] = { user_id, device, text } end
        end
      end
    end
  end
  if #targets > 0 then
    -- message_id deduplicates, as a client's transaction ID does
    hs.store:send_to_device(c.sender, "federation:" .. origin, c.message_id, c.type, targets)
  end
end

-- devices and keys of the origin's users (loom.federation.devices)
edu_handlers["m.device_list_update"] = fed_devices.device_list_update
edu_handlers["m.signing_key_update"] = fed_devices.signing_key_update

-- Runs fn while no other transaction of origin runs.
local function one_at_a_time(hs, origin, fn)
  local busy = hs.fed_txn_busy
  if not busy then busy = {}; hs.fed_txn_busy = busy end
  while busy[origin] do
    local waiters = busy[origin]
    async.wait(function(wake) waiters[#waiters + 1] = wake end)
  end
  busy[origin] = {}
  local ok, res, err = pcall(fn)   -- the next one runs whatever happens to this one
  local waiters = busy[origin]
  busy[origin] = nil
  for _, w in ipairs(waiters) do w() end
  if not ok then error(res, 0) end
  return res, err
end

local function send(hs, req)
  local origin, txn_id = req.origin, req.params.txnId
  local body = req:json()
  local pdus, edus = body.pdus, body.edus
  if pdus == nil then pdus = {} end
  if edus == nil then edus = {} end
  if not is_array(pdus) and not (is_object(pdus) and next(pdus) == nil) then
    return errors.new("M_BAD_JSON", "pdus must be an array")
  end
  if not is_array(edus) and not (is_object(edus) and next(edus) == nil) then
    return errors.new("M_BAD_JSON", "edus must be an array")
  end
  if #pdus > MAX_PDUS or #edus > MAX_EDUS then
    return errors.new("M_BAD_JSON", "Transaction too large: at most 50 PDUs and 100 EDUs")
  end
  local text, terr = one_at_a_time(hs, origin, function()
    local seen = hs.store:received_txn(origin, txn_id)
    if seen then return seen end
    local results = {}
    for _, pdu in ipairs(pdus) do
      local id, err, transient = inbound.pdu(hs, origin, pdu)
      -- the origin did not answer what this PDU needed: not acknowledged, so
      -- that it sends the transaction again (what was stored is skipped then)
      if transient then return nil, err end
      if id then results[id] = err and { error = err } or {} end
    end
    for _, edu in ipairs(edus) do
      if is_object(edu) then
        local h = edu_handlers[edu.edu_type]
        if h then
          local ok, err = pcall(h, hs, origin, edu.content)
          if not ok then hs.server:log("warn", "EDU %s from %s: %s", tostring(edu.edu_type), origin, tostring(err)) end
        end
      end
    end
    local out = json.encode { pdus = results }
    hs.store:record_received_txn(origin, txn_id, out)
    return out
  end)
  if not text then
    local e = errors.new("M_UNKNOWN", "Could not fetch what the transaction needs from its origin: "
      .. tostring(terr))
    e.status = 503
    return e
  end
  return response.new(200, text, { ["Content-Type"] = "application/json" })
end

transactions.routes = {
  { "PUT", "/_matrix/federation/v1/send/{txnId}", send, auth = "server" },
}

return transactions
