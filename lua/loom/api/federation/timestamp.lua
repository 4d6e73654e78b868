-- loom.api.federation.timestamp: jumping to a date over federation
-- (Server-Server API, "Timestamp to event").
--
--   GET /_matrix/federation/v1/timestamp_to_event/{roomId}?ts=&dir=f|b
--
-- Signed by its origin (X-Matrix), whose server must have a user joined to
-- the room (else 403 M_FORBIDDEN) and pass its server ACL. Answers the
-- timeline event closest to ts in the direction asked: { event_id,
-- origin_server_ts }, or 404 M_NOT_FOUND when there is none.
local errors = require "loom.http.errors"
local acl = require "loom.federation.acl"

local _ENV = nil -- luacheck: ignore 211

local timestamp = {}

local MAX_TS = 9007199254740991

local function timestamp_to_event(hs, req)
  local room_id = req.params.roomId
  if req:arg("ts") == nil then return errors.new("M_MISSING_PARAM", "Missing parameter: ts") end
  local ts = req:arg_integer("ts", nil, 0, MAX_TS)
  local dir = req:arg("dir")
  if dir == nil then return errors.new("M_MISSING_PARAM", "Missing parameter: dir") end
  if dir ~= "f" and dir ~= "b" then return errors.new("M_INVALID_PARAM", "dir must be 'f' or 'b'") end
  local store = hs.store
  local rn = store:room_nid(room_id)
  if not rn then return errors.new("M_NOT_FOUND", "Unknown room") end
  local denied = acl.check(hs, room_id, req.origin)
  if denied then return denied end
  if not store:host_joined(rn, req.origin) then return errors.new("M_FORBIDDEN", "Host not in room") end
  local id = store:events_near_ts(room_id, ts, dir, 1, 0)[1]
  local ev = id and store:event(id)
  if not ev then
    return errors.new("M_NOT_FOUND", "Unable to find event from " .. ts .. " in direction " .. dir)
  end
  return { event_id = id, origin_server_ts = ev.origin_server_ts }
end

timestamp.routes = {
  { "GET", "/_matrix/federation/v1/timestamp_to_event/{roomId}", timestamp_to_event, auth = "server" },
}

return timestamp
