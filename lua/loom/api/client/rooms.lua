-- loom.api.client.rooms: the Client-Server room endpoints.
--
--   POST /createRoom, /join/{roomIdOrAlias}, /rooms/{roomId}/join|leave|forget|
--        invite|kick|ban|unban
--   PUT  /rooms/{roomId}/send/{eventType}/{txnId}, /rooms/{roomId}/state/{type}[/{stateKey}],
--        /rooms/{roomId}/redact/{eventId}/{txnId}
--   GET  /rooms/{roomId}/state[/{type}[/{stateKey}]], /members, /joined_members,
--        /event/{eventId}, /joined_rooms
-- (aliases and the room directory: loom.api.client.directory). rooms_api.routes is
-- installed by loom.api.install. See docs/api-client-rooms.md.
local core = require "loom.core"
local errors = require "loom.http.errors"
local auth = require "loom.room.auth"
local version_mod = require "loom.room.version"
local statemap = require "loom.room.statemap"
local directory = require "loom.api.client.directory"
local sync_events = require "loom.api.client.events"
local sync_token = require "loom.sync.token"
local ljson = require "loom.json"
local visibility = require "loom.room.visibility"
local fed_join = require "loom.federation.join"
local restricted = require "loom.room.restricted"
local fed_query = require "loom.federation.query"
local as_api = require "loom.api.client.appservice"
local fed_membership = require "loom.federation.membership"
local third_party = require "loom.api.client.third_party_invite"

local json = core.json
local ipairs, pairs, type, tostring, tonumber = ipairs, pairs, type, tostring, tonumber
local math_type, math_tointeger = math.type, math.tointeger
local table_sort, table_insert = table.sort, table.insert
local error = error

local _ENV = nil -- luacheck: ignore 211

local rooms_api = {}

local P = "/_matrix/client/v3"

---------------------------------------------------------------------------
-- Helpers

local is_object, is_array = ljson.is_object, ljson.is_array

--- An event in the client format (loom.api.client.events: unsigned, redactions
-- applied), for one user's request.
function rooms_api.client_event(hs, req, ev, room_id)
  return sync_events.clients({ store = hs.store, user_id = req.user_id, device_id = req.device_id,
    room_id = room_id }, { ev })[1]
end

local function room_exists(hs, room_id)
  return type(room_id) == "string" and hs.store:room_version(room_id) ~= nil
end

local function member_event(hs, room_id, user_id)
  return hs.rooms:state_event(room_id, "m.room.member", user_id)
end

local function membership_of(ev)
  return ev and type(ev.content) == "table" and ev.content.membership or nil
end

-- opts: the room/event/check context (user_id, device_id, txn_id, initial).
local function send(hs, room_id, proto, opts)
  local ev, r, code, rule = hs.rooms:send(room_id, proto, opts)
  if not ev then return nil, hs:error(r, code, rule) end
  return ev, r
end

local function profile_content(hs, user_id, membership, extra)
  local content = { membership = membership }
  local u = hs.accounts:user(user_id)
  if u then
    content.displayname = u.displayname
    content.avatar_url = u.avatar_url
  end
  for k, v in pairs(extra or {}) do content[k] = v end
  return content
end

-- The state map a user may read: the current state for members (and
-- world-readable rooms), the state after their leave or ban for those who
-- left. nil and a Matrix error otherwise.
local function readable_state(hs, room_id, user_id)
  if not room_exists(hs, room_id) then
    return nil, errors.new("M_FORBIDDEN", "You are not a member of this room")
  end
  local m = member_event(hs, room_id, user_id)
  local ms = membership_of(m)
  if ms == "join" then return hs.rooms:current_state(room_id) end
  local hv = hs.rooms:state_event(room_id, "m.room.history_visibility", "")
  if hv and type(hv.content) == "table" and hv.content.history_visibility == "world_readable" then
    return hs.rooms:current_state(room_id)
  end
  if ms == "leave" or ms == "ban" then
    local st = hs.rooms:state_at(m.event_id)
    if st then return st end
  end
  return nil, errors.new("M_FORBIDDEN", "You are not a member of this room")
end

