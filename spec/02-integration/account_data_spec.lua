-- Account data and room tags over a real server (Client-Server API "Client
-- Config" and "Room Tagging"): the endpoints, their errors, and the
-- account_data sections of /sync (initial, incremental, long-poll).
local tesths = require "support.hs"
local sync_token = require "loom.sync.token"

local enc = tesths.enc
local V3 = "/_matrix/client/v3"

local find = tesths.find_type

describe("account data", function()
  local t
  setup(function() t = tesths.start() end)
  teardown(function() t:stop() end)

  local function fresh() return t:fresh("ad") end
  local function gpath(u, etype) return V3 .. "/user/" .. enc(u.user_id) .. "/account_data/" .. enc(etype) end
  local function rpath(u, room, etype)
    return V3 .. "/user/" .. enc(u.user_id) .. "/rooms/" .. enc(room) .. "/account_data/" .. enc(etype)
  end
  local function tpath(u, room, tag)
    return V3 .. "/user/" .. enc(u.user_id) .. "/rooms/" .. enc(room) .. "/tags" .. (tag and "/" .. enc(tag) or "")
  end

  it("sets and gets global and room account data", function()
    local u = fresh()
    local room = t:create_room(u)
    local r = t:request("GET", gpath(u, "org.example.conf"), nil, u.access_token)
    assert.equal(404, r.status)
    assert.equal("M_NOT_FOUND", r.json.errcode)
    r = t:request("PUT", gpath(u, "org.example.conf"), { a = 1, b = { "x" } }, u.access_token)
    assert.equal(200, r.status)
    assert.same({}, r.json)
    r = t:request("GET", gpath(u, "org.example.conf"), nil, u.access_token)
    assert.equal(200, r.status)
    assert.same({ a = 1, b = { "x" } }, r.json)
    -- replaced as a whole
    assert.equal(200, t:request("PUT", gpath(u, "org.example.conf"), { c = true }, u.access_token).status)
    assert.same({ c = true }, t:request("GET", gpath(u, "org.example.conf"), nil, u.access_token).json)
    -- room account data is separate from global
    assert.equal(404, t:request("GET", rpath(u, room, "org.example.conf"), nil, u.access_token).status)
    assert.equal(200, t:request("PUT", rpath(u, room, "org.example.conf"), { r = 1 }, u.access_token).status)
    assert.same({ r = 1 }, t:request("GET", rpath(u, room, "org.example.conf"), nil, u.access_token).json)
    assert.same({ c = true }, t:request("GET", gpath(u, "org.example.conf"), nil, u.access_token).json)
  end)

  it("refuses other users, non-objects, bad room IDs and server-controlled types", function()
    local u, other = fresh(), fresh()
    local room = t:create_room(u)
    local r = t:request("PUT", gpath(u, "x.y"), { a = 1 }, other.access_token)
    assert.equal(403, r.status)
    assert.equal("M_FORBIDDEN", r.json.errcode)
    r = t:request("GET", gpath(u, "x.y"), nil, other.access_token)
    assert.equal(403, r.status)
    assert.equal("M_FORBIDDEN", r.json.errcode)
    assert.equal(403, t:request("PUT", rpath(u, room, "x.y"), { a = 1 }, other.access_token).status)
    assert.equal(403, t:request("GET", tpath(u, room), nil, other.access_token).status)
    assert.equal(403, t:request("PUT", tpath(u, room, "u.x"), {}, other.access_token).status)
    r = t:request("PUT", gpath(u, "x.y"), "[1, 2]", u.access_token)
    assert.equal(400, r.status)
    assert.equal("M_BAD_JSON", r.json.errcode)
    r = t:request("PUT", gpath(u, "x.y"), "{nope", u.access_token)
    assert.equal(400, r.status)
    assert.equal("M_NOT_JSON", r.json.errcode)
    r = t:request("PUT", gpath(u, "x.y"), "", u.access_token)
    assert.equal(400, r.status)
    assert.equal("M_NOT_JSON", r.json.errcode)
    for _, etype in ipairs { "m.fully_read", "m.push_rules" } do
      r = t:request("PUT", gpath(u, etype), { event_id = "$x" }, u.access_token)
      assert.equal(405, r.status)
      assert.equal("M_BAD_JSON", r.json.errcode)
      r = t:request("PUT", rpath(u, room, etype), { event_id = "$x" }, u.access_token)
      assert.equal(405, r.status)
      assert.equal("M_BAD_JSON", r.json.errcode)
    end
    r = t:request("GET", rpath(u, "@notaroom:test.local", "x.y"), nil, u.access_token)
    assert.equal(400, r.status)
    assert.equal("M_INVALID_PARAM", r.json.errcode)
    r = t:request("PUT", rpath(u, "notaroom", "x.y"), { a = 1 }, u.access_token)
    assert.equal(400, r.status)
    assert.equal("M_INVALID_PARAM", r.json.errcode)
    r = t:request("PUT", gpath(u, ("x"):rep(256)), { a = 1 }, u.access_token)
    assert.equal(400, r.status)
  end)

  it("room tags round trip as m.tag room account data", function()
    local u = fresh()
    local room = t:create_room(u)
    local r = t:request("GET", tpath(u, room), nil, u.access_token)
    assert.equal(200, r.status)
    assert.same({}, r.json.tags)
    assert.equal("{}", r.body:match('"tags":(%b{})'))
    assert.equal(200, t:request("PUT", tpath(u, room, "m.favourite"), { order = 0.25 }, u.access_token).status)
    assert.equal(200, t:request("PUT", tpath(u, room, "u.work"), {}, u.access_token).status)
    r = t:request("GET", tpath(u, room), nil, u.access_token)
    assert.same({ ["m.favourite"] = { order = 0.25 }, ["u.work"] = {} }, r.json.tags)
    assert.same(r.json, t:request("GET", rpath(u, room, "m.tag"), nil, u.access_token).json)
    assert.equal(200, t:request("DELETE", tpath(u, room, "m.favourite"), nil, u.access_token).status)
    r = t:request("GET", tpath(u, room), nil, u.access_token)
    assert.same({ ["u.work"] = {} }, r.json.tags)
    -- deleting an absent tag is fine
    assert.equal(200, t:request("DELETE", tpath(u, room, "m.lowpriority"), nil, u.access_token).status)
    -- order must be a number in 0..1
    r = t:request("PUT", tpath(u, room, "u.bad"), { order = "high" }, u.access_token)
    assert.equal(400, r.status)
    assert.equal("M_BAD_JSON", r.json.errcode)
    r = t:request("PUT", tpath(u, room, "u.bad"), { order = 2 }, u.access_token)
    assert.equal(400, r.status)
    assert.equal("M_INVALID_PARAM", r.json.errcode)
    r = t:request("PUT", tpath(u, room, "u.bad"), "[]", u.access_token)
    assert.equal(400, r.status)
    assert.equal("M_BAD_JSON", r.json.errcode)
    assert.is_nil(t:request("GET", tpath(u, room), nil, u.access_token).json.tags["u.bad"])
  end)

  it("initial sync carries all account data; incremental only the changes", function()
    local u = fresh()
    local room = t:create_room(u)
    local quiet = t:create_room(u)
    assert.equal(200, t:request("PUT", gpath(u, "org.example.a"), { v = 1 }, u.access_token).status)
    assert.equal(200, t:request("PUT", gpath(u, "org.example.b"), { v = 1 }, u.access_token).status)
    assert.equal(200, t:request("PUT", tpath(u, room, "m.favourite"), { order = 0.5 }, u.access_token).status)
    local r = t:request("GET", V3 .. "/sync", nil, u.access_token)
    assert.equal(200, r.status)
    assert.same({ v = 1 }, find(r.json.account_data.events, "org.example.a").content)
    assert.truthy(find(r.json.account_data.events, "org.example.b"))
    local tag = find(r.json.rooms.join[room].account_data.events, "m.tag")
    assert.same({ tags = { ["m.favourite"] = { order = 0.5 } } }, tag.content)
    assert.same({}, r.json.rooms.join[quiet].account_data.events)
    local since = r.json.next_batch
    assert.truthy(sync_token.parse(since).account_data > 0)

    -- nothing changed: nothing sent
    r = t:request("GET", V3 .. "/sync?since=" .. enc(since), nil, u.access_token)
    assert.same({}, r.json.account_data.events)
    assert.is_nil(r.json.rooms.join[room])

    assert.equal(200, t:request("PUT", gpath(u, "org.example.b"), { v = 2 }, u.access_token).status)
    assert.equal(200, t:request("PUT", rpath(u, quiet, "org.example.r"), { q = 1 }, u.access_token).status)
    r = t:request("GET", V3 .. "/sync?since=" .. enc(since), nil, u.access_token)
    assert.equal(1, #r.json.account_data.events)
    assert.equal("org.example.b", r.json.account_data.events[1].type)
    assert.same({ v = 2 }, r.json.account_data.events[1].content)
    assert.is_nil(r.json.rooms.join[room])
    -- a room with only an account-data change is in the response, with an empty timeline
    local jr = r.json.rooms.join[quiet]
    assert.equal(1, #jr.account_data.events)
    assert.same({ q = 1 }, jr.account_data.events[1].content)
    assert.same({}, jr.timeline.events)

    -- another user's account data never shows
    local other = fresh()
    local so = t:request("GET", V3 .. "/sync", nil, other.access_token).json
    assert.is_nil(find(so.account_data.events, "org.example.a"))

    -- an old four-part token is still accepted
    local old = sync_token.parse(r.json.next_batch)
    r = t:request("GET", V3 .. "/sync?since=" .. enc(("s%d_0_0_0"):format(old.stream)), nil, u.access_token)
    assert.equal(200, r.status)
    assert.truthy(find(r.json.account_data.events, "org.example.a"))
  end)

  it("filters account data by type", function()
    local u = fresh()
    assert.equal(200, t:request("PUT", gpath(u, "org.example.keep"), { v = 1 }, u.access_token).status)
    assert.equal(200, t:request("PUT", gpath(u, "org.example.drop"), { v = 1 }, u.access_token).status)
    local filter = '{"account_data":{"not_types":["org.example.drop"]}}'
    local r = t:request("GET", V3 .. "/sync?filter=" .. enc(filter), nil, u.access_token)
    assert.equal(200, r.status)
    assert.truthy(find(r.json.account_data.events, "org.example.keep"))
    assert.is_nil(find(r.json.account_data.events, "org.example.drop"))
  end)

  it("a PUT wakes the user's waiting long-poll", function()
    local u = fresh()
    local room = t:create_room(u)
    local since = t:request("GET", V3 .. "/sync", nil, u.access_token).json.next_batch
    local uv = require "luv"
    t:run(function()
      local h = t:go(function()
        return t:call("GET", V3 .. "/sync?timeout=5000&since=" .. enc(since), nil, u.access_token)
      end)
      t:sleep(50)
      local sent = uv.hrtime()
      assert.equal(200, t:call("PUT", gpath(u, "org.example.wake"), { w = 1 }, u.access_token).status)
      local r = t:await(h)
      local waited = (uv.hrtime() - sent) / 1e6
      assert.equal(200, r.status)
      assert.equal(1, #r.json.account_data.events)
      assert.same({ w = 1 }, r.json.account_data.events[1].content)
      assert.is_true(waited < 1000, "returned " .. waited .. " ms after the PUT")

      -- a room tag wakes it too, and shows in the room's section
      since = r.json.next_batch
      h = t:go(function()
        return t:call("GET", V3 .. "/sync?timeout=5000&since=" .. enc(since), nil, u.access_token)
      end)
      t:sleep(50)
      assert.equal(200, t:call("PUT", tpath(u, room, "u.x"), {}, u.access_token).status)
      r = t:await(h)
      assert.equal(200, r.status)
      assert.same({ tags = { ["u.x"] = {} } }, find(r.json.rooms.join[room].account_data.events, "m.tag").content)
      assert.same({}, r.json.account_data.events)
    end)
  end)
end)
