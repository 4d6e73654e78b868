-- loom.api.client.spaces: the Client-Server API "Spaces" hierarchy and
-- "Room previews" (the room summary).
--
--   GET /_matrix/client/v1/rooms/{roomId}/hierarchy?max_depth&suggested_only&limit&from
--   GET /_matrix/client/v1/room_summary/{roomIdOrAlias}?via
--
-- A user may see (preview) a room here when they are joined or invited to
-- it, or when its join rule is public, knock or knock_restricted, or
-- restricted / knock_restricted with one of the allowed rooms joined, or
-- its history is world_readable (as Synapse). The hierarchy walks the
-- m.space.child events depth first from the root, children in the spec's
-- order (`order`, then origin_server_ts, then room ID), skipping children
-- without a `via`, rooms this server does not hold, rooms the user may not
-- see, and rooms already listed. Pages are stateless: next_batch encodes
-- how many rooms were listed and the walk's parameters, which must not
-- change (400 M_INVALID_PARAM). The summary may be asked without an access
-- token for rooms anyone may preview. See docs/api-client-spaces.md.
local errors = require "loom.http.errors"
local ljson = require "loom.json"
local core = require "loom.core"
local statemap = require "loom.room.statemap"
local store_filter = require "loom.store.filter"
local directory = require "loom.api.client.directory"
local fedclient = require "loom.federation.client"
local fed_query = require "loom.federation.query"

local type, ipairs, pairs, tostring, tonumber = type, ipairs, pairs, tostring, tonumber
local math_type, table_sort, string_format = math.type, table.sort, string.format
local string_byte = string.byte

local _ENV = nil -- luacheck: ignore 211

local spaces = {}

local V1 = "/_matrix/client/v1"
spaces.DEFAULT_LIMIT = 50
spaces.MAX_LIMIT = 100
spaces.DEFAULT_MAX_DEPTH = 20
spaces.MAX_DEPTH = 50
spaces.MAX_ROOMS = 1000     -- rooms one walk may visit, whatever the page

local function content_of(ev)
  local c = ev and ev.content
  if type(c) == "table" then return c end
  return {}
end

