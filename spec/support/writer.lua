-- Child process for the crash test: persists events into the store at
-- arg[1] forever, printing "ack <event_id> <stream_ordering>" after each
-- persist returns (and flushing), until it is killed.
local store_mod = require "loom.store"
local json = require("loom.core").json
local uv = require "luv"

local s = assert(store_mod.open { path = arg[1] })
io.stdout:write("pid ", uv.os_getpid(), "\n")
io.stdout:flush()
local prev = json.array(s:forward_extremities("!crash:test"))
local depth = 1
local i = 0
while true do
  i = i + 1
  local batch = {}
  for k = 1, (i % 3) + 1 do
    local id = ("$crash_%d_%d"):format(i, k)
    batch[k] = { id, { room_id = "!crash:test", type = "m.room.message", sender = "@w:test",
      depth = depth, origin_server_ts = i, prev_events = prev, content = { body = ("x"):rep(i % 200) } } }
    prev = json.array { id }
    depth = depth + 1
  end
  local res = assert(s:persist_events(batch))
  for k, r in ipairs(res) do io.stdout:write("ack ", batch[k][1], " ", r.stream_ordering, "\n") end
  io.stdout:flush()
end
