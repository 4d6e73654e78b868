-- Invites over federation (Server-Server API "Inviting to a room",
-- PUT /_matrix/federation/v2/invite; "Leaving Rooms (Rejecting Invites)"):
-- a user of one server invites a user of another; the invitee's server signs
-- the invite and shows it in /sync under rooms.invite with the stripped
-- state; the invitee joins through make_join/send_join, or rejects through
-- make_leave/send_leave. Forged invites are refused and nothing is stored.
local lab_mod = require "loom.lab"
local crypto = require "loom.room.crypto"
local event_mod = require "loom.room.event"

local function E(s) return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end)) end

local function sync(s, user, since)
  local r = s:client("GET", "/_matrix/client/v3/sync?timeout=0" .. (since and ("&since=" .. since) or ""), nil,
    user.access_token)
  assert.equal(200, r.status)
  return r.json
end

local function membership(s, room, user_id)
  local m = s.hs.rooms:state_event(room, "m.room.member", user_id)
  return m and m.content.membership
end

describe("invites over federation", function()
  local lab, a, b, c, out
  setup(function()
    lab = lab_mod.new { seed = 9 }
    a, b, c = lab:server("a.lab"), lab:server("b.lab"), lab:server("c.lab")
    out = lab:run(function()
      local o = {}
      local alice, bob = a:register("alice"), b:register("bob")
      local carol = c:register("carol")
      -- an invite that bob accepts
      o.room = a:create_room(alice, { preset = "private_chat", name = "Secret" })
      o.invite = a:client("POST", "/_matrix/client/v3/rooms/" .. E(o.room) .. "/invite",
        { user_id = bob.user_id }, alice.access_token)
      assert(o.invite.status == 200, o.invite.body)
      o.sync1 = sync(b, bob)
      local inv = b.hs.store:event(a.hs.rooms:state_event(o.room, "m.room.member", bob.user_id).event_id)
      o.b_sigs = inv and inv.signatures
      local a_ev = a.hs.rooms:state_event(o.room, "m.room.member", bob.user_id)
      o.a_sigs = a_ev.signatures
      o.join = b:client("POST", "/_matrix/client/v3/join/" .. E(o.room), {}, bob.access_token)
      assert(lab:settle())
      o.a_sees = membership(a, o.room, bob.user_id)
      o.sync2 = sync(b, bob, o.sync1.next_batch)
      lab:backfill(o.room)
      o.check = lab:check(o.room, { "a.lab", "b.lab" })
      -- an invite that bob rejects
      o.room2 = a:create_room(alice, { preset = "private_chat", name = "Declined" })
      o.invite2 = a:client("POST", "/_matrix/client/v3/rooms/" .. E(o.room2) .. "/invite",
        { user_id = bob.user_id }, alice.access_token)
      local s3 = sync(b, bob, o.sync2.next_batch)
      o.invited2 = s3.rooms.invite[o.room2] ~= nil
      o.reject = b:client("POST", "/_matrix/client/v3/rooms/" .. E(o.room2) .. "/leave", {}, bob.access_token)
      assert(lab:settle())
      o.a_sees2 = membership(a, o.room2, bob.user_id)
      o.sync4 = sync(b, bob, s3.next_batch)
      -- an invite rejected while the inviter's server cannot be reached:
      -- declined on b.lab alone
      o.room3 = a:create_room(alice, { preset = "private_chat" })
      o.invite3 = a:client("POST", "/_matrix/client/v3/rooms/" .. E(o.room3) .. "/invite",
        { user_id = bob.user_id }, alice.access_token)
      local s5 = sync(b, bob, o.sync4.next_batch)
      lab:partition({ "a.lab" }, { "b.lab" })
      o.reject3 = b:client("POST", "/_matrix/client/v3/rooms/" .. E(o.room3) .. "/leave", {}, bob.access_token)
      lab:heal()
      o.sync6 = sync(b, bob, s5.next_batch)
      o.a_sees3 = membership(a, o.room3, bob.user_id)
      -- createRoom with a remote invitee
      local cr = a:client("POST", "/_matrix/client/v3/createRoom",
        { preset = "private_chat", invite = { bob.user_id }, is_direct = true }, alice.access_token)
      assert(cr.status == 200, cr.body)
      o.room4 = cr.json.room_id
      local rn4 = b.hs.store:room_nid(o.room4)
      o.b_membership4 = rn4 and b.hs.store:latest_membership(bob.user_id, rn4)
      local m4 = a.hs.rooms:state_event(o.room4, "m.room.member", bob.user_id)
      o.a_direct4 = m4 and m4.content.is_direct
      o.a_sigs4 = m4 and m4.signatures
      -- an invite to a user who does not exist
      o.invite_nobody = a:client("POST", "/_matrix/client/v3/rooms/" .. E(o.room2) .. "/invite",
        { user_id = "@nobody:b.lab" }, alice.access_token)
      o.a_nobody = membership(a, o.room2, "@nobody:b.lab")
      -- forged invites to b.lab
      local room_c = c:create_room(carol, { preset = "private_chat" })
      local function forge(target, strip)
        local tpl, version = assert(c.hs.rooms:template(room_c, { type = "m.room.member", sender = carol.user_id,
          state_key = target, content = { membership = "invite" } }))
        assert(crypto.add_content_hash(tpl))
        if strip then tpl.signatures = {} else assert(crypto.sign_event(tpl, c.hs.key, version.id)) end
        local id = event_mod.compute_id(version, tpl)
        return tpl, id, version.id
      end
      local function put(from, ev, id, vid)
        local status, body = from.hs.federation:request("b.lab", "PUT",
          "/_matrix/federation/v2/invite/" .. E(room_c) .. "/" .. E(id),
          { body = { room_version = vid, event = event_mod.pdu(ev), invite_room_state = {} } })
        return { status, body, stored = b.hs.store:event(id) ~= nil }
      end
      local ev, id, vid = forge(bob.user_id)
      o.wrong_origin = put(a, ev, id, vid)
      o.bad_version = put(c, ev, id, "no-such-version")
      o.bad_id = put(c, ev, "$not-the-id", vid)
      local ev2, id2 = forge("@someone:a.lab")
      o.other_server = put(c, ev2, id2, vid)
      local ev3, id3 = forge(bob.user_id, true)
      o.unsigned = put(c, ev3, id3, vid)
      local ev4, id4 = forge("@nobody:b.lab")
      o.no_user = put(c, ev4, id4, vid)
      o.good = put(c, ev, id, vid)
      return o
    end)
  end)
  teardown(function() lab:close() end)

  it("POST /invite for a remote user goes through the invitee's server, which signs it", function()
    assert.equal(200, out.invite.status)
    assert.is_table(out.a_sigs["a.lab"])
    assert.is_table(out.a_sigs["b.lab"])
    assert.is_table(out.b_sigs["b.lab"])
  end)

  it("sends createRoom's invites of remote users through their server", function()
    assert.equal("invite", out.b_membership4)
    assert.is_true(out.a_direct4)
    assert.is_table(out.a_sigs4["b.lab"])
  end)

  it("shows the invite in the invitee's /sync with the stripped state", function()
    local inv = out.sync1.rooms.invite[out.room]
    assert.is_table(inv)
    local seen = {}
    for _, e in ipairs(inv.invite_state.events) do seen[e.type .. "|" .. e.state_key] = e end
    assert.equal("Secret", seen["m.room.name|"].content.name)
    assert.equal("invite", seen["m.room.join_rules|"].content.join_rule)
    assert.is_table(seen["m.room.create|"])
    assert.equal("invite", seen["m.room.member|@bob:b.lab"].content.membership)
    assert.equal("@alice:a.lab", seen["m.room.member|@bob:b.lab"].sender)
  end)

  it("lets the invitee join through the inviter's server", function()
    assert.equal(200, out.join.status)
    assert.equal("join", out.a_sees)
    assert.is_table(out.sync2.rooms.join[out.room])
    assert.same({}, out.check.problems)
  end)

  it("rejects an invite through the inviter's server (make_leave/send_leave)", function()
    assert.equal(200, out.invite2.status)
    assert.is_true(out.invited2)
    assert.equal(200, out.reject.status)
    assert.equal("leave", out.a_sees2)
    assert.is_table(out.sync4.rooms.leave[out.room2])
    assert.is_nil(out.sync4.rooms.invite[out.room2])
  end)

  it("declines an invite on the invitee's server alone when the inviter's cannot be reached", function()
    assert.equal(200, out.invite3.status)
    assert.equal(200, out.reject3.status)
    assert.is_table(out.sync6.rooms.leave[out.room3])
    assert.equal("invite", out.a_sees3)
  end)

  it("fails an invite the invitee's server refuses, and sends nothing into the room", function()
    assert.equal(404, out.invite_nobody.status)
    assert.is_nil(out.a_nobody)
  end)

  it("refuses forged invites and stores nothing", function()
    assert.equal(403, out.wrong_origin[1])
    assert.equal("M_FORBIDDEN", out.wrong_origin[2].errcode)
    assert.is_false(out.wrong_origin.stored)
    assert.equal(400, out.bad_version[1])
    assert.equal("M_INCOMPATIBLE_ROOM_VERSION", out.bad_version[2].errcode)
    assert.equal(400, out.bad_id[1])
    assert.equal(403, out.other_server[1])
    assert.is_false(out.other_server.stored)
    assert.equal(403, out.unsigned[1])
    assert.equal("M_FORBIDDEN", out.unsigned[2].errcode)
    assert.is_false(out.unsigned.stored)
    assert.equal(404, out.no_user[1])
    assert.is_false(out.no_user.stored)
    -- the same event, sent properly
    assert.equal(200, out.good[1])
    assert.is_table(out.good[2].event.signatures["b.lab"])
    assert.is_table(out.good[2].event.signatures["c.lab"])
    assert.is_true(out.good.stored)
  end)
end)
