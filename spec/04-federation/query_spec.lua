-- Queries across servers (Server-Server API "Querying for information",
-- "Public Room Directory"; Client-Server API profile and room aliases):
-- GET /query/profile, GET /query/directory, GET/POST /publicRooms, and the
-- client endpoints that ask the other server: GET /profile/{remote user},
-- GET /directory/room/{remote alias}, POST /join/{remote alias}.
local lab_mod = require "loom.lab"

local function E(s) return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end)) end

describe("federation queries", function()
  local lab, a, b, out
  setup(function()
    lab = lab_mod.new { seed = 5 }
    a, b = lab:server("a.lab"), lab:server("b.lab")
    out = lab:run(function()
      local o = {}
      local alice, bob = a:register("alice"), b:register("bob")
      local r = b:client("PUT", "/_matrix/client/v3/profile/" .. E(bob.user_id) .. "/displayname",
        { displayname = "Bob B" }, bob.access_token)
      assert.equal(200, r.status)
      r = a:client("PUT", "/_matrix/client/v3/profile/" .. E(alice.user_id) .. "/displayname",
        { displayname = "Alice A" }, alice.access_token)
      assert.equal(200, r.status)
      o.room = a:create_room(alice, { preset = "public_chat", visibility = "public", room_alias_name = "pub",
        name = "The pub" })
      -- client side: a asks b
      o.profile = a:client("GET", "/_matrix/client/v3/profile/" .. E(bob.user_id), nil, alice.access_token)
      o.field = a:client("GET", "/_matrix/client/v3/profile/" .. E(bob.user_id) .. "/displayname", nil,
        alice.access_token)
      o.no_profile = a:client("GET", "/_matrix/client/v3/profile/" .. E("@nobody:b.lab"), nil, alice.access_token)
      o.alias = b:client("GET", "/_matrix/client/v3/directory/room/" .. E("#pub:a.lab"), nil, bob.access_token)
      o.no_alias = b:client("GET", "/_matrix/client/v3/directory/room/" .. E("#none:a.lab"), nil, bob.access_token)
      o.join_missing = b:client("POST", "/_matrix/client/v3/join/" .. E("#none:a.lab"), {}, bob.access_token)
      o.join = b:client("POST", "/_matrix/client/v3/join/" .. E("#pub:a.lab"), {}, bob.access_token)
      assert(lab:settle())
      local m = a.hs.rooms:state_event(o.room, "m.room.member", bob.user_id)
      o.bob_on_a = m and m.content.membership
      o.c_public = b:client("GET", "/_matrix/client/v3/publicRooms?server=a.lab&limit=5", nil, bob.access_token)
      o.c_public_post = b:client("POST", "/_matrix/client/v3/publicRooms?server=a.lab",
        { filter = { generic_search_term = "nothing like it" } }, bob.access_token)
      o.c_public_none = b:client("GET", "/_matrix/client/v3/publicRooms?server=z.lab", nil, bob.access_token)
      -- server side, asked directly (b asks a)
      local fed = b.hs.federation
      local F = "/_matrix/federation/v1"
      o.q_profile = { fed:request("a.lab", "GET", F .. "/query/profile",
        { query = { user_id = alice.user_id, field = "displayname" } }) }
      o.q_other_user = { fed:request("a.lab", "GET", F .. "/query/profile", { query = { user_id = bob.user_id } }) }
      o.q_bad_field = { fed:request("a.lab", "GET", F .. "/query/profile",
        { query = { user_id = alice.user_id, field = "password_hash" } }) }
      o.q_no_user = { fed:request("a.lab", "GET", F .. "/query/profile", { query = {} }) }
      o.q_dir = { fed:request("a.lab", "GET", F .. "/query/directory", { query = { room_alias = "#pub:a.lab" } }) }
      o.q_dir_other = { fed:request("a.lab", "GET", F .. "/query/directory",
        { query = { room_alias = "#pub:b.lab" } }) }
      o.q_dir_none = { fed:request("a.lab", "GET", F .. "/query/directory",
        { query = { room_alias = "#none:a.lab" } }) }
      o.q_public = { fed:request("a.lab", "GET", F .. "/publicRooms", { query = { limit = "10" } }) }
      o.q_public_post = { fed:request("a.lab", "POST", F .. "/publicRooms",
        { body = { filter = { generic_search_term = "pub" } } }) }
      o.q_public_miss = { fed:request("a.lab", "POST", F .. "/publicRooms",
        { body = { filter = { generic_search_term = "nothing like it" } } }) }
      o.q_public_bad = { fed:request("a.lab", "POST", F .. "/publicRooms", { body = { filter = 3 } }) }
      return o
    end)
  end)
  teardown(function() lab:close() end)

  it("GET /profile of a remote user asks the user's server", function()
    assert.equal(200, out.profile.status)
    assert.equal("Bob B", out.profile.json.displayname)
    assert.equal(200, out.field.status)
    assert.same({ displayname = "Bob B" }, out.field.json)
    assert.equal(404, out.no_profile.status)
    assert.equal("M_NOT_FOUND", out.no_profile.json.errcode)
  end)

  it("GET /directory/room of a remote alias asks the alias's server", function()
    assert.equal(200, out.alias.status)
    assert.equal(out.room, out.alias.json.room_id)
    assert.same({ "a.lab" }, out.alias.json.servers)
    assert.equal(404, out.no_alias.status)
    assert.equal("M_NOT_FOUND", out.no_alias.json.errcode)
  end)

  it("POST /join of a remote alias resolves it and joins through its servers", function()
    assert.equal(404, out.join_missing.status)
    assert.equal(200, out.join.status)
    assert.equal(out.room, out.join.json.room_id)
    assert.equal("join", out.bob_on_a)
  end)

  it("GET/POST /publicRooms?server= shows another server's directory", function()
    assert.equal(200, out.c_public.status)
    assert.equal(1, #out.c_public.json.chunk)
    assert.equal(out.room, out.c_public.json.chunk[1].room_id)
    assert.equal(200, out.c_public_post.status)
    assert.equal(0, #out.c_public_post.json.chunk)
    assert.equal(502, out.c_public_none.status)
  end)

  it("answers /query/profile for local users only", function()
    assert.equal(200, out.q_profile[1])
    assert.same({ displayname = "Alice A" }, out.q_profile[2])
    assert.equal(400, out.q_other_user[1])
    assert.equal("M_INVALID_PARAM", out.q_other_user[2].errcode)
    assert.equal(400, out.q_bad_field[1])
    assert.equal(400, out.q_no_user[1])
    assert.equal("M_MISSING_PARAM", out.q_no_user[2].errcode)
  end)

  it("answers /query/directory for local aliases with the room's servers", function()
    assert.equal(200, out.q_dir[1])
    assert.equal(out.room, out.q_dir[2].room_id)
    assert.equal("a.lab", out.q_dir[2].servers[1])
    assert.equal(400, out.q_dir_other[1])
    assert.equal(404, out.q_dir_none[1])
    assert.equal("M_NOT_FOUND", out.q_dir_none[2].errcode)
  end)

  it("serves the room directory over federation", function()
    assert.equal(200, out.q_public[1])
    assert.equal(1, #out.q_public[2].chunk)
    assert.equal(out.room, out.q_public[2].chunk[1].room_id)
    assert.equal("The pub", out.q_public[2].chunk[1].name)
    assert.equal(200, out.q_public_post[1])
    assert.equal(1, #out.q_public_post[2].chunk)
    assert.equal(200, out.q_public_miss[1])
    assert.equal(0, #out.q_public_miss[2].chunk)
    assert.equal(400, out.q_public_bad[1])
    assert.equal("M_BAD_JSON", out.q_public_bad[2].errcode)
  end)
end)