-- The room's current state events by (type, state_key) of the given types,
-- as { [type] = { [state_key] = event } }.
local function state_events(hs, room_id, wanted)
  local state = hs.rooms:current_state(room_id)
  local out, ids, keys = {}, {}, {}
  if not state then return out end
  for k, id in pairs(state) do
    local t, sk = statemap.split(k)
    if wanted[t] then ids[#ids + 1] = id; keys[id] = { t, sk } end
  end
  for id, e in pairs(hs.store:events(ids)) do
    local t, sk = keys[id][1], keys[id][2]
    out[t] = out[t] or {}
    out[t][sk] = e[1]
  end
  return out
end

local function membership_of(hs, room_id, user_id)
  if not user_id then return nil end
  local m = hs.rooms:state_event(room_id, "m.room.member", user_id)
  local ms = content_of(m).membership
  if type(ms) == "string" then return ms end
  return nil
end

--- May user_id (nil: an unauthenticated caller) preview room_id, a room
-- this server holds? Returns the boolean and the user's membership.
function spaces.may_preview(hs, room_id, user_id)
  local membership = membership_of(hs, room_id, user_id)
  if membership == "join" or membership == "invite" then return true, membership end
  local hv = content_of(hs.rooms:state_event(room_id, "m.room.history_visibility", "")).history_visibility
  if hv == "world_readable" then return true, membership end
  local jr = content_of(hs.rooms:state_event(room_id, "m.room.join_rules", ""))
  local rule = jr.join_rule
  if rule == "public" or rule == "knock" or rule == "knock_restricted" then return true, membership end
  if (rule == "restricted") and user_id and ljson.is_array(jr.allow) then
    for _, a in ipairs(jr.allow) do
      if type(a) == "table" and a.type == "m.room_membership" and type(a.room_id) == "string"
          and membership_of(hs, a.room_id, user_id) == "join" then
        return true, membership
      end
    end
  end
  return false, membership
end

-- A valid `order`: at most 50 characters, each 0x20..0x7E.
local function valid_order(o)
  if type(o) ~= "string" or #o > 50 then return false end
  for i = 1, #o do
    local b = string_byte(o, i)
    if b < 0x20 or b > 0x7E then return false end
  end
  return true
end

--- Order m.space.child events (of one room) as the spec says and keep those
-- worth following: a child room ID as state key, a non-empty via array,
-- suggested ones only when asked. Returns { { room_id, ev, via }, ... }.
function spaces.order_children(events, suggested_only)
  local list = {}
  for _, ev in ipairs(events) do
    local c = content_of(ev)
    local sk = ev.state_key
    if ev.type == "m.space.child" and store_filter.is_id("room", sk) and ljson.is_array(c.via) and #c.via > 0
        and (not suggested_only or c.suggested == true) then
      list[#list + 1] = { room_id = sk, ev = ev, via = c.via, order = valid_order(c.order) and c.order or nil,
        ts = math_type(ev.origin_server_ts) == "integer" and ev.origin_server_ts or 0 }
    end
  end
  table_sort(list, function(a, b)
    if a.order and b.order then
      if a.order ~= b.order then return a.order < b.order end
    elseif a.order or b.order then
      return a.order ~= nil
    end
    if a.ts ~= b.ts then return a.ts < b.ts end
    return a.room_id < b.room_id
  end)
  return list
end

--- The m.space.child events of a room this server holds worth following,
-- in the spec's order (see order_children).
function spaces.children(hs, room_id, suggested_only)
  local by_key = state_events(hs, room_id, { ["m.space.child"] = true })["m.space.child"] or {}
  local events = {}
  for _, ev in pairs(by_key) do events[#events + 1] = ev end
  return spaces.order_children(events, suggested_only)
end

-- The stripped form of a child event, with its origin_server_ts.
local function stripped(ev)
  return { type = ev.type, state_key = ev.state_key, content = ev.content, sender = ev.sender,
    origin_server_ts = ev.origin_server_ts }
end

-- One room's hierarchy entry (a room this server holds).
local function entry(hs, room_id, children)
  local e = directory.summary(hs, room_id)
  local cs = core.json.array {}
  if e.room_type == "m.space" then
    for i, ch in ipairs(children) do cs[i] = stripped(ch.ev) end
  end
  e.children_state = cs
  return e
end
spaces.entry = entry

-- The room IDs a restricted join rule allows members of.
local function allowed_rooms(jr)
  local out = {}
  if ljson.is_array(jr.allow) then
    for _, a in ipairs(jr.allow) do
      if type(a) == "table" and a.type == "m.room_membership" and type(a.room_id) == "string" then
        out[#out + 1] = a.room_id
      end
    end
  end
  return out
end

local function in_list(list, v)
  for _, x in ipairs(list) do if x == v then return true end end
  return false
end

--- May the server `origin` see room_id (a room this server holds)? Anyone
-- for public, knock, knock_restricted and world_readable rooms; else a
-- server with a member joined to it, or (restricted) to an allowed room.
function spaces.may_server_preview(hs, room_id, origin)
  local hv = content_of(hs.rooms:state_event(room_id, "m.room.history_visibility", "")).history_visibility
  if hv == "world_readable" then return true end
  local jr = content_of(hs.rooms:state_event(room_id, "m.room.join_rules", ""))
  local rule = jr.join_rule
  if rule == "public" or rule == "knock" or rule == "knock_restricted" then return true end
  if in_list(hs.store:servers_in_room(room_id), origin) then return true end
  if rule == "restricted" then
    for _, id in ipairs(allowed_rooms(jr)) do
      if in_list(hs.store:servers_in_room(id), origin) then return true end
    end
  end
  return false
end

--- A room's entry as another server may be given it (GET
-- /_matrix/federation/v1/hierarchy): the client entry plus allowed_room_ids
-- for restricted rooms.
function spaces.federation_entry(hs, room_id, suggested_only)
  local e = entry(hs, room_id, spaces.children(hs, room_id, suggested_only))
  if e.join_rule == "restricted" or e.join_rule == "knock_restricted" then
    local ids = core.json.array {}
    for i, id in ipairs(allowed_rooms(content_of(hs.rooms:state_event(room_id, "m.room.join_rules", "")))) do
      ids[i] = id
    end
    e.allowed_room_ids = ids
  end
  return e
end

---------------------------------------------------------------------------
-- Rooms of other servers: asked for over federation (via the child event's
-- servers), answers checked field by field.

spaces.MAX_REMOTE = 20          -- federation requests one walk may make
spaces.MAX_VIA = 3              -- servers tried per room
spaces.MAX_CHILDREN_STATE = 1000
local SUMMARY_STRINGS = { "name", "topic", "avatar_url", "canonical_alias", "join_rule", "room_type" }

-- A hierarchy chunk from another server, keeping only well-typed fields;
-- nil unless it is about room_id. Also the allowed room IDs it names.
local function clean_entry(room_id, r)
  if not ljson.is_object(r) or r.room_id ~= room_id then return nil end
  local e = { room_id = room_id }
  for _, k in ipairs(SUMMARY_STRINGS) do if type(r[k]) == "string" then e[k] = r[k] end end
  local n = r.num_joined_members
  e.num_joined_members = (math_type(n) == "integer" and n >= 0) and n or 0
  e.world_readable = r.world_readable == true
  e.guest_can_join = r.guest_can_join == true
  local cs = core.json.array {}
  if ljson.is_array(r.children_state) then
    for _, ev in ipairs(r.children_state) do
      if #cs >= spaces.MAX_CHILDREN_STATE then break end
      if ljson.is_object(ev) and ev.type == "m.space.child" and type(ev.state_key) == "string"
          and ljson.is_object(ev.content) and type(ev.sender) == "string" then
        cs[#cs + 1] = { type = ev.type, state_key = ev.state_key, content = ev.content, sender = ev.sender,
          origin_server_ts = math_type(ev.origin_server_ts) == "integer" and ev.origin_server_ts or 0 }
      end
    end
  end
  e.children_state = cs
  local allowed = {}
  if ljson.is_array(r.allowed_room_ids) then
    for _, id in ipairs(r.allowed_room_ids) do if type(id) == "string" then allowed[#allowed + 1] = id end end
  end
  return e, allowed
end

-- The remote room's { entry, allowed } (false: unreachable or refused),
-- asked of its via servers once per walk; the children the answer carries
-- are kept for the walk further down.
local function fetch_remote(hs, walk, room_id, via)
  local known = walk.remote[room_id]
  if known ~= nil then return known end
  walk.remote[room_id] = false
  if not hs.federation_on then return false end
  local tried = 0
  for _, server in ipairs(via) do
    if tried >= spaces.MAX_VIA or walk.requests >= spaces.MAX_REMOTE then break end
    if type(server) == "string" and server ~= hs.server_name then
      tried = tried + 1
      walk.requests = walk.requests + 1
      local status, body = hs.federation:request(server, "GET", "/_matrix/federation/v1/hierarchy/"
        .. fedclient.encode(room_id), { query = { suggested_only = walk.suggested_only and "true" or "false" },
        timeout = 10000 })
      if status == 200 and ljson.is_object(body) then
        local e, allowed = clean_entry(room_id, body.room)
        if e then
          walk.remote[room_id] = { entry = e, allowed = allowed }
          if ljson.is_array(body.children) then
            for _, c in ipairs(body.children) do
              local id = ljson.is_object(c) and c.room_id
              if type(id) == "string" and walk.remote[id] == nil then
                local ce, ca = clean_entry(id, c)
                if ce then walk.remote[id] = { entry = ce, allowed = ca } end
              end
            end
          end
          if ljson.is_array(body.inaccessible_children) then
            for _, id in ipairs(body.inaccessible_children) do
              if type(id) == "string" and walk.remote[id] == nil then walk.remote[id] = false end
            end
          end
          return walk.remote[room_id]
        end
      end
    end
  end
  return false
end

-- May the user see a remote room, by what its server said of it?
local function remote_visible(hs, r, user_id)
  local e = r.entry
  local rule = e.join_rule
  if e.world_readable or rule == "public" or rule == "knock" or rule == "knock_restricted" then return true end
  if rule == "restricted" then
    for _, id in ipairs(r.allowed) do
      if membership_of(hs, id, user_id) == "join" then return true end
    end
  end
  return false
end

local function parse_bool(v)
  if v == nil then return false end
  if v == "true" then return true end
  if v == "false" then return false end
  return nil
end
spaces.parse_bool = parse_bool

local function hierarchy(hs, req)
  local root = req.params.roomId
  if not store_filter.is_id("room", root) then
    return errors.new("M_INVALID_PARAM", "Not a valid room ID")
  end
  local suggested_only = parse_bool(req:arg("suggested_only"))
  if suggested_only == nil then return errors.new("M_INVALID_PARAM", "suggested_only must be true or false") end
  local limit = spaces.DEFAULT_LIMIT
  if req:arg("limit") ~= nil then
    limit = tonumber(req:arg("limit"))
    if math_type(limit) ~= "integer" or limit < 1 then
      return errors.new("M_INVALID_PARAM", "limit must be an integer greater than zero")
    end
    if limit > spaces.MAX_LIMIT then limit = spaces.MAX_LIMIT end
  end
  local max_depth = spaces.DEFAULT_MAX_DEPTH
  if req:arg("max_depth") ~= nil then
    max_depth = tonumber(req:arg("max_depth"))
    if math_type(max_depth) ~= "integer" or max_depth < 0 then
      return errors.new("M_INVALID_PARAM", "max_depth must be a non-negative integer")
    end
    if max_depth > spaces.MAX_DEPTH then max_depth = spaces.MAX_DEPTH end
  end
  local skip = 0
  local from = req:arg("from")
  if from ~= nil then
    local n, d, s, r = from:match("^h(%d+)_(%d+)_([01])_(.+)$")
    n, d = tonumber(n), tonumber(d)
    if not n or math_type(n) ~= "integer" or math_type(d) ~= "integer" or r ~= root then
      return errors.new("M_INVALID_PARAM", "Unknown pagination token")
    end
    if d ~= max_depth or (s == "1") ~= suggested_only then
      return errors.new("M_INVALID_PARAM", "suggested_only and max_depth cannot change on paginated requests")
    end
    skip = n
  end
  if not hs.store:room_version(root) or not spaces.may_preview(hs, root, req.user_id) then
    return errors.new("M_FORBIDDEN", "You are not allowed to view this room")
  end
  -- depth first: a stack of { room_id, depth, via }
  local rooms = core.json.array {}
  local stack, seen = { { root, 0 } }, { [root] = true }
  local walk = { remote = {}, requests = 0, suggested_only = suggested_only }
  local listed, visited = 0, 0
  local more = false
  while #stack > 0 and visited < spaces.MAX_ROOMS do
    local top = stack[#stack]
    stack[#stack] = nil
    local room_id, depth = top[1], top[2]
    visited = visited + 1
    local children, make
    if hs.store:room_version(room_id) then
      if room_id == root or spaces.may_preview(hs, room_id, req.user_id) then
        children = spaces.children(hs, room_id, suggested_only)
        make = function() return entry(hs, room_id, children) end
      end
    else
      local r = fetch_remote(hs, walk, room_id, top[3])
      if r and remote_visible(hs, r, req.user_id) then
        children = spaces.order_children(r.entry.children_state, suggested_only)
        make = function()
          local e = {}
          for k, v in pairs(r.entry) do e[k] = v end
          return e
        end
      end
    end
    if make then
      listed = listed + 1
      if listed > skip then
        if #rooms >= limit then more = true; break end
        rooms[#rooms + 1] = make()
      end
      if depth < max_depth then
        for i = #children, 1, -1 do
          local id = children[i].room_id
          if not seen[id] then seen[id] = true; stack[#stack + 1] = { id, depth + 1, children[i].via } end
        end
      end
    end
  end
  local out = { rooms = rooms }
  if more then
    out.next_batch = string_format("h%d_%d_%s_%s", skip + #rooms, max_depth, suggested_only and "1" or "0", root)
  end
  return out
end

-- GET /room_summary/{roomIdOrAlias}: for a caller with an access token,
-- or without one for rooms anyone may preview. A room this server does not
-- hold is asked of the `via` servers (or, for another server's alias, the
-- servers its directory names) over the federation hierarchy.
local function room_summary(hs, req)
  local user_id
  if req:header("Authorization") or req:arg("access_token") then
    local uid, err = hs:authenticate(req)
    if not uid then return err end
    user_id = uid
  end
  local id = req.params.roomIdOrAlias
  local room_id
  local via = {}
  for _, v in ipairs(req.args.via or {}) do via[#via + 1] = v end
  if store_filter.is_id("room", id) then
    room_id = id
  elseif type(id) == "string" and directory.valid_alias(id) then
    if hs.federation_on and id:match(":(.+)$") ~= hs.server_name then
      local d = fed_query.directory(hs, id)
      if ljson.is_object(d) and type(d.room_id) == "string" then
        room_id = d.room_id
        if ljson.is_array(d.servers) then
          for _, srv in ipairs(d.servers) do via[#via + 1] = srv end
        end
      end
    else
      room_id = directory.resolve(hs, id)
    end
  else
    return errors.new("M_INVALID_PARAM", "Not a room ID or alias: " .. tostring(id))
  end
  if not room_id then return errors.new("M_NOT_FOUND", "Room not found") end
  if not hs.store:room_version(room_id) then
    -- held elsewhere: what its servers say, when the caller may see it
    local walk = { remote = {}, requests = 0, suggested_only = false }
    local r = #via > 0 and fetch_remote(hs, walk, room_id, via)
    if not r then return errors.new("M_NOT_FOUND", "Room not found") end
    local rule = r.entry.join_rule
    local open = r.entry.world_readable or rule == "public" or rule == "knock" or rule == "knock_restricted"
    if not open and not (user_id and remote_visible(hs, r, user_id)) then
      return errors.new("M_NOT_FOUND", "Room not found or not accessible")
    end
    local s = {}
    for k, v in pairs(r.entry) do if k ~= "children_state" then s[k] = v end end
    if user_id then s.membership = "leave" end
    return s
  end
  local ok, membership = spaces.may_preview(hs, room_id, user_id)
  if not ok then return errors.new("M_NOT_FOUND", "Room not found or not accessible") end
  local s = directory.summary(hs, room_id)
  s.room_version = hs.store:room_version(room_id)
  local alg = content_of(hs.rooms:state_event(room_id, "m.room.encryption", "")).algorithm
  if type(alg) == "string" then s.encryption = alg end
  if user_id then s.membership = membership or "leave" end
  return s
end

spaces.routes = {
  { "GET", V1 .. "/rooms/{roomId}/hierarchy", hierarchy, auth = true },
  { "GET", V1 .. "/room_summary/{roomIdOrAlias}", room_summary, auth = false },
}

return spaces
