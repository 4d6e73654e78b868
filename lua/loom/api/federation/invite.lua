-- loom.api.federation.invite: another server invites a user of this one.
--
--   PUT /_matrix/federation/v2/invite/{roomId}/{eventId}
--       { room_version, event, invite_room_state }      -> { event }
--   PUT /_matrix/federation/v1/invite/{roomId}/{eventId}  event -> [200, { event }]
--
-- The event must be an m.room.member invite for an existing local user, sent
-- by a user of the origin, with the ID, format, content hash and the
-- origin's signature of its room version (400 M_BAD_JSON, 403 M_FORBIDDEN
-- otherwise; 400 M_INCOMPATIBLE_ROOM_VERSION for a version loom does not
-- speak). The room's server ACL applies when the room is known here, and a
-- user joined to it or banned from it here cannot be invited (403). This
-- server adds its signature and stores the event as an outlier with the
-- stripped state (at most 50 events) in unsigned.invite_room_state, so the
-- invitee's /sync shows the room under rooms.invite with that invite_state.
local type, ipairs, pairs, setmetatable, tostring = type, ipairs, pairs, setmetatable, tostring
local core = require "loom.core"
local ljson = require "loom.json"
local errors = require "loom.http.errors"
local crypto = require "loom.room.crypto"
local event_mod = require "loom.room.event"
local version_mod = require "loom.room.version"
local acl = require "loom.federation.acl"
local receive = require "loom.federation.receive"

local json, array_mt = core.json, core.json.array_mt
local is_object, is_array = ljson.is_object, ljson.is_array

local _ENV = nil -- luacheck: ignore 211

local invite = {}

local MAX_STRIPPED = 50

local function domain(user_id)
  return type(user_id) == "string" and user_id:match("^@[^:]*:(.+)$") or nil
end

local function bad(msg) return errors.new("M_BAD_JSON", msg) end
local function forbidden(msg) return errors.new("M_FORBIDDEN", msg) end

-- The stripped state events worth keeping: { type, state_key, sender, content }.
local function stripped(list)
  local out = setmetatable({}, array_mt)
  if not is_array(list) then return out end
  for _, e in ipairs(list) do
    if #out >= MAX_STRIPPED then break end
    if is_object(e) and type(e.type) == "string" and type(e.state_key) == "string"
        and type(e.sender) == "string" and is_object(e.content) then
      out[#out + 1] = { type = e.type, state_key = e.state_key, sender = e.sender, content = e.content }
    end
  end
  return out
end

local function handle(hs, req, v1)
  local room_id, event_id = req.params.roomId, req.params.eventId
  local body = req:json()
  local ev, room_version, state = body, "1", nil
  if not v1 then
    ev, room_version, state = body.event, body.room_version, body.invite_room_state
    if type(room_version) ~= "string" then return bad("room_version is required") end
  end
  local version = version_mod.get(room_version)
  if not version then
    return errors.new("M_INCOMPATIBLE_ROOM_VERSION", "Room version " .. tostring(room_version) .. " is not supported",
      { room_version = room_version })
  end
  if not is_object(ev) then return bad("event must be an object") end
  if ev.room_id ~= room_id then return bad("room_id does not match the path") end
  if ev.type ~= "m.room.member" or type(ev.state_key) ~= "string" or not is_object(ev.content)
      or ev.content.membership ~= "invite" then
    return bad("Not an invite")
  end
  if domain(ev.sender) ~= req.origin then return forbidden("The inviter does not belong to the requesting server") end
  if domain(ev.state_key) ~= hs.server_name then return forbidden("The invitee does not belong to this server") end
  local u = hs.accounts:user(ev.state_key)
  if not u or u.deactivated then return errors.new("M_NOT_FOUND", "Unknown user " .. ev.state_key) end
  if hs.store:room_nid(room_id) then
    local denied = acl.check(hs, room_id, req.origin)
    if denied then return denied end
    -- a room this server is in: its own state says who may be invited
    local cur = hs.rooms:state_event(room_id, "m.room.member", ev.state_key)
    local m = cur and is_object(cur.content) and cur.content.membership
    if m == "join" or m == "ban" then
      return forbidden("The user's membership is " .. m)
    end
  end
  if event_mod.compute_id(version, ev) ~= event_id then return bad("Event ID does not match the event") end
  local keys = receive.prefetch_keys(hs, version, { ev })
  local checked, err, code = event_mod.check(version, ev, { keys = keys })
  if not checked then
    if code == "bad_signature" then return forbidden("Bad signature: " .. tostring(err)) end
    return bad(tostring(err))
  end
  if checked.redacted then return bad("Content hash mismatch") end
  local signed = checked.event
  signed.event_id = nil      -- not part of what is signed
  local ok, serr = crypto.sign_event(signed, hs.key, version.id)
  if not ok then return bad(tostring(serr)) end
  local pdu = event_mod.pdu(signed)
  signed.event_id = event_id
  local kept = {}
  for k, v in pairs(pdu) do kept[k] = v end
  local unsigned = is_object(kept.unsigned) and kept.unsigned or {}
  local stored_unsigned = {}
  for k, v in pairs(unsigned) do stored_unsigned[k] = v end
  stored_unsigned.invite_room_state = stripped(state)
  kept.unsigned = stored_unsigned
  local text = json.encode(kept)
  if not text then return bad("The event does not encode as canonical JSON") end
  local store = hs.store
  local r, perr, pcode = store:transaction(function()
    return store:persist(event_id, signed, { room_version = version.id, json = text, outlier = true })
  end)
  if not r then return hs:error(perr, pcode) end
  local out = { event = pdu }
  if v1 then return setmetatable({ 200, out }, array_mt) end
  return out
end

local F1, F2 = "/_matrix/federation/v1", "/_matrix/federation/v2"
invite.routes = {
  { "PUT", F2 .. "/invite/{roomId}/{eventId}", function(hs, req) return handle(hs, req, false) end, auth = "server" },
  { "PUT", F1 .. "/invite/{roomId}/{eventId}", function(hs, req) return handle(hs, req, true) end, auth = "server" },
}

return invite
