-- The Client-Server room endpoints (loom.api.client.rooms, .directory)
-- against a real server.
local tesths = require "support.hs"
local core = require "loom.core"

local enc = tesths.enc
local P = "/_matrix/client/v3"

describe("room endpoints", function()
  local t, alice, bob, carol

  setup(function()
    t = tesths.start()
    alice = t:register("alice")
    bob = t:register("bob")
    carol = t:register("carol")
  end)

  teardown(function() t:stop() end)

  local function req(method, path, body, who)
    return t:request(method, P .. path, body, who and who.access_token)
  end

  local function create(who, body)
    local r = req("POST", "/createRoom", body or {}, who)
    assert.are.equal(200, r.status, r.body)
    return r.json.room_id, r.json
  end

  local function ok(r, status)
    assert.are.equal(status or 200, r.status, r.body)
    return r.json
  end

  local function err(r, status, errcode)
    assert.are.equal(status, r.status, r.body)
    assert.are.equal(errcode, r.json.errcode, r.body)
    return r.json
  end

  -- the room's events in timeline order, from the store
  local function events(room_id)
    local page = assert(t.hs.store:paginate(room_id, nil, { dir = "f", limit = 100 }))
    local out = {}
    for i, e in ipairs(page.events) do out[i] = core.json.decode(e.json) end
    return out
  end

  local function state(room_id, ty, sk, who)
    return req("GET", "/rooms/" .. enc(room_id) .. "/state/" .. ty .. "/" .. enc(sk or ""), nil, who or alice)
  end

  describe("createRoom", function()
    it("sends the initial events in the spec's order", function()
      local room_id, resp = create(alice, {
        preset = "public_chat", room_alias_name = "order", name = "The room", topic = "About",
        initial_state = { { type = "m.room.encryption", state_key = "",
          content = { algorithm = "m.megolm.v1.aes-sha2" } } },
        invite = { bob.user_id },
      })
      assert.are.equal("#order:test.local", resp.room_alias)
      local got = {}
      for i, e in ipairs(events(room_id)) do got[i] = e.type .. "|" .. (e.state_key or "") end
      assert.are.same({
        "m.room.create|", "m.room.member|" .. alice.user_id, "m.room.power_levels|",
        "m.room.canonical_alias|", "m.room.join_rules|", "m.room.history_visibility|",
        "m.room.guest_access|", "m.room.encryption|", "m.room.name|", "m.room.topic|",
        "m.room.member|" .. bob.user_id,
      }, got)
      assert.are.equal("public", ok(state(room_id, "m.room.join_rules")).join_rule)
      assert.are.equal("forbidden", ok(state(room_id, "m.room.guest_access")).guest_access)
      assert.are.equal("shared", ok(state(room_id, "m.room.history_visibility")).history_visibility)
      assert.are.equal("#order:test.local", ok(state(room_id, "m.room.canonical_alias")).alias)
      local pl = ok(state(room_id, "m.room.power_levels"))
      assert.are.same({ [alice.user_id] = 100 }, pl.users)
      assert.are.equal(50, pl.state_default)
      assert.are.equal(100, pl.events["m.room.power_levels"])
      assert.are.equal(0, pl.invite)
      assert.are.equal("invite", ok(state(room_id, "m.room.member", bob.user_id)).membership)
    end)

    it("private_chat by default; trusted_private_chat gives invitees 100", function()
      local room_id = create(alice)
      assert.are.equal("invite", ok(state(room_id, "m.room.join_rules")).join_rule)
      assert.are.equal("can_join", ok(state(room_id, "m.room.guest_access")).guest_access)
      local trusted = create(alice, { preset = "trusted_private_chat", invite = { bob.user_id } })
      local pl = ok(state(trusted, "m.room.power_levels"))
      assert.are.equal(100, pl.users[bob.user_id])
      assert.are.equal(100, pl.users[alice.user_id])
      local pub = create(alice, { visibility = "public" })
      assert.are.equal("public", ok(state(pub, "m.room.join_rules")).join_rule)
    end)

    it("applies power_level_content_override and creation_content", function()
      local room_id = create(alice, { power_level_content_override = { ban = 75,
        users = { [alice.user_id] = 100, [bob.user_id] = 60 } },
        creation_content = { ["m.federate"] = false } })
      local pl = ok(state(room_id, "m.room.power_levels"))
      assert.are.equal(75, pl.ban)
      assert.are.equal(60, pl.users[bob.user_id])
      assert.are.equal(false, ok(state(room_id, "m.room.create"))["m.federate"])
    end)

    it("v12: the creator is not in users", function()
      local room_id = create(alice, { room_version = "12" })
      local pl = ok(state(room_id, "m.room.power_levels"))
      assert.is_nil(pl.users[alice.user_id])
      assert.are.equal("12", ok(state(room_id, "m.room.create")).room_version)
      local ev = ok(req("GET", "/rooms/" .. enc(room_id) .. "/state/m.room.create/?format=event", nil, alice))
      assert.are.equal(room_id, ev.room_id)
      ok(req("PUT", "/rooms/" .. enc(room_id) .. "/state/m.room.name", { name = "v12" }, alice))
    end)

    it("refuses bad requests", function()
      err(req("POST", "/createRoom", { room_version = "99" }, alice), 400, "M_UNSUPPORTED_ROOM_VERSION")
      create(alice, { room_alias_name = "taken" })
      err(req("POST", "/createRoom", { room_alias_name = "taken" }, alice), 400, "M_ROOM_IN_USE")
      err(req("POST", "/createRoom", { room_alias_name = "a:b" }, alice), 400, "M_INVALID_PARAM")
      err(req("POST", "/createRoom", { preset = "nope" }, alice), 400, "M_BAD_JSON")    -- as Synapse
      err(req("POST", "/createRoom", "{not json", alice), 400, "M_NOT_JSON")
      err(req("POST", "/createRoom", "[1]", alice), 400, "M_BAD_JSON")
      err(req("POST", "/createRoom", { name = 5 }, alice), 400, "M_BAD_JSON")
      err(req("POST", "/createRoom", {}), 401, "M_MISSING_TOKEN")
    end)

    it("leaves no half-built room when an initial event is refused", function()
      local before = ok(req("GET", "/joined_rooms", nil, alice)).joined_rooms
      -- power 10 for alice, then a state event needing 50: refused
      local r = req("POST", "/createRoom", { room_alias_name = "halfbuilt",
        power_level_content_override = { users = { [alice.user_id] = 10 } }, name = "x" }, alice)
      err(r, 403, "M_FORBIDDEN")
      assert.are.same(before, ok(req("GET", "/joined_rooms", nil, alice)).joined_rooms)
      err(req("GET", "/directory/room/" .. enc("#halfbuilt:test.local")), 404, "M_NOT_FOUND")
    end)
  end)

  describe("membership", function()
    it("joins a public room by ID and by alias, leaves and forgets", function()
      local room_id = create(alice, { preset = "public_chat", room_alias_name = "joinme" })
      assert.are.equal(room_id, ok(req("POST", "/rooms/" .. enc(room_id) .. "/join", {}, bob)).room_id)
      assert.are.equal(room_id, ok(req("POST", "/join/" .. enc("#joinme:test.local"), {}, carol)).room_id)
      local joined = ok(req("GET", "/rooms/" .. enc(room_id) .. "/joined_members", nil, bob)).joined
      assert.is_table(joined[alice.user_id])
      assert.is_table(joined[bob.user_id])
      assert.is_table(joined[carol.user_id])
      assert.are.same({ room_id }, (function()
        local out = {}
        for _, r in ipairs(ok(req("GET", "/joined_rooms", nil, carol)).joined_rooms) do
          if r == room_id then out[#out + 1] = r end
        end
        return out
      end)())
      err(req("POST", "/rooms/" .. enc(room_id) .. "/forget", {}, carol), 400, "M_UNKNOWN")
      ok(req("POST", "/rooms/" .. enc(room_id) .. "/leave", {}, carol))
      ok(req("POST", "/rooms/" .. enc(room_id) .. "/forget", {}, carol))
      err(req("POST", "/join/" .. enc("#nope:test.local"), {}, bob), 404, "M_NOT_FOUND")
      err(req("POST", "/join/" .. enc("!nope:test.local"), {}, bob), 404, "M_NOT_FOUND")
    end)

    it("invite-only: refused without an invite, joins after one", function()
      local room_id = create(alice)
      err(req("POST", "/rooms/" .. enc(room_id) .. "/join", {}, bob), 403, "M_FORBIDDEN")
      ok(req("POST", "/rooms/" .. enc(room_id) .. "/invite", { user_id = bob.user_id }, alice))
      ok(req("POST", "/rooms/" .. enc(room_id) .. "/join", {}, bob))
      assert.are.equal("join", ok(state(room_id, "m.room.member", bob.user_id)).membership)
      err(req("POST", "/rooms/" .. enc(room_id) .. "/invite", {}, alice), 400, "M_MISSING_PARAM")
      err(req("POST", "/rooms/" .. enc(room_id) .. "/invite", { user_id = "nobody" }, alice), 400, "M_INVALID_PARAM")
    end)

    it("kick, ban and unban check power", function()
      local room_id = create(alice, { preset = "public_chat" })
      local R = "/rooms/" .. enc(room_id)
      ok(req("POST", R .. "/join", {}, bob))
      ok(req("POST", R .. "/join", {}, carol))
      err(req("POST", R .. "/kick", { user_id = carol.user_id }, bob), 403, "M_FORBIDDEN")
      ok(req("POST", R .. "/kick", { user_id = carol.user_id, reason = "spam" }, alice))
      local m = ok(state(room_id, "m.room.member", carol.user_id))
      assert.are.equal("leave", m.membership)
      assert.are.equal("spam", m.reason)
      err(req("POST", R .. "/ban", { user_id = carol.user_id }, bob), 403, "M_FORBIDDEN")
      ok(req("POST", R .. "/ban", { user_id = carol.user_id, reason = "more spam" }, alice))
      assert.are.equal("ban", ok(state(room_id, "m.room.member", carol.user_id)).membership)
      err(req("POST", R .. "/join", {}, carol), 403, "M_BAD_STATE")    -- banned: as Synapse answers
      err(req("POST", "/join/" .. enc(room_id), {}, carol), 403, "M_BAD_STATE")
      err(req("POST", R .. "/unban", { user_id = carol.user_id }, bob), 403, "M_FORBIDDEN")
      ok(req("POST", R .. "/unban", { user_id = carol.user_id }, alice))
      -- an empty body is accepted for membership changes
      ok(t:request("POST", P .. R .. "/join", nil, carol.access_token))
      ok(t:request("POST", P .. R .. "/leave", nil, carol.access_token))
    end)
  end)

  describe("send", function()
    it("is idempotent per device and transaction ID", function()
      local room_id = create(alice)
      local R = "/rooms/" .. enc(room_id)
      local a = ok(req("PUT", R .. "/send/m.room.message/t1", { msgtype = "m.text", body = "hi" }, alice))
      local b = ok(req("PUT", R .. "/send/m.room.message/t1", { msgtype = "m.text", body = "hi" }, alice))
      assert.are.equal(a.event_id, b.event_id)
      local n = 0
      for _, e in ipairs(events(room_id)) do if e.type == "m.room.message" then n = n + 1 end end
      assert.are.equal(1, n)
      local other = assert(t.hs.accounts:login(alice.user_id, alice.password))
      local c = ok(t:request("PUT", P .. R .. "/send/m.room.message/t1", { body = "hi" }, other.access_token))
      assert.are_not.equal(a.event_id, c.event_id)
      local row = t.hs.store.conn:first("SELECT user_id, device_id, event_id FROM txn_ids WHERE event_id = ?",
        a.event_id)
      assert.are.same({ alice.user_id, alice.device_id, a.event_id }, row)
    end)

    it("refuses bad bodies, oversized events and non-members", function()
      local room_id = create(alice)
      local R = "/rooms/" .. enc(room_id)
      err(req("PUT", R .. "/send/m.room.message/x1", "nope", alice), 400, "M_NOT_JSON")
      err(req("PUT", R .. "/send/m.room.message/x2", "[]", alice), 400, "M_BAD_JSON")
      err(req("PUT", R .. "/send/m.room.message/x3", { body = string.rep("a", 70000) }, alice), 413, "M_TOO_LARGE")
      err(req("PUT", R .. "/send/m.room.message/x4", { body = "hi" }, bob), 403, "M_FORBIDDEN")
      err(req("PUT", R .. "/send/m.room.message/x5", { body = "hi" }), 401, "M_MISSING_TOKEN")
    end)
  end)

  describe("state and members", function()
    it("reads and writes state, with and without a state key", function()
      local room_id = create(alice, { name = "first" })
      local R = "/rooms/" .. enc(room_id)
      local put = ok(req("PUT", R .. "/state/m.room.name", { name = "second" }, alice))
      assert.is_string(put.event_id)
      assert.are.equal("second", ok(req("GET", R .. "/state/m.room.name", nil, alice)).name)
      local ev = ok(req("GET", R .. "/state/m.room.name/?format=event", nil, alice))
      assert.are.equal(put.event_id, ev.event_id)
      assert.are.equal("m.room.name", ev.type)
      assert.are.equal("", ev.state_key)
      assert.are.equal(room_id, ev.room_id)
      assert.is_table(ev.unsigned)
      ok(req("PUT", R .. "/state/org.example.thing/" .. enc("a/b"), { v = 1 }, alice))
      assert.are.equal(1, ok(req("GET", R .. "/state/org.example.thing/" .. enc("a/b"), nil, alice)).v)
      err(req("GET", R .. "/state/m.room.avatar", nil, alice), 404, "M_NOT_FOUND")
      local all = ok(req("GET", R .. "/state", nil, alice))
      local types = {}
      for _, e in ipairs(all) do
        types[e.type] = true
        assert.is_string(e.event_id)
        assert.is_string(e.sender)
        assert.is_number(e.origin_server_ts)
      end
      assert.is_true(types["m.room.create"] and types["m.room.power_levels"] and types["m.room.name"])
      err(req("GET", R .. "/state", nil, bob), 403, "M_FORBIDDEN")
      err(req("GET", R .. "/members", nil, bob), 403, "M_FORBIDDEN")
      err(req("PUT", R .. "/state/m.room.topic", { topic = "x" }, bob), 403, "M_FORBIDDEN")
    end)

    it("a user who left sees the state as of the leave", function()
      local room_id = create(alice, { preset = "public_chat", name = "before" })
      local R = "/rooms/" .. enc(room_id)
      ok(req("POST", R .. "/join", {}, bob))
      ok(req("POST", R .. "/leave", {}, bob))
      ok(req("PUT", R .. "/state/m.room.name", { name = "after" }, alice))
      assert.are.equal("before", ok(req("GET", R .. "/state/m.room.name", nil, bob)).name)
      local members = ok(req("GET", R .. "/members", nil, bob)).chunk
      local seen = {}
      for _, m in ipairs(members) do seen[m.state_key] = m.content.membership end
      assert.are.same({ [alice.user_id] = "join", [bob.user_id] = "leave" }, seen)
      local joined = ok(req("GET", R .. "/members?membership=join", nil, alice)).chunk
      assert.are.equal(1, #joined)
      local not_joined = ok(req("GET", R .. "/members?not_membership=join", nil, alice)).chunk
      assert.are.equal(1, #not_joined)
      assert.are.equal(bob.user_id, not_joined[1].state_key)
    end)
  end)

  describe("events and redaction", function()
    it("gets an event; 404 for unknown or other rooms; redacts", function()
      local room_id = create(alice, { preset = "public_chat" })
      local other = create(alice)
      local R = "/rooms/" .. enc(room_id)
      ok(req("POST", R .. "/join", {}, bob))
      local sent = ok(req("PUT", R .. "/send/m.room.message/e1", { msgtype = "m.text", body = "x" }, alice))
      local ev = ok(req("GET", R .. "/event/" .. enc(sent.event_id), nil, bob))
      assert.are.equal("x", ev.content.body)
      err(req("GET", R .. "/event/" .. enc("$nope"), nil, alice), 404, "M_NOT_FOUND")
      err(req("GET", R .. "/event/" .. enc(sent.event_id), nil, carol), 404, "M_NOT_FOUND")
      err(req("GET", "/rooms/" .. enc(other) .. "/event/" .. enc(sent.event_id), nil, alice), 404, "M_NOT_FOUND")
      err(req("GET", "/rooms/" .. enc(other) .. "/event/" .. enc(sent.event_id), nil, carol), 404, "M_NOT_FOUND")
      -- bob (power 0) may not redact alice's event; alice may
      err(req("PUT", R .. "/redact/" .. enc(sent.event_id) .. "/r1", {}, bob), 403, "M_FORBIDDEN")
      local red = ok(req("PUT", R .. "/redact/" .. enc(sent.event_id) .. "/r1", { reason = "oops" }, alice))
      local again = ok(req("PUT", R .. "/redact/" .. enc(sent.event_id) .. "/r1", { reason = "oops" }, alice))
      assert.are.equal(red.event_id, again.event_id)
      local rev = ok(req("GET", R .. "/event/" .. enc(red.event_id), nil, alice))
      assert.are.equal("m.room.redaction", rev.type)
      assert.are.equal(sent.event_id, rev.content.redacts)          -- v11: in content
      assert.are.equal("oops", rev.content.reason)
      -- bob may redact his own
      local mine = ok(req("PUT", R .. "/send/m.room.message/e2", { body = "y" }, bob))
      ok(req("PUT", R .. "/redact/" .. enc(mine.event_id) .. "/r2", {}, bob))
    end)

    it("v10: redacts at the top level", function()
      local room_id = create(alice, { room_version = "10" })
      local R = "/rooms/" .. enc(room_id)
      local sent = ok(req("PUT", R .. "/send/m.room.message/e1", { body = "x" }, alice))
      local red = ok(req("PUT", R .. "/redact/" .. enc(sent.event_id) .. "/r1", {}, alice))
      local rev = ok(req("GET", R .. "/event/" .. enc(red.event_id), nil, alice))
      assert.are.equal(sent.event_id, rev.redacts)
    end)
  end)

  describe("no-op and misdirected requests", function()
    -- the room's events as a list of event IDs, to show nothing was stored
    local function event_ids(room_id)
      local out = {}
      for i, e in ipairs(events(room_id)) do out[i] = e.event_id end
      return out
    end

    it("kick only for a target who is joined, invited or knocking", function()
      local room_id = create(alice, { preset = "public_chat" })
      local R = "/rooms/" .. enc(room_id)
      local dave = t:register("dave-kick")
      ok(req("POST", R .. "/join", {}, bob))
      ok(req("POST", R .. "/ban", { user_id = bob.user_id, reason = "spam" }, alice))
      local before = event_ids(room_id)
      -- a banned user: 403 M_BAD_STATE (as Synapse; M_BAD_STATE is the spec's code for
      -- "a state change that cannot be performed"), the ban stays; no invite either
      err(req("POST", R .. "/kick", { user_id = bob.user_id }, alice), 403, "M_BAD_STATE")
      err(req("POST", R .. "/invite", { user_id = bob.user_id }, alice), 403, "M_BAD_STATE")
      local m = ok(state(room_id, "m.room.member", bob.user_id))
      assert.are.equal("ban", m.membership)
      assert.are.equal("spam", m.reason)
      -- never in the room
      err(req("POST", R .. "/kick", { user_id = dave.user_id }, alice), 403, "M_FORBIDDEN")
      err(req("POST", R .. "/kick", { user_id = "@ghost:test.local" }, alice), 403, "M_FORBIDDEN")
      assert.are.same(before, event_ids(room_id))
      -- already gone
      ok(req("POST", R .. "/join", {}, carol))
      ok(req("POST", R .. "/leave", {}, carol))
      before = event_ids(room_id)
      err(req("POST", R .. "/kick", { user_id = carol.user_id }, alice), 403, "M_FORBIDDEN")
      assert.are.same(before, event_ids(room_id))
      -- an invited user may be kicked (the invite is withdrawn)
      ok(req("POST", R .. "/invite", { user_id = dave.user_id }, alice))
      ok(req("POST", R .. "/kick", { user_id = dave.user_id }, alice))
      assert.are.equal("leave", ok(state(room_id, "m.room.member", dave.user_id)).membership)
      -- unban still turns a ban into leave
      ok(req("POST", R .. "/unban", { user_id = bob.user_id }, alice))
      assert.are.equal("leave", ok(state(room_id, "m.room.member", bob.user_id)).membership)
    end)

    it("unban only for a banned target: 403 M_BAD_STATE otherwise, and nobody is kicked", function()
      local room_id = create(alice, { preset = "public_chat" })
      local R = "/rooms/" .. enc(room_id)
      ok(req("POST", R .. "/join", {}, bob))
      local before = event_ids(room_id)
      err(req("POST", R .. "/unban", { user_id = bob.user_id }, alice), 403, "M_BAD_STATE")
      err(req("POST", R .. "/unban", { user_id = carol.user_id }, alice), 403, "M_BAD_STATE")
      assert.are.equal("join", ok(state(room_id, "m.room.member", bob.user_id)).membership)
      assert.are.same(before, event_ids(room_id))
    end)

    it("a redaction naming an event of another room is 400 and stores nothing", function()
      local room_id = create(alice)
      local other = create(alice)
      local R = "/rooms/" .. enc(room_id)
      local elsewhere = ok(req("PUT", "/rooms/" .. enc(other) .. "/send/m.room.message/x", { body = "x" }, alice))
      local before = event_ids(room_id)
      err(req("PUT", R .. "/redact/" .. enc(elsewhere.event_id) .. "/x1", {}, alice), 400, "M_INVALID_PARAM")
      assert.are.same(before, event_ids(room_id))
      -- the txnId was not spent: a retry is refused again, not answered from the record
      err(req("PUT", R .. "/redact/" .. enc(elsewhere.event_id) .. "/x1", {}, alice), 400, "M_INVALID_PARAM")
      -- an unknown event ID is still allowed
      ok(req("PUT", R .. "/redact/" .. enc("$unknown") .. "/x2", {}, alice))
    end)

    it("setting state to its current content returns the current event and stores nothing", function()
      local room_id = create(alice, { preset = "public_chat", name = "same" })
      local R = "/rooms/" .. enc(room_id)
      local first = ok(req("PUT", R .. "/state/org.example.thing/k", { a = 1, b = { c = "d" } }, alice))
      local before = event_ids(room_id)
      local again = ok(req("PUT", R .. "/state/org.example.thing/k", { b = { c = "d" }, a = 1 }, alice))
      assert.are.equal(first.event_id, again.event_id)
      assert.are.same(before, event_ids(room_id))
      local name = ok(req("GET", R .. "/state/m.room.name/?format=event", nil, alice))
      assert.are.equal(name.event_id, ok(req("PUT", R .. "/state/m.room.name", { name = "same" }, alice)).event_id)
      assert.are.same(before, event_ids(room_id))
      -- other content, or another sender with the same content: a new event
      local changed = ok(req("PUT", R .. "/state/org.example.thing/k", { a = 2, b = { c = "d" } }, alice))
      assert.are_not.equal(first.event_id, changed.event_id)
      ok(req("PUT", R .. "/state/m.room.power_levels", (function()
        local pl = ok(req("GET", R .. "/state/m.room.power_levels", nil, alice))
        pl.users[bob.user_id] = 100
        return pl
      end)(), alice))
      ok(req("POST", R .. "/join", {}, bob))
      local by_bob = ok(req("PUT", R .. "/state/org.example.thing/k", { a = 2, b = { c = "d" } }, bob))
      assert.are_not.equal(changed.event_id, by_bob.event_id)
      -- a non-member still gets 403, even with the current content
      err(req("PUT", R .. "/state/m.room.name", { name = "same" }, carol), 403, "M_FORBIDDEN")
      ok(req("POST", R .. "/leave", {}, bob))
      err(req("PUT", R .. "/state/org.example.thing/k", { a = 2, b = { c = "d" } }, bob), 403, "M_FORBIDDEN")
    end)

    it("joined_members gives display_name and avatar_url for everyone, null when unset", function()
      local erin, fred = t:register("erin-jm"), t:register("fred-jm")
      ok(req("PUT", "/profile/" .. enc(erin.user_id) .. "/displayname", { displayname = "Erin" }, erin))
      local room_id = create(erin, { preset = "public_chat" })
      local R = "/rooms/" .. enc(room_id)
      ok(req("POST", R .. "/join", {}, fred))
      local joined = ok(req("GET", R .. "/joined_members", nil, erin)).joined
      assert.are.equal("Erin", joined[erin.user_id].display_name)
      assert.are.equal(core.json.null, joined[erin.user_id].avatar_url)
      assert.are.equal(core.json.null, joined[fred.user_id].display_name)
      assert.are.equal(core.json.null, joined[fred.user_id].avatar_url)
    end)
  end)

  describe("directory", function()
    it("puts, gets and deletes aliases", function()
      local room_id = create(alice, { preset = "public_chat" })
      local A = "/directory/room/" .. enc("#dir:test.local")
      ok(req("PUT", A, { room_id = room_id }, alice))
      err(req("PUT", A, { room_id = room_id }, alice), 409, "M_UNKNOWN")
      local got = ok(req("GET", A))
      assert.are.equal(room_id, got.room_id)
      assert.are.same({ "test.local" }, got.servers)
      err(req("PUT", "/directory/room/" .. enc("#x:elsewhere"), { room_id = room_id }, alice), 400, "M_INVALID_PARAM")
      err(req("PUT", "/directory/room/" .. enc("#y:test.local"), { room_id = "!no:test.local" }, alice),
        404, "M_NOT_FOUND")
      err(req("DELETE", A, nil, bob), 403, "M_FORBIDDEN")
      ok(req("DELETE", A, nil, alice))
      err(req("GET", A), 404, "M_NOT_FOUND")
      err(req("DELETE", A, nil, alice), 404, "M_NOT_FOUND")
      -- a room admin may delete another user's alias
      ok(req("POST", "/rooms/" .. enc(room_id) .. "/join", {}, bob))
      ok(req("PUT", A, { room_id = room_id }, bob))
      ok(req("DELETE", A, nil, alice))
    end)

    it("lists public rooms and pages through them", function()
      local r1 = create(alice, { visibility = "public", name = "Needle room", topic = "t" })
      local r2 = create(bob, { visibility = "public", room_alias_name = "pub2" })
      local priv = create(alice, { name = "Needle private" })
      ok(req("POST", "/rooms/" .. enc(r1) .. "/join", {}, bob))
      assert.are.equal("public", ok(req("GET", "/directory/list/room/" .. enc(r1))).visibility)
      assert.are.equal("private", ok(req("GET", "/directory/list/room/" .. enc(priv))).visibility)
      local all = ok(req("GET", "/publicRooms"))
      local ids = {}
      for _, e in ipairs(all.chunk) do ids[e.room_id] = e end
      assert.is_table(ids[r1])
      assert.is_table(ids[r2])
      assert.is_nil(ids[priv])
      assert.are.equal("Needle room", ids[r1].name)
      assert.are.equal(2, ids[r1].num_joined_members)
      assert.are.equal("public", ids[r1].join_rule)
      assert.are.equal(false, ids[r1].world_readable)
      assert.are.equal(false, ids[r1].guest_can_join)
      assert.are.equal("#pub2:test.local", ids[r2].canonical_alias)
      local n = all.total_room_count_estimate
      local page1 = ok(req("GET", "/publicRooms?limit=1"))
      assert.are.equal(1, #page1.chunk)
      assert.is_string(page1.next_batch)
      local page2 = ok(req("GET", "/publicRooms?limit=1&since=" .. page1.next_batch))
      assert.are_not.equal(page1.chunk[1].room_id, page2.chunk[1].room_id)
      assert.are.equal(n, page2.total_room_count_estimate)
      local found = ok(req("POST", "/publicRooms", { filter = { generic_search_term = "needle" } }, alice))
      assert.are.equal(1, #found.chunk)
      assert.are.equal(r1, found.chunk[1].room_id)
      -- only a room admin changes the listing
      err(req("PUT", "/directory/list/room/" .. enc(priv), { visibility = "public" }, bob), 403, "M_FORBIDDEN")
      ok(req("PUT", "/directory/list/room/" .. enc(priv), { visibility = "public" }, alice))
      ok(req("PUT", "/directory/list/room/" .. enc(r1), { visibility = "private" }, alice))
      local after = {}
      for _, e in ipairs(ok(req("GET", "/publicRooms")).chunk) do after[e.room_id] = true end
      assert.is_true(after[priv])
      assert.is_nil(after[r1])
      err(req("PUT", "/directory/list/room/" .. enc(priv), { visibility = "hidden" }, alice), 400, "M_INVALID_PARAM")
    end)
  end)
end)
