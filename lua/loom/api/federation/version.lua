-- loom.api.federation.version: GET /_matrix/federation/v1/version, the
-- server's implementation name and version (no authentication).
local require = require

local _ENV = nil -- luacheck: ignore 211

local version = {}

local function get(_, _)
  return { server = { name = "loom", version = require("loom")._VERSION } }
end

version.routes = {
  { "GET", "/_matrix/federation/v1/version", get, auth = false },
}

return version
