-- The account life cycle (Client-Server API "Account management"): password
-- change and account deactivation behind user-interactive authentication
-- (m.login.password), and the third-party identifiers list.
local tesths = require "support.hs"
local enc = tesths.enc

local V3 = "/_matrix/client/v3"

describe("account life cycle", function()
  local t
  setup(function() t = tesths.start() end)
  teardown(function() t:stop() end)

  local function whoami(token)
    return t:request("GET", V3 .. "/account/whoami", nil, token)
  end

  local function login(u, password)
    return t:request("POST", V3 .. "/login", { type = "m.login.password",
      identifier = { type = "m.id.user", user = u.user_id }, password = password or u.password })
  end

  local function pw_auth(u, session, password)
    return { type = "m.login.password", session = session,
      identifier = { type = "m.id.user", user = u.user_id }, password = password or u.password }
  end

  describe("POST /account/password", function()
    it("answers the UIA challenge with the password flow and a session", function()
      local u = t:fresh("pw")
      local r = t:request("POST", V3 .. "/account/password", { new_password = "new-one" }, u.access_token)
      assert.equal(401, r.status)
      assert.same({ { stages = { "m.login.password" } } }, r.json.flows)
      assert.is_string(r.json.session)
      -- nothing changed yet
      assert.equal(200, login(u).status)
    end)

    it("changes the password; other devices are logged out, the current one keeps working", function()
      local u = t:fresh("pw")
      local other = login(u).json
      local r = t:request("POST", V3 .. "/account/password", { new_password = "new-one" }, u.access_token)
      local session = r.json.session
      r = t:request("POST", V3 .. "/account/password", { new_password = "new-one", auth = pw_auth(u, session) },
        u.access_token)
      assert.equal(200, r.status, r.body)
      assert.same({}, r.json)
      assert.equal(200, whoami(u.access_token).status)
      local gone = whoami(other.access_token)
      assert.equal(401, gone.status)
      assert.equal("M_UNKNOWN_TOKEN", gone.json.errcode)
      assert.equal(403, login(u).status)
      assert.equal(200, login(u, "new-one").status)
      -- the session is used up
      r = t:request("POST", V3 .. "/account/password", { new_password = "x", auth = pw_auth(u, session, "new-one") },
        u.access_token)
      assert.equal(400, r.status)
    end)

    it("keeps the other devices with logout_devices = false", function()
      local u = t:fresh("pw")
      local other = login(u).json
      local r = t:request("POST", V3 .. "/account/password", { new_password = "n2", logout_devices = false,
        auth = pw_auth(u) }, u.access_token)
      assert.equal(200, r.status, r.body)
      assert.equal(200, whoami(other.access_token).status)
      assert.equal(200, login(u, "n2").status)
    end)

    it("refuses a wrong password with a new challenge, and another user's password", function()
      local u, v = t:fresh("pw"), t:fresh("pw")
      local r = t:request("POST", V3 .. "/account/password", { new_password = "n3", auth = pw_auth(u, nil, "wrong") },
        u.access_token)
      assert.equal(401, r.status)
      assert.equal("M_FORBIDDEN", r.json.errcode)
      assert.same({ { stages = { "m.login.password" } } }, r.json.flows)
      r = t:request("POST", V3 .. "/account/password", { new_password = "n3", auth = pw_auth(v) }, u.access_token)
      assert.equal(403, r.status)
      assert.equal("M_FORBIDDEN", r.json.errcode)
      assert.equal(200, login(u).status)
      assert.equal(200, login(v).status)
    end)

    it("binds the session to its request", function()
      local u = t:fresh("pw")
      local r = t:request("POST", V3 .. "/account/deactivate", {}, u.access_token)
      assert.equal(401, r.status)
      r = t:request("POST", V3 .. "/account/password", { new_password = "n4", auth = pw_auth(u, r.json.session) },
        u.access_token)
      assert.equal(403, r.status)
      assert.equal(200, login(u).status)
    end)

    it("answers Matrix errors for bad input", function()
      local u = t:fresh("pw")
      local function post(body, token)
        return t:request("POST", V3 .. "/account/password", body, token == nil and u.access_token or token or nil)
      end
      assert.equal("M_MISSING_PARAM", post({ auth = pw_auth(u) }).json.errcode)
      assert.equal("M_BAD_JSON", post({ new_password = 5, auth = pw_auth(u) }).json.errcode)
      assert.equal("M_BAD_JSON", post({ new_password = "x", logout_devices = "yes", auth = pw_auth(u) }).json.errcode)
      assert.equal("M_BAD_JSON", post({ new_password = "x", auth = "nope" }).json.errcode)
      assert.equal("M_BAD_JSON", post({ new_password = "x", auth = { type = "m.login.password", session = 3 } })
        .json.errcode)
      assert.equal(400, post({ new_password = "x", auth = pw_auth(u, "no-such-session") }).status)
      assert.equal(400, post("[1,2]").status)
      assert.equal("M_UNKNOWN_TOKEN", post({ new_password = "x" }, "bogus").json.errcode)
      local r = post({ new_password = "x", auth = { type = "m.login.email.identity" } })
      assert.equal(401, r.status)
      assert.equal("M_UNRECOGNIZED", r.json.errcode)
      assert.equal(200, login(u).status)
    end)

    it("works without an access token when the auth names the user", function()
      local u = t:fresh("pw")
      local r = t:request("POST", V3 .. "/account/password", { new_password = "n5", auth = pw_auth(u) }, false)
      assert.equal(200, r.status, r.body)
      assert.equal(401, whoami(u.access_token).status)   -- every device is logged out
      assert.equal(200, login(u, "n5").status)
    end)

    it("is announced in the capabilities", function()
      local u = t:fresh("pw")
      local r = t:request("GET", V3 .. "/capabilities", nil, u.access_token)
      assert.is_true(r.json.capabilities["m.change_password"].enabled)
    end)
  end)

  describe("POST /account/deactivate", function()
    it("leaves every room, erases the profile and logs out; the ID is never free again", function()
      local u, v = t:fresh("de"), t:fresh("de")
      assert.equal(200, t:request("PUT", V3 .. "/profile/" .. enc(u.user_id) .. "/displayname",
        { displayname = "Gone Soon" }, u.access_token).status)
      local room = t:create_room(v, { preset = "public_chat" })
      t:join(u, room)
      local invited = t:create_room(v)
      assert.equal(200, t:request("POST", V3 .. "/rooms/" .. enc(invited) .. "/invite", { user_id = u.user_id },
        v.access_token).status)
      local other = login(u).json

      local r = t:request("POST", V3 .. "/account/deactivate", {}, u.access_token)
      assert.equal(401, r.status)
      assert.same({ { stages = { "m.login.password" } } }, r.json.flows)
      r = t:request("POST", V3 .. "/account/deactivate", { auth = pw_auth(u, r.json.session, "wrong") },
        u.access_token)
      assert.equal(401, r.status)
      assert.equal("M_FORBIDDEN", r.json.errcode)
      assert.equal(200, whoami(u.access_token).status)
      r = t:request("POST", V3 .. "/account/deactivate", { auth = pw_auth(u, r.json.session) }, u.access_token)
      assert.equal(200, r.status, r.body)
      assert.equal("no-support", r.json.id_server_unbind_result)

      -- every token is gone
      assert.equal("M_UNKNOWN_TOKEN", whoami(u.access_token).json.errcode)
      assert.equal("M_UNKNOWN_TOKEN", whoami(other.access_token).json.errcode)
      -- left both rooms, through membership events
      for _, rid in ipairs { room, invited } do
        local m = t:request("GET", V3 .. "/rooms/" .. enc(rid) .. "/state/m.room.member/" .. enc(u.user_id), nil,
          v.access_token)
        assert.equal(200, m.status, m.body)
        assert.equal("leave", m.json.membership)
      end
      -- the profile is erased
      assert.equal(404, t:request("GET", V3 .. "/profile/" .. enc(u.user_id)).status)
      -- login: refused as deactivated (with the right password only)
      r = login(u)
      assert.equal(403, r.status)
      assert.equal("M_USER_DEACTIVATED", r.json.errcode)
      r = login(u, "wrong")
      assert.equal(403, r.status)
      assert.equal("M_FORBIDDEN", r.json.errcode)
      -- the user ID can never be registered again
      local localpart = u.user_id:match("^@([^:]+)")
      r = t:request("POST", V3 .. "/register", { username = localpart, password = "again",
        auth = { type = "m.login.dummy" } })
      assert.equal(400, r.status)
      assert.equal("M_USER_IN_USE", r.json.errcode)
      r = t:request("GET", V3 .. "/register/available?username=" .. localpart)
      assert.equal("M_USER_IN_USE", r.json.errcode)
    end)

    it("refuses another user's password and bad input", function()
      local u, v = t:fresh("de"), t:fresh("de")
      local r = t:request("POST", V3 .. "/account/deactivate", { auth = pw_auth(v) }, u.access_token)
      assert.equal(403, r.status)
      assert.equal("M_FORBIDDEN", r.json.errcode)
      r = t:request("POST", V3 .. "/account/deactivate", { erase = "yes", auth = pw_auth(u) }, u.access_token)
      assert.equal("M_BAD_JSON", r.json.errcode)
      assert.equal(200, whoami(u.access_token).status)
      assert.equal(200, whoami(v.access_token).status)
    end)
  end)

  describe("GET /account/3pid", function()
    it("answers an empty list", function()
      local u = t:fresh("tp")
      local r = t:request("GET", V3 .. "/account/3pid", nil, u.access_token)
      assert.equal(200, r.status)
      assert.same({ threepids = {} }, r.json)
      assert.equal("[]", r.body:match('"threepids":%s*(%[%])'))
      assert.equal(401, t:request("GET", V3 .. "/account/3pid").status)
    end)
  end)
end)
