-- /sync's state delta in a room whose history forked: the state "at since"
-- is the room's current state then (both branches), so a limited timeline
-- does not send again what the client already had.
local tesths = require "support.hs"
local remote = require "support.remote"
local crypto = require "loom.room.crypto"
local event_mod = require "loom.room.event"
local version_mod = require "loom.room.version"
local json = require("loom.core").json

describe("sync after a fork", function()
  it("sends only the state that changed since the token", function()
    local t = tesths.start()
    local hs = t.hs
    local alice = t:register("alice")
    local A = alice.user_id
    local room = assert(hs.rooms:create_room(A))
    local function send(proto) return assert(hs.rooms:send(room, proto)) end
    send { type = "m.room.member", state_key = A, sender = A, content = { membership = "join" } }
    send { type = "m.room.join_rules", state_key = "", sender = A, content = { join_rule = "public" } }
    local fork = hs.store:forward_extremities(room)
    -- branch 1 (local): a topic; branch 2 (another server, built on the fork point): a join
    local topic = send { type = "m.room.topic", state_key = "", sender = A, content = { topic = "forked" } }
    local other = crypto.signing_key(string.rep("\7", 32), "ed25519:o", "other.test")
    local version = assert(version_mod.get(hs.store:room_version(room)))
    local ctx = remote.room(hs.store, hs.rooms, room, fork, function(_, ty, sk)
      local ev = hs.rooms:state_event(room, ty, sk)
      if ev and ev.event_id == topic.event_id then return nil end   -- as of the fork point
      return ev
    end)
    local carol = "@carol:other.test"
    local join = assert(event_mod.build(version, { room_id = room, type = "m.room.member", state_key = carol,
      sender = carol, content = { membership = "join" } }, ctx, other))
    assert(hs.rooms:receive(json.decode(json.encode(join)), { keys = function(server, key_id)
      if server == "other.test" and key_id == other.key_id then return other.public_key end
      if server == "test.local" then return hs.key.public_key end
    end }))
    -- the client syncs now, during the fork: it has both branches
    local since = t:request("GET", "/_matrix/client/v3/sync", nil, alice.access_token).json.next_batch
    for i = 1, 4 do send { type = "m.room.message", sender = A, content = { body = "m" .. i } } end
    local filter = tesths.enc('{"room":{"timeline":{"limit":1}}}')
    local r = t:request("GET", "/_matrix/client/v3/sync?since=" .. tesths.enc(since) .. "&filter=" .. filter, nil,
      alice.access_token)
    assert.equal(200, r.status)
    local joined = r.json.rooms.join[room]
    assert.is_true(joined.timeline.limited)
    for _, ev in ipairs(joined.state.events) do
      assert.are_not.equal(topic.event_id, ev.event_id, "the topic was already known at since")
      assert.are_not.equal(join.event_id, ev.event_id, "the join was already known at since")
    end
    t:stop()
  end)
end)
