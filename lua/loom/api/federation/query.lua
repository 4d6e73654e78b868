-- loom.api.federation.query: what other servers may ask about this one's
-- users, aliases and room directory (Server-Server API "Querying for
-- information" and "Public Room Directory").
--
--   GET  /_matrix/federation/v1/query/profile?user_id=&field=
--   GET  /_matrix/federation/v1/query/directory?room_alias=
--   GET  /_matrix/federation/v1/publicRooms?limit=&since=
--   POST /_matrix/federation/v1/publicRooms { limit, since, filter }
--
-- A user or alias of another server is 400 M_INVALID_PARAM; one this server
-- does not know (or a deactivated user) is 404 M_NOT_FOUND, as in Synapse.
-- The directory answer lists the servers joined to the room, this one first.
local type, ipairs = type, ipairs
local core = require "loom.core"
local errors = require "loom.http.errors"
local ljson = require "loom.json"
local directory = require "loom.api.client.directory"

local array = core.json.array
local is_object, is_null = ljson.is_object, ljson.is_null

local _ENV = nil -- luacheck: ignore 211

local query = {}

local FIELDS = { displayname = true, avatar_url = true }

local function domain_of(id, sigil)
  return type(id) == "string" and id:sub(1, 1) == sigil and id:match("^.[^:]*:(.+)$") or nil
end

local function profile(hs, req)
  local user_id, field = req:arg("user_id"), req:arg("field")
  if not user_id then return errors.new("M_MISSING_PARAM", "user_id is required") end
  if field ~= nil and not FIELDS[field] then return errors.new("M_INVALID_PARAM", "Unknown profile field") end
  if domain_of(user_id, "@") ~= hs.server_name then
    return errors.new("M_INVALID_PARAM", "The user does not belong to this server")
  end
  local u = hs.accounts:user(user_id)
  if not u or u.deactivated then return errors.new("M_NOT_FOUND", "Profile not found") end
  if field then return { [field] = u[field] } end
  return { displayname = u.displayname, avatar_url = u.avatar_url }
end

local function alias_directory(hs, req)
  local alias = req:arg("room_alias")
  if not alias then return errors.new("M_MISSING_PARAM", "room_alias is required") end
  if not directory.valid_alias(alias) then return errors.new("M_INVALID_PARAM", "Invalid room alias") end
  if domain_of(alias, "#") ~= hs.server_name then
    return errors.new("M_INVALID_PARAM", "The alias does not belong to this server")
  end
  local room_id = directory.resolve_or_query(hs, alias)
  if not room_id then return errors.new("M_NOT_FOUND", "Room alias " .. alias .. " not found") end
  local servers = array { hs.server_name }
  for _, s in ipairs(hs.store:servers_in_room(room_id)) do
    if s ~= hs.server_name then servers[#servers + 1] = s end
  end
  return { room_id = room_id, servers = servers }
end

local function get_public_rooms(hs, req)
  local limit = req:arg("limit") and req:arg_integer("limit", nil, 0)
  return directory.public_rooms(hs, limit, req:arg("since"), nil)
end

local function post_public_rooms(hs, req)
  local body = req:json()
  local function field(t, k)
    local v = t[k]
    if is_null(v) then return nil end
    return v
  end
  local filter = field(body, "filter")
  if filter ~= nil and not is_object(filter) then return errors.new("M_BAD_JSON", "filter must be an object") end
  local term = filter and field(filter, "generic_search_term")
  if term ~= nil and type(term) ~= "string" then
    return errors.new("M_BAD_JSON", "generic_search_term must be a string")
  end
  return directory.public_rooms(hs, field(body, "limit"), field(body, "since"), term)
end

local F1 = "/_matrix/federation/v1"
query.routes = {
  { "GET", F1 .. "/query/profile", profile, auth = "server" },
  { "GET", F1 .. "/query/directory", alias_directory, auth = "server" },
  { "GET", F1 .. "/publicRooms", get_public_rooms, auth = "server" },
  { "POST", F1 .. "/publicRooms", post_public_rooms, auth = "server" },
}

return query
