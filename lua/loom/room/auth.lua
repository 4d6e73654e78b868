-- loom.room.auth: the authorization rules of room versions 3 to 12,
-- and the auth events selection algorithm. Contracts and examples:
-- docs/room-events-and-auth.md.
--
--   local auth = require "loom.room.auth"
--   local ok, reason, rule = auth.check(v, ev, function(t, sk) return state[t .. "\0" .. sk] end)
--
-- `state(type, state_key)` returns the event the rules consult (or nil). A
-- rejection returns nil, a human reason and the number of the rule that
-- rejected, in the numbering of that room version's spec page ("4.3.2" in
-- v11 is "5.3.2" in v12, "5.2.2" in v3). Version differences are read from
-- the version table's flags, never from its id.

local type, pairs, ipairs, next, tostring, tonumber = type, pairs, ipairs, next, tostring, tonumber
local getmetatable, error = getmetatable, error
local math_type, math_huge, math_tointeger = math.type, math.huge, math.tointeger
local string_match, string_sub, string_format = string.match, string.sub, string.format

local core = require("loom.core")
local crypto = require("loom.room.crypto")
local room_version = require("loom.room.version")
local ljson = require("loom.json")

local json = core.json
local c = core.crypto
local array_mt = json.array_mt

local _ENV = nil -- luacheck: ignore 211

local auth = {}

local CREATE, MEMBER, POWER, JOIN_RULES, TPI, ALIASES =
  "m.room.create", "m.room.member", "m.room.power_levels", "m.room.join_rules",
  "m.room.third_party_invite", "m.room.aliases"

-- ---- helpers ---------------------------------------------------------------

local is_object = ljson.is_object

local function is_int(v)
  return math_type(v) == "integer"
end

local check_version = room_version.check

-- A power level value as an integer, or nil. From v10 only integers count;
-- before, a string holding a base-10 integer counts too ("50", " +050 ",
-- "-1"; spec: "m.room.power_levels events accept values as strings"), while
-- one out of the 64-bit range does not.
local function level_of(version, v)
  if is_int(v) then return v end
  if version.integer_power_levels or type(v) ~= "string" then return nil end
  local sign, digits = string_match(v, "^%s*([+-]?)0*(%d+)%s*$")
  if not digits or #digits > 18 then return nil end
  local n = math_tointeger(tonumber(digits))
  if sign == "-" then n = -n end
  return n
end
auth.level_of = level_of

local function check_fn(f, n, fname)
  if type(f) ~= "function" then
    error(string_format("bad argument #%d to '%s' (function expected, got %s)", n, fname, type(f)), 3)
  end
end

--- Is `s` a user ID loom accepts: "@localpart:server", at most 255 bytes,
-- with a non-empty localpart and server name?
function auth.valid_user_id(s)
  return type(s) == "string" and #s <= 255 and string_match(s, "^@[^:]+:.+$") ~= nil
end

-- The server name of a user, room or event ID ("@a:hs:8448" -> "hs:8448").
local function domain(id)
  if type(id) ~= "string" then return nil end
  return string_match(id, "^.[^:]*:(.+)$")
end
auth.domain = domain

local function content_of(ev)
  local content = ev and ev.content
  if is_object(content) then return content end
  return nil
end

-- A state event's ID: its event_id, or (for a v3+ PDU without one) the one
-- computed from it.
local function id_of(version, ev)
  if type(ev.event_id) == "string" then return ev.event_id end
  return crypto.event_id(ev, version.id)
end

local function membership_of(state, user_id)
  if type(user_id) ~= "string" then return nil end
  local content = content_of(state(MEMBER, user_id))
  local m = content and content.membership
  if type(m) == "string" then return m end
  return nil
end

-- The v12 room creators: the create event's sender plus additional_creators.
local function is_creator(create, user_id)
  if not create or type(user_id) ~= "string" then return false end
  if create.sender == user_id then return true end
  local content = content_of(create)
  local extra = content and content.additional_creators
  if type(extra) == "table" then
    for _, u in ipairs(extra) do
      if u == user_id then return true end
    end
  end
  return false
end

