-- loom.api.client.devices: the Client-Server API "Device management"
-- endpoints — GET /devices, GET/PUT/DELETE /devices/{deviceId} and POST
-- /delete_devices. Deleting is behind user-interactive authentication
-- (loom.api.uia, m.login.password); a deleted device is logged out (its
-- access tokens stop working) and its keys and to-device messages go.
-- See docs/api-client-keys.md.
--
--   devices.routes  --> { { "GET", "/_matrix/client/v3/devices", handler, auth = true }, ... }
local core = require "loom.core"
local errors = require "loom.http.errors"
local uia = require "loom.api.uia"

local json = core.json
local ipairs, type = ipairs, type

local _ENV = nil -- luacheck: ignore 211

local devices_api = {}

local V3 = "/_matrix/client/v3"
local MAX_DISPLAYNAME = 256
local MAX_DEVICES = 1000

local function view(d)
  return { device_id = d.device_id, display_name = d.display_name, last_seen_ts = d.last_seen_ts }
end

local function list(hs, req)
  local out = {}
  for i, d in ipairs(hs.store:user_devices(req.user_id)) do
    out[i] = view(d)
  end
  return { devices = json.array(out) }
end

local function get(hs, req)
  local d = hs.store:user_device(req.user_id, req.params.deviceId)
  if not d then return errors.new("M_NOT_FOUND", "Unknown device") end
  return view(d)
end

local function put(hs, req)
  local body = req:json()
  local name = body.display_name
  if name == json.null then name = nil end
  if name ~= nil and type(name) ~= "string" then return errors.new("M_BAD_JSON", "display_name must be a string") end
  if name and #name > MAX_DISPLAYNAME then
    return errors.new("M_INVALID_PARAM", "display_name is longer than " .. MAX_DISPLAYNAME .. " bytes")
  end
  if not hs.store:user_device(req.user_id, req.params.deviceId) then
    return errors.new("M_NOT_FOUND", "Unknown device")
  end
  if body.display_name ~= nil then hs.store:set_device_display_name(req.user_id, req.params.deviceId, name) end
  return {}
end

local function delete(hs, req, ids, body)
  local answer, extra = uia.check(hs, req, body)
  if answer then return answer, extra end
  hs.store:delete_devices(req.user_id, ids)
  return {}
end

local function delete_one(hs, req)
  local body = (req.body == nil or req.body == "") and {} or req:json()
  return delete(hs, req, { req.params.deviceId }, body)
end

local function delete_many(hs, req)
  local body = req:json()
  local ids = body.devices
  if ids == nil then return errors.new("M_MISSING_PARAM", "devices is required") end
  if type(ids) ~= "table" or not json.is_array(ids) then
    return errors.new("M_BAD_JSON", "devices must be an array of strings")
  end
  if #ids > MAX_DEVICES then return errors.new("M_INVALID_PARAM", "too many devices") end
  for _, d in ipairs(ids) do
    if type(d) ~= "string" then return errors.new("M_BAD_JSON", "devices must be an array of strings") end
  end
  return delete(hs, req, ids, body)
end

devices_api.routes = {
  { "GET", V3 .. "/devices", list, auth = true },
  { "GET", V3 .. "/devices/{deviceId}", get, auth = true },
  { "PUT", V3 .. "/devices/{deviceId}", put, auth = true },
  { "DELETE", V3 .. "/devices/{deviceId}", delete_one, auth = true },
  { "POST", V3 .. "/delete_devices", delete_many, auth = true },
}

return devices_api
