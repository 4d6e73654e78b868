-- loom.api.client.typing: the Client-Server API "Typing Notifications"
-- endpoint, PUT /rooms/{roomId}/typing/{userId} with { typing = bool,
-- timeout = ms } (timeout 30 s when left out, as Synapse does; capped at 120 s). Only for
-- oneself, only in a joined room. The typing set lives in hs.typing
-- (loom.sync.typing) and reaches /sync as the room's m.typing ephemeral
-- event. See docs/sync.md.
local errors = require "loom.http.errors"
local ljson = require "loom.json"
local store_filter = require "loom.store.filter"

local type, math_type = type, math.type

local _ENV = nil -- luacheck: ignore 211

local typing_api = {}

local V3 = "/_matrix/client/v3"
local DEFAULT_TIMEOUT = 30000

local function is_joined(hs, room_id, user_id)
  local ev = hs.rooms:state_event(room_id, "m.room.member", user_id)
  return ev ~= nil and ljson.is_object(ev.content) and ev.content.membership == "join"
end

local function put(hs, req)
  local room_id, user_id = req.params.roomId, req.params.userId
  if user_id ~= req.user_id then
    return errors.new("OTHER_USERS_TYPING")
  end
  if not store_filter.is_id("room", room_id) then
    return errors.new("M_INVALID_PARAM", room_id .. " is not a valid room ID")
  end
  local body = req:json()    -- M_NOT_JSON / M_BAD_JSON unless an object
  local is_typing, timeout = body.typing, body.timeout
  if type(is_typing) ~= "boolean" then return errors.new("M_BAD_JSON", "typing must be a boolean") end
  if is_typing then
    if timeout == nil or ljson.is_null(timeout) then timeout = DEFAULT_TIMEOUT end
    if math_type(timeout) ~= "integer" or timeout < 0 then
      return errors.new("M_BAD_JSON", "timeout must be a non-negative integer")
    end
  end
  if not is_joined(hs, room_id, req.user_id) then
    return errors.new("M_FORBIDDEN", "You are not in this room")
  end
  hs.typing:set(room_id, req.user_id, is_typing, timeout)
  if hs.sender then
    hs.sender:room_edu(room_id, "m.typing", { room_id = room_id, user_id = req.user_id, typing = is_typing })
  end
  return {}
end

typing_api.routes = {
  { "PUT", V3 .. "/rooms/{roomId}/typing/{userId}", put, auth = true },
}

return typing_api
