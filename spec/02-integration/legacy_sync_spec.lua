-- The deprecated sync endpoints still in the spec (Client-Server API
-- "Syncing" legacy part, "Room initial sync"): GET /initialSync,
-- GET /events (long-polling from a token) and GET /rooms/{roomId}/initialSync.
local tesths = require "support.hs"
local uv = require "luv"

local enc = tesths.enc
local V3 = "/_matrix/client/v3"

describe("deprecated /initialSync, /events and /rooms/{roomId}/initialSync", function()
  local t
  setup(function() t = tesths.start() end)
  teardown(function() t:stop() end)

  local function say(who, room, body)
    local r = t:send(who.access_token, room, { msgtype = "m.text", body = body })
    assert.equal(200, r.status, r.body)
    return r.json.event_id
  end
  local function bodies(chunk)
    local out = {}
    for _, ev in ipairs(chunk) do
      if ev.type == "m.room.message" then out[#out + 1] = ev.content.body end
    end
    return out
  end
  local function find(rooms, room_id)
    for _, r in ipairs(rooms) do if r.room_id == room_id then return r end end
  end

  it("GET /initialSync lists joined and invited rooms with messages and state; archived adds left ones", function()
    local a, b = t:fresh("is"), t:fresh("isb")
    local room = t:create_room(a, { preset = "public_chat", name = "Legacy" })
    for i = 1, 3 do say(a, room, "m" .. i) end
    local invited = t:create_room(b, { preset = "private_chat" })
    assert.equal(200, t:request("POST", V3 .. "/rooms/" .. enc(invited) .. "/invite", { user_id = a.user_id },
      b.access_token).status)
    local left = t:create_room(a, { preset = "public_chat" })
    say(a, left, "before leaving")
    assert.equal(200, t:request("POST", V3 .. "/rooms/" .. enc(left) .. "/leave", {}, a.access_token).status)

    local r = t:request("GET", V3 .. "/initialSync?limit=2", nil, a.access_token)
    assert.equal(200, r.status, r.body)
    assert.is_string(r.json["end"])
    local j = find(r.json.rooms, room)
    assert.equal("join", j.membership)
    assert.same({ "m2", "m3" }, bodies(j.messages.chunk))
    assert.is_string(j.messages.start)
    assert.equal(r.json["end"], j.messages["end"])
    for _, ev in ipairs(j.messages.chunk) do assert.equal(room, ev.room_id) end
    local name
    for _, ev in ipairs(j.state) do
      assert.equal(room, ev.room_id)
      if ev.type == "m.room.name" then name = ev.content.name end
    end
    assert.equal("Legacy", name)
    assert.equal("private", j.visibility)
    local inv = find(r.json.rooms, invited)
    assert.equal("invite", inv.membership)
    assert.equal(a.user_id, inv.invite.state_key)
    assert.is_nil(find(r.json.rooms, left))
    assert.is_table(r.json.presence)
    assert.is_table(r.json.account_data)

    r = t:request("GET", V3 .. "/initialSync?archived=true", nil, a.access_token)
    assert.equal(200, r.status, r.body)
    local l = find(r.json.rooms, left)
    assert.equal("leave", l.membership)
    assert.same({ "before leaving" }, bodies(l.messages.chunk))

    r = t:request("GET", V3 .. "/initialSync?archived=perhaps", nil, a.access_token)
    assert.equal(400, r.status)
    assert.equal("M_INVALID_PARAM", r.json.errcode)
    r = t:request("GET", V3 .. "/initialSync?limit=x", nil, a.access_token)
    assert.equal(400, r.status)
    r = t:request("GET", V3 .. "/initialSync")
    assert.equal(401, r.status)
  end)

  it("GET /events returns what happened since `from`, and chains with `end`", function()
    local a, b = t:fresh("ev"), t:fresh("evb")
    local room = t:create_room(a, { preset = "public_chat" })
    t:join(b, room)
    local init = t:request("GET", V3 .. "/initialSync?limit=1", nil, a.access_token)
    local from = init.json["end"]
    say(b, room, "one")
    say(b, room, "two")
    local r = t:request("GET", V3 .. "/events?timeout=0&from=" .. enc(from), nil, a.access_token)
    assert.equal(200, r.status, r.body)
    assert.equal(from, r.json.start)
    assert.same({ "one", "two" }, bodies(r.json.chunk))
    for _, ev in ipairs(r.json.chunk) do
      if ev.type == "m.room.message" then assert.equal(room, ev.room_id) end
    end
    -- nothing new: an empty chunk after the timeout, the same position
    local r2 = t:request("GET", V3 .. "/events?timeout=50&from=" .. enc(r.json["end"]), nil, a.access_token)
    assert.equal(200, r2.status, r2.body)
    assert.same({}, bodies(r2.json.chunk))
    -- without from: from now on
    local r3 = t:request("GET", V3 .. "/events?timeout=0", nil, a.access_token)
    assert.equal(200, r3.status, r3.body)
    assert.same({}, bodies(r3.json.chunk))
    assert.is_string(r3.json["end"])
    for _, q in ipairs { "?from=garbage", "?timeout=-5", "?timeout=x" } do
      local bad = t:request("GET", V3 .. "/events" .. q, nil, a.access_token)
      assert.equal(400, bad.status, q)
      assert.equal("M_INVALID_PARAM", bad.json.errcode, q)
    end
  end)

  it("GET /events long-polls until an event arrives", function()
    local a, b = t:fresh("lp"), t:fresh("lpb")
    local room = t:create_room(a, { preset = "public_chat" })
    t:join(b, room)
    local from = t:request("GET", V3 .. "/events?timeout=0", nil, a.access_token).json["end"]
    local started = uv.now()
    local r = t:run(function()
      t:go(function()
        t:sleep(200)
        t:call("PUT", V3 .. "/rooms/" .. enc(room) .. "/send/m.room.message/lp1",
          { msgtype = "m.text", body = "wake" }, b.access_token)
      end)
      return t:call("GET", V3 .. "/events?timeout=10000&from=" .. enc(from), nil, a.access_token)
    end, 15000)
    uv.update_time()
    local took = uv.now() - started
    assert.equal(200, r.status, r.body)
    assert.same({ "wake" }, bodies(r.json.chunk))
    assert.is_true(took >= 150 and took < 9000, "took " .. took)
  end)

  it("GET /rooms/{roomId}/initialSync: messages in time order, state, membership; 403 when not allowed", function()
    local a, b, c = t:fresh("ri"), t:fresh("rib"), t:fresh("ric")
    local room = t:create_room(a, { preset = "public_chat", name = "Room IS" })
    t:join(b, room)
    for i = 1, 4 do say(a, room, "x" .. i) end
    local r = t:request("GET", V3 .. "/rooms/" .. enc(room) .. "/initialSync?limit=3", nil, b.access_token)
    assert.equal(200, r.status, r.body)
    assert.equal(room, r.json.room_id)
    assert.equal("join", r.json.membership)
    assert.same({ "x2", "x3", "x4" }, bodies(r.json.messages.chunk))
    assert.is_string(r.json.messages.start)
    assert.is_string(r.json.messages["end"])
    -- start pages further back through /messages
    local older = t:request("GET", V3 .. "/rooms/" .. enc(room) .. "/messages?dir=b&limit=1&from="
      .. enc(r.json.messages.start), nil, b.access_token)
    assert.equal(200, older.status, older.body)
    assert.same({ "x1" }, bodies(older.json.chunk))
    local name, members = nil, 0
    for _, ev in ipairs(r.json.state) do
      if ev.type == "m.room.name" then name = ev.content.name end
      if ev.type == "m.room.member" then members = members + 1 end
    end
    assert.equal("Room IS", name)
    assert.equal(2, members)
    assert.is_table(r.json.presence)
    assert.is_table(r.json.account_data)
    -- c was never in the room (not world_readable): 403
    r = t:request("GET", V3 .. "/rooms/" .. enc(room) .. "/initialSync", nil, c.access_token)
    assert.equal(403, r.status)
    assert.equal("M_FORBIDDEN", r.json.errcode)
    r = t:request("GET", V3 .. "/rooms/" .. enc("!nope:test.local") .. "/initialSync", nil, c.access_token)
    assert.equal(403, r.status)
    -- b leaves; later messages are not shown, membership is leave
    assert.equal(200, t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/leave", {}, b.access_token).status)
    say(a, room, "after")
    r = t:request("GET", V3 .. "/rooms/" .. enc(room) .. "/initialSync", nil, b.access_token)
    assert.equal(200, r.status, r.body)
    assert.equal("leave", r.json.membership)
    for _, body in ipairs(bodies(r.json.messages.chunk)) do assert.not_equal("after", body) end
  end)

  it("neither sends nor consumes to-device messages: /sync still gets them", function()
    local a, b = t:fresh("td"), t:fresh("tdb")
    local r = t:request("PUT", V3 .. "/sendToDevice/m.test/td1",
      { messages = { [a.user_id] = { [a.device_id] = { n = 1 } } } }, b.access_token)
    assert.equal(200, r.status, r.body)
    local from = t:request("GET", V3 .. "/initialSync", nil, a.access_token).json["end"]
    r = t:request("GET", V3 .. "/events?timeout=0&from=" .. enc(from), nil, a.access_token)
    assert.equal(200, r.status, r.body)
    r = t:request("GET", V3 .. "/events?timeout=0&from=" .. enc(r.json["end"]), nil, a.access_token)
    assert.equal(200, r.status, r.body)
    local s = t:sync(a, r.json["end"])
    local got = s.to_device and s.to_device.events or {}
    assert.equal(1, #got)
    assert.equal("m.test", got[1].type)
    assert.equal(1, got[1].content.n)
  end)
end)
