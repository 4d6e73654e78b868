-- The user directory (Client-Server API "User directory",
-- POST /user_directory/search): a searcher finds users they share a room
-- with and users joined to public rooms, by word prefixes of the localpart
-- or the display name, case-insensitively; the directory follows profile
-- and membership changes; ignored and deactivated users are left out;
-- search_all_users widens it to every local user.
local tesths = require "support.hs"

local enc = tesths.enc
local V3 = "/_matrix/client/v3"

local function ids(r)
  local out = {}
  for _, x in ipairs(r.json.results) do out[#out + 1] = x.user_id end
  table.sort(out)
  return out
end

describe("user directory search", function()
  local t
  setup(function() t = tesths.start() end)
  teardown(function() t:stop() end)

  local function search(who, term, limit)
    return t:request("POST", V3 .. "/user_directory/search", { search_term = term, limit = limit }, who.access_token)
  end
  local function set_name(who, name)
    local r = t:request("PUT", V3 .. "/profile/" .. enc(who.user_id) .. "/displayname", { displayname = name },
      who.access_token)
    assert.equal(200, r.status, r.body)
  end

  it("finds users sharing a private room by localpart and display name prefix, any case", function()
    local a, b = t:register("dirsearcher"), t:register("zebulon.quux")
    set_name(b, "Ærøskøbing Ferryman")
    local room = t:create_room(a, { preset = "private_chat" })
    -- not yet sharing a room: not found
    local r = search(a, "zebu")
    assert.equal(200, r.status, r.body)
    assert.same({}, ids(r))
    assert.is_false(r.json.limited)
    assert.equal("[]", r.body:match('"results":(%[%])'))
    t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/invite", { user_id = b.user_id }, a.access_token)
    t:join(b, room)
    assert.same({ b.user_id }, ids(search(a, "zebu")))
    assert.same({ b.user_id }, ids(search(a, "QUUX")))
    assert.same({ b.user_id }, ids(search(a, "ferry")))
    assert.same({ b.user_id }, ids(search(a, "ærø")))
    assert.same({ b.user_id }, ids(search(a, "ÆRØSKØBING fer")))
    assert.same({ b.user_id }, ids(search(a, b.user_id)))
    local hit = search(a, "ferryman").json.results[1]
    assert.equal("Ærøskøbing Ferryman", hit.display_name)
    -- a word in the middle of a word does not match; every word must match
    assert.same({}, ids(search(a, "erryman")))
    assert.same({}, ids(search(a, "ferryman nobody")))
    -- the profile changes: the directory follows
    set_name(b, "Harbour Master")
    assert.same({}, ids(search(a, "ferryman")))
    assert.same({ b.user_id }, ids(search(a, "harb")))
    -- b leaves: no room shared any more
    assert.equal(200, t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/leave", {}, b.access_token).status)
    assert.same({}, ids(search(a, "harb")))
  end)

  it("finds members of public rooms without sharing a room, until the room is made private", function()
    local a, b, c = t:register("pubsearch"), t:register("pubowner"), t:register("pubmember")
    local room = t:create_room(b, { preset = "public_chat" })
    t:join(c, room)
    assert.same({ c.user_id }, ids(search(a, "pubmem")))
    local r = t:request("PUT", V3 .. "/rooms/" .. enc(room) .. "/state/m.room.join_rules", { join_rule = "invite" },
      b.access_token)
    assert.equal(200, r.status, r.body)
    assert.same({}, ids(search(a, "pubmem")))
    -- world-readable history also makes the members findable
    r = t:request("PUT", V3 .. "/rooms/" .. enc(room) .. "/state/m.room.history_visibility",
      { history_visibility = "world_readable" }, b.access_token)
    assert.equal(200, r.status, r.body)
    assert.same({ c.user_id }, ids(search(a, "pubmem")))
  end)

  it("applies the limit and says when there were more", function()
    local a = t:register("limsearch")
    local room = t:create_room(a, { preset = "public_chat" })
    for i = 1, 4 do t:join(t:register("limtarget" .. i), room) end
    local r = search(a, "limtarget", 3)
    assert.equal(200, r.status, r.body)
    assert.equal(3, #r.json.results)
    assert.is_true(r.json.limited)
    r = search(a, "limtarget")
    assert.equal(4, #r.json.results)
    assert.is_false(r.json.limited)
    r = search(a, "limtarget", 0)
    assert.equal(0, #r.json.results)
    assert.is_true(r.json.limited)
  end)

  it("leaves out ignored users and deactivated accounts", function()
    local a, b, c = t:register("ignsearch"), t:register("igntarget1"), t:register("igntarget2")
    local room = t:create_room(a, { preset = "public_chat" })
    t:join(b, room)
    t:join(c, room)
    assert.same({ b.user_id, c.user_id }, ids(search(a, "igntarget")))
    local r = t:request("PUT", V3 .. "/user/" .. enc(a.user_id) .. "/account_data/m.ignored_user_list",
      { ignored_users = { [b.user_id] = {} } }, a.access_token)
    assert.equal(200, r.status, r.body)
    assert.same({ c.user_id }, ids(search(a, "igntarget")))
    assert.equal(200, t:request("POST", V3 .. "/account/deactivate",
      { auth = { type = "m.login.password", identifier = { type = "m.id.user", user = c.user_id },
        password = c.password } }, c.access_token).status)
    assert.same({}, ids(search(a, "igntarget")))
  end)

  it("does not find users sharing no room, nor punctuation-only terms", function()
    local a = t:register("lonesearch")
    t:register("lonetarget")
    assert.same({}, ids(search(a, "lonetarget")))
    assert.same({}, ids(search(a, "!!! ***")))
    assert.same({}, ids(search(a, "")))
  end)

  it("refuses bad input with the right error", function()
    local a = t:register("badsearch")
    local function check(body, status, errcode)
      local r = t:request("POST", V3 .. "/user_directory/search", body, a.access_token)
      assert.equal(status, r.status, r.body)
      assert.equal(errcode, r.json.errcode)
    end
    check({}, 400, "M_MISSING_PARAM")
    check({ search_term = 5 }, 400, "M_INVALID_PARAM")
    check({ search_term = "x", limit = "10" }, 400, "M_INVALID_PARAM")
    check({ search_term = "x", limit = -1 }, 400, "M_INVALID_PARAM")
    check("not json", 400, "M_NOT_JSON")
    check("[1]", 400, "M_BAD_JSON")
    local r = t:request("POST", V3 .. "/user_directory/search", { search_term = "x" })
    assert.equal(401, r.status)
    assert.equal("M_MISSING_TOKEN", r.json.errcode)
    -- FTS5 query syntax in the term is only words
    r = t:request("POST", V3 .. "/user_directory/search", { search_term = 'a" OR NEAR(x* "' }, a.access_token)
    assert.equal(200, r.status, r.body)
  end)
end)

describe("user directory search with search_all_users", function()
  local t
  setup(function() t = tesths.start { user_directory = { search_all_users = true } } end)
  teardown(function() t:stop() end)

  it("finds every local user, sharing a room or not", function()
    local a, b = t:register("allsearch"), t:register("alltarget")
    local r = t:request("POST", V3 .. "/user_directory/search", { search_term = "alltar" }, a.access_token)
    assert.equal(200, r.status, r.body)
    assert.same({ b.user_id }, ids(r))
  end)
end)
