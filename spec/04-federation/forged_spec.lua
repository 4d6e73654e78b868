-- Forged and bad federation traffic, in the lab: b.lab (a member of a.lab's
-- room) sends a.lab transactions holding events it made up. What the spec
-- says must not take hold does not: nothing reaches a's clients or a's
-- extremities, and each PDU's result names why.
local lab_mod = require "loom.lab"
local core = require "loom.core"
local crypto = require "loom.room.crypto"
local event_mod = require "loom.room.event"
local version_mod = require "loom.room.version"
local fedclient = require "loom.federation.client"

local E = fedclient.encode
local json = core.json

describe("forged federation traffic", function()
  local lab, a, b, alice, bob, room, version

  setup(function()
    lab = lab_mod.new { seed = 3 }
    a, b = lab:server("a.lab"), lab:server("b.lab")
    lab:run(function()
      alice, bob = a:register("alice"), b:register("bob")
      room = a:create_room(alice, { preset = "public_chat" })
      b:join(bob, room, { "a.lab" })
      assert(lab:settle())
    end)
    version = assert(version_mod.get(a.hs.store:room_version(room)))
  end)

  teardown(function() lab:close() end)

  -- An event of bob's built on b from a template of a message, then changed
  -- by `change(ev)` and hashed and signed with `key` (b's by default).
  local function forge(change, key, keep_hash)
    local tpl = assert(b.hs.rooms:template(room, { type = "m.room.message", sender = bob.user_id,
      content = { msgtype = "m.text", body = "forged" } }))
    change(tpl)
    if not keep_hash then assert(crypto.add_content_hash(tpl)) end
    assert(crypto.sign_event(tpl, key or b.hs.key, version.id))
    return tpl
  end

  -- b sends a transaction of pdus to a: status, body.
  local function send(txn, pdus, edus)
    return lab:run(function()
      return { b.hs.federation:request("a.lab", "PUT", "/_matrix/federation/v1/send/" .. E(txn),
        { body = { origin = "b.lab", origin_server_ts = core.now_ms(), pdus = json.array(pdus),
                   edus = json.array(edus or {}) } }) }
    end)
  end

  local function id_of(ev) return event_mod.compute_id(version, ev) end

  local function seen_by_alice(event_id)
    return lab:run(function()
      local m = a:client("GET", "/_matrix/client/v3/rooms/" .. E(room) .. "/messages?dir=b&limit=50", nil,
        alice.access_token)
      for _, ev in ipairs(m.json.chunk) do if ev.event_id == event_id then return ev end end
      return false
    end)
  end

  local function is_extremity(event_id)
    for _, id in ipairs(a.hs.store:forward_extremities(room)) do if id == event_id then return true end end
    return false
  end

  it("refuses a PDU whose signature is not the sender's server's", function()
    local other = assert(crypto.signing_key(("\9"):rep(32), b.hs.key.key_id, "b.lab"))
    local ev = forge(function() end, other)
    local r = send("sig1", { ev })
    assert.equal(200, r[1])
    local res = r[2].pdus[id_of(ev)]
    assert.is_string(res.error)
    assert.is_nil(a.hs.store:event(id_of(ev)))
    assert.is_false(seen_by_alice(id_of(ev)))
  end)

  it("stores a PDU that fails the auth rules as rejected: never shown, never an extremity", function()
    local ev = forge(function(t)
      t.type = "m.room.power_levels"
      t.state_key = ""
      t.content = { users = { [bob.user_id] = 100 }, users_default = 100 }
    end)
    local id = id_of(ev)
    local r = send("auth1", { ev })
    assert.equal(200, r[1])
    assert.is_string(r[2].pdus[id].error)
    local _, meta = a.hs.store:event(id)
    assert.is_truthy(meta and meta.rejected)
    assert.is_false(is_extremity(id))
    assert.is_false(seen_by_alice(id))
    -- a's power levels are unchanged
    local pl = a.hs.rooms:state_event(room, "m.room.power_levels", "")
    assert.are_not.equal(100, pl.content.users[bob.user_id])
  end)

  it("stores a PDU whose content does not match its hash redacted", function()
    local ev = forge(function() end)
    ev.content = { msgtype = "m.text", body = "changed after hashing" }   -- the redacted form is what is signed
    local id = id_of(ev)
    local r = send("hash1", { ev })
    assert.equal(200, r[1])
    local shown = seen_by_alice(id)
    assert.is_table(shown)
    assert.is_nil(shown.content.body)
  end)

  it("refuses PDUs and EDUs from a server the room's ACL denies", function()
    lab:run(function()
      a:state(alice, room, "m.room.server_acl", "", { allow = { "*" }, deny = { "b.lab" } })
    end)
    local ev = forge(function(t) t.content = { msgtype = "m.text", body = "from a banned server" } end)
    local r = send("acl1", { ev }, { { edu_type = "m.typing", content = { room_id = room, user_id = bob.user_id,
      typing = true } } })
    assert.equal(200, r[1])
    assert.matches("ACL", r[2].pdus[id_of(ev)].error)
    assert.is_nil(a.hs.store:event(id_of(ev)))
    assert.same({}, a.hs.typing:users(room))
    lab:run(function()
      a:state(alice, room, "m.room.server_acl", "", { allow = { "*" }, deny = json.array {} })
    end)
  end)

  it("refuses an oversized transaction, processing nothing", function()
    local pdus = {}
    for i = 1, 51 do pdus[i] = forge(function(t) t.content = { msgtype = "m.text", body = "bulk " .. i } end) end
    local r = send("big1", pdus)
    assert.equal(400, r[1])
    assert.equal("M_BAD_JSON", r[2].errcode)
    assert.is_nil(a.hs.store:event(id_of(pdus[1])))
  end)

  it("answers a replayed transaction as the first time, storing nothing twice", function()
    local ev = forge(function(t) t.content = { msgtype = "m.text", body = "once" } end)
    local r1 = send("replay1", { ev })
    assert.equal(200, r1[1])
    local _, meta1 = a.hs.store:event(id_of(ev))
    assert.is_truthy(meta1)
    local r2 = send("replay1", { ev })
    assert.equal(200, r2[1])
    assert.same(r1[2], r2[2])
    local _, meta2 = a.hs.store:event(id_of(ev))
    assert.equal(meta1.stream_ordering, meta2.stream_ordering)
  end)
end)
