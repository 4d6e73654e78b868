-- loom.api.admin: the server admin API, under the paths Synapse documents
-- and the community's admin tools (synapse-admin) call: users (list,
-- query, create or modify, deactivate, reset password, admin flag, whois,
-- devices, joined rooms),
-- rooms (list, details, members, state, block, delete), server notices and
-- the server version. See docs/admin.md.
--
--   admin.routes       --> { { "GET", "/_synapse/admin/v2/users", handler, auth = true }, ... }
--   admin.install(hs)  -- blocked rooms refuse joins and invites; notice rooms cannot be left
--
-- Every route needs an access token of an account whose admin flag is set
-- (bin/loom register-user --admin, or this API); any other account gets
-- 403 M_FORBIDDEN "You are not a server admin". Account changes go through
-- the account life cycle of loom.api.client.account (one deactivation path).
local core = require "loom.core"
local loom = require "loom"
local errors = require "loom.http.errors"
local request = require "loom.http.request"
local ljson = require "loom.json"
local auth = require "loom.room.auth"
local account = require "loom.api.client.account"
local rooms_api = require "loom.api.client.rooms"
local sync_events = require "loom.api.client.events"
local accounts_mod = require "loom.store.accounts"

local json = core.json
local pairs, ipairs, type, tostring, pcall, error = pairs, ipairs, type, tostring, pcall, error
local table_sort, table_remove = table.sort, table.remove

local _ENV = nil -- luacheck: ignore 211

local admin = {}

local V1 = "/_synapse/admin/v1"
local V2 = "/_synapse/admin/v2"

local MAX_PASSWORD = 512
local MAX_DISPLAYNAME = 256
local MAX_AVATAR_URL = 1000
local MAX_LIMIT = 1000           -- page size cap of the list endpoints
local MAX_SEARCH = 256           -- longest name / search_term filter
local MAX_DELETE_STATUS = 1000   -- room deletions remembered for their status

local is_object = ljson.is_object

local function bad(msg) return errors.new("BAD_REQUEST", msg) end

local function is_local(hs, user_id)
  return user_id:match("^@[^:]+:(.+)$") == hs.server_name
end

local function null_or(v) if v == nil then return json.null end return v end

