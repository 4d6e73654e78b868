-- Receipts and read markers over a real server (Client-Server API
-- "Receipts", "Fully read markers"): POST /rooms/{roomId}/receipt/...,
-- POST /rooms/{roomId}/read_markers, their errors, and the m.receipt
-- ephemeral event of /sync (initial, incremental, private, long-poll).
local tesths = require "support.hs"
local uv = require "luv"

local enc = tesths.enc
local V3 = "/_matrix/client/v3"

local find = tesths.find_type

describe("receipts", function()
  local t
  setup(function() t = tesths.start() end)
  teardown(function() t:stop() end)

  local function fresh() return t:fresh("rc") end
  local function rpath(room, rtype, event_id)
    return V3 .. "/rooms/" .. enc(room) .. "/receipt/" .. enc(rtype) .. "/" .. enc(event_id)
  end
  local function join(u, room) t:join(u, room) end
  local function send(u, room, body)
    local r = t:request("PUT", V3 .. "/rooms/" .. enc(room) .. "/send/m.room.message/" .. uv.hrtime(),
      { msgtype = "m.text", body = body }, u.access_token)
    assert.equal(200, r.status)
    return r.json.event_id
  end
  local function receipt_of(body, room)
    local sec = body.rooms and body.rooms.join and body.rooms.join[room]
    return sec and find(sec.ephemeral.events, "m.receipt")
  end

  it("sends m.read in initial and incremental syncs; never moves backwards", function()
    local a, b = fresh(), fresh()
    local room = t:create_room(a, { preset = "public_chat" })
    join(b, room)
    local e1 = send(a, room, "one")
    local e2 = send(a, room, "two")
    local since = t:request("GET", V3 .. "/sync", nil, b.access_token).json.next_batch
    local r = t:request("POST", rpath(room, "m.read", e2), {}, b.access_token)
    assert.equal(200, r.status)
    assert.same({}, r.json)
    r = t:request("GET", V3 .. "/sync?since=" .. enc(since), nil, a.access_token)
    local ev = receipt_of(r.json, room)
    assert.is_table(ev)
    assert.is_number(ev.content[e2]["m.read"][b.user_id].ts)
    since = r.json.next_batch
    -- an older event is ignored
    assert.equal(200, t:request("POST", rpath(room, "m.read", e1), {}, b.access_token).status)
    r = t:request("GET", V3 .. "/sync?since=" .. enc(since), nil, a.access_token)
    assert.is_nil(receipt_of(r.json, room))
    -- initial: the latest per user
    r = t:request("GET", V3 .. "/sync", nil, a.access_token)
    ev = receipt_of(r.json, room)
    assert.is_table(ev.content[e2]["m.read"][b.user_id])
    assert.is_nil(ev.content[e1])
  end)

  it("sends m.read.private only to its owner, with thread_id", function()
    local a, b = fresh(), fresh()
    local room = t:create_room(a, { preset = "public_chat" })
    join(b, room)
    local e1 = send(a, room, "one")
    assert.equal(200, t:request("POST", rpath(room, "m.read.private", e1), { thread_id = "main" },
      b.access_token).status)
    local r = t:request("GET", V3 .. "/sync", nil, b.access_token)
    local ev = receipt_of(r.json, room)
    assert.equal("main", ev.content[e1]["m.read.private"][b.user_id].thread_id)
    r = t:request("GET", V3 .. "/sync", nil, a.access_token)
    assert.is_nil(receipt_of(r.json, room))
  end)

  it("read_markers sets m.fully_read room account data and receipts", function()
    local a = fresh()
    local room = t:create_room(a)
    local e1 = send(a, room, "one")
    local since = t:request("GET", V3 .. "/sync", nil, a.access_token).json.next_batch
    local r = t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/read_markers",
      { ["m.fully_read"] = e1, ["m.read"] = e1 }, a.access_token)
    assert.equal(200, r.status)
    r = t:request("GET", V3 .. "/user/" .. enc(a.user_id) .. "/rooms/" .. enc(room) .. "/account_data/m.fully_read",
      nil, a.access_token)
    assert.equal(200, r.status)
    assert.same({ event_id = e1 }, r.json)
    r = t:request("GET", V3 .. "/sync?since=" .. enc(since), nil, a.access_token)
    assert.is_table(receipt_of(r.json, room).content[e1]["m.read"][a.user_id])
    assert.same({ event_id = e1 }, find(r.json.rooms.join[room].account_data.events, "m.fully_read").content)
    -- m.fully_read through /receipt too
    assert.equal(200, t:request("POST", rpath(room, "m.fully_read", e1), {}, a.access_token).status)
  end)

  it("a receipt wakes the room members' waiting long-polls", function()
    local a, b = fresh(), fresh()
    local room = t:create_room(a, { preset = "public_chat" })
    join(b, room)
    local e1 = send(a, room, "one")
    local since = t:request("GET", V3 .. "/sync", nil, a.access_token).json.next_batch
    t:run(function()
      local h = t:go(function()
        return t:call("GET", V3 .. "/sync?timeout=5000&since=" .. enc(since), nil, a.access_token)
      end)
      t:sleep(50)
      local sent = uv.hrtime()
      assert.equal(200, t:call("POST", rpath(room, "m.read", e1), {}, b.access_token).status)
      local r = t:await(h)
      local waited = (uv.hrtime() - sent) / 1e6
      assert.equal(200, r.status)
      assert.is_table(receipt_of(r.json, room).content[e1]["m.read"][b.user_id])
      assert.is_true(waited < 1000, "returned " .. waited .. " ms after the receipt")
    end)
  end)

  it("refuses bad types, unknown events, non-members and bad bodies", function()
    local a, b = fresh(), fresh()
    local room = t:create_room(a)
    local e1 = send(a, room, "one")
    local r = t:request("POST", rpath(room, "m.bogus", e1), {}, a.access_token)
    assert.equal(400, r.status)
    r = t:request("POST", rpath(room, "m.read", "$nope"), {}, a.access_token)
    assert.equal(404, r.status)
    assert.equal("M_NOT_FOUND", r.json.errcode)
    r = t:request("POST", rpath(room, "m.read", e1), {}, b.access_token)
    assert.equal(403, r.status)
    assert.equal("M_FORBIDDEN", r.json.errcode)
    r = t:request("POST", rpath(room, "m.read", e1), { thread_id = 5 }, a.access_token)
    assert.equal(400, r.status)
    r = t:request("POST", rpath(room, "m.read", e1), "[1]", a.access_token)
    assert.equal(400, r.status)
    r = t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/read_markers", { ["m.read"] = 7 }, a.access_token)
    assert.equal(400, r.status)
    r = t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/read_markers", { ["m.read"] = "$nope" }, a.access_token)
    assert.equal(404, r.status)
  end)
end)
