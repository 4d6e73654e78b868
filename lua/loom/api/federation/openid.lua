-- loom.api.federation.openid: the Server-Server API "OpenID",
-- GET /_matrix/federation/v1/openid/userinfo?access_token=... -> { sub }
-- for a token from POST /user/{userId}/openid/request_token
-- (loom.api.client.openid) that has not expired; 401 M_UNKNOWN_TOKEN for
-- any other, 401 M_MISSING_TOKEN without one. Not signed: the caller is a
-- third party, not a homeserver.
local errors = require "loom.http.errors"
local core = require "loom.core"
local client_openid = require "loom.api.client.openid"

local type = type

local _ENV = nil -- luacheck: ignore 211

local openid = {}

local function userinfo(hs, req)
  local token = req:arg("access_token")
  if type(token) ~= "string" or token == "" then
    return errors.new("M_MISSING_TOKEN", "Access token required")
  end
  local user_id = hs.store:openid_token_user(client_openid.token_hash(token), core.now_ms())
  if not user_id then return errors.new("M_UNKNOWN_TOKEN", "Access token unknown or expired") end
  return { sub = user_id }
end

openid.routes = {
  { "GET", "/_matrix/federation/v1/openid/userinfo", userinfo, auth = false },
}

return openid
