-- Push-rule evaluation over a real server (Client-Server API, Push
-- Notifications module; "unread_notifications" in /sync): each new event is
-- run through every local member's rules; /sync counts the notifying ones
-- after the member's read receipt, and a receipt clears them.
local tesths = require "support.hs"

local enc = tesths.enc
local V3 = "/_matrix/client/v3"

describe("push evaluation", function()
  local t
  setup(function() t = tesths.start() end)
  teardown(function() t:stop() end)

  local function counts(u, room)
    t:run(function() t:sleep(20) end) -- evaluation is an observer on the next loop turn
    local j = t:sync(u).rooms.join[room]
    return j and j.unread_notifications
  end

  local function pair(alice, bob)
    local room = t:create_room(alice, { preset = "public_chat" })
    t:join(bob, room)
    return room
  end

  it("counts notifying messages per room, highlights mentions, and a receipt clears them", function()
    local alice, bob = t:fresh("pe"), t:fresh("pe")
    local room = pair(alice, bob)
    assert.same({ notification_count = 0, highlight_count = 0 }, counts(bob, room))
    t:send(alice.access_token, room, { msgtype = "m.text", body = "hello" })
    local r = t:send(alice.access_token, room, { msgtype = "m.text", body = "hi " .. bob.user_id:match("^@([^:]+)") })
    assert.equal(200, r.status)
    local last = r.json.event_id
    assert.same({ notification_count = 2, highlight_count = 1 }, counts(bob, room))
    -- the sender is not notified by their own messages
    assert.same({ notification_count = 0, highlight_count = 0 }, counts(alice, room))
    -- notices notify nobody (.m.rule.suppress_notices)
    t:send(alice.access_token, room, { msgtype = "m.notice", body = "bot" })
    assert.same({ notification_count = 2, highlight_count = 1 }, counts(bob, room))
    r = t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/receipt/m.read/" .. enc(last), {}, bob.access_token)
    assert.equal(200, r.status)
    assert.same({ notification_count = 0, highlight_count = 0 }, counts(bob, room))
    t:send(alice.access_token, room, { msgtype = "m.text", body = "again" })
    assert.same({ notification_count = 1, highlight_count = 0 }, counts(bob, room))
  end)

  it("follows the user's own rules: a keyword rule, a muted room, master", function()
    local alice, bob = t:fresh("pe"), t:fresh("pe")
    local room = pair(alice, bob)
    local r = t:request("PUT", V3 .. "/pushrules/global/content/cake", { pattern = "cake",
      actions = { "notify", { set_tweak = "highlight" } } }, bob.access_token)
    assert.equal(200, r.status)
    t:send(alice.access_token, room, { msgtype = "m.text", body = "some CAKE here" })
    assert.same({ notification_count = 1, highlight_count = 1 }, counts(bob, room))
    r = t:request("PUT", V3 .. "/pushrules/global/room/" .. enc(room), { actions = { "dont_notify" } },
      bob.access_token)
    assert.equal(200, r.status)
    t:send(alice.access_token, room, { msgtype = "m.text", body = "muted" })
    assert.same({ notification_count = 1, highlight_count = 1 }, counts(bob, room))
    assert.equal(200, t:request("DELETE", V3 .. "/pushrules/global/room/" .. enc(room), nil, bob.access_token).status)
    assert.equal(200, t:request("PUT", V3 .. "/pushrules/global/override/.m.rule.master/enabled", { enabled = true },
      bob.access_token).status)
    t:send(alice.access_token, room, { msgtype = "m.text", body = "cake again" })
    assert.same({ notification_count = 1, highlight_count = 1 }, counts(bob, room))
  end)

  it("highlights an m.mentions mention and a room mention only from a sender with power", function()
    local alice, bob = t:fresh("pe"), t:fresh("pe")
    local room = pair(alice, bob)
    t:send(alice.access_token, room, { msgtype = "m.text", body = "x",
      ["m.mentions"] = { user_ids = { bob.user_id } } })
    assert.same({ notification_count = 1, highlight_count = 1 }, counts(bob, room))
    -- bob (power 0) mentions the room: alice is notified but not highlighted
    t:send(bob.access_token, room, { msgtype = "m.text", body = "all", ["m.mentions"] = { room = true } })
    assert.same({ notification_count = 1, highlight_count = 0 }, counts(alice, room))
    -- alice (the creator, power 100) mentions the room: bob is highlighted
    t:send(alice.access_token, room, { msgtype = "m.text", body = "all", ["m.mentions"] = { room = true } })
    assert.same({ notification_count = 2, highlight_count = 2 }, counts(bob, room))
  end)
end)
