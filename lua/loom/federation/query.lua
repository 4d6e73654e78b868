-- loom.federation.query: asking other servers about their users and
-- aliases (the client side of /query/profile and /query/directory).
--
--   local query = require "loom.federation.query"
--   local p, err = query.profile(hs, "@bob:other.example", "displayname")  -- in a task
--   local d, err = query.directory(hs, "#room:other.example")   -- { room_id, servers }
--   local page, err = query.public_rooms(hs, "other.example", { limit, since, term })
--
-- Answers are checked (strings only, at most 1000 servers); failures are
-- Matrix errors: the other server's 404 is M_NOT_FOUND, a server that does
-- not answer (or answers nonsense) 502 M_UNKNOWN, as in Synapse.
local type, ipairs, tostring = type, ipairs, tostring
local math_type = math.type
local core = require "loom.core"
local ljson = require "loom.json"
local errors = require "loom.http.errors"

local array = core.json.array
local is_object, is_array = ljson.is_object, ljson.is_array

local _ENV = nil -- luacheck: ignore 211

local query = {}

local MAX_SERVERS = 1000

local function failed(what, status, body)
  if status == 404 then return errors.new("M_NOT_FOUND", what .. " not found") end
  if status == 403 then return errors.new("M_FORBIDDEN", what .. ": refused by its server") end
  local e = errors.new("M_UNKNOWN", "Failed to fetch " .. what .. ": " .. tostring(status or body))
  e.status = 502
  return e
end

local function server_of(id)
  return type(id) == "string" and id:match("^.[^:]*:(.+)$") or nil
end

--- query.profile(hs, user_id, [field]) -> { displayname, avatar_url } | nil, error
function query.profile(hs, user_id, field)
  local server = server_of(user_id)
  if not server then return nil, errors.new("M_INVALID_PARAM", "Invalid user ID") end
  local status, body = hs.federation:request(server, "GET", "/_matrix/federation/v1/query/profile",
    { query = { user_id = user_id, field = field } })
  if status ~= 200 or not is_object(body) then return nil, failed("profile", status, body) end
  local out = {}
  for _, f in ipairs { "displayname", "avatar_url" } do
    if (not field or f == field) and type(body[f]) == "string" then out[f] = body[f] end
  end
  return out
end

--- query.directory(hs, alias) -> { room_id, servers } | nil, error
function query.directory(hs, alias)
  local server = server_of(alias)
  if not server then return nil, errors.new("M_INVALID_PARAM", "Invalid room alias") end
  local status, body = hs.federation:request(server, "GET", "/_matrix/federation/v1/query/directory",
    { query = { room_alias = alias } })
  if status ~= 200 or not is_object(body) then return nil, failed("room alias " .. alias, status, body) end
  local room_id = body.room_id
  if type(room_id) ~= "string" or not room_id:match("^![^:]+:.+$") or #room_id > 255 then
    return nil, failed("room alias " .. alias, "an answer without a room ID")
  end
  local servers = array {}
  if is_array(body.servers) then
    for _, s in ipairs(body.servers) do
      if type(s) == "string" and #s > 0 and #s <= 255 and #servers < MAX_SERVERS then servers[#servers + 1] = s end
    end
  end
  if #servers == 0 then servers[1] = server end
  return { room_id = room_id, servers = servers }
end

--- query.public_rooms(hs, server, { limit, since, term }) -> the server's
-- /publicRooms page { chunk, next_batch?, prev_batch?,
-- total_room_count_estimate? } | nil, error. A term makes it a POST with
-- filter.generic_search_term. Entries that are not objects with a room_id
-- are left out.
function query.public_rooms(hs, server, opts)
  local path = "/_matrix/federation/v1/publicRooms"
  local status, body
  if opts.term then
    status, body = hs.federation:request(server, "POST", path, { body = { limit = opts.limit, since = opts.since,
      filter = { generic_search_term = opts.term } } })
  else
    status, body = hs.federation:request(server, "GET", path,
      { query = { limit = opts.limit and tostring(opts.limit) or nil, since = opts.since } })
  end
  if status ~= 200 or not is_object(body) then return nil, failed("the room directory of " .. server, status, body) end
  local chunk = array {}
  if is_array(body.chunk) then
    for _, e in ipairs(body.chunk) do
      if is_object(e) and type(e.room_id) == "string" then chunk[#chunk + 1] = e end
    end
  end
  local out = { chunk = chunk }
  for _, k in ipairs { "next_batch", "prev_batch" } do
    if type(body[k]) == "string" then out[k] = body[k] end
  end
  if math_type(body.total_room_count_estimate) == "integer" then
    out.total_room_count_estimate = body.total_room_count_estimate
  end
  return out
end

return query
