-- Knocking over federation (Server-Server API "Knocking upon a room",
-- GET /v1/make_knock, PUT /v1/send_knock; Client-Server API POST /knock):
-- a user of a server not in a room knocks through a resident server; the
-- resident answers with the room's stripped state (knock_room_state), which
-- the knocker's /sync shows under rooms.knock; the room's members may then
-- invite the knocker, who joins. Rooms whose join rule is not knock refuse.
local lab_mod = require "loom.lab"

local function E(s) return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end)) end

local function membership(s, room, user_id)
  local m = s.hs.rooms:state_event(room, "m.room.member", user_id)
  return m and m.content.membership
end

describe("knocking over federation", function()
  local lab, a, b, out
  setup(function()
    lab = lab_mod.new { seed = 11 }
    a, b = lab:server("a.lab"), lab:server("b.lab")
    out = lab:run(function()
      local o = {}
      local alice, bob = a:register("alice"), b:register("bob")
      o.room = a:create_room(alice, { preset = "private_chat", name = "Knock here" })
      a:state(alice, o.room, "m.room.join_rules", "", { join_rule = "knock" })
      o.closed = a:create_room(alice, { preset = "private_chat" })
      o.knock_closed = b:client("POST", "/_matrix/client/v3/knock/" .. E(o.closed) .. "?server_name=a.lab",
        { reason = "let me in" }, bob.access_token)
      o.knock = b:client("POST", "/_matrix/client/v3/knock/" .. E(o.room) .. "?server_name=a.lab",
        { reason = "let me in" }, bob.access_token)
      o.a_sees = membership(a, o.room, bob.user_id)
      local m = a.hs.rooms:state_event(o.room, "m.room.member", bob.user_id)
      o.reason = m and m.content.reason
      local r = b:client("GET", "/_matrix/client/v3/sync?timeout=0", nil, bob.access_token)
      o.sync = r.json
      -- alice lets bob in
      o.invite = a:client("POST", "/_matrix/client/v3/rooms/" .. E(o.room) .. "/invite", { user_id = bob.user_id },
        alice.access_token)
      o.join = b:client("POST", "/_matrix/client/v3/join/" .. E(o.room), {}, bob.access_token)
      assert(lab:settle())
      o.a_sees_join = membership(a, o.room, bob.user_id)
      -- a second knock, rescinded by leaving
      o.room2 = a:create_room(alice, { preset = "private_chat" })
      a:state(alice, o.room2, "m.room.join_rules", "", { join_rule = "knock" })
      o.knock2 = b:client("POST", "/_matrix/client/v3/knock/" .. E(o.room2) .. "?server_name=a.lab", {},
        bob.access_token)
      o.rescind = b:client("POST", "/_matrix/client/v3/rooms/" .. E(o.room2) .. "/leave", {}, bob.access_token)
      o.a_sees2 = membership(a, o.room2, bob.user_id)
      -- a local knock on a room of this server
      local carl = a:register("carl")
      o.local_knock = a:client("POST", "/_matrix/client/v3/knock/" .. E(o.room2), {}, carl.access_token)
      o.a_sees_carl = membership(a, o.room2, carl.user_id)
      -- resident side, asked directly
      local F = "/_matrix/federation/v1"
      local fed = b.hs.federation
      o.version = a.hs.store:room_version(o.room2)
      o.old_ver = { fed:request("a.lab", "GET", F .. "/make_knock/" .. E(o.room2) .. "/" .. E("@carl:b.lab"),
        { query = { ver = { "1" } } }) }
      o.other_user = { fed:request("a.lab", "GET", F .. "/make_knock/" .. E(o.room2) .. "/" .. E("@carl:a.lab"),
        { query = { ver = { o.version } } }) }
      o.template = { fed:request("a.lab", "GET", F .. "/make_knock/" .. E(o.room2) .. "/" .. E("@carl:b.lab"),
        { query = { ver = { o.version } } }) }
      return o
    end)
  end)
  teardown(function() lab:close() end)

  it("refuses a knock on a room whose join rule is not knock", function()
    assert.equal(403, out.knock_closed.status)
    assert.equal("M_FORBIDDEN", out.knock_closed.json.errcode)
  end)

  it("knocks through a resident server, which sends the knock into the room", function()
    assert.equal(200, out.knock.status)
    assert.equal(out.room, out.knock.json.room_id)
    assert.equal("knock", out.a_sees)
    assert.equal("let me in", out.reason)
  end)

  it("shows the knock in /sync under rooms.knock with the room's stripped state", function()
    local k = out.sync.rooms.knock and out.sync.rooms.knock[out.room]
    assert.is_table(k)
    local seen = {}
    for _, e in ipairs(k.knock_state.events) do seen[e.type .. "|" .. e.state_key] = e end
    assert.equal("knock", seen["m.room.join_rules|"].content.join_rule)
    assert.equal("Knock here", seen["m.room.name|"].content.name)
    assert.equal("knock", seen["m.room.member|@bob:b.lab"].content.membership)
  end)

  it("lets the knocker in once invited", function()
    assert.equal(200, out.invite.status)
    assert.equal(200, out.join.status)
    assert.equal("join", out.a_sees_join)
  end)

  it("rescinds a knock by leaving through the resident server", function()
    assert.equal(200, out.knock2.status)
    assert.equal(200, out.rescind.status)
    assert.equal("leave", out.a_sees2)
  end)

  it("knocks on a room of this server without federation", function()
    assert.equal(200, out.local_knock.status)
    assert.equal("knock", out.a_sees_carl)
  end)

  it("make_knock checks the room version and the user's server", function()
    assert.equal(400, out.old_ver[1])
    assert.equal("M_INCOMPATIBLE_ROOM_VERSION", out.old_ver[2].errcode)
    assert.equal(403, out.other_user[1])
    assert.equal(200, out.template[1])
    assert.equal("knock", out.template[2].event.content.membership)
    assert.equal(out.version, out.template[2].room_version)
  end)
end)
