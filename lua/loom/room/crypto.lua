-- loom.crypto: Matrix JSON signing, content hashes, reference hashes and
-- event IDs, over the C primitives in loom.core.crypto and the canonical JSON
-- encoder in loom.core.json. Contracts and examples: docs/crypto.md.
--
-- Failures a peer or client can cause return nil, message, code; misuse by
-- the caller (a key that is not a key object, a non-table event) raises.

local type, error, pairs, tostring = type, error, pairs, tostring
local getmetatable, setmetatable = getmetatable, setmetatable
local string_sub = string.sub

local core = require("loom.core")
local redact = require("loom.room.redact")
local ljson = require("loom.json")
local import = ljson.import

local c = core.crypto
local json = core.json

local _ENV = nil -- luacheck: ignore 211

local crypto = {}

local ED25519 = "ed25519:"

-- ---- helpers ---------------------------------------------------------------

-- A shallow copy of object `obj` without the listed top-level keys: the value
-- that gets hashed or signed. The input is never modified.
local function without(obj, k1, k2, k3)
  local out = {}
  for k, v in pairs(obj) do
    if k ~= k1 and k ~= k2 and k ~= k3 then out[k] = v end
  end
  local mt = getmetatable(obj)
  if mt ~= nil then setmetatable(out, mt) end
  return out
end

local function check_table(value, n, fname)
  if type(value) ~= "table" then
    error(("bad argument #%d to '%s' (table expected, got %s)"):format(n, fname, type(value)), 3)
  end
end

-- Argument n of fname, a table (else raises), in loom's JSON form
-- (loom.json.import; `kind` as there); or nil, message, code. `depth`: how
-- many helpers stand between fname and this call (default 0).
local function import_arg(value, n, fname, kind, depth)
  if type(value) ~= "table" then
    error(("bad argument #%d to '%s' (table expected, got %s)"):format(n, fname, type(value)), 3 + (depth or 0))
  end
  return import(value, kind)
end

local function check_string(value, n, fname)
  if type(value) ~= "string" then
    error(("bad argument #%d to '%s' (string expected, got %s)"):format(n, fname, type(value)), 3)
  end
end

local is_object = ljson.is_object

-- Decodes unpadded base64 in either alphabet (peers are not consistent).
local function decode_any(text)
  local raw, msg, code = c.base64_decode(text)
  if raw then return raw end
  raw = c.base64_decode(text, true)
  if raw then return raw end
  return nil, msg, code
end

