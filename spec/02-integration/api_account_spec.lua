-- The account endpoints over a real server: capabilities, login, register,
-- logout, whoami, profile, push rules.
local tesths = require "support.hs"
local enc = tesths.enc

local V3 = "/_matrix/client/v3"

describe("account API", function()
  local t
  setup(function() t = tesths.start() end)
  teardown(function() t:stop() end)

  local n = 0
  local function fresh(prefix)
    n = n + 1
    return (prefix or "u") .. n
  end

  describe("capabilities", function()
    it("lists room versions, profile and password capabilities", function()
      local u = t:register(fresh())
      local r = t:request("GET", V3 .. "/capabilities", nil, u.access_token)
      assert.equal(200, r.status)
      local c = r.json.capabilities
      assert.equal("11", c["m.room_versions"].default)
      assert.equal("stable", c["m.room_versions"].available["11"])
      assert.equal("stable", c["m.room_versions"].available["12"])
      assert.is_true(c["m.change_password"].enabled)
      assert.is_true(c["m.set_displayname"].enabled)
      assert.is_true(c["m.set_avatar_url"].enabled)
      assert.equal("M_MISSING_TOKEN", t:request("GET", V3 .. "/capabilities").json.errcode)
    end)
  end)

  describe("login", function()
    it("lists the password flow", function()
      local r = t:request("GET", V3 .. "/login")
      assert.equal(200, r.status)
      assert.same({ { type = "m.login.password" } }, r.json.flows)
    end)

    it("logs in with an m.id.user identifier (localpart or full ID)", function()
      local u = t:register(fresh())
      local local_part = u.user_id:match("^@([^:]+)")
      for _, name in ipairs { local_part, u.user_id } do
        local r = t:request("POST", V3 .. "/login", { type = "m.login.password",
          identifier = { type = "m.id.user", user = name }, password = u.password,
          initial_device_display_name = "phone" })
        assert.equal(200, r.status)
        assert.equal(u.user_id, r.json.user_id)
        assert.is_string(r.json.access_token)
        assert.is_string(r.json.device_id)
        assert.equal("test.local", r.json.home_server)
        assert.is_string(r.json.well_known["m.homeserver"].base_url)
        local w = t:request("GET", V3 .. "/account/whoami", nil, r.json.access_token)
        assert.equal(u.user_id, w.json.user_id)
        assert.equal(r.json.device_id, w.json.device_id)
        assert.is_false(w.json.is_guest)
      end
    end)

    it("accepts the legacy top-level user and the r0 path", function()
      local u = t:register(fresh())
      local r = t:request("POST", "/_matrix/client/r0/login", { type = "m.login.password",
        user = u.user_id:upper():gsub("^@(.-):.*$", "@%1:test.local"), password = u.password })
      assert.equal(200, r.status)
      assert.equal(u.user_id, r.json.user_id)
    end)

    it("reuses a device_id: same device, new token", function()
      local u = t:register(fresh())
      local body = { type = "m.login.password", identifier = { type = "m.id.user", user = u.user_id },
        password = u.password, device_id = "MYDEVICE" }
      local a = t:request("POST", V3 .. "/login", body)
      local b = t:request("POST", V3 .. "/login", body)
      assert.equal("MYDEVICE", a.json.device_id)
      assert.equal("MYDEVICE", b.json.device_id)
      assert.not_equal(a.json.access_token, b.json.access_token)
      assert.equal("MYDEVICE", t:request("GET", V3 .. "/account/whoami", nil, b.json.access_token).json.device_id)
    end)

    it("refuses a wrong password and an unknown user alike: 403 M_FORBIDDEN", function()
      local u = t:register(fresh())
      for _, body in ipairs {
        { type = "m.login.password", identifier = { type = "m.id.user", user = u.user_id }, password = "nope" },
        { type = "m.login.password", identifier = { type = "m.id.user", user = "nobody" }, password = "x" },
        { type = "m.login.password", identifier = { type = "m.id.user", user = "@a:elsewhere.org" }, password = "x" },
      } do
        local r = t:request("POST", V3 .. "/login", body)
        assert.equal(403, r.status)
        assert.equal("M_FORBIDDEN", r.json.errcode)
      end
    end)

    it("answers bad requests with the spec's errors", function()
      local r = t:request("POST", V3 .. "/login", { type = "m.login.token", token = "x" })
      assert.equal(400, r.status)
      assert.equal("M_UNKNOWN", r.json.errcode)
      r = t:request("POST", V3 .. "/login", { type = "m.login.password", identifier = { type = "m.id.user" },
        password = "x" })
      assert.equal(400, r.status)
      assert.equal("M_MISSING_PARAM", r.json.errcode)
      r = t:request("POST", V3 .. "/login", { type = "m.login.password", user = "someone" })
      assert.equal("M_MISSING_PARAM", r.json.errcode)
      r = t:request("POST", V3 .. "/login", { password = "x" })
      assert.equal("M_MISSING_PARAM", r.json.errcode)
      r = t:request("POST", V3 .. "/login", { type = "m.login.password", user = 5, password = "x" })
      assert.equal(400, r.status)
      assert.equal("M_BAD_JSON", r.json.errcode)
      r = t:request("POST", V3 .. "/login", "{not json")
      assert.equal(400, r.status)
      assert.equal("M_NOT_JSON", r.json.errcode)
      r = t:request("POST", V3 .. "/login", { type = "m.login.password",
        identifier = { type = "m.id.thirdparty", medium = "email", address = "a@b.c" }, password = "x" })
      assert.equal(400, r.status)
      assert.equal("M_UNKNOWN", r.json.errcode)
    end)
  end)

  describe("register", function()
    it("starts user-interactive auth, then completes with m.login.dummy", function()
      local name = fresh("reg")
      local r = t:request("POST", V3 .. "/register", { username = name, password = "pw" })
      assert.equal(401, r.status)
      assert.same({ { stages = { "m.login.dummy" } } }, r.json.flows)
      assert.same({}, r.json.params)
      assert.is_string(r.json.session)
      local r2 = t:request("POST", V3 .. "/register", { username = name, password = "pw",
        auth = { type = "m.login.dummy", session = r.json.session } })
      assert.equal(200, r2.status)
      assert.equal("@" .. name .. ":test.local", r2.json.user_id)
      assert.is_string(r2.json.access_token)
      assert.is_string(r2.json.device_id)
      local login = t:request("POST", V3 .. "/login", { type = "m.login.password",
        identifier = { type = "m.id.user", user = name }, password = "pw" })
      assert.equal(200, login.status)
    end)

    it("accepts m.login.dummy on the first call (matrix-nio, r0)", function()
      local name = fresh("nio")
      local r = t:request("POST", "/_matrix/client/r0/register", { username = name, password = "pw",
        device_id = "NIODEV", auth = { type = "m.login.dummy" } })
      assert.equal(200, r.status)
      assert.equal("NIODEV", r.json.device_id)
      local w = t:request("GET", "/_matrix/client/r0/account/whoami", nil, r.json.access_token)
      assert.equal("@" .. name .. ":test.local", w.json.user_id)
    end)

    it("inhibit_login returns only the user ID", function()
      local r = t:request("POST", V3 .. "/register", { username = fresh("inh"), password = "pw",
        inhibit_login = true, auth = { type = "m.login.dummy" } })
      assert.equal(200, r.status)
      assert.is_string(r.json.user_id)
      assert.is_nil(r.json.access_token)
      assert.is_nil(r.json.device_id)
      local keys = {}
      for key in pairs(r.json) do keys[#keys + 1] = key end
      assert.same({ "user_id" }, keys)
    end)

    it("generates a username when none is given", function()
      local r = t:request("POST", V3 .. "/register", { password = "pw", auth = { type = "m.login.dummy" } })
      assert.equal(200, r.status)
      assert.matches("^@[a-z0-9]+:test%.local$", r.json.user_id)
    end)

    it("refuses guests, taken and invalid names, and unknown stages", function()
      local r = t:request("POST", V3 .. "/register?kind=guest", {})
      assert.equal(403, r.status)
      assert.equal("M_GUEST_ACCESS_FORBIDDEN", r.json.errcode)
      local u = t:register(fresh())
      local taken = u.user_id:match("^@([^:]+)")
      r = t:request("POST", V3 .. "/register", { username = taken, password = "pw", auth = { type = "m.login.dummy" } })
      assert.equal(400, r.status)
      assert.equal("M_USER_IN_USE", r.json.errcode)
      r = t:request("POST", V3 .. "/register", { username = "bad name!", password = "pw",
        auth = { type = "m.login.dummy" } })
      assert.equal(400, r.status)
      assert.equal("M_INVALID_USERNAME", r.json.errcode)
      r = t:request("POST", V3 .. "/register", { username = fresh("x"), password = "pw",
        auth = { type = "m.login.recaptcha", session = "abc" } })
      assert.equal(401, r.status)
      assert.is_table(r.json.flows)
      assert.equal("abc", r.json.session)
      r = t:request("POST", V3 .. "/register", "nope")
      assert.equal("M_NOT_JSON", r.json.errcode)
    end)

    it("tells whether a username is available", function()
      local r = t:request("GET", V3 .. "/register/available?username=" .. fresh("free"))
      assert.equal(200, r.status)
      assert.is_true(r.json.available)
      local u = t:register(fresh())
      r = t:request("GET", V3 .. "/register/available?username=" .. u.user_id:match("^@([^:]+)"))
      assert.equal(400, r.status)
      assert.equal("M_USER_IN_USE", r.json.errcode)
      r = t:request("GET", V3 .. "/register/available?username=" .. enc("Bad Name"))
      assert.equal("M_INVALID_USERNAME", r.json.errcode)
      r = t:request("GET", V3 .. "/register/available")
      assert.equal("M_MISSING_PARAM", r.json.errcode)
    end)
  end)

  describe("logout and whoami", function()
    it("needs a token", function()
      local r = t:request("GET", V3 .. "/account/whoami")
      assert.equal(401, r.status)
      assert.equal("M_MISSING_TOKEN", r.json.errcode)
      r = t:request("GET", V3 .. "/account/whoami", nil, "nonsense")
      assert.equal(401, r.status)
      assert.equal("M_UNKNOWN_TOKEN", r.json.errcode)
    end)

    it("logout invalidates the token", function()
      local u = t:register(fresh())
      local r = t:request("POST", V3 .. "/logout", {}, u.access_token)
      assert.equal(200, r.status)
      assert.same({}, r.json)
      r = t:request("GET", V3 .. "/account/whoami", nil, u.access_token)
      assert.equal(401, r.status)
      assert.equal("M_UNKNOWN_TOKEN", r.json.errcode)
    end)

    it("logout/all invalidates every token of the user", function()
      local u = t:register(fresh())
      local second = t:request("POST", V3 .. "/login", { type = "m.login.password", user = u.user_id,
        password = u.password }).json.access_token
      local r = t:request("POST", V3 .. "/logout/all", {}, u.access_token)
      assert.equal(200, r.status)
      for _, tok in ipairs { u.access_token, second } do
        assert.equal("M_UNKNOWN_TOKEN", t:request("GET", V3 .. "/account/whoami", nil, tok).json.errcode)
      end
      assert.equal("M_MISSING_TOKEN", t:request("POST", V3 .. "/logout", {}).json.errcode)
    end)
  end)

  describe("push rules", function()
    it("serves the predefined rules with the user's ID", function()
      local u = t:register(fresh())
      local r = t:request("GET", V3 .. "/pushrules/", nil, u.access_token)
      assert.equal(200, r.status)
      local g = r.json.global
      local ids = {}
      for _, rule in ipairs(g.override) do ids[#ids + 1] = rule.rule_id end
      assert.same({ ".m.rule.master", ".m.rule.suppress_notices", ".m.rule.invite_for_me", ".m.rule.member_event",
        ".m.rule.is_user_mention", ".m.rule.contains_display_name", ".m.rule.is_room_mention",
        ".m.rule.roomnotif", ".m.rule.tombstone", ".m.rule.reaction", ".m.rule.room.server_acl",
        ".m.rule.suppress_edits" }, ids)
      assert.is_false(g.override[1].enabled)
      assert.equal(u.user_id, g.override[3].conditions[3].pattern)
      assert.equal(u.user_id, g.override[5].conditions[1].value)
      assert.equal(".m.rule.contains_user_name", g.content[1].rule_id)
      assert.equal(u.user_id:match("^@([^:]+)"), g.content[1].pattern)
      ids = {}
      for _, rule in ipairs(g.underride) do ids[#ids + 1] = rule.rule_id end
      assert.same({ ".m.rule.call", ".m.rule.encrypted_room_one_to_one", ".m.rule.room_one_to_one",
        ".m.rule.message", ".m.rule.encrypted" }, ids)
      assert.same({}, g.room)
      assert.same({}, g.sender)
      assert.matches('"room":%[%]', r.body)
      local r2 = t:request("GET", V3 .. "/pushrules/global/", nil, u.access_token)
      assert.same(g, r2.json)
      local r3 = t:request("GET", V3 .. "/pushrules/global/override/.m.rule.master/enabled", nil, u.access_token)
      assert.same({ enabled = false }, r3.json)
      assert.equal(404, t:request("GET", V3 .. "/pushrules/global/override/nope", nil, u.access_token).status)
      assert.equal(401, t:request("GET", V3 .. "/pushrules/").status)
    end)
  end)

  describe("profile", function()
    it("gets and sets displayname and avatar_url", function()
      local u = t:register(fresh())
      local path = V3 .. "/profile/" .. enc(u.user_id)
      local r = t:request("GET", path)
      assert.equal(200, r.status)
      assert.same({}, r.json)
      r = t:request("PUT", path .. "/displayname", { displayname = "Alice" }, u.access_token)
      assert.equal(200, r.status)
      r = t:request("PUT", path .. "/avatar_url", { avatar_url = "mxc://test.local/abc" }, u.access_token)
      assert.equal(200, r.status)
      assert.same({ displayname = "Alice", avatar_url = "mxc://test.local/abc" }, t:request("GET", path).json)
      assert.same({ displayname = "Alice" }, t:request("GET", path .. "/displayname").json)
      assert.same({ avatar_url = "mxc://test.local/abc" }, t:request("GET", path .. "/avatar_url").json)
    end)

    it("refuses changes to someone else's profile and bad bodies", function()
      local u, v = t:register(fresh()), t:register(fresh())
      local r = t:request("PUT", V3 .. "/profile/" .. enc(v.user_id) .. "/displayname", { displayname = "x" },
        u.access_token)
      assert.equal(403, r.status)
      assert.equal("M_FORBIDDEN", r.json.errcode)
      r = t:request("PUT", V3 .. "/profile/" .. enc(u.user_id) .. "/displayname", { displayname = 3 },
        u.access_token)
      assert.equal("M_BAD_JSON", r.json.errcode)
      r = t:request("PUT", V3 .. "/profile/" .. enc(u.user_id) .. "/displayname", {}, u.access_token)
      assert.equal("M_MISSING_PARAM", r.json.errcode)
      r = t:request("PUT", V3 .. "/profile/" .. enc(u.user_id) .. "/displayname", { displayname = "x" })
      assert.equal("M_MISSING_TOKEN", r.json.errcode)
    end)

    it("404 for an unknown user", function()
      for _, suffix in ipairs { "", "/displayname", "/avatar_url" } do
        local r = t:request("GET", V3 .. "/profile/" .. enc("@ghost:test.local") .. suffix)
        assert.equal(404, r.status)
        assert.equal("M_NOT_FOUND", r.json.errcode)
      end
    end)

    it("a change sends a new m.room.member event to every joined room", function()
      local u = t:register(fresh())
      local rooms = t.hs.rooms
      local ids = {}
      for i = 1, 2 do
        local room_id = assert(rooms:create_room(u.user_id))
        assert(rooms:send(room_id, { type = "m.room.member", state_key = u.user_id, sender = u.user_id,
          content = { membership = "join" } }))
        assert(rooms:send(room_id, { type = "m.room.join_rules", state_key = "", sender = u.user_id,
          content = { join_rule = "invite" } }))
        ids[i] = room_id
      end
      local path = V3 .. "/profile/" .. enc(u.user_id)
      assert.equal(200, t:request("PUT", path .. "/avatar_url", { avatar_url = "mxc://test.local/pic" },
        u.access_token).status)
      assert.equal(200, t:request("PUT", path .. "/displayname", { displayname = "Bob" }, u.access_token).status)
      for _, room_id in ipairs(ids) do
        local ev = rooms:state_event(room_id, "m.room.member", u.user_id)
        assert.equal("join", ev.content.membership)
        assert.equal("Bob", ev.content.displayname)
        assert.equal("mxc://test.local/pic", ev.content.avatar_url)
      end
      -- clearing the display name keeps the avatar
      assert.equal(200, t:request("PUT", path .. "/displayname", { displayname = require("loom.core").json.null },
        u.access_token).status)
      local ev = rooms:state_event(ids[1], "m.room.member", u.user_id)
      assert.is_nil(ev.content.displayname)
      assert.equal("mxc://test.local/pic", ev.content.avatar_url)
    end)
  end)
end)

describe("closed registration", function()
  it("answers 403 M_FORBIDDEN when enable_registration is false", function()
    local t = tesths.start { enable_registration = false }
    local r = t:request("POST", "/_matrix/client/v3/register",
      { username = "eve", password = "pw", auth = { type = "m.login.dummy" } })
    assert.equal(403, r.status)
    assert.equal("M_FORBIDDEN", r.json.errcode)
    r = t:request("GET", "/_matrix/client/v3/register/available?username=eve")
    assert.equal(403, r.status)
    assert.is_nil(t.hs.accounts:user("@eve:test.local"))
    -- accounts made by the operator still log in
    local alice = t:register("alice")
    r = t:request("GET", "/_matrix/client/v3/account/whoami", nil, alice.access_token)
    assert.equal(200, r.status)
    t:stop()
  end)
end)
