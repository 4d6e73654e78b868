-- loom.api.guest: what a guest account may call (Client-Server API "Guest
-- Access", client behaviour). loom.api.install_routes lets a guest's token
-- through to the routes listed here (or marked guest = true); any other
-- route that needs a token answers 403 M_GUEST_ACCESS_FORBIDDEN.
--
--   guest.allowed("GET", "/_matrix/client/v3/sync")   --> true
--
-- The spec's list (reading, joining, sending, own account maintenance,
-- end-to-end keys), plus what Synapse also lets guests do and clients need
-- on their way: capabilities, push rules (read), joined rooms, filters,
-- and their own account data and room tags.
local statemap = require "loom.room.statemap"
local ljson = require "loom.json"

local pairs, tostring = pairs, tostring

local _ENV = nil -- luacheck: ignore 211

local guest = {}

local V3 = "/_matrix/client/v3"
local R = V3 .. "/rooms/{roomId}"

local list = {
  -- retrieving events
  "GET " .. V3 .. "/sync",
  "GET " .. R .. "/state",
  "GET " .. R .. "/state/{eventType}",
  "GET " .. R .. "/state/{eventType}/",
  "GET " .. R .. "/state/{eventType}/{stateKey}",
  "GET " .. R .. "/context/{eventId}",
  "GET " .. R .. "/event/{eventId}",
  "GET " .. R .. "/messages",
  "GET " .. R .. "/members",
  "GET " .. R .. "/initialSync",
  "GET " .. V3 .. "/events",
  -- sending events
  "POST " .. R .. "/join",
  "POST " .. V3 .. "/join/{roomIdOrAlias}",
  "POST " .. R .. "/leave",
  "PUT " .. R .. "/send/{eventType}/{txnId}",
  "PUT " .. R .. "/state/{eventType}",
  "PUT " .. R .. "/state/{eventType}/",
  "PUT " .. R .. "/state/{eventType}/{stateKey}",
  "PUT " .. V3 .. "/sendToDevice/{eventType}/{txnId}",
  -- own account maintenance
  "PUT " .. V3 .. "/profile/{userId}/displayname",
  "GET " .. V3 .. "/devices",
  "GET " .. V3 .. "/devices/{deviceId}",
  "PUT " .. V3 .. "/devices/{deviceId}",
  "GET " .. V3 .. "/account/whoami",
  -- end-to-end encryption
  "POST " .. V3 .. "/keys/upload",
  "POST " .. V3 .. "/keys/query",
  "POST " .. V3 .. "/keys/claim",
  -- Synapse's additions
  "GET " .. V3 .. "/capabilities",
  "GET " .. V3 .. "/pushrules",
  "GET " .. V3 .. "/pushrules/",
  "GET " .. V3 .. "/pushrules/global/",
  "GET " .. V3 .. "/pushrules/global/{kind}/{ruleId}",
  "GET " .. V3 .. "/pushrules/global/{kind}/{ruleId}/enabled",
  "GET " .. V3 .. "/pushrules/global/{kind}/{ruleId}/actions",
  "GET " .. V3 .. "/joined_rooms",
  "POST " .. V3 .. "/user/{userId}/filter",
  "GET " .. V3 .. "/user/{userId}/filter/{filterId}",
  "GET " .. V3 .. "/user/{userId}/account_data/{type}",
  "PUT " .. V3 .. "/user/{userId}/account_data/{type}",
  "GET " .. V3 .. "/user/{userId}/rooms/{roomId}/account_data/{type}",
  "PUT " .. V3 .. "/user/{userId}/rooms/{roomId}/account_data/{type}",
  "GET " .. V3 .. "/user/{userId}/rooms/{roomId}/tags",
  "PUT " .. V3 .. "/user/{userId}/rooms/{roomId}/tags/{tag}",
  "DELETE " .. V3 .. "/user/{userId}/rooms/{roomId}/tags/{tag}",
}
local set = {}
for i = 1, #list do set[list[i]] = true end
guest.routes = list

--- May a guest call the route (its method and path pattern, as registered)?
function guest.allowed(method, path)
  return set[method .. " " .. path] == true
end

-- The spec's server behaviour: when a room's m.room.guest_access stops
-- being can_join, the local guests joined to it leave (each sends its own
-- leave, as Synapse does).
local function kick_guests(hs, ev)
  if ev.type ~= "m.room.guest_access" or ev.state_key ~= "" then return end
  if ljson.is_object(ev.content) and ev.content.guest_access == "can_join" then return end
  local room_id = ev.room_id
  local now = hs.rooms:state_event(room_id, "m.room.guest_access", "")
  if now and ljson.is_object(now.content) and now.content.guest_access == "can_join" then return end
  local suffix = ":" .. hs.server_name
  local state = hs.rooms:current_state(room_id)
  if not state then return end
  for k in pairs(state) do
    local t, user_id = statemap.split(k)
    if t == "m.room.member" and user_id:sub(-#suffix) == suffix then
      local u = hs.accounts:user(user_id)
      local m = u and u.is_guest and hs.rooms:state_event(room_id, "m.room.member", user_id)
      if m and ljson.is_object(m.content) and m.content.membership == "join" then
        local left, err, code = hs.rooms:send(room_id, { type = "m.room.member", state_key = user_id,
          sender = user_id, content = { membership = "leave" } })
        if not left then
          hs.server:log("warn", "guest %s could not leave %s: %s (%s)", user_id, room_id, tostring(err),
            tostring(code))
        end
      end
    end
  end
end

--- With config.allow_guest_access: guests leave the rooms that stop
-- letting guests join (an observer of room/event/persisted).
function guest.install(hs)
  if hs.config.allow_guest_access ~= true then return end
  hs.server:hook("room/event/persisted", function(ev) kick_guests(hs, ev) end)
end

return guest
