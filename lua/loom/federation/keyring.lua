-- loom.federation.keyring: this server's published keys and other servers'
-- verify keys.
--
--   local kr = keyring.new(hs, fedclient)      -- hs.keyring
--   kr:own_response()                           --> the signed /_matrix/key/v2/server body
--   local pk, err = kr:verify_key("other.example", "ed25519:abc", ts)   -- inside a task
--   kr:check_response(doc, "other.example")     --> keys list | nil, message (a response's rules)
--   kr:notary_answer(criteria)                  --> /_matrix/key/v2/query's server_keys list
--
-- verify_key answers from the store when it holds the key valid at ts
-- (another server's key is used for an event only while valid_until_ts >=
-- the event's origin_server_ts; requests use now); else it asks the server
-- itself (GET /_matrix/key/v2/server), then each trusted notary
-- (config federation.trusted_key_servers, POST /_matrix/key/v2/query), and
-- stores what verifies. A key response counts only when it names the server,
-- is signed by every key in its verify_keys, and is valid now. One fetch per
-- server runs at a time; concurrent askers wait for it. A server that did
-- not answer is not asked again for a short while (failures are cached).
local pairs, ipairs, type, tostring, setmetatable, next, pcall, error = pairs, ipairs, type, tostring, setmetatable,
  next, pcall, error
local math_min, math_type = math.min, math.type
local core = require "loom.core"
local crypto = require "loom.room.crypto"
local ljson = require "loom.json"
local async = require "loom.async"

local json, now_ms = core.json, core.now_ms
local is_object = ljson.is_object

local _ENV = nil -- luacheck: ignore 211

local keyring = {}

local DEFAULT_VALIDITY = 24 * 3600 * 1000    -- own responses: valid a day
local MAX_REMOTE_VALIDITY = 7 * 24 * 3600 * 1000   -- never trust a remote key longer than a week ahead
local FAILURE_BACKOFF = 10 * 1000            -- a server that did not answer is not asked again for 10 s
local MAX_SERVER_NAME = 255

local Keyring = {}
Keyring.__index = Keyring
Keyring.__name = "loom.federation.Keyring"

--- keyring.new(hs, fedclient) -> Keyring. hs: server_name, key, store,
-- config (federation.key_validity_ms, federation.trusted_key_servers).
function keyring.new(hs, fedclient)
  local fed = hs.config.federation or {}
  return setmetatable({
    hs = hs, client = fedclient,
    validity = fed.key_validity_ms or DEFAULT_VALIDITY,
    notaries = fed.trusted_key_servers or {},
    inflight = {},   -- server_name -> list of waiting wake functions
    failed = {},     -- server_name -> time of the last failed fetch
    missing = {},    -- server_name .. " " .. key_id -> time a fetch answered without that key
    own = nil,       -- the cached own response
  }, Keyring)
end

--- kr:own_response() -> the server's signed key response (a JSON object):
-- server_name, verify_keys (the key in use), old_verify_keys (retired keys
-- with expired_ts), valid_until_ts, signatures. Made again once half its
-- validity has passed.
function Keyring.own_response(self)
  local now = now_ms()
  local own = self.own
  if own and own.remake_at > now then return own.doc end
  local hs = self.hs
  local key = hs.key
  local old = {}
  for _, k in ipairs(hs.store:old_signing_keys()) do
    local sk = crypto.signing_key(k.seed, k.key_id, hs.server_name)
    if sk then old[k.key_id] = { key = sk.public_key_base64, expired_ts = k.expired_ts } end
  end
  local doc = {
    server_name = hs.server_name,
    valid_until_ts = now + self.validity,
    verify_keys = { [key.key_id] = { key = key.public_key_base64 } },
    old_verify_keys = old,
  }
  crypto.sign_json(doc, key)
  self.own = { doc = doc, remake_at = now + self.validity // 2 }
  return doc
end

--- kr:forget_own(): the own response is made again (after a key rotation).
function Keyring.forget_own(self) self.own = nil end

local function decode_key(b64)
  if type(b64) ~= "string" then return nil end
  local raw = core.crypto.base64_decode(b64)
  if not raw or #raw ~= 32 then return nil end
  return raw
end

--- kr:check_response(doc, server_name, [notary]) -> keys | nil, message
-- Checks one key response for server_name by the spec's rules (and, when
-- notary is a { server_name, public keys by key_id } table, that the notary
-- signed it too); keys: { { key_id, public_key, valid_until_ts, expired } }.
function Keyring.check_response(_, doc, server_name, notary)
  if not is_object(doc) then return nil, "key response is not an object" end
  if doc.server_name ~= server_name then return nil, "key response names another server" end
  local vut = doc.valid_until_ts
  if math_type(vut) ~= "integer" then return nil, "key response without valid_until_ts" end
  local vks = doc.verify_keys
  if not is_object(vks) or next(vks) == nil then return nil, "key response without verify_keys" end
  local out = {}
  local until_ts = math_min(vut, now_ms() + MAX_REMOTE_VALIDITY)
  for key_id, v in pairs(vks) do
    if type(key_id) ~= "string" or not key_id:match("^ed25519:[%w_%-%.]+$") then
      return nil, "unsupported key " .. tostring(key_id)
    end
    local pk = is_object(v) and decode_key(v.key)
    if not pk then return nil, "bad key " .. key_id end
    local ok, msg = crypto.verify_json(doc, server_name, key_id, pk)
    if not ok then return nil, "key response: " .. tostring(msg) end
    out[#out + 1] = { key_id = key_id, public_key = pk, valid_until_ts = until_ts, expired = false }
  end
  local old = doc.old_verify_keys
  if is_object(old) then
    for key_id, v in pairs(old) do
      local pk = is_object(v) and decode_key(v.key)
      if type(key_id) == "string" and key_id:match("^ed25519:[%w_%-%.]+$") and pk and not vks[key_id]
          and math_type(v.expired_ts) == "integer" then
        out[#out + 1] = { key_id = key_id, public_key = pk, valid_until_ts = v.expired_ts, expired = true }
      end
    end
  end
  if notary then
    local signed = false
    for key_id, pk in pairs(notary.keys) do
      if crypto.verify_json(doc, notary.server_name, key_id, pk) then signed = true; break end
    end
    if not signed then return nil, "key response not signed by the notary " .. notary.server_name end
  end
  return out
end

local function find(list, key_id, at_ts)
  for _, k in ipairs(list) do
    if k.key_id == key_id and k.valid_until_ts >= at_ts then return k.public_key end
  end
  return nil
end

-- Asks server_name itself (a request that gets no answer is tried again,
-- twice, after a short pause); stores and returns what verifies.
local function fetch_direct(self, server_name)
  local status, doc
  for attempt = 1, 3 do
    status, doc = self.client:request(server_name, "GET", "/_matrix/key/v2/server", { unsigned = true })
    if status then break end
    if attempt < 3 then async.sleep(100 * attempt) end
  end
  if status ~= 200 then return nil, "key fetch from " .. server_name .. ": " .. tostring(doc) end
  local keys, msg = self:check_response(doc, server_name)
  if not keys then return nil, msg end
  if doc.valid_until_ts < now_ms() then return nil, "key response of " .. server_name .. " has expired" end
  self.hs.store:put_remote_keys(server_name, server_name, json.encode(doc), keys)
  return keys
end

-- Asks each trusted notary for server_name's keys.
local function fetch_notaries(self, server_name, key_id, at_ts)
  for _, notary in ipairs(self.notaries) do
    local nkeys = {}
    for nk, pkb64 in pairs(notary.verify_keys or {}) do nkeys[nk] = decode_key(pkb64) end
    local status, body = self.client:request(notary.server_name, "POST", "/_matrix/key/v2/query", {
      body = { server_keys = { [server_name] = { [key_id] = { minimum_valid_until_ts = at_ts } } } },
    })
    if status == 200 and is_object(body) and ljson.is_array(body.server_keys) then
      for _, doc in ipairs(body.server_keys) do
        local keys = self:check_response(doc, server_name, { server_name = notary.server_name, keys = nkeys })
        if keys then
          self.hs.store:put_remote_keys(server_name, notary.server_name, json.encode(doc), keys)
          local pk = find(keys, key_id, at_ts)
          if pk then return pk end
        end
      end
    end
  end
  return nil
end

-- pk | nil, message, answered (false when neither the server nor a notary
-- gave a valid response: only then is the server left alone for a while, so
-- that a forged request naming a made-up key cannot shut its origin out).
local function fetch(self, server_name, key_id, at_ts)
  local keys, err = fetch_direct(self, server_name)
  local pk = keys and find(keys, key_id, at_ts)
  if pk then return pk end
  pk = fetch_notaries(self, server_name, key_id, at_ts)
  if pk then return pk end
  return nil, err or ("no key " .. key_id .. " of " .. server_name .. " valid at " .. tostring(at_ts)), keys ~= nil
end

--- kr:verify_key(server_name, key_id, [at_ts]) -> public key (32 raw bytes)
-- | nil, message. Inside a task (it may fetch). at_ts: the time the key must
-- be valid at (default now).
function Keyring.verify_key(self, server_name, key_id, at_ts)
  at_ts = at_ts or now_ms()
  if type(server_name) ~= "string" or #server_name > MAX_SERVER_NAME or server_name == "" then
    return nil, "bad server name"
  end
  local hs = self.hs
  if server_name == hs.server_name then
    if key_id == hs.key.key_id then return hs.key.public_key end
    for _, k in ipairs(hs.store:old_signing_keys()) do
      if k.key_id == key_id and k.expired_ts >= at_ts then
        return crypto.signing_key(k.seed, k.key_id, server_name).public_key
      end
    end
    return nil, "no key " .. key_id .. " of this server valid at " .. tostring(at_ts)
  end
  local rec = hs.store:remote_key(server_name, key_id)
  if rec and rec.valid_until_ts >= at_ts then return rec.public_key end
  if rec and rec.expired then return nil, "key " .. key_id .. " of " .. server_name .. " expired" end
  local last = self.failed[server_name]
  if last and now_ms() - last < FAILURE_BACKOFF then
    return nil, "keys of " .. server_name .. " could not be fetched recently"
  end
  local miss_key = server_name .. " " .. tostring(key_id)
  last = self.missing[miss_key]
  if last and now_ms() - last < FAILURE_BACKOFF then
    return nil, "no key " .. tostring(key_id) .. " of " .. server_name .. " (asked recently)"
  end
  -- one fetch per server at a time
  local waiting = self.inflight[server_name]
  if waiting then
    async.wait(function(wake) waiting[#waiting + 1] = wake end)
    rec = hs.store:remote_key(server_name, key_id)
    if rec and rec.valid_until_ts >= at_ts then return rec.public_key end
    return nil, "no key " .. key_id .. " of " .. server_name
  end
  waiting = {}
  self.inflight[server_name] = waiting
  local ok, pk, err, answered = pcall(fetch, self, server_name, key_id, at_ts)   -- waiters are woken whatever happens
  self.inflight[server_name] = nil
  for _, wake in ipairs(waiting) do wake() end
  if not ok then error(pk, 0) end   -- the store failed: the caller's request fails
  if not pk and not answered then self.failed[server_name] = now_ms() else self.failed[server_name] = nil end
  if not pk and answered then
    -- a map that forged requests could grow: bounded by dropping it whole
    self.nmissing = (self.nmissing or 0) + 1
    if self.nmissing > 10000 then self.missing, self.nmissing = {}, 1 end
    self.missing[miss_key] = now_ms()
  end
  return pk, err
end

--- kr:notary_answer(criteria) -> list of key responses for
-- /_matrix/key/v2/query: criteria = { [server_name] = { [key_id] =
-- { minimum_valid_until_ts } } } (an empty key map: every key). Each
-- response is as the server signed it, signed by this server too; this
-- server's own response for its own name. Inside a task: keys not held (or
-- not valid long enough) are fetched from their server first.
function Keyring.notary_answer(self, criteria)
  local out = setmetatable({}, json.array_mt)
  local hs = self.hs
  for server_name, wanted in pairs(criteria) do
    if server_name == hs.server_name then
      out[#out + 1] = self:own_response()
    elseif type(server_name) == "string" and #server_name <= MAX_SERVER_NAME then
      local min_ts = 0
      local key_ids = {}
      for key_id, c in pairs(is_object(wanted) and wanted or {}) do
        key_ids[#key_ids + 1] = key_id
        local m = is_object(c) and c.minimum_valid_until_ts
        if math_type(m) == "integer" and m > min_ts then min_ts = m end
      end
      local fresh = true
      for _, key_id in ipairs(key_ids) do
        local rec = hs.store:remote_key(server_name, key_id)
        if not rec or rec.valid_until_ts < min_ts then fresh = false end
      end
      if #key_ids == 0 or not fresh then self:verify_key(server_name, key_ids[1] or "ed25519:_", min_ts) end
      for _, text in ipairs(hs.store:remote_key_responses(server_name)) do
        local doc = json.decode(text)
        if is_object(doc) and math_type(doc.valid_until_ts) == "integer" and doc.valid_until_ts >= min_ts then
          crypto.sign_json(doc, hs.key)
          out[#out + 1] = doc
        end
      end
    end
  end
  return out
end

return keyring
