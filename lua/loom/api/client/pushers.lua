-- loom.api.client.pushers: the Client-Server API pushers and notifications
-- endpoints (Push Notifications module):
--   GET  /pushers          the user's pushers
--   POST /pushers/set      add, replace (append) or delete (kind null) a pusher
--   GET  /notifications    the user's notifications, newest first (from, limit, only=highlight)
-- A pusher belongs to the device of the access token that set it (logging
-- out removes it). loom.push.pusher delivers to the http ones. See
-- docs/push.md.
local core = require "loom.core"
local errors = require "loom.http.errors"
local ljson = require "loom.json"
local sync_events = require "loom.api.client.events"
local pusher_mod = require "loom.push.pusher"

local json = core.json
local ipairs, type, tostring, tonumber = ipairs, type, tostring, tonumber
local utf8_len = utf8.len
local table_concat = table.concat
local math_min = math.min

local _ENV = nil -- luacheck: ignore 211

local pushers_api = {}

local V3 = "/_matrix/client/v3"
local REQUIRED = { "kind", "app_id", "app_display_name", "device_display_name", "pushkey", "lang", "data" }
local MAX_APP_ID = 64      -- characters (the spec's limit)
local MAX_PUSHKEY = 512    -- bytes (the spec's limit)
local MAX_TEXT = 1024      -- bytes, for the other strings (display names, lang, profile_tag)
local MAX_DATA = 8192      -- bytes of the encoded data object
local MAX_LIMIT = 500      -- notifications per page (as Synapse)

local function pusher_json(p)
  return { pushkey = p.pushkey, kind = p.kind, app_id = p.app_id, app_display_name = p.app_display_name,
    device_display_name = p.device_display_name, profile_tag = p.profile_tag or "", lang = p.lang,
    data = json.decode(p.data) or {} }
end

local function get_pushers(hs, req)
  local out = json.array {}
  for _, p in ipairs(hs.store:user_pushers(req.user_id)) do out[#out + 1] = pusher_json(p) end
  return { pushers = out }
end

local function bad(msg) return errors.new("M_INVALID_PARAM", msg) end

local function set_pusher(hs, req)
  local body = req:json()
  local user_id = req.user_id
  -- kind null: delete this user's pusher for app_id and pushkey
  if body.kind == json.null and type(body.app_id) == "string" and type(body.pushkey) == "string" then
    hs.store:delete_pusher(user_id, body.app_id, body.pushkey)
    if hs.pushers then hs.pushers:forget(user_id, body.app_id, body.pushkey) end
    return {}
  end
  local missing = {}
  for _, k in ipairs(REQUIRED) do
    if body[k] == nil or body[k] == json.null then missing[#missing + 1] = k end
  end
  if #missing > 0 then
    return errors.new("M_MISSING_PARAM", "Missing params: " .. table_concat(missing, ", "))
  end
  for _, k in ipairs { "kind", "app_id", "app_display_name", "device_display_name", "pushkey", "lang" } do
    if type(body[k]) ~= "string" then return bad(k .. " must be a string") end
  end
  if body.profile_tag ~= nil and type(body.profile_tag) ~= "string" then return bad("profile_tag must be a string") end
  if body.append ~= nil and type(body.append) ~= "boolean" then return bad("append must be a boolean") end
  local app_len = utf8_len(body.app_id)
  if body.app_id == "" or not app_len or app_len > MAX_APP_ID then return bad("app_id must be 1 to 64 characters") end
  if body.pushkey == "" or #body.pushkey > MAX_PUSHKEY then return bad("pushkey must be 1 to 512 bytes") end
  for _, k in ipairs { "app_display_name", "device_display_name", "lang", "profile_tag" } do
    if body[k] and #body[k] > MAX_TEXT then return bad(k .. " is too long") end
  end
  local kind = body.kind
  if kind == "email" then
    -- an email pusher's pushkey must be one of the user's email addresses:
    -- loom has no third-party identifiers (GET /account/3pid is empty)
    return errors.new("M_THREEPID_NOT_FOUND", "Email not found")
  elseif kind ~= "http" then
    return bad("kind must be http or email (or null to delete)")
  end
  -- (Synapse answers a data that is no object as one without a url)
  if not ljson.is_object(body.data) then
    return errors.new("M_MISSING_PARAM", "Config Error: 'data' must be an object with a 'url'")
  end
  local ok, why = pusher_mod.check_url(body.data.url)
  if not ok then return errors.new("M_MISSING_PARAM", "Config Error: " .. why) end
  local data = json.encode(body.data, { floats = true })
  if not data then return bad("data cannot be stored") end
  if #data > MAX_DATA then return bad("data is too large") end
  hs.store:set_pusher({ user_id = user_id, device_id = req.device_id, kind = kind, app_id = body.app_id,
    pushkey = body.pushkey, app_display_name = body.app_display_name,
    device_display_name = body.device_display_name, profile_tag = body.profile_tag or "", lang = body.lang,
    data = data, pushkey_ts = core.now_ms() }, body.append ~= true)
  return {}
end

local function notifications(hs, req)
  local user_id = req.user_id
  local from = req:arg("from")
  local from_so
  if from ~= nil then
    from_so = from:find("^%d+$") and #from <= 18 and tonumber(from) or nil
    if not from_so then return bad("from is not a token of this endpoint") end
  end
  local limit = math_min(req:arg_integer("limit", 50, 0), MAX_LIMIT)
  local only = req:arg("only")
  local list, next_from = hs.store:notifications(user_id, { from = from_so, limit = limit,
    highlight = only == "highlight" })
  local out = json.array {}
  for _, n in ipairs(list) do
    local ev = hs.store:event(n.event_id)
    if ev then
      local cev = sync_events.clients({ store = hs.store, user_id = user_id, device_id = req.device_id,
        room_id = n.room_id }, { ev })[1]
      out[#out + 1] = { room_id = n.room_id, event = cev, actions = json.array(n.actions), read = n.read,
        ts = n.ts, profile_tag = json.null }
    end
  end
  local res = { notifications = out }
  if limit > 0 and #list == limit then
    res.next_token = tostring(list[#list].stream_ordering)
  elseif next_from then -- the rooms read so far had more
    res.next_token = tostring(next_from)
  end
  return res
end

pushers_api.routes = {
  { "GET", V3 .. "/pushers", get_pushers, auth = true },
  { "POST", V3 .. "/pushers/set", set_pusher, auth = true },
  { "GET", V3 .. "/notifications", notifications, auth = true },
}

return pushers_api
