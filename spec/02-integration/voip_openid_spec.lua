-- TURN credentials (Client-Server API "VoIP", GET /voip/turnServer) and
-- OpenID (POST /user/{userId}/openid/request_token, and the federation
-- GET /openid/userinfo a third party asks).
local tesths = require "support.hs"
local async = require "loom.async"
local files = require "support.files"
local fed = require "support.fed"
local core = require "loom.core"

local enc = tesths.enc
local V3 = "/_matrix/client/v3"

describe("GET /voip/turnServer", function()
  it("answers {} when no TURN server is configured", function()
    local t = tesths.start()
    local a = t:register("noturn")
    local r = t:request("GET", V3 .. "/voip/turnServer", nil, a.access_token)
    t:stop()
    assert.equal(200, r.status, r.body)
    assert.equal("{}", r.body)
  end)

  it("hands out shared-secret credentials: expiry:user_id and base64 HMAC-SHA1", function()
    local t = tesths.start { turn_uris = { "turn:turn.example.org:3478?transport=udp", "turns:turn.example.org" },
      turn_shared_secret = "s3cret", turn_user_lifetime_ms = 86400000 }
    local a = t:register("turnuser")
    local before = os.time()
    local r = t:request("GET", V3 .. "/voip/turnServer", nil, a.access_token)
    local unauth = t:request("GET", V3 .. "/voip/turnServer")
    t:stop()
    assert.equal(200, r.status, r.body)
    assert.same({ "turn:turn.example.org:3478?transport=udp", "turns:turn.example.org" }, r.json.uris)
    assert.equal(86400, r.json.ttl)
    local expiry, user = r.json.username:match("^(%d+):(.+)$")
    assert.equal(a.user_id, user)
    expiry = tonumber(expiry)
    assert.is_true(expiry >= before + 86400 - 2 and expiry <= os.time() + 86400 + 2, r.json.username)
    -- the password is what a TURN server with use-auth-secret computes
    local mac = core.crypto.hmac_sha1("s3cret", r.json.username)
    assert.equal(28, #r.json.password)
    assert.equal("=", r.json.password:sub(-1))
    assert.equal(mac, core.crypto.base64_decode((r.json.password:gsub("=+$", ""))))
    assert.equal(401, unauth.status)
    assert.equal("M_MISSING_TOKEN", unauth.json.errcode)
  end)

  it("hands out fixed credentials when there is no shared secret, and {} without any", function()
    local t = tesths.start { turn_uris = { "turn:turn.example.org" }, turn_username = "u", turn_password = "p" }
    local a = t:register("turnfixed")
    local r = t:request("GET", V3 .. "/voip/turnServer", nil, a.access_token)
    t:stop()
    assert.equal(200, r.status, r.body)
    assert.same({ username = "u", password = "p", uris = { "turn:turn.example.org" }, ttl = 3600 }, r.json)
    t = tesths.start { turn_uris = { "turn:turn.example.org" } }
    a = t:register("turnnone")
    r = t:request("GET", V3 .. "/voip/turnServer", nil, a.access_token)
    t:stop()
    assert.equal("{}", r.body)
  end)

  it("refuses a bad TURN configuration at start", function()
    assert.has_error(function() require("loom").new { turn_uris = { "http://x" } } end)
    assert.has_error(function() require("loom").new { turn_uris = "turn:x" } end)
    assert.has_error(function() require("loom").new { turn_shared_secret = "" } end)
  end)
end)

describe("OpenID", function()
  local dir, a
  setup(function()
    dir = files.tmpdir("loom-openid")
    a = fed.server(dir, "a")
  end)
  teardown(function()
    a:stop()
    async.finish_closing()
    files.remove_tree(dir)
  end)

  local function userinfo(query)
    return fed.task(function()
      local res = assert(a.hs.http_client:fetch { method = "GET", host = "127.0.0.1", port = a.fed_port, tls = true,
        path = "/_matrix/federation/v1/openid/userinfo" .. query })
      return { status = res.status, json = core.json.decode(res.body) }
    end)
  end

  it("issues a token that the federation userinfo endpoint resolves to the user", function()
    local alice = a:register("alice")
    local r = a:request("POST", V3 .. "/user/" .. enc(alice.user_id) .. "/openid/request_token", {},
      alice.access_token)
    assert.equal(200, r.status, r.body)
    assert.equal("Bearer", r.json.token_type)
    assert.equal(a.name, r.json.matrix_server_name)
    assert.equal(3600, r.json.expires_in)
    assert.is_string(r.json.access_token)
    local info = userinfo("?access_token=" .. enc(r.json.access_token))
    assert.equal(200, info.status)
    assert.same({ sub = alice.user_id }, info.json)
    -- the OpenID token is no access token, and the access token no OpenID token
    local w = a:request("GET", V3 .. "/account/whoami", nil, r.json.access_token)
    assert.equal(401, w.status)
    info = userinfo("?access_token=" .. enc(alice.access_token))
    assert.equal(401, info.status)
    assert.equal("M_UNKNOWN_TOKEN", info.json.errcode)
  end)

  it("answers 401 for unknown, missing and expired tokens", function()
    local info = userinfo("?access_token=nope")
    assert.equal(401, info.status)
    assert.equal("M_UNKNOWN_TOKEN", info.json.errcode)
    info = userinfo("")
    assert.equal(401, info.status)
    assert.equal("M_MISSING_TOKEN", info.json.errcode)
    local bob = a:register("bob")
    local r = a:request("POST", V3 .. "/user/" .. enc(bob.user_id) .. "/openid/request_token", {}, bob.access_token)
    assert.equal(200, r.status, r.body)
    -- expire it in the store: the endpoint honours the expiry
    local hash = require("loom.api.client.openid").token_hash(r.json.access_token)
    assert.equal(bob.user_id, a.hs.store:openid_token_user(hash, core.now_ms()))
    assert.is_nil(a.hs.store:openid_token_user(hash, core.now_ms() + 3600 * 1000 + 1))
  end)

  it("issues tokens only for oneself, and checks the body", function()
    local carol, dave = a:register("carol"), a:register("dave")
    local r = a:request("POST", V3 .. "/user/" .. enc(dave.user_id) .. "/openid/request_token", {},
      carol.access_token)
    assert.equal(403, r.status)
    assert.equal("M_FORBIDDEN", r.json.errcode)
    r = a:request("POST", V3 .. "/user/" .. enc(carol.user_id) .. "/openid/request_token", "nope",
      carol.access_token)
    assert.equal(400, r.status)
    assert.equal("M_NOT_JSON", r.json.errcode)
    r = a:request("POST", V3 .. "/user/" .. enc(carol.user_id) .. "/openid/request_token", {})
    assert.equal(401, r.status)
  end)
end)
