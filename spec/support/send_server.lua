-- Child process for the send-crash spec and the send benchmarks: a loom
-- homeserver on 127.0.0.1 over the database at arg[1], with a user and a
-- room. Prints "ready <port> <pid> <access_token> <room_id>" once it
-- listens, then serves until it is stopped or killed. arg[2]: the
-- database's synchronous setting ("FULL" by default); arg[3]: "nogroup" turns
-- group commit off.
local uv = require "luv"
local loom = require "loom"
local api = require "loom.api"

local path, synchronous, grouping = arg[1], arg[2] or "FULL", arg[3]
local server = loom.new { host = "127.0.0.1", port = 0, server_name = "crash.local", log_level = "warn",
  password_iterations = 1000,
  database = { path = path, synchronous = synchronous, group_commit = grouping ~= "nogroup" } }
local hs = api.install(server)
assert(server:start())
assert(hs.accounts:register("alice", "alice-password"))
local login = assert(hs.accounts:login("@alice:crash.local", "alice-password"))
local room_id = assert(hs.rooms:create_room("@alice:crash.local"))
assert(hs.rooms:send(room_id, { type = "m.room.member", state_key = "@alice:crash.local",
  sender = "@alice:crash.local", content = { membership = "join" } }))
io.stdout:write(("ready %d %d %s %s\n"):format(server:port(), uv.os_getpid(), login.access_token, room_id))
io.stdout:flush()
server:run()
