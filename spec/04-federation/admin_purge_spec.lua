-- Purging a room that other servers share (the admin API's "Delete Room"
-- with purge): the purging server forgets the room entirely, the other
-- server keeps it, and a user of the purging server can join it again
-- through that server (unless the room is blocked here).
local lab_mod = require "loom.lab"

local function E(s) return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end)) end

describe("purging a room shared with another server", function()
  local lab, a, b, out
  setup(function()
    lab = lab_mod.new { seed = 44 }
    a, b = lab:server("a.lab"), lab:server("b.lab")
    out = lab:run(function()
      local o = {}
      assert(a.hs.accounts:register("root", "lab-password", { admin = true }))
      local root = assert(a.hs.accounts:issue_token("@root:a.lab"))
      local alice, bob = a:register("alice"), b:register("bob")
      o.alice = alice.user_id
      o.room = b:create_room(bob, { preset = "public_chat", name = "Shared" })
      a:join(alice, o.room, { "b.lab" })
      a:say(alice, o.room, "before")
      assert(lab:settle())
      o.nid = a.hs.store:room_nid(o.room)
      o.purge = a:client("DELETE", "/_synapse/admin/v1/rooms/" .. E(o.room), { purge = true, block = true },
        root.access_token)
      o.rows = a.hs.store:room_rows(o.room, o.nid)
      o.messages = a:client("GET", "/_matrix/client/v3/rooms/" .. E(o.room) .. "/messages?dir=b", nil,
        alice.access_token)
      o.b_has = b.hs.store:room_nid(o.room) ~= nil
      -- blocked: no way back, not even through b
      o.blocked_join = a:client("POST", "/_matrix/client/v3/join/" .. E(o.room) .. "?server_name=b.lab", {},
        alice.access_token)
      -- unblocked: joined again through b, with the room's history from there
      o.unblock = a:client("PUT", "/_synapse/admin/v1/rooms/" .. E(o.room) .. "/block", { block = false },
        root.access_token)
      o.join = a:client("POST", "/_matrix/client/v3/join/" .. E(o.room) .. "?server_name=b.lab", {},
        alice.access_token)
      b:say(bob, o.room, "welcome back")
      assert(lab:settle())
      local m = a.hs.rooms:state_event(o.room, "m.room.member", alice.user_id)
      o.membership = m and m.content.membership
      o.name = a.hs.rooms:state_event(o.room, "m.room.name", "")
      o.after = a:client("GET", "/_matrix/client/v3/rooms/" .. E(o.room) .. "/messages?dir=b&limit=5", nil,
        alice.access_token)
      return o
    end)
  end)
  teardown(function() lab:close() end)

  it("deletes every row of the room on the purging server; the other server keeps it", function()
    assert.equal(200, out.purge.status, out.purge.body)
    assert.same({ "@alice:a.lab" }, out.purge.json.kicked_users)
    assert.same({ blocked_rooms = 1 }, out.rows)
    assert.is_true(out.messages.status == 403 or out.messages.status == 404)
    assert.is_true(out.b_has)
  end)

  it("refuses a join while the room is blocked, even through another server", function()
    assert.equal(403, out.blocked_join.status, out.blocked_join.body)
    assert.equal("M_FORBIDDEN", out.blocked_join.json.errcode)
  end)

  it("joins again through the other server once unblocked", function()
    assert.equal(200, out.unblock.status)
    assert.equal(200, out.join.status, out.join.body)
    assert.equal("join", out.membership)
    assert.equal("Shared", out.name and out.name.content.name)
    assert.equal(200, out.after.status, out.after.body)
    local found = false
    for _, ev in ipairs(out.after.json.chunk) do
      if ev.type == "m.room.message" and ev.content.body == "welcome back" then found = true end
    end
    assert.is_true(found)
  end)
end)