-- The rule label for a version: `label` is in v11 numbering. In v12 every
-- top-level rule after 1 moves down by one (the new rule 2), and the
-- power-levels rules after 10.3 by one more (the new 10.4). Before v10 the
-- power-levels rules 9.1 and 9.2 (integers only) do not exist, so 9.3 is 9.1
-- and 9.5 .. 9.9 are 9.3 .. 9.7; before v8 rule 4.2 (join_authorised_via_users_server)
-- and 4.3.5 (restricted) do not, and before v7 neither does 4.7 (knock);
-- in v3 .. v5 rule 4 is m.room.aliases and every later rule moves down by one.
local function old_rule(version, label)
  local top, rest = string_match(label, "^(%d+)(.*)$")
  if top == "9" and not version.integer_power_levels then
    local sub, tail = string_match(rest, "^%.(%d+)(.*)$")
    sub = sub + 0
    rest = "." .. (sub == 3 and 1 or sub - 2) .. tail
  elseif top == "4" and not version.restricted_join_rule then
    if rest == ".3.7" then
      rest = ".2.6"
    else
      local sub, tail = string_match(rest, "^%.(%d+)(.*)$")
      if sub and sub + 0 >= 3 then rest = "." .. (sub - 1) .. tail end
    end
    if rest == ".7" and not version.knock_join_rule then rest = ".6" end
  end
  if version.aliases_auth_rule and top + 0 >= 4 then top = top + 1 end
  return top .. rest
end

local function rule(version, label)
  if not version.room_id_is_create_hash then
    if version.integer_power_levels then return label end
    return old_rule(version, label)
  end
  local top, rest = string_match(label, "^(%d+)(.*)$")
  top = top + 1
  if top == 10 and version.creators_have_infinite_power then
    local sub, tail = string_match(rest, "^%.(%d+)(.*)$")
    if sub and sub + 0 >= 4 then rest = "." .. (sub + 1) .. tail end
  end
  return top .. rest
end

local function reject(version, label, reason)
  return nil, reason, rule(version, label)
end

-- ---- power levels ------------------------------------------------------------

local function pl_content(state)
  local pl = state(POWER, "")
  if not pl then return nil end
  return content_of(pl) or {}
end

--- The power level of `user_id` given `state`. v12 creators: math.huge.
-- Without an m.room.power_levels event: 100 for the creator, else 0. With one:
-- users[user_id], else users_default, else 0 (non-integers count as absent).
function auth.power_level(version, state, user_id)
  check_version(version, 1, "power_level")
  check_fn(state, 2, "power_level")
  local create = state(CREATE, "")
  if version.creators_have_infinite_power and is_creator(create, user_id) then
    return math_huge
  end
  local pl = pl_content(state)
  if pl then
    local users = pl.users
    local own = is_object(users) and level_of(version, users[user_id])
    if own then return own end
    return level_of(version, pl.users_default) or 0
  end
  if create then
    local creator
    if version.creator_in_content then
      local content = content_of(create)
      creator = content and content.creator
    else
      creator = create.sender
    end
    if creator ~= nil and creator == user_id then return 100 end
  end
  return 0
end

local LEVEL_DEFAULTS = {
  ban = 50, kick = 50, redact = 50, invite = 0,
  users_default = 0, events_default = 0, state_default = 50,
}

--- The room's named levels with their defaults: { ban, kick, redact, invite,
-- users_default, events_default, state_default }. state_default is 0 when
-- there is no m.room.power_levels event at all.
function auth.levels(version, state)
  check_version(version, 1, "levels")
  check_fn(state, 2, "levels")
  local pl = pl_content(state)
  local out = {}
  for k, default in pairs(LEVEL_DEFAULTS) do
    local v = pl and level_of(version, pl[k])
    if v then out[k] = v else out[k] = default end
  end
  if not pl then out.state_default = 0 end
  return out
end

--- The power level needed to send an event of `event_type` (a state event
-- when `is_state`): events[type], else state_default / events_default.
function auth.required_level(version, state, event_type, is_state)
  check_version(version, 1, "required_level")
  check_fn(state, 2, "required_level")
  local pl = pl_content(state)
  local events = pl and pl.events
  local own = is_object(events) and level_of(version, events[event_type])
  if own then return own end
  local levels = auth.levels(version, state)
  if is_state then return levels.state_default end
  return levels.events_default
end

