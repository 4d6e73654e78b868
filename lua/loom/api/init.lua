-- loom.api: the built-in Matrix endpoints. api.install(server) makes the
-- homeserver context (loom.api.homeserver) and registers every module's routes
-- through server:route, like any other route.
--
--   local server = loom.new(config)
--   local hs = require("loom.api").install(server)
--   server:run()
local homeserver = require "loom.api.homeserver"
local ipairs, require = ipairs, require

local _ENV = nil -- luacheck: ignore 211

local _M = {}

-- Client-Server API modules, each with install(hs).
_M.modules = {
  "loom.api.client.account",   -- versions, capabilities, login, register, logout, whoami, profile, pushrules
  "loom.api.client.rooms",     -- createRoom, membership, send, state, members, event, redact, aliases
  "loom.api.client.sync",      -- sync, messages, context, filters
}

-- The spec versions loom implements (/versions): only what is served.
_M.VERSIONS = { "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6" }

--- Register the built-in endpoints on a server; returns the homeserver
-- context (opts.store: use this store instead of opening config.database).
function _M.install(server, opts)
  local hs = homeserver.new(server, opts)
  if #server.config.versions == 0 then
    for i, v in ipairs(_M.VERSIONS) do server.config.versions[i] = v end
  end
  for _, name in ipairs(_M.modules) do require(name).install(hs) end
  return hs
end

return _M
