-- loom.api.client.directory: room aliases, the room directory and
-- /publicRooms (Client-Server API). directory_api.routes is installed by loom.api.install.
--
--   PUT/GET/DELETE /directory/room/{roomAlias}
--   GET/PUT        /directory/list/room/{roomId}
--   GET            /rooms/{roomId}/aliases
--   GET/POST       /publicRooms
local core = require "loom.core"
local errors = require "loom.http.errors"
local auth = require "loom.room.auth"
local version_mod = require "loom.room.version"
local statemap = require "loom.room.statemap"
local ljson = require "loom.json"
local fed_query = require "loom.federation.query"
local as_api = require "loom.api.client.appservice"

local json = core.json
local is_null, is_array = ljson.is_null, ljson.is_array
local ipairs, pairs, type, tonumber, tostring = ipairs, pairs, type, tonumber, tostring
local table_sort = table.sort
local math = math

local _ENV = nil -- luacheck: ignore 211

local directory_api = {}

local P = "/_matrix/client/v3"

--- Is `alias` a well-formed room alias (#localpart:server, at most 255 bytes)?
function directory_api.valid_alias(alias)
  if type(alias) ~= "string" or #alias > 255 then return false end
  local localpart, server = alias:match("^#([^:]*):(.+)$")
  if not localpart or localpart == "" then return false end
  if localpart:find("[%s%z]") or server:find("[%s%z/]") then return false end
  return true
end

--- The room ID of a local alias, or nil.
function directory_api.resolve(hs, alias)
  return hs.store:alias_room(alias)
end

--- The room an alias names; an unknown local alias inside an application
-- service's namespace is asked of the service first (which may create it).
-- Inside a task.
function directory_api.resolve_or_query(hs, alias)
  local room_id = hs.store:alias_room(alias)
  if room_id or not hs.appservices or type(alias) ~= "string" or alias:match(":(.+)$") ~= hs.server_name then
    return room_id
  end
  if hs.appservices:query_alias(alias) then return hs.store:alias_room(alias) end
  return nil
end

--- Add an alias: true, or nil and "taken".
function directory_api.add_alias(hs, alias, room_id, creator)
  if not hs.store:add_alias(alias, room_id, creator) then return nil, "taken" end
  if hs.appservices then hs.appservices:aliases_changed(room_id) end
  return true
end

--- Set a room's directory visibility ("public" or "private").
function directory_api.set_visibility(hs, room_id, visibility)
  hs.store:set_room_visibility(room_id, visibility)
end

-- A state lookup function over the room's current state (for loom.room.auth).
local function state_fn(hs, room_id)
  return function(t, sk) return hs.rooms:state_event(room_id, t, sk) end
end

--- May `user_id` administer the room's aliases and directory entry: a server
-- admin, or a member with the power to send m.room.canonical_alias.
function directory_api.room_admin(hs, room_id, user_id)
  local u = hs.accounts:user(user_id)
  if u and u.admin then return true end
  local vid = hs.store:room_version(room_id)
  local version = vid and version_mod.get(vid)
  if not version then return false end
  local st = state_fn(hs, room_id)
  local member = st("m.room.member", user_id)
  if not (member and member.content and member.content.membership == "join") then return false end
  return auth.power_level(version, st, user_id) >= auth.required_level(version, st, "m.room.canonical_alias", true)
end

-- Does `alias` name a local alias of room_id? Aliases of other servers
-- cannot be resolved without federation, so they never do.
local function points_to(hs, alias, room_id)
  if not directory_api.valid_alias(alias) then return false end
  if alias:match("^#[^:]*:(.+)$") ~= hs.server_name then return false end
  return hs.store:alias_room(alias) == room_id
end

local function bad_alias(alias)
  local name = type(alias) == "string" and alias or "(not a string)"
  return errors.new("M_BAD_ALIAS", "Room alias " .. name .. " does not point to this room")
end

--- Check the content of an m.room.canonical_alias event a client sends:
-- every alias it adds (`alias` when changed, `alt_aliases` not in the
-- current event) must be a local alias of the room. Returns nil when the
-- content is acceptable, else a Matrix error (400 M_BAD_ALIAS, or
-- M_INVALID_PARAM when alt_aliases is not an array).
function directory_api.check_canonical_alias(hs, room_id, state_key, content)
  local old = hs.rooms:state_event(room_id, "m.room.canonical_alias", state_key)
  local old_content = old and type(old.content) == "table" and old.content or {}
  local alias = content.alias
  -- an empty alias means none (as in Synapse)
  if not is_null(alias) and alias ~= "" and alias ~= old_content.alias and not points_to(hs, alias, room_id) then
    return bad_alias(alias)
  end
  local alt = content.alt_aliases
  if is_null(alt) then return nil end
  if not is_array(alt) then return errors.new("M_INVALID_PARAM", "alt_aliases must be an array") end
  local present = {}
  if is_array(old_content.alt_aliases) then
    for _, a in ipairs(old_content.alt_aliases) do present[a] = true end
  end
  for _, a in ipairs(alt) do
    if not present[a] and not points_to(hs, a, room_id) then
      return bad_alias(a)
    end
  end
  return nil
end

-- After `alias` left the directory: drop it from the room's canonical alias
-- event (alias and alt_aliases) with a new event sent by `user_id`, as
-- Synapse does. When that user may not send it, the event stays as it is.
local function unlist_canonical(hs, room_id, alias, user_id)
  local ev = hs.rooms:state_event(room_id, "m.room.canonical_alias", "")
  if not (ev and type(ev.content) == "table") then return end
  local content, changed = {}, false
  for k, v in pairs(ev.content) do content[k] = v end
  if content.alias == alias then content.alias = nil; changed = true end
  if is_array(content.alt_aliases) then
    local kept = json.array {}
    for _, a in ipairs(content.alt_aliases) do
      if a == alias then changed = true else kept[#kept + 1] = a end
    end
    content.alt_aliases = #kept > 0 and kept or nil
  end
  if not changed then return end
  local ok, msg, code = hs.rooms:send(room_id, { type = "m.room.canonical_alias", state_key = "", sender = user_id,
    content = content }, { user_id = user_id })
  if not ok then
    hs.server:log("info", "alias %s deleted; canonical alias of %s unchanged: %s (%s)", alias, room_id,
      tostring(msg), tostring(code))
  end
end

-- May user_id read the room's aliases: a joined member, or anyone when the
-- room is world_readable.
local function may_read_aliases(hs, room_id, user_id)
  if not hs.store:room_version(room_id) then return false end
  local member = hs.rooms:state_event(room_id, "m.room.member", user_id)
  if member and type(member.content) == "table" and member.content.membership == "join" then return true end
  local hv = hs.rooms:state_event(room_id, "m.room.history_visibility", "")
  return hv ~= nil and type(hv.content) == "table" and hv.content.history_visibility == "world_readable"
end

local function content_field(hs, room_id, t, field)
  local ev = hs.rooms:state_event(room_id, t, "")
  local c = ev and ev.content
  local v = type(c) == "table" and c[field] or nil
  return v
end

-- One /publicRooms entry.
local function summary(hs, room_id)
  local state = hs.rooms:current_state(room_id)
  if not state then return nil end
  local joined = 0
  local ids = {}
  for k, id in pairs(state) do
    local t = statemap.split(k)
    if t == "m.room.member" then ids[#ids + 1] = id end
  end
  local loaded = hs.store:events(ids)
  for _, e in pairs(loaded) do
    if type(e[1].content) == "table" and e[1].content.membership == "join" then joined = joined + 1 end
  end
  local function str(t, f)
    local v = content_field(hs, room_id, t, f)
    if type(v) == "string" and v ~= "" then return v end
  end
  local create = hs.rooms:state_event(room_id, "m.room.create", "")
  return {
    room_id = room_id,
    name = str("m.room.name", "name"),
    topic = str("m.room.topic", "topic"),
    avatar_url = str("m.room.avatar", "url"),
    canonical_alias = str("m.room.canonical_alias", "alias"),
    num_joined_members = joined,
    world_readable = str("m.room.history_visibility", "history_visibility") == "world_readable",
    guest_can_join = str("m.room.guest_access", "guest_access") == "can_join",
    join_rule = str("m.room.join_rules", "join_rule") or "invite",
    room_type = create and type(create.content) == "table" and type(create.content.type) == "string"
      and create.content.type or nil,
  }
end

--- The /publicRooms entry of a room (also the room summary and the space
-- hierarchy's fields): room_id, name, topic, avatar_url, canonical_alias,
-- num_joined_members, world_readable, guest_can_join, join_rule, room_type;
-- nil for a room without state here.
directory_api.summary = summary

local function matches(entry, term)
  if not term or term == "" then return true end
  term = term:lower()
  for _, f in ipairs { "name", "topic", "canonical_alias" } do
    local v = entry[f]
    if v and v:lower():find(term, 1, true) then return true end
  end
  return false
end

-- The room IDs a /publicRooms request lists: the server's directory
-- (network nil), one third-party network's (a string), or both with every
-- network's (true).
local function listed_rooms(hs, network)
  if network == nil then return hs.store:public_room_ids() end
  if type(network) == "string" then return hs.store:network_room_ids(network) end
  local seen, out = {}, {}
  for _, list in ipairs { hs.store:public_room_ids(), hs.store:network_room_ids(nil) } do
    for _, r in ipairs(list) do
      if not seen[r] then seen[r] = true; out[#out + 1] = r end
    end
  end
  return out
end

local function public_rooms(hs, limit, since, term, network)
  local offset = 0
  if since ~= nil then
    offset = type(since) == "string" and tonumber(since:match("^p(%d+)$"))
    if not offset then return errors.new("M_INVALID_PARAM", "Invalid since token") end
  end
  if limit ~= nil and (math.type(limit) ~= "integer" or limit < 0) then
    return errors.new("M_INVALID_PARAM", "limit must be a non-negative integer")
  end
  local rooms = {}
  for _, room_id in ipairs(listed_rooms(hs, network)) do
    local e = summary(hs, room_id)
    if e and matches(e, term) then rooms[#rooms + 1] = e end
  end
  table_sort(rooms, function(a, b)
    if a.num_joined_members ~= b.num_joined_members then return a.num_joined_members > b.num_joined_members end
    return a.room_id < b.room_id
  end)
  local n = limit or #rooms
  local chunk = json.array {}
  for i = offset + 1, math.min(#rooms, offset + n) do chunk[#chunk + 1] = rooms[i] end
  local out = { chunk = chunk, total_room_count_estimate = #rooms }
  if offset + n < #rooms then out.next_batch = "p" .. tostring(offset + n) end
  if offset > 0 then out.prev_batch = "p" .. tostring(math.max(0, offset - (limit or offset))) end
  return out
end

--- directory_api.public_rooms(hs, limit, since, term) -> the /publicRooms
-- answer (chunk, next_batch, prev_batch, total_room_count_estimate) or a
-- Matrix error; also served over federation.
directory_api.public_rooms = public_rooms

local function put_alias(hs, req)
  local alias = req.params.roomAlias
  local body = req:json()
  if not directory_api.valid_alias(alias) then return errors.new("M_INVALID_PARAM", "Invalid room alias") end
  if alias:match(":(.+)$") ~= hs.server_name then
    return errors.new("M_INVALID_PARAM", "Room alias must be on this server")
  end
  local room_id = body.room_id
  if type(room_id) ~= "string" then return errors.new("M_INVALID_PARAM", "room_id is required") end
  if not hs.store:room_version(room_id) then return errors.new("M_NOT_FOUND", "Room not found") end
  local reserved = as_api.exclusive(hs, "aliases", alias, req.appservice)
  if reserved then return reserved end
  -- a service makes aliases of its namespaces only (the spec's M_EXCLUSIVE)
  if req.appservice and not hs.appservices:covers(req.appservice, "aliases", alias) then
    return errors.new("M_EXCLUSIVE", "The alias is not in the application service's namespaces")
  end
  local denied = hs:check("directory/publish/check", { user_id = req.user_id, room_id = room_id, alias = alias })
  if denied then return denied end
  local ok = directory_api.add_alias(hs, alias, room_id, req.user_id)
  if not ok then return errors.new("CONFLICT", "Room alias " .. alias .. " already exists") end
  return {}
end

local function get_alias(hs, req)
  local alias = req.params.roomAlias
  if not directory_api.valid_alias(alias) then return errors.new("M_INVALID_PARAM", "Invalid room alias") end
  if hs.federation_on and alias:match(":(.+)$") ~= hs.server_name then
    -- another server's alias: its answer (GET /query/directory)
    local d, err = fed_query.directory(hs, alias)
    return d or err
  end
  local room_id = directory_api.resolve_or_query(hs, alias)
  if not room_id then return errors.new("M_NOT_FOUND", "Room alias " .. alias .. " not found") end
  return { room_id = room_id, servers = json.array { hs.server_name } }
end

local function delete_alias(hs, req)
  local store = hs.store
  local alias = req.params.roomAlias
  local room_id, creator = store:alias_entry(alias)
  if not room_id then return errors.new("M_NOT_FOUND", "Room alias " .. tostring(alias) .. " not found") end
  -- an application service manages the aliases of its namespaces
  local own = req.appservice and hs.appservices:covers(req.appservice, "aliases", alias)
  if creator ~= req.user_id and not own and not directory_api.room_admin(hs, room_id, req.user_id) then
    return errors.new("M_FORBIDDEN", "You may not delete this alias")
  end
  store:delete_alias(alias)
  if hs.appservices then hs.appservices:aliases_changed(room_id) end
  unlist_canonical(hs, room_id, alias, req.user_id)
  return {}
end

local function room_aliases(hs, req)
  local room_id = req.params.roomId
  if type(room_id) ~= "string" or not may_read_aliases(hs, room_id, req.user_id) then
    return errors.new("M_FORBIDDEN", "You are not in the room and it is not world_readable")
  end
  local out = json.array {}
  for i, a in ipairs(hs.store:room_aliases(room_id)) do out[i] = a end
  return { aliases = out }
end

local function get_visibility(hs, req)
  local store = hs.store
  local room_id = req.params.roomId
  if not hs.store:room_version(room_id) then return errors.new("M_NOT_FOUND", "Room not found") end
  local v = store:room_visibility(room_id)
  return { visibility = v or "private" }
end

local function put_visibility(hs, req)
  local room_id = req.params.roomId
  local body = req:json()
  local vis = body.visibility
  if vis == nil then vis = "public" end
  if vis ~= "public" and vis ~= "private" then
    return errors.new("M_INVALID_PARAM", "visibility must be 'public' or 'private'")
  end
  if not hs.store:room_version(room_id) then return errors.new("M_NOT_FOUND", "Room not found") end
  if not directory_api.room_admin(hs, room_id, req.user_id) then
    return errors.new("M_FORBIDDEN", "You may not change this room's visibility")
  end
  local denied = hs:check("directory/publish/check", { user_id = req.user_id, room_id = room_id, visibility = vis })
  if denied then return denied end
  directory_api.set_visibility(hs, room_id, vis)
  return {}
end

-- ?server= names another server: its directory (GET/POST /publicRooms over
-- federation).
local function remote_server(hs, req)
  local server = req:arg("server")
  if server == nil or server == hs.server_name or not hs.federation_on then return nil end
  if #server == 0 or #server > 255 or server:find("[/%s]") then
    return nil, errors.new("M_INVALID_PARAM", "Invalid server name")
  end
  return server
end

local function get_public_rooms(hs, req)
  local limit = req:arg("limit") and req:arg_integer("limit", nil, 0)
  local server, serr = remote_server(hs, req)
  if serr then return serr end
  if server then return fed_query.public_rooms(hs, server, { limit = limit, since = req:arg("since") }) end
  return public_rooms(hs, limit, req:arg("since"), nil)
end

local function post_public_rooms(hs, req)
  local body = req:json()
  -- JSON null is the same as an absent field (as in Synapse)
  local function field(t, k)
    local v = t[k]
    if is_null(v) then return nil end
    return v
  end
  local filter = field(body, "filter")
  if filter ~= nil and not ljson.is_object(filter) then
    return errors.new("M_BAD_JSON", "filter must be an object")
  end
  local term = filter and field(filter, "generic_search_term")
  if term ~= nil and type(term) ~= "string" then
    return errors.new("M_BAD_JSON", "generic_search_term must be a string")
  end
  local all, instance = field(body, "include_all_networks"), field(body, "third_party_instance_id")
  if all ~= nil and type(all) ~= "boolean" then
    return errors.new("M_BAD_JSON", "include_all_networks must be a boolean")
  end
  if instance ~= nil and type(instance) ~= "string" then
    return errors.new("M_BAD_JSON", "third_party_instance_id must be a string")
  end
  if all and instance then
    return errors.new("M_INVALID_PARAM", "include_all_networks and third_party_instance_id exclude each other")
  end
  local server, serr = remote_server(hs, req)
  if serr then return serr end
  if server then
    return fed_query.public_rooms(hs, server, { limit = field(body, "limit"), since = field(body, "since"),
      term = term })
  end
  return public_rooms(hs, field(body, "limit"), field(body, "since"), term, instance or (all and true or nil))
end

-- PUT /directory/list/appservice/{networkId}/{roomId}: an application
-- service lists a room in its third-party network's directory.
local function put_network_listing(hs, req)
  if not req.appservice then
    return errors.new("M_FORBIDDEN", "Only application services can edit a network's room list")
  end
  local body = req:json()
  local vis = body.visibility
  if vis ~= "public" and vis ~= "private" then
    return errors.new("M_INVALID_PARAM", "visibility must be 'public' or 'private'")
  end
  local room_id = req.params.roomId
  if not hs.store:room_version(room_id) then return errors.new("M_NOT_FOUND", "Room not found") end
  hs.store:set_network_listing(req.appservice.id, req.params.networkId, room_id, vis == "public")
  return {}
end

--- The directory endpoints: { method, path, handler(hs, req), auth = bool },
-- installed by loom.api.install.
directory_api.routes = {
  { "PUT", P .. "/directory/room/{roomAlias}", put_alias, auth = true },
  { "GET", P .. "/directory/room/{roomAlias}", get_alias, auth = false },
  { "DELETE", P .. "/directory/room/{roomAlias}", delete_alias, auth = true },
  { "GET", P .. "/directory/list/room/{roomId}", get_visibility, auth = false },
  { "PUT", P .. "/directory/list/room/{roomId}", put_visibility, auth = true },
  { "GET", P .. "/rooms/{roomId}/aliases", room_aliases, auth = true },
  { "PUT", P .. "/directory/list/appservice/{networkId}/{roomId}", put_network_listing, auth = true },
  { "GET", P .. "/publicRooms", get_public_rooms, auth = false },
  { "POST", P .. "/publicRooms", post_public_rooms, auth = true },
}

return directory_api
