-- loom.api.client.receipts: the Client-Server API "Receipts" and "Fully
-- read markers" endpoints: POST /rooms/{roomId}/receipt/{receiptType}/{eventId}
-- (m.read, m.read.private, m.fully_read; body may carry thread_id) and
-- POST /rooms/{roomId}/read_markers ({ ["m.fully_read"], ["m.read"],
-- ["m.read.private"] = event_id }). Receipts are stored by the store
-- (loom.store.receipts, never moving backwards) and reach /sync as the
-- room's m.receipt ephemeral event; m.fully_read is the room account data
-- m.fully_read ({ event_id }). See docs/sync.md.
local core = require "loom.core"
local errors = require "loom.http.errors"
local ljson = require "loom.json"
local store_filter = require "loom.store.filter"
local visibility = require "loom.room.visibility"

local json = core.json
local type, ipairs = type, ipairs

local _ENV = nil -- luacheck: ignore 211

local receipts_api = {}

local V3 = "/_matrix/client/v3"
local TYPES = { ["m.read"] = true, ["m.read.private"] = true, ["m.fully_read"] = true }

local function is_joined(hs, room_id, user_id)
  local ev = hs.rooms:state_event(room_id, "m.room.member", user_id)
  return ev ~= nil and ljson.is_object(ev.content) and ev.content.membership == "join"
end

-- The room must be valid and joined: nil or the error.
local function check_room(hs, req, room_id)
  if not store_filter.is_id("room", room_id) then
    return errors.new("M_INVALID_PARAM", room_id .. " is not a valid room ID")
  end
  if not is_joined(hs, room_id, req.user_id) then
    return errors.new("M_FORBIDDEN", "You are not in this room")
  end
end

-- The stream ordering of an event of the room the user may see and the
-- event, or nil and a 404 (an unknown event and a hidden one look the same).
local function event_stream(hs, req, room_id, event_id)
  if type(event_id) ~= "string" or #event_id > 255 then
    return nil, errors.new("M_INVALID_PARAM", "event ID expected")
  end
  local ev, meta = hs.store:event(event_id)
  if not ev or meta.room_id ~= room_id or meta.outlier or not meta.stream_ordering
      or not visibility.can_see(hs, req.user_id, room_id, ev) then
    return nil, errors.new("M_NOT_FOUND", "Event not found")
  end
  return meta.stream_ordering, ev
end

-- Record one marker of type rtype at event_id: nil or the error.
local function mark(hs, req, room_id, rtype, event_id, thread_id)
  local pos, found = event_stream(hs, req, room_id, event_id)
  if not pos then return found end
  -- a threaded receipt names the event's own thread (the root's ID, or main)
  if thread_id ~= nil and hs.store:event_thread(found) ~= thread_id then
    return errors.new("M_INVALID_PARAM", ("event_id %s is not related to thread %s"):format(event_id, thread_id))
  end
  if rtype == "m.fully_read" then
    hs.store:set_account_data(req.user_id, room_id, "m.fully_read", json.encode { event_id = event_id })
  else
    local ts = core.now_ms()
    local moved = hs.store:set_receipt { room_id = room_id, receipt_type = rtype, user_id = req.user_id,
      thread_id = thread_id, event_id = event_id, event_stream = pos, ts = ts }
    if moved and hs.pushers then hs.pushers:receipt_moved(req.user_id) end   -- the badge count
    if moved and rtype == "m.read" and hs.sender then
      -- public receipts go to the room's other servers (private ones never leave)
      hs.sender:room_edu(room_id, "m.receipt", { [room_id] = { ["m.read"] = { [req.user_id] = {
        event_ids = json.array { event_id }, data = { ts = ts, thread_id = thread_id } } } } })
    end
  end
end

local function receipt(hs, req)
  local room_id, rtype, event_id = req.params.roomId, req.params.receiptType, req.params.eventId
  if not TYPES[rtype] then
    return errors.new("M_INVALID_PARAM", "Unknown receipt type " .. rtype)
  end
  local body = req:json()    -- M_NOT_JSON / M_BAD_JSON unless an object
  local thread_id = body.thread_id
  if ljson.is_null(thread_id) then thread_id = nil end
  if thread_id ~= nil then
    if type(thread_id) ~= "string" or thread_id == "" or #thread_id > 255 then
      return errors.new("M_INVALID_PARAM", "thread_id must be a non-empty string")
    end
    if rtype == "m.fully_read" then
      return errors.new("M_INVALID_PARAM", "m.fully_read cannot be threaded")
    end
  end
  local denied = check_room(hs, req, room_id)
  if denied then return denied end
  local err = mark(hs, req, room_id, rtype, event_id, thread_id)
  if err then return err end
  return {}
end

local function read_markers(hs, req)
  local room_id = req.params.roomId
  local body = req:json()
  for _, k in ipairs { "m.fully_read", "m.read", "m.read.private" } do
    local v = body[k]
    if v ~= nil and not ljson.is_null(v) and type(v) ~= "string" then
      return errors.new("M_INVALID_PARAM", k .. " must be an event ID")
    end
  end
  local denied = check_room(hs, req, room_id)
  if denied then return denied end
  -- check every event before recording any
  for _, k in ipairs { "m.fully_read", "m.read", "m.read.private" } do
    local v = body[k]
    if type(v) == "string" then
      local pos, err = event_stream(hs, req, room_id, v)
      if not pos then return err end
    end
  end
  for _, k in ipairs { "m.fully_read", "m.read", "m.read.private" } do
    local v = body[k]
    if type(v) == "string" then
      local err = mark(hs, req, room_id, k, v, nil)
      if err then return err end
    end
  end
  return {}
end

receipts_api.routes = {
  { "POST", V3 .. "/rooms/{roomId}/receipt/{receiptType}/{eventId}", receipt, auth = true },
  { "POST", V3 .. "/rooms/{roomId}/read_markers", read_markers, auth = true },
}

return receipts_api
