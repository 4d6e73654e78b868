-- Guest access (Client-Server API "Guest Access"): guest accounts from
-- /register?kind=guest when allow_guest_access is on; what guests may and
-- may not do; the upgrade to a full account.
local tesths = require "support.hs"
local enc = tesths.enc

local V3 = "/_matrix/client/v3"

describe("guest access", function()
  it("is off by default: 403 M_GUEST_ACCESS_FORBIDDEN", function()
    local t = tesths.start()
    local r = t:request("POST", V3 .. "/register?kind=guest", {})
    t:stop()
    assert.equal(403, r.status)
    assert.equal("M_GUEST_ACCESS_FORBIDDEN", r.json.errcode)
  end)

  describe("with allow_guest_access = true", function()
    local t, alice
    setup(function()
      t = tesths.start { allow_guest_access = true }
      alice = t:fresh("ga")
    end)
    teardown(function() t:stop() end)

    local function guest()
      local r = t:request("POST", V3 .. "/register?kind=guest", { initial_device_display_name = "visitor" })
      assert.equal(200, r.status, r.body)
      return r.json
    end

    local function room(state)
      local id = t:create_room(alice, { preset = "public_chat", room_alias_name = state.alias })
      for etype, content in pairs(state) do
        if etype ~= "alias" then
          local r = t:request("PUT", V3 .. "/rooms/" .. enc(id) .. "/state/" .. etype .. "/", content,
            alice.access_token)
          assert.equal(200, r.status, r.body)
        end
      end
      return id
    end

    it("registers a guest without user-interactive auth; whoami says is_guest", function()
      local g = guest()
      assert.is_string(g.access_token)
      assert.is_string(g.device_id)
      assert.matches("^@[a-z0-9]+:test%.local$", g.user_id)
      local w = t:request("GET", V3 .. "/account/whoami", nil, g.access_token)
      assert.equal(200, w.status)
      assert.is_true(w.json.is_guest)
      assert.is_false(t:request("GET", V3 .. "/account/whoami", nil, alice.access_token).json.is_guest)
    end)

    it("refuses guests everything outside the guest access list", function()
      local g = guest()
      local rid = room {}
      local refused = {
        { "POST", V3 .. "/createRoom", {} },
        { "POST", V3 .. "/rooms/" .. enc(rid) .. "/invite", { user_id = alice.user_id } },
        { "POST", V3 .. "/rooms/" .. enc(rid) .. "/ban", { user_id = alice.user_id } },
        { "POST", V3 .. "/rooms/" .. enc(rid) .. "/upgrade", { new_version = "11" } },
        { "PUT", V3 .. "/directory/room/" .. enc("#g:test.local"), { room_id = rid } },
        { "GET", V3 .. "/account/3pid" },
        { "POST", V3 .. "/account/password", { new_password = "x" } },
        { "POST", V3 .. "/account/deactivate", {} },
        { "PUT", V3 .. "/profile/" .. enc(g.user_id) .. "/avatar_url", { avatar_url = "mxc://a/b" } },
        { "POST", V3 .. "/search", { search_categories = { room_events = { search_term = "x" } } } },
        { "PUT", V3 .. "/presence/" .. enc(g.user_id) .. "/status", { presence = "online" } },
      }
      for _, c in ipairs(refused) do
        local r = t:request(c[1], c[2], c[3], g.access_token)
        assert.equal(403, r.status, c[1] .. " " .. c[2])
        assert.equal("M_GUEST_ACCESS_FORBIDDEN", r.json.errcode, c[1] .. " " .. c[2])
      end
    end)

    it("lets guests read a world-readable room without joining it", function()
      local g = guest()
      local open = room { ["m.room.history_visibility"] = { history_visibility = "world_readable" } }
      local ev = t:send(alice.access_token, open, { msgtype = "m.text", body = "hello, world" })
      assert.equal(200, ev.status)
      local r = t:request("GET", V3 .. "/rooms/" .. enc(open) .. "/messages?dir=b&limit=10", nil, g.access_token)
      assert.equal(200, r.status, r.body)
      assert.equal("hello, world", tesths.find_type(r.json.chunk, "m.room.message").content.body)
      assert.equal(200, t:request("GET", V3 .. "/rooms/" .. enc(open) .. "/state", nil, g.access_token).status)
      assert.equal(200, t:request("GET", V3 .. "/rooms/" .. enc(open) .. "/state/m.room.join_rules/", nil,
        g.access_token).status)
      assert.equal(200, t:request("GET", V3 .. "/rooms/" .. enc(open) .. "/event/" .. enc(ev.json.event_id), nil,
        g.access_token).status)
      -- a room that is not world-readable is not
      local closed = room {}
      r = t:request("GET", V3 .. "/rooms/" .. enc(closed) .. "/messages?dir=b", nil, g.access_token)
      assert.equal(403, r.status)
    end)

    it("lets guests join rooms whose guest_access is can_join, and send there; other rooms are refused", function()
      local g = guest()
      local welcoming = room { ["m.room.guest_access"] = { guest_access = "can_join" }, alias = "welcoming" }
      local r = t:request("POST", V3 .. "/join/" .. enc("#welcoming:test.local"), {}, g.access_token)
      assert.equal(200, r.status, r.body)
      assert.equal(welcoming, r.json.room_id)
      r = t:send(g.access_token, welcoming, { msgtype = "m.text", body = "a guest speaks" })
      assert.equal(200, r.status, r.body)
      local sync = t:sync(g)
      assert.is_table(sync.rooms.join[welcoming])
      assert.equal(200, t:request("POST", V3 .. "/rooms/" .. enc(welcoming) .. "/leave", {}, g.access_token).status)

      local closed = room { ["m.room.guest_access"] = { guest_access = "forbidden" }, alias = "closed-to-guests" }
      for _, path in ipairs { "/rooms/" .. enc(closed) .. "/join", "/join/" .. enc("#closed-to-guests:test.local"),
          "/join/" .. enc(room {}) } do
        r = t:request("POST", V3 .. path, {}, g.access_token)
        assert.equal(403, r.status, path)
        assert.equal("M_GUEST_ACCESS_FORBIDDEN", r.json.errcode, path)
      end
      r = t:request("POST", V3 .. "/join/" .. enc("!unknown:test.local"), {}, g.access_token)
      assert.equal(404, r.status)
    end)

    it("makes joined guests leave when the room's guest_access stops being can_join", function()
      local g = guest()
      local bob = t:fresh("ga")
      local rid = room { ["m.room.guest_access"] = { guest_access = "can_join" } }
      t:join(bob, rid)
      assert.equal(200, t:request("POST", V3 .. "/rooms/" .. enc(rid) .. "/join", {}, g.access_token).status)
      local r = t:request("PUT", V3 .. "/rooms/" .. enc(rid) .. "/state/m.room.guest_access/",
        { guest_access = "forbidden" }, alice.access_token)
      assert.equal(200, r.status)
      local membership
      for _ = 1, 50 do
        membership = t:request("GET", V3 .. "/rooms/" .. enc(rid) .. "/state/m.room.member/" .. enc(g.user_id), nil,
          alice.access_token).json.membership
        if membership ~= "join" then break end
        t:run(function() t:sleep(20) end)
      end
      assert.equal("leave", membership)
      -- full members stay
      assert.equal("join", t:request("GET", V3 .. "/rooms/" .. enc(rid) .. "/state/m.room.member/"
        .. enc(bob.user_id), nil, alice.access_token).json.membership)
    end)

    it("lets guests keep their own account data and display name", function()
      local g = guest()
      local r = t:request("PUT", V3 .. "/user/" .. enc(g.user_id) .. "/account_data/org.example.x", { a = 1 },
        g.access_token)
      assert.equal(200, r.status, r.body)
      r = t:request("GET", V3 .. "/user/" .. enc(g.user_id) .. "/account_data/org.example.x", nil, g.access_token)
      assert.same({ a = 1 }, r.json)
      r = t:request("PUT", V3 .. "/profile/" .. enc(g.user_id) .. "/displayname", { displayname = "Visitor" },
        g.access_token)
      assert.equal(200, r.status, r.body)
      assert.equal(200, t:request("GET", V3 .. "/capabilities", nil, g.access_token).status)
      assert.equal(200, t:request("GET", V3 .. "/pushrules/", nil, g.access_token).status)
    end)

    it("upgrades a guest to a full account by registering with its guest token", function()
      local g = guest()
      local localpart = g.user_id:match("^@([^:]+)")
      local body = { username = localpart, password = "now-a-member", guest_access_token = g.access_token }
      local r = t:request("POST", V3 .. "/register", body)
      assert.equal(401, r.status)   -- the usual user-interactive auth
      body.auth = { type = "m.login.dummy", session = r.json.session }
      r = t:request("POST", V3 .. "/register", body)
      assert.equal(200, r.status, r.body)
      assert.equal(g.user_id, r.json.user_id)
      assert.is_false(t:request("GET", V3 .. "/account/whoami", nil, r.json.access_token).json.is_guest)
      -- the guest token is now a full account's
      assert.equal(200, t:request("POST", V3 .. "/createRoom", {}, g.access_token).status)
      r = t:request("POST", V3 .. "/login", { type = "m.login.password",
        identifier = { type = "m.id.user", user = localpart }, password = "now-a-member" })
      assert.equal(200, r.status)
      -- not a guest any more: the token cannot upgrade again
      r = t:request("POST", V3 .. "/register", body)
      assert.equal(403, r.status)
      assert.equal("M_FORBIDDEN", r.json.errcode)
    end)

    it("refuses an upgrade with another username, an unknown token or none at all", function()
      local g = guest()
      local dummy = { type = "m.login.dummy" }
      local r = t:request("POST", V3 .. "/register", { username = "someone-else", password = "p",
        guest_access_token = g.access_token, auth = dummy })
      assert.equal(403, r.status)
      assert.equal("M_FORBIDDEN", r.json.errcode)
      r = t:request("POST", V3 .. "/register", { password = "p", guest_access_token = g.access_token, auth = dummy })
      assert.equal("M_MISSING_PARAM", r.json.errcode)
      r = t:request("POST", V3 .. "/register", { username = "x", guest_access_token = "bogus", auth = dummy })
      assert.equal(401, r.status)
      assert.equal("M_UNKNOWN_TOKEN", r.json.errcode)
      r = t:request("POST", V3 .. "/register", { username = "x", guest_access_token = 5, auth = dummy })
      assert.equal("M_BAD_JSON", r.json.errcode)
      -- without the token the guest's ID is taken
      r = t:request("POST", V3 .. "/register", { username = g.user_id:match("^@([^:]+)"), password = "p",
        auth = dummy })
      assert.equal("M_USER_IN_USE", r.json.errcode)
      assert.is_true(t:request("GET", V3 .. "/account/whoami", nil, g.access_token).json.is_guest)
    end)
  end)
end)