-- The {userId} of a path: a valid user ID of this server, or nil and the
-- error Synapse answers (400 for a malformed or another server's ID).
local function local_user_param(hs, req, what)
  local user_id = req.params.userId
  if not auth.valid_user_id(user_id) then
    return nil, errors.new("M_INVALID_PARAM", "Invalid user ID " .. tostring(user_id))
  end
  if not is_local(hs, user_id) then return nil, bad(what or "Can only look up local users") end
  return user_id
end

local function room_param(req)
  local room_id = req.params.roomId
  if type(room_id) ~= "string" or #room_id > 255 or not room_id:match("^![^:]+:.+$") then
    return nil, errors.new("M_INVALID_PARAM", tostring(room_id) .. " is not a legal room ID")
  end
  return room_id
end

-- A JSON body: {} when empty (the admin tools send no body for some calls).
local function body_of(req)
  if req.body == nil or req.body == "" then return {} end
  return req:json()
end

-- An optional field of a body, or raises the Matrix error for its type.
local function opt(body, key, ty, max)
  local v = body[key]
  if v == nil or v == json.null then return nil end
  if type(v) ~= ty then
    local err = errors.new("M_INVALID_PARAM", key .. " must be a " .. (ty == "boolean" and "boolean" or ty))
    return nil, err
  end
  if max and #v > max then return nil, errors.new("M_INVALID_PARAM", key .. " is longer than " .. max .. " bytes") end
  return v
end

-- A boolean query parameter ("true" / "false"), default when absent.
local function arg_bool(req, name, default)
  local v = req:arg(name)
  if v == nil then return default end
  if v == "true" then return true elseif v == "false" then return false end
  error(errors.new("M_INVALID_PARAM", "Query parameter " .. name .. " must be true or false"), 0)
end

local function arg_dir(req)
  local d = req:arg("dir", "f")
  if d ~= "f" and d ~= "b" then error(errors.new("M_INVALID_PARAM", "Unknown direction: " .. d), 0) end
  return d
end

-- Wrap a handler: only for server admins.
local function admin_only(fn)
  return function(hs, req)
    local u = hs.accounts:user(req.user_id)
    if not (u and u.admin and not u.deactivated) then
      return errors.new("M_FORBIDDEN", "You are not a server admin")
    end
    return fn(hs, req)
  end
end

---------------------------------------------------------------------------
-- users

local function user_json(hs, u)
  return {
    name = u.user_id, displayname = null_or(u.displayname), avatar_url = null_or(u.avatar_url),
    is_guest = u.is_guest, admin = u.admin, deactivated = u.deactivated, erased = u.deactivated,
    shadow_banned = false, locked = false, creation_ts = u.created_ts, appservice_id = json.null,
    consent_server_notice_sent = json.null, consent_version = json.null, user_type = json.null,
    threepids = json.array(), external_ids = json.array(),
    devices = hs and #hs.store:user_devices(u.user_id) or nil,
  }
end

local function list_users(hs, req)
  local from = req:arg_integer("from", 0, 0, 1000000000)
  local limit = req:arg_integer("limit", 100, 1, MAX_LIMIT)
  local name = req:arg("name") or req:arg("user_id")
  if name and #name > MAX_SEARCH then return errors.new("M_INVALID_PARAM", "name is too long") end
  local order_by = req:arg("order_by", "name")
  if not accounts_mod.USER_ORDER[order_by] then
    return errors.new("M_INVALID_PARAM", "Unknown value for order_by: " .. order_by)
  end
  local rows, total = hs.accounts:list_users { from = from, limit = limit, name = name,
    guests = arg_bool(req, "guests", true), deactivated = arg_bool(req, "deactivated", false),
    order_by = order_by, dir = arg_dir(req) }
  local users = json.array()
  for i, u in ipairs(rows) do users[i] = user_json(nil, u) end
  local out = { users = users, total = total }
  if from + #rows < total then out.next_token = tostring(from + #rows) end
  return out
end

local function get_user(hs, req)
  local user_id, err = local_user_param(hs, req)
  if not user_id then return err end
  local u = hs.accounts:user(user_id)
  if not u then return errors.new("M_NOT_FOUND", "User not found") end
  return user_json(hs, u)
end

-- Check the body of PUT /v2/users/{userId}: the fields it sets, or nil
-- and the Matrix error.
local function check_user_body(body)
  local f = {}
  local err
  f.password, err = opt(body, "password", "string", MAX_PASSWORD)
  if err then return nil, err end
  f.logout_devices, err = opt(body, "logout_devices", "boolean")
  if err then return nil, err end
  f.displayname, err = opt(body, "displayname", "string", MAX_DISPLAYNAME)
  if err then return nil, err end
  f.avatar_url, err = opt(body, "avatar_url", "string", MAX_AVATAR_URL)
  if err then return nil, err end
  f.admin, err = opt(body, "admin", "boolean")
  if err then return nil, err end
  f.deactivated, err = opt(body, "deactivated", "boolean")
  if err then return nil, err end
  if body.threepids ~= nil and body.threepids ~= json.null and not ljson.is_array(body.threepids) then
    return nil, errors.new("M_INVALID_PARAM", "threepids must be a list")
  end
  if body.user_type ~= nil and body.user_type ~= json.null and type(body.user_type) ~= "string" then
    return nil, errors.new("M_INVALID_PARAM", "user_type must be a string")
  end
  return f
end

local function put_user(hs, req)
  local user_id, err = local_user_param(hs, req, "This endpoint can only be used with local users")
  if not user_id then return err end
  local body = req:json()
  local f, ferr = check_user_body(body)
  if not f then return ferr end
  local u = hs.accounts:user(user_id)
  local created = false
  if u then
    if f.admin == false and user_id == req.user_id then return bad("You may not demote yourself.") end
    if f.deactivated == false and u.deactivated and not f.password then
      return bad("Must provide a password to re-activate an account.")
    end
  else
    local localpart = user_id:match("^@([^:]+):")
    local ok, rerr, rcode = hs.accounts:register(localpart, f.password, { admin = f.admin })
    if not ok then return hs:error(rerr, rcode) end
    created = true
    -- the user's default display name is the localpart (as at /register)
    if f.displayname == nil then f.displayname = localpart end
  end
  if not created and f.password then
    hs.accounts:set_password(user_id, f.password)
    if f.logout_devices ~= false then hs.accounts:logout_others(user_id) end
  end
  if not created and f.admin ~= nil then hs.accounts:set_admin(user_id, f.admin) end
  if u and u.deactivated and f.deactivated == false then hs.accounts:reactivate(user_id) end
  local now_deactivated = u and u.deactivated and f.deactivated ~= false
  if not now_deactivated then
    for _, field in ipairs { "displayname", "avatar_url" } do
      if f[field] ~= nil then
        local ok, perr, pcode = account.set_profile_field(hs, user_id, field, f[field])
        if not ok then return hs:error(perr, pcode) end
      end
    end
  end
  if f.deactivated == true and not (u and u.deactivated) then account.deactivate_account(hs, user_id) end
  hs.server:log("info", "admin %s %s %s", req.user_id, created and "created" or "modified", user_id)
  local out = user_json(hs, hs.accounts:user(user_id))
  if created then return 201, out end
  return out
end

local function deactivate(hs, req)
  local user_id, err = local_user_param(hs, req, "Can only deactivate local users")
  if not user_id then return err end
  local body = body_of(req)
  local _, eerr = opt(body, "erase", "boolean")
  if eerr then return eerr end
  if not hs.accounts:user(user_id) then return errors.new("M_NOT_FOUND", "User not found") end
  account.deactivate_account(hs, user_id)
  return { id_server_unbind_result = "success" }
end

local function reset_password(hs, req)
  local user_id, err = local_user_param(hs, req, "Can only reset passwords of local users")
  if not user_id then return err end
  local body = req:json()
  if body.new_password == nil or body.new_password == json.null then
    return errors.new("M_MISSING_PARAM", "Missing param new_password")
  end
  local pw, perr = opt(body, "new_password", "string", MAX_PASSWORD)
  if not pw then return perr end
  local logout, lerr = opt(body, "logout_devices", "boolean")
  if lerr then return lerr end
  local u = hs.accounts:user(user_id)
  if not u then return errors.new("M_NOT_FOUND", "User not found") end
  hs.accounts:set_password(user_id, pw)
  if logout ~= false then hs.accounts:logout_others(user_id) end
  hs.server:log("info", "admin %s reset the password of %s", req.user_id, user_id)
  return {}
end

local function get_admin(hs, req)
  local user_id, err = local_user_param(hs, req, "Only local users can be admins of this homeserver")
  if not user_id then return err end
  local u = hs.accounts:user(user_id)
  if not u then return errors.new("M_NOT_FOUND", "User not found") end
  return { admin = u.admin }
end

local function put_admin(hs, req)
  local user_id, err = local_user_param(hs, req, "Only local users can be admins of this homeserver")
  if not user_id then return err end
  local body = req:json()
  if body.admin == nil then return errors.new("M_MISSING_PARAM", "Missing param admin") end
  if type(body.admin) ~= "boolean" then return errors.new("M_INVALID_PARAM", "admin must be a boolean") end
  if not hs.accounts:user(user_id) then return errors.new("M_NOT_FOUND", "User not found") end
  if user_id == req.user_id and not body.admin then return bad("You may not demote yourself.") end
  hs.accounts:set_admin(user_id, body.admin)
  return {}
end

local function whois(hs, req)
  local user_id = req.params.userId
  if not auth.valid_user_id(user_id) then return errors.new("M_INVALID_PARAM", "Invalid user ID") end
  if not is_local(hs, user_id) then return bad("Can only whois a local user") end
  if not hs.accounts:user(user_id) then return errors.new("M_NOT_FOUND", "User not found") end
  -- loom keeps no IP addresses or user agents: one connection per device,
  -- with its last activity
  local devices = {}
  for _, d in ipairs(hs.store:user_devices(user_id)) do
    devices[d.device_id] = { sessions = json.array { { connections = json.array { {
      ip = json.null, user_agent = json.null, last_seen = null_or(d.last_seen_ts) } } } } }
  end
  return { user_id = user_id, devices = devices }
end

local function user_joined_rooms(hs, req)
  local user_id = req.params.userId
  if not auth.valid_user_id(user_id) then return errors.new("M_INVALID_PARAM", "Invalid user ID") end
  local ids = hs.store:rooms_for_user(user_id, "join")
  local list = json.array()
  for i, r in ipairs(ids) do list[i] = r end
  return { joined_rooms = list, total = #list }
end

---------------------------------------------------------------------------
-- devices (the admin API's view of a user's devices; deleting one logs it
-- out and drops its keys, as DELETE /devices does for the user)

local function device_json(user_id, d)
  return { device_id = d.device_id, display_name = null_or(d.display_name), last_seen_ts = null_or(d.last_seen_ts),
    last_seen_ip = json.null, last_seen_user_agent = json.null, user_id = user_id }
end

local function known_user(hs, req)
  local user_id, err = local_user_param(hs, req)
  if not user_id then return nil, err end
  if not hs.accounts:user(user_id) then return nil, errors.new("M_NOT_FOUND", "User not found") end
  return user_id
end

local function device_param(req)
  local d = req.params.deviceId
  if type(d) ~= "string" or d == "" or #d > 255 then return nil, errors.new("M_INVALID_PARAM", "Invalid device ID") end
  return d
end

local function list_devices(hs, req)
  local user_id, err = known_user(hs, req)
  if not user_id then return err end
  local out = json.array()
  for i, d in ipairs(hs.store:user_devices(user_id)) do out[i] = device_json(user_id, d) end
  return { devices = out, total = #out }
end

local function get_device(hs, req)
  local user_id, err = known_user(hs, req)
  if not user_id then return err end
  local device_id, derr = device_param(req)
  if not device_id then return derr end
  local d = hs.store:user_device(user_id, device_id)
  if not d then return errors.new("M_NOT_FOUND", "No device found") end
  return device_json(user_id, d)
end

local function put_device(hs, req)
  local user_id, err = known_user(hs, req)
  if not user_id then return err end
  local device_id, derr = device_param(req)
  if not device_id then return derr end
  local body = req:json()
  local name, nerr = opt(body, "display_name", "string", MAX_DISPLAYNAME)
  if nerr then return nerr end
  if not hs.store:user_device(user_id, device_id) then return errors.new("M_NOT_FOUND", "No device found") end
  if body.display_name ~= nil then hs.store:set_device_display_name(user_id, device_id, name) end
  return {}
end

local function delete_device(hs, req)
  local user_id, err = known_user(hs, req)
  if not user_id then return err end
  local device_id, derr = device_param(req)
  if not device_id then return derr end
  hs.store:delete_devices(user_id, { device_id })
  return {}
end

local function delete_devices(hs, req)
  local user_id, err = known_user(hs, req)
  if not user_id then return err end
  local body = req:json()
  local ids = body.devices
  if not ljson.is_array(ids) then return errors.new("M_MISSING_PARAM", "devices must be a list of device IDs") end
  for _, d in ipairs(ids) do
    if type(d) ~= "string" or d == "" or #d > 255 then return errors.new("M_INVALID_PARAM", "Invalid device ID") end
  end
  if #ids > 0 then hs.store:delete_devices(user_id, ids) end
  return {}
end

---------------------------------------------------------------------------
-- rooms

local function content_field(hs, room_id, etype, field)
  local ev = hs.rooms:state_event(room_id, etype, "")
  if ev and is_object(ev.content) then return ev.content[field] end
  return nil
end

-- What the admin API tells of a room (Synapse's room details).
local function room_info(hs, room_id)
  local create = hs.rooms:state_event(room_id, "m.room.create", "")
  local joined = hs.store:current_members(room_id, "join")
  local suffix = ":" .. hs.server_name
  local local_joined = 0
  for _, u in ipairs(joined) do if u:sub(-#suffix) == suffix then local_joined = local_joined + 1 end end
  local state = hs.rooms:current_state(room_id) or {}
  local n = 0
  for _ in pairs(state) do n = n + 1 end
  local cc = create and is_object(create.content) and create.content or {}
  local function str(v) if type(v) == "string" then return v end return json.null end
  return {
    room_id = room_id,
    name = str(content_field(hs, room_id, "m.room.name", "name")),
    topic = str(content_field(hs, room_id, "m.room.topic", "topic")),
    avatar = str(content_field(hs, room_id, "m.room.avatar", "url")),
    canonical_alias = str(content_field(hs, room_id, "m.room.canonical_alias", "alias")),
    joined_members = #joined,
    joined_local_members = local_joined,
    version = str(hs.store:room_version(room_id)),
    creator = str(create and create.sender),
    encryption = str(content_field(hs, room_id, "m.room.encryption", "algorithm")),
    federatable = cc["m.federate"] ~= false,
    public = hs.store:room_visibility(room_id) == "public",
    join_rules = str(content_field(hs, room_id, "m.room.join_rules", "join_rule")),
    guest_access = str(content_field(hs, room_id, "m.room.guest_access", "guest_access")),
    history_visibility = str(content_field(hs, room_id, "m.room.history_visibility", "history_visibility")),
    state_events = n,
    room_type = str(cc.type),
  }
end

local ROOM_ORDER = {
  name = true, canonical_alias = true, joined_members = true, joined_local_members = true, version = true,
  creator = true, encryption = true, federatable = true, public = true, join_rules = true, guest_access = true,
  history_visibility = true, state_events = true, size = "state_events", alphabetical = "name",
}

-- Sort key of a field's value: nulls first, booleans as 0/1.
local function sort_value(v)
  if v == json.null or v == nil then return nil end
  if v == true then return 1 elseif v == false then return 0 end
  return v
end

local function less(a, b)
  if a == nil then return b ~= nil end
  if b == nil then return false end
  if type(a) ~= type(b) then return type(a) < type(b) end
  return a < b
end

local function list_rooms(hs, req)
  local from = req:arg_integer("from", 0, 0, 1000000000)
  local limit = req:arg_integer("limit", 100, 1, MAX_LIMIT)
  local order_by = req:arg("order_by", "name")
  local key = ROOM_ORDER[order_by]
  if not key then return errors.new("M_INVALID_PARAM", "Unknown value for order_by: " .. order_by) end
  if key ~= true then order_by = key end
  local dir = arg_dir(req)
  local term = req:arg("search_term")
  if term and (#term > MAX_SEARCH or term == "") then
    return errors.new("M_INVALID_PARAM", "search_term must be 1.." .. MAX_SEARCH .. " bytes")
  end
  local lterm = term and term:lower()
  local all = {}
  for _, room_id in ipairs(hs.store:all_room_ids()) do
    if hs.store:room_version(room_id) and hs.rooms:state_event(room_id, "m.room.create", "") then
      local info = room_info(hs, room_id)
      local keep = true
      if lterm then
        keep = room_id:lower():find(lterm, 1, true) ~= nil
          or (type(info.name) == "string" and info.name:lower():find(lterm, 1, true) ~= nil)
          or (type(info.canonical_alias) == "string" and info.canonical_alias:lower():find(lterm, 1, true) ~= nil)
      end
      if keep then all[#all + 1] = info end
    end
  end
  -- Synapse's orders: counts largest first, text smallest first (dir=b reverses)
  local desc = order_by == "joined_members" or order_by == "joined_local_members" or order_by == "state_events"
  if dir == "b" then desc = not desc end
  table_sort(all, function(a, b)
    local x, y = sort_value(a[order_by]), sort_value(b[order_by])
    if x ~= y then
      if desc then return less(y, x) end
      return less(x, y)
    end
    return a.room_id < b.room_id
  end)
  local page = json.array()
  for i = from + 1, from + limit do
    if not all[i] then break end
    page[#page + 1] = all[i]
  end
  local out = { rooms = page, offset = from, total_rooms = #all }
  if from + #page < #all then out.next_batch = from + #page end
  if from > 0 then out.prev_batch = from - limit > 0 and from - limit or 0 end
  return out
end

local function known_room(hs, req)
  local room_id, err = room_param(req)
  if not room_id then return nil, err end
  if not hs.store:room_version(room_id) or not hs.rooms:state_event(room_id, "m.room.create", "") then
    return nil, errors.new("M_NOT_FOUND", "Room not found")
  end
  return room_id
end

local function get_room(hs, req)
  local room_id, err = known_room(hs, req)
  if not room_id then return err end
  local info = room_info(hs, room_id)
  info.forgotten = false
  return info
end

local function room_members(hs, req)
  local room_id, err = known_room(hs, req)
  if not room_id then return err end
  local members = json.array()
  for i, u in ipairs(hs.store:current_members(room_id, "join")) do members[i] = u end
  return { members = members, total = #members }
end

local function room_state(hs, req)
  local room_id, err = known_room(hs, req)
  if not room_id then return err end
  local state = hs.rooms:current_state(room_id) or {}
  local ids, keys = {}, {}
  for k, id in pairs(state) do ids[#ids + 1] = id; keys[id] = k end
  table_sort(ids, function(a, b) return keys[a] < keys[b] end)
  local loaded = hs.store:events(ids)
  local evs = {}
  for _, id in ipairs(ids) do if loaded[id] then evs[#evs + 1] = loaded[id][1] end end
  local out = sync_events.clients({ store = hs.store, user_id = req.user_id, device_id = req.device_id,
    room_id = room_id }, evs)
  return { state = json.array(out) }
end

local function get_block(hs, req)
  local room_id, err = room_param(req)
  if not room_id then return err end
  local b = hs.store:room_blocked(room_id)
  if b then return { block = true, user_id = b.user_id } end
  return { block = false }
end

local function put_block(hs, req)
  local room_id, err = room_param(req)
  if not room_id then return err end
  local body = req:json()
  if type(body.block) ~= "boolean" then return errors.new("M_BAD_JSON", "block must be a boolean") end
  if body.block then hs.store:block_room(room_id, req.user_id) else hs.store:unblock_room(room_id) end
  return { block = body.block }
end

-- A request object for calling another endpoint's handler as a user.
local function internal_request(user_id, body)
  local req = request.new { method = "POST", target = "", path = "", headers = {}, args = {},
    body = json.encode(body) }
  req.user_id = user_id
  return req
end

local create_room_handler
local function create_room_as(hs, user_id, body)
  if not create_room_handler then
    for _, r in ipairs(rooms_api.routes) do
      if r[1] == "POST" and r[2]:match("/createRoom$") then create_room_handler = r[3] end
    end
  end
  local ok, status, out = pcall(create_room_handler, hs, internal_request(user_id, body))
  if not ok then return nil, status end
  if errors.is(status) then return nil, status end
  if type(status) == "table" and status.room_id then return status.room_id end
  if type(out) == "table" and out.room_id then return out.room_id end
  return nil, errors.new("M_UNKNOWN", "room creation failed")
end

local DEFAULT_ROOM_NAME = "Content Violation Notification"
local DEFAULT_MESSAGE = "Sharing illegal content on this server is not permitted and rooms in violation"
  .. " will be blocked."

-- Shut a room down (Synapse's "Delete Room"): every local member leaves,
-- and with new_room_user_id joins a new room where that user tells them
-- why; block refuses later joins; purge deletes the room from the
-- database (events, state, aliases, directory entry: store:purge_room).
local function shutdown(hs, req)
  local room_id, err = room_param(req)
  if not room_id then return nil, err end
  local body = body_of(req)
  local new_user, e1 = opt(body, "new_room_user_id", "string")
  if e1 then return nil, e1 end
  local room_name, e2 = opt(body, "room_name", "string", MAX_DISPLAYNAME)
  if e2 then return nil, e2 end
  local message, e3 = opt(body, "message", "string", 65536)
  if e3 then return nil, e3 end
  local block, e4 = opt(body, "block", "boolean")
  if e4 then return nil, e4 end
  local purge, e5 = opt(body, "purge", "boolean")
  if e5 then return nil, e5 end
  local _, e6 = opt(body, "force_purge", "boolean")
  if e6 then return nil, e6 end
  if purge == nil then purge = true end
  if new_user then
    if not auth.valid_user_id(new_user) or not is_local(hs, new_user) then
      return nil, bad("User must be our own: " .. new_user)
    end
    if not hs.accounts:user(new_user) then return nil, errors.new("M_NOT_FOUND", "User not found: " .. new_user) end
  end
  local known = hs.store:room_version(room_id) ~= nil and hs.rooms:state_event(room_id, "m.room.create", "")
  if block then hs.store:block_room(room_id, req.user_id) end
  local result = { kicked_users = json.array(), failed_to_kick_users = json.array(),
    local_aliases = json.array(), new_room_id = json.null }
  if not known then
    if block then return result end
    return nil, errors.new("M_NOT_FOUND", "Unknown room id " .. room_id)
  end
  local new_room
  if new_user then
    local nerr
    new_room, nerr = create_room_as(hs, new_user, { preset = "public_chat", name = room_name or DEFAULT_ROOM_NAME,
      power_level_content_override = { users_default = -10 } })
    if not new_room then return nil, nerr end
    result.new_room_id = new_room
  end
  local suffix = ":" .. hs.server_name
  for _, user_id in ipairs(hs.store:current_members(room_id, "join")) do
    if user_id:sub(-#suffix) == suffix then
      local ev, serr, scode = hs.rooms:send(room_id, { type = "m.room.member", state_key = user_id,
        sender = user_id, content = { membership = "leave" } })
      if ev then
        result.kicked_users[#result.kicked_users + 1] = user_id
        if purge then hs.store:forget_room(user_id, room_id) end
        if new_room and user_id ~= new_user then
          local u = hs.accounts:user(user_id)
          hs.rooms:send(new_room, { type = "m.room.member", state_key = user_id, sender = user_id,
            content = { membership = "join", displayname = u and u.displayname, avatar_url = u and u.avatar_url } })
        end
      else
        hs.server:log("warn", "shutting down %s: %s cannot leave: %s (%s)", room_id, user_id, tostring(serr),
          tostring(scode))
        result.failed_to_kick_users[#result.failed_to_kick_users + 1] = user_id
      end
    end
  end
  if new_room then
    hs.rooms:send(new_room, { type = "m.room.message", sender = new_user,
      content = { msgtype = "m.text", body = message or DEFAULT_MESSAGE } })
  end
  for _, alias in ipairs(hs.store:room_aliases(room_id)) do
    result.local_aliases[#result.local_aliases + 1] = alias
  end
  if new_room then
    hs.store:move_room_aliases(room_id, new_room)
  elseif purge then
    for _, alias in ipairs(result.local_aliases) do hs.store:delete_alias(alias) end
  end
  if purge then
    -- the room's events, state and every other row of it leave the database
    hs.store:purge_room(room_id)
    if hs.rooms.graphs then hs.rooms.graphs[room_id] = nil end
  end
  hs.server:log("info", "admin %s shut down %s (block %s, purge %s)", req.user_id, room_id, tostring(block == true),
    tostring(purge))
  return result
end

local function delete_room_v1(hs, req)
  local result, err = shutdown(hs, req)
  if not result then return err end
  return result
end

local function delete_room_v2(hs, req)
  local result, err = shutdown(hs, req)
  if not result then return err end
  local d = hs.admin_deletes
  if not d then d = { by_id = {}, order = {} }; hs.admin_deletes = d end
  local delete_id = account.random_string(16)
  local entry = { delete_id = delete_id, room_id = req.params.roomId, status = "complete",
    shutdown_room = result }
  d.by_id[delete_id] = entry
  d.order[#d.order + 1] = delete_id
  if #d.order > MAX_DELETE_STATUS then d.by_id[table_remove(d.order, 1)] = nil end
  return { delete_id = delete_id }
end

local function status_json(e)
  return { delete_id = e.delete_id, status = e.status, shutdown_room = e.shutdown_room }
end

local function delete_status_by_id(hs, req)
  local e = hs.admin_deletes and hs.admin_deletes.by_id[req.params.deleteId]
  if not e then return errors.new("M_NOT_FOUND", "delete id '" .. tostring(req.params.deleteId) .. "' not found") end
  local out = status_json(e)
  out.delete_id = nil
  return out
end

local function delete_status_by_room(hs, req)
  local room_id, err = room_param(req)
  if not room_id then return err end
  local results = json.array()
  if hs.admin_deletes then
    for _, id in ipairs(hs.admin_deletes.order) do
      local e = hs.admin_deletes.by_id[id]
      if e.room_id == room_id then results[#results + 1] = status_json(e) end
    end
  end
  if #results == 0 then return errors.new("M_NOT_FOUND", "No delete task for room_id '" .. room_id .. "' found") end
  return { results = results }
end

---------------------------------------------------------------------------
-- server notices

-- The system user of server notices, registered on first use.
local function notice_sender(hs)
  local cfg = hs.config.server_notices
  local user_id = hs.accounts:user_id(cfg.system_mxid_localpart)
  if not hs.accounts:user(user_id) then
    local ok, err, code = hs.accounts:register(cfg.system_mxid_localpart, nil)
    if not ok and code ~= "user_in_use" then return nil, hs:error(err, code) end
    hs.accounts:set_profile(user_id, "displayname", cfg.system_mxid_display_name or "Server Notices")
    if cfg.system_mxid_avatar_url then hs.accounts:set_profile(user_id, "avatar_url", cfg.system_mxid_avatar_url) end
  end
  return user_id
end

-- The user's server-notices room: the recorded one while the system user
-- is still in it, else a new one (invite-only, the user invited, tagged
-- m.server_notice in the user's room tags).
local function notice_room(hs, sender, user_id)
  local room_id = hs.store:server_notice_room(user_id)
  if room_id then
    local m = hs.rooms:state_event(room_id, "m.room.member", sender)
    local um = hs.rooms:state_event(room_id, "m.room.member", user_id)
    local ms = um and is_object(um.content) and um.content.membership
    if m and is_object(m.content) and m.content.membership == "join" and (ms == "join" or ms == "invite") then
      return room_id
    end
  end
  local cfg = hs.config.server_notices
  local err
  room_id, err = create_room_as(hs, sender, { preset = "private_chat", name = cfg.room_name or "Server Notices",
    invite = { user_id }, power_level_content_override = { users_default = -10 } })
  if not room_id then return nil, err end
  hs.store:set_server_notice_room(user_id, room_id)
  hs.store:set_account_data(user_id, room_id, "m.tag", json.encode { tags = { ["m.server_notice"] = {} } })
  return room_id
end

local function send_server_notice(hs, req)
  if not hs.config.server_notices then return bad("Server notices are not enabled on this server") end
  local body = req:json()
  local user_id = body.user_id
  if user_id == nil then return errors.new("M_MISSING_PARAM", "Missing param user_id") end
  if type(user_id) ~= "string" or not auth.valid_user_id(user_id) then
    return errors.new("M_INVALID_PARAM", "Invalid user_id")
  end
  if not is_local(hs, user_id) then return bad("Server notices can only be sent to local users") end
  if not is_object(body.content) then return errors.new("M_MISSING_PARAM", "content must be a JSON object") end
  local etype = body.type
  if etype == nil then etype = "m.room.message" end
  if type(etype) ~= "string" or etype == "" or #etype > 255 then
    return errors.new("M_INVALID_PARAM", "Invalid type")
  end
  local state_key = body.state_key
  if state_key ~= nil and (type(state_key) ~= "string" or #state_key > 255) then
    return errors.new("M_INVALID_PARAM", "state_key must be a string")
  end
  local u = hs.accounts:user(user_id)
  if not u or u.deactivated then return errors.new("M_NOT_FOUND", "User not found") end
  local sender, serr = notice_sender(hs)
  if not sender then return serr end
  if sender == user_id then return bad("Cannot send a server notice to the server notices user") end
  local room_id, rerr = notice_room(hs, sender, user_id)
  if not room_id then return rerr end
  local ev, err, code, rule = hs.rooms:send(room_id, { type = etype, state_key = state_key, sender = sender,
    content = body.content })
  if not ev then return hs:error(err, code, rule) end
  return { event_id = ev.event_id }
end

local function server_version()
  return { server_version = "loom/" .. tostring(loom._VERSION) }
end

---------------------------------------------------------------------------

local routes = {
  { "GET", V1 .. "/server_version", server_version, auth = false },
  { "GET", V2 .. "/users", list_users },
  { "GET", V2 .. "/users/{userId}", get_user },
  { "PUT", V2 .. "/users/{userId}", put_user },
  { "POST", V1 .. "/deactivate/{userId}", deactivate },
  { "POST", V1 .. "/reset_password/{userId}", reset_password },
  { "GET", V1 .. "/users/{userId}/admin", get_admin },
  { "PUT", V1 .. "/users/{userId}/admin", put_admin },
  { "GET", V1 .. "/whois/{userId}", whois },
  { "GET", V1 .. "/users/{userId}/joined_rooms", user_joined_rooms },
  { "GET", V2 .. "/users/{userId}/devices", list_devices },
  { "POST", V2 .. "/users/{userId}/delete_devices", delete_devices },
  { "GET", V2 .. "/users/{userId}/devices/{deviceId}", get_device },
  { "PUT", V2 .. "/users/{userId}/devices/{deviceId}", put_device },
  { "DELETE", V2 .. "/users/{userId}/devices/{deviceId}", delete_device },
  { "GET", V1 .. "/rooms", list_rooms },
  { "GET", V1 .. "/rooms/{roomId}", get_room },
  { "GET", V1 .. "/rooms/{roomId}/members", room_members },
  { "GET", V1 .. "/rooms/{roomId}/state", room_state },
  { "GET", V1 .. "/rooms/{roomId}/block", get_block },
  { "PUT", V1 .. "/rooms/{roomId}/block", put_block },
  { "DELETE", V1 .. "/rooms/{roomId}", delete_room_v1 },
  { "DELETE", V2 .. "/rooms/{roomId}", delete_room_v2 },
  { "GET", V2 .. "/rooms/{roomId}/delete_status", delete_status_by_room },
  { "GET", V2 .. "/rooms/delete_status/{deleteId}", delete_status_by_id },
  { "POST", V1 .. "/send_server_notice", send_server_notice },
}
for _, r in ipairs(routes) do
  if r.auth == nil then r[3] = admin_only(r[3]); r.auth = true end
end
admin.routes = routes

--- Hooks of the admin API: a blocked room refuses local joins and invites
-- (403 M_FORBIDDEN "This room has been blocked on this server"); a user
-- cannot leave their server-notices room (403 M_CANNOT_LEAVE_SERVER_NOTICE_ROOM).
function admin.install(hs)
  local function blocked(ctx)
    if type(ctx) == "table" and type(ctx.room_id) == "string" and hs.store:room_blocked(ctx.room_id) then
      return false, "This room has been blocked on this server"
    end
  end
  hs.server:hook("room/join/check", blocked, 100)
  hs.server:hook("room/invite/check", blocked, 100)
  -- a user's own leave (or invite rejection) of their server-notices room,
  -- asked from a device; deactivation and room shutdown still take them out
  hs.server:hook("room/event/check", function(ev, ctx)
    if type(ev) == "table" and ev.type == "m.room.member" and ev.sender == ev.state_key
        and type(ctx) == "table" and ctx.origin == "local" and ctx.device_id ~= nil
        and is_object(ev.content) and ev.content.membership == "leave"
        and type(ev.sender) == "string" and hs.store:server_notice_room(ev.sender) == ev.room_id then
      return errors.new("M_CANNOT_LEAVE_SERVER_NOTICE_ROOM", "You cannot leave the server notices room")
    end
  end, 100)
end

return admin
