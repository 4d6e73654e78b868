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

return guest
