-- loom: a Matrix homeserver core for Lua 5.4.
--
--   local loom = require "loom"
--   local store = assert(loom.open_store { path = "var/loom.db" })
--
-- Requiring loom loads nothing else; its parts load on first use:
--   loom.core        the C core (tokens, bounds, canonical JSON, crypto, SQLite)
--   loom.store       the event store (loom.store)
--   loom.crypto      signing, hashes and event IDs (loom.room.crypto)
--   loom.db          the database layer (loom.db)
--   loom.config      the configuration file (loom.cli.config)
--   loom.accounts    users, devices, access tokens (loom.store.accounts)
--   loom.api         the built-in Matrix endpoints (loom.api)
--   loom.homeserver  what the endpoints share (loom.api.homeserver)
--   loom.room        the room service (loom.room)
-- and loom.new(config) makes a server (loom.http.app).
local require, setmetatable, rawset = require, setmetatable, rawset

local _ENV = nil -- luacheck: ignore 211

local parts = {
  core = "loom.core",
  store = "loom.store",
  crypto = "loom.room.crypto",
  db = "loom.db",
  config = "loom.cli.config",
  accounts = "loom.store.accounts",
  api = "loom.api",
  homeserver = "loom.api.homeserver",
  room = "loom.room",
  filter = "loom.store.filter",
  redact = "loom.room.redact",
}

local loom = { _VERSION = "0.1.0" }

--- A new server (see loom.http.app and docs/http.md): config holds host, port,
-- server_name, limits, timeouts …; then server:route, :hook, :run.
function loom.new(config)
  return require("loom.http.app").new(config)
end

--- Open the event store (see loom.store.open): config.path is the SQLite file.
function loom.open_store(config)
  return require("loom.store").open(config)
end

return setmetatable(loom, {
  __index = function(t, k)
    local name = parts[k]
    if not name then return nil end
    local mod = require(name)
    rawset(t, k, mod)
    return mod
  end,
})