local function full_key_id(key_id)
  if string_sub(key_id, 1, #ED25519) == ED25519 then return key_id end
  return ED25519 .. key_id
end

-- ---- keys ------------------------------------------------------------------

local key_mt = {
  __name = "loom.SigningKey",
  __tostring = function(key)
    -- never the seed
    return ("loom.SigningKey(%s %s %s)"):format(key.server_name, key.key_id, key.public_key_base64)
  end,
}
crypto.key_mt = key_mt

--- A signing key object from a 32-byte seed or its unpadded base64 form.
-- key_id may be given as "ed25519:abc" or "abc". Returns the key, or
-- nil, message, "bad_key" when the seed does not decode to 32 bytes.
function crypto.signing_key(seed, key_id, server_name)
  check_string(seed, 1, "signing_key")
  check_string(key_id, 2, "signing_key")
  check_string(server_name, 3, "signing_key")
  if #seed ~= 32 then
    local raw, msg = decode_any(seed)
    if not raw then return nil, "signing key seed: " .. msg, "bad_key" end
    if #raw ~= 32 then
      return nil, ("signing key seed: %d bytes, 32 expected"):format(#raw), "bad_key"
    end
    seed = raw
  end
  local pk, msg, code = c.ed25519_public_key(seed)
  if not pk then return nil, msg, code end
  local signer
  signer, msg, code = c.ed25519_signer(seed)
  if not signer then return nil, msg, code end
  return setmetatable({
    seed = seed,
    signer = signer,          -- the key ready for signing (set up once)
    public_key = pk,
    public_key_base64 = c.base64_encode(pk),
    key_id = full_key_id(key_id),
    server_name = server_name,
  }, key_mt)
end

local function check_key(key, n, fname)
  if type(key) ~= "table" or type(key.seed) ~= "string" or #key.seed ~= 32
      or type(key.key_id) ~= "string" or type(key.server_name) ~= "string" then
    error(("bad argument #%d to '%s' (signing key expected)"):format(n, fname), 3)
  end
end

-- ---- signed JSON -------------------------------------------------------------

-- obj.signatures[key.server_name][key.key_id] = sig, creating the objects
-- (other servers' and keys' signatures stay).
local function add_signature(obj, key, sig)
  local sigs = obj.signatures
  if sigs == nil then
    sigs = {}
    obj.signatures = sigs
  end
  local mine = sigs[key.server_name]
  if not is_object(mine) then
    mine = {}
    sigs[key.server_name] = mine
  end
  mine[key.key_id] = sig
end

--- Signs `obj` in place: obj.signatures[server_name][key_id] = signature over
-- the canonical JSON of obj without `signatures` and `unsigned`. Returns obj,
-- or nil, message, code when obj does not encode as canonical JSON.
function crypto.sign_json(obj, key)
  local src, msg, code = import_arg(obj, 1, "sign_json")
  check_key(key, 2, "sign_json")
  if not src then return nil, msg, code end
  local sigs = src.signatures
  if sigs ~= nil and not is_object(sigs) then
    return nil, "signatures is not an object", "bad_signatures"
  end
  local text
  text, msg, code = json.encode(without(src, "signatures", "unsigned"))
  if not text then return nil, msg, code end
  local sig = key.signer and key.signer:sign(text) or c.ed25519_sign(key.seed, text)
  add_signature(src, key, c.base64_encode(sig))
  if src ~= obj then obj.signatures = src.signatures end
  return obj
end

--- Checks obj.signatures[server_name][key_id] against public_key (32 raw
-- bytes). Returns true, or nil, message, code with code "no_signature",
-- "bad_base64", "bad_signature" or a JSON encoder code.
function crypto.verify_json(obj, server_name, key_id, public_key)
  local src, imsg, icode = import_arg(obj, 1, "verify_json")
  check_string(server_name, 2, "verify_json")
  check_string(key_id, 3, "verify_json")
  check_string(public_key, 4, "verify_json")
  if not src then return nil, imsg, icode end
  obj = src
  key_id = full_key_id(key_id)
  local sigs = obj.signatures
  local mine = is_object(sigs) and sigs[server_name]
  local sig64 = is_object(mine) and mine[key_id]
  if type(sig64) ~= "string" then
    return nil, ("no signature from %s with key %s"):format(server_name, key_id), "no_signature"
  end
  local sig, msg, code = decode_any(sig64)
  if not sig then return nil, "signature: " .. msg, code end
  local text
  text, msg, code = json.encode(without(obj, "signatures", "unsigned"))
  if not text then return nil, msg, code end
  if not c.ed25519_verify(public_key, text, sig) then
    return nil, ("bad signature from %s with key %s"):format(server_name, key_id), "bad_signature"
  end
  return true
end

-- ---- event hashes ------------------------------------------------------------

local function content_sha256(event)
  local text, msg, code = json.encode(without(event, "unsigned", "signatures", "hashes"))
  if not text then return nil, msg, code end
  return c.sha256(text)
end

--- Unpadded standard base64 of the sha256 of the event's canonical JSON
-- without `unsigned`, `signatures` and `hashes`; or nil, message, code.
function crypto.content_hash(event)
  local src, msg, code = import_arg(event, 1, "content_hash", "event")
  if not src then return nil, msg, code end
  local digest
  digest, msg, code = content_sha256(src)
  if not digest then return nil, msg, code end
  return c.base64_encode(digest)
end

--- Sets event.hashes = { sha256 = content_hash(event) }. Returns event, or
-- nil, message, code.
function crypto.add_content_hash(event)
  check_table(event, 1, "add_content_hash")
  local h, msg, code = crypto.content_hash(event)
  if not h then return nil, msg, code end
  event.hashes = { sha256 = h }
  return event
end

--- True when event.hashes.sha256 matches the event's content; else nil,
-- message, "bad_content_hash" (or a JSON encoder code).
function crypto.check_content_hash(event)
  local given = event
  local src, imsg, icode = import_arg(event, 1, "check_content_hash", "event")
  if not src then return nil, imsg, icode end
  event = src
  local hashes = event.hashes
  local claimed = is_object(hashes) and hashes.sha256
  if type(claimed) ~= "string" then
    return nil, "event has no sha256 content hash", "bad_content_hash"
  end
  local raw = decode_any(claimed)
  if not raw then
    return nil, "content hash is not base64", "bad_content_hash"
  end
  local digest, msg, code = content_sha256(event)
  if not digest then return nil, msg, code end
  if not c.constant_time_equal(raw, digest) then
    local where = given ~= event and ljson.ambiguous(given.content)
    if where then
      return nil, "content hash mismatch; content" .. string_sub(where, 6) .. " is an empty table, which the "
        .. "JSON decoder used may have read from []", "bad_content_hash"
    end
    return nil, "content hash mismatch", "bad_content_hash"
  end
  return true
end

-- Argument 1 of fname, an event, imported and redacted for room_version;
-- or nil, message, code.
local function redacted_arg(event, fname, room_version)
  local src, msg, code = import_arg(event, 1, fname, "event", 1)
  if not src then return nil, msg, code end
  return redact.event(src, room_version)
end

--- Raw sha256 of the canonical JSON of the redacted event without
-- `signatures` and `unsigned`; or nil, message, code.
function crypto.reference_hash(event, room_version)
  local red, msg, code = redacted_arg(event, "reference_hash", room_version)
  if not red then return nil, msg, code end
  red.signatures, red.unsigned, red.age_ts = nil, nil, nil
  local text
  text, msg, code = json.encode(red)
  if not text then return nil, msg, code end
  return c.sha256(text)
end

--- The event ID of a room v3+ event: "$" .. base64(reference hash), standard
-- alphabet for v3, URL-safe for v4 and later. Versions 1 and 2 (IDs assigned
-- by the origin server) and unknown versions return nil, message,
-- "unsupported_room_version".
function crypto.event_id(event, room_version)
  check_table(event, 1, "event_id")
  if room_version == "1" or room_version == "2" or not redact.supported(room_version) then
    return nil, "no hash-based event IDs in room version " .. tostring(room_version),
      "unsupported_room_version"
  end
  local h, msg, code = crypto.reference_hash(event, room_version)
  if not h then return nil, msg, code end
  return "$" .. c.base64_encode(h, room_version ~= "3")
end

-- ---- event signatures --------------------------------------------------------

--- Adds the content hash (when event.hashes.sha256 is missing) and this
-- server's signature over the redacted event. Returns event, or nil,
-- message, code.
function crypto.sign_event(event, key, room_version)
  check_table(event, 1, "sign_event")
  check_key(key, 2, "sign_event")
  if not redact.supported(room_version) then
    return nil, "unsupported room version: " .. tostring(room_version), "unsupported_room_version"
  end
  local src, imsg, icode = import(event, "event")
  if not src then return nil, imsg, icode end
  local hashes = src.hashes
  if not (is_object(hashes) and type(hashes.sha256) == "string") then
    local ok, msg, code = crypto.add_content_hash(src)
    if not ok then return nil, msg, code end
  end
  local sigs = src.signatures
  if sigs ~= nil and not is_object(sigs) then
    return nil, "signatures is not an object", "bad_signatures"
  end
  local red = redact.event(src, room_version)
  local ok, msg, code = crypto.sign_json(red, key)
  if not ok then return nil, msg, code end
  add_signature(src, key, red.signatures[key.server_name][key.key_id])
  if src ~= event then event.hashes, event.signatures = src.hashes, src.signatures end
  return event
end

--- Verifies server_name's signature with key_id over the redacted event.
-- Returns true, or nil, message, code (as verify_json, plus
-- "unsupported_room_version").
function crypto.verify_event_signature(event, server_name, key_id, public_key, room_version)
  local red, msg, code = redacted_arg(event, "verify_event_signature", room_version)
  if not red then return nil, msg, code end
  return crypto.verify_json(red, server_name, key_id, public_key)
end

return crypto
