-- Room versions through the client API: /capabilities lists every version
-- loom speaks (3 to 12, stable); createRoom makes a room of each, in which
-- members join, talk, read history and redact; versions 1 and 2 (and
-- versions the spec does not define) are refused with
-- M_UNSUPPORTED_ROOM_VERSION (spec: POST /createRoom, GET /capabilities).
local tesths = require "support.hs"

local enc = tesths.enc

local SUPPORTED = { "3", "4", "5", "6", "7", "8", "9", "10", "11", "12" }

describe("room versions (client API)", function()
  local t, alice, bob

  setup(function()
    t = tesths.start()
    alice, bob = t:register("alice"), t:register("bob")
  end)

  teardown(function() t:stop() end)

  it("/capabilities lists versions 3 to 12 as stable, and no other", function()
    local r = t:request("GET", "/_matrix/client/v3/capabilities", nil, alice.access_token)
    assert.equal(200, r.status)
    local rv = r.json.capabilities["m.room_versions"]
    assert.equal("11", rv.default)
    local n = 0
    for id, stability in pairs(rv.available) do
      n = n + 1
      assert.equal("stable", stability, id)
    end
    assert.equal(#SUPPORTED, n)
    for _, id in ipairs(SUPPORTED) do assert.equal("stable", rv.available[id], id) end
  end)

  for _, id in ipairs({ "1", "2", "13", "", "9.0", "0" }) do
    it("createRoom with room_version " .. ("%q"):format(id) .. " -> 400 M_UNSUPPORTED_ROOM_VERSION", function()
      local r = t:request("POST", "/_matrix/client/v3/createRoom", { room_version = id }, alice.access_token)
      assert.equal(400, r.status)
      assert.equal("M_UNSUPPORTED_ROOM_VERSION", r.json.errcode)
      assert.is_string(r.json.error)
    end)
  end

  for _, id in ipairs({ "5", "9", "10" }) do
    it("v" .. id .. ": power levels from a client must be integers (400 M_BAD_JSON), as the event schema says",
      function()
      local room = t:create_room(alice, { room_version = id })
      local path = "/_matrix/client/v3/rooms/" .. enc(room) .. "/state/m.room.power_levels/"
      local pl = t:request("GET", path, nil, alice.access_token).json
      for _, change in ipairs({
        function(c) c.users[bob.user_id] = "50" end,
        function(c) c.ban = "50" end,
        function(c) c.events["m.room.topic"] = 1.5 end,
        function(c) c.notifications = { room = "50" } end,
        function(c) c.users = "all" end,
      }) do
        local c = t:request("GET", path, nil, alice.access_token).json
        change(c)
        local r = t:request("PUT", path, c, alice.access_token)
        assert.equal(400, r.status, r.body)
        assert.equal("M_BAD_JSON", r.json.errcode)
      end
      assert.same(pl, t:request("GET", path, nil, alice.access_token).json)
      pl.users[bob.user_id] = 50
      assert.equal(200, t:request("PUT", path, pl, alice.access_token).status)
      -- createRoom's override too, and nothing is left of the room
      local before = #t:request("GET", "/_matrix/client/v3/joined_rooms", nil, alice.access_token).json.joined_rooms
      local r = t:request("POST", "/_matrix/client/v3/createRoom", { room_version = id,
        power_level_content_override = { users_default = "10" } }, alice.access_token)
      assert.equal(400, r.status, r.body)
      assert.equal("M_BAD_JSON", r.json.errcode)
      assert.equal(before,
        #t:request("GET", "/_matrix/client/v3/joined_rooms", nil, alice.access_token).json.joined_rooms)
    end)
  end

  for _, id in ipairs(SUPPORTED) do
    it("a version " .. id .. " room: create, join, messages, history and a redaction", function()
      local room = t:create_room(alice, { room_version = id, preset = "public_chat", name = "v" .. id })
      if id == "12" then
        assert.matches("^![A-Za-z0-9_-]+$", room)
      else
        assert.matches("^!.+:", room)
      end
      t:join(bob, room)
      local create = t:request("GET", "/_matrix/client/v3/rooms/" .. enc(room) .. "/state/m.room.create/",
        nil, bob.access_token)
      assert.equal(200, create.status)
      assert.equal(id, create.json.room_version)
      -- creator is in the content up to v10 (v11 dropped it)
      assert.equal(tonumber(id) <= 10, create.json.creator == alice.user_id)

      local ids = {}
      for i = 1, 6 do
        local who = i % 2 == 0 and bob or alice
        local r = t:send(who.access_token, room, { msgtype = "m.text", body = "hello " .. i })
        assert.equal(200, r.status, r.body)
        ids[i] = r.json.event_id
        -- v3: "$" and the reference hash in standard base64; later: URL-safe
        if id == "3" then
          assert.matches("^%$[A-Za-z0-9+/]+$", ids[i])
        else
          assert.matches("^%$[A-Za-z0-9_-]+$", ids[i])
        end
        assert.equal(44, #ids[i])
        local ev = t:request("GET", ("/_matrix/client/v3/rooms/%s/event/%s"):format(enc(room), enc(ids[i])), nil,
          alice.access_token)
        assert.equal(200, ev.status)
        assert.equal("hello " .. i, ev.json.content.body)
        assert.equal(ids[i], ev.json.event_id)
      end

      local page = t:request("GET", ("/_matrix/client/v3/rooms/%s/messages?dir=b&limit=6"):format(enc(room)), nil,
        bob.access_token)
      assert.equal(200, page.status)
      local got = {}
      for _, e in ipairs(page.json.chunk) do got[#got + 1] = e.event_id end
      assert.same({ ids[6], ids[5], ids[4], ids[3], ids[2], ids[1] }, got)

      -- alice (100) redacts bob's message; the redaction names it where the version puts it
      local r = t:request("PUT", ("/_matrix/client/v3/rooms/%s/redact/%s/r%s"):format(enc(room), enc(ids[2]), id),
        { reason = "test" }, alice.access_token)
      assert.equal(200, r.status, r.body)
      local red = t:request("GET", ("/_matrix/client/v3/rooms/%s/event/%s"):format(enc(room), enc(r.json.event_id)),
        nil, alice.access_token)
      assert.equal(200, red.status)
      if tonumber(id) >= 11 then
        assert.equal(ids[2], red.json.content.redacts)
      else
        assert.equal(ids[2], red.json.redacts)
      end
      local ev = t:request("GET", ("/_matrix/client/v3/rooms/%s/event/%s"):format(enc(room), enc(ids[2])), nil,
        bob.access_token)
      assert.equal(200, ev.status)
      assert.same({}, ev.json.content)
      assert.equal(r.json.event_id, ev.json.unsigned.redacted_because.event_id)

      -- bob (0) cannot change the name; the Matrix error is M_FORBIDDEN
      local nm = t:request("PUT", ("/_matrix/client/v3/rooms/%s/state/m.room.name/"):format(enc(room)),
        { name = "mine" }, bob.access_token)
      assert.equal(403, nm.status)
      assert.equal("M_FORBIDDEN", nm.json.errcode)
    end)
  end
end)
