-- A small tour of loom's foundation: create a database, build a room's DAG
-- with signed events (including a fork), store it, and read the timeline
-- back in both orders with tokens, a filter and a context window.
--
--   LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/release/?.so;;' lua5.4 examples/timeline.lua [database path]
local loom = require "loom"
local json, token = loom.core.json, loom.core.token

local path = arg and arg[1] or "var/example.db"
os.execute("mkdir -p '" .. (path:match("^(.*)/[^/]*$") or ".") .. "'")
for _, sfx in ipairs { "", "-wal", "-shm" } do os.remove(path .. sfx) end

local store = assert(loom.open_store { path = path })
local key = loom.crypto.signing_key(loom.core.crypto.random_bytes(32), "ed25519:a1", "example.org")
local ROOM_VERSION = "11"
local room_id = "!tour:example.org"
local ts = 1700000000000

-- Build, hash, sign and store one event; returns its ID.
local function send(sender, ty, content, prev, depth, state_key)
  ts = ts + 1000
  local ev = {
    room_id = room_id, type = ty, sender = sender, content = content,
    state_key = state_key, depth = depth, origin_server_ts = ts,
    prev_events = json.array(prev), auth_events = json.array {},
  }
  assert(loom.crypto.sign_event(ev, key, ROOM_VERSION))
  local event_id = assert(loom.crypto.event_id(ev, ROOM_VERSION))
  assert(store:persist(event_id, ev, { room_version = ROOM_VERSION }))
  return event_id
end

local alice, bob = "@alice:example.org", "@bob:example.org"
local create = send(alice, "m.room.create", { room_version = ROOM_VERSION }, {}, 1, "")
local join = send(alice, "m.room.member", { membership = "join" }, { create }, 2, alice)
local last, depth = join, 2
local lines = { "Hello, loom!", "This room is a DAG of signed events.", "Each one is stored with its depth",
  "and its stream ordering." }
for _, body in ipairs(lines) do
  depth = depth + 1
  last = send(alice, "m.room.message", { msgtype = "m.text", body = body }, { last }, depth)
end
-- Two events written concurrently on the same parent: a fork...
local bob_join = send(bob, "m.room.member", { membership = "join" }, { last }, depth + 1, bob)
local side = send(alice, "m.room.message", { msgtype = "m.text", body = "(sent at the same time)" },
  { last }, depth + 1)
print("forward extremities after the fork: " .. table.concat(store:forward_extremities(room_id), ", "))
-- ...that the next event merges.
send(bob, "m.room.message", { msgtype = "m.text", body = "Hi Alice, I merged the fork." },
  { bob_join, side }, depth + 2)
print("forward extremities after the merge: " .. table.concat(store:forward_extremities(room_id), ", "))

local function show(ev)
  local e = json.decode(ev.json)
  local what = e.content.body or e.content.membership or e.type
  print(("  %-14s depth %-2d stream %-3d %-26s %s"):format(tostring(select(2,
    token.for_event(ev.depth, ev.stream_ordering))), ev.depth, ev.stream_ordering, e.sender, what))
end

print("\nTimeline, newest first, in pages of 4 (what /messages?dir=b serves):")
local from, page_no = nil, 0
repeat
  local page = assert(store:paginate(room_id, from, { dir = "b", limit = 4 }))
  page_no = page_no + 1
  print(("page %d (from %s, next %s)"):format(page_no, page.start, tostring(page.next)))
  for _, ev in ipairs(page.events) do show(ev) end
  from = page.next
until not from

print("\nOnly messages, oldest first (filter {types: [\"m.room.message\"]}):")
local page = assert(store:paginate(room_id, nil, { dir = "f", limit = 50,
  filter = { types = { "m.room.message" } } }))
for _, ev in ipairs(page.events) do show(ev) end

print("\nContext around the fork's side event (1 before, 1 after):")
local ctx = assert(store:context(room_id, side, 1, 1))
for _, ev in ipairs(ctx.before) do show(ev) end
show(ctx.event)
for _, ev in ipairs(ctx.after) do show(ev) end
print(("start %s, end %s; current stream token %s"):format(ctx.start, ctx["end"], store:current_token()))

store:close()
print("\ndatabase: " .. path)
