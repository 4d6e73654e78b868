-- loom.api.client.keys: the Client-Server API "End-to-End Encryption" key
-- endpoints — POST /keys/upload, /keys/query, /keys/claim and GET
-- /keys/changes. Device keys must be signed by the device's own ed25519
-- key and name the user and device of the access token; signed one-time
-- and fallback keys must carry a valid signature by that key too. Users
-- of other servers are answered from the device lists held for them or by
-- their servers (loom.federation.devices); servers that do not answer are
-- in `failures`. See docs/api-client-keys.md.
--
--   keys.routes  --> { { "POST", "/_matrix/client/v3/keys/upload", handler, auth = true }, ... }
local core = require "loom.core"
local errors = require "loom.http.errors"
local ljson = require "loom.json"
local crypto = require "loom.room.crypto"
local sync_token = require "loom.sync.token"
local device_lists = require "loom.sync.device_lists"
local store_filter = require "loom.store.filter"
local response = require "loom.http.response"
local fed_devices = require "loom.federation.devices"

local json = core.json
local pairs, ipairs, type, next = pairs, ipairs, type, next
local math_type = math.type
local table_sort, table_concat = table.sort, table.concat
local b64decode = core.crypto.base64_decode

local _ENV = nil -- luacheck: ignore 211

local keys_api = {}

local V3 = "/_matrix/client/v3"
local MAX_KEYS = 1000          -- one-time or fallback keys per upload
local MAX_QUERY = 1000         -- users per query or claim
local MAX_ID = 255
local DEFAULT_TIMEOUT, MAX_TIMEOUT = 10000, 60000   -- ms, for other servers' answers

local function bad(msg) return errors.new("M_BAD_JSON", msg) end
local function invalid(msg) return errors.new("M_INVALID_PARAM", msg) end
local function domain(user_id) return user_id:match("^@[^:]+:(.+)$") end

local function encode(v) return (json.encode(v, { floats = true })) end

-- The device's ed25519 public key (raw) from a device_keys object.
local function ed25519_of(dk, device_id)
  local k = ljson.is_object(dk) and ljson.is_object(dk.keys) and dk.keys["ed25519:" .. device_id]
  if type(k) ~= "string" then return nil end
  local raw = b64decode(k)
  if not raw or #raw ~= 32 then return nil end
  return raw
end

-- Check an uploaded device_keys object: nil, or an error value.
local function check_device_keys(req, dk)
  if not ljson.is_object(dk) then return bad("device_keys must be an object") end
  if dk.user_id ~= req.user_id or dk.device_id ~= req.device_id then
    return invalid("device_keys.user_id and device_id must be those of the access token")
  end
  if not json.is_array(dk.algorithms) then
    return bad("device_keys.algorithms must be an array")
  end
  for _, a in ipairs(dk.algorithms) do
    if type(a) ~= "string" then return bad("device_keys.algorithms must be strings") end
  end
  if not ljson.is_object(dk.keys) then return bad("device_keys.keys must be an object") end
  for k, v in pairs(dk.keys) do
    if type(k) ~= "string" or type(v) ~= "string" then return bad("device_keys.keys must map IDs to strings") end
  end
  if not ljson.is_object(dk.signatures) then return bad("device_keys.signatures must be an object") end
  local pub = ed25519_of(dk, req.device_id)
  if not pub then return invalid("device_keys has no valid ed25519 key of the device") end
  if not crypto.verify_json(dk, req.user_id, "ed25519:" .. req.device_id, pub) then
    return invalid("device_keys is not signed by the device's ed25519 key")
  end
  return nil
end

