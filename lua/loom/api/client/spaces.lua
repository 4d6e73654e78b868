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

--- The m.space.child events of a room worth following (a non-empty via
-- array; suggested ones only when asked), in the spec's order.
function spaces.children(hs, room_id, suggested_only)
  local by_key = state_events(hs, room_id, { ["m.space.child"] = true })["m.space.child"] or {}
  local list = {}
  for sk, ev in pairs(by_key) do
    local c = content_of(ev)
    if store_filter.is_id("room", sk) and ljson.is_array(c.via) and #c.via > 0
        and (not suggested_only or c.suggested == true) then
      list[#list + 1] = { room_id = sk, ev = ev, order = valid_order(c.order) and c.order or nil,
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

-- The stripped form of a child event, with its origin_server_ts.
local function stripped(ev)
  return { type = ev.type, state_key = ev.state_key, content = ev.content, sender = ev.sender,
    origin_server_ts = ev.origin_server_ts }
end

-- One room's hierarchy entry.
local function entry(hs, room_id, children)
  local e = directory.summary(hs, room_id)
  local cs = core.json.array {}
  if e.room_type == "m.space" then
    for i, ch in ipairs(children) do cs[i] = stripped(ch.ev) end
  end
  e.children_state = cs
  return e
end

local function parse_bool(v)
  if v == nil then return false end
  if v == "true" then return true end
  if v == "false" then return false end
  return nil
end

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
  -- depth first: a stack of { room_id, depth, children of the parent }
  local rooms = core.json.array {}
  local stack, seen = { { root, 0 } }, { [root] = true }
  local listed, visited = 0, 0
  local more = false
  while #stack > 0 and visited < spaces.MAX_ROOMS do
    local top = stack[#stack]
    stack[#stack] = nil
    local room_id, depth = top[1], top[2]
    visited = visited + 1
    if hs.store:room_version(room_id) and (room_id == root or spaces.may_preview(hs, room_id, req.user_id)) then
      local children = spaces.children(hs, room_id, suggested_only)
      listed = listed + 1
      if listed > skip then
        if #rooms >= limit then more = true; break end
        rooms[#rooms + 1] = entry(hs, room_id, children)
      end
      if depth < max_depth then
        for i = #children, 1, -1 do
          local id = children[i].room_id
          if not seen[id] then seen[id] = true; stack[#stack + 1] = { id, depth + 1 } end
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
-- or without one for rooms anyone may preview.
local function room_summary(hs, req)
  local user_id
  if req:header("Authorization") or req:arg("access_token") then
    local uid, err = hs:authenticate(req)
    if not uid then return err end
    user_id = uid
  end
  local id = req.params.roomIdOrAlias
  local room_id
  if store_filter.is_id("room", id) then
    room_id = id
  elseif type(id) == "string" and directory.valid_alias(id) then
    room_id = directory.resolve(hs, id)
  else
    return errors.new("M_INVALID_PARAM", "Not a room ID or alias: " .. tostring(id))
  end
  if not room_id or not hs.store:room_version(room_id) then
    return errors.new("M_NOT_FOUND", "Room not found")
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
