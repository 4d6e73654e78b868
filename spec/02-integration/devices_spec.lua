-- Device management over a real server (Client-Server API "Device
-- management"): GET /devices, GET/PUT/DELETE /devices/{deviceId}, POST
-- /delete_devices, and the user-interactive authentication that guards
-- deletion (m.login.password, a session bound to its user and request).
local tesths = require "support.hs"

local enc = tesths.enc
local V3 = "/_matrix/client/v3"

describe("devices", function()
  local t
  setup(function() t = tesths.start() end)
  teardown(function() t:stop() end)

  local function second_device(u, name)
    local login = assert(t.hs.accounts:login(u.user_id, u.password, nil, name))
    return { user_id = u.user_id, access_token = login.access_token, device_id = login.device_id,
      password = u.password }
  end
  local function password_auth(u, session, password)
    return { type = "m.login.password", session = session, password = password or u.password,
      identifier = { type = "m.id.user", user = u.user_id } }
  end

  it("lists, gets and renames the user's devices", function()
    local u = t:fresh("dev")
    local d2 = second_device(u, "Phone")
    local r = t:request("GET", V3 .. "/devices", nil, u.access_token)
    assert.equal(200, r.status)
    local ids = {}
    for _, d in ipairs(r.json.devices) do ids[d.device_id] = d end
    assert.truthy(ids[u.device_id])
    assert.equal("Phone", ids[d2.device_id].display_name)
    assert.is_number(ids[d2.device_id].last_seen_ts)
    r = t:request("GET", V3 .. "/devices/" .. enc(d2.device_id), nil, u.access_token)
    assert.equal(200, r.status)
    assert.equal(d2.device_id, r.json.device_id)
    assert.equal(200, t:request("PUT", V3 .. "/devices/" .. enc(d2.device_id), { display_name = "Tablet" },
      u.access_token).status)
    assert.equal("Tablet", t:request("GET", V3 .. "/devices/" .. enc(d2.device_id), nil, u.access_token)
      .json.display_name)
  end)

  it("answers 404 M_NOT_FOUND for another user's or an unknown device", function()
    local a, b = t:fresh("dev"), t:fresh("dev")
    local r = t:request("GET", V3 .. "/devices/" .. enc(b.device_id), nil, a.access_token)
    assert.equal(404, r.status)
    assert.equal("M_NOT_FOUND", r.json.errcode)
    r = t:request("PUT", V3 .. "/devices/NOPE", { display_name = "x" }, a.access_token)
    assert.equal(404, r.status)
    r = t:request("PUT", V3 .. "/devices/" .. enc(a.device_id), { display_name = 7 }, a.access_token)
    assert.equal(400, r.status)
    assert.equal("M_BAD_JSON", r.json.errcode)
  end)

  it("deletes a device behind m.login.password; its token stops working", function()
    local u = t:fresh("dev")
    local d2 = second_device(u)
    local path = V3 .. "/devices/" .. enc(d2.device_id)
    local r = t:request("DELETE", path, {}, u.access_token)
    assert.equal(401, r.status)
    assert.is_string(r.json.session)
    assert.same({ { stages = { "m.login.password" } } }, r.json.flows)
    -- still there
    assert.equal(200, t:request("GET", V3 .. "/account/whoami", nil, d2.access_token).status)
    r = t:request("DELETE", path, { auth = password_auth(u, r.json.session) }, u.access_token)
    assert.equal(200, r.status)
    r = t:request("GET", V3 .. "/account/whoami", nil, d2.access_token)
    assert.equal(401, r.status)
    assert.equal("M_UNKNOWN_TOKEN", r.json.errcode)
    assert.equal(404, t:request("GET", path, nil, u.access_token).status)
    -- the other device is untouched
    assert.equal(200, t:request("GET", V3 .. "/account/whoami", nil, u.access_token).status)
  end)

  it("a wrong password fails the stage (M_FORBIDDEN) and keeps the session", function()
    local u = t:fresh("dev")
    local d2 = second_device(u)
    local path = V3 .. "/devices/" .. enc(d2.device_id)
    local r = t:request("DELETE", path, {}, u.access_token)
    local session = r.json.session
    r = t:request("DELETE", path, { auth = password_auth(u, session, "wrong") }, u.access_token)
    assert.equal(401, r.status)
    assert.equal("M_FORBIDDEN", r.json.errcode)
    assert.equal(session, r.json.session)
    assert.equal(200, t:request("GET", V3 .. "/account/whoami", nil, d2.access_token).status)
    -- another user's password does not open it either
    local other = t:fresh("dev")
    r = t:request("DELETE", path, { auth = password_auth(other, session) }, u.access_token)
    assert.equal(401, r.status)
    assert.equal("M_FORBIDDEN", r.json.errcode)
    r = t:request("DELETE", path, { auth = password_auth(u, session) }, u.access_token)
    assert.equal(200, r.status)
  end)

  it("refuses a session used for another request or by another user", function()
    local u = t:fresh("dev")
    local d2, d3 = second_device(u), second_device(u)
    local r = t:request("POST", V3 .. "/delete_devices", { devices = { d2.device_id } }, u.access_token)
    assert.equal(401, r.status)
    local session = r.json.session
    -- the same session for other devices: refused, nothing deleted
    r = t:request("POST", V3 .. "/delete_devices", { devices = { d3.device_id }, auth = password_auth(u, session) },
      u.access_token)
    assert.equal(403, r.status)
    assert.equal("M_FORBIDDEN", r.json.errcode)
    r = t:request("DELETE", V3 .. "/devices/" .. enc(d2.device_id), { auth = password_auth(u, session) },
      u.access_token)
    assert.equal(403, r.status)
    assert.equal(200, t:request("GET", V3 .. "/account/whoami", nil, d3.access_token).status)
    -- by another user (with their own password): refused
    local other = t:fresh("dev")
    r = t:request("POST", V3 .. "/delete_devices", { devices = { d2.device_id }, auth = password_auth(other, session) },
      other.access_token)
    assert.equal(403, r.status)
    -- the request it was opened for succeeds, once
    r = t:request("POST", V3 .. "/delete_devices", { devices = { d2.device_id }, auth = password_auth(u, session) },
      u.access_token)
    assert.equal(200, r.status)
    assert.equal(401, t:request("GET", V3 .. "/account/whoami", nil, d2.access_token).status)
    r = t:request("POST", V3 .. "/delete_devices", { devices = { d2.device_id }, auth = password_auth(u, session) },
      u.access_token)
    assert.equal(400, r.status)
    assert.equal(200, t:request("GET", V3 .. "/account/whoami", nil, d3.access_token).status)
  end)

  it("refuses malformed requests with Matrix errors", function()
    local u = t:fresh("dev")
    for _, body in ipairs { { devices = "x" }, { devices = { 1 } }, {} } do
      local r = t:request("POST", V3 .. "/delete_devices", body, u.access_token)
      assert.is_true(r.status == 400, r.body)
      assert.is_string(r.json.errcode)
    end
    local r = t:request("POST", V3 .. "/delete_devices", { devices = {}, auth = "x" }, u.access_token)
    assert.equal(400, r.status)
    r = t:request("POST", V3 .. "/delete_devices", { devices = {}, auth = { session = "nope",
      type = "m.login.password", password = u.password } }, u.access_token)
    assert.equal(400, r.status)
    r = t:request("GET", V3 .. "/devices", nil, nil)
    assert.equal(401, r.status)
  end)
end)
