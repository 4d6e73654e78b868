-- loom.api.client.to_device: the Client-Server API "Send-to-Device
-- messaging" endpoint, PUT /sendToDevice/{eventType}/{txnId} with
-- { messages = { [user_id] = { [device_id or "*"] = content } } }. Messages
-- for local users wait in each target device's inbox until its /sync
-- acknowledges them (to_device section of /sync); a retry with the same
-- txnId from the same device queues nothing again. Messages for users of
-- other servers are ignored (no federation of to-device messages yet), as
-- are messages for users who ignore the sender (m.ignored_user_list): those
-- are dropped here, so they never arrive, not even after un-ignoring.
-- See docs/sync.md.
local core = require "loom.core"
local errors = require "loom.http.errors"
local ljson = require "loom.json"
local store_filter = require "loom.store.filter"

local json = core.json
local pairs, type = pairs, type

local _ENV = nil -- luacheck: ignore 211

local to_device_api = {}

local MAX_TYPE = 255
local MAX_DEVICE_ID = 255

local function bad(msg) return errors.new("M_BAD_JSON", msg) end

local function send(hs, req)
  local etype, txn_id = req.params.eventType, req.params.txnId
  if #etype == 0 or #etype > MAX_TYPE then
    return errors.new("M_INVALID_PARAM", "Event type must be 1 to 255 bytes")
  end
  local body = req:json()    -- M_NOT_JSON / M_BAD_JSON unless an object
  local messages = body.messages
  if messages == nil then return errors.new("M_MISSING_PARAM", "Missing messages") end
  if not ljson.is_object(messages) then return bad("messages must be an object") end
  local targets = {}
  for user_id, devices in pairs(messages) do
    if type(user_id) ~= "string" or not store_filter.is_id("user", user_id) then
      return bad("Invalid user ID in messages")
    end
    if not ljson.is_object(devices) then return bad("messages for " .. user_id .. " must be an object") end
    local ours = user_id:match("^@[^:]+:(.+)$") == hs.server_name
    -- a user who ignores the sender gets nothing from them
    local deliver = ours and not hs.store:ignored_users(user_id)[req.user_id]
    for device_id, content in pairs(devices) do
      if type(device_id) ~= "string" or #device_id == 0 or #device_id > MAX_DEVICE_ID then
        return bad("Invalid device ID in messages")
      end
      if not ljson.is_object(content) then return bad("Message content must be an object") end
      local text, msg = json.encode(content, { floats = true })
      if not text then return bad(msg) end
      if deliver then targets[#targets + 1] = { user_id, device_id, text } end
    end
  end
  hs.store:send_to_device(req.user_id, req.device_id, txn_id, etype, targets)
  return {}
end

to_device_api.routes = {
  { "PUT", "/_matrix/client/v3/sendToDevice/{eventType}/{txnId}", send, auth = true },
}

return to_device_api
