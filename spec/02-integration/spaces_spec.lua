-- Spaces (Client-Server API "Spaces", GET /v1/rooms/{roomId}/hierarchy) and
-- room previews (GET /v1/room_summary/{roomIdOrAlias}): the depth-first
-- walk over m.space.child events, the spec's child order, what the user may
-- see, pagination, and the error paths.
local tesths = require "support.hs"

local enc = tesths.enc
local V1, V3 = "/_matrix/client/v1", "/_matrix/client/v3"

describe("space hierarchy and room summary", function()
  local t
  setup(function() t = tesths.start() end)
  teardown(function() t:stop() end)

  local function space(who, extra)
    local body = { preset = "public_chat", creation_content = { type = "m.space" } }
    for k, v in pairs(extra or {}) do body[k] = v end
    return t:create_room(who, body)
  end
  local function add_child(who, parent, child, content)
    content = content or { via = { "test.local" } }
    local r = t:request("PUT", V3 .. "/rooms/" .. enc(parent) .. "/state/m.space.child/" .. enc(child), content,
      who.access_token)
    assert.equal(200, r.status, r.body)
  end
  local function hierarchy(who, room, query)
    return t:request("GET", V1 .. "/rooms/" .. enc(room) .. "/hierarchy" .. (query or ""), nil, who.access_token)
  end
  local function room_ids(r)
    local out = {}
    for i, x in ipairs(r.json.rooms) do out[i] = x.room_id end
    return out
  end

  it("walks the tree depth first, children by order, then timestamp, then room ID", function()
    local a = t:fresh("sp")
    local root = space(a, { name = "Root" })
    local sub = space(a, { name = "Sub" })
    local r1 = t:create_room(a, { preset = "public_chat", name = "R1" })
    local r2 = t:create_room(a, { preset = "public_chat", name = "R2" })
    local r3 = t:create_room(a, { preset = "public_chat", name = "R3" })
    local deep = t:create_room(a, { preset = "public_chat", name = "Deep" })
    -- r1 has no order (after the ordered ones); sub has "b", r2 has "a"
    add_child(a, root, r1)
    add_child(a, root, sub, { via = { "test.local" }, order = "b" })
    add_child(a, root, r2, { via = { "test.local" }, order = "a" })
    add_child(a, root, r3, { via = {} })                   -- no via: not a child
    add_child(a, sub, deep)
    local r = hierarchy(a, root)
    assert.equal(200, r.status, r.body)
    assert.same({ root, r2, sub, deep, r1 }, room_ids(r))
    assert.is_nil(r.json.next_batch)
    local top = r.json.rooms[1]
    assert.equal("Root", top.name)
    assert.equal("m.space", top.room_type)
    assert.equal(1, top.num_joined_members)
    assert.equal("public", top.join_rule)
    assert.is_false(top.world_readable)
    assert.is_false(top.guest_can_join)
    assert.equal(3, #top.children_state)              -- r3's event without via is left out (as Synapse)
    for _, ev in ipairs(top.children_state) do
      assert.equal("m.space.child", ev.type)
      assert.equal(a.user_id, ev.sender)
      assert.is_number(ev.origin_server_ts)
      assert.is_nil(ev.event_id)
    end
    -- a plain room's children_state is empty (a JSON array)
    assert.matches('"children_state":%[%]', r.body)
    -- max_depth 1: sub's children are not walked; 0: the root alone
    assert.same({ root, r2, sub, r1 }, room_ids(hierarchy(a, root, "?max_depth=1")))
    assert.same({ root }, room_ids(hierarchy(a, root, "?max_depth=0")))
  end)

  it("paginates with next_batch, and refuses changed parameters or bad tokens", function()
    local a = t:fresh("pg")
    local root = space(a)
    local kids = {}
    for i = 1, 5 do
      kids[i] = t:create_room(a, { preset = "public_chat" })
      add_child(a, root, kids[i], { via = { "test.local" }, order = tostring(i) })
    end
    local r = hierarchy(a, root, "?limit=2")
    assert.equal(200, r.status, r.body)
    assert.same({ root, kids[1] }, room_ids(r))
    local tok = r.json.next_batch
    assert.is_string(tok)
    r = hierarchy(a, root, "?limit=2&from=" .. enc(tok))
    assert.same({ kids[2], kids[3] }, room_ids(r))
    r = hierarchy(a, root, "?limit=10&from=" .. enc(r.json.next_batch))
    assert.same({ kids[4], kids[5] }, room_ids(r))
    assert.is_nil(r.json.next_batch)
    for _, q in ipairs { "?from=nonsense", "?from=" .. enc(tok) .. "&max_depth=3",
        "?from=" .. enc(tok) .. "&suggested_only=true", "?limit=0", "?limit=x", "?max_depth=-1",
        "?suggested_only=maybe" } do
      r = hierarchy(a, root, q)
      assert.equal(400, r.status, q)
      assert.equal("M_INVALID_PARAM", r.json.errcode, q)
    end
    -- a token of another space
    local other = space(a)
    r = hierarchy(a, other, "?from=" .. enc(tok))
    assert.equal(400, r.status)
  end)

  it("lists only suggested children with suggested_only", function()
    local a = t:fresh("sg")
    local root = space(a)
    local s, n = t:create_room(a, { preset = "public_chat" }), t:create_room(a, { preset = "public_chat" })
    add_child(a, root, s, { via = { "test.local" }, suggested = true })
    add_child(a, root, n, { via = { "test.local" } })
    assert.same({ root, s }, room_ids(hierarchy(a, root, "?suggested_only=true")))
    assert.equal(3, #hierarchy(a, root, "?suggested_only=false").json.rooms)
  end)

  it("shows only rooms the user may see, and 403 for a root they may not", function()
    local a, b = t:fresh("vo"), t:fresh("vb")
    local root = space(a)
    local private = t:create_room(a, { preset = "private_chat" })
    local public = t:create_room(a, { preset = "public_chat" })
    local restricted = t:create_room(a, { preset = "private_chat" })
    local r = t:request("PUT", V3 .. "/rooms/" .. enc(restricted) .. "/state/m.room.join_rules",
      { join_rule = "restricted", allow = { { type = "m.room_membership", room_id = root } } }, a.access_token)
    assert.equal(200, r.status, r.body)
    add_child(a, root, private)
    add_child(a, root, public)
    add_child(a, root, restricted)
    -- b has joined nothing: the public space and room, not the private or restricted ones
    local seen = room_ids(hierarchy(b, root))
    table.sort(seen)
    local want = { root, public }
    table.sort(want)
    assert.same(want, seen)
    -- b joins the space: the restricted room is now visible
    t:join(b, root)
    seen = room_ids(hierarchy(b, root))
    assert.equal(3, #seen)
    -- a private root
    r = hierarchy(b, private)
    assert.equal(403, r.status)
    assert.equal("M_FORBIDDEN", r.json.errcode)
    -- an unknown room, a malformed room ID
    r = hierarchy(b, "!nope:test.local")
    assert.equal(403, r.status)
    r = hierarchy(b, "nope")
    assert.equal(400, r.status)
    r = t:request("GET", V1 .. "/rooms/" .. enc(root) .. "/hierarchy")
    assert.equal(401, r.status)
  end)

  it("does not loop on cycles", function()
    local a = t:fresh("cy")
    local x, y = space(a), space(a)
    add_child(a, x, y)
    add_child(a, y, x)
    assert.same({ x, y }, room_ids(hierarchy(a, x)))
  end)

  describe("room summary", function()
    local function summary(id, token)
      return t:request("GET", V1 .. "/room_summary/" .. enc(id), nil, token)
    end

    it("summarises a public room by ID or alias, with or without a token", function()
      local a, b = t:fresh("rs"), t:fresh("rsb")
      local room = t:create_room(a, { preset = "public_chat", name = "Cheese", topic = "Tasty",
        room_alias_name = "cheese", room_version = "10",
        initial_state = { { type = "m.room.encryption", state_key = "",
          content = { algorithm = "m.megolm.v1.aes-sha2" } } } })
      local r = summary(room, a.access_token)
      assert.equal(200, r.status, r.body)
      assert.equal(room, r.json.room_id)
      assert.equal("Cheese", r.json.name)
      assert.equal("Tasty", r.json.topic)
      assert.equal("#cheese:test.local", r.json.canonical_alias)
      assert.equal(1, r.json.num_joined_members)
      assert.equal("public", r.json.join_rule)
      assert.is_false(r.json.world_readable)
      assert.is_false(r.json.guest_can_join)
      assert.equal("10", r.json.room_version)
      assert.equal("m.megolm.v1.aes-sha2", r.json.encryption)
      assert.equal("join", r.json.membership)
      r = summary("#cheese:test.local", b.access_token)
      assert.equal(200, r.status, r.body)
      assert.equal(room, r.json.room_id)
      assert.equal("leave", r.json.membership)
      r = summary(room)
      assert.equal(200, r.status, r.body)
      assert.is_nil(r.json.membership)
    end)

    it("answers 404 for rooms the caller may not preview and unknown rooms; invitees may", function()
      local a, b = t:fresh("rp"), t:fresh("rpb")
      local room = t:create_room(a, { preset = "private_chat", name = "Secret" })
      local r = summary(room, b.access_token)
      assert.equal(404, r.status)
      assert.equal("M_NOT_FOUND", r.json.errcode)
      r = summary(room)
      assert.equal(404, r.status)
      assert.equal(200, t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/invite", { user_id = b.user_id },
        a.access_token).status)
      r = summary(room, b.access_token)
      assert.equal(200, r.status, r.body)
      assert.equal("invite", r.json.membership)
      assert.equal("Secret", r.json.name)
      r = summary("!unknown:test.local", a.access_token)
      assert.equal(404, r.status)
      r = summary("#unknown:test.local", a.access_token)
      assert.equal(404, r.status)
      r = summary("garbage", a.access_token)
      assert.equal(400, r.status)
      assert.equal("M_INVALID_PARAM", r.json.errcode)
      r = summary(room, "bad-token")
      assert.equal(401, r.status)
      assert.equal("M_UNKNOWN_TOKEN", r.json.errcode)
    end)

    it("lets anyone preview a world_readable room", function()
      local a = t:fresh("wr")
      local room = t:create_room(a, { preset = "private_chat" })
      local r = t:request("PUT", V3 .. "/rooms/" .. enc(room) .. "/state/m.room.history_visibility",
        { history_visibility = "world_readable" }, a.access_token)
      assert.equal(200, r.status, r.body)
      r = summary(room)
      assert.equal(200, r.status, r.body)
      assert.is_true(r.json.world_readable)
      assert.equal("invite", r.json.join_rule)
    end)
  end)
end)
