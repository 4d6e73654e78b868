-- loom.room.event: building local events and checking received ones, per
-- room version (v3 to v12: the "v3"/"v4" event formats with hash-based event
-- IDs). Contracts and examples: docs/room-events-and-auth.md.
--
--   local event = require "loom.room.event"
--   local ev = assert(event.build(v, { type = "m.room.message", sender = "@a:hs",
--     room_id = room_id, content = { body = "hi" } }, room, key, { now = now_ms }))
--   local res = assert(event.check(v, received, { keys = lookup }))
--
-- In memory loom keeps `event_id` on every event table; it is not part of the
-- PDU, so it is left out of every hash, signature and size computed here.

local type, pairs, ipairs, next, tostring, error = type, pairs, ipairs, next, tostring, error
local getmetatable = getmetatable
local math_type, math_min = math.type, math.min
local string_sub, string_format = string.sub, string.format
local table_sort = table.sort

local core = require("loom.core")
local crypto = require("loom.room.crypto")
local redact_mod = require("loom.room.redact")
local room_version = require("loom.room.version")
local auth = require("loom.room.auth")
local ljson = require "loom.json"

local json = core.json
local array_mt = json.array_mt

local _ENV = nil -- luacheck: ignore 211

local event = {}

local MAX_DEPTH = 9007199254740991 -- 2^53 - 1
local MAX_ID_BYTES = 255
local MAX_PREV_BUILD = 10

-- ---- helpers ---------------------------------------------------------------

local check_version = room_version.check

-- Raises "bad argument" for fname's caller unless v is a table; `depth`:
-- how many helpers stand between fname and this call (default 0).
local function check_table(v, n, fname, depth)
  if type(v) ~= "table" then
    error(string_format("bad argument #%d to '%s' (table expected, got %s)", n, fname, type(v)), 3 + (depth or 0))
  end
end

local function bad(msg, ...)
  return nil, string_format(msg, ...), "bad_event"
end

-- A JSON object: a plain table whose keys are all strings (empty is {}).
local function is_object(v)
  if not ljson.is_object(v) then return false end
  for k in pairs(v) do
    if type(k) ~= "string" then return false end
  end
  return true
end

-- A JSON array: a json.array_mt table, or a plain non-empty sequence.
local function array_len(v)
  if type(v) ~= "table" then return nil end
  local mt = getmetatable(v)
  if mt ~= nil and mt ~= array_mt then return nil end
  local n = 0
  for _ in pairs(v) do n = n + 1 end
  if n == 0 and mt == nil then return nil end
  for i = 1, n do
    if v[i] == nil then return nil end
  end
  return n
end

-- ev in loom's JSON form (loom.json.import: an event another JSON library
-- decoded is converted), or nil, message, "bad_event".
local function import(ev)
  local iev, msg = ljson.import(ev, "event")
  if not iev then return bad("%s", msg) end
  return iev
end

-- Argument n of fname, a table (else raises), in loom's JSON form; or nil,
-- message, "bad_event".
local function import_arg(ev, n, fname)
  check_table(ev, n, fname, 1)
  return import(ev)
end

-- The PDU form of an in-memory event: a shallow copy without `event_id`.
local function pdu(ev)
  local out = {}
  for k, v in pairs(ev) do
    if k ~= "event_id" then out[k] = v end
  end
  return out
end

local function is_create(ev)
  return ev.type == "m.room.create" and ev.state_key == ""
end


-- ---- event IDs -------------------------------------------------------------

--- The event ID: "$" .. unpadded base64 (v3: standard alphabet; v4 and
-- later: URL-safe) of the reference hash of the event without its
-- (loom-local) event_id. Returns the ID, or nil,
-- message, code (a JSON encoder code).
function event.compute_id(version, ev)
  check_version(version, 1, "compute_id")
  local iev, imsg, icode = import_arg(ev, 2, "compute_id")
  if not iev then return nil, imsg, icode end
  ev = iev
  return crypto.event_id(pdu(ev), version.id)
end

