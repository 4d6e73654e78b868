-- loom.api.client.cross_signing: the Client-Server API "Cross-signing"
-- endpoints — POST /keys/device_signing/upload (master, self-signing and
-- user-signing keys; behind user-interactive auth once the user has a
-- master key) and POST /keys/signatures/upload (each signature verified:
-- the user's devices by their self-signing key, their master key by one of
-- their devices, another user's master key by their user-signing key).
-- /keys/query serves the keys (loom.api.client.keys). See
-- docs/api-client-keys.md.
--
--   cross_signing.routes  --> { { "POST", "/_matrix/client/v3/keys/device_signing/upload", ... }, ... }
local core = require "loom.core"
local errors = require "loom.http.errors"
local ljson = require "loom.json"
local crypto = require "loom.room.crypto"
local uia = require "loom.api.uia"

local json = core.json
local pairs, ipairs, type, next = pairs, ipairs, type, next
local b64decode = core.crypto.base64_decode

local _ENV = nil -- luacheck: ignore 211

local cs = {}

local V3 = "/_matrix/client/v3"
local MAX_SIGNED = 1000

local function encode(v) return (json.encode(v, { floats = true })) end
local function invalid(msg) return errors.new("M_INVALID_PARAM", msg) end

--- The public key of a cross-signing key object: base64, raw — or nil.
function cs.public_key(obj)
  if not ljson.is_object(obj) or not ljson.is_object(obj.keys) then return nil end
  local id, value = next(obj.keys)
  if type(id) ~= "string" or next(obj.keys, id) ~= nil or type(value) ~= "string" then return nil end
  if id ~= "ed25519:" .. value then return nil end
  local raw = b64decode(value)
  if not raw or #raw ~= 32 then return nil end
  return value, raw
end

-- A copy without signatures and unsigned (what a signature covers).
local function signed_part(obj)
  local out = {}
  for k, v in pairs(obj) do if k ~= "signatures" and k ~= "unsigned" then out[k] = v end end
  return out
end

-- Check a cross-signing key object of the caller for `usage`: nil or an error.
local function check_key(req, obj, usage)
  if not ljson.is_object(obj) then return errors.new("M_BAD_JSON", usage .. " key must be an object") end
  if obj.user_id ~= req.user_id then return invalid(usage .. " key must be the caller's") end
  local has = false
  if json.is_array(obj.usage) then
    for _, u in ipairs(obj.usage) do if u == usage then has = true end end
  end
  if not has then return invalid(usage .. " key must have usage " .. usage) end
  if not cs.public_key(obj) then return invalid(usage .. " key must have exactly one ed25519 key") end
  if obj.signatures ~= nil and not ljson.is_object(obj.signatures) then
    return errors.new("M_BAD_JSON", "signatures must be an object")
  end
  return nil
end

local function upload(hs, req)
  local body = req:json()
  local store = hs.store
  local existing = store:cross_signing_keys(req.user_id)
  if existing.master then
    local answer, extra = uia.check(hs, req, body)
    if answer then return answer, extra end
  end
  local keys = {}
  local master = body.master_key
  if master ~= nil and master ~= json.null then
    local err = check_key(req, master, "master")
    if err then return err end
    keys.master = encode(signed_part(master))
    if ljson.is_object(master.signatures) then keys.master = encode(master) end
  else
    master = existing.master and json.decode(existing.master)
  end
  for field, usage in pairs { self_signing_key = "self_signing", user_signing_key = "user_signing" } do
    local k = body[field]
    if k ~= nil and k ~= json.null then
      local err = check_key(req, k, usage)
      if err then return err end
      local pub_b64, raw = cs.public_key(master)
      if not pub_b64 then return invalid(usage .. " key needs a master key") end
      if not crypto.verify_json(k, req.user_id, "ed25519:" .. pub_b64, raw) then
        return errors.new("M_INVALID_SIGNATURE", usage .. " key is not signed by the master key")
      end
      keys[usage] = encode(k)
    end
  end
  if next(keys) then store:put_cross_signing_keys(req.user_id, keys) end
  return {}
end

-- Add the signatures of `obj` by (user, key_id) to the stored object (text):
-- the new JSON text.
local function merged(stored_text, obj, user, key_id)
  local stored = json.decode(stored_text)
  stored.signatures = ljson.is_object(stored.signatures) and stored.signatures or {}
  stored.signatures[user] = ljson.is_object(stored.signatures[user]) and stored.signatures[user] or {}
  stored.signatures[user][key_id] = obj.signatures[user][key_id]
  return encode(stored)
end

-- The one signature of `obj` by `signer` checked against keys (key_id -> raw
-- public key): key_id, or nil.
local function verified_by(obj, signer, keys)
  local sigs = ljson.is_object(obj.signatures) and obj.signatures[signer]
  if not ljson.is_object(sigs) then return nil end
  for key_id in pairs(sigs) do
    local raw = keys[key_id]
    if raw and crypto.verify_json(obj, signer, key_id, raw) then return key_id end
  end
  return nil
end

local function same_content(stored_text, obj)
  return encode(signed_part(json.decode(stored_text))) == encode(signed_part(obj))
end

local function sign_one(hs, req, user, key_id, obj, mine)
  local store = hs.store
  local me = req.user_id
  if not ljson.is_object(obj) then return "M_BAD_JSON", "a signed key must be an object" end
  if user == me then
    local device_text = store:device_keys_json(me, key_id)
    if device_text then
      local ssk_b64, ssk = cs.public_key(mine.self_signing and json.decode(mine.self_signing))
      if not ssk_b64 then return "M_INVALID_SIGNATURE", "no self-signing key" end
      if not same_content(device_text, obj) then return "M_INVALID_SIGNATURE", "the key does not match" end
      local kid = verified_by(obj, me, { ["ed25519:" .. ssk_b64] = ssk })
      if not kid then return "M_INVALID_SIGNATURE", "not signed by the self-signing key" end
      store:replace_device_keys_json(me, key_id, merged(device_text, obj, me, kid))
      return nil
    end
    local master_b64 = cs.public_key(mine.master and json.decode(mine.master))
    if master_b64 and key_id == master_b64 then
      if not same_content(mine.master, obj) then return "M_INVALID_SIGNATURE", "the key does not match" end
      local devices = {}
      local sigs = ljson.is_object(obj.signatures) and obj.signatures[me]
      for kid in pairs(ljson.is_object(sigs) and sigs or {}) do
        local device_id = type(kid) == "string" and kid:match("^ed25519:(.+)$")
        local text = device_id and store:device_keys_json(me, device_id)
        local dk = text and json.decode(text)
        local raw = dk and ljson.is_object(dk.keys) and type(dk.keys[kid]) == "string" and b64decode(dk.keys[kid])
        if raw then devices[kid] = raw end
      end
      local kid = verified_by(obj, me, devices)
      if not kid then return "M_INVALID_SIGNATURE", "not signed by one of the user's devices" end
      store:replace_cross_signing_key(me, "master", merged(mine.master, obj, me, kid))
      return nil
    end
    return "M_NOT_FOUND", "unknown key"
  end
  local theirs = store:cross_signing_keys(user)
  local master_b64 = cs.public_key(theirs.master and json.decode(theirs.master))
  if not master_b64 or key_id ~= master_b64 then return "M_NOT_FOUND", "unknown key" end
  local usk_b64, usk = cs.public_key(mine.user_signing and json.decode(mine.user_signing))
  if not usk_b64 then return "M_INVALID_SIGNATURE", "no user-signing key" end
  if not same_content(theirs.master, obj) then return "M_INVALID_SIGNATURE", "the key does not match" end
  local kid = verified_by(obj, me, { ["ed25519:" .. usk_b64] = usk })
  if not kid then return "M_INVALID_SIGNATURE", "not signed by the user-signing key" end
  store:add_cross_signing_signature(me, user, key_id, kid, obj.signatures[me][kid])
  return nil
end

local function signatures_upload(hs, req)
  local body = req:json()
  local mine = hs.store:cross_signing_keys(req.user_id)
  local failures, n = {}, 0
  for user, keys in pairs(body) do
    if type(user) ~= "string" or not ljson.is_object(keys) then
      return errors.new("M_BAD_JSON", "signatures must map user IDs to objects")
    end
    for key_id, obj in pairs(keys) do
      n = n + 1
      if n > MAX_SIGNED then return invalid("too many signed keys") end
      local code, msg = sign_one(hs, req, user, key_id, obj, mine)
      if code then
        failures[user] = failures[user] or {}
        failures[user][key_id] = { errcode = code, error = msg }
      end
    end
  end
  return { failures = failures }
end

cs.routes = {
  { "POST", V3 .. "/keys/device_signing/upload", upload, auth = true },
  { "POST", V3 .. "/keys/signatures/upload", signatures_upload, auth = true },
}

return cs
