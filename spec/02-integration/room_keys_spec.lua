-- Server-side key backups over a real server (Client-Server API
-- "Server-side key backups"): /room_keys/version and /room_keys/keys.
local tesths = require "support.hs"

local enc = tesths.enc
local V3 = "/_matrix/client/v3"

describe("room key backups", function()
  local t
  setup(function() t = tesths.start() end)
  teardown(function() t:stop() end)

  local ALG = "m.megolm_backup.v1.curve25519-aes-sha2"
  local function key(fmi, fc, verified, tag)
    return { first_message_index = fmi, forwarded_count = fc, is_verified = verified,
      session_data = { ephemeral = "e", ciphertext = tag or "c", mac = "m" } }
  end

  it("answers 404 M_NOT_FOUND with no backup, then creates, gets, updates, deletes", function()
    local u = t:fresh("bk")
    local r = t:request("GET", V3 .. "/room_keys/version", nil, u.access_token)
    assert.equal(404, r.status)
    assert.equal("M_NOT_FOUND", r.json.errcode)
    r = t:request("POST", V3 .. "/room_keys/version", { algorithm = ALG, auth_data = { public_key = "abc" } },
      u.access_token)
    assert.equal(200, r.status)
    local v = r.json.version
    assert.is_string(v)
    r = t:request("GET", V3 .. "/room_keys/version", nil, u.access_token)
    assert.equal(200, r.status)
    assert.equal(v, r.json.version)
    assert.equal(ALG, r.json.algorithm)
    assert.same({ public_key = "abc" }, r.json.auth_data)
    assert.equal(0, r.json.count)
    assert.is_string(r.json.etag)
    r = t:request("PUT", V3 .. "/room_keys/version/" .. v, { algorithm = ALG, auth_data = { public_key = "def" },
      version = v }, u.access_token)
    assert.equal(200, r.status)
    assert.same({ public_key = "def" }, t:request("GET", V3 .. "/room_keys/version/" .. v, nil, u.access_token)
      .json.auth_data)
    -- another algorithm or version in the body: refused
    r = t:request("PUT", V3 .. "/room_keys/version/" .. v, { algorithm = "other", auth_data = {} }, u.access_token)
    assert.equal(400, r.status)
    r = t:request("PUT", V3 .. "/room_keys/version/" .. v, { algorithm = ALG, auth_data = {}, version = "99" },
      u.access_token)
    assert.equal(400, r.status)
    -- another user sees no backup
    local other = t:fresh("bk")
    assert.equal(404, t:request("GET", V3 .. "/room_keys/version", nil, other.access_token).status)
    assert.equal(404, t:request("GET", V3 .. "/room_keys/version/" .. v, nil, other.access_token).status)
    assert.equal(404, t:request("DELETE", V3 .. "/room_keys/version/" .. v, nil, other.access_token).status)
    assert.equal(200, t:request("DELETE", V3 .. "/room_keys/version/" .. v, nil, u.access_token).status)
    assert.equal(404, t:request("GET", V3 .. "/room_keys/version", nil, u.access_token).status)
    assert.equal(404, t:request("GET", V3 .. "/room_keys/version/x", nil, u.access_token).status)
    -- malformed
    r = t:request("POST", V3 .. "/room_keys/version", { algorithm = ALG }, u.access_token)
    assert.equal(400, r.status)
  end)

  it("stores keys for all rooms, a room and a session; etag and count follow", function()
    local u = t:fresh("bk")
    local v = t:request("POST", V3 .. "/room_keys/version", { algorithm = ALG, auth_data = {} }, u.access_token)
      .json.version
    local r = t:request("PUT", V3 .. "/room_keys/keys?version=" .. v, { rooms = {
      ["!a:x"] = { sessions = { s1 = key(0, 0, false), s2 = key(0, 0, false) } },
      ["!b:x"] = { sessions = { s3 = key(0, 0, false) } } } }, u.access_token)
    assert.equal(200, r.status)
    assert.equal(3, r.json.count)
    local etag1 = r.json.etag
    r = t:request("PUT", V3 .. "/room_keys/keys/" .. enc("!b:x") .. "?version=" .. v,
      { sessions = { s4 = key(1, 0, false) } }, u.access_token)
    assert.equal(4, r.json.count)
    assert.not_equal(etag1, r.json.etag)
    r = t:request("PUT", V3 .. "/room_keys/keys/" .. enc("!b:x") .. "/s5?version=" .. v, key(2, 0, true),
      u.access_token)
    assert.equal(5, r.json.count)
    r = t:request("GET", V3 .. "/room_keys/keys?version=" .. v, nil, u.access_token)
    assert.equal(200, r.status)
    assert.truthy(r.json.rooms["!a:x"].sessions.s1)
    assert.equal(3, #(function() local n = {} for k in pairs(r.json.rooms["!b:x"].sessions) do n[#n + 1] = k end
      return n end)())
    r = t:request("GET", V3 .. "/room_keys/keys/" .. enc("!a:x") .. "?version=" .. v, nil, u.access_token)
    assert.truthy(r.json.sessions.s2)
    r = t:request("GET", V3 .. "/room_keys/keys/" .. enc("!b:x") .. "/s5?version=" .. v, nil, u.access_token)
    assert.equal(2, r.json.first_message_index)
    assert.is_true(r.json.is_verified)
    r = t:request("GET", V3 .. "/room_keys/keys/" .. enc("!b:x") .. "/nope?version=" .. v, nil, u.access_token)
    assert.equal(404, r.status)
    assert.equal("M_NOT_FOUND", r.json.errcode)
    -- a worse key does not replace a better one; a better one does
    local path = V3 .. "/room_keys/keys/" .. enc("!a:x") .. "/s1?version=" .. v
    t:request("PUT", path, key(5, 0, false, "worse"), u.access_token)
    assert.equal("c", t:request("GET", path, nil, u.access_token).json.session_data.ciphertext)
    t:request("PUT", path, key(5, 0, true, "verified"), u.access_token)
    assert.equal("verified", t:request("GET", path, nil, u.access_token).json.session_data.ciphertext)
    -- delete a session, a room, everything
    r = t:request("DELETE", path, nil, u.access_token)
    assert.equal(200, r.status)
    assert.equal(4, r.json.count)
    r = t:request("DELETE", V3 .. "/room_keys/keys/" .. enc("!b:x") .. "?version=" .. v, nil, u.access_token)
    assert.equal(1, r.json.count)
    r = t:request("DELETE", V3 .. "/room_keys/keys?version=" .. v, nil, u.access_token)
    assert.equal(0, r.json.count)
  end)

  it("refuses writes to a version that is not the current one, and bad input", function()
    local u = t:fresh("bk")
    local r = t:request("PUT", V3 .. "/room_keys/keys?version=1", { rooms = {} }, u.access_token)
    assert.equal(404, r.status)
    local v1 = t:request("POST", V3 .. "/room_keys/version", { algorithm = ALG, auth_data = {} }, u.access_token)
      .json.version
    local v2 = t:request("POST", V3 .. "/room_keys/version", { algorithm = ALG, auth_data = {} }, u.access_token)
      .json.version
    assert.not_equal(v1, v2)
    r = t:request("PUT", V3 .. "/room_keys/keys?version=" .. v1, { rooms = {} }, u.access_token)
    assert.equal(403, r.status)
    assert.equal("M_WRONG_ROOM_KEYS_VERSION", r.json.errcode)
    assert.equal(v2, r.json.current_version)
    r = t:request("PUT", V3 .. "/room_keys/keys", { rooms = {} }, u.access_token)
    assert.equal(400, r.status)
    assert.equal("M_MISSING_PARAM", r.json.errcode)
    for _, body in ipairs { { rooms = "x" }, { rooms = { ["!r:x"] = { sessions = { s = { first_message_index = -1,
        forwarded_count = 0, is_verified = false, session_data = {} } } } } },
        { rooms = { ["!r:x"] = { sessions = { s = "x" } } } } } do
      r = t:request("PUT", V3 .. "/room_keys/keys?version=" .. v2, body, u.access_token)
      assert.equal(400, r.status)
      assert.is_string(r.json.errcode)
    end
  end)
end)
