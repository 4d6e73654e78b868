-- Which left rooms an initial /sync carries (Client-Server API "Syncing";
-- the spec has only the include_leave filter, "include rooms that the user
-- has left"; the rest is Synapse's behaviour): rooms one was banned or kicked
-- from (an invite withdrawn too) always, rooms one left oneself only with
-- include_leave, forgotten rooms never.
local tesths = require "support.hs"

local enc = tesths.enc
local V3 = "/_matrix/client/v3"

describe("left rooms in an initial /sync", function()
  local t
  setup(function() t = tesths.start() end)
  teardown(function() t:stop() end)

  local function post(who, path, body)
    local r = t:request("POST", V3 .. path, body or {}, who.access_token)
    assert.equal(200, r.status, r.body)
  end

  local function leave_section(who, filter)
    local r = t:request("GET", V3 .. "/sync" .. (filter and "?filter=" .. enc(filter) or ""), nil, who.access_token)
    assert.equal(200, r.status)
    return r.json.rooms.leave
  end

  it("has bans and kicks, own leaves only with include_leave, and no forgotten room", function()
    local alice, bob = t:fresh("kl"), t:fresh("kl")
    local function room() return t:create_room(alice, { preset = "public_chat" }) end
    local kicked, banned, left, withdrawn = room(), room(), room(), room()
    for _, r in ipairs { kicked, banned, left } do t:join(bob, r) end
    t:send(alice.access_token, kicked, { msgtype = "m.text", body = "before the kick" })
    post(alice, "/rooms/" .. enc(kicked) .. "/kick", { user_id = bob.user_id })
    post(alice, "/rooms/" .. enc(banned) .. "/ban", { user_id = bob.user_id })
    post(bob, "/rooms/" .. enc(left) .. "/leave")
    post(alice, "/rooms/" .. enc(withdrawn) .. "/invite", { user_id = bob.user_id })
    post(alice, "/rooms/" .. enc(withdrawn) .. "/kick", { user_id = bob.user_id })

    local leave = leave_section(bob)
    assert.truthy(leave[kicked], "the room bob was kicked from")
    assert.truthy(leave[banned], "the room bob was banned from")
    assert.truthy(leave[withdrawn], "the room whose invite was withdrawn")
    assert.is_nil(leave[left], "a room bob left himself needs include_leave")
    -- the kick ends the timeline
    local tl = leave[kicked].timeline.events
    assert.equal("leave", tl[#tl].content.membership)
    assert.equal(alice.user_id, tl[#tl].sender)

    leave = leave_section(bob, '{"room":{"include_leave":true}}')
    assert.truthy(leave[left])
    assert.truthy(leave[kicked])

    post(bob, "/rooms/" .. enc(kicked) .. "/forget")
    post(bob, "/rooms/" .. enc(left) .. "/forget")
    assert.is_nil(leave_section(bob)[kicked])
    leave = leave_section(bob, '{"room":{"include_leave":true}}')
    assert.is_nil(leave[kicked])
    assert.is_nil(leave[left])
    assert.truthy(leave[banned])
  end)
end)
