-- Restricted joins (join rule restricted, room versions 8 and 10 on): a
-- member of an allowed room may join without an invite, vouched for by a
-- user of a server in the room who may invite — locally and through
-- another server (the resident names its user in make_join and signs the
-- join in send_join); anyone else is refused.
local lab_mod = require "loom.lab"
local fedclient = require "loom.federation.client"

local E = fedclient.encode

describe("restricted joins", function()
  local lab, a, b, alice, bob, carol, dave, space, room

  setup(function()
    lab = lab_mod.new { seed = 11 }
    a, b = lab:server("a.lab"), lab:server("b.lab")
    lab:run(function()
      alice, carol = a:register("alice"), a:register("carol")
      bob, dave = b:register("bob"), b:register("dave")
      space = a:create_room(alice, { preset = "public_chat", name = "The space" })
      room = a:create_room(alice, { preset = "private_chat", name = "Members of the space only",
        initial_state = { { type = "m.room.join_rules", state_key = "",
          content = { join_rule = "restricted", allow = { { type = "m.room_membership", room_id = space } } } } } })
    end)
  end)

  teardown(function() lab:close() end)

  it("lets a local member of the allowed room join, and refuses others", function()
    lab:run(function()
      local r = a:client("POST", "/_matrix/client/v3/join/" .. E(room), {}, carol.access_token)
      assert.equal(403, r.status, r.body)
      a:join(carol, space)
      r = a:client("POST", "/_matrix/client/v3/join/" .. E(room), {}, carol.access_token)
      assert.equal(200, r.status, r.body)
      local ev = a.hs.rooms:state_event(room, "m.room.member", carol.user_id)
      assert.equal(alice.user_id, ev.content.join_authorised_via_users_server)
    end)
  end)

  it("lets a remote member of the allowed room join through the resident, signed by it", function()
    lab:run(function()
      -- dave is in no allowed room: refused
      local r = b:client("POST", "/_matrix/client/v3/join/" .. E(room) .. "?server_name=a.lab", {},
        dave.access_token)
      assert.equal(403, r.status, r.body)
      b:join(bob, space, { "a.lab" })
      assert(lab:settle())
      r = b:client("POST", "/_matrix/client/v3/join/" .. E(room) .. "?server_name=a.lab", {}, bob.access_token)
      assert.equal(200, r.status, r.body)
      local ev = a.hs.rooms:state_event(room, "m.room.member", bob.user_id)
      assert.equal("join", ev.content.membership)
      assert.matches(":a%.lab$", ev.content.join_authorised_via_users_server)
      assert.is_table(ev.signatures["a.lab"])
      assert.is_table(ev.signatures["b.lab"])
      assert(lab:settle())
      lab:backfill(room)
      assert.same({}, lab:check(room).problems)
    end)
  end)
end)