--- The room ID of a room whose m.room.create event is `create_ev`: in v12
-- "!" .. the create event's ID without its "$"; before, its room_id.
-- Returns the ID, or nil, message, "bad_event".
function event.room_id_for_create(version, create_ev)
  check_version(version, 1, "room_id_for_create")
  local iev, imsg, icode = import_arg(create_ev, 2, "room_id_for_create")
  if not iev then return nil, imsg, icode end
  create_ev = iev
  if not is_create(create_ev) then return bad("not an m.room.create event") end
  if not version.room_id_is_create_hash then
    if type(create_ev.room_id) ~= "string" then return bad("m.room.create has no room_id") end
    return create_ev.room_id
  end
  local id, msg = event.compute_id(version, create_ev)
  if not id then return nil, msg, "bad_event" end
  return "!" .. string_sub(id, 2)
end

-- ---- format ----------------------------------------------------------------

local function check_id_list(list, name, max, want_sigil)
  local n = array_len(list)
  if not n then return bad("%s is not an array", name) end
  if n > max then
    return bad("%s has %d entries, at most %d allowed", name, n, max)
  end
  for i = 1, n do
    local id = list[i]
    if type(id) ~= "string" or string_sub(id, 1, 1) ~= want_sigil or #id > MAX_ID_BYTES then
      return bad("%s[%d] is not an event ID", name, i)
    end
  end
  return true
end

