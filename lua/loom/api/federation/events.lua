-- loom.api.federation.events: what other servers read of a room's graph.
--
--   GET  /_matrix/federation/v1/event/{eventId}
--   GET  /_matrix/federation/v1/state/{roomId}?event_id=
--   GET  /_matrix/federation/v1/state_ids/{roomId}?event_id=
--   GET  /_matrix/federation/v1/event_auth/{roomId}/{eventId}
--   GET  /_matrix/federation/v1/backfill/{roomId}?v=&limit=
--   POST /_matrix/federation/v1/get_missing_events/{roomId}
--
-- Every request is signed by its origin (X-Matrix), whose server must have
-- a user joined to the room now (else 403 M_FORBIDDEN), and passes the
-- room's server ACL. Events go out as PDUs; what the origin's users could
-- not see (history visibility) goes out redacted, so the graph stays whole.
-- State "at" an event is the state before it. The walks of /backfill and
-- /get_missing_events are one SQL statement each (loom.store.dag).
local type, ipairs, setmetatable, tostring = type, ipairs, setmetatable, tostring
local math_type = math.type
local core = require "loom.core"
local ljson = require "loom.json"
local errors = require "loom.http.errors"
local event_mod = require "loom.room.event"
local stateres = require "loom.room.stateres"
local visibility = require "loom.room.visibility"
local acl = require "loom.federation.acl"

local array_mt, now_ms = core.json.array_mt, core.now_ms
local is_array = ljson.is_array

local _ENV = nil -- luacheck: ignore 211

local events = {}

local MAX_BACKFILL = 100
local MAX_MISSING = 20
local MAX_IDS = 100          -- event IDs named in one request

local function array(t) return setmetatable(t, array_mt) end

local function not_found(what) return errors.new("M_NOT_FOUND", what) end

-- The room, checked for the origin: room_nid, version | nil, error.
local function room_for(hs, req, room_id)
  local store = hs.store
  local rn = store:room_nid(room_id)
  if not rn then return nil, not_found("Unknown room") end
  local denied = acl.check(hs, room_id, req.origin)
  if denied then return nil, denied end
  if not store:host_joined(rn, req.origin) then
    return nil, errors.new("M_FORBIDDEN", "Host not in room")
  end
  return rn, store:room_version(room_id)
end

local function pdus(list)
  local out = array {}
  for i, ev in ipairs(list) do out[i] = event_mod.pdu(ev) end
  return out
end

