-- loom.api.client.voip: the Client-Server API "VoIP" TURN credentials,
-- GET /voip/turnServer -> { username, password, uris, ttl } from config:
-- with turn_shared_secret the TURN REST API's time-limited credentials
-- (username "<expiry seconds>:<user_id>", password the padded base64 of
-- HMAC-SHA1(secret, username), as coturn's use-auth-secret expects);
-- else the fixed turn_username / turn_password. Without turn_uris, or
-- without credentials, {} (as Synapse). Guests may ask too. See
-- docs/api-client-misc.md.
local core = require "loom.core"

local type, string_format = type, string.format

local _ENV = nil -- luacheck: ignore 211

local voip = {}

local V3 = "/_matrix/client/v3"

-- Standard (padded) base64.
local function base64(bytes)
  local s = core.crypto.base64_encode(bytes)
  local pad = (4 - #s % 4) % 4
  return s .. ("="):rep(pad)
end
voip.base64 = base64

--- The TURN REST credentials of a user at now_ms: username, password.
function voip.credentials(secret, user_id, lifetime_ms, now_ms)
  local expiry = (now_ms + lifetime_ms) // 1000
  local username = string_format("%d:%s", expiry, user_id)
  return username, base64(core.crypto.hmac_sha1(secret, username))
end

local function turn_server(hs, req)
  local c = hs.config
  local uris, lifetime = c.turn_uris, c.turn_user_lifetime_ms or 3600000
  if type(uris) ~= "table" or #uris == 0 then return {} end
  local username, password
  if type(c.turn_shared_secret) == "string" and c.turn_shared_secret ~= "" then
    username, password = voip.credentials(c.turn_shared_secret, req.user_id, lifetime, core.now_ms())
  elseif type(c.turn_username) == "string" and type(c.turn_password) == "string" then
    username, password = c.turn_username, c.turn_password
  else
    return {}
  end
  local list = core.json.array {}
  for i = 1, #uris do list[i] = uris[i] end
  return { username = username, password = password, uris = list, ttl = lifetime // 1000 }
end

voip.routes = {
  { "GET", V3 .. "/voip/turnServer", turn_server, auth = true, guest = true },
}

return voip
