-- loom.api.client.relations: relationships, threads, jumping to a date and
-- reporting content (Client-Server API "Relationships", "Threading",
-- "Jumping to a date", "Reporting content").
--
--   GET  /_matrix/client/v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]
--   GET  /_matrix/client/v1/rooms/{roomId}/threads
--   GET  /_matrix/client/v1/rooms/{roomId}/timestamp_to_event
--   POST /_matrix/client/v3/rooms/{roomId}/report/{eventId}, /rooms/{roomId}/report,
--        /users/{userId}/report
--
-- Events come in the client format with their server-side aggregations
-- (loom.api.client.events). A user who may not read the room gets 403; an
-- event they may not see answers as one that does not exist (404). See
-- docs/api-client-relations.md.
local errors = require "loom.http.errors"
local visibility = require "loom.room.visibility"
local auth = require "loom.room.auth"
local client_events = require "loom.api.client.events"
local sync_token = require "loom.sync.token"
local store_relations = require "loom.store.relations"

local type, ipairs, math_type, tostring = type, ipairs, math.type, tostring

local _ENV = nil -- luacheck: ignore 211

local relations_api = {}

local V1 = "/_matrix/client/v1"
local V3 = "/_matrix/client/v3"

-- Page sizes (Synapse's defaults; at most MAX_LIMIT).
local DEFAULT_LIMIT = 5
local MAX_LIMIT = 1000
-- Events read per round while looking for a visible one near a timestamp.
local TS_BATCH = 50
local TS_SCAN_MAX = 2000

local function invalid(msg) return errors.new("M_INVALID_PARAM", msg) end
local function not_found(msg) return errors.new("M_NOT_FOUND", msg or "Event not found") end

-- May the user read the room at all? A user who never had a membership
-- there reads only world_readable rooms (403 otherwise, as Synapse).
local function room_access(hs, user_id, room_id)
  if not hs.store:room_nid(room_id) then return errors.new("M_FORBIDDEN", "You are not a member of this room") end
  if visibility.ever_member(hs, user_id, room_id) then return nil end
  if visibility.current_setting(hs, room_id) == "world_readable" then return nil end
  return errors.new("M_FORBIDDEN", "You are not a member of this room")
end

-- An event of the room the user may see, or nil.
local function visible_event(hs, user_id, room_id, event_id, ignored)
  local ev, meta = hs.store:event(event_id)
  if not ev or meta.room_id ~= room_id or meta.rejected or meta.soft_failed or meta.outlier then return nil end
  if not visibility.can_see(hs, user_id, room_id, ev, ignored) then return nil end
  return ev
end

local function ectx(hs, req, room_id, ignored)
  return { store = hs.store, user_id = req.user_id, device_id = req.device_id, room_id = room_id, ignored = ignored }
end

-- The loaded events of some IDs, in order, that the user may see.
local function visible_list(hs, req, room_id, ids, ignored)
  local loaded = hs.store:events(ids)
  local list = {}
  for _, id in ipairs(ids) do
    local hit = loaded[id]
    if hit and hit[2].room_id == room_id then list[#list + 1] = hit[1] end
  end
  return visibility.filter(hs, req.user_id, room_id, list, ignored)
end

-- A client's pagination token as a store token, or nil and the error.
local function store_token(hs, text, what)
  if text == nil or text == "" then return nil end
  local t, err = sync_token.to_store(text, sync_token.current(hs))
  if not t then return nil, invalid(what .. ": " .. tostring(err)) end
  return t
end

local function page_limit(req)
  local limit = req:arg_integer("limit", DEFAULT_LIMIT, 0)
  if limit > MAX_LIMIT then limit = MAX_LIMIT end
  if limit < 1 then limit = 1 end
  return limit
end

---------------------------------------------------------------------------
-- Relations

local function relations(hs, req)
  local p = req.params
  local room_id, parent_id = p.roomId, p.eventId
  local dir = req:arg("dir", "b")
  if dir ~= "b" and dir ~= "f" then return invalid("dir must be 'b' or 'f'") end
  local recurse_given = req:arg("recurse")
  local recurse_arg = recurse_given or "false"
  if recurse_arg ~= "true" and recurse_arg ~= "false" then return invalid("recurse must be true or false") end
  local limit = page_limit(req)
  local from_param = req:arg("from")
  local from, ferr = store_token(hs, from_param, "from")
  if ferr then return ferr end
  local to, terr = store_token(hs, req:arg("to"), "to")
  if terr then return terr end
  local denied = room_access(hs, req.user_id, room_id)
  if denied then return denied end
  local ignored = hs.store:ignored_users(req.user_id)
  if not visible_event(hs, req.user_id, room_id, parent_id, ignored) then return not_found() end
  local page, err, code = hs.store:relations_page(room_id, parent_id, { rel_type = p.relType, type = p.eventType,
    dir = dir, from = from, to = to, limit = limit, recurse = recurse_arg == "true", ignored = ignored })
  if not page then
    if code == "bad_token" then return invalid(err) end
    return hs:error(err, code)
  end
  local shown = visible_list(hs, req, room_id, page.ids, ignored)
  local body = { chunk = client_events.clients(ectx(hs, req, room_id, ignored), shown), next_batch = page.next }
  if from_param ~= nil and from_param ~= "" then body.prev_batch = from_param end
  -- present exactly when the client gave recurse: how deep the server went
  if recurse_given then body.recursion_depth = recurse_arg == "true" and store_relations.MAX_RECURSION or 1 end
  return body
end

---------------------------------------------------------------------------
-- Threads

local function threads(hs, req)
  local room_id = req.params.roomId
  local include = req:arg("include", "all")
  if include ~= "all" and include ~= "participated" then
    return invalid("include must be 'all' or 'participated'")
  end
  local limit = page_limit(req)
  local from_param = req:arg("from")
  local from
  if from_param ~= nil and from_param ~= "" then
    local t = sync_token.to_store(from_param, nil)
    if not t or t:sub(1, 1) ~= "t" then return invalid("from: not a threads token") end
    from = t
  end
  local denied = room_access(hs, req.user_id, room_id)
  if denied then return denied end
  local ignored = hs.store:ignored_users(req.user_id)
  local page, err, code = hs.store:threads_page(room_id, { from = from, limit = limit,
    participated_by = include == "participated" and req.user_id or nil })
  if not page then
    if code == "bad_token" then return invalid(err) end
    return hs:error(err, code)
  end
  local shown = visible_list(hs, req, room_id, page.ids, ignored)
  return { chunk = client_events.clients(ectx(hs, req, room_id, ignored), shown), next_batch = page.next }
end

---------------------------------------------------------------------------
-- Jumping to a date

local function timestamp_to_event(hs, req)
  local room_id = req.params.roomId
  local ts_arg = req:arg("ts")
  if ts_arg == nil then return errors.new("M_MISSING_PARAM", "Missing parameter: ts") end
  local ts = req:arg_integer("ts", nil, 0, 9007199254740991)
  local dir = req:arg("dir")
  if dir == nil then return errors.new("M_MISSING_PARAM", "Missing parameter: dir") end
  if dir ~= "f" and dir ~= "b" then return invalid("dir must be 'f' or 'b'") end
  local denied = room_access(hs, req.user_id, room_id)
  if denied then return denied end
  local ignored = hs.store:ignored_users(req.user_id)
  local skip = 0
  while skip < TS_SCAN_MAX do
    local ids = hs.store:events_near_ts(room_id, ts, dir, TS_BATCH, skip)
    if #ids == 0 then break end
    local seen = visible_list(hs, req, room_id, ids, ignored)
    local first = seen[1]
    if first then return { event_id = first.event_id, origin_server_ts = first.origin_server_ts } end
    skip = skip + #ids
  end
  return not_found("Unable to find event from " .. ts .. " in direction " .. dir)
end

---------------------------------------------------------------------------
-- Reporting content

local function optional_reason(body)
  local reason = body.reason
  if reason ~= nil and type(reason) ~= "string" then return nil, invalid("reason must be a string") end
  return true
end

local function joined(hs, user_id, room_id)
  local ev = hs.rooms:state_event(room_id, "m.room.member", user_id)
  return ev ~= nil and type(ev.content) == "table" and ev.content.membership == "join"
end

local function report_event(hs, req)
  local room_id, event_id = req.params.roomId, req.params.eventId
  local body = req:json()
  local ok, err = optional_reason(body)
  if not ok then return err end
  local score = body.score
  if score ~= nil and (math_type(score) ~= "integer" or score < -100 or score > 0) then
    return invalid("score must be an integer from -100 to 0")
  end
  -- the reporter must be joined to the room (v1.8); an event they cannot
  -- see answers as one that does not exist
  if not hs.store:room_nid(room_id) or not joined(hs, req.user_id, room_id)
      or not visible_event(hs, req.user_id, room_id, event_id, {}) then
    return not_found("Unable to report event: it does not exist or you aren't able to see it.")
  end
  hs.store:add_report { reporter = req.user_id, room_id = room_id, event_id = event_id, reason = body.reason,
    score = score }
  return {}
end

local function report_room(hs, req)
  local room_id = req.params.roomId
  local body = req:json()
  local ok, err = optional_reason(body)
  if not ok then return err end
  if not hs.store:room_nid(room_id) then return not_found("Room not found") end
  hs.store:add_report { reporter = req.user_id, room_id = room_id, reason = body.reason }
  return {}
end

local function report_user(hs, req)
  local user_id = req.params.userId
  local body = req:json()
  local ok, err = optional_reason(body)
  if not ok then return err end
  if type(user_id) ~= "string" or not auth.valid_user_id(user_id) then return invalid("Invalid user ID") end
  -- a user the reporter has no means to know of answers as unknown
  local known = hs.accounts:user(user_id) ~= nil
  if not known then
    for _, u in ipairs(hs.store:users_sharing_rooms(req.user_id)) do
      if u == user_id then known = true; break end
    end
  end
  if not known then return not_found("User not found") end
  hs.store:add_report { reporter = req.user_id, user_id = user_id, reason = body.reason }
  return {}
end

relations_api.routes = {
  { "GET", V1 .. "/rooms/{roomId}/relations/{eventId}", relations, auth = true },
  { "GET", V1 .. "/rooms/{roomId}/relations/{eventId}/{relType}", relations, auth = true },
  { "GET", V1 .. "/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}", relations, auth = true },
  { "GET", V1 .. "/rooms/{roomId}/threads", threads, auth = true },
  { "GET", V1 .. "/rooms/{roomId}/timestamp_to_event", timestamp_to_event, auth = true },
  { "POST", V3 .. "/rooms/{roomId}/report/{eventId}", report_event, auth = true },
  { "POST", V3 .. "/rooms/{roomId}/report", report_room, auth = true },
  { "POST", V3 .. "/users/{userId}/report", report_user, auth = true },
}

return relations_api
