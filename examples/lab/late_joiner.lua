-- A late joiner backfills history: a.lab holds a room with fifty messages;
-- b.lab joins and, through /backfill, fetches everything before its join
-- (the room's history is shared). Both end with the same graph.
--
--   bin/loom lab examples/lab/late_joiner.lua --dot late.dot
local a, b = lab:server("a.lab"), lab:server("b.lab")
local alice, bob = a:register("alice"), b:register("bob")
local room = a:create_room(alice, { preset = "public_chat", name = "History" })
for i = 1, 50 do a:say(alice, room, "old message " .. i) end
b:join(bob, room, { "a.lab" })
b:say(bob, room, "hello, I am new")
assert(lab:settle())
local n = lab:backfill(room)
print(("b.lab backfilled %d events"):format(n))
return room