--- Is `ev` a power event (state resolution): m.room.power_levels,
-- m.room.join_rules, or a leave/ban m.room.member whose sender is not its
-- target?
function auth.is_power_event(ev)
  if type(ev) ~= "table" or type(ev.state_key) ~= "string" then return false end
  local t = ev.type
  if t == POWER or t == JOIN_RULES then return true end
  if t == MEMBER then
    local content = content_of(ev)
    local m = content and content.membership
    return (m == "leave" or m == "ban") and ev.sender ~= ev.state_key
  end
  return false
end

-- ---- auth events selection ---------------------------------------------------

--- The (type, state_key) pairs the auth events selection algorithm asks for,
-- as a list of { type, state_key }; empty for an m.room.create event.
function auth.auth_types(version, ev)
  check_version(version, 1, "auth_types")
  if type(ev) ~= "table" then
    error("bad argument #2 to 'auth_types' (table expected, got " .. type(ev) .. ")", 2)
  end
  local out, seen = {}, {}
  local function add(t, sk)
    if type(sk) ~= "string" then return end
    local k = t .. "\0" .. sk
    if seen[k] then return end
    seen[k] = true
    out[#out + 1] = { t, sk }
  end
  if ev.type == CREATE then return out end
  if version.create_in_auth_events then add(CREATE, "") end
  add(POWER, "")
  add(MEMBER, ev.sender)
  if ev.type == MEMBER then
    local content = content_of(ev) or {}
    local m = content.membership
    add(MEMBER, ev.state_key)
    if m == "join" or m == "invite" or m == "knock" then add(JOIN_RULES, "") end
    if m == "invite" then
      local tpi = content.third_party_invite
      local signed = is_object(tpi) and tpi.signed
      if is_object(signed) then add(TPI, signed.token) end
    end
    if version.restricted_join_rule then
      add(MEMBER, content.join_authorised_via_users_server)
    end
  end
  return out
end

--- The auth_events for `ev` (a JSON array of event IDs): the events found by
-- `state(type, state_key)` for each pair of auth.auth_types.
function auth.select(version, ev, state)
  check_version(version, 1, "select")
  check_fn(state, 3, "select")
  local ids = {}
  for _, key in ipairs(auth.auth_types(version, ev)) do
    local found = state(key[1], key[2])
    if found then ids[#ids + 1] = id_of(version, found) end
  end
  return json.array(ids)
end

-- ---- the rules -----------------------------------------------------------------

-- Rule 1: m.room.create.
local function check_create(version, ev)
  local prev = ev.prev_events
  if type(prev) == "table" and next(prev) ~= nil then
    return nil, "m.room.create has prev_events", "1.1"
  end
  if version.room_id_is_create_hash then
    if ev.room_id ~= nil then
      return nil, "m.room.create has a room_id", "1.2"
    end
  elseif domain(ev.room_id) == nil or domain(ev.room_id) ~= domain(ev.sender) then
    return nil, "room ID domain does not match the sender's", "1.2"
  end
  local content = content_of(ev) or {}
  local rv = content.room_version
  if rv ~= nil and (type(rv) ~= "string" or not room_version.known(rv)) then
    return nil, "unknown room_version " .. tostring(rv), "1.3"
  end
  if version.creator_in_content then
    if content.creator == nil then
      return nil, "m.room.create content has no creator", "1.4"
    end
    return true
  end
  if version.additional_creators and content.additional_creators ~= nil then
    local extra = content.additional_creators
    local ok = type(extra) == "table" and (getmetatable(extra) == array_mt or next(extra) ~= nil)
    if ok then
      local n = 0
      for _ in pairs(extra) do n = n + 1 end
      for i = 1, n do
        if not auth.valid_user_id(extra[i]) then ok = false break end
      end
    end
    if not ok then
      return nil, "additional_creators is not an array of user IDs", "1.4"
    end
  end
  return true
end

-- "Validly signed by the homeserver of" user_id.
local function signed_by(ev, server, opts)
  if opts and opts.verify_signature then
    return opts.verify_signature(ev, server) and true or false
  end
  local sigs = ev.signatures
  return is_object(sigs) and is_object(sigs[server]) and next(sigs[server]) ~= nil
end

local function decode64(text)
  if type(text) ~= "string" then return nil end
  return c.base64_decode(text) or c.base64_decode(text, true)
end

-- Rule 4.4.1.7: does any signature in `signed` verify with any public key of
-- the m.room.third_party_invite event?
local function tpi_signature_ok(signed, tpi_ev)
  local content = content_of(tpi_ev) or {}
  local keys = {}
  local k = decode64(content.public_key)
  if k then keys[#keys + 1] = k end
  if type(content.public_keys) == "table" then
    for _, entry in ipairs(content.public_keys) do
      k = is_object(entry) and decode64(entry.public_key)
      if k then keys[#keys + 1] = k end
    end
  end
  local sigs = signed.signatures
  if #keys == 0 or not is_object(sigs) then return false end
  local body = {}
  for key, v in pairs(signed) do
    if key ~= "signatures" and key ~= "unsigned" then body[key] = v end
  end
  local text = json.encode(body)
  if not text then return false end
  for _, by_server in pairs(sigs) do
    if is_object(by_server) then
      for _, sig64 in pairs(by_server) do
        local sig = decode64(sig64)
        if sig then
          for i = 1, #keys do
            if c.ed25519_verify(keys[i], text, sig) then return true end
          end
        end
      end
    end
  end
  return false
end

-- Rule 4 (v11 numbering): m.room.member.
local function check_member(version, ev, state, create, opts)
  local content = content_of(ev) or {}
  local target = ev.state_key
  local membership = content.membership
  if type(target) ~= "string" or membership == nil then
    return reject(version, "4.1", "m.room.member without state_key or membership")
  end
  local sender = ev.sender

  local via = content.join_authorised_via_users_server
  if via ~= nil and version.restricted_join_rule then
    local server = auth.valid_user_id(via) and domain(via)
    if not server or not signed_by(ev, server, opts) then
      return reject(version, "4.2.1", "not signed by the server of join_authorised_via_users_server")
    end
  end

  local sender_m = membership_of(state, sender)
  local target_m = membership_of(state, target)
  local jr_content = content_of(state(JOIN_RULES, ""))
  local join_rule = jr_content and jr_content.join_rule
  local levels = auth.levels(version, state)
  local sender_power = auth.power_level(version, state, sender)

  if membership == "join" then
    local prev = ev.prev_events
    if create and type(prev) == "table" and #prev == 1 and prev[1] == id_of(version, create) then
      local creator
      if version.join_after_create_by_sender then
        creator = create.sender
      else
        local cc = content_of(create)
        creator = cc and cc.creator
      end
      if creator ~= nil and creator == target then return true end
    end
    if sender ~= target then
      return reject(version, "4.3.2", "join: sender does not match state_key")
    end
    if sender_m == "ban" then
      return reject(version, "4.3.3", "join: sender is banned")
    end
    if join_rule == "invite" or (join_rule == "knock" and version.knock_join_rule) then
      if sender_m == "invite" or sender_m == "join" then return true end
    elseif (join_rule == "restricted" and version.restricted_join_rule)
        or (join_rule == "knock_restricted" and version.knock_restricted_join_rule) then
      if sender_m == "join" or sender_m == "invite" then return true end
      if not (auth.valid_user_id(via) and membership_of(state, via) == "join"
          and auth.power_level(version, state, via) >= levels.invite) then
        return reject(version, "4.3.5.2",
          "join: join_authorised_via_users_server is not a joined user who may invite")
      end
      return true
    elseif join_rule == "public" then
      return true
    end
    return reject(version, "4.3.7", "join: not allowed by join rule " .. tostring(join_rule))

  elseif membership == "invite" then
    local tpi = content.third_party_invite
    if tpi ~= nil then
      if target_m == "ban" then
        return reject(version, "4.4.1.1", "third-party invite: target is banned")
      end
      local signed = is_object(tpi) and tpi.signed
      if not is_object(signed) then
        return reject(version, "4.4.1.2", "third-party invite has no signed object")
      end
      local mxid, token = signed.mxid, signed.token
      if type(mxid) ~= "string" or type(token) ~= "string" then
        return reject(version, "4.4.1.3", "third-party invite: signed lacks mxid or token")
      end
      if mxid ~= target then
        return reject(version, "4.4.1.4", "third-party invite: mxid does not match state_key")
      end
      local tpi_ev = state(TPI, token)
      if not tpi_ev then
        return reject(version, "4.4.1.5", "third-party invite: no m.room.third_party_invite for the token")
      end
      if tpi_ev.sender ~= sender then
        return reject(version, "4.4.1.6", "third-party invite: sender did not send the m.room.third_party_invite")
      end
      if tpi_signature_ok(signed, tpi_ev) then return true end
      return reject(version, "4.4.1.8", "third-party invite: no signature matches the invite's public keys")
    end
    if sender_m ~= "join" then
      return reject(version, "4.4.2", "invite: sender is not joined")
    end
    if target_m == "join" or target_m == "ban" then
      return reject(version, "4.4.3", "invite: target is " .. target_m)
    end
    if sender_power >= levels.invite then return true end
    return reject(version, "4.4.5", "invite: sender's power level is below the invite level")

  elseif membership == "leave" then
    if sender == target then
      if sender_m == "invite" or sender_m == "join" or (sender_m == "knock" and version.knock_join_rule) then
        return true
      end
      return reject(version, "4.5.1", "leave: sender is not invited, joined or knocking")
    end
    if sender_m ~= "join" then
      return reject(version, "4.5.2", "kick: sender is not joined")
    end
    if target_m == "ban" and sender_power < levels.ban then
      return reject(version, "4.5.3", "unban: sender's power level is below the ban level")
    end
    if sender_power >= levels.kick and auth.power_level(version, state, target) < sender_power then
      return true
    end
    return reject(version, "4.5.5", "kick: sender's power level is too low")

  elseif membership == "ban" then
    if sender_m ~= "join" then
      return reject(version, "4.6.1", "ban: sender is not joined")
    end
    if sender_power >= levels.ban and auth.power_level(version, state, target) < sender_power then
      return true
    end
    return reject(version, "4.6.3", "ban: sender's power level is too low")

  elseif membership == "knock" and version.knock_join_rule then
    if not (join_rule == "knock" or (join_rule == "knock_restricted" and version.knock_restricted_join_rule)) then
      return reject(version, "4.7.1", "knock: join rule is not knock or knock_restricted")
    end
    if sender ~= target then
      return reject(version, "4.7.2", "knock: sender does not match state_key")
    end
    if sender_m ~= "ban" and sender_m ~= "invite" and sender_m ~= "join" then return true end
    return reject(version, "4.7.4", "knock: sender is " .. sender_m)
  end
  return reject(version, "4.8", "unknown membership " .. tostring(membership))
end

local PL_LEVELS = { "users_default", "events_default", "state_default", "ban", "redact", "kick", "invite" }

local function int_map(version, v)
  if not is_object(v) then return false end
  for k, x in pairs(v) do
    if type(k) ~= "string" or not level_of(version, x) then return false end
  end
  return true
end

-- Rule 9 (v11 numbering): m.room.power_levels.
local function check_power_levels(version, ev, state, create)
  local content = content_of(ev) or {}
  local maps = { "events" }
  if version.notifications_in_power_levels then maps[2] = "notifications" end
  if version.integer_power_levels then
    for _, k in ipairs(PL_LEVELS) do
      if content[k] ~= nil and not is_int(content[k]) then
        return reject(version, "9.1", "power_levels: " .. k .. " is not an integer")
      end
    end
    for _, k in ipairs(maps) do
      if content[k] ~= nil and not int_map(version, content[k]) then
        return reject(version, "9.2", "power_levels: " .. k .. " is not an object of integers")
      end
    end
  end
  local users = content.users
  if users ~= nil then
    local ok = int_map(version, users)
    if ok then
      for u in pairs(users) do
        if not auth.valid_user_id(u) then ok = false break end
      end
    end
    if not ok then
      return reject(version, "9.3", "power_levels: users is not an object of user IDs to integers")
    end
    if version.creators_have_infinite_power then
      for u in pairs(users) do
        if is_creator(create, u) then
          return nil, "power_levels: users lists a room creator", "10.4"
        end
      end
    end
  end

  local old = pl_content(state)
  if not old then return true end
  local power = auth.power_level(version, state, ev.sender)

  local function int_or_nil(v) return level_of(version, v) end
  for _, k in ipairs(PL_LEVELS) do
    local was, now = int_or_nil(old[k]), int_or_nil(content[k])
    if was ~= now then
      if was ~= nil and was > power then
        return reject(version, "9.5.1", "power_levels: current " .. k .. " is above the sender's level")
      end
      if now ~= nil and now > power then
        return reject(version, "9.5.2", "power_levels: new " .. k .. " is above the sender's level")
      end
    end
  end

  local function obj(v) if is_object(v) then return v end return {} end
  for _, k in ipairs(maps) do
    local was, now = obj(old[k]), obj(content[k])
    for key, v in pairs(was) do
      v = int_or_nil(v)
      if v ~= nil and int_or_nil(now[key]) ~= v and v > power then
        return reject(version, "9.6", "power_levels: " .. k .. "[" .. key .. "] was above the sender's level")
      end
    end
  end
  for _, k in ipairs(maps) do
    local was, now = obj(old[k]), obj(content[k])
    for key, v in pairs(now) do
      v = int_or_nil(v)
      if v ~= nil and int_or_nil(was[key]) ~= v and v > power then
        return reject(version, "9.7", "power_levels: " .. k .. "[" .. key .. "] is above the sender's level")
      end
    end
  end

  local was_users, now_users = obj(old.users), obj(users)
  for u, v in pairs(was_users) do
    v = int_or_nil(v)
    if v ~= nil and u ~= ev.sender and int_or_nil(now_users[u]) ~= v and v >= power then
      return reject(version, "9.8", "power_levels: cannot change " .. u .. ", whose level is not below the sender's")
    end
  end
  for u, v in pairs(now_users) do
    v = int_or_nil(v)
    if int_or_nil(was_users[u]) ~= v and v > power then
      return reject(version, "9.9", "power_levels: cannot give " .. u .. " a level above the sender's")
    end
  end
  return true
end

-- state(t, sk) with its events in loom's JSON form (an event another JSON
-- library decoded that cannot be read as JSON counts as absent).
local function imported_state(state)
  return function(t, sk)
    local e = state(t, sk)
    if e == nil then return nil end
    return (ljson.import(e, "event"))
  end
end

--- Checks `ev` against the authorization rules of `version`, consulting
-- `state(type, state_key)`. Returns true, or nil, reason, rule; or nil,
-- message, code when ev is a value from another JSON library that loom.json
-- cannot import (code "json_type", "json_range", ...).
-- opts (optional): verify_signature(ev, server_name) -> bool for rule 4.2.1
-- (without it the server's signature must merely be present);
-- rejected(event_id) -> bool (v12 rule 2: the create event must be accepted).
function auth.check(version, ev, state, opts)
  check_version(version, 1, "check")
  if type(ev) ~= "table" then
    error("bad argument #2 to 'check' (table expected, got " .. type(ev) .. ")", 2)
  end
  check_fn(state, 3, "check")
  local iev, imsg, icode = ljson.import(ev, "event")
  if not iev then return nil, imsg, icode end
  ev, state = iev, imported_state(state)

  if ev.type == CREATE then return check_create(version, ev) end

  local create = state(CREATE, "")
  if version.room_id_is_create_hash then
    local id = create and id_of(version, create)
    if type(id) ~= "string" or ev.room_id ~= "!" .. string_sub(id, 2)
        or (opts and opts.rejected and opts.rejected(id)) then
      return nil, "room_id is not the ID of an accepted m.room.create event", "2"
    end
  elseif not create then
    return nil, "no m.room.create event", "2.4"
  end

  local create_content = content_of(create) or {}
  if create_content["m.federate"] == false and domain(ev.sender) ~= domain(create.sender) then
    return reject(version, "3", "room is not federated and the sender is on another server")
  end

  if ev.type == ALIASES and version.aliases_auth_rule then
    if type(ev.state_key) ~= "string" then return nil, "m.room.aliases without state_key", "4.1" end
    if domain(ev.sender) ~= ev.state_key then
      return nil, "m.room.aliases: the sender's server is not the state_key", "4.2"
    end
    return true
  end

  if ev.type == MEMBER then return check_member(version, ev, state, create, opts) end

  local sender = ev.sender
  if membership_of(state, sender) ~= "join" then
    return reject(version, "5", "sender is not joined")
  end
  local power = auth.power_level(version, state, sender)

  if ev.type == TPI then
    if power >= auth.levels(version, state).invite then return true end
    return reject(version, "6.1", "sender's power level is below the invite level")
  end

  if auth.required_level(version, state, ev.type, ev.state_key ~= nil) > power then
    return reject(version, "7", "sender's power level is too low to send " .. tostring(ev.type))
  end

  local sk = ev.state_key
  if type(sk) == "string" and string_sub(sk, 1, 1) == "@" and sk ~= sender then
    return reject(version, "8", "state_key starts with @ and is not the sender")
  end

  if ev.type == POWER then return check_power_levels(version, ev, state, create) end
  return true
end

--- The "considering the event's auth_events" rules, then auth.check against
-- the state made of those auth events. auth_events is a list of events.
-- opts: rejected(event_id) -> bool; create (v12: the m.room.create event the
-- room ID names); verify_signature as for auth.check.
function auth.check_auth_events(version, ev, auth_events, opts)
  check_version(version, 1, "check_auth_events")
  if type(ev) ~= "table" then
    error("bad argument #2 to 'check_auth_events' (table expected, got " .. type(ev) .. ")", 2)
  end
  if type(auth_events) ~= "table" then
    error("bad argument #3 to 'check_auth_events' (table expected, got " .. type(auth_events) .. ")", 2)
  end
  opts = opts or {}
  local by_key = {}
  local v12 = version.room_id_is_create_hash
  local create = v12 and opts.create or nil

  if ev.type ~= CREATE then
    if v12 then
      local id = create and id_of(version, create)
      if type(id) ~= "string" or create.type ~= CREATE or ev.room_id ~= "!" .. string_sub(id, 2)
          or (opts.rejected and opts.rejected(id)) then
        return nil, "room_id is not the ID of an accepted m.room.create event", "2"
      end
    end
    local n = 0
    for _, ae in ipairs(auth_events) do
      n = n + 1
      local k = type(ae.type) == "string" and type(ae.state_key) == "string"
        and ae.type .. "\0" .. ae.state_key or ("\1" .. n)
      if by_key[k] then
        return nil, "duplicate auth event for " .. tostring(ae.type) .. " " .. tostring(ae.state_key),
          v12 and "3.1" or "2.1"
      end
      by_key[k] = ae
    end
    local wanted = {}
    for _, key in ipairs(auth.auth_types(version, ev)) do wanted[key[1] .. "\0" .. key[2]] = true end
    for _, ae in ipairs(auth_events) do
      local k = type(ae.type) == "string" and type(ae.state_key) == "string"
        and ae.type .. "\0" .. ae.state_key
      if not (k and wanted[k]) then
        return nil, "auth event " .. tostring(ae.event_id) .. " (" .. tostring(ae.type) .. " "
          .. tostring(ae.state_key) .. ") is not one the selection algorithm picks", v12 and "3.2" or "2.2"
      end
    end
    if opts.rejected then
      for _, ae in ipairs(auth_events) do
        if opts.rejected(ae.event_id) then
          return nil, "auth event " .. tostring(ae.event_id) .. " was rejected", v12 and "3.3" or "2.3"
        end
      end
    end
    if v12 then
      for _, ae in ipairs(auth_events) do
        if ae.room_id ~= ev.room_id then
          return nil, "auth event " .. tostring(ae.event_id) .. " is from another room", "3.5"
        end
      end
    elseif not by_key[CREATE .. "\0"] then
      return nil, "no m.room.create among the auth events", "2.4"
    end
  end

  local function state(t, sk)
    if v12 and t == CREATE and sk == "" then return create end
    return by_key[t .. "\0" .. sk]
  end
  return auth.check(version, ev, state, opts)
end

--- A state function over a plain map { [type .. "\0" .. state_key] = event }
-- or a list of events: a convenience for callers and tests.
function auth.state_of(events)
  local map = {}
  for k, ev in pairs(events) do
    if type(k) == "string" then
      map[k] = ev
    elseif type(ev) == "table" and type(ev.type) == "string" and type(ev.state_key) == "string" then
      map[ev.type .. "\0" .. ev.state_key] = ev
    end
  end
  return function(t, sk) return map[t .. "\0" .. sk] end
end

return auth
