-- loom.api.homeserver: what the built-in endpoints share. It wires a server
-- (loom.new) to its event store, room service, accounts and signing key,
-- and authenticates requests.
--
--   local server = loom.new(config)
--   local hs = require("loom.api.homeserver").new(server)
--   server:route("GET", "/_matrix/client/v3/account/whoami", hs:authed(function(req)
--     return { user_id = req.user_id, device_id = req.device_id }
--   end))
--
-- Endpoint modules (lua/loom/api/client/*.lua) each export install(hs).
local core = require "loom.core"
local crypto = require "loom.room.crypto"
local accounts_mod = require "loom.store.accounts"
local room_mod = require "loom.room"
local errors = require "loom.http.errors"
local housekeeping = require "loom.db.housekeeping"

local setmetatable, type = setmetatable, type

local _M = {}
local methods = {}
local mt = { __name = "loom.Homeserver", __index = methods }

-- The server's signing key, created on first start.
local function signing_key(store, server_name)
  local row = store.conn:first("SELECT key_id, seed FROM server_signing_keys ORDER BY created_ts LIMIT 1")
  if not row then
    local seed = core.crypto.random_bytes(32)
    local key_id = "ed25519:" .. core.crypto.base64_encode(core.crypto.random_bytes(6), true)
    assert(store.conn:run("INSERT INTO server_signing_keys (key_id, seed, created_ts) VALUES (?, ?, ?)",
      key_id, core.sqlite.blob(seed), core.now_ms()))
    row = { key_id, seed }
  end
  return crypto.signing_key(row[2], row[1], server_name)
end

--- The homeserver context of a server: hs.server, hs.config, hs.store,
-- hs.rooms (loom.room), hs.accounts (loom.accounts), hs.key.
function _M.new(server, opts)
  opts = opts or {}
  local config = server.config
  local store = opts.store or server:store()
  local name = config.server_name
  local key = signing_key(store, name)
  local self = setmetatable({
    server = server,
    config = config,
    server_name = name,
    store = store,
    key = key,
    accounts = accounts_mod.new(store.conn, { server_name = name, iterations = config.password_iterations }),
    rooms = room_mod.new(store, { server_name = name, key = key,
      default_version = config.default_room_version }),
  }, mt)
  -- WAL checkpoints and the collector's mode, off the request path, while
  -- the server serves (config.housekeeping: see loom.db.housekeeping)
  server:hook("server/started", function()
    if not self.housekeeping then
      self.housekeeping = housekeeping.start(store.conn, config.housekeeping)
    end
  end)
  server:hook("server/stopping", function()
    if self.housekeeping then self.housekeeping:stop(); self.housekeeping = nil end
  end)
  return self
end

--- The user and device of a request's access token (Authorization: Bearer,
-- or the access_token query parameter): user_id, device_id — or nil and a
-- Matrix error (M_MISSING_TOKEN / M_UNKNOWN_TOKEN, 401).
function methods:authenticate(req)
  local token
  local h = req:header("Authorization")
  if type(h) == "string" then token = h:match("^[Bb]earer%s+(%S+)%s*$") end
  token = token or req:arg("access_token")
  if not token then return nil, errors.new("M_MISSING_TOKEN", "Missing access token") end
  local user_id, device_id = self.accounts:authenticate(token)
  if not user_id then return nil, errors.new("M_UNKNOWN_TOKEN", "Unknown access token", { soft_logout = false }) end
  return user_id, device_id, token
end

--- Wrap a handler so it runs only for authenticated requests, with
-- req.user_id, req.device_id and req.access_token set.
function methods:authed(handler)
  return function(req, ...)
    local user_id, device_id, token = self:authenticate(req)
    if not user_id then return device_id end
    req.user_id, req.device_id, req.access_token = user_id, device_id, token
    return handler(req, ...)
  end
end

--- A Matrix error for a lower-level failure (nil, message, code[, rule]).
function methods.error(_, message, code, rule)
  if code == "forbidden" then
    return errors.new("M_FORBIDDEN", rule and (message .. " (auth rule " .. rule .. ")") or message)
  end
  return errors.from_code(code, message)
end

_M.methods = methods
_M.mt = mt
return _M
