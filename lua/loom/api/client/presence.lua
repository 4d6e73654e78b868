-- loom.api.client.presence: the Client-Server API "Presence" endpoints,
-- GET and PUT /presence/{userId}/status. PUT sets one's own presence
-- ({ presence = "online"|"unavailable"|"offline", status_msg = string });
-- GET answers { presence, last_active_ago, currently_active, status_msg }
-- for oneself and for users who share a joined room with the caller (403
-- otherwise, as Synapse does; 404 for an unknown user). Presence lives in
-- hs.presence (loom.sync.presence) and reaches /sync as m.presence events.
-- With config.presence = false, PUT succeeds and changes nothing and GET
-- answers offline. See docs/presence.md.
local errors = require "loom.http.errors"
local ljson = require "loom.json"
local store_filter = require "loom.store.filter"
local presence = require "loom.sync.presence"

local type = type

local _ENV = nil -- luacheck: ignore 211

local presence_api = {}

local V3 = "/_matrix/client/v3"

local function put(hs, req)
  local user_id = req.params.userId
  if user_id ~= req.user_id then
    return errors.new("M_FORBIDDEN", "Can only set your own presence state")
  end
  local body = req:json()    -- M_NOT_JSON / M_BAD_JSON unless an object
  local state, status_msg = body.presence, body.status_msg
  if type(state) ~= "string" then return errors.new("M_BAD_JSON", "presence must be a string") end
  if not presence.STATES[state] then
    return errors.new("M_INVALID_PARAM", "presence must be one of online, unavailable, offline")
  end
  if ljson.is_null(status_msg) then status_msg = nil end
  if status_msg ~= nil and type(status_msg) ~= "string" then
    return errors.new("M_BAD_JSON", "status_msg must be a string")
  end
  if status_msg == "" then status_msg = nil end
  hs.presence:set(req.user_id, state, status_msg)
  return {}
end

local function get(hs, req)
  local user_id = req.params.userId
  if not store_filter.is_id("user", user_id) then
    return errors.new("M_INVALID_PARAM", user_id .. " is not a valid user ID")
  end
  local local_part = user_id:match("^@[^:]+:(.+)$") == hs.server_name
  local u = local_part and hs.accounts:user(user_id)
  if not u or u.deactivated then return errors.new("M_NOT_FOUND", "Unknown user") end
  if user_id ~= req.user_id and not hs.store:share_room(req.user_id, user_id) then
    return errors.new("M_FORBIDDEN", "You are not allowed to see their presence")
  end
  return hs.presence:content(user_id)
end

presence_api.routes = {
  { "GET", V3 .. "/presence/{userId}/status", get, auth = true },
  { "PUT", V3 .. "/presence/{userId}/status", put, auth = true },
}

return presence_api
