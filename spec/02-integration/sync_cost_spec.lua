-- What an incremental /sync costs depends on what changed since its token,
-- not on how many rooms the user is in: the SQL statements it runs stay the
-- same for 3 rooms and for 40, and every kind of change (a message, typing,
-- a receipt, room account data, a join) still brings its room, and only
-- that room, into the answer.
local tesths = require "support.hs"

local enc = tesths.enc
local V3 = "/_matrix/client/v3"

describe("incremental /sync cost", function()
  local t
  setup(function() t = tesths.start() end)
  teardown(function() t:stop() end)

  local function sync(u, since)
    local r = t:request("GET", V3 .. "/sync?timeout=0" .. (since and "&since=" .. enc(since) or ""), nil,
      u.access_token)
    assert.equal(200, r.status, r.body)
    return r.json
  end
  local function joined_ids(body)
    local out = {}
    for r in pairs(body.rooms.join) do out[#out + 1] = r end
    table.sort(out)
    return out
  end
  -- statements run by one incremental sync after one message in `room`
  local function statements_for_one_change(u, other, room)
    local since = sync(u).next_batch
    sync(u, since)   -- warm: the caches a first incremental sync fills
    since = sync(u).next_batch
    assert.equal(200, t:send(other.access_token, room, { msgtype = "m.text", body = "hi" }).status)
    local conn = t.hs.store.conn
    local before = conn.statements
    local body = sync(u, since)
    local n = conn.statements - before
    assert.same({ room }, joined_ids(body))
    return n
  end

  it("runs as many statements for 40 rooms as for 3", function()
    local counts = {}
    for _, n in ipairs { 3, 40 } do
      local a, b = t:fresh("cost"), t:fresh("cost")
      local rooms = {}
      for i = 1, n do
        rooms[i] = t:create_room(a, { preset = "public_chat" })
      end
      t:join(b, rooms[1])
      counts[n] = statements_for_one_change(a, b, rooms[1])
    end
    assert.equal(counts[3], counts[40])
    assert.is_true(counts[40] <= 8, "statements: " .. counts[40])
  end)

  it("brings in exactly the rooms where something changed", function()
    local a, b = t:fresh("chg"), t:fresh("chg")
    local rooms = {}
    for i = 1, 6 do
      rooms[i] = t:create_room(a, { preset = "public_chat" })
      t:join(b, rooms[i])
    end
    local extra = t:create_room(b, { preset = "public_chat" })
    local since = sync(a).next_batch
    local ev = t:send(b.access_token, rooms[1], { msgtype = "m.text", body = "one" }).json.event_id
    assert.same({ rooms[1] }, joined_ids(sync(a, since)))
    since = sync(a, since).next_batch
    -- typing only
    assert.equal(200, t:request("PUT", V3 .. "/rooms/" .. enc(rooms[2]) .. "/typing/" .. enc(b.user_id),
      { typing = true, timeout = 30000 }, b.access_token).status)
    -- a receipt only
    assert.equal(200, t:request("POST", V3 .. "/rooms/" .. enc(rooms[1]) .. "/receipt/m.read/" .. enc(ev), {},
      b.access_token).status)
    -- room account data only
    assert.equal(200, t:request("PUT", V3 .. "/user/" .. enc(a.user_id) .. "/rooms/" .. enc(rooms[3])
      .. "/account_data/org.example.x", { v = 1 }, a.access_token).status)
    -- a join
    t:join(a, extra)
    local body = sync(a, since)
    local want = { rooms[1], rooms[2], rooms[3], extra }
    table.sort(want)
    assert.same(want, joined_ids(body))
    -- and then nothing
    local again = sync(a, body.next_batch)
    assert.same({}, joined_ids(again))
    -- leaving a room: it goes to leave and never comes back in join
    assert.equal(200, t:request("POST", V3 .. "/rooms/" .. enc(rooms[4]) .. "/leave", {}, a.access_token).status)
    assert.equal(200, t:send(b.access_token, rooms[4], { msgtype = "m.text", body = "after" }).status)
    body = sync(a, again.next_batch)
    assert.same({}, joined_ids(body))
    assert.is_table(body.rooms.leave[rooms[4]])
    local r = t:request("GET", V3 .. "/joined_rooms", nil, a.access_token)
    for _, id in ipairs(r.json.joined_rooms) do assert.not_equal(rooms[4], id) end
  end)
end)
