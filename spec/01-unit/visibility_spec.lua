-- loom.room.visibility: history visibility judged by the state at each event.
local tesths = require "support.hs"
local visibility = require "loom.room.visibility"

local A, B = "@alice:test.local", "@bob:test.local"

describe("history visibility", function()
  local t, rooms
  before_each(function() t = tesths.start(); rooms = t.hs.rooms end)
  after_each(function() t:stop() end)

  local function send(room, proto) return assert(rooms:send(room, proto)) end
  local function room_with(hv)
    local room = assert(rooms:create_room(A))
    send(room, { type = "m.room.member", state_key = A, sender = A, content = { membership = "join" } })
    send(room, { type = "m.room.join_rules", state_key = "", sender = A, content = { join_rule = "public" } })
    if hv then
      send(room, { type = "m.room.history_visibility", state_key = "", sender = A,
        content = { history_visibility = hv } })
    end
    return room
  end
  local function msg(room, body)
    return send(room, { type = "m.room.message", sender = A, content = { body = body } })
  end
  local function membership(room, sender, target, m)
    return send(room, { type = "m.room.member", state_key = target, sender = sender, content = { membership = m } })
  end
  local function sees(room, ev) return visibility.can_see(t.hs, B, room, ev) end

  it("world_readable: everyone sees every event", function()
    local room = room_with("world_readable")
    local e = msg(room, "x")
    assert.is_true(sees(room, e))
    assert.is_true(visibility.can_see(t.hs, "@stranger:elsewhere", room, e.event_id))
  end)

  it("shared (and the default): visible once the user joins, including earlier events", function()
    for _, hv in ipairs { "shared", false } do
      local room = room_with(hv or nil)
      local early = msg(room, "early")
      assert.is_false(sees(room, early))
      membership(room, B, B, "join")
      local during = msg(room, "during")
      assert.is_true(sees(room, early))
      assert.is_true(sees(room, during))
      membership(room, B, B, "leave")
      local late = msg(room, "late")
      assert.is_false(sees(room, late))
      assert.is_true(sees(room, early))   -- joined after it
    end
  end)

  it("invited: visible from the invite on", function()
    local room = room_with("invited")
    local early = msg(room, "early")
    membership(room, A, B, "invite")
    local invited = msg(room, "invited")
    membership(room, B, B, "join")
    local joined = msg(room, "joined")
    assert.is_false(sees(room, early))
    assert.is_true(sees(room, invited))
    assert.is_true(sees(room, joined))
  end)

  it("joined: only while joined", function()
    local room = room_with("joined")
    local early = msg(room, "early")
    local inv = membership(room, A, B, "invite")
    local invited = msg(room, "invited")
    membership(room, B, B, "join")
    local joined = msg(room, "joined")
    assert.is_false(sees(room, early))
    assert.is_false(sees(room, invited))
    assert.is_true(sees(room, joined))
    assert.is_true(sees(room, inv))          -- the user's own membership event
  end)

  it("a history_visibility change uses the more permissive of before and after", function()
    local room = room_with("joined")
    local change = send(room, { type = "m.room.history_visibility", state_key = "", sender = A,
      content = { history_visibility = "world_readable" } })
    assert.is_true(sees(room, change))
    local back = send(room, { type = "m.room.history_visibility", state_key = "", sender = A,
      content = { history_visibility = "joined" } })
    assert.is_true(sees(room, back))
    assert.is_false(sees(room, msg(room, "hidden")))
  end)

  it("filters a batch in order", function()
    local room = room_with("joined")
    local e1 = msg(room, "1")
    membership(room, B, B, "join")
    local e2, e3 = msg(room, "2"), msg(room, "3")
    local out = visibility.filter(t.hs, B, room, { e1, e2, e3 })
    assert.equal(2, #out)
    assert.equal(e2.event_id, out[1].event_id)
    assert.equal(e3.event_id, out[2].event_id)
  end)
end)
