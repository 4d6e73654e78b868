-- Third-party invites over federation (Server-Server API "Third-party
-- invites"): a user of a.lab invites an e-mail address; the address is
-- later bound to a user of b.lab, whose server gets onbind from the
-- identity server and asks a.lab with exchange_third_party_invite; a.lab
-- issues the signed invite over /invite, and the invitee joins. A block
-- signed by another key, or an exchange asked by a server the invitee does
-- not belong to, is refused and nothing is stored.
local core = require "loom.core"
local lab_mod = require "loom.lab"
local crypto = require "loom.room.crypto"
local identity_server = require("support.identity_server").start

local json = core.json

local function E(s) return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end)) end

local function membership(s, room, user_id)
  local m = s.hs.rooms:state_event(room, "m.room.member", user_id)
  return m and m.content.membership
end

-- An unsigned request to a lab server's federation listener (what an
-- identity server sends).
local function federation_put(s, path, body)
  local text = json.encode(body)
  local raw = { method = "PUT", target = path, path = path, query = "", headers = { host = s.name,
    ["content-type"] = "application/json" }, body = text, keep_alive = true, version = "1.1",
    peer = { ip = "127.0.0.1", port = 0 } }
  local resp = s.server:dispatch(raw, "federation")
  return { status = resp.status, json = json.decode(resp.body) }
end

describe("third-party invites over federation", function()
  local lab, a, b, c, is, out
  setup(function()
    is = identity_server()
    lab = lab_mod.new { seed = 11 }
    local cfg = { identity_server_allow_loopback = true, identity_server_http = true }
    a, b, c = lab:server("a.lab", cfg), lab:server("b.lab"), lab:server("c.lab")
    out = lab:run(function()
      local o = {}
      local alice = a:register("alice")
      o.room = a:create_room(alice, { preset = "private_chat", name = "By mail" })
      o.invite = a:client("POST", "/_matrix/client/v3/rooms/" .. E(o.room) .. "/invite",
        { id_server = is.name, id_access_token = is.token, medium = "email", address = "carol@example.org" },
        alice.access_token)
      o.token = is.invites[#is.invites] and is.invites[#is.invites].token
      o.tpi = o.token and a.hs.rooms:state_event(o.room, "m.room.third_party_invite", o.token)
      local carol = b:register("carol")
      o.carol = carol.user_id
      local function onbind(signed)
        return federation_put(b, "/_matrix/federation/v1/3pid/onbind", { medium = "email",
          address = "carol@example.org", mxid = carol.user_id, invites = json.array { { medium = "email",
            address = "carol@example.org", mxid = carol.user_id, room_id = o.room, sender = alice.user_id,
            signed = signed } } })
      end
      -- a block signed by a key that is not the identity server's: refused by a.lab
      local other = assert(crypto.signing_key(core.crypto.random_bytes(32), "ed25519:0", "is.test"))
      o.bad_bind = onbind(is.signed(carol.user_id, o.token, other))
      assert(lab:settle())
      o.after_bad = membership(a, o.room, carol.user_id)
      -- c.lab asks for an invite of b.lab's user: refused
      o.foreign = { c.hs.federation:request("a.lab", "PUT",
        "/_matrix/federation/v1/exchange_third_party_invite/" .. E(o.room),
        { body = { type = "m.room.member", room_id = o.room, sender = alice.user_id, state_key = carol.user_id,
          content = { membership = "invite", third_party_invite = { display_name = "x",
            signed = is.signed(carol.user_id, o.token) } } } }) }
      -- the identity server's own signature: the invite reaches carol on b.lab
      o.bind = onbind(is.signed(carol.user_id, o.token))
      assert(lab:settle())
      o.a_sees = membership(a, o.room, carol.user_id)
      local m = a.hs.rooms:state_event(o.room, "m.room.member", carol.user_id)
      o.tpi_content = m and m.content.third_party_invite
      local s = b:client("GET", "/_matrix/client/v3/sync?timeout=0", nil, carol.access_token)
      o.b_invited = s.json.rooms and s.json.rooms.invite and s.json.rooms.invite[o.room] ~= nil
      o.join = b:client("POST", "/_matrix/client/v3/join/" .. E(o.room), {}, carol.access_token)
      assert(lab:settle())
      o.a_sees_join = membership(a, o.room, carol.user_id)
      -- malformed exchanges
      o.bad_exchange = { b.hs.federation:request("a.lab", "PUT",
        "/_matrix/federation/v1/exchange_third_party_invite/" .. E(o.room),
        { body = { type = "m.room.message", room_id = o.room } }) }
      o.unsigned_exchange = federation_put(a, "/_matrix/federation/v1/exchange_third_party_invite/" .. E(o.room),
        { type = "m.room.member" })
      o.bad_onbind = federation_put(b, "/_matrix/federation/v1/3pid/onbind", { mxid = carol.user_id })
      return o
    end)
  end)
  teardown(function()
    lab:close()
    is.server:stop()
  end)

  it("stores the invite with the identity server and sends m.room.third_party_invite", function()
    assert.equal(200, out.invite.status, out.invite.body)
    assert.is_string(out.token)
    assert.equal(is.key.public_key_base64, out.tpi.content.public_key)
  end)

  it("refuses a block signed by another key, and an exchange from a server the invitee is not on", function()
    assert.equal(200, out.bad_bind.status)
    assert.is_nil(out.after_bad)
    assert.equal(403, out.foreign[1])
    assert.equal("M_FORBIDDEN", out.foreign[2].errcode)
  end)

  it("turns onbind into the signed invite through exchange_third_party_invite; the invitee joins", function()
    assert.equal(200, out.bind.status)
    assert.same({}, out.bind.json)
    assert.equal("invite", out.a_sees)
    assert.equal(out.token, out.tpi_content.signed.token)
    assert.equal("carol@...", out.tpi_content.display_name)
    assert.is_true(out.b_invited)
    assert.equal(200, out.join.status, out.join.body)
    assert.equal("join", out.a_sees_join)
  end)

  it("answers malformed requests with 400 and unsigned exchanges with 401", function()
    assert.equal(400, out.bad_exchange[1])
    assert.equal(401, out.unsigned_exchange.status)
    assert.equal(400, out.bad_onbind.status)
  end)
end)
