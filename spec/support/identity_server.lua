-- A small identity server for specs (Identity Service API v2: hash_details,
-- lookup, store-invite) on 127.0.0.1, a loom.http.app server in the spec's
-- process and loop. It records every request, answers 401 to a wrong bearer
-- token, and signs with an ed25519 key of its own.
--
--   local is = require("support.identity_server").start()
--   is.bound["bob@example.org"] = "@bob:test.local"       -- a bound address
--   is.broken = true                                       -- hash_details answers 500
--   is.signed(mxid, token)                                 -- the signed block of onbind
--   is.server:stop()
local core = require "loom.core"
local loom = require "loom"
local crypto = require "loom.room.crypto"

local json = core.json
local _M = {}

--- Start an identity server: { server, name ("127.0.0.1:<port>"), key, token,
-- pepper, algorithms, bound, invites, requests, signed(), requests_to(path) }.
function _M.start()
  local is = { requests = {}, bound = {}, invites = {}, token = "is-access-token", n = 0 }
  is.key = assert(crypto.signing_key(core.crypto.random_bytes(32), "ed25519:0", "is.test"))
  is.pepper = "matrixrocks"
  is.algorithms = { "none", "sha256" }
  local server = loom.new { port = 0, server_name = "is.test", log_level = "error",
    logger = function() end }
  local function authed(req)
    is.requests[#is.requests + 1] = { method = req.method, path = req.path, auth = req:header("Authorization"),
      body = req.body ~= "" and req.body and json.decode(req.body) or nil }
    if req:header("Authorization") ~= "Bearer " .. is.token then
      return 401, { errcode = "M_UNAUTHORIZED", error = "bad token" }
    end
  end
  server:route("GET", "/_matrix/identity/v2/hash_details", function(req)
    local denied, body = authed(req)
    if denied then return denied, body end
    if is.broken then return 500, { errcode = "M_UNKNOWN", error = "down" } end
    return { algorithms = json.array(is.algorithms), lookup_pepper = is.pepper }
  end)
  server:route("POST", "/_matrix/identity/v2/lookup", function(req)
    local denied, body = authed(req)
    if denied then return denied, body end
    local b = req:json()
    local mappings = {}
    for _, h in ipairs(b.addresses) do
      for addr, mxid in pairs(is.bound) do
        local plain = addr .. " email"
        local hashed = core.crypto.base64_encode(core.crypto.sha256(addr .. " email " .. is.pepper), true)
        if (b.algorithm == "sha256" and h == hashed) or (b.algorithm == "none" and h == plain) then
          mappings[h] = mxid
        end
      end
    end
    return { mappings = mappings }
  end)
  server:route("POST", "/_matrix/identity/v2/store-invite", function(req)
    local denied, body = authed(req)
    if denied then return denied, body end
    local b = req:json()
    is.n = is.n + 1
    local token = "tok" .. is.n
    is.invites[#is.invites + 1] = { token = token, body = b }
    return { token = token, display_name = b.address:gsub("@.*", "@..."),
      public_keys = { { public_key = is.key.public_key_base64,
        key_validity_url = "https://is.test/_matrix/identity/v2/pubkey/isvalid" } } }
  end)
  assert(server:start())
  is.server = server
  is.name = "127.0.0.1:" .. server:port()
  -- the signed block the identity server sends with onbind
  function is.signed(mxid, token, key)
    return assert(crypto.sign_json({ mxid = mxid, token = token, sender = "@whoever:is.test" }, key or is.key))
  end
  function is.requests_to(path)
    local out = {}
    for _, r in ipairs(is.requests) do if r.path == path then out[#out + 1] = r end end
    return out
  end
  return is
end

return _M
