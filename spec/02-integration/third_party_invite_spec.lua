-- Third-party invites (Client-Server API "Third-party invites", Server-Server
-- API "Third-party invites", Identity Service API v2 lookup and
-- store-invite): POST /rooms/{roomId}/invite with id_server,
-- id_access_token, medium and address, against a small identity server
-- this spec runs on 127.0.0.1; then the identity server's onbind turns the
-- stored invite into a signed m.room.member invite.
local core = require "loom.core"
local crypto = require "loom.room.crypto"
local tesths = require "support.hs"
local identity_server = require("support.identity_server").start
local enc = tesths.enc

local V3 = "/_matrix/client/v3"
local json = core.json

describe("third-party invites", function()
  local t, is, alice, room
  setup(function()
    t = tesths.start { identity_server_allow_loopback = true, identity_server_http = true }
    is = identity_server()
    alice = t:register("alice")
    room = t:create_room(alice, { name = "3pid room" })
  end)
  teardown(function()
    is.server:stop()
    t:stop()
  end)
  before_each(function() is.requests = {}; is.broken = false; is.algorithms = { "none", "sha256" } end)

  local function invite(body, token)
    return t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/invite", body, token or alice.access_token)
  end
  local function tpi_body(address)
    return { id_server = is.name, id_access_token = is.token, medium = "email", address = address }
  end
  local function state(etype, key)
    return t:request("GET", V3 .. "/rooms/" .. enc(room) .. "/state/" .. etype .. "/" .. enc(key), nil,
      alice.access_token)
  end

  it("invites the user a bound address maps to (sha256 lookup with the pepper and the bearer token)", function()
    local bob = t:register("bob")
    is.bound["bob@example.org"] = bob.user_id
    local r = invite(tpi_body("Bob@Example.org"))
    assert.equal(200, r.status, r.body)
    assert.same({}, r.json)
    local m = state("m.room.member", bob.user_id)
    assert.equal(200, m.status)
    assert.equal("invite", m.json.membership)
    local lookups = is.requests_to("/_matrix/identity/v2/lookup")
    assert.equal(1, #lookups)
    assert.equal("Bearer " .. is.token, lookups[1].auth)
    assert.equal("sha256", lookups[1].body.algorithm)
    assert.equal(is.pepper, lookups[1].body.pepper)
    -- the address went hashed, never in the clear (and lowercased: an email)
    assert.equal(core.crypto.base64_encode(core.crypto.sha256("bob@example.org email " .. is.pepper), true),
      lookups[1].body.addresses[1])
    assert.equal(0, #is.requests_to("/_matrix/identity/v2/store-invite"))
  end)

  it("uses the 'none' algorithm when that is all the identity server offers", function()
    local dan = t:register("dan")
    is.bound["dan@example.org"] = dan.user_id
    is.algorithms = { "none" }
    local r = invite(tpi_body("dan@example.org"))
    assert.equal(200, r.status, r.body)
    assert.equal("dan@example.org email", is.requests_to("/_matrix/identity/v2/lookup")[1].body.addresses[1])
    assert.equal("invite", state("m.room.member", dan.user_id).json.membership)
  end)

  it("stores an invite for an unbound address and sends m.room.third_party_invite; onbind invites", function()
    local r = invite(tpi_body("carol@example.org"))
    assert.equal(200, r.status, r.body)
    local stored = is.requests_to("/_matrix/identity/v2/store-invite")
    assert.equal(1, #stored)
    local sb = stored[1].body
    assert.equal("carol@example.org", sb.address)
    assert.equal("email", sb.medium)
    assert.equal(room, sb.room_id)
    assert.equal(alice.user_id, sb.sender)
    assert.equal("3pid room", sb.room_name)
    local token = is.invites[#is.invites].token
    local ev = state("m.room.third_party_invite", token)
    assert.equal(200, ev.status, ev.body)
    assert.equal("carol@...", ev.json.display_name)
    assert.equal(is.key.public_key_base64, ev.json.public_key)
    assert.equal(is.key.public_key_base64, ev.json.public_keys[1].public_key)
    assert.is_string(ev.json.key_validity_url)

    -- carol registers and binds the address: the identity server calls onbind
    local carol = t:register("carol")
    local onbind
    for _, route in ipairs(require("loom.api.federation.third_party_invite").routes) do
      if route[2]:match("onbind$") then onbind = route[3] end
    end
    -- (this spec's homeserver has no federation listener: the handler is called as the listener would)
    local request = require "loom.http.request"
    local function call_onbind(body)
      local req = request.new { method = "PUT", path = "/_matrix/federation/v1/3pid/onbind", headers = {}, args = {},
        body = json.encode(body) }
      local ok, a, b
      t:run(function() ok, a, b = pcall(onbind, t.hs, req) end)
      assert(ok, a)
      return a, b
    end
    -- a signature by another key is refused by the auth rules: no invite
    local other = assert(crypto.signing_key(core.crypto.random_bytes(32), "ed25519:0", "is.test"))
    local res = call_onbind { medium = "email", address = "carol@example.org", mxid = carol.user_id,
      invites = { { medium = "email", address = "carol@example.org", mxid = carol.user_id, room_id = room,
        sender = alice.user_id, signed = is.signed(carol.user_id, token, other) } } }
    assert.same({}, res)
    assert.equal(404, state("m.room.member", carol.user_id).status)
    -- the identity server's own signature: carol is invited, with the signed block
    res = call_onbind { medium = "email", address = "carol@example.org", mxid = carol.user_id,
      invites = { { medium = "email", address = "carol@example.org", mxid = carol.user_id, room_id = room,
        sender = alice.user_id, signed = is.signed(carol.user_id, token) } } }
    assert.same({}, res)
    local m = state("m.room.member", carol.user_id)
    assert.equal(200, m.status, m.body)
    assert.equal("invite", m.json.membership)
    assert.equal("carol@...", m.json.third_party_invite.display_name)
    assert.equal(token, m.json.third_party_invite.signed.token)
    -- and she can join
    t:join(carol, room)
    assert.equal("join", state("m.room.member", carol.user_id).json.membership)
    -- bad onbind bodies are refused, nothing changes
    local status = call_onbind { medium = "email", address = "x", mxid = carol.user_id, invites = "no" }
    assert.equal("M_BAD_JSON", status.errcode)
    status = call_onbind { medium = "email", address = "x", mxid = "@nobody:test.local", invites = json.array() }
    assert.equal("M_NOT_FOUND", status.errcode)
    status = call_onbind { medium = "email", address = "x", mxid = carol.user_id,
      invites = { { room_id = room, sender = alice.user_id, signed = { mxid = "@other:test.local", token = "t",
        signatures = {} } } } }
    assert.equal("M_BAD_JSON", status.errcode)
  end)

  it("refuses bad bodies with 400 before asking the identity server", function()
    local cases = {
      { { id_server = is.name, medium = "email", address = "a@b.c" }, "M_MISSING_PARAM" },
      { { id_server = is.name, id_access_token = is.token, address = "a@b.c" }, "M_MISSING_PARAM" },
      { { id_server = is.name, id_access_token = is.token, medium = "email" }, "M_MISSING_PARAM" },
      { { id_access_token = is.token, medium = "email", address = "a@b.c" }, "M_MISSING_PARAM" },
      { { id_server = 5, id_access_token = is.token, medium = "email", address = "a@b.c" }, "M_INVALID_PARAM" },
      { { id_server = "https://evil/", id_access_token = is.token, medium = "email", address = "a@b.c" },
        "M_INVALID_PARAM" },
      { { id_server = "host:99999", id_access_token = is.token, medium = "email", address = "a@b.c" },
        "M_INVALID_PARAM" },
      { { id_server = is.name, id_access_token = "a b", medium = "email", address = "a@b.c" }, "M_INVALID_PARAM" },
      { { id_server = is.name, id_access_token = is.token, medium = {}, address = "a@b.c" }, "M_INVALID_PARAM" },
      { { id_server = is.name, id_access_token = is.token, medium = "email", address = ("x"):rep(600) },
        "M_INVALID_PARAM" },
    }
    for _, c in ipairs(cases) do
      local r = invite(c[1])
      assert.equal(400, r.status, r.body)
      assert.equal(c[2], r.json.errcode, r.body)
    end
    assert.equal(0, #is.requests)
  end)

  it("refuses non-members (403) without asking the identity server", function()
    local eve = t:register("eve")
    local r = invite(tpi_body("x@example.org"), eve.access_token)
    assert.equal(403, r.status)
    assert.equal("M_FORBIDDEN", r.json.errcode)
    local r2 = t:request("POST", V3 .. "/rooms/" .. enc("!nope:test.local") .. "/invite", tpi_body("x@example.org"),
      alice.access_token)
    assert.equal(404, r2.status)
    assert.equal(0, #is.requests)
  end)

  it("answers the identity server's refusal and failure as Matrix errors, sending nothing", function()
    local body = tpi_body("fail@example.org")
    body.id_access_token = "wrong-token"
    local r = invite(body)
    assert.equal(403, r.status, r.body)
    assert.equal("M_FORBIDDEN", r.json.errcode)
    is.broken = true
    r = invite(tpi_body("fail@example.org"))
    assert.equal(502, r.status, r.body)
    -- an identity server nobody listens on
    local dead = tpi_body("fail@example.org")
    dead.id_server = "127.0.0.1:1"
    r = invite(dead)
    assert.equal(502, r.status, r.body)
    assert.equal(0, #is.requests_to("/_matrix/identity/v2/store-invite"))
  end)
end)

describe("third-party invites without the loopback allowance", function()
  it("does not reach an identity server on 127.0.0.1", function()
    local t = tesths.start { identity_server_http = true }
    local is = identity_server()
    local alice = t:register("alice")
    local room = t:create_room(alice)
    local r = t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/invite", { id_server = is.name,
      id_access_token = is.token, medium = "email", address = "a@example.org" }, alice.access_token)
    assert.equal(502, r.status, r.body)
    assert.equal(0, #is.requests)
    is.server:stop()
    t:stop()
  end)
end)
