-- loom.api.client.openid: the Client-Server API "OpenID",
-- POST /user/{userId}/openid/request_token {} -> { access_token,
-- token_type = "Bearer", matrix_server_name, expires_in } — only for
-- oneself (else 403 M_FORBIDDEN). The token proves the user's identity to
-- a third party, which asks this server's federation endpoint
-- GET /_matrix/federation/v1/openid/userinfo?access_token=... (loom.api.federation.openid)
-- for { sub = user_id }. Tokens are stored as their sha256 with their
-- expiry (schema 42); they grant nothing else. See docs/api-client-misc.md.
local errors = require "loom.http.errors"
local core = require "loom.core"

local _ENV = nil -- luacheck: ignore 211

local openid = {}

local V3 = "/_matrix/client/v3"
openid.LIFETIME_MS = 3600000   -- an hour, as Synapse

--- The stored form of a token: its sha256, as a blob.
function openid.token_hash(token)
  return core.sqlite.blob(core.crypto.sha256(token))
end

local function request_token(hs, req)
  if req.params.userId ~= req.user_id then
    return errors.new("M_FORBIDDEN", "Cannot request tokens for other users")
  end
  req:json()    -- the body is an empty object: M_NOT_JSON / M_BAD_JSON unless an object
  local token = core.crypto.base64_encode(core.crypto.random_bytes(24), true)
  local now = core.now_ms()
  hs.store:add_openid_token(openid.token_hash(token), req.user_id, now + openid.LIFETIME_MS, now)
  return { access_token = token, token_type = "Bearer", matrix_server_name = hs.server_name,
    expires_in = openid.LIFETIME_MS // 1000 }
end

openid.routes = {
  { "POST", V3 .. "/user/{userId}/openid/request_token", request_token, auth = true },
}

return openid
