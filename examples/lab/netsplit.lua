-- Netsplit and heal: three servers share a room; the network splits one
-- server off; both sides keep talking and change the topic; the split
-- heals. Every server must end with the same events, state and
-- extremities (the topic by state resolution).
--
--   bin/loom lab examples/lab/netsplit.lua --dot netsplit.dot
local a, b, c = lab:server("a.lab"), lab:server("b.lab"), lab:server("c.lab")
local alice, bob, carol = a:register("alice"), b:register("bob"), c:register("carol")
local room = a:create_room(alice, { preset = "public_chat", name = "Netsplit" })
b:join(bob, room, { "a.lab" })
c:join(carol, room, { "a.lab" })
a:say(alice, room, "all together")
assert(lab:settle())

lab:partition({ "a.lab" }, { "b.lab", "c.lab" })
for i = 1, 3 do
  a:say(alice, room, "alone on a, " .. i)
  b:say(bob, room, "b and c, " .. i)
end
a:state(alice, room, "m.room.topic", "", { topic = "set on a during the split" })
c:say(carol, room, "carol was here")
print("split: a and {b, c} talk apart")

lab:heal()
assert(lab:settle())
-- the next message of each side joins both branches
a:say(alice, room, "back together")
assert(lab:settle())
lab:backfill(room)
return room
