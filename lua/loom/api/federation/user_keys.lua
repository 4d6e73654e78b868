-- loom.api.federation.user_keys: what other servers may ask about the
-- devices and end-to-end encryption keys of this server's users
-- (Server-Server API "Device Management" and "End-to-End Encryption").
--
--   GET  /_matrix/federation/v1/user/devices/{userId}
--        -> { user_id, stream_id, devices = [ { device_id, keys, device_display_name? } ],
--             master_key?, self_signing_key? }
--   POST /_matrix/federation/v1/user/keys/query { device_keys = { [user_id] = [device_id, ...] } }
--        -> { device_keys, master_keys, self_signing_keys }
--   POST /_matrix/federation/v1/user/keys/claim { one_time_keys = { [user_id] = { [device_id] = alg } } }
--        -> { one_time_keys }
--
-- X-Matrix authenticated. A user of another server is 400 M_INVALID_PARAM
-- on /user/devices and left out of the answers of the other two (as
-- Synapse); an unknown user of this server has no devices (stream_id 0).
-- stream_id is the position of the user's last device change, the one the
-- next m.device_list_update names in prev_id (loom.federation.devices).
local type, pairs, ipairs = type, pairs, ipairs
local core = require "loom.core"
local errors = require "loom.http.errors"
local ljson = require "loom.json"
local store_filter = require "loom.store.filter"
local response = require "loom.http.response"
local keys_api = require "loom.api.client.keys"

local json = core.json
local is_object = ljson.is_object
local table_concat, table_sort = table.concat, table.sort

local _ENV = nil -- luacheck: ignore 211

local user_keys = {}

local MAX_USERS = 1000

local function domain(user_id) return user_id:match("^@[^:]+:(.+)$") end
local function encode(v) return (json.encode(v, { floats = true })) end

local function devices(hs, req)
  local user_id = req.params.userId
  if type(user_id) ~= "string" or not store_filter.is_id("user", user_id) then
    return errors.new("M_INVALID_PARAM", "Invalid user ID")
  end
  if domain(user_id) ~= hs.server_name then
    return errors.new("M_INVALID_PARAM", "The user does not belong to this server")
  end
  local store = hs.store
  local all, names = store:device_keys_of { user_id }
  local ids = {}
  for d in pairs(all[user_id]) do ids[#ids + 1] = d end
  table_sort(ids)
  local list = {}
  for i, d in ipairs(ids) do
    local name = names[user_id][d]
    list[i] = "{\"device_id\":" .. encode(d) .. ",\"keys\":" .. all[user_id][d]
      .. (name and (",\"device_display_name\":" .. encode(name)) or "") .. "}"
  end
  local out = { "{\"user_id\":", encode(user_id), ",\"stream_id\":", encode(store:device_list_stream_id(user_id)),
    ",\"devices\":[", table_concat(list, ","), "]" }
  local cs = store:cross_signing_keys(user_id)
  if cs.master then out[#out + 1] = ",\"master_key\":" .. cs.master end
  if cs.self_signing then out[#out + 1] = ",\"self_signing_key\":" .. cs.self_signing end
  out[#out + 1] = "}"
  return response.new(200, table_concat(out), { ["Content-Type"] = "application/json" })
end

-- The users of this server in obj (user_id -> value), or nil, error value.
local function ours(hs, obj, what)
  if not is_object(obj) then return nil, errors.new("M_BAD_JSON", what .. " must be an object") end
  local out, n = {}, 0
  for user_id, v in pairs(obj) do
    n = n + 1
    if n > MAX_USERS then return nil, errors.new("M_INVALID_PARAM", "too many users in " .. what) end
    if type(user_id) ~= "string" or not store_filter.is_id("user", user_id) then
      return nil, errors.new("M_INVALID_PARAM", "invalid user ID in " .. what)
    end
    if domain(user_id) == hs.server_name then out[user_id] = v end
  end
  return out
end

local function query(hs, req)
  local body = req:json()
  if body.device_keys == nil then return errors.new("M_MISSING_PARAM", "device_keys is required") end
  local asked, err = ours(hs, body.device_keys, "device_keys")
  if not asked then return err end
  err = keys_api.check_query(asked)
  if err then return err end
  return response.new(200, keys_api.query_text(hs, asked, nil), { ["Content-Type"] = "application/json" })
end

local function claim(hs, req)
  local body = req:json()
  if body.one_time_keys == nil then return errors.new("M_MISSING_PARAM", "one_time_keys is required") end
  local asked, err = ours(hs, body.one_time_keys, "one_time_keys")
  if not asked then return err end
  local requests
  requests, err = keys_api.claim_requests(asked)
  if not requests then return err end
  return { one_time_keys = keys_api.claim_local(hs, requests) }
end

local F1 = "/_matrix/federation/v1"
user_keys.routes = {
  { "GET", F1 .. "/user/devices/{userId}", devices, auth = "server" },
  { "POST", F1 .. "/user/keys/query", query, auth = "server" },
  { "POST", F1 .. "/user/keys/claim", claim, auth = "server" },
}

return user_keys
