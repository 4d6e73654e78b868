-- Spaces across servers: GET /_matrix/federation/v1/hierarchy/{roomId}
-- served to other servers (what they may see of a room, its children and
-- the inaccessible ones), and a client's hierarchy walking into rooms this
-- server does not hold by asking the child event's via servers.
local async = require "loom.async"
local files = require "support.files"
local fed = require "support.fed"
local tesths = require "support.hs"

local enc = tesths.enc
local V1, V3 = "/_matrix/client/v1", "/_matrix/client/v3"

describe("space hierarchy over federation", function()
  local dir, a, b
  local alice, bob
  local space_b, pub, priv

  local function add_child(t, who, parent, child, via)
    local r = t:request("PUT", V3 .. "/rooms/" .. enc(parent) .. "/state/m.space.child/" .. enc(child),
      { via = via }, who.access_token)
    assert.equal(200, r.status, r.body)
  end

  setup(function()
    dir = files.tmpdir("loom-fedspaces")
    a = fed.server(dir, "a")
    b = fed.server(dir, "b")
    alice = a:register("alice")
    bob = b:register("bob")
    -- on b: a public space holding a public room and a private one
    space_b = b:create_room(bob, { preset = "public_chat", name = "B space", creation_content = { type = "m.space" } })
    pub = b:create_room(bob, { preset = "public_chat", name = "B public" })
    priv = b:create_room(bob, { preset = "private_chat", name = "B private" })
    add_child(b, bob, space_b, pub, { b.name })
    add_child(b, bob, space_b, priv, { b.name })
  end)

  teardown(function()
    a:stop(); b:stop()
    async.finish_closing()
    files.remove_tree(dir)
  end)

  local function ask(path)
    return fed.task(function()
      local status, body = a.hs.federation:request(b.name, "GET", path)
      return { status = status, body = body }
    end)
  end

  it("serves a space to another server with its visible children and the inaccessible ones", function()
    local r = ask("/_matrix/federation/v1/hierarchy/" .. enc(space_b))
    assert.equal(200, r.status)
    assert.equal(space_b, r.body.room.room_id)
    assert.equal("m.space", r.body.room.room_type)
    assert.equal("B space", r.body.room.name)
    assert.equal(2, #r.body.room.children_state)
    assert.equal(1, #r.body.children)
    assert.equal(pub, r.body.children[1].room_id)
    assert.equal("B public", r.body.children[1].name)
    assert.same({ priv }, r.body.inaccessible_children)
    -- a room the asking server may not see, an unknown room: 404
    r = ask("/_matrix/federation/v1/hierarchy/" .. enc(priv))
    assert.equal(404, r.status)
    r = ask("/_matrix/federation/v1/hierarchy/" .. enc("!nope:" .. b.name))
    assert.equal(404, r.status)
    r = ask("/_matrix/federation/v1/hierarchy/" .. enc(space_b) .. "?suggested_only=sometimes")
    assert.equal(400, r.status)
  end)

  it("refuses unsigned requests", function()
    local r = fed.task(function()
      local status, body = a.hs.federation:request(b.name, "GET", "/_matrix/federation/v1/hierarchy/"
        .. enc(space_b), { unsigned = true })
      return { status = status, body = body }
    end)
    assert.equal(401, r.status)
  end)

  it("walks a client's hierarchy into another server's rooms through the via servers", function()
    local root = a:create_room(alice, { preset = "public_chat", name = "A root",
      creation_content = { type = "m.space" } })
    add_child(a, alice, root, space_b, { b.name })
    add_child(a, alice, root, "!gone:" .. b.name, { b.name })   -- unknown there too: skipped
    local r = a:request("GET", V1 .. "/rooms/" .. enc(root) .. "/hierarchy", nil, alice.access_token)
    assert.equal(200, r.status, r.body)
    local ids = {}
    for i, room in ipairs(r.json.rooms) do ids[i] = room.room_id end
    assert.same({ root, space_b, pub }, ids)
    assert.equal("B space", r.json.rooms[2].name)
    assert.equal("B public", r.json.rooms[3].name)
    assert.equal(1, r.json.rooms[3].num_joined_members)
    assert.is_nil(r.json.rooms[2].allowed_room_ids)
    -- max_depth 1: b's space is listed, its children are not walked
    r = a:request("GET", V1 .. "/rooms/" .. enc(root) .. "/hierarchy?max_depth=1", nil, alice.access_token)
    assert.equal(2, #r.json.rooms)
  end)

  it("summarises a room held by another server through its via servers or its alias", function()
    local function summary(id, query, token)
      return a:run(function()
        return a:call("GET", V1 .. "/room_summary/" .. enc(id) .. (query or ""), nil, token)
      end, 20000)
    end
    local r = summary(pub, "?via=" .. enc(b.name), alice.access_token)
    assert.equal(200, r.status, r.body)
    assert.equal(pub, r.json.room_id)
    assert.equal("B public", r.json.name)
    assert.equal("public", r.json.join_rule)
    assert.equal(1, r.json.num_joined_members)
    assert.equal("leave", r.json.membership)
    assert.is_nil(r.json.children_state)
    -- without a token too, for a public room
    r = summary(pub, "?via=" .. enc(b.name))
    assert.equal(200, r.status, r.body)
    assert.is_nil(r.json.membership)
    -- by b's alias: its directory names the servers
    local put = b:request("PUT", V3 .. "/directory/room/" .. enc("#bpub:" .. b.name), { room_id = pub },
      bob.access_token)
    assert.equal(200, put.status, put.body)
    r = summary("#bpub:" .. b.name, nil, alice.access_token)
    assert.equal(200, r.status, r.body)
    assert.equal(pub, r.json.room_id)
    -- no via: nobody to ask; a private room: b will not tell
    r = summary(pub, nil, alice.access_token)
    assert.equal(404, r.status)
    r = summary(priv, "?via=" .. enc(b.name), alice.access_token)
    assert.equal(404, r.status)
    assert.equal("M_NOT_FOUND", r.json.errcode)
  end)
end)
