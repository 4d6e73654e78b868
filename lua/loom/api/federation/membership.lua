-- loom.api.federation.membership: joining and leaving through this server.
--
--   GET /_matrix/federation/v1/make_join/{roomId}/{userId}?ver=...
--   PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}   (and v1)
--   GET /_matrix/federation/v1/make_leave/{roomId}/{userId}
--   PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}  (and v1)
--   GET /_matrix/federation/v1/make_knock/{roomId}/{userId}?ver=...
--   PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}
--
-- make_*: a template of the membership event this server would accept now
-- (403 M_FORBIDDEN when the auth rules would refuse it; 400
-- M_INCOMPATIBLE_ROOM_VERSION when the joining server does not speak the
-- room's version). send_*: the signed event, checked as any received event
-- (format, the origin's signature, content hash, auth against its auth
-- events, the state before it and the current state); a join is answered
-- with the state before it and the auth chain of that state, a knock with
-- the room's stripped state (knock_room_state). The user must
-- belong to the origin server, and this server must be in the room.
local type, ipairs, setmetatable, tostring = type, ipairs, setmetatable, tostring
local core = require "loom.core"
local ljson = require "loom.json"
local errors = require "loom.http.errors"
local event_mod = require "loom.room.event"
local version_mod = require "loom.room.version"
local stateres = require "loom.room.stateres"
local acl = require "loom.federation.acl"
local receive = require "loom.federation.receive"
local restricted = require "loom.room.restricted"
local crypto = require "loom.room.crypto"
local fed_membership = require "loom.federation.membership"

local array_mt, now_ms = core.json.array_mt, core.now_ms
local is_object = ljson.is_object

local _ENV = nil -- luacheck: ignore 211

local membership = {}

local function domain(user_id)
  return type(user_id) == "string" and user_id:match("^@[^:]*:(.+)$") or nil
end

local function forbidden(msg) return errors.new("M_FORBIDDEN", msg) end

local function array(t) return setmetatable(t, array_mt) end

-- Checks common to every request: the user is the origin's, the room is
-- known and this server is in it, the ACL lets the origin in. Returns the
-- room version table or nil, error.
local function check_room(hs, req, room_id, user_id)
  if domain(user_id) ~= req.origin then return nil, forbidden("The user does not belong to the requesting server") end
  local store = hs.store
  local rn = store:room_nid(room_id)
  if not rn then return nil, errors.new("M_NOT_FOUND", "Unknown room") end
  if not store:host_joined(rn, hs.server_name) then return nil, forbidden("This server is not in the room") end
  local denied = acl.check(hs, room_id, req.origin)
  if denied then return nil, denied end
  local version = version_mod.get(store:room_version(room_id))
  if not version then return nil, errors.new("M_UNSUPPORTED_ROOM_VERSION", "Room version not supported") end
  return version
end

local function make(kind)
  return function(hs, req)
    local room_id, user_id = req.params.roomId, req.params.userId
    local version, err = check_room(hs, req, room_id, user_id)
    if not version then return err end
    if kind == "join" or kind == "knock" then
      local vers = req.args and req.args.ver or { "1" }
      local speaks = false
      for _, v in ipairs(vers) do if v == version.id then speaks = true end end
      if not speaks then
        return errors.new("M_INCOMPATIBLE_ROOM_VERSION", "Your server does not support the room's version",
          { room_version = version.id })
      end
    end
    local content = { membership = kind }
    if kind == "join" then
      -- a restricted room: a user of this server who may invite vouches
      local vouch, why = restricted.authoriser(hs.rooms, version, room_id, user_id, hs.server_name)
      if why then return forbidden("The user may not join: " .. why) end
      content.join_authorised_via_users_server = vouch
    end
    local template, terr, code = hs.rooms:template(room_id, { type = "m.room.member", sender = user_id,
      state_key = user_id, content = content })
    if not template then
      if code == "forbidden" then return forbidden(tostring(terr)) end
      return hs:error(terr, code)
    end
    return { event = template, room_version = version.id }
  end
end

local function pdus(list)
  local out = array {}
  for i, ev in ipairs(list) do out[i] = event_mod.pdu(ev) end
  return out
end

local function load_ids(store, ids)
  local out = {}
  local loaded = store:events(ids)
  for _, id in ipairs(ids) do
    local e = loaded[id]
    if e then out[#out + 1] = e[1] end
  end
  return out
end

-- The state before an event (IDs) and the auth chain of that state and
-- of the event's auth events (IDs).
local function state_and_chain(hs, event_nid, auth_ids)
  local store = hs.store
  local before = store:event_state(event_nid)
  local st = before and store:load_state(before)
  local ids = {}
  if st then
    local _, _, nids = st:entries()
    local loaded = store:events_by_nid(nids)
    for _, n in ipairs(nids) do
      local e = loaded[n]
      if e then ids[#ids + 1] = e[1].event_id end
    end
  end
  local seeds = {}
  for _, id in ipairs(ids) do seeds[#seeds + 1] = id end
  for _, id in ipairs(auth_ids) do seeds[#seeds + 1] = id end
  local chain, err = stateres.auth_chain(seeds, function(id) return (store:event(id)) end)
  if not chain then
    -- an auth event this server never had: the chain goes without it
    hs.server:log("warn", "send_join: auth chain incomplete: %s", tostring(err))
    chain = {}
  end
  return ids, chain
end

local function send(kind, v1)
  return function(hs, req)
    local room_id, event_id = req.params.roomId, req.params.eventId
    local ev = req:json()
    if ev.room_id ~= room_id then return errors.new("M_BAD_JSON", "room_id does not match the path") end
    if ev.type ~= "m.room.member" or ev.state_key ~= ev.sender or not is_object(ev.content)
        or ev.content.membership ~= kind then
      return errors.new("M_BAD_JSON", "Not a " .. kind .. " event of its sender")
    end
    local version, err = check_room(hs, req, room_id, ev.sender)
    if not version then return err end
    local id = event_mod.compute_id(version, ev)
    if id ~= event_id then return errors.new("M_BAD_JSON", "Event ID does not match the event") end
    -- a join one of this server's users vouches for gets this server's
    -- signature too (the auth rules look for it)
    local vouch = kind == "join" and ev.content.join_authorised_via_users_server
    if type(vouch) == "string" and vouch:match("^@[^:]*:(.+)$") == hs.server_name then
      local by = restricted.authoriser(hs.rooms, version, room_id, ev.sender, hs.server_name)
      if by == nil then return forbidden("This server does not vouch for the join") end
      crypto.sign_event(ev, hs.key, version.id)
    end
    local keys = receive.prefetch_keys(hs, version, { ev })
    local r, rerr, code = hs.rooms:receive(ev, { keys = keys })
    if not r then
      if code == "bad_signature" then return forbidden("Bad signature: " .. tostring(rerr)) end
      if code == "bad_event" or code == "too_large" or code == "missing_auth_events" then
        return errors.new("M_BAD_JSON", tostring(rerr))
      end
      return hs:error(rerr, code)
    end
    if r.rejected then return forbidden("The " .. kind .. " is not allowed: " .. tostring(r.rejected)) end
    if r.soft_failed then return forbidden("The " .. kind .. " is not allowed by the room's current state") end
    if hs.sender and not r.duplicate then
      -- the room's other servers hear of it from the resident
      local stored_ev = hs.store:event(event_id)
      hs.store:transaction(function() return hs.sender:queue_event(stored_ev, room_id, req.origin) end)
    end
    local body
    if kind == "join" then
      local stored = hs.store:event(event_id)
      local state_ids, chain_ids = state_and_chain(hs, r.event_nid, stored.auth_events or {})
      body = { origin = hs.server_name, state = pdus(load_ids(hs.store, state_ids)),
               auth_chain = pdus(load_ids(hs.store, chain_ids)), event = event_mod.pdu(stored),
               members_omitted = false, origin_server_ts = now_ms() }
    elseif kind == "knock" then
      -- knock_state_events: the name before the spec's (Synapse before 1.80 reads only it)
      local st = fed_membership.stripped_state(hs, room_id)
      body = { knock_room_state = st, knock_state_events = st }
    else
      body = {}
    end
    if v1 then return array { 200, body } end
    return body
  end
end

local F1, F2 = "/_matrix/federation/v1", "/_matrix/federation/v2"
membership.routes = {
  { "GET", F1 .. "/make_join/{roomId}/{userId}", make("join"), auth = "server" },
  { "PUT", F2 .. "/send_join/{roomId}/{eventId}", send("join"), auth = "server" },
  { "PUT", F1 .. "/send_join/{roomId}/{eventId}", send("join", true), auth = "server" },
  { "GET", F1 .. "/make_leave/{roomId}/{userId}", make("leave"), auth = "server" },
  { "PUT", F2 .. "/send_leave/{roomId}/{eventId}", send("leave"), auth = "server" },
  { "PUT", F1 .. "/send_leave/{roomId}/{eventId}", send("leave", true), auth = "server" },
  { "GET", F1 .. "/make_knock/{roomId}/{userId}", make("knock"), auth = "server" },
  { "PUT", F1 .. "/send_knock/{roomId}/{eventId}", send("knock"), auth = "server" },
}

return membership
