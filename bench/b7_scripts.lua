-- B7-scripts: what policy scripts cost.
--   1. server:fire("room/event/check") per call: no handler; one plain
--      server:hook handler (the baseline); the anti_spam and room_rules
--      examples plus 8 scripts with a no-opinion handler each.
--   2. Loading 20 scripts; a reload where nothing changed; a reload where one
--      of the 20 changed.
--   3. module:members on a room of M joined members (default 200).
--
-- Usage: lua5.4 bench/b7_scripts.lua [calls] [members]
local uv = require "luv"
local loom = require "loom"
local api = require "loom.api"

local CALLS = tonumber(arg and arg[1]) or 200000
local MEMBERS = tonumber(arg and arg[2]) or 200
local function now() return uv.hrtime() end

local dir = os.tmpname()
os.remove(dir)
os.execute("mkdir -p '" .. dir .. "'")
local function write(name, text)
  local f = assert(io.open(dir .. "/" .. name, "wb"))
  f:write(text)
  f:close()
end

local db = dir .. "/b7.db"
local server = loom.new { port = 0, server_name = "bench.local", log_level = "warn", password_iterations = 1000,
  database = { path = db, synchronous = "OFF" } }
local hs = api.install(server)

local ev = { type = "m.room.message", sender = "@a:bench.local", room_id = "!r:bench.local",
  content = { msgtype = "m.text", body = "hello there" } }
local ctx = { origin = "local" }

local function per_call(label)
  local t0 = now()
  for _ = 1, CALLS do server:fire("room/event/check", ev, ctx) end
  local ns = (now() - t0) / CALLS
  print(("fire room/event/check, %-44s %8.0f ns/call"):format(label, ns))
  return ns
end

per_call("no handler")
local plain = function() return nil end
server:hook("room/event/check", plain)
local base = per_call("1 plain server:hook handler (baseline)")
server:unhook("room/event/check", plain)

hs.accounts:register("a", "password-a")
local list = { "/anti_spam.lua", "/room_rules.lua" }
for i = 1, 8 do
  write("noop" .. i .. ".lua", 'module:hook("room/event/check", function(event) if event.type == "x" then return false end end)')
  list[#list + 1] = "noop" .. i .. ".lua"
end
local cwd = os.getenv("PWD") or "."
list[1] = cwd .. "/examples/policy/anti_spam.lua"
list[2] = cwd .. "/examples/policy/room_rules.lua"
assert(hs.scripts:reload { scripts = list, config_dir = dir,
  anti_spam = { flood_messages = 10000, flood_seconds = 0.001 } })
assert(#hs.scripts:list() == 10)
local scripted = per_call("anti_spam + room_rules + 8 no-op scripts")
print(("  per script handler: %.0f ns over the baseline's one"):format((scripted - base) / 10))

-- loading and reloading
local twenty = {}
for i = 1, 20 do
  write("s" .. i .. ".lua", ([[
    local n = module:get_option_integer("n", %d, 0)
    module:hook("room/join/check", function(info) if info.user_id == "@x:y" then return false, "no" end end)
    module:route("GET", "/_bench/s%d", function() return { n = n } end, { auth = false })
  ]]):format(i, i))
  twenty[i] = "s" .. i .. ".lua"
end
hs.scripts:unload_all()
local t0 = now()
hs.scripts:reload { scripts = twenty, config_dir = dir }
print(("load 20 scripts (hook + route + option each)        %8.2f ms"):format((now() - t0) / 1e6))
t0 = now()
local r = hs.scripts:reload { scripts = twenty, config_dir = dir }
assert(#r.reloaded == 0)
print(("reload, nothing changed                            %8.2f ms"):format((now() - t0) / 1e6))
write("s7.lua", 'module:hook("room/join/check", function() end)')
t0 = now()
r = hs.scripts:reload { scripts = twenty, config_dir = dir }
assert(#r.reloaded == 1)
print(("reload, 1 of 20 changed                            %8.2f ms"):format((now() - t0) / 1e6))

-- members of a big room
local creator = hs.accounts:user_id("a")
local room = assert(hs.rooms:create_room(creator))
assert(hs.rooms:send(room, { type = "m.room.member", state_key = creator, sender = creator,
  content = { membership = "join" } }))
assert(hs.rooms:send(room, { type = "m.room.join_rules", state_key = "", sender = creator,
  content = { join_rule = "public" } }))
for i = 2, MEMBERS do
  local u = "@u" .. i .. ":bench.local"
  assert(hs.rooms:send(room, { type = "m.room.member", state_key = u, sender = u, content = { membership = "join" } }))
end
write("reader.lua", "function members(room) return module:members(room) end")
hs.scripts:reload { scripts = { "reader.lua" }, config_dir = dir }
local members = hs.scripts:get("reader").environment.members
assert(#members(room) == MEMBERS)
local N = 200
t0 = now()
for _ = 1, N do members(room) end
print(("module:members, %d members                         %8.2f ms/call"):format(MEMBERS, (now() - t0) / 1e6 / N))

hs.scripts:unload_all()
hs.store:close()
os.execute("rm -rf '" .. dir .. "'")
