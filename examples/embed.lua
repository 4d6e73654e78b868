-- Embedding loom: a homeserver made in code, with a route and hooks of its
-- own beside the built-in endpoints.
--
--   LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/release/?.so;;' \
--     lua5.4 examples/embed.lua [port] [database path]
--
-- Port 0 (the default) picks a free port; the URL is printed. SIGINT or
-- SIGTERM stops it.
local loom = require "loom"
local errors = require "loom.http.errors"

local port = tonumber(arg and arg[1]) or 0
local db_path = arg and arg[2] or "var/embed.db"
os.execute("mkdir -p '" .. (db_path:match("^(.*)/[^/]*$") or ".") .. "'")

local server = loom.new {
  host = "127.0.0.1",
  port = port,
  server_name = "embed.example",
  database = { path = db_path },
  log_level = "warn",
  password_iterations = 1000,    -- fast for a demo; keep the default in production
}
local hs = require("loom.api").install(server)

-- A route of our own; handlers return a table (JSON), or an error value.
server:route("GET", "/_embed/hello/{name}", function(req)
  if #req.params.name > 64 then return errors.new("M_INVALID_PARAM", "That name is too long") end
  return { greeting = "hello " .. req.params.name }
end)

-- An observing hook: count requests (kept in this program, not in loom).
local requests = 0
server:hook("http/request", function()
  requests = requests + 1
end)
server:route("GET", "/_embed/stats", function()
  return { requests = requests }
end)

-- A veto hook: no room may be called "forbidden".
server:hook("room/create/check", function(info)
  if info.name == "forbidden" then return false, "Rooms may not be called that here" end
end)

assert(server:start())
print("embed serving " .. server.config.server_name .. " at " .. server:base_url())
io.stdout:flush()
server:run()
hs.store:close()
