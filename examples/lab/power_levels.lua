-- Conflicting power-level changes: the room's creator on a.lab makes bob
-- (b.lab) a moderator; during a split, alice demotes bob while bob, who
-- does not know yet, changes the room's name. After the heal, state
-- resolution decides on every server alike: the demotion is ordered by the
-- power events' graph and bob's name change is judged against it.
--
--   bin/loom lab examples/lab/power_levels.lua --dot pl.dot
local a, b = lab:server("a.lab"), lab:server("b.lab")
local alice, bob = a:register("alice"), b:register("bob")
local room = a:create_room(alice, { preset = "public_chat", name = "Power" })
b:join(bob, room, { "a.lab" })
assert(lab:settle())
local pl = { users = { [alice.user_id] = 100, [bob.user_id] = 50 }, events = { ["m.room.name"] = 50 },
  state_default = 50, users_default = 0 }
a:state(alice, room, "m.room.power_levels", "", pl)
assert(lab:settle())

lab:partition({ "a.lab" }, { "b.lab" })
pl.users[bob.user_id] = 0
a:state(alice, room, "m.room.power_levels", "", pl)
b:state(bob, room, "m.room.name", "", { name = "Renamed by bob during the split" })
lab:heal()
assert(lab:settle())
a:say(alice, room, "after the heal")
b:say(bob, room, "me too")
assert(lab:settle())
lab:backfill(room)
return room
