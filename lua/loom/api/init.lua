-- loom.api: the built-in Matrix endpoints. api.install(server) makes the
-- homeserver context (loom.api.homeserver) and registers every module's routes
-- through server:route, like any other route. An endpoint module exports
-- routes = { { method, path, handler, auth = true|false }, ... } with
-- handler(hs, req); auth routes run behind hs:authed (req.user_id set);
-- guest = true (or loom.api.guest's list) lets guest accounts call an auth
-- route.
--
--   local server = loom.new(config)
--   local hs = require("loom.api").install(server)
--   server:run()
local homeserver = require "loom.api.homeserver"
local guest = require "loom.api.guest"
local ipairs, require, type, error, tostring = ipairs, require, type, error, tostring

local _ENV = nil -- luacheck: ignore 211

local api = {}

-- Client-Server API modules, each exporting a route table.
api.modules = {
  "loom.api.client.account",   -- versions, capabilities, login, register, logout, whoami, profile
  "loom.api.client.rooms",     -- createRoom, membership, send, state, members, event, redact
  "loom.api.client.directory", -- room aliases, room directory, publicRooms
  "loom.api.client.sync",      -- sync, messages, context, filters
  "loom.api.client.account_data", -- account data, room tags
  "loom.api.client.to_device", -- sendToDevice
  "loom.api.client.typing",    -- typing notifications
  "loom.api.client.receipts",  -- receipts, read markers
  "loom.api.client.search",    -- server-side search
  "loom.api.client.presence",  -- presence status
  "loom.api.client.devices",   -- device management
  "loom.api.client.keys",      -- end-to-end encryption keys
  "loom.api.client.room_keys", -- server-side key backups
  "loom.api.client.cross_signing", -- cross-signing keys and signatures
  "loom.api.client.pushrules", -- push rules
  "loom.api.client.pushers",   -- pushers, notifications
  "loom.api.client.upgrade",   -- room upgrades
  "loom.api.client.relations", -- relations, threads, timestamp_to_event, reports
  "loom.api.client.user_directory", -- user directory search
  "loom.api.client.voip",      -- TURN server credentials
  "loom.api.client.openid",    -- OpenID tokens
  "loom.api.client.spaces",    -- space hierarchy, room summary
  "loom.api.client.legacy",    -- deprecated /events, /initialSync, /rooms/{roomId}/initialSync
  "loom.api.client.media",     -- content repository: upload, download, thumbnails
  "loom.api.client.preview",   -- URL previews (config.media.url_preview)
  "loom.api.client.appservice", -- application service ping, /thirdparty
}

-- The server admin API (/_synapse/admin, docs/admin.md), on the client
-- listener; its module's install(hs) adds its hooks.
api.admin_modules = {
  "loom.api.admin",
}

-- Server-Server API modules: their routes are served on the federation
-- listener only.
api.federation_modules = {
  "loom.api.federation.keys",  -- server keys, notary queries
  "loom.api.federation.version", -- /_matrix/federation/v1/version
  "loom.api.federation.events", -- event, state, state_ids, event_auth, backfill, get_missing_events
  "loom.api.federation.membership", -- make/send join and leave
  "loom.api.federation.transactions", -- /send: PDUs and EDUs
  "loom.api.federation.query", -- query/profile, query/directory, publicRooms
  "loom.api.federation.invite", -- invites of this server's users
  "loom.api.federation.user_keys", -- user/devices, user/keys/query, user/keys/claim
  "loom.api.federation.timestamp", -- timestamp_to_event
  "loom.api.federation.openid", -- openid/userinfo
  "loom.api.federation.spaces", -- space hierarchy
  "loom.api.federation.third_party_invite", -- 3pid/onbind, exchange_third_party_invite
  "loom.api.federation.media", -- media downloads and thumbnails for other servers
}

-- The spec versions loom implements (/versions): only what is served.
api.VERSIONS = { "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11" }

--- Register the built-in endpoints on a server, then load its policy
-- scripts (hs.scripts, loom.modules); returns the homeserver context
-- (opts.store: use this store instead of opening config.database).
function api.install(server, opts)
  local hs = homeserver.new(server, opts)
  if #server.config.versions == 0 then
    local versions = {}
    for i, v in ipairs(api.VERSIONS) do versions[i] = v end
    server.config.versions = versions
  end
  for _, name in ipairs(api.modules) do api.install_routes(hs, require(name).routes) end
  for _, name in ipairs(api.admin_modules) do
    local mod = require(name)
    api.install_routes(hs, mod.routes)
    mod.install(hs)   -- blocked rooms refuse joins and invites; notices rooms cannot be left
  end
  for _, name in ipairs(api.federation_modules) do
    api.install_routes(hs, require(name).routes, "federation")
  end
  guest.install(hs)   -- guests leave rooms closed to them (config.allow_guest_access)
  hs.scripts = require("loom.modules").install(hs)   -- config.scripts (docs/scripting.md)
  return hs
end

--- Registers routes ({ method, path, handler(hs, req), auth = ... }, ...)
-- on hs.server, for listener ("client" by default, or "federation"). auth:
-- true (behind hs:authed: a user's access token), "server" (behind
-- hs:server_authed: an X-Matrix signature) or false. A route without an
-- auth field is an error: every route says who may call it.
function api.install_routes(hs, routes, listener)
  local server = hs.server
  for _, r in ipairs(routes) do
    local method, path, handler = r[1], r[2], r[3]
    if type(handler) ~= "function" or (type(r.auth) ~= "boolean" and r.auth ~= "server") then
      error("route " .. tostring(method) .. " " .. tostring(path)
        .. ": handler and auth = true|false|\"server\" expected", 2)
    end
    local fn = function(req) return handler(hs, req) end
    if r.auth == "server" then fn = hs:server_authed(fn)
    elseif r.auth then fn = hs:authed(fn, r.guest or guest.allowed(method, path)) end
    server:route(method, path, fn, listener)
  end
end

return api