-- { { algorithm, key_id, json_text }, ... } from a one_time_keys or
-- fallback_keys object, or nil, error value. A key that is an object must
-- be signed by the device (pub: its ed25519 key, raw).
local function key_list(req, obj, what, pub)
  if not ljson.is_object(obj) then return nil, bad(what .. " must be an object") end
  local out = {}
  for id, key in pairs(obj) do
    if #out >= MAX_KEYS then return nil, invalid("too many " .. what) end
    if type(id) ~= "string" then return nil, bad(what .. ": key IDs are strings") end
    local alg, key_id = id:match("^([^:]+):(.+)$")
    if not alg or #id > MAX_ID then return nil, invalid(what .. ": key IDs are <algorithm>:<id>") end
    if ljson.is_object(key) then
      if not pub or not crypto.verify_json(key, req.user_id, "ed25519:" .. req.device_id, pub) then
        return nil, invalid(what .. ": " .. id .. " is not signed by the device's ed25519 key")
      end
      local copy = {}
      for k, v in pairs(key) do if k ~= "unsigned" then copy[k] = v end end
      key = copy
    elseif type(key) ~= "string" then
      return nil, bad(what .. ": a key is a string or a signed object")
    end
    if alg:find("^signed_") and type(key) ~= "table" then
      return nil, invalid(what .. ": " .. id .. " must be a signed object")
    end
    out[#out + 1] = { alg, key_id, encode(key) }
  end
  return out
end

local function upload(hs, req)
  local body = req:json()
  local store = hs.store
  local user_id, device_id = req.user_id, req.device_id
  local dk = body.device_keys
  if dk == json.null then dk = nil end
  if dk ~= nil then
    local err = check_device_keys(req, dk)
    if err then return err end
  end
  local pub = dk and ed25519_of(dk, device_id)
  if not pub then
    local stored = store:device_keys_json(user_id, device_id)
    pub = stored and ed25519_of(json.decode(stored), device_id)
  end
  local otks, fbks, err
  if body.one_time_keys ~= nil and body.one_time_keys ~= json.null then
    otks, err = key_list(req, body.one_time_keys, "one_time_keys", pub)
    if not otks then return err end
  end
  if body.fallback_keys ~= nil and body.fallback_keys ~= json.null then
    fbks, err = key_list(req, body.fallback_keys, "fallback_keys", pub)
    if not fbks then return err end
  end
  if dk then
    local copy = {}
    for k, v in pairs(dk) do if k ~= "unsigned" then copy[k] = v end end
    store:put_device_keys(user_id, device_id, encode(copy))
  end
  if otks then store:add_one_time_keys(user_id, device_id, otks) end
  if fbks then store:put_fallback_keys(user_id, device_id, fbks) end
  return { one_time_key_counts = store:one_time_key_counts(user_id, device_id) }
end

-- The users asked for (object user_id -> value), split into ours and
-- those of other servers; or nil, nil, error value.
local function split_users(hs, obj, what)
  if not ljson.is_object(obj) then return nil, nil, bad(what .. " must be an object") end
  local ours, theirs, n = {}, {}, 0
  for user_id, v in pairs(obj) do
    n = n + 1
    if n > MAX_QUERY then return nil, nil, invalid("too many users in " .. what) end
    if type(user_id) ~= "string" or not store_filter.is_id("user", user_id) then
      return nil, nil, invalid("invalid user ID in " .. what)
    end
    if domain(user_id) == hs.server_name then ours[user_id] = v else theirs[user_id] = v end
  end
  return ours, theirs
end

-- The request's timeout for other servers (ms): `timeout`, default 10 s.
local function timeout_of(body)
  local t = body.timeout
  if math_type(t) ~= "integer" then return DEFAULT_TIMEOUT end
  if t < 0 then return 0 end
  if t > MAX_TIMEOUT then return MAX_TIMEOUT end
  return t
end

-- A JSON string (user and device IDs as object keys).
local function str(v)
  if not v:find('[%c"\\\128-\255]') then return '"' .. v .. '"' end
  return (json.encode(v))
end

-- A stored key object (JSON text) with `unsigned` spliced in: the stored
-- text is a canonical object without unsigned, so the result is valid JSON
-- (not canonical; no response needs that).
local function with_unsigned(text, unsigned)
  if not unsigned then return text end
  return "{\"unsigned\":" .. encode(unsigned) .. "," .. text:sub(2)
end

-- The master key text of user u with the caller's signatures of it added.
local function master_with(text, caller, sigs)
  local m = json.decode(text)
  for _, sig in ipairs(sigs) do
    if ljson.is_object(m.keys) and m.keys["ed25519:" .. sig[2]] then
      m.signatures = ljson.is_object(m.signatures) and m.signatures or {}
      m.signatures[caller] = ljson.is_object(m.signatures[caller]) and m.signatures[caller] or {}
      m.signatures[caller][sig[3]] = sig[4]
    end
  end
  return encode(m)
end

-- The response is assembled from the stored JSON texts (no decoding and
-- encoding of every key: /keys/query of 500 users x 3 devices stays well
-- under 20 ms, bench/keys_query.lua): device_keys with each device's
-- display name in unsigned, master and self-signing keys of the users asked
-- for (master keys with the caller's signatures of them), the caller's own
-- user-signing key, and failures for servers that did not answer.
--
-- keys_api.query_text(hs, asked, caller, remote, failures) -> JSON text.
-- asked: { [user_id] = { device_id, ... } } (empty: every device); users of
-- this server are read from the store, the others from remote ({ keys,
-- names, cs } as loom.federation.devices.query answers). caller nil (a
-- federation query): no signatures of the caller, no user_signing_keys and
-- no failures.
function keys_api.query_text(hs, asked, caller, remote, failures)
  local users, mine = {}, {}
  for u in pairs(asked) do
    users[#users + 1] = u
    if domain(u) == hs.server_name then mine[#mine + 1] = u end
  end
  table_sort(users)
  local store = hs.store
  local all, names = store:device_keys_of(mine)
  local cs_keys = store:cross_signing_keys_of(mine)
  if remote then
    for u, devs in pairs(remote.keys) do all[u] = devs; names[u] = remote.names[u] or {} end
    for u, cs in pairs(remote.cs) do cs_keys[u] = cs end
  end
  local sigs = {}
  if caller then
    for _, sig in ipairs(store:cross_signing_signatures(caller, users)) do
      sigs[sig[1]] = sigs[sig[1]] or {}
      sigs[sig[1]][#sigs[sig[1]] + 1] = sig
    end
  end
  local out = { "{\"device_keys\":{" }
  local masters, selfs, usks = {}, {}, {}
  local first = true
  for _, u in ipairs(users) do
    if all[u] then
      local only
      if #asked[u] > 0 then
        only = {}
        for _, d in ipairs(asked[u]) do only[d] = true end
      end
      local devs = {}
      for d, text in pairs(all[u]) do
        if not only or only[d] then
          local name = names[u][d]
          devs[#devs + 1] = str(d) .. ":" .. with_unsigned(text, name and { device_display_name = name })
        end
      end
      out[#out + 1] = (first and "" or ",") .. str(u) .. ":{" .. table_concat(devs, ",") .. "}"
      first = false
    end
    local cs = cs_keys[u]
    if cs then
      if cs.master then
        masters[#masters + 1] = str(u) .. ":" .. (sigs[u] and master_with(cs.master, caller, sigs[u])
          or cs.master)
      end
      if cs.self_signing then selfs[#selfs + 1] = str(u) .. ":" .. cs.self_signing end
      if cs.user_signing and caller and u == caller then usks[#usks + 1] = str(u) .. ":" .. cs.user_signing end
    end
  end
  out[#out + 1] = "}"
  if failures then out[#out + 1] = ",\"failures\":" .. encode(failures) end
  out[#out + 1] = ",\"master_keys\":{" .. table_concat(masters, ",") .. "}"
  out[#out + 1] = ",\"self_signing_keys\":{" .. table_concat(selfs, ",") .. "}"
  if caller then out[#out + 1] = ",\"user_signing_keys\":{" .. table_concat(usks, ",") .. "}" end
  out[#out + 1] = "}"
  return table_concat(out)
end

--- keys_api.check_query(asked) -> nil | error value: device_keys values
-- must be arrays of device IDs.
function keys_api.check_query(asked)
  for _, devs in pairs(asked) do
    if not json.is_array(devs) and not (ljson.is_object(devs) and next(devs) == nil) then
      return bad("device_keys values must be arrays of device IDs")
    end
    for _, d in ipairs(devs) do
      if type(d) ~= "string" then return bad("device_keys values must be arrays of device IDs") end
    end
  end
  return nil
end

local function query(hs, req)
  local body = req:json()
  local asked = body.device_keys
  if asked == nil then return errors.new("M_MISSING_PARAM", "device_keys is required") end
  local _, theirs, err = split_users(hs, asked, "device_keys")
  if not theirs then return err end
  err = keys_api.check_query(asked)
  if err then return err end
  local remote, failures = nil, {}
  if next(theirs) then
    local keys, names, cs
    keys, names, cs, failures = fed_devices.query(hs, theirs, timeout_of(body))
    remote = { keys = keys, names = names, cs = cs }
  end
  return response.new(200, keys_api.query_text(hs, asked, req.user_id, remote, failures))
end

--- keys_api.claim_local(hs, requests) -> { [user_id] = { [device_id] = {
-- [key_id] = key } } }: one key per { user_id, device_id, algorithm } of
-- this server's users.
function keys_api.claim_local(hs, requests)
  local out = {}
  for _, c in ipairs(hs.store:claim_keys(requests)) do
    local u, d = c[1], c[2]
    out[u] = out[u] or {}
    out[u][d] = out[u][d] or {}
    out[u][d][c[3]] = json.decode(c[4])
  end
  return out
end

--- keys_api.claim_requests(asked) -> { { user_id, device_id, algorithm } }
-- | nil, error value (asked: { [user_id] = { [device_id] = algorithm } }).
function keys_api.claim_requests(asked)
  local requests = {}
  for u, devs in pairs(asked) do
    if not ljson.is_object(devs) then return nil, bad("one_time_keys values must be objects") end
    for d, alg in pairs(devs) do
      if type(d) ~= "string" or type(alg) ~= "string" then
        return nil, bad("one_time_keys must map device IDs to algorithms")
      end
      if #requests >= MAX_QUERY then return nil, invalid("too many devices in one_time_keys") end
      requests[#requests + 1] = { u, d, alg }
    end
  end
  return requests
end

local function claim(hs, req)
  local body = req:json()
  local asked = body.one_time_keys
  if asked == nil then return errors.new("M_MISSING_PARAM", "one_time_keys is required") end
  local ours, theirs, err = split_users(hs, asked, "one_time_keys")
  if not ours then return err end
  local requests
  requests, err = keys_api.claim_requests(asked)
  if not requests then return err end
  local mine = {}
  for _, r in ipairs(requests) do if ours[r[1]] then mine[#mine + 1] = r end end
  local out, failures = keys_api.claim_local(hs, mine), {}
  if next(theirs) then
    local claimed
    claimed, failures = fed_devices.claim(hs, theirs, timeout_of(body))
    for u, devs in pairs(claimed) do out[u] = devs end
  end
  return { one_time_keys = out, failures = failures }
end

-- GET /keys/changes?from&to: what /sync's device_lists would have said
-- between the two sync tokens (loom.sync.device_lists).
local function changes(hs, req)
  local from, to = req:arg("from"), req:arg("to")
  if not from or not to then return errors.new("M_MISSING_PARAM", "from and to are required") end
  local now = sync_token.current(hs)
  local f, e1 = sync_token.parse(from)
  if f then f, e1 = sync_token.check(f, now) end
  if not f then return invalid("from: " .. e1) end
  local t, e2 = sync_token.parse(to)
  if t then t, e2 = sync_token.check(t, now) end
  if not t then return invalid("to: " .. e2) end
  local newly, gone = device_lists.rooms(hs.store, req.user_id, f.stream, t.stream)
  local changed, left = device_lists.between(hs.store, req.user_id, f.device_lists, t.device_lists, newly, gone)
  return { changed = json.array(changed), left = json.array(left) }
end

keys_api.routes = {
  { "POST", V3 .. "/keys/upload", upload, auth = true },
  { "POST", V3 .. "/keys/query", query, auth = true },
  { "POST", V3 .. "/keys/claim", claim, auth = true },
  { "GET", V3 .. "/keys/changes", changes, auth = true },
}

return keys_api
