-- Room upgrades (Client-Server API "Room Upgrades"): POST /rooms/{roomId}/upgrade
-- replaces a room by a new one of another version, as the spec's sequence says.
local tesths = require "support.hs"
local enc = tesths.enc

local V3 = "/_matrix/client/v3"

describe("room upgrades", function()
  local t
  setup(function() t = tesths.start() end)
  teardown(function() t:stop() end)

  local function state(who, room, etype, sk)
    return t:request("GET", V3 .. "/rooms/" .. enc(room) .. "/state/" .. etype .. "/" .. enc(sk or ""), nil,
      who.access_token)
  end
  local function put_state(who, room, etype, content, sk)
    local r = t:request("PUT", V3 .. "/rooms/" .. enc(room) .. "/state/" .. etype .. "/" .. enc(sk or ""), content,
      who.access_token)
    assert.equal(200, r.status, r.body)
  end
  local function upgrade(who, room, new_version)
    return t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/upgrade", { new_version = new_version },
      who.access_token)
  end

  it("replaces the room: predecessor, copied state, moved aliases, tombstone, restricted power levels", function()
    local alice, bob, carol = t:fresh("up"), t:fresh("up"), t:fresh("up")
    local old = t:create_room(alice, { preset = "public_chat", name = "Lobby", topic = "talk",
      room_alias_name = "upgrade-lobby", room_version = "10" })
    t:join(bob, old)
    put_state(alice, old, "m.room.guest_access", { guest_access = "can_join" })
    put_state(alice, old, "m.room.encryption", { algorithm = "m.megolm.v1.aes-sha2" })
    put_state(alice, old, "m.room.avatar", { url = "mxc://test.local/a" })
    put_state(alice, old, "m.space.child", { via = { "test.local" } }, "!child:test.local")
    assert.equal(200, t:request("POST", V3 .. "/rooms/" .. enc(old) .. "/ban", { user_id = carol.user_id,
      reason = "spam" }, alice.access_token).status)
    assert.equal(200, t:request("PUT", V3 .. "/directory/list/room/" .. enc(old), { visibility = "public" },
      alice.access_token).status)
    local pl = state(alice, old, "m.room.power_levels").json
    pl.users[bob.user_id] = 10
    put_state(alice, old, "m.room.power_levels", pl)

    local r = upgrade(alice, old, "11")
    assert.equal(200, r.status, r.body)
    local new = r.json.replacement_room
    assert.is_string(new)
    assert.not_equal(old, new)

    -- the new room's create names its predecessor, an event of the old room
    local create = state(alice, new, "m.room.create").json
    assert.equal("11", create.room_version)
    assert.equal(old, create.predecessor.room_id)
    assert.is_string(create.predecessor.event_id)
    assert.equal(200, t:request("GET", V3 .. "/rooms/" .. enc(old) .. "/event/" .. enc(create.predecessor.event_id),
      nil, alice.access_token).status)
    -- copied state
    assert.equal("Lobby", state(alice, new, "m.room.name").json.name)
    assert.equal("talk", state(alice, new, "m.room.topic").json.topic)
    assert.equal("public", state(alice, new, "m.room.join_rules").json.join_rule)
    assert.equal("can_join", state(alice, new, "m.room.guest_access").json.guest_access)
    assert.equal("m.megolm.v1.aes-sha2", state(alice, new, "m.room.encryption").json.algorithm)
    assert.equal("mxc://test.local/a", state(alice, new, "m.room.avatar").json.url)
    assert.same({ "test.local" }, state(alice, new, "m.space.child", "!child:test.local").json.via)
    assert.equal("shared", state(alice, new, "m.room.history_visibility").json.history_visibility)
    local ban = state(alice, new, "m.room.member", carol.user_id).json
    assert.equal("ban", ban.membership)
    assert.equal("spam", ban.reason)
    local npl = state(alice, new, "m.room.power_levels").json
    assert.equal(100, npl.users[alice.user_id])
    assert.equal(10, npl.users[bob.user_id])
    assert.equal(0, npl.events_default)
    -- the alias points to the new room, whose canonical alias it is
    local alias = "#upgrade-lobby:test.local"
    assert.equal(new, t:request("GET", V3 .. "/directory/room/" .. enc(alias)).json.room_id)
    assert.equal(alias, state(alice, new, "m.room.canonical_alias").json.alias)
    assert.is_nil(state(alice, old, "m.room.canonical_alias").json.alias)
    assert.equal("public", t:request("GET", V3 .. "/directory/list/room/" .. enc(new)).json.visibility)
    assert.equal("private", t:request("GET", V3 .. "/directory/list/room/" .. enc(old)).json.visibility)
    -- the old room: tombstone and restricted power levels
    local tomb = state(bob, old, "m.room.tombstone").json
    assert.equal(new, tomb.replacement_room)
    assert.is_string(tomb.body)
    local opl = state(alice, old, "m.room.power_levels").json
    assert.equal(50, opl.events_default)
    assert.equal(50, opl.invite)
    local sent = t:send(bob.access_token, old, { msgtype = "m.text", body = "still here?" })
    assert.equal(403, sent.status)
    -- bob is not joined to the new room, and may join it
    local m = state(alice, new, "m.room.member", bob.user_id)
    assert.equal(404, m.status)
    t:join(bob, new)
  end)

  it("raises the old room's levels to users_default + 1 when that is above 50", function()
    local alice = t:fresh("up")
    local old = t:create_room(alice, { power_level_content_override = { users_default = 60, invite = 70 } })
    local r = upgrade(alice, old, "11")
    assert.equal(200, r.status, r.body)
    local opl = state(alice, old, "m.room.power_levels").json
    assert.equal(61, opl.events_default)
    assert.equal(70, opl.invite)
    assert.equal(60, state(alice, r.json.replacement_room, "m.room.power_levels").json.users_default)
  end)

  it("into a v12 room: the upgrader is its creator, not listed in the power levels", function()
    local alice = t:fresh("up")
    local old = t:create_room(alice)
    local r = upgrade(alice, old, "12")
    assert.equal(200, r.status, r.body)
    local new = r.json.replacement_room
    assert.equal("12", state(alice, new, "m.room.create").json.room_version)
    assert.is_nil(state(alice, new, "m.room.power_levels").json.users[alice.user_id])
    put_state(alice, new, "m.room.name", { name = "still in charge" })
    -- and from v12 to v11, the creator keeps the top level
    r = upgrade(alice, new, "11")
    assert.equal(200, r.status, r.body)
    assert.equal(100, state(alice, r.json.replacement_room, "m.room.power_levels").json.users[alice.user_id])
  end)

  it("refuses without the power to send the tombstone, and leaves the room as it was", function()
    local alice, bob = t:fresh("up"), t:fresh("up")
    local old = t:create_room(alice, { preset = "public_chat" })
    t:join(bob, old)
    local r = upgrade(bob, old, "11")
    assert.equal(403, r.status)
    assert.equal("M_FORBIDDEN", r.json.errcode)
    assert.equal(404, state(alice, old, "m.room.tombstone").status)
  end)

  it("answers Matrix errors: unknown version, unknown room, not a member, bad input", function()
    local alice, bob = t:fresh("up"), t:fresh("up")
    local old = t:create_room(alice)
    local r = upgrade(alice, old, "999")
    assert.equal(400, r.status)
    assert.equal("M_UNSUPPORTED_ROOM_VERSION", r.json.errcode)
    assert.equal("M_UNSUPPORTED_ROOM_VERSION", upgrade(alice, old, 11).json.errcode)
    r = upgrade(alice, "!nope:test.local", "11")
    assert.equal(404, r.status)
    assert.equal("M_NOT_FOUND", r.json.errcode)
    r = upgrade(bob, old, "11")
    assert.equal(403, r.status)
    assert.equal("M_FORBIDDEN", r.json.errcode)
    r = t:request("POST", V3 .. "/rooms/" .. enc(old) .. "/upgrade", {}, alice.access_token)
    assert.equal(400, r.status)
    assert.equal("M_MISSING_PARAM", r.json.errcode)
    assert.equal(400, t:request("POST", V3 .. "/rooms/" .. enc(old) .. "/upgrade", "[]", alice.access_token).status)
    assert.equal(400, upgrade(alice, "not-a-room", "11").status)
    assert.equal(401, t:request("POST", V3 .. "/rooms/" .. enc(old) .. "/upgrade", { new_version = "11" }).status)
    assert.equal(404, state(alice, old, "m.room.tombstone").status)
  end)
end)
