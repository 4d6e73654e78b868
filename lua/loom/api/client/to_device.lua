-- loom.api.client.to_device: the Client-Server API "Send-to-Device
-- messaging" endpoint, PUT /sendToDevice/{eventType}/{txnId} with
-- { messages = { [user_id] = { [device_id or "*"] = content } } }. Messages
-- for local users wait in each target device's inbox until its /sync
-- acknowledges them (to_device section of /sync); a retry with the same
-- txnId from the same device queues nothing again. Messages for users of
-- other servers go to each server as one m.direct_to_device EDU (a fresh
-- message_id per send; queued in the same transaction, so only once per
-- txnId). Messages for local users who ignore the sender
-- (m.ignored_user_list) are dropped here, so they never arrive, not even
-- after un-ignoring.
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

local function domain(user_id) return user_id:match("^@[^:]+:(.+)$") end

local function message_id()
  return (core.crypto.base64_encode(core.crypto.random_bytes(12), true):gsub("[-_]", "x"))
end

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
  local targets, remote = {}, {}
  for user_id, devices in pairs(messages) do
    if type(user_id) ~= "string" or not store_filter.is_id("user", user_id) then
      return bad("Invalid user ID in messages")
    end
    if not ljson.is_object(devices) then return bad("messages for " .. user_id .. " must be an object") end
    local server = domain(user_id)
    local ours = server == hs.server_name
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
      if not ours then
        -- federation requests are canonical JSON: integers only
        if not json.encode(content) then
          return bad("Messages for users of other servers cannot hold non-integer numbers")
        end
        local per_server = remote[server]
        if not per_server then per_server = {}; remote[server] = per_server end
        local per_user = per_server[user_id]
        if not per_user then per_user = {}; per_server[user_id] = per_user end
        per_user[device_id] = content
      end
    end
  end
  local store = hs.store
  store:transaction(function()
    local fresh = store:send_to_device(req.user_id, req.device_id, txn_id, etype, targets)
    if fresh and hs.sender then
      for server, msgs in pairs(remote) do
        hs.sender:queue_edu({ server }, "m.direct_to_device",
          { sender = req.user_id, type = etype, message_id = message_id(), messages = msgs })
      end
    end
    return true
  end)
  return {}
end

to_device_api.routes = {
  { "PUT", "/_matrix/client/v3/sendToDevice/{eventType}/{txnId}", send, auth = true },
}

return to_device_api
