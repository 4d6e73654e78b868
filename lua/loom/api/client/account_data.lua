-- loom.api.client.account_data: the Client-Server API "Client Config" and
-- "Room Tagging" endpoints: GET/PUT /user/{userId}/account_data/{type},
-- GET/PUT /user/{userId}/rooms/{roomId}/account_data/{type},
-- GET /user/{userId}/rooms/{roomId}/tags and
-- PUT/DELETE /user/{userId}/rooms/{roomId}/tags/{tag}. Tags are the m.tag
-- room account data ({ tags = { [tag] = { order = 0..1 } } }). A change shows
-- in /sync (account_data sections) and wakes the user's waiting /sync.
-- See docs/api-client-account.md.
local core = require "loom.core"
local errors = require "loom.http.errors"
local ljson = require "loom.json"
local store_filter = require "loom.store.filter"

local json = core.json
local type, pairs = type, pairs

local _ENV = nil -- luacheck: ignore 211

local account_data_api = {}

local V3 = "/_matrix/client/v3"
local MAX_TYPE = 255

-- Types the server controls: not settable through this API (405 M_BAD_JSON).
local SERVER_TYPES = { ["m.fully_read"] = true, ["m.push_rules"] = true }

local function forbidden() return errors.new("M_FORBIDDEN", "Cannot access account data of other users") end

-- The path's user must be the requester; room paths need a valid room ID.
-- Returns room_id (or nil for global) or nil, error.
local function check_target(req)
  if req.params.userId ~= req.user_id then return nil, forbidden() end
  local room_id = req.params.roomId
  if room_id ~= nil and not store_filter.is_id("room", room_id) then
    return nil, errors.new("M_INVALID_PARAM", room_id .. " is not a valid room ID")
  end
  return room_id or false
end

local function check_type(t)
  if #t == 0 or #t > MAX_TYPE then
    return errors.new("M_INVALID_PARAM", "Account data type must be 1 to 255 bytes")
  end
end

local function encode(v) return json.encode(v, { floats = true }) end

-- The global m.ignored_user_list (Client-Server API "Ignoring Users"):
-- `ignored_users` must be an object whose keys are user IDs, each mapped to
-- an object (400 M_BAD_JSON otherwise); nobody may ignore themselves (400
-- M_INVALID_PARAM: Synapse 1.67 took it, and it hides their own events). Returns an error or nil.
local function check_ignored_list(user_id, content)
  local list = content.ignored_users
  if not ljson.is_object(list) then return errors.new("M_BAD_JSON", "ignored_users must be an object") end
  for who, v in pairs(list) do
    if type(who) ~= "string" or not store_filter.is_id("user", who) then
      return errors.new("M_BAD_JSON", "ignored_users keys must be user IDs")
    end
    if not ljson.is_object(v) then return errors.new("M_BAD_JSON", "ignored_users values must be objects") end
    if who == user_id then return errors.new("M_INVALID_PARAM", "You cannot ignore yourself") end
  end
  return nil
end

local function get(hs, req)
  local room_id, err = check_target(req)
  if room_id == nil then return err end
  local text = hs.store:account_data(req.user_id, room_id or nil, req.params.type)
  if not text then
    return errors.new("M_NOT_FOUND", room_id and "Room account data not found" or "Account data not found")
  end
  return json.decode(text)
end

local function put(hs, req)
  local room_id, err = check_target(req)
  if room_id == nil then return err end
  local t = req.params.type
  local terr = check_type(t)
  if terr then return terr end
  local content = req:json()    -- M_NOT_JSON / M_BAD_JSON unless an object
  if SERVER_TYPES[t] then
    return errors.new("ACCOUNT_DATA_SERVER_TYPE", "Cannot set " .. t .. " through this API")
  end
  if t == "m.ignored_user_list" and not room_id then
    local bad = check_ignored_list(req.user_id, content)
    if bad then return bad end
  end
  local text, msg = encode(content)
  if not text then return errors.new("M_BAD_JSON", msg) end
  hs.store:set_account_data(req.user_id, room_id or nil, t, text)
  return {}
end

-- The room's tags: { [tag] = { order = ... } } (empty when none).
local function room_tags(hs, user_id, room_id)
  local text = hs.store:account_data(user_id, room_id, "m.tag")
  local content = text and json.decode(text)
  local tags = ljson.is_object(content) and ljson.is_object(content.tags) and content.tags or {}
  local out = {}
  for k, v in pairs(tags) do out[k] = ljson.is_object(v) and v or {} end
  return out
end

local function get_tags(hs, req)
  local room_id, err = check_target(req)
  if room_id == nil then return err end
  return { tags = room_tags(hs, req.user_id, room_id) }
end

local function put_tag(hs, req)
  local room_id, err = check_target(req)
  if room_id == nil then return err end
  local tag = req.params.tag
  if #tag == 0 or #tag > MAX_TYPE then return errors.new("M_INVALID_PARAM", "Tag must be 1 to 255 bytes") end
  local body = req:json()
  local order = body.order
  if order ~= nil and order ~= json.null then
    if type(order) ~= "number" or order ~= order then
      return errors.new("M_BAD_JSON", "order must be a number")
    end
    if order < 0 or order > 1 then return errors.new("M_INVALID_PARAM", "order must be in 0..1") end
  end
  local tags = room_tags(hs, req.user_id, room_id)
  local entry = {}
  for k, v in pairs(body) do entry[k] = v end
  if entry.order == json.null then entry.order = nil end
  tags[tag] = entry
  local text, msg = encode { tags = tags }
  if not text then return errors.new("M_BAD_JSON", msg) end
  hs.store:set_account_data(req.user_id, room_id, "m.tag", text)
  return {}
end

local function delete_tag(hs, req)
  local room_id, err = check_target(req)
  if room_id == nil then return err end
  local tags = room_tags(hs, req.user_id, room_id)
  if tags[req.params.tag] ~= nil then
    tags[req.params.tag] = nil
    hs.store:set_account_data(req.user_id, room_id, "m.tag", encode { tags = tags })
  end
  return {}
end

--- The endpoints: { method, path, handler(hs, req), auth = bool }, installed
-- by loom.api.install.
account_data_api.routes = {
  { "GET", V3 .. "/user/{userId}/account_data/{type}", get, auth = true },
  { "PUT", V3 .. "/user/{userId}/account_data/{type}", put, auth = true },
  { "GET", V3 .. "/user/{userId}/rooms/{roomId}/account_data/{type}", get, auth = true },
  { "PUT", V3 .. "/user/{userId}/rooms/{roomId}/account_data/{type}", put, auth = true },
  { "GET", V3 .. "/user/{userId}/rooms/{roomId}/tags", get_tags, auth = true },
  { "PUT", V3 .. "/user/{userId}/rooms/{roomId}/tags/{tag}", put_tag, auth = true },
  { "DELETE", V3 .. "/user/{userId}/rooms/{roomId}/tags/{tag}", delete_tag, auth = true },
}

return account_data_api
