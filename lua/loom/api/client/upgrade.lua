-- loom.api.client.upgrade: the Client-Server API "Room Upgrades" module,
-- POST /rooms/{roomId}/upgrade {new_version}. See docs/api-client-rooms.md.
--
--   upgrade.routes  --> { { "POST", "/_matrix/client/v3/rooms/{roomId}/upgrade", handler, auth = true } }
--
-- The spec's sequence, as Synapse carries it out, in one transaction:
--   1. the user must be able to send m.room.tombstone in the old room;
--   2. a replacement room of the new version whose m.room.create names its
--      predecessor {room_id, event_id} (the old room's latest event), with
--      the old create's type and m.federate;
--   3. the transferable state copied (power levels — the upgrader raised
--      while the state is copied —, join rules, name, topic, avatar,
--      history visibility, guest access, encryption, server ACL, space
--      children, bans);
--   4. the local aliases moved, with the canonical alias (and a public
--      directory entry);
--   5. m.room.tombstone in the old room pointing to the new one;
--   6. the old room's power levels restricted: events_default and invite
--      raised to max(50, users_default + 1).
-- Local members are not joined to the new room (the spec's choice).
local core = require "loom.core"
local errors = require "loom.http.errors"
local ljson = require "loom.json"
local auth = require "loom.room.auth"
local version_mod = require "loom.room.version"
local statemap = require "loom.room.statemap"
local store_filter = require "loom.store.filter"

local json = core.json
local pairs, ipairs, type, tonumber, math_type, math_max, math_tointeger, math_huge =
  pairs, ipairs, type, tonumber, math.type, math.max, math.tointeger, math.huge
local table_sort = table.sort

local _ENV = nil -- luacheck: ignore 211

local upgrade_api = {}

local V3 = "/_matrix/client/v3"

-- State copied as it is (state key ""), in this order (Synapse's list).
local COPIED = { "m.room.join_rules", "m.room.name", "m.room.topic", "m.room.history_visibility",
  "m.room.guest_access", "m.room.avatar", "m.room.encryption", "m.room.server_acl", "m.room.related_groups" }

local PL_LEVELS = { "ban", "events_default", "invite", "kick", "redact", "state_default", "users_default" }
local PL_MAPS = { "events", "notifications", "users" }

local function copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = copy(x) end
  return out
end

-- A power level as an integer ("50" in rooms before v10 reads as 50), or nil.
local function level(v)
  if type(v) == "string" then v = tonumber(v) end
  if math_type(v) == "float" then v = math_tointeger(v) end
  return math_type(v) == "integer" and v or nil
end

-- The old room's power levels for the new room: integers only (v10+ rooms
-- refuse strings), nothing that is not a level.
local function clean_power_levels(content)
  local pl = {}
  for _, k in ipairs(PL_LEVELS) do pl[k] = level(content[k]) end
  for _, k in ipairs(PL_MAPS) do
    if ljson.is_object(content[k]) then
      local m = {}
      for name, v in pairs(content[k]) do m[name] = level(v) end
      pl[k] = m
    end
  end
  return pl
end

local function membership(ev)
  return ev and ljson.is_object(ev.content) and ev.content.membership or nil
end

-- The current state keys of the given type in a room, sorted.
local function state_keys(hs, room_id, event_type)
  local out = {}
  for k in pairs(hs.rooms:current_state(room_id)) do
    local t, sk = statemap.split(k)
    if t == event_type then out[#out + 1] = sk end
  end
  table_sort(out)
  return out
end

local function send(hs, room_id, user_id, t, content, sk)
  local ev, err, code, rule = hs.rooms:send(room_id, { type = t, state_key = sk or "", sender = user_id,
    content = content })
  if not ev then return nil, hs:error(err, code, rule) end
  return ev
end

-- The new room: created, joined, its state copied, aliases moved. Returns
-- the new room's ID or nil and an error value (inside the transaction).
local function replacement(hs, user_id, old_id, old_version, new_version)
  local st = function(t, sk) return hs.rooms:state_event(old_id, t, sk) end
  local old_create = st("m.room.create", "")
  local extremities = hs.store:forward_extremities(old_id)
  local content = { predecessor = { room_id = old_id, event_id = extremities[#extremities] } }
  local oc = old_create and ljson.is_object(old_create.content) and old_create.content or {}
  if oc["m.federate"] ~= nil then content["m.federate"] = oc["m.federate"] end
  if type(oc.type) == "string" then content.type = oc.type end
  local new_id, cerr, ccode = hs.rooms:create_room(user_id, { room_version = new_version.id, content = content })
  if not new_id then return nil, hs:error(cerr, ccode) end
  local u = hs.accounts:user(user_id)
  local ok, err = send(hs, new_id, user_id, "m.room.member",
    { membership = "join", displayname = u and u.displayname, avatar_url = u and u.avatar_url }, user_id)
  if not ok then return nil, err end

  -- power levels: the old room's; creators of a v12 room are not listed
  local old_pl = st("m.room.power_levels", "")
  local pl = clean_power_levels(old_pl and ljson.is_object(old_pl.content) and old_pl.content or {})
  pl.users = pl.users or {}
  local old_level = auth.power_level(old_version, st, user_id)
  if new_version.creators_have_infinite_power then
    pl.users[user_id] = nil
  elseif old_level == math_huge then
    pl.users[user_id] = 100          -- a creator of a v12 room keeps the top level
  end
  -- the upgrader raised while the state is copied, as Synapse does
  local needed = math_max(pl.state_default or 50, pl.ban or 50)
  for _, v in pairs(pl.events or {}) do needed = math_max(needed, v) end
  local temp = pl
  local own = pl.users[user_id] or pl.users_default or 0
  if not new_version.creators_have_infinite_power and own < needed then
    temp = copy(pl)
    temp.users[user_id] = needed
  end
  ok, err = send(hs, new_id, user_id, "m.room.power_levels", temp)
  if not ok then return nil, err end

  for _, t in ipairs(COPIED) do
    local ev = st(t, "")
    if ev and ljson.is_object(ev.content) then
      ok, err = send(hs, new_id, user_id, t, copy(ev.content))
      if not ok then return nil, err end
    end
  end
  for _, sk in ipairs(state_keys(hs, old_id, "m.space.child")) do
    local ev = st("m.space.child", sk)
    if ev and ljson.is_object(ev.content) and ev.content.via ~= nil then
      ok, err = send(hs, new_id, user_id, "m.space.child", copy(ev.content), sk)
      if not ok then return nil, err end
    end
  end
  for _, sk in ipairs(state_keys(hs, old_id, "m.room.member")) do
    local ev = st("m.room.member", sk)
    if membership(ev) == "ban" then
      local ban = { membership = "ban" }
      if type(ev.content.reason) == "string" then ban.reason = ev.content.reason end
      ok, err = send(hs, new_id, user_id, "m.room.member", ban, sk)
      if not ok then return nil, err end
    end
  end

  -- aliases: the local ones move; the canonical alias goes with them
  hs.store:move_room_aliases(old_id, new_id)
  local alias_ev = st("m.room.canonical_alias", "")
  if alias_ev and ljson.is_object(alias_ev.content) and (alias_ev.content.alias ~= nil
      or alias_ev.content.alt_aliases ~= nil) then
    ok, err = send(hs, new_id, user_id, "m.room.canonical_alias", copy(alias_ev.content))
    if not ok then return nil, err end
    -- (Synapse: a failure to clear the old one is not the upgrade's)
    hs.rooms:send(old_id, { type = "m.room.canonical_alias", state_key = "", sender = user_id, content = {} })
  end
  if hs.store:room_visibility(old_id) == "public" then
    hs.store:set_room_visibility(new_id, "public")
    hs.store:set_room_visibility(old_id, "private")
  end
  if temp ~= pl then
    ok, err = send(hs, new_id, user_id, "m.room.power_levels", pl)
    if not ok then return nil, err end
  end
  return new_id
end

-- The old room's power levels with events_default and invite raised to
-- max(50, users_default + 1), sent when that changes them.
local function restrict_old_room(hs, user_id, room_id)
  local ev = hs.rooms:state_event(room_id, "m.room.power_levels", "")
  local content = ev and ljson.is_object(ev.content) and copy(ev.content) or {}
  local restricted = math_max(50, (level(content.users_default) or 0) + 1)
  local changed = false
  for _, k in ipairs { "events_default", "invite" } do
    if (level(content[k]) or 0) < restricted then content[k] = restricted; changed = true end
  end
  if not changed then return true end
  return send(hs, room_id, user_id, "m.room.power_levels", content)
end

local function upgrade(hs, req)
  local room_id, user_id = req.params.roomId, req.user_id
  local body = req:json()
  local v = body.new_version
  if v == nil or v == json.null then return errors.new("M_MISSING_PARAM", "new_version is required") end
  local new_version = type(v) == "string" and version_mod.get(v)
  if not new_version then
    return errors.new("M_UNSUPPORTED_ROOM_VERSION", "Unsupported room version")
  end
  if not store_filter.is_id("room", room_id) then
    return errors.new("M_INVALID_PARAM", "not a valid room ID")
  end
  local vid = hs.store:room_version(room_id)
  local old_version = vid and version_mod.get(vid)
  if not vid then return errors.new("M_NOT_FOUND", "Unknown room") end
  if not old_version then return errors.new("M_UNSUPPORTED_ROOM_VERSION", "The room's version is not supported") end
  local st = function(t, sk) return hs.rooms:state_event(room_id, t, sk) end
  if membership(st("m.room.member", user_id)) ~= "join" then
    return errors.new("M_FORBIDDEN", "You are not joined to this room")
  end
  if auth.power_level(old_version, st, user_id) < auth.required_level(old_version, st, "m.room.tombstone", true) then
    return errors.new("M_FORBIDDEN", "You do not have the power to upgrade this room")
  end
  local new_id, err = hs.store:transaction(function()
    local nid, rerr = replacement(hs, user_id, room_id, old_version, new_version)
    if not nid then return nil, rerr end
    local ok, terr = send(hs, room_id, user_id, "m.room.tombstone",
      { body = "This room has been replaced", replacement_room = nid })
    if not ok then return nil, terr end
    ok, terr = restrict_old_room(hs, user_id, room_id)
    if not ok then return nil, terr end
    return nid
  end)
  if not new_id then return err end
  hs.server:log("info", "%s upgraded %s to %s (version %s)", user_id, room_id, new_id, new_version.id)
  return { replacement_room = new_id }
end

upgrade_api.routes = {
  { "POST", V3 .. "/rooms/{roomId}/upgrade", upgrade, auth = true },
}

return upgrade_api