-- The event format of `version`. Returns the canonical PDU JSON text, or
-- nil, message, "bad_event" | "too_large".
local function check_format(version, ev)
  if type(ev.type) ~= "string" then return bad("type is not a string") end
  if #ev.type > MAX_ID_BYTES then return bad("type is longer than %d bytes", MAX_ID_BYTES) end
  local sk = ev.state_key
  if sk ~= nil then
    if type(sk) ~= "string" then return bad("state_key is not a string") end
    if #sk > MAX_ID_BYTES then return bad("state_key is longer than %d bytes", MAX_ID_BYTES) end
  end
  if not auth.valid_user_id(ev.sender) then return bad("sender is not a user ID") end
  if version.room_id_is_create_hash and is_create(ev) then
    if ev.room_id ~= nil then return bad("a v%s m.room.create event has no room_id", version.id) end
  else
    local rid = ev.room_id
    if type(rid) ~= "string" or string_sub(rid, 1, 1) ~= "!" or #rid > MAX_ID_BYTES then
      return bad("room_id is missing or not a room ID")
    end
  end
  if not is_object(ev.content) then return bad("content is not an object") end
  local depth = ev.depth
  if math_type(depth) ~= "integer" or depth < 0 or depth > MAX_DEPTH then
    return bad("depth is not an integer in 0..2^53-1")
  end
  if math_type(ev.origin_server_ts) ~= "integer" then return bad("origin_server_ts is not an integer") end
  local hashes = ev.hashes
  if not is_object(hashes) or type(hashes.sha256) ~= "string" then
    return bad("hashes.sha256 is missing")
  end
  local sigs = ev.signatures
  if not is_object(sigs) then return bad("signatures is not an object") end
  for server, by_key in pairs(sigs) do
    if not is_object(by_key) then return bad("signatures.%s is not an object", server) end
    for _, sig in pairs(by_key) do
      if type(sig) ~= "string" then return bad("signatures.%s holds a non-string", server) end
    end
  end
  local ok, msg = check_id_list(ev.prev_events, "prev_events", version.max_prev_events, "$")
  if not ok then return nil, msg, "bad_event" end
  ok, msg = check_id_list(ev.auth_events, "auth_events", version.max_auth_events, "$")
  if not ok then return nil, msg, "bad_event" end
  if ev.unsigned ~= nil and not is_object(ev.unsigned) then return bad("unsigned is not an object") end

  local text, err = json.encode(pdu(ev))
  if not text then return nil, "not canonical JSON: " .. err, "bad_event" end
  if #text > version.max_event_bytes then
    return nil, string_format("event is %d bytes as canonical JSON, at most %d allowed",
      #text, version.max_event_bytes), "too_large"
  end
  return text
end

--- Checks `ev` against the event format of `version` (see check); returns
-- true, or nil, message, "bad_event" | "too_large".
function event.check_format(version, ev)
  check_version(version, 1, "check_format")
  if type(ev) ~= "table" then return bad("event is not an object") end
  local iev, imsg, icode = import(ev)
  if not iev then return nil, imsg, icode end
  ev = iev
  local ok, msg, code = check_format(version, ev)
  if not ok then return nil, msg, code end
  return true
end

-- ---- signatures --------------------------------------------------------------

local ED25519 = "ed25519:"

--- Does a signature by `server_name` over the (redacted) event verify with a
-- key from keys(server_name, key_id) -> raw 32-byte public key or nil? At
-- least one ed25519 signature must be by a known key, and every one by a
-- known key must verify. Returns true, or nil, message, "bad_signature".
function event.verify_signature(version, ev, server_name, keys)
  check_version(version, 1, "verify_signature")
  check_table(ev, 2, "verify_signature")
  if type(keys) ~= "function" then
    error("bad argument #4 to 'verify_signature' (function expected, got " .. type(keys) .. ")", 2)
  end
  local iev, imsg, icode = import(ev)
  if not iev then return nil, imsg, icode end
  ev = iev
  local sigs = is_object(ev.signatures) and ev.signatures[server_name]
  if not is_object(sigs) or next(sigs) == nil then
    return nil, "no signature from " .. tostring(server_name), "bad_signature"
  end
  local key_ids = {}
  for key_id in pairs(sigs) do
    if string_sub(key_id, 1, #ED25519) == ED25519 then key_ids[#key_ids + 1] = key_id end
  end
  table_sort(key_ids)
  local form = pdu(ev)
  local verified = false
  for _, key_id in ipairs(key_ids) do
    local pk = keys(server_name, key_id)
    if pk ~= nil then
      local ok, msg = crypto.verify_event_signature(form, server_name, key_id, pk, version.id)
      if not ok then return nil, msg, "bad_signature" end
      verified = true
    end
  end
  if not verified then
    return nil, "no signature from " .. server_name .. " with a known key", "bad_signature"
  end
  return true
end

-- ---- redaction -----------------------------------------------------------------

--- A redacted copy of `ev` (its event_id kept), with
-- unsigned.redacted_because = redaction_ev when given.
function event.redact(version, ev, redaction_ev)
  check_version(version, 1, "redact")
  local iev, imsg, icode = import_arg(ev, 2, "redact")
  if not iev then return nil, imsg, icode end
  ev = iev
  local red = redact_mod.event(ev, version.id)
  if redaction_ev ~= nil then red.unsigned = { redacted_because = redaction_ev } end
  return red
end

-- ---- checking received events ------------------------------------------------

--- Checks a received event: format, the sender's server's signature, the
-- content hash. Returns { event = ev or its redacted copy, redacted = bool,
-- event_id = id } or nil, message, code ("bad_event", "too_large",
-- "bad_signature"). opts.keys(server_name, key_id) -> public key or nil.
-- Sets ev.event_id when it is absent; rejects one that does not match.
function event.check(version, ev, opts)
  check_version(version, 1, "check")
  if type(opts) ~= "table" or type(opts.keys) ~= "function" then
    error("bad argument #3 to 'check' (table with a keys function expected)", 2)
  end
  if type(ev) ~= "table" then return bad("event is not an object") end
  local given = ev
  local iev, imsg, icode = import(ev)
  if not iev then return nil, imsg, icode end
  ev = iev
  local text, msg, code = check_format(version, ev)
  if not text then return nil, msg, code end

  local id
  id, msg = event.compute_id(version, ev)
  if not id then return nil, msg, "bad_event" end
  if ev.event_id ~= nil and ev.event_id ~= id then
    return bad("event_id %s does not match the event's reference hash", tostring(ev.event_id))
  end

  local server = auth.domain(ev.sender)
  local ok
  ok, msg = event.verify_signature(version, ev, server, opts.keys)
  if not ok then return nil, msg, "bad_signature" end

  if ev.event_id == nil then ev.event_id, given.event_id = id, id end
  if crypto.check_content_hash(pdu(ev)) then
    return { event = ev, redacted = false, event_id = id }
  end
  if ev ~= given and given.content ~= nil then
    -- another decoder's event: a mismatch may be its reading of [] as {}
    local where = ljson.ambiguous(given.content)
    if where then
      return bad("content hash mismatch; content%s is an empty table, which the JSON decoder used may have "
        .. "read from [] (decode with loom.core.json or a decoder that marks arrays)", where:sub(6))
    end
  end
  return { event = event.redact(version, ev), redacted = true, event_id = id }
end

-- ---- building local events ---------------------------------------------------

local function copy_object(t)
  local out = {}
  for k, v in pairs(t) do out[k] = v end
  return out
end

--- Builds, hashes and signs a local event. See docs/room-events-and-auth.md for `proto`,
-- `room` and `opts`. Returns the event (event_id set), or nil, message,
-- "bad_event" | "too_large".
function event.build(version, proto, room, key, opts)
  check_version(version, 1, "build")
  local iev, imsg, icode = import_arg(proto, 2, "build")
  check_table(room, 3, "build")
  check_table(key, 4, "build")
  if not iev then return nil, imsg, icode end
  proto = iev
  opts = opts or {}

  local etype, sender, content, sk = proto.type, proto.sender, proto.content, proto.state_key
  if type(etype) ~= "string" then return bad("type is not a string") end
  if not auth.valid_user_id(sender) then return bad("sender is not a user ID") end
  if not is_object(content) then return bad("content is not an object") end
  if sk ~= nil and type(sk) ~= "string" then return bad("state_key is not a string") end
  if etype == "m.room.create" and sk ~= "" then return bad("m.room.create needs state_key \"\"") end
  local create = etype == "m.room.create"
  local no_room_id = create and version.room_id_is_create_hash
  if no_room_id then
    if proto.room_id ~= nil then return bad("a v%s m.room.create event has no room_id", version.id) end
  elseif type(proto.room_id) ~= "string" then
    return bad("room_id is missing")
  end

  local ev = {
    type = etype, sender = sender, content = content, state_key = sk,
    room_id = not no_room_id and proto.room_id or nil,
  }
  if create and content.room_version == nil then
    ev.content = copy_object(content)
    ev.content.room_version = version.id
  end
  if create and version.creator_in_content then
    if ev.content.creator == nil then
      ev.content = copy_object(ev.content)
      ev.content.creator = sender
    elseif ev.content.creator ~= sender then
      return bad("m.room.create content.creator must be the sender")
    end
  end
  if proto.redacts ~= nil then
    if type(proto.redacts) ~= "string" then return bad("redacts is not a string") end
    if version.redacts_in_content then
      if ev.content.redacts == nil then
        ev.content = copy_object(ev.content)
        ev.content.redacts = proto.redacts
      end
    else
      ev.redacts = proto.redacts
    end
  end

  if create then
    ev.prev_events = json.array()
    ev.auth_events = json.array()
    ev.depth = 1
  else
    local exts = room:forward_extremities()
    if type(exts) ~= "table" or exts[1] == nil then return bad("the room has no forward extremities") end
    local sorted = {}
    for i, x in ipairs(exts) do
      if type(x) ~= "table" or type(x.event_id) ~= "string" or math_type(x.depth) ~= "integer" then
        return bad("forward extremity %d has no event_id or integer depth", i)
      end
      sorted[i] = { x.event_id, x.depth, i }
    end
    table_sort(sorted, function(a, b)
      if a[2] ~= b[2] then return a[2] > b[2] end
      return a[3] < b[3]
    end)
    local n = math_min(#sorted, MAX_PREV_BUILD, version.max_prev_events)
    local prev, depth = {}, 0
    for i = 1, n do
      prev[i] = sorted[i][1]
      if sorted[i][2] > depth then depth = sorted[i][2] end
    end
    ev.prev_events = json.array(prev)
    ev.depth = math_min(depth + 1, MAX_DEPTH)
    ev.auth_events = auth.select(version, ev, function(t, state_key) return room:state(t, state_key) end)
  end

  local ts = opts.now
  if ts == nil then ts = core.now_ms() end
  if math_type(ts) ~= "integer" then return bad("opts.now is not an integer") end
  ev.origin_server_ts = ts

  local ok, msg = crypto.add_content_hash(ev)
  if not ok then return nil, "cannot hash the event: " .. msg, "bad_event" end
  ok, msg = crypto.sign_event(ev, key, version.id)
  if not ok then return nil, "cannot sign the event: " .. msg, "bad_event" end
  local code
  ok, msg, code = check_format(version, ev)
  if not ok then return nil, msg, code end
  ev.event_id = event.compute_id(version, ev)
  return ev
end

--- The PDU (federation) form of an in-memory event: a shallow copy without
-- the loom-local event_id.
function event.pdu(ev)
  check_table(ev, 1, "pdu")
  return pdu(ev)
end

return event
