-- The user directory and remote users: a user of another server who joins a
-- room here is found by the display name of their member event, and stops
-- being found by someone sharing no other room once they leave.
local async = require "loom.async"
local files = require "support.files"
local fed = require "support.fed"
local fedclient = require "loom.federation.client"

local E = fedclient.encode
local V3 = "/_matrix/client/v3"

local function call(t, method, path, body, token)
  return t:run(function() return t:call(method, path, body, token) end, 20000)
end

describe("user directory with remote users", function()
  local dir, a, b

  setup(function()
    dir = files.tmpdir("loom-fedudir")
    a = fed.server(dir, "a")
    b = fed.server(dir, "b")
  end)
  teardown(function()
    a:stop(); b:stop()
    async.finish_closing()
    files.remove_tree(dir)
  end)

  local function search(who, term)
    local r = a:request("POST", V3 .. "/user_directory/search", { search_term = term }, who.access_token)
    assert.equal(200, r.status, r.body)
    local out = {}
    for _, x in ipairs(r.json.results) do out[#out + 1] = x end
    return out
  end

  it("finds a remote member by their member event's display name", function()
    local alice, carol = a:register("alice"), a:register("carol")
    local bob = b:register("bob")
    local r = b:request("PUT", V3 .. "/profile/" .. E(bob.user_id) .. "/displayname",
      { displayname = "Bartholomew Remote" }, bob.access_token)
    assert.equal(200, r.status, r.body)
    local room = a:create_room(alice, { preset = "private_chat" })
    r = a:request("POST", V3 .. "/rooms/" .. E(room) .. "/invite", { user_id = bob.user_id }, alice.access_token)
    assert.equal(200, r.status, r.body)
    r = call(b, "POST", V3 .. "/join/" .. E(room) .. "?server_name=" .. E(a.name), {}, bob.access_token)
    assert.equal(200, r.status, r.body)
    local found = search(alice, "barthol")
    assert.equal(1, #found)
    assert.equal(bob.user_id, found[1].user_id)
    assert.equal("Bartholomew Remote", found[1].display_name)
    assert.equal(1, #search(alice, "bob"))
    -- carol shares no room with bob, and the room is private
    assert.equal(0, #search(carol, "barthol"))
    -- the room turns public: carol finds bob too
    r = a:request("PUT", V3 .. "/rooms/" .. E(room) .. "/state/m.room.join_rules", { join_rule = "public" },
      alice.access_token)
    assert.equal(200, r.status, r.body)
    assert.equal(1, #search(carol, "barthol"))
  end)
end)
