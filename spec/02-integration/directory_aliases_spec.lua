-- Room aliases and the canonical alias event against a real server:
-- m.room.canonical_alias validation on PUT /state, GET /rooms/{roomId}/aliases,
-- DELETE /directory/room/{alias} updating the canonical alias event, and
-- /publicRooms with JSON null fields.
local tesths = require "support.hs"

local enc = tesths.enc
local P = "/_matrix/client/v3"

describe("room aliases", function()
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
    return r.json.room_id
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

  local function add_alias(alias, room_id, who)
    ok(req("PUT", "/directory/room/" .. enc(alias), { room_id = room_id }, who))
  end

  local function canonical(room_id, who)
    local r = req("GET", "/rooms/" .. enc(room_id) .. "/state/m.room.canonical_alias", nil, who or alice)
    if r.status == 404 then return nil end
    return ok(r)
  end

  describe("PUT /state/m.room.canonical_alias", function()
    it("accepts local aliases of the room and refuses any other with M_BAD_ALIAS", function()
      local room = create(alice, { preset = "public_chat" })
      local other = create(alice, {})
      add_alias("#ca1:test.local", room, alice)
      add_alias("#ca2:test.local", room, alice)
      add_alias("#elsewhere:test.local", other, alice)
      local S = "/rooms/" .. enc(room) .. "/state/m.room.canonical_alias"
      ok(req("PUT", S, { alias = "#ca1:test.local", alt_aliases = { "#ca2:test.local" } }, alice))
      assert.are.equal("#ca1:test.local", canonical(room).alias)
      -- unknown, another room's, malformed, another server's
      err(req("PUT", S, { alias = "#nope:test.local" }, alice), 400, "M_BAD_ALIAS")
      err(req("PUT", S, { alias = "#elsewhere:test.local" }, alice), 400, "M_BAD_ALIAS")
      err(req("PUT", S, { alias = "not-an-alias" }, alice), 400, "M_BAD_ALIAS")
      err(req("PUT", S, { alias = "#ca1:other.example" }, alice), 400, "M_BAD_ALIAS")
      err(req("PUT", S, { alias = 7 }, alice), 400, "M_BAD_ALIAS")
      err(req("PUT", S, { alt_aliases = { "#ca2:test.local", "#nope:test.local" } }, alice), 400, "M_BAD_ALIAS")
      err(req("PUT", S, { alt_aliases = { "#elsewhere:test.local" } }, alice), 400, "M_BAD_ALIAS")
      err(req("PUT", S, { alt_aliases = { 1 } }, alice), 400, "M_BAD_ALIAS")
      err(req("PUT", S, { alt_aliases = "#ca2:test.local" }, alice), 400, "M_INVALID_PARAM")
      assert.are.equal("#ca1:test.local", canonical(room).alias)
      -- removing aliases, or an empty event, is always allowed
      ok(req("PUT", S, { alias = "#ca1:test.local" }, alice))
      ok(req("PUT", S, { alias = "" }, alice))
      ok(req("PUT", S, {}, alice))
      assert.is_nil(canonical(room).alias)
    end)

    it("does not check aliases already present in the event", function()
      local room = create(alice, {})
      add_alias("#keep:test.local", room, alice)
      add_alias("#keep2:test.local", room, alice)
      add_alias("#fresh:test.local", room, alice)
      local S = "/rooms/" .. enc(room) .. "/state/m.room.canonical_alias"
      ok(req("PUT", S, { alias = "#keep:test.local", alt_aliases = { "#keep2:test.local" } }, alice))
      -- #keep2 leaves the directory behind the event's back
      assert.is_true(t.hs.store:delete_alias("#keep2:test.local"))
      ok(req("PUT", S, { alias = "#fresh:test.local", alt_aliases = { "#keep2:test.local" } }, alice))
      -- moved from alt_aliases to alias it is new there (as Synapse judges it)
      err(req("PUT", S, { alias = "#keep2:test.local" }, alice), 400, "M_BAD_ALIAS")
    end)
  end)

  describe("GET /rooms/{roomId}/aliases", function()
    it("lists the room's local aliases to members and refuses others", function()
      local room = create(alice, { room_alias_name = "listed" })
      add_alias("#listed2:test.local", room, alice)
      local A = "/rooms/" .. enc(room) .. "/aliases"
      local got = ok(req("GET", A, nil, alice)).aliases
      table.sort(got)
      assert.are.same({ "#listed2:test.local", "#listed:test.local" }, got)
      err(req("GET", A, nil, bob), 403, "M_FORBIDDEN")
      err(req("GET", "/rooms/" .. enc("!unknown:test.local") .. "/aliases", nil, bob), 403, "M_FORBIDDEN")
      err(req("GET", A), 401, "M_MISSING_TOKEN")
      -- an invite is not membership
      ok(req("POST", "/rooms/" .. enc(room) .. "/invite", { user_id = bob.user_id }, alice))
      err(req("GET", A, nil, bob), 403, "M_FORBIDDEN")
      ok(req("POST", "/rooms/" .. enc(room) .. "/join", {}, bob))
      assert.are.equal(2, #ok(req("GET", A, nil, bob)).aliases)
      -- a member who left no longer sees them
      ok(req("POST", "/rooms/" .. enc(room) .. "/leave", {}, bob))
      err(req("GET", A, nil, bob), 403, "M_FORBIDDEN")
      -- an empty list for a room without aliases
      local bare = create(alice, {})
      local empty = req("GET", "/rooms/" .. enc(bare) .. "/aliases", nil, alice)
      assert.are.equal(200, empty.status, empty.body)
      assert.truthy(empty.body:find('"aliases":%[%]'), empty.body)
    end)

    it("lets anyone read the aliases of a world_readable room", function()
      local room = create(alice, { room_alias_name = "readable" })
      ok(req("PUT", "/rooms/" .. enc(room) .. "/state/m.room.history_visibility",
        { history_visibility = "world_readable" }, alice))
      local got = ok(req("GET", "/rooms/" .. enc(room) .. "/aliases", nil, carol))
      assert.are.same({ "#readable:test.local" }, got.aliases)
    end)
  end)

  describe("DELETE /directory/room/{alias}", function()
    it("removes the alias from the canonical alias event", function()
      local room = create(alice, { preset = "public_chat", room_alias_name = "main" })
      add_alias("#alt1:test.local", room, alice)
      add_alias("#alt2:test.local", room, alice)
      ok(req("PUT", "/rooms/" .. enc(room) .. "/state/m.room.canonical_alias",
        { alias = "#main:test.local", alt_aliases = { "#alt1:test.local", "#alt2:test.local" } }, alice))
      ok(req("DELETE", "/directory/room/" .. enc("#alt1:test.local"), nil, alice))
      local c = canonical(room)
      assert.are.equal("#main:test.local", c.alias)
      assert.are.same({ "#alt2:test.local" }, c.alt_aliases)
      local ev = ok(req("GET", "/rooms/" .. enc(room) .. "/state/m.room.canonical_alias?format=event", nil, alice))
      assert.are.equal(alice.user_id, ev.sender)
      ok(req("DELETE", "/directory/room/" .. enc("#main:test.local"), nil, alice))
      c = canonical(room)
      assert.is_nil(c.alias)
      assert.are.same({ "#alt2:test.local" }, c.alt_aliases)
      ok(req("DELETE", "/directory/room/" .. enc("#alt2:test.local"), nil, alice))
      assert.are.same({}, canonical(room))
    end)

    it("leaves the event alone when the alias is not in it", function()
      local room = create(alice, { room_alias_name = "stay" })
      add_alias("#other:test.local", room, alice)
      local before = ok(req("GET", "/rooms/" .. enc(room) .. "/state/m.room.canonical_alias?format=event", nil,
        alice)).event_id
      ok(req("DELETE", "/directory/room/" .. enc("#other:test.local"), nil, alice))
      local after = ok(req("GET", "/rooms/" .. enc(room) .. "/state/m.room.canonical_alias?format=event", nil,
        alice)).event_id
      assert.are.equal(before, after)
    end)

    it("deletes the alias but keeps the event when the deleter lacks the power", function()
      local room = create(alice, { preset = "public_chat", room_alias_name = "ownerless" })
      ok(req("POST", "/rooms/" .. enc(room) .. "/join", {}, bob))
      add_alias("#bobs:test.local", room, bob)
      ok(req("PUT", "/rooms/" .. enc(room) .. "/state/m.room.canonical_alias",
        { alias = "#ownerless:test.local", alt_aliases = { "#bobs:test.local" } }, alice))
      ok(req("DELETE", "/directory/room/" .. enc("#bobs:test.local"), nil, bob))
      err(req("GET", "/directory/room/" .. enc("#bobs:test.local")), 404, "M_NOT_FOUND")
      assert.are.same({ "#bobs:test.local" }, canonical(room).alt_aliases)
    end)
  end)

  describe("/publicRooms", function()
    it("treats JSON null fields as absent", function()
      create(alice, { visibility = "public", name = "Null room" })
      local r = ok(t:request("POST", P .. "/publicRooms",
        '{"since":null,"limit":null,"filter":null}', alice.access_token))
      assert.is_true(#r.chunk >= 1)
      ok(t:request("POST", P .. "/publicRooms", '{"filter":{"generic_search_term":null}}', alice.access_token))
    end)
  end)
end)
