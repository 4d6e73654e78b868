-- Presence over federation, in the lab: a user's presence goes to the
-- servers sharing a room with them as m.presence EDUs; the other server's
-- clients see it in /sync; a server cannot set presence for another
-- server's users.
local lab_mod = require "loom.lab"
local fedclient = require "loom.federation.client"
local core = require "loom.core"

local E = fedclient.encode

describe("presence over federation", function()
  it("reaches the servers sharing a room, and only for the origin's users", function()
    local lab = lab_mod.new { seed = 4 }
    local a, b, c = lab:server("a.lab"), lab:server("b.lab"), lab:server("c.lab")
    lab:run(function()
      local alice, bob = a:register("alice"), b:register("bob")
      local room = a:create_room(alice, { preset = "public_chat" })
      b:join(bob, room, { "a.lab" })
      assert(lab:settle())
      local r = a:client("PUT", "/_matrix/client/v3/presence/" .. E(alice.user_id) .. "/status",
        { presence = "online", status_msg = "from a" }, alice.access_token)
      assert.equal(200, r.status)
      assert(lab:settle())
      local p = b.hs.store:presence_of(alice.user_id)
      assert.is_table(p, "b never got alice's presence")
      assert.equal("online", p.state)
      assert.equal("from a", p.status_msg)
      -- bob's sync shows it
      local s = b:client("GET", "/_matrix/client/v3/sync?set_presence=offline", nil, bob.access_token)
      local seen = false
      for _, ev in ipairs(s.json.presence.events) do
        if ev.sender == alice.user_id and ev.content.presence == "online" then seen = true end
      end
      assert.is_true(seen)
      -- c (in no room with alice) got nothing
      assert.is_nil(c.hs.store:presence_of(alice.user_id))
      -- c claims presence for a user of a: ignored
      local st = c.hs.federation:request("b.lab", "PUT", "/_matrix/federation/v1/send/p1", { body = {
        origin = "c.lab", origin_server_ts = core.now_ms(), pdus = core.json.array {},
        edus = core.json.array { { edu_type = "m.presence", content = { push = core.json.array {
          { user_id = alice.user_id, presence = "offline" } } } } } } })
      assert.equal(200, st)
      assert.equal("online", b.hs.store:presence_of(alice.user_id).state)
    end)
    lab:close()
  end)
end)