-- Decoded events for NIDs, in order.
local function by_nids(store, nids)
  local loaded = store:events_by_nid(nids)
  local out = {}
  for _, n in ipairs(nids) do
    local hit = loaded[n]
    if hit then out[#out + 1] = hit[1] end
  end
  return out
end

-- The auth chain (IDs) of event_ids, each event loaded from the store.
local function auth_chain_ids(hs, event_ids)
  local store = hs.store
  local ids, msg = stateres.auth_chain(event_ids, function(id) return (store:event(id)) end)
  if not ids then hs.server:log("warn", "auth chain: %s", tostring(msg)); return {} end
  return ids
end

local function events_by_ids(store, ids)
  local out = {}
  for _, id in ipairs(ids) do
    local ev = store:event(id)
    if ev then out[#out + 1] = ev end
  end
  return out
end

local function get_event(hs, req)
  local store = hs.store
  local ev, meta = store:event(req.params.eventId)
  if not ev then return not_found("Event not found") end
  local rn, version = room_for(hs, req, meta.room_id)
  if not rn then return version end
  local shown = visibility.for_server(hs, req.origin, meta.room_id, { ev }, version)
  return { origin = hs.server_name, origin_server_ts = now_ms(), pdus = pdus(shown) }
end

-- The event named by ?event_id= in the room: event, meta | nil, error.
local function event_in_room(hs, req, room_id)
  local id = req:arg("event_id")
  if type(id) ~= "string" then return nil, errors.new("M_MISSING_PARAM", "event_id is required") end
  local ev, meta = hs.store:event(id)
  if not ev or meta.room_id ~= room_id then return nil, not_found("Event not found in this room") end
  return meta
end

-- The state before an event: event IDs, or nil, error.
local function state_before(hs, meta)
  local store = hs.store
  local before = store:event_state(meta.event_nid)
  if not before then return nil, not_found("No state recorded for this event") end
  local st = store:load_state(before)
  local _, _, nids = st:entries()
  local out = {}
  for _, ev in ipairs(by_nids(store, nids)) do out[#out + 1] = ev.event_id end
  return out
end

local function state_ids(hs, req)
  local room_id = req.params.roomId
  local rn, version = room_for(hs, req, room_id)
  if not rn then return version end
  local meta, merr = event_in_room(hs, req, room_id)
  if not meta then return merr end
  local ids, err = state_before(hs, meta)
  if not ids then return err end
  return { pdu_ids = array(ids), auth_chain_ids = array(auth_chain_ids(hs, ids)) }
end

local function state(hs, req)
  local room_id = req.params.roomId
  local rn, version = room_for(hs, req, room_id)
  if not rn then return version end
  local meta, merr = event_in_room(hs, req, room_id)
  if not meta then return merr end
  local ids, err = state_before(hs, meta)
  if not ids then return err end
  local store = hs.store
  return { pdus = pdus(events_by_ids(store, ids)),
           auth_chain = pdus(events_by_ids(store, auth_chain_ids(hs, ids))) }
end

local function event_auth(hs, req)
  local room_id = req.params.roomId
  local rn, version = room_for(hs, req, room_id)
  if not rn then return version end
  local ev, meta = hs.store:event(req.params.eventId)
  if not ev or meta.room_id ~= room_id then return not_found("Event not found in this room") end
  local auth_ids = is_array(ev.auth_events) and ev.auth_events or {}
  return { auth_chain = pdus(events_by_ids(hs.store, auth_chain_ids(hs, auth_ids))) }
end

local function backfill(hs, req)
  local room_id = req.params.roomId
  local rn, version = room_for(hs, req, room_id)
  if not rn then return version end
  local v = req.args and req.args.v
  if type(v) ~= "table" or #v == 0 then return errors.new("M_MISSING_PARAM", "v is required") end
  if #v > MAX_IDS then return errors.new("M_INVALID_PARAM", "Too many events in v") end
  local limit = req:arg_integer("limit", nil, 0)
  if not limit then return errors.new("M_MISSING_PARAM", "limit is required") end
  if limit > MAX_BACKFILL then limit = MAX_BACKFILL end
  local store = hs.store
  local list = by_nids(store, store:backfill_walk(rn, v, limit))
  local shown = visibility.for_server(hs, req.origin, room_id, list, version)
  return { origin = hs.server_name, origin_server_ts = now_ms(), pdus = pdus(shown) }
end

local function id_list(body, name, required)
  local v = body[name]
  if v == nil and not required then return {} end
  if not is_array(v) or #v > MAX_IDS then return nil end
  for _, id in ipairs(v) do if type(id) ~= "string" then return nil end end
  return v
end

local function missing_events(hs, req)
  local room_id = req.params.roomId
  local rn, version = room_for(hs, req, room_id)
  if not rn then return version end
  local body = req:json()
  local earliest = id_list(body, "earliest_events", true)
  local latest = id_list(body, "latest_events", true)
  if not earliest or not latest then
    return errors.new("M_BAD_JSON", "earliest_events and latest_events must be arrays of event IDs")
  end
  local limit = body.limit == nil and 10 or body.limit
  local min_depth = body.min_depth == nil and 0 or body.min_depth
  if math_type(limit) ~= "integer" or limit < 0 or math_type(min_depth) ~= "integer" then
    return errors.new("M_BAD_JSON", "limit and min_depth must be integers")
  end
  if limit > MAX_MISSING then limit = MAX_MISSING end
  local store = hs.store
  local list = by_nids(store, store:missing_events_walk(rn, earliest, latest, min_depth, limit))
  local shown = visibility.for_server(hs, req.origin, room_id, list, version)
  return { events = pdus(shown) }
end

local F = "/_matrix/federation/v1"
events.routes = {
  { "GET", F .. "/event/{eventId}", get_event, auth = "server" },
  { "GET", F .. "/state/{roomId}", state, auth = "server" },
  { "GET", F .. "/state_ids/{roomId}", state_ids, auth = "server" },
  { "GET", F .. "/event_auth/{roomId}/{eventId}", event_auth, auth = "server" },
  { "GET", F .. "/backfill/{roomId}", backfill, auth = "server" },
  { "POST", F .. "/get_missing_events/{roomId}", missing_events, auth = "server" },
}

return events