-- The events of a state map, sorted by type and state key.
local function state_events(hs, state, filter)
  local ids, keys = {}, {}
  for k, id in pairs(state) do
    if not filter or filter(statemap.split(k)) then ids[#ids + 1] = id; keys[id] = k end
  end
  table_sort(ids, function(a, b) return keys[a] < keys[b] end)
  local loaded = hs.store:events(ids)
  local out = {}
  for _, id in ipairs(ids) do
    local e = loaded[id]
    if e then out[#out + 1] = e end
  end
  return out
end

local function user_domain(user_id)
  return type(user_id) == "string" and user_id:match("^@[^:]*:(.+)$") or nil
end

-- Resolve a room ID or alias: room_id, or nil and a Matrix error.
local function resolve_room(hs, id)
  if type(id) ~= "string" then return nil, errors.new("M_INVALID_PARAM", "Invalid room ID or alias") end
  local first = id:sub(1, 1)
  local room_id = id
  if first == "#" then
    if not directory.valid_alias(id) then return nil, errors.new("M_INVALID_PARAM", "Invalid room alias") end
    room_id = directory.resolve_or_query(hs, id)
    if not room_id then return nil, errors.new("M_NOT_FOUND", "Room alias " .. id .. " not found") end
  elseif first ~= "!" then
    return nil, errors.new("M_INVALID_PARAM", id .. " is not a room ID or alias")
  end
  if not room_exists(hs, room_id) then return nil, errors.new("M_NOT_FOUND", "Room " .. room_id .. " not found") end
  return room_id
end

-- Membership bodies are optional: an empty body is {}.
local function body_object(req)
  if req.body == "" then return {} end
  return req:json()
end

local function optional_string(body, field)
  local v = body[field]
  if v ~= nil and type(v) ~= "string" then
    error(errors.new("M_BAD_JSON", field .. " must be a string"), 0)
  end
  return v
end

---------------------------------------------------------------------------
-- Transaction IDs

-- Send an event once per (user, device, endpoint, txnId).
-- precheck (optional): a Matrix error refusing the event, or nil; asked
-- only when the transaction ID is new.
local function send_once(hs, req, endpoint, room_id, proto, precheck)
  local txn_id = req.params.txnId
  local store = hs.store
  local done = store:txn_event(req.user_id, req.device_id, endpoint, txn_id)
  if done then return { event_id = done } end
  local refused = precheck and precheck()
  if refused then return refused end
  -- a Matrix error from the send, or nil, message, code when the
  -- transaction itself failed (a logged 500)
  local ev, err, code = store:transaction(function()
    local e, r = send(hs, room_id, proto, { user_id = req.user_id, device_id = req.device_id, txn_id = txn_id,
      now = req.massaged_ts })
    if not e then return nil, r end
    store:record_txn(req.user_id, req.device_id, endpoint, txn_id, e.event_id)
    return e
  end)
  if not ev then return nil, err, code end
  return { event_id = ev.event_id }
end

---------------------------------------------------------------------------
-- /createRoom

local PRESETS = {
  private_chat = { join_rule = "invite", history = "shared", guest = "can_join" },
  trusted_private_chat = { join_rule = "invite", history = "shared", guest = "can_join" },
  public_chat = { join_rule = "public", history = "shared", guest = "forbidden" },
}

local function default_power_levels(version, creator)
  local users = {}
  if not version.creators_have_infinite_power then users[creator] = 100 end
  return {
    users = users, users_default = 0,
    events = {
      ["m.room.name"] = 50, ["m.room.power_levels"] = 100, ["m.room.history_visibility"] = 100,
      ["m.room.canonical_alias"] = 50, ["m.room.avatar"] = 50, ["m.room.tombstone"] = 100,
      ["m.room.server_acl"] = 100, ["m.room.encryption"] = 100,
    },
    events_default = 0, state_default = 50, ban = 50, kick = 50, redact = 50, invite = 0,
    notifications = { room = 50 },
  }
end

local function bad(msg) return nil, errors.new("M_BAD_JSON", msg) end

-- m.room.power_levels content from a client: every level an integer, as the
-- event schema says, in every room version (the strings room versions before
-- 10 accept are for events from other servers; Synapse refuses them from
-- clients too). Returns nil, or nil, an M_BAD_JSON error.
local PL_LEVELS = { "ban", "events_default", "invite", "kick", "redact", "state_default", "users_default" }
local PL_MAPS = { "events", "notifications", "users" }
local function check_power_levels(content)
  if not is_object(content) then return nil end
  for _, k in ipairs(PL_LEVELS) do
    if content[k] ~= nil and math_type(content[k]) ~= "integer" then
      return bad('"' .. k .. '": not an integer')
    end
  end
  for _, k in ipairs(PL_MAPS) do
    local m = content[k]
    if m ~= nil then
      if not is_object(m) then return bad('"' .. k .. '": not an object') end
      for key, v in pairs(m) do
        if math_type(v) ~= "integer" then return bad('"' .. tostring(key) .. '": not an integer') end
      end
    end
  end
  return nil
end

-- Check the request body; returns a table of checked values or nil, error.
local function check_create(hs, body, req)
  local c = {}
  c.visibility = body.visibility or "private"
  if c.visibility ~= "public" and c.visibility ~= "private" then
    return nil, errors.new("M_INVALID_PARAM", "visibility must be 'public' or 'private'")
  end
  c.preset = body.preset or (c.visibility == "public" and "public_chat" or "private_chat")
  if not PRESETS[c.preset] then return bad("Unknown preset") end     -- a malformed body (spec, Synapse)
  if body.room_version ~= nil and type(body.room_version) ~= "string" then
    return bad("room_version must be a string")
  end
  local vid = body.room_version or hs.rooms.default_version
  local version = version_mod.get(vid)
  if not version then
    return nil, errors.new("M_UNSUPPORTED_ROOM_VERSION", "Room version " .. vid .. " is not supported")
  end
  c.version = version
  for _, f in ipairs { "creation_content", "power_level_content_override" } do
    if body[f] ~= nil and not is_object(body[f]) then return bad(f .. " must be an object") end
  end
  for _, f in ipairs { "name", "topic", "room_alias_name" } do
    if body[f] ~= nil and type(body[f]) ~= "string" then return bad(f .. " must be a string") end
  end
  if body.initial_state ~= nil then
    if not is_array(body.initial_state) then return bad("initial_state must be an array") end
    for _, e in ipairs(body.initial_state) do
      if not is_object(e) or type(e.type) ~= "string" or not is_object(e.content)
        or (e.state_key ~= nil and type(e.state_key) ~= "string") then
        return bad("initial_state entries need type, content and a string state_key")
      end
    end
  end
  if body.invite ~= nil then
    if not is_array(body.invite) then return bad("invite must be an array") end
    for _, u in ipairs(body.invite) do
      if not auth.valid_user_id(u) then return nil, errors.new("M_INVALID_PARAM", "Invalid user ID in invite") end
    end
  end
  if body.is_direct ~= nil and type(body.is_direct) ~= "boolean" then return bad("is_direct must be a boolean") end
  if body.room_alias_name then
    local alias = "#" .. body.room_alias_name .. ":" .. hs.server_name
    if body.room_alias_name:find(":", 1, true) or not directory.valid_alias(alias) then
      return nil, errors.new("M_INVALID_PARAM", "Invalid room_alias_name")
    end
    if directory.resolve(hs, alias) then return nil, errors.new("M_ROOM_IN_USE", "Room alias already taken") end
    local reserved = as_api.exclusive(hs, "aliases", alias, req.appservice)
    if reserved then return nil, reserved end
    c.alias = alias
  end
  return c
end

-- A copy of a list of strings (what hooks see of the request).
local function copy_list(list)
  local out = {}
  for i, v in ipairs(list or {}) do out[i] = v end
  return out
end

local function create_room(hs, req)
  local body = body_object(req)
  local c, cerr = check_create(hs, body, req)
  if not c then return cerr end
  local user = req.user_id
  local version = c.version
  local denied = hs:check("room/create/check", { user_id = user, room_version = version.id, preset = c.preset,
    visibility = c.visibility, name = body.name, topic = body.topic, room_alias_name = body.room_alias_name,
    invite = copy_list(body.invite), is_direct = body.is_direct == true })
  if denied then return denied end
  local hook_opts = { user_id = user, device_id = req.device_id, initial = true }
  local preset = PRESETS[c.preset]
  local initial = {}
  for _, e in ipairs(body.initial_state or {}) do initial[statemap.key(e.type, e.state_key or "")] = true end

  local rid
  local remote_invites = {}
  local room_id, err, ecode = hs.store:transaction(function()
    local function state(t, content, sk)
      if t == "m.room.power_levels" then
        local _, refused = check_power_levels(content)
        if refused then return nil, refused end
      end
      return send(hs, rid, { type = t, state_key = sk or "", sender = user, content = content }, hook_opts)
    end
    local ev, code
    rid, ev, code = hs.rooms:create_room(user, { room_version = version.id, content = body.creation_content,
      user_id = user, device_id = req.device_id, initial = true })
    if not rid then return nil, hs:error(ev, code) end
    local e, e2 = send(hs, rid, { type = "m.room.member", state_key = user, sender = user,
      content = profile_content(hs, user, "join") }, hook_opts)
    if not e then return nil, e2 end
    -- power levels
    local pl = default_power_levels(version, user)
    if c.preset == "trusted_private_chat" then
      for _, u in ipairs(body.invite or {}) do pl.users[u] = 100 end
    end
    for k, v in pairs(body.power_level_content_override or {}) do pl[k] = v end
    if not initial[statemap.key("m.room.power_levels", "")] or body.power_level_content_override then
      e, e2 = state("m.room.power_levels", pl)
      if not e then return nil, e2 end
    end
    if c.alias then
      denied = hs:check("directory/publish/check", { user_id = user, room_id = rid, alias = c.alias })
      if denied then return nil, denied end
      -- taken since the check: the whole room is rolled back
      if not directory.add_alias(hs, c.alias, rid, user) then
        return nil, errors.new("M_ROOM_IN_USE", "Room alias already taken")
      end
      e, e2 = state("m.room.canonical_alias", { alias = c.alias })
      if not e then return nil, e2 end
    end
    local preset_events = {
      { "m.room.join_rules", { join_rule = preset.join_rule } },
      { "m.room.history_visibility", { history_visibility = preset.history } },
      { "m.room.guest_access", { guest_access = preset.guest } },
    }
    for _, p in ipairs(preset_events) do
      if not initial[statemap.key(p[1], "")] then
        e, e2 = state(p[1], p[2])
        if not e then return nil, e2 end
      end
    end
    for _, s in ipairs(body.initial_state or {}) do
      e, e2 = state(s.type, s.content, s.state_key or "")
      if not e then return nil, e2 end
    end
    if body.name then
      e, e2 = state("m.room.name", { name = body.name })
      if not e then return nil, e2 end
    end
    if body.topic then
      e, e2 = state("m.room.topic", { topic = body.topic })
      if not e then return nil, e2 end
    end
    for _, u in ipairs(body.invite or {}) do
      denied = hs:check("room/invite/check", { user_id = user, invitee = u, room_id = rid })
      if denied then return nil, denied end
      local content = profile_content(hs, u, "invite")
      if body.is_direct then content.is_direct = true end
      if hs.federation_on and user_domain(u) ~= hs.server_name then
        remote_invites[#remote_invites + 1] = { u, content }    -- once the room exists
      else
        e, e2 = state("m.room.member", content, u)
        if not e then return nil, e2 end
      end
    end
    if c.visibility == "public" then
      denied = hs:check("directory/publish/check", { user_id = user, room_id = rid, visibility = "public" })
      if denied then return nil, denied end
      directory.set_visibility(hs, rid, "public")
    end
    return rid
  end)
  if not room_id then return nil, err, ecode end
  -- users of other servers: each server signs its invite first (a failure
  -- is the answer, the room stays, as in Synapse)
  for _, ri in ipairs(remote_invites) do
    local ok, ierr = fed_membership.invite(hs, room_id, user, ri[1], ri[2])
    if not ok then return ierr end
  end
  return { room_id = room_id, room_alias = c.alias }
end

---------------------------------------------------------------------------
-- Membership

-- The servers to join a room through: ?server_name= and ?via= (in that
-- order), then the room ID's own server.
local function join_servers(req, room_id, extra)
  local out = {}
  for _, v in ipairs(extra or {}) do out[#out + 1] = v end
  local args = req.args or {}
  for _, k in ipairs { "server_name", "via" } do
    for _, v in ipairs(args[k] or {}) do out[#out + 1] = v end
  end
  local domain = type(room_id) == "string" and room_id:match("^![^:]*:(.+)$")
  if domain then out[#out + 1] = domain end
  return out
end

-- A join through another server (the room is not known here, or nobody of
-- this server is in it).
local function remote_join(hs, req, room_id, reason, extra)
  local denied = hs:check("room/join/check", { user_id = req.user_id, room_id = room_id, invited = false })
  if denied then return denied end
  local servers = {}
  for _, srv in ipairs(join_servers(req, room_id, extra)) do
    if srv ~= hs.server_name then servers[#servers + 1] = srv end
  end
  if #servers == 0 then return errors.new("M_NOT_FOUND", "Room " .. room_id .. " not found") end
  local ok, err = fed_join.remote(hs, room_id, req.user_id, servers,
    profile_content(hs, req.user_id, "join", { reason = reason }))
  if not ok then return err end
  hs.store:unforget_room(req.user_id, room_id)
  return { room_id = room_id }
end

local function join(hs, req, id)
  local body = body_object(req)
  local reason = optional_string(body, "reason")
  if req.is_guest then
    -- guests join only rooms here whose m.room.guest_access is can_join
    local rid, rerr = resolve_room(hs, id)
    if not rid then return rerr end
    local ga = hs.rooms:state_event(rid, "m.room.guest_access", "")
    if not (ga and is_object(ga.content) and ga.content.guest_access == "can_join") then
      return errors.new("M_GUEST_ACCESS_FORBIDDEN", "Guests may not join this room")
    end
  end
  local via
  if hs.federation_on and type(id) == "string" and id:sub(1, 1) == "#" and directory.valid_alias(id)
      and id:match(":(.+)$") ~= hs.server_name then
    -- another server's alias: ask it for the room and the servers to join through
    local d, derr = fed_query.directory(hs, id)
    if not d then return derr end
    id, via = d.room_id, d.servers
  end
  if hs.federation_on and type(id) == "string" and id:sub(1, 1) == "!" and not room_exists(hs, id) then
    return remote_join(hs, req, id, reason, via)
  end
  local room_id, err = resolve_room(hs, id)
  if not room_id then
    -- a room unknown here may be blocked all the same (a purged one): 403 first, as Synapse
    local denied = type(id) == "string" and id:sub(1, 1) == "!"
      and hs:check("room/join/check", { user_id = req.user_id, room_id = id, invited = false })
    return denied or err
  end
  local rn = hs.store:room_nid(room_id)
  if hs.federation_on and not hs.store:host_joined(rn, hs.server_name) then
    -- invited from another server: join through the inviter's
    local oob, inviter = hs.store:latest_membership(req.user_id, rn)
    if oob == "invite" and user_domain(inviter) then
      via = via or {}
      table_insert(via, 1, user_domain(inviter))
    end
    local others = false
    for _, srv in ipairs(join_servers(req, room_id, via)) do if srv ~= hs.server_name then others = true end end
    if others then return remote_join(hs, req, room_id, reason, via) end
  end
  local ms = membership_of(member_event(hs, room_id, req.user_id))
  if ms == "join" then return { room_id = room_id } end
  if ms == "ban" then    -- as Synapse answers (the spec names no errcode)
    return errors.new("MEMBERSHIP_BAD_STATE", "Cannot join a room one is banned from")
  end
  local denied = hs:check("room/join/check", { user_id = req.user_id, room_id = room_id, invited = ms == "invite" })
  if denied then return denied end
  -- a restricted room: a local member who may invite vouches for the join
  local version = version_mod.get(hs.store:room_version(room_id))
  local vouch, why = nil, nil
  if version then vouch, why = restricted.authoriser(hs.rooms, version, room_id, req.user_id, hs.server_name) end
  if why then return errors.new("M_FORBIDDEN", "You may not join this room: " .. why) end
  local ev, e2 = send(hs, room_id, { type = "m.room.member", state_key = req.user_id, sender = req.user_id,
    content = profile_content(hs, req.user_id, "join", { reason = reason, join_authorised_via_users_server = vouch }) },
    { user_id = req.user_id, device_id = req.device_id })
  if not ev then return e2 end
  hs.store:unforget_room(req.user_id, room_id)
  return { room_id = room_id }
end

-- POST /knock/{roomIdOrAlias}: a knock on a room here, or through another
-- server (?server_name= / ?via=, the alias's servers, the room ID's server)
-- when this server is not in the room.
local function knock(hs, req)
  local id = req.params.roomIdOrAlias
  local body = body_object(req)
  local reason = optional_string(body, "reason")
  local via
  if hs.federation_on and type(id) == "string" and id:sub(1, 1) == "#" and directory.valid_alias(id)
      and id:match(":(.+)$") ~= hs.server_name then
    local d, derr = fed_query.directory(hs, id)
    if not d then return derr end
    id, via = d.room_id, d.servers
  elseif type(id) == "string" and id:sub(1, 1) == "#" then
    local rid, rerr = resolve_room(hs, id)
    if not rid then return rerr end
    id = rid
  end
  if type(id) ~= "string" or not id:match("^![^:]+:.+$") then
    return errors.new("M_INVALID_PARAM", "Invalid room ID or alias")
  end
  local content = profile_content(hs, req.user_id, "knock", { reason = reason })
  local rn = room_exists(hs, id) and hs.store:room_nid(id)
  if hs.federation_on and not (rn and hs.store:host_joined(rn, hs.server_name)) then
    local servers = {}
    for _, srv in ipairs(join_servers(req, id, via)) do
      if srv ~= hs.server_name then servers[#servers + 1] = srv end
    end
    if #servers == 0 then return errors.new("M_NOT_FOUND", "Room " .. id .. " not found") end
    local ok, kerr = fed_membership.remote_knock(hs, id, req.user_id, servers, content)
    if not ok then return kerr end
    return { room_id = id }
  end
  if not rn then return errors.new("M_NOT_FOUND", "Room " .. id .. " not found") end
  local ev, e2 = send(hs, id, { type = "m.room.member", state_key = req.user_id, sender = req.user_id,
    content = content }, { user_id = req.user_id, device_id = req.device_id })
  if not ev then return e2 end
  return { room_id = id }
end

-- invite / kick / ban / unban / leave: a member event about `target`.
-- only_from: the target's memberships this change applies to (kick: join,
-- invite, knock); any other is 403 and nothing is sent.
-- action: "kick", "ban", "unban" or "invite" (nil for leave). As in Synapse,
-- kicking or inviting a banned user and unbanning one who is not banned are
-- 403 M_BAD_STATE, whoever asks.
local function membership_change(hs, req, membership, target_from_body, only_from, action)
  local body = body_object(req)
  local reason = optional_string(body, "reason")
  local room_id = req.params.roomId
  if not room_exists(hs, room_id) then return errors.new("M_NOT_FOUND", "Room not found") end
  local rn = hs.store:room_nid(room_id)
  if hs.federation_on and not target_from_body and membership == "leave"
      and not hs.store:host_joined(rn, hs.server_name) then
    -- rejecting an invite (or rescinding a knock) of a room this server is
    -- not in: through the inviter's server, then the room ID's
    local oob, inviter, oob_id = hs.store:latest_membership(req.user_id, rn)
    if oob == "invite" or oob == "knock" then
      local servers = {}
      if oob == "invite" and user_domain(inviter) then servers[1] = user_domain(inviter) end
      for _, srv in ipairs(join_servers(req, room_id)) do servers[#servers + 1] = srv end
      local leave_content = { membership = "leave", reason = reason }
      local ok, lerr = fed_membership.remote_leave(hs, room_id, req.user_id, servers, leave_content)
      if not ok and oob == "invite" then
        -- no server takes it: the invite is declined here alone (as Synapse)
        hs.server:log("info", "rejecting the invite to %s locally: %s", room_id, tostring(lerr and lerr.message))
        ok, lerr = fed_membership.local_leave(hs, room_id, req.user_id, oob_id, leave_content)
      end
      if not ok then return lerr end
      return {}
    end
  end
  local target = req.user_id
  if action == "invite" and third_party.requested(body) then
    -- by third-party identifier: the bound user, else an invite stored with the identity server
    local mxid, terr = third_party.invite(hs, req, room_id, body)
    if mxid == nil then return terr end
    if mxid == false then return {} end
    body.user_id = mxid
  end
  if target_from_body then
    target = body.user_id
    if target == nil then return errors.new("M_MISSING_PARAM", "user_id is required") end
    if not auth.valid_user_id(target) then return errors.new("M_INVALID_PARAM", "Invalid user_id") end
  end
  local current = membership_of(member_event(hs, room_id, target))
  if action == "unban" and current ~= "ban" then
    return errors.new("MEMBERSHIP_BAD_STATE", "Cannot unban a user who is not banned")
  end
  if current == "ban" and (action == "kick" or action == "invite") then
    return errors.new("MEMBERSHIP_BAD_STATE", "Cannot " .. action .. " a user who is banned")
  end
  if only_from and not only_from[current] then
    return errors.new("M_FORBIDDEN", "The target user is not in the room")
  end
  local content = { membership = membership, reason = reason }
  if membership == "invite" then
    local denied = hs:check("room/invite/check", { user_id = req.user_id, invitee = target, room_id = room_id })
    if denied then return denied end
    content = profile_content(hs, target, "invite", { reason = reason })
    if hs.federation_on and user_domain(target) ~= hs.server_name then
      -- a user of another server: its server signs the invite first
      local ok, ierr = fed_membership.invite(hs, room_id, req.user_id, target, content)
      if not ok then return ierr end
      return {}
    end
  end
  local ev, e2 = send(hs, room_id, { type = "m.room.member", state_key = target, sender = req.user_id,
    content = content }, { user_id = req.user_id, device_id = req.device_id })
  if not ev then return e2 end
  return {}
end

local function forget(hs, req)
  local room_id = req.params.roomId
  if not room_exists(hs, room_id) then return errors.new("M_NOT_FOUND", "Room not found") end
  local ms = membership_of(member_event(hs, room_id, req.user_id))
  if ms == "join" or ms == "invite" or ms == "knock" then
    return errors.new("BAD_REQUEST", "You must leave the room before forgetting it")
  end
  hs.store:forget_room(req.user_id, room_id)
  return {}
end

---------------------------------------------------------------------------
-- State, members, events

local function get_state(hs, req)
  local st, err = readable_state(hs, req.params.roomId, req.user_id)
  if not st then return err end
  local out = json.array {}
  for _, e in ipairs(state_events(hs, st)) do
    out[#out + 1] = rooms_api.client_event(hs, req, e[1], req.params.roomId)
  end
  return 200, out
end

local function get_state_event(hs, req)
  local room_id = req.params.roomId
  local st, err = readable_state(hs, room_id, req.user_id)
  if not st then return err end
  local t, sk = req.params.eventType, req.params.stateKey or ""
  local id = st[statemap.key(t, sk)]
  local ev = id and hs.store:event(id)
  if not ev then return errors.new("M_NOT_FOUND", "Event not found") end
  if req:arg("format") == "event" then return rooms_api.client_event(hs, req, ev, room_id) end
  return ev.content or {}
end

-- The current state event (type, sk) when a joined `sender` sent it with
-- exactly `content` (as canonical JSON), else nil: setting it again is a
-- no-op, as in Synapse.
local function unchanged_state(hs, room_id, t, sk, sender, content)
  local cur = hs.rooms:state_event(room_id, t, sk)
  if not cur or cur.sender ~= sender then return nil end
  if membership_of(member_event(hs, room_id, sender)) ~= "join" then return nil end
  local now, new = json.encode(cur.content), json.encode(content)
  if now and now == new then return cur end
  return nil
end

-- An application service's ?ts= on /send and /state (the spec's timestamp
-- massaging): sets req.massaged_ts, the event's origin_server_ts. Others'
-- ts is ignored. Returns an error for a ts that is not one.
local function massage_ts(req)
  if not req.appservice then return nil end
  local v = req:arg("ts")
  if v == nil then return nil end
  local n = v:match("^%d+$") and math_tointeger(tonumber(v))
  if not n or n > 9007199254740991 then
    return errors.new("M_INVALID_PARAM", "ts must be a timestamp in milliseconds")
  end
  req.massaged_ts = n
  return nil
end

local function put_state(hs, req)
  local room_id = req.params.roomId
  local bad_ts = massage_ts(req)
  if bad_ts then return bad_ts end
  local body = req:json()
  if not room_exists(hs, room_id) then return errors.new("M_FORBIDDEN", "You are not a member of this room") end
  local same = unchanged_state(hs, room_id, req.params.eventType, req.params.stateKey or "", req.user_id, body)
  if same then return { event_id = same.event_id } end
  if req.params.eventType == "m.room.power_levels" then
    local _, refused = check_power_levels(body)
    if refused then return refused end
  end
  -- new aliases must be local aliases of this room (checked for members; the
  -- send refuses the others)
  if req.params.eventType == "m.room.canonical_alias"
      and membership_of(member_event(hs, room_id, req.user_id)) == "join" then
    local refused = directory.check_canonical_alias(hs, room_id, req.params.stateKey or "", body)
    if refused then return refused end
  end
  local ev, e2 = send(hs, room_id, { type = req.params.eventType, state_key = req.params.stateKey or "",
    sender = req.user_id, content = body }, { user_id = req.user_id, device_id = req.device_id,
    now = req.massaged_ts })
  if not ev then return e2 end
  return { event_id = ev.event_id }
end

-- The room's state as of a /sync or /messages token (members?at=): the
-- state after the room's last timeline event at or before its stream
-- position. Returns the state map, or nil and an error.
local function state_at_token(hs, room_id, text)
  local tok, terr = sync_token.to_store(text, sync_token.current(hs))
  local parsed = tok and core.token.parse(tok)
  if not parsed then return nil, errors.new("M_INVALID_PARAM", "invalid 'at' token: " .. (terr or "")) end
  local nid = hs.store:room_nid(room_id)
  local id, _
  if nid then _, id = hs.store:timeline_event_at(nid, parsed.stream) end
  -- no event of the room by then: its state was empty
  if not id then return {} end
  return hs.rooms:state_at(id)
end

local function members(hs, req)
  local st, err = readable_state(hs, req.params.roomId, req.user_id)
  if not st then return err end
  local at = req:arg("at")
  if at then
    -- never more than the user may read now: a member's view as of `at`
    local past
    past, err = state_at_token(hs, req.params.roomId, at)
    if not past then return err end
    st = past
  end
  local want, not_want = req:arg("membership"), req:arg("not_membership")
  local out = json.array {}
  for _, e in ipairs(state_events(hs, st, function(t) return t == "m.room.member" end)) do
    local ms = membership_of(e[1])
    if (not want or ms == want) and (not not_want or ms ~= not_want) then
      out[#out + 1] = rooms_api.client_event(hs, req, e[1], req.params.roomId)
    end
  end
  return { chunk = out }
end

local function joined_members(hs, req)
  local st, err = readable_state(hs, req.params.roomId, req.user_id)
  if not st then return err end
  local joined = {}
  for _, e in ipairs(state_events(hs, st, function(t) return t == "m.room.member" end)) do
    local ev = e[1]
    if membership_of(ev) == "join" then
      local c = ev.content
      joined[ev.state_key] = {
        display_name = type(c.displayname) == "string" and c.displayname or json.null,
        avatar_url = type(c.avatar_url) == "string" and c.avatar_url or json.null,
      }
    end
  end
  return { joined = joined }
end

-- May the user see `ev` (history visibility, loom.room.visibility; not a
-- non-state event of a user they ignore)?
local function can_see(hs, user_id, room_id, ev)
  return visibility.can_see(hs, user_id, room_id, ev, hs.store:ignored_users(user_id))
end

local function get_event(hs, req)
  local room_id = req.params.roomId
  local ev, meta = hs.store:event(req.params.eventId)
  if not ev or meta.room_id ~= room_id or meta.rejected or meta.soft_failed then
    return errors.new("M_NOT_FOUND", "Event not found")
  end
  -- an event the user may not see answers as one that does not exist
  if not can_see(hs, req.user_id, room_id, ev, meta) then return errors.new("M_NOT_FOUND", "Event not found") end
  return rooms_api.client_event(hs, req, ev, room_id)
end

local function redact(hs, req)
  local room_id = req.params.roomId
  local body = req:json()
  local reason = optional_string(body, "reason")
  local target_id = req.params.eventId
  local vid = hs.store:room_version(room_id)
  local version = vid and version_mod.get(vid)
  if not version then return errors.new("M_NOT_FOUND", "Room not found") end
  local target, meta = hs.store:event(target_id)
  -- an event of another room (Synapse: 400); a non-member gets the send's 403
  if target and meta.room_id ~= room_id and membership_of(member_event(hs, room_id, req.user_id)) == "join" then
    return errors.new("M_INVALID_PARAM", "Cannot redact an event of another room")
  end
  if target and meta.room_id == room_id and target.sender ~= req.user_id then
    local st = function(t, sk) return hs.rooms:state_event(room_id, t, sk) end
    if auth.power_level(version, st, req.user_id) < auth.levels(version, st).redact then
      return errors.new("M_FORBIDDEN", "You may not redact other users' events")
    end
  end
  return send_once(hs, req, "redact:" .. room_id, room_id, { type = "m.room.redaction", sender = req.user_id,
    content = { reason = reason }, redacts = target_id })
end

---------------------------------------------------------------------------

-- A second annotation with the same type and key by the same sender on
-- the same event (unless the first was redacted) is refused (Client-Server
-- API, "Avoiding duplicate annotations").
local function duplicate_annotation(hs, req, room_id, t, body)
  local rel = body["m.relates_to"]
  if not is_object(rel) or rel.rel_type ~= "m.annotation" or type(rel.event_id) ~= "string"
      or type(rel.key) ~= "string" then
    return nil
  end
  if hs.store:annotation_sent(room_id, rel.event_id, req.user_id, t, rel.key) then
    return errors.new("M_DUPLICATE_ANNOTATION", "You sent this annotation already")
  end
end

-- A thread cannot start from an event that is itself the child of a
-- relationship (its m.relates_to has a rel_type): so threads never nest
-- (Client-Server API, "Threading", "Validation of m.thread relationships":
-- 400 M_UNKNOWN). A root this server does not have is let through.
local function nested_thread(hs, body)
  local rel = body["m.relates_to"]
  if not is_object(rel) or rel.rel_type ~= "m.thread" or type(rel.event_id) ~= "string" then return nil end
  local root = hs.store:event(rel.event_id)
  local content = root and is_object(root.content) and root.content
  local root_rel = content and content["m.relates_to"]
  if is_object(root_rel) and root_rel.rel_type ~= nil then
    return errors.new("BAD_REQUEST", "Cannot start a thread from an event with a relation")
  end
end

local function send_message(hs, req)
  local room_id, t = req.params.roomId, req.params.eventType
  local bad_ts = massage_ts(req)
  if bad_ts then return bad_ts end
  local body = req:json()
  return send_once(hs, req, "send:" .. room_id .. ":" .. t, room_id,
    { type = t, sender = req.user_id, content = body },
    function() return nested_thread(hs, body) or duplicate_annotation(hs, req, room_id, t, body) end)
end

local function joined_rooms(hs, req)
  local rooms = hs.store:rooms_for_user(req.user_id)
  local out = json.array {}
  for i, r in ipairs(rooms) do out[i] = r end
  return { joined_rooms = out }
end

local function membership(kind, target_from_body, only_from, action)
  return function(hs, req) return membership_change(hs, req, kind, target_from_body, only_from, action) end
end

--- The room endpoints: { method, path, handler(hs, req), auth = bool },
-- installed by loom.api.install. Every one needs an access token.
local R = P .. "/rooms/{roomId}"
rooms_api.routes = {
  { "POST", P .. "/createRoom", create_room, auth = true },
  { "POST", P .. "/join/{roomIdOrAlias}", function(hs, req) return join(hs, req, req.params.roomIdOrAlias) end,
    auth = true },
  { "POST", R .. "/join", function(hs, req) return join(hs, req, req.params.roomId) end, auth = true },
  { "POST", P .. "/knock/{roomIdOrAlias}", knock, auth = true },
  { "POST", R .. "/leave", membership("leave", false), auth = true },
  { "POST", R .. "/invite", membership("invite", true, nil, "invite"), auth = true },
  { "POST", R .. "/kick", membership("leave", true, { join = true, invite = true, knock = true }, "kick"),
    auth = true },
  { "POST", R .. "/ban", membership("ban", true, nil, "ban"), auth = true },
  { "POST", R .. "/unban", membership("leave", true, nil, "unban"), auth = true },
  { "POST", R .. "/forget", forget, auth = true },

  { "PUT", R .. "/send/{eventType}/{txnId}", send_message, auth = true },
  { "PUT", R .. "/redact/{eventId}/{txnId}", redact, auth = true },

  { "GET", R .. "/state", get_state, auth = true },
  { "GET", R .. "/state/{eventType}", get_state_event, auth = true },
  { "GET", R .. "/state/{eventType}/", get_state_event, auth = true },
  { "GET", R .. "/state/{eventType}/{stateKey}", get_state_event, auth = true },
  { "PUT", R .. "/state/{eventType}", put_state, auth = true },
  { "PUT", R .. "/state/{eventType}/", put_state, auth = true },
  { "PUT", R .. "/state/{eventType}/{stateKey}", put_state, auth = true },

  { "GET", R .. "/members", members, auth = true },
  { "GET", R .. "/joined_members", joined_members, auth = true },
  { "GET", R .. "/event/{eventId}", get_event, auth = true },
  { "GET", P .. "/joined_rooms", joined_rooms, auth = true },
}

return rooms_api
