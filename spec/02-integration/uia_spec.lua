-- One user-interactive authentication (loom.api.uia, m.login.password) for
-- every endpoint that asks for the password: DELETE /devices/{deviceId},
-- POST /delete_devices, POST /keys/device_signing/upload (replacing keys),
-- POST /account/password and POST /account/deactivate. The Client-Server
-- API's UIA sessions are per request: a session opened by one endpoint never
-- authorises another endpoint's request (403 M_FORBIDDEN, nothing changes),
-- and stays usable for the request that opened it.
local tesths = require "support.hs"
local crypto = require "loom.room.crypto"
local core = require "loom.core"

local enc = tesths.enc
local V3 = "/_matrix/client/v3"
local b64 = function(s) return (core.crypto.base64_encode(s)) end
local arr = core.json.array

describe("user-interactive auth across endpoints", function()
  local t
  setup(function() t = tesths.start() end)
  teardown(function() t:stop() end)

  local function second_device(u)
    local login = assert(t.hs.accounts:login(u.user_id, u.password))
    return { access_token = login.access_token, device_id = login.device_id }
  end
  local function auth(u, session)
    return { type = "m.login.password", session = session, password = u.password,
      identifier = { type = "m.id.user", user = u.user_id } }
  end
  local function whoami(token)
    return t:request("GET", V3 .. "/account/whoami", nil, token).status
  end
  local function master_key(u)
    local seed = core.crypto.random_bytes(32)
    local pub = b64(core.crypto.ed25519_public_key(seed))
    assert(crypto.signing_key(seed, "ed25519:" .. pub, u.user_id))
    return { user_id = u.user_id, usage = { "master" }, keys = { ["ed25519:" .. pub] = pub } }, pub
  end
  local function master_of(u)
    local r = t:request("POST", V3 .. "/keys/query", { device_keys = { [u.user_id] = arr() } }, u.access_token)
    local m = r.json.master_keys[u.user_id]
    return m and next(m.keys)
  end
  local function login_status(u, password)
    return t:request("POST", V3 .. "/login", { type = "m.login.password",
      identifier = { type = "m.id.user", user = u.user_id }, password = password or u.password }).status
  end

  -- Each endpoint: how to call it (with a body's auth), and how to tell it
  -- did nothing.
  local function endpoints(u)
    local d2 = second_device(u)
    local first = master_key(u)
    assert.equal(200, t:request("POST", V3 .. "/keys/device_signing/upload", { master_key = first },
      u.access_token).status)
    local kept = master_of(u)
    local new_master = master_key(u)
    return {
      delete_device = {
        call = function(a) return t:request("DELETE", V3 .. "/devices/" .. enc(d2.device_id), { auth = a },
          u.access_token) end,
        unchanged = function() return whoami(d2.access_token) == 200 end,
      },
      delete_devices = {
        call = function(a) return t:request("POST", V3 .. "/delete_devices", { devices = { d2.device_id }, auth = a },
          u.access_token) end,
        unchanged = function() return whoami(d2.access_token) == 200 end,
      },
      device_signing = {
        call = function(a) return t:request("POST", V3 .. "/keys/device_signing/upload",
          { master_key = new_master, auth = a }, u.access_token) end,
        unchanged = function() return master_of(u) == kept end,
      },
      password = {
        call = function(a) return t:request("POST", V3 .. "/account/password",
          { new_password = "changed", logout_devices = false, auth = a }, u.access_token) end,
        unchanged = function() return login_status(u) == 200 and login_status(u, "changed") == 403 end,
      },
      deactivate = {
        call = function(a) return t:request("POST", V3 .. "/account/deactivate", { auth = a }, u.access_token) end,
        unchanged = function() return whoami(u.access_token) == 200 end,
      },
    }
  end

  local NAMES = { "delete_device", "delete_devices", "device_signing", "password", "deactivate" }

  for _, opener in ipairs(NAMES) do
    it("a session opened by " .. opener .. " authorises no other endpoint, then its own request", function()
      local u = t:fresh("uia")
      local eps = endpoints(u)
      local r = eps[opener].call(nil)
      assert.equal(401, r.status, r.body)
      assert.same({ { stages = { "m.login.password" } } }, r.json.flows)
      local session = assert(r.json.session)
      for _, other in ipairs(NAMES) do
        if other ~= opener then
          r = eps[other].call(auth(u, session))
          assert.equal(403, r.status, other .. ": " .. r.body)
          assert.equal("M_FORBIDDEN", r.json.errcode)
          assert.is_true(eps[other].unchanged(), other .. " changed something")
        end
      end
      assert.is_true(eps[opener].unchanged())
      -- the session still works for the request that opened it, once
      r = eps[opener].call(auth(u, session))
      assert.equal(200, r.status, r.body)
      assert.is_false(eps[opener].unchanged())
      r = eps[opener].call(auth(u, session))
      -- used up (after deactivation the token itself is gone)
      assert.equal(opener == "deactivate" and 401 or 400, r.status)
    end)
  end

  it("a session opened without a token is bound to its request too", function()
    local u = t:fresh("uia")
    local d2 = second_device(u)
    local r = t:request("POST", V3 .. "/account/password", { new_password = "n1" }, false)
    assert.equal(401, r.status)
    local session = r.json.session
    r = t:request("DELETE", V3 .. "/devices/" .. enc(d2.device_id), { auth = auth(u, session) }, u.access_token)
    assert.equal(403, r.status)
    assert.equal(200, whoami(d2.access_token))
    r = t:request("POST", V3 .. "/account/password", { new_password = "other", auth = auth(u, session) }, false)
    assert.equal(403, r.status)
    assert.equal(200, login_status(u))
    r = t:request("POST", V3 .. "/account/password", { new_password = "n1", auth = auth(u, session) }, false)
    assert.equal(200, r.status, r.body)
    assert.equal(200, login_status(u, "n1"))
  end)

  it("a stage failed inside a session keeps the session; malformed auth is a Matrix error", function()
    local u = t:fresh("uia")
    local d2 = second_device(u)
    local path = V3 .. "/devices/" .. enc(d2.device_id)
    local session = t:request("DELETE", path, {}, u.access_token).json.session
    local bad = auth(u, session)
    bad.password = "wrong"
    local r = t:request("DELETE", path, { auth = bad }, u.access_token)
    assert.equal(401, r.status)
    assert.equal("M_FORBIDDEN", r.json.errcode)
    assert.equal(session, r.json.session)
    for _, a in ipairs { "x", { type = "m.login.password", session = {} }, { type = "m.login.password",
      session = session, identifier = "u" }, { type = "m.login.password", session = session,
      identifier = { type = "m.id.user", user = 7 } } } do
      r = t:request("DELETE", path, { auth = a }, u.access_token)
      assert.equal(400, r.status, r.body)
      assert.equal("M_BAD_JSON", r.json.errcode)
    end
    assert.equal(200, whoami(d2.access_token))
    r = t:request("DELETE", path, { auth = auth(u, session) }, u.access_token)
    assert.equal(200, r.status)
  end)
end)
