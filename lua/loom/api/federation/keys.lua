-- loom.api.federation.keys: the server's keys and the notary service.
--
--   GET  /_matrix/key/v2/server            this server's signed key response
--   POST /_matrix/key/v2/query             other servers' keys, as a notary
--   GET  /_matrix/key/v2/query/{serverName}
--
-- None needs authentication (keys are what authentication is checked
-- with). A notary answer holds each response as its server signed it, signed
-- by this server too; keys it does not hold are fetched first.
local type, pairs, ipairs, setmetatable = type, pairs, ipairs, setmetatable
local math_type = math.type
local ljson = require "loom.json"
local errors = require "loom.http.errors"
local discovery = require "loom.federation.discovery"

local is_object = ljson.is_object
local array_mt = require("loom.core").json.array_mt

local _ENV = nil -- luacheck: ignore 211

local keys = {}

local MAX_SERVERS = 100     -- servers in one notary query
local MAX_KEYS = 50         -- key IDs per server

local function server(hs, _)
  return hs.keyring:own_response()
end

local function bad(msg) return errors.new("M_BAD_JSON", msg) end

-- Checks a query's server_keys: { server: { key_id: { minimum_valid_until_ts } } }.
local function check_criteria(sk)
  if not is_object(sk) then return nil, bad("server_keys must be an object") end
  local n = 0
  for name, wanted in pairs(sk) do
    n = n + 1
    if n > MAX_SERVERS then return nil, errors.new("M_LIMIT_EXCEEDED", "Too many servers in one query") end
    if not discovery.split(name) then return nil, bad("Bad server name in server_keys") end
    if not is_object(wanted) then return nil, bad("server_keys." .. name .. " must be an object") end
    local k = 0
    for key_id, c in pairs(wanted) do
      k = k + 1
      if k > MAX_KEYS then return nil, errors.new("M_LIMIT_EXCEEDED", "Too many key IDs in one query") end
      if type(key_id) ~= "string" or not is_object(c) then return nil, bad("Bad key criteria for " .. name) end
      local m = c.minimum_valid_until_ts
      if m ~= nil and math_type(m) ~= "integer" then
        return nil, bad("minimum_valid_until_ts must be an integer")
      end
    end
  end
  return true
end

local function query(hs, req)
  local body = req:json()
  local ok, err = check_criteria(body.server_keys)
  if not ok then return err end
  return { server_keys = hs.keyring:notary_answer(body.server_keys) }
end

local function query_one(hs, req)
  local name = req.params.serverName
  if not discovery.split(name) then return errors.new("M_INVALID_PARAM", "Bad server name") end
  local m = req:arg_integer("minimum_valid_until_ts", 0, 0)
  local list = hs.keyring:notary_answer({ [name] = {} })
  local out = setmetatable({}, array_mt)
  for _, doc in ipairs(list) do
    if doc.valid_until_ts >= m then out[#out + 1] = doc end
  end
  return { server_keys = out }
end

keys.routes = {
  { "GET", "/_matrix/key/v2/server", server, auth = false },
  { "GET", "/_matrix/key/v2/server/{keyId}", server, auth = false },
  { "POST", "/_matrix/key/v2/query", query, auth = false },
  { "GET", "/_matrix/key/v2/query/{serverName}", query_one, auth = false },
  { "GET", "/_matrix/key/v2/query/{serverName}/{keyId}", query_one, auth = false },
}

return keys
