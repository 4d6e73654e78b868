-- Jumping to a date (Client-Server API, room_event_by_timestamp.yaml):
-- GET /rooms/{roomId}/timestamp_to_event?ts=&dir= answers the event closest
-- to ts in the direction asked (at or after it for f, at or before it for
-- b) among the events the user may see; 404 M_NOT_FOUND when there is none.
local tesths = require "support.hs"

local enc = tesths.enc
local V1 = "/_matrix/client/v1"

describe("timestamp_to_event", function()
  local t, alice, bob, room
  local evs = {}

  setup(function()
    t = tesths.start()
    alice, bob = t:register("alice"), t:register("bob")
    room = t:create_room(alice, { preset = "private_chat",
      initial_state = { { type = "m.room.history_visibility", content = { history_visibility = "joined" } } } })
    t:run(function() t:sleep(5) end)
    for i = 1, 3 do
      local r = t:send(alice.access_token, room, { msgtype = "m.text", body = "m" .. i })
      assert.equal(200, r.status)
      local ev = t:request("GET", "/_matrix/client/v3/rooms/" .. enc(room) .. "/event/" .. enc(r.json.event_id),
        nil, alice.access_token).json
      evs[i] = ev
      t:run(function() t:sleep(5) end)
    end
  end)
  teardown(function() t:stop() end)

  local function jump(who, q)
    return t:request("GET", V1 .. "/rooms/" .. enc(room) .. "/timestamp_to_event?" .. q, nil, who.access_token)
  end

  it("finds the closest event in either direction", function()
    local ts2 = evs[2].origin_server_ts
    local r = jump(alice, "dir=f&ts=" .. ts2)
    assert.equal(200, r.status, r.body)
    assert.equal(evs[2].event_id, r.json.event_id)
    assert.equal(ts2, r.json.origin_server_ts)
    assert.equal(evs[2].event_id, jump(alice, "dir=b&ts=" .. ts2).json.event_id)
    -- between m2 and m3
    assert.equal(evs[3].event_id, jump(alice, "dir=f&ts=" .. (ts2 + 1)).json.event_id)
    assert.equal(evs[2].event_id, jump(alice, "dir=b&ts=" .. (evs[3].origin_server_ts - 1)).json.event_id)
    -- after everything
    local late = jump(alice, "dir=f&ts=" .. (evs[3].origin_server_ts + 1))
    assert.equal(404, late.status)
    assert.equal("M_NOT_FOUND", late.json.errcode)
    assert.equal(evs[3].event_id, jump(alice, "dir=b&ts=" .. (evs[3].origin_server_ts + 100000)).json.event_id)
    -- before the room: the create event is the earliest
    local first = jump(alice, "dir=f&ts=0")
    assert.equal(200, first.status)
    assert.equal(404, jump(alice, "dir=b&ts=0").status)
  end)

  it("skips events the user may not see", function()
    assert.equal(200, t:request("POST", "/_matrix/client/v3/rooms/" .. enc(room) .. "/invite",
      { user_id = bob.user_id }, alice.access_token).status)
    t:join(bob, room)
    -- history before bob's invite is hidden from him (joined visibility):
    -- what he gets is older than the messages (the room's set-up, seen
    -- under the shared visibility before the setting)
    local r = jump(bob, "dir=b&ts=" .. evs[3].origin_server_ts)
    assert.equal(200, r.status)
    assert.is_true(r.json.origin_server_ts < evs[1].origin_server_ts)
    local f = jump(bob, "dir=f&ts=" .. evs[1].origin_server_ts)
    assert.equal(200, f.status)
    assert.not_equal(evs[1].event_id, f.json.event_id)
    assert.not_equal(evs[2].event_id, f.json.event_id)
    assert.not_equal(evs[3].event_id, f.json.event_id)
  end)

  it("refuses bad parameters and outsiders", function()
    local cases = { { "dir=f", 400, "M_MISSING_PARAM" }, { "ts=5", 400, "M_MISSING_PARAM" },
      { "dir=x&ts=5", 400, "M_INVALID_PARAM" }, { "dir=f&ts=abc", 400, "M_INVALID_PARAM" },
      { "dir=f&ts=-1", 400, "M_INVALID_PARAM" } }
    for _, c in ipairs(cases) do
      local r = jump(alice, c[1])
      assert.equal(c[2], r.status, c[1])
      assert.equal(c[3], r.json.errcode, c[1])
    end
    local outsider = t:fresh("out")
    local r = jump(outsider, "dir=f&ts=0")
    assert.equal(403, r.status)
    assert.equal("M_FORBIDDEN", r.json.errcode)
  end)
end)
