-- loom.room.restricted: joins to rooms whose join rule is restricted or
-- knock_restricted (room versions 8 and 10 on), decided by a server in the
-- room.
--
--   local restricted = require "loom.room.restricted"
--   local via, err = restricted.authoriser(rooms, version, room_id, user_id, server_name)
--   -- via: a user of server_name who vouches for the join (it goes in the
--   -- join's content.join_authorised_via_users_server; that server signs
--   -- the join); nil, nil: no authoriser needed (invited, joined, or not a
--   -- restricted room); nil, message: the join is not allowed
--
-- The spec's rule: the joining user must be joined to one of the rooms in
-- the join rule's `allow` list (entries of type m.room_membership), as this
-- server knows them; the authoriser is a local member of the room who may
-- invite (power level at least the room's invite level).
local type, ipairs, tostring = type, ipairs, tostring
local ljson = require "loom.json"
local auth = require "loom.room.auth"

local is_object, is_array = ljson.is_object, ljson.is_array

local _ENV = nil -- luacheck: ignore 211

local restricted = {}

local function membership(rooms, room_id, user_id)
  local ev = rooms:state_event(room_id, "m.room.member", user_id)
  return ev and is_object(ev.content) and ev.content.membership or nil
end

--- restricted.authoriser(rooms, version, room_id, user_id, server_name)
function restricted.authoriser(rooms, version, room_id, user_id, server_name)
  local jr = rooms:state_event(room_id, "m.room.join_rules", "")
  local rule = jr and is_object(jr.content) and jr.content.join_rule
  local is_restricted = (rule == "restricted" and version.restricted_join_rule)
    or (rule == "knock_restricted" and version.knock_restricted_join_rule)
  if not is_restricted then return nil, nil end
  local mine = membership(rooms, room_id, user_id)
  if mine == "join" or mine == "invite" then return nil, nil end
  local allowed = false
  for _, a in ipairs(is_array(jr.content.allow) and jr.content.allow or {}) do
    if is_object(a) and a.type == "m.room_membership" and type(a.room_id) == "string"
        and membership(rooms, a.room_id, user_id) == "join" then
      allowed = true
      break
    end
  end
  if not allowed then return nil, "not a member of any room the join rule allows" end
  local lookup = function(t, sk) return rooms:state_event(room_id, t, sk) end
  local need = auth.levels(version, lookup).invite
  local suffix = ":" .. tostring(server_name)
  for _, u in ipairs(rooms.store:current_members(room_id, "join")) do
    if u:sub(-#suffix) == suffix and auth.power_level(version, lookup, u) >= need then return u end
  end
  return nil, "no user of this server in the room may invite"
end

return restricted
