-- The server admin API (Synapse's documented admin API, the paths the
-- community's admin tools call): users, rooms, blocking and deleting rooms,
-- server notices, behind the account's admin flag.
local tesths = require "support.hs"
local enc = tesths.enc

local V3 = "/_matrix/client/v3"
local A1 = "/_synapse/admin/v1"
local A2 = "/_synapse/admin/v2"

describe("admin API", function()
  local t, adm, plain
  setup(function()
    t = tesths.start { server_notices = { system_mxid_localpart = "notices",
      system_mxid_display_name = "Server Notices", room_name = "Server Notices" } }
    assert(t.hs.accounts:register("root", "root-password", { admin = true }))
    adm = assert(t.hs.accounts:login("@root:test.local", "root-password"))
    plain = t:register("plain")
  end)
  teardown(function() t:stop() end)

  local function login(user_id, password)
    return t:request("POST", V3 .. "/login", { type = "m.login.password",
      identifier = { type = "m.id.user", user = user_id }, password = password })
  end

  local function whoami(token) return t:request("GET", V3 .. "/account/whoami", nil, token) end

  describe("access", function()
    local routes = {
      { "GET", A2 .. "/users" }, { "GET", A2 .. "/users/@plain:test.local" },
      { "PUT", A2 .. "/users/@x:test.local", { password = "p" } },
      { "POST", A1 .. "/deactivate/@plain:test.local", {} },
      { "POST", A1 .. "/reset_password/@plain:test.local", { new_password = "n" } },
      { "GET", A1 .. "/rooms" }, { "GET", A1 .. "/whois/@plain:test.local" },
      { "GET", A1 .. "/users/@plain:test.local/admin" },
      { "PUT", A1 .. "/users/@plain:test.local/admin", { admin = true } },
      { "DELETE", A1 .. "/rooms/!x:test.local", {} },
      { "POST", A1 .. "/send_server_notice", { user_id = "@plain:test.local", content = { body = "x" } } },
    }
    it("refuses non-admins with 403 M_FORBIDDEN and changes nothing", function()
      for _, r in ipairs(routes) do
        local res = t:request(r[1], r[2], r[3], plain.access_token)
        assert.equal(403, res.status, r[1] .. " " .. r[2])
        assert.equal("M_FORBIDDEN", res.json.errcode)
        assert.equal("You are not a server admin", res.json.error)
      end
      assert.is_nil(t.hs.accounts:user("@x:test.local"))
      assert.is_false(t.hs.accounts:user("@plain:test.local").admin)
      assert.equal(200, whoami(plain.access_token).status)
    end)

    it("needs an access token", function()
      local res = t:request("GET", A2 .. "/users")
      assert.equal(401, res.status)
      assert.equal("M_MISSING_TOKEN", res.json.errcode)
    end)

    it("tells the server version to anyone", function()
      local res = t:request("GET", A1 .. "/server_version")
      assert.equal(200, res.status)
      assert.matches("^loom/", res.json.server_version)
    end)
  end)

  describe("users", function()
    it("lists users with total, next_token, name filter, guests and deactivated", function()
      local a = t:register("listme-a")
      t:register("listme-b")
      t:register("listme-c")
      assert(t.hs.accounts:set_profile(a.user_id, "displayname", "Zebra Person"))
      local r = t:request("GET", A2 .. "/users?name=listme&limit=2", nil, adm.access_token)
      assert.equal(200, r.status, r.body)
      assert.equal(3, r.json.total)
      assert.equal(2, #r.json.users)
      assert.equal("@listme-a:test.local", r.json.users[1].name)
      assert.equal("2", r.json.next_token)
      assert.is_false(r.json.users[1].admin)
      assert.is_false(r.json.users[1].deactivated)
      assert.is_number(r.json.users[1].creation_ts)
      r = t:request("GET", A2 .. "/users?name=listme&limit=2&from=" .. r.json.next_token, nil, adm.access_token)
      assert.equal(1, #r.json.users)
      assert.equal("@listme-c:test.local", r.json.users[1].name)
      assert.is_nil(r.json.next_token)
      -- the display name matches too; order_by and dir
      r = t:request("GET", A2 .. "/users?name=zebra", nil, adm.access_token)
      assert.equal(1, r.json.total)
      r = t:request("GET", A2 .. "/users?name=listme&order_by=name&dir=b", nil, adm.access_token)
      assert.equal("@listme-c:test.local", r.json.users[1].name)
      -- a LIKE character in the name is matched as itself
      r = t:request("GET", A2 .. "/users?name=" .. enc("%"), nil, adm.access_token)
      assert.equal(0, r.json.total)
      -- deactivated accounts only with deactivated=true
      assert.equal(200, t:request("POST", A1 .. "/deactivate/" .. enc("@listme-b:test.local"), {},
        adm.access_token).status)
      r = t:request("GET", A2 .. "/users?name=listme", nil, adm.access_token)
      assert.equal(2, r.json.total)
      r = t:request("GET", A2 .. "/users?name=listme&deactivated=true", nil, adm.access_token)
      assert.equal(3, r.json.total)
      -- guests
      assert(t.hs.accounts:register("listme-guest", nil, { guest = true }))
      r = t:request("GET", A2 .. "/users?name=listme", nil, adm.access_token)
      assert.equal(3, r.json.total)
      r = t:request("GET", A2 .. "/users?name=listme&guests=false", nil, adm.access_token)
      assert.equal(2, r.json.total)
    end)

    it("refuses bad list parameters with 400", function()
      for _, q in ipairs { "limit=-1", "limit=abc", "from=-5", "order_by=password_hash", "dir=x",
          "guests=maybe", "deactivated=1" } do
        local r = t:request("GET", A2 .. "/users?" .. q, nil, adm.access_token)
        assert.equal(400, r.status, q)
        assert.equal("M_INVALID_PARAM", r.json.errcode, q)
      end
    end)

    it("queries one user; 404 for an unknown one, 400 for another server's or a bad ID", function()
      local r = t:request("GET", A2 .. "/users/" .. enc("@plain:test.local"), nil, adm.access_token)
      assert.equal(200, r.status)
      assert.equal("@plain:test.local", r.json.name)
      assert.is_false(r.json.admin)
      assert.equal(1, r.json.devices)
      r = t:request("GET", A2 .. "/users/" .. enc("@nobody:test.local"), nil, adm.access_token)
      assert.equal(404, r.status)
      assert.equal("M_NOT_FOUND", r.json.errcode)
      r = t:request("GET", A2 .. "/users/" .. enc("@plain:elsewhere.org"), nil, adm.access_token)
      assert.equal(400, r.status)
      r = t:request("GET", A2 .. "/users/notauser", nil, adm.access_token)
      assert.equal(400, r.status)
      assert.equal("M_INVALID_PARAM", r.json.errcode)
    end)

    it("creates a user (201) who can log in, with profile and admin flag", function()
      local uid = "@created:test.local"
      local r = t:request("PUT", A2 .. "/users/" .. enc(uid), { password = "pw-created", displayname = "Created One",
        admin = true }, adm.access_token)
      assert.equal(201, r.status, r.body)
      assert.equal(uid, r.json.name)
      assert.equal("Created One", r.json.displayname)
      assert.is_true(r.json.admin)
      assert.equal(200, login(uid, "pw-created").status)
      local p = t:request("GET", V3 .. "/profile/" .. enc(uid) .. "/displayname")
      assert.equal("Created One", p.json.displayname)
    end)

    it("modifies a user (200): password logs out the devices, display name, admin flag", function()
      local u = t:register("modme")
      local room = t:create_room(u)
      local r = t:request("PUT", A2 .. "/users/" .. enc(u.user_id), { password = "changed", displayname = "Mod Me",
        admin = true }, adm.access_token)
      assert.equal(200, r.status, r.body)
      assert.equal("Mod Me", r.json.displayname)
      assert.is_true(r.json.admin)
      assert.equal(401, whoami(u.access_token).status)
      assert.equal(403, login(u.user_id, u.password).status)
      local l = login(u.user_id, "changed")
      assert.equal(200, l.status)
      -- the new display name reached the rooms the user is in
      local m = t:request("GET", V3 .. "/rooms/" .. enc(room) .. "/state/m.room.member/" .. enc(u.user_id), nil,
        l.json.access_token)
      assert.equal("Mod Me", m.json.displayname)
      -- logout_devices = false keeps the devices
      r = t:request("PUT", A2 .. "/users/" .. enc(u.user_id), { password = "again", logout_devices = false },
        adm.access_token)
      assert.equal(200, r.status)
      assert.equal(200, whoami(l.json.access_token).status)
    end)

    it("refuses bad PUT bodies with 400 and changes nothing", function()
      local u = t:register("badput")
      for _, body in ipairs { { password = 5 }, { displayname = {} }, { admin = "yes" }, { deactivated = 1 },
          { avatar_url = false }, { logout_devices = "no" }, { threepids = "x" }, { password = ("x"):rep(600) } } do
        local r = t:request("PUT", A2 .. "/users/" .. enc(u.user_id), body, adm.access_token)
        assert.equal(400, r.status, r.body)
        assert.equal("M_INVALID_PARAM", r.json.errcode)
      end
      local r = t:request("PUT", A2 .. "/users/" .. enc("@new:elsewhere.org"), { password = "x" }, adm.access_token)
      assert.equal(400, r.status)
      r = t:request("PUT", A2 .. "/users/" .. enc("@Bad Name:test.local"), { password = "x" }, adm.access_token)
      assert.equal(400, r.status)
      r = t:request("PUT", A2 .. "/users/" .. enc(u.user_id), "not json", adm.access_token)
      assert.equal(400, r.status)
      assert.equal(200, whoami(u.access_token).status)
      assert.equal(200, login(u.user_id, u.password).status)
      assert.is_false(t.hs.accounts:user(u.user_id).admin)
    end)

    it("an admin may not demote themselves", function()
      local r = t:request("PUT", A2 .. "/users/" .. enc(adm.user_id), { admin = false }, adm.access_token)
      assert.equal(400, r.status)
      r = t:request("PUT", A1 .. "/users/" .. enc(adm.user_id) .. "/admin", { admin = false }, adm.access_token)
      assert.equal(400, r.status)
      assert.is_true(t.hs.accounts:user(adm.user_id).admin)
    end)

    it("deactivates through PUT deactivated=true and reactivates with a password", function()
      local u = t:register("reactivate")
      local r = t:request("PUT", A2 .. "/users/" .. enc(u.user_id), { deactivated = true }, adm.access_token)
      assert.equal(200, r.status, r.body)
      assert.is_true(r.json.deactivated)
      assert.equal(401, whoami(u.access_token).status)
      r = t:request("PUT", A2 .. "/users/" .. enc(u.user_id), { deactivated = false }, adm.access_token)
      assert.equal(400, r.status)
      r = t:request("PUT", A2 .. "/users/" .. enc(u.user_id), { deactivated = false, password = "back" },
        adm.access_token)
      assert.equal(200, r.status, r.body)
      assert.is_false(r.json.deactivated)
      assert.equal(200, login(u.user_id, "back").status)
    end)
  end)

  describe("POST /deactivate", function()
    it("deactivates: tokens gone, rooms left, login refused, profile erased", function()
      local u = t:register("deact")
      assert(t.hs.accounts:set_profile(u.user_id, "displayname", "Deact"))
      local owner = t:fresh("owner")
      local room = t:create_room(owner, { preset = "public_chat" })
      t:join(u, room)
      local r = t:request("POST", A1 .. "/deactivate/" .. enc(u.user_id), { erase = true }, adm.access_token)
      assert.equal(200, r.status, r.body)
      assert.is_string(r.json.id_server_unbind_result)
      assert.equal(401, whoami(u.access_token).status)
      local l = login(u.user_id, u.password)
      assert.equal(403, l.status)
      assert.equal("M_USER_DEACTIVATED", l.json.errcode)
      local m = t:request("GET", V3 .. "/rooms/" .. enc(room) .. "/state/m.room.member/" .. enc(u.user_id), nil,
        owner.access_token)
      assert.equal("leave", m.json.membership)
      assert.is_nil(t.hs.accounts:user(u.user_id).displayname)
      r = t:request("GET", A2 .. "/users/" .. enc(u.user_id), nil, adm.access_token)
      assert.is_true(r.json.deactivated)
    end)

    it("answers 404 for an unknown user, 400 for another server's or a bad body", function()
      local r = t:request("POST", A1 .. "/deactivate/" .. enc("@ghost:test.local"), {}, adm.access_token)
      assert.equal(404, r.status)
      r = t:request("POST", A1 .. "/deactivate/" .. enc("@x:elsewhere.org"), {}, adm.access_token)
      assert.equal(400, r.status)
      r = t:request("POST", A1 .. "/deactivate/" .. enc(plain.user_id), { erase = "yes" }, adm.access_token)
      assert.equal(400, r.status)
      assert.equal(200, whoami(plain.access_token).status)
    end)
  end)

  describe("POST /reset_password", function()
    it("sets the password and logs out every device (unless logout_devices = false)", function()
      local u = t:register("reset")
      local r = t:request("POST", A1 .. "/reset_password/" .. enc(u.user_id), { new_password = "fresh",
        logout_devices = false }, adm.access_token)
      assert.equal(200, r.status, r.body)
      assert.equal(200, whoami(u.access_token).status)
      assert.equal(200, login(u.user_id, "fresh").status)
      r = t:request("POST", A1 .. "/reset_password/" .. enc(u.user_id), { new_password = "fresher" },
        adm.access_token)
      assert.equal(200, r.status)
      assert.equal(401, whoami(u.access_token).status)
      assert.equal(403, login(u.user_id, "fresh").status)
      assert.equal(200, login(u.user_id, "fresher").status)
    end)

    it("refuses a missing or bad new_password, an unknown or remote user", function()
      local r = t:request("POST", A1 .. "/reset_password/" .. enc(plain.user_id), {}, adm.access_token)
      assert.equal(400, r.status)
      assert.equal("M_MISSING_PARAM", r.json.errcode)
      r = t:request("POST", A1 .. "/reset_password/" .. enc(plain.user_id), { new_password = 1 }, adm.access_token)
      assert.equal(400, r.status)
      r = t:request("POST", A1 .. "/reset_password/" .. enc("@ghost:test.local"), { new_password = "x" },
        adm.access_token)
      assert.equal(404, r.status)
      r = t:request("POST", A1 .. "/reset_password/" .. enc("@x:elsewhere.org"), { new_password = "x" },
        adm.access_token)
      assert.equal(400, r.status)
      assert.equal(200, login(plain.user_id, plain.password).status)
    end)
  end)

  describe("admin flag and whois", function()
    it("reads and sets the admin flag", function()
      local u = t:register("flag")
      local path = A1 .. "/users/" .. enc(u.user_id) .. "/admin"
      assert.same({ admin = false }, t:request("GET", path, nil, adm.access_token).json)
      assert.equal(200, t:request("PUT", path, { admin = true }, adm.access_token).status)
      assert.same({ admin = true }, t:request("GET", path, nil, adm.access_token).json)
      -- the new admin may use the API
      assert.equal(200, t:request("GET", A2 .. "/users", nil, u.access_token).status)
      local r = t:request("PUT", path, { admin = "true" }, adm.access_token)
      assert.equal(400, r.status)
      r = t:request("PUT", path, {}, adm.access_token)
      assert.equal(400, r.status)
      r = t:request("GET", A1 .. "/users/" .. enc("@x:elsewhere.org") .. "/admin", nil, adm.access_token)
      assert.equal(400, r.status)
      r = t:request("GET", A1 .. "/users/" .. enc("@ghost:test.local") .. "/admin", nil, adm.access_token)
      assert.equal(404, r.status)
    end)

    it("whois lists the user's devices", function()
      local r = t:request("GET", A1 .. "/whois/" .. enc(plain.user_id), nil, adm.access_token)
      assert.equal(200, r.status)
      assert.equal(plain.user_id, r.json.user_id)
      assert.is_table(r.json.devices[plain.device_id].sessions[1].connections)
      r = t:request("GET", A1 .. "/whois/" .. enc("@x:elsewhere.org"), nil, adm.access_token)
      assert.equal(400, r.status)
    end)
  end)

  describe("devices", function()
    it("lists, shows, renames and deletes a user's devices (deleting logs them out)", function()
      local u = t:register("devs")
      local second = login(u.user_id, u.password).json
      local base = A2 .. "/users/" .. enc(u.user_id)
      local r = t:request("GET", base .. "/devices", nil, adm.access_token)
      assert.equal(200, r.status, r.body)
      assert.equal(2, r.json.total)
      assert.equal(u.user_id, r.json.devices[1].user_id)
      r = t:request("PUT", base .. "/devices/" .. enc(u.device_id), { display_name = "Laptop" }, adm.access_token)
      assert.equal(200, r.status, r.body)
      r = t:request("GET", base .. "/devices/" .. enc(u.device_id), nil, adm.access_token)
      assert.equal("Laptop", r.json.display_name)
      r = t:request("DELETE", base .. "/devices/" .. enc(u.device_id), nil, adm.access_token)
      assert.equal(200, r.status)
      assert.equal(401, whoami(u.access_token).status)
      assert.equal(200, whoami(second.access_token).status)
      r = t:request("POST", base .. "/delete_devices", { devices = { second.device_id } }, adm.access_token)
      assert.equal(200, r.status, r.body)
      assert.equal(401, whoami(second.access_token).status)
      assert.equal(0, t:request("GET", base .. "/devices", nil, adm.access_token).json.total)
    end)

    it("answers 404 for an unknown device or user, 400 for bad input", function()
      local base = A2 .. "/users/" .. enc(plain.user_id)
      assert.equal(404, t:request("GET", base .. "/devices/NOPE", nil, adm.access_token).status)
      assert.equal(404, t:request("PUT", base .. "/devices/NOPE", { display_name = "x" }, adm.access_token).status)
      assert.equal(404, t:request("GET", A2 .. "/users/" .. enc("@ghost:test.local") .. "/devices", nil,
        adm.access_token).status)
      assert.equal(400, t:request("GET", A2 .. "/users/" .. enc("@x:elsewhere.org") .. "/devices", nil,
        adm.access_token).status)
      assert.equal(400, t:request("PUT", base .. "/devices/" .. enc(plain.device_id), { display_name = 5 },
        adm.access_token).status)
      assert.equal(400, t:request("POST", base .. "/delete_devices", { devices = "all" }, adm.access_token).status)
      assert.equal(400, t:request("POST", base .. "/delete_devices", { devices = { 5 } }, adm.access_token).status)
      assert.equal(200, whoami(plain.access_token).status)
    end)
  end)

  describe("rooms", function()
    local owner, room
    setup(function()
      owner = t:register("roomowner")
      room = t:create_room(owner, { preset = "public_chat", name = "Admin Listed Room", room_alias_name = "listed",
        visibility = "public" })
      local m = t:register("roommember")
      t:join(m, room)
    end)

    it("lists rooms with their details, search_term and paging", function()
      local r = t:request("GET", A1 .. "/rooms?search_term=admin%20listed", nil, adm.access_token)
      assert.equal(200, r.status, r.body)
      assert.equal(1, r.json.total_rooms)
      local info = r.json.rooms[1]
      assert.equal(room, info.room_id)
      assert.equal("Admin Listed Room", info.name)
      assert.equal("#listed:test.local", info.canonical_alias)
      assert.equal(2, info.joined_members)
      assert.equal(2, info.joined_local_members)
      assert.equal(owner.user_id, info.creator)
      assert.is_true(info.public)
      assert.is_true(info.federatable)
      assert.equal("public", info.join_rules)
      assert.is_string(info.version)
      assert.is_number(info.state_events)
      assert.is_nil(r.json.next_batch)
      -- paging over every room
      local all = t:request("GET", A1 .. "/rooms", nil, adm.access_token).json
      assert.is_true(all.total_rooms >= 1)
      local p = t:request("GET", A1 .. "/rooms?limit=1&order_by=joined_members", nil, adm.access_token).json
      assert.equal(1, #p.rooms)
      if all.total_rooms > 1 then assert.equal(1, p.next_batch) end
      for _, q in ipairs { "order_by=secret", "dir=sideways", "limit=0", "from=x" } do
        r = t:request("GET", A1 .. "/rooms?" .. q, nil, adm.access_token)
        assert.equal(400, r.status, q)
      end
    end)

    it("shows one room, its members and its state; 404 for an unknown room, 400 for a bad ID", function()
      local r = t:request("GET", A1 .. "/rooms/" .. enc(room), nil, adm.access_token)
      assert.equal(200, r.status)
      assert.equal("Admin Listed Room", r.json.name)
      r = t:request("GET", A1 .. "/rooms/" .. enc(room) .. "/members", nil, adm.access_token)
      assert.equal(2, r.json.total)
      assert.same({ "@roommember:test.local", "@roomowner:test.local" }, r.json.members)
      r = t:request("GET", A1 .. "/rooms/" .. enc(room) .. "/state", nil, adm.access_token)
      assert.is_true(#r.json.state >= 5)
      local types = {}
      for _, ev in ipairs(r.json.state) do types[ev.type] = true end
      assert.is_true(types["m.room.create"] and types["m.room.name"] and true)
      r = t:request("GET", A1 .. "/rooms/" .. enc("!nowhere:test.local"), nil, adm.access_token)
      assert.equal(404, r.status)
      r = t:request("GET", A1 .. "/rooms/notaroom/members", nil, adm.access_token)
      assert.equal(400, r.status)
    end)
  end)

  describe("deleting rooms", function()
    it("kicks the local members, moves them to a new room, blocks joins, removes the alias", function()
      local owner = t:register("delowner")
      local member = t:register("delmember")
      local room = t:create_room(owner, { preset = "public_chat", room_alias_name = "doomed", visibility = "public" })
      t:join(member, room)
      local r = t:request("DELETE", A1 .. "/rooms/" .. enc(room), { new_room_user_id = adm.user_id,
        room_name = "Moved", message = "This room was closed", block = true, purge = false }, adm.access_token)
      assert.equal(200, r.status, r.body)
      table.sort(r.json.kicked_users)
      assert.same({ "@delmember:test.local", "@delowner:test.local" }, r.json.kicked_users)
      assert.same({}, r.json.failed_to_kick_users)
      assert.same({ "#doomed:test.local" }, r.json.local_aliases)
      local new_room = r.json.new_room_id
      assert.is_string(new_room)
      -- nobody of this server is in the old room any more
      local members = t:request("GET", A1 .. "/rooms/" .. enc(room) .. "/members", nil, adm.access_token).json
      assert.equal(0, members.total)
      -- both are in the new room, with the message
      local nm = t:request("GET", A1 .. "/rooms/" .. enc(new_room) .. "/members", nil, adm.access_token).json
      assert.equal(3, nm.total)
      local msgs = t:request("GET", V3 .. "/rooms/" .. enc(new_room) .. "/messages?dir=b&limit=5", nil,
        member.access_token).json
      assert.equal("This room was closed", msgs.chunk[1].content.body)
      -- the alias moved, joins are refused
      local a = t:request("GET", V3 .. "/directory/room/" .. enc("#doomed:test.local"))
      assert.equal(new_room, a.json.room_id)
      local j = t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/join", {}, member.access_token)
      assert.equal(403, j.status)
      assert.equal("M_FORBIDDEN", j.json.errcode)
      local b = t:request("GET", A1 .. "/rooms/" .. enc(room) .. "/block", nil, adm.access_token).json
      assert.is_true(b.block)
      assert.equal(adm.user_id, b.user_id)
      -- unblocking lets them back in
      assert.equal(200, t:request("PUT", A1 .. "/rooms/" .. enc(room) .. "/block", { block = false },
        adm.access_token).status)
      j = t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/join", {}, member.access_token)
      assert.equal(200, j.status, j.body)
    end)

    it("the v2 form answers a delete_id whose status tells the result; purge removes the alias", function()
      local owner = t:register("delowner2")
      local room = t:create_room(owner, { preset = "public_chat", room_alias_name = "doomed2" })
      local r = t:request("DELETE", A2 .. "/rooms/" .. enc(room), {}, adm.access_token)
      assert.equal(200, r.status, r.body)
      assert.is_string(r.json.delete_id)
      local s = t:request("GET", A2 .. "/rooms/delete_status/" .. r.json.delete_id, nil, adm.access_token)
      assert.equal(200, s.status)
      assert.equal("complete", s.json.status)
      assert.same({ owner.user_id }, s.json.shutdown_room.kicked_users)
      s = t:request("GET", A2 .. "/rooms/" .. enc(room) .. "/delete_status", nil, adm.access_token)
      assert.equal(r.json.delete_id, s.json.results[1].delete_id)
      assert.equal(404, t:request("GET", V3 .. "/directory/room/" .. enc("#doomed2:test.local")).status)
      -- purged (the default): the room is gone, a join finds nothing; not blocked, so not a 403
      local j = t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/join", {}, owner.access_token)
      assert.equal(404, j.status, j.body)
      assert.equal("M_NOT_FOUND", j.json.errcode)
      assert.is_nil(t.hs.store:room_nid(room))
      assert.equal(404, t:request("GET", A2 .. "/rooms/delete_status/nope", nil, adm.access_token).status)
    end)

    it("blocks an unknown room with block = true; 404 without; 400 for bad input", function()
      local r = t:request("DELETE", A1 .. "/rooms/" .. enc("!unknown:test.local"), { block = true }, adm.access_token)
      assert.equal(200, r.status, r.body)
      assert.same({}, r.json.kicked_users)
      r = t:request("DELETE", A1 .. "/rooms/" .. enc("!unknown2:test.local"), {}, adm.access_token)
      assert.equal(404, r.status)
      assert.is_nil(t.hs.store:room_blocked("!unknown2:test.local"))
      local owner = t:register("delowner3")
      local room = t:create_room(owner)
      for _, body in ipairs { { block = "yes" }, { purge = 1 }, { new_room_user_id = "@x:elsewhere.org" },
          { new_room_user_id = 5 }, { message = {} } } do
        r = t:request("DELETE", A1 .. "/rooms/" .. enc(room), body, adm.access_token)
        assert.equal(400, r.status, r.body)
      end
      r = t:request("DELETE", A1 .. "/rooms/notaroom", {}, adm.access_token)
      assert.equal(400, r.status)
      -- nothing happened to the room
      local m = t:request("GET", A1 .. "/rooms/" .. enc(room) .. "/members", nil, adm.access_token).json
      assert.same({ owner.user_id }, m.members)
      assert.is_nil(t.hs.store:room_blocked(room))
    end)

    it("a blocked room refuses invites of local users", function()
      local owner = t:register("blockowner")
      local room = t:create_room(owner)
      assert.equal(200, t:request("PUT", A1 .. "/rooms/" .. enc(room) .. "/block", { block = true },
        adm.access_token).status)
      local r = t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/invite", { user_id = plain.user_id },
        owner.access_token)
      assert.equal(403, r.status)
      r = t:request("PUT", A1 .. "/rooms/" .. enc(room) .. "/block", { block = "no" }, adm.access_token)
      assert.equal(400, r.status)
    end)
  end)

  describe("server notices", function()
    it("creates the notices room on the first notice, reuses it after", function()
      local u = t:register("noticed")
      local r = t:request("POST", A1 .. "/send_server_notice", { user_id = u.user_id,
        content = { msgtype = "m.server_notice", body = "Scheduled maintenance", server_notice_type = "m.x" } },
        adm.access_token)
      assert.equal(200, r.status, r.body)
      assert.is_string(r.json.event_id)
      -- the user is invited to a room from the notices user, tagged m.server_notice
      local s = t:sync(u)
      local invited = s.rooms and s.rooms.invite or {}
      local room_id = next(invited)
      assert.is_string(room_id)
      assert.equal(room_id, t.hs.store:server_notice_room(u.user_id))
      local tags = t:request("GET", V3 .. "/user/" .. enc(u.user_id) .. "/rooms/" .. enc(room_id) .. "/tags", nil,
        u.access_token)
      assert.is_table(tags.json.tags["m.server_notice"])
      t:join(u, room_id)
      local msgs = t:request("GET", V3 .. "/rooms/" .. enc(room_id) .. "/messages?dir=b&limit=3", nil,
        u.access_token).json
      local notice = tesths.find_type(msgs.chunk, "m.room.message")
      assert.equal("m.server_notice", notice.content.msgtype)
      assert.equal("Scheduled maintenance", notice.content.body)
      assert.equal("@notices:test.local", notice.sender)
      -- the second notice goes to the same room
      r = t:request("POST", A1 .. "/send_server_notice", { user_id = u.user_id,
        content = { msgtype = "m.server_notice", body = "Done" } }, adm.access_token)
      assert.equal(200, r.status)
      assert.equal(room_id, t.hs.store:server_notice_room(u.user_id))
      msgs = t:request("GET", V3 .. "/rooms/" .. enc(room_id) .. "/messages?dir=b&limit=1", nil,
        u.access_token).json
      assert.equal("Done", msgs.chunk[1].content.body)
      -- the user may not write in it, nor leave it
      local w = t:send(u.access_token, room_id, { msgtype = "m.text", body = "hi" })
      assert.equal(403, w.status)
      local l = t:request("POST", V3 .. "/rooms/" .. enc(room_id) .. "/leave", {}, u.access_token)
      assert.equal(403, l.status)
      assert.equal("M_CANNOT_LEAVE_SERVER_NOTICE_ROOM", l.json.errcode)
      -- other rooms are left as usual
      local other = t:create_room(u)
      assert.equal(200, t:request("POST", V3 .. "/rooms/" .. enc(other) .. "/leave", {}, u.access_token).status)
    end)

    it("the invite to the notices room cannot be rejected; a new room comes when the user is not in it", function()
      local u = t:register("rejecter")
      local r = t:request("POST", A1 .. "/send_server_notice", { user_id = u.user_id,
        content = { msgtype = "m.server_notice", body = "first" } }, adm.access_token)
      assert.equal(200, r.status, r.body)
      local room_id = t.hs.store:server_notice_room(u.user_id)
      local l = t:request("POST", V3 .. "/rooms/" .. enc(room_id) .. "/leave", {}, u.access_token)
      assert.equal(403, l.status)
      assert.equal("M_CANNOT_LEAVE_SERVER_NOTICE_ROOM", l.json.errcode)
      -- an admin shuts the room down: the next notice makes a new room
      assert.equal(200, t:request("DELETE", A1 .. "/rooms/" .. enc(room_id), {}, adm.access_token).status)
      r = t:request("POST", A1 .. "/send_server_notice", { user_id = u.user_id,
        content = { msgtype = "m.server_notice", body = "second" } }, adm.access_token)
      assert.equal(200, r.status, r.body)
      assert.not_equal(room_id, t.hs.store:server_notice_room(u.user_id))
    end)

    it("refuses bad input with 400", function()
      for _, body in ipairs { {}, { user_id = "@x:elsewhere.org", content = { body = "x" } },
          { user_id = plain.user_id }, { user_id = plain.user_id, content = "x" }, { user_id = 5, content = {} },
          { user_id = plain.user_id, content = { body = "x" }, type = 7 } } do
        local r = t:request("POST", A1 .. "/send_server_notice", body, adm.access_token)
        assert.equal(400, r.status, r.body)
      end
      assert.is_nil(t.hs.store:server_notice_room(plain.user_id))
      local r = t:request("POST", A1 .. "/send_server_notice", { user_id = "@ghost:test.local",
        content = { body = "x" } }, adm.access_token)
      assert.equal(404, r.status)
    end)
  end)
end)

describe("admin API without server notices configured", function()
  local t
  setup(function() t = tesths.start() end)
  teardown(function() t:stop() end)

  it("answers 400 to send_server_notice", function()
    assert(t.hs.accounts:register("root", "pw", { admin = true }))
    local adm = assert(t.hs.accounts:login("@root:test.local", "pw"))
    local u = t:register("someone")
    local r = t:request("POST", A1 .. "/send_server_notice", { user_id = u.user_id, content = { body = "x" } },
      adm.access_token)
    assert.equal(400, r.status)
    assert.matches("not enabled", r.json.error)
  end)
end)
