-- Lazy-loading room members in /sync (Client-Server API, "Lazy-loading room
-- members"): with room.state.lazy_load_members the state section carries
-- the m.room.member events of the timeline's senders that the device has not
-- been sent yet, also when the membership predates `since`; a limited sync
-- includes the senders' membership changes in the gap; include_redundant_members
-- sends them every time. What was sent is tracked per device, and forgotten
-- when the device's sync starts over.
local tesths = require "support.hs"

local enc = tesths.enc
local V3 = "/_matrix/client/v3"

local function filter(limit, redundant)
  local f = ('{"room":{"state":{"lazy_load_members":true%s},"timeline":{"limit":%d}}}'):format(
    redundant and ',"include_redundant_members":true' or "", limit)
  return enc(f)
end

describe("lazy-loaded members in /sync", function()
  local t, alice, bob, room
  before_each(function()
    t = tesths.start()
    alice, bob = t:register("alice"), t:register("bob")
    -- a named room: no heroes, whose member events lazy loading would add (see sync_summary_spec)
    room = t:create_room(alice, { preset = "public_chat", name = "Lazy members" })
    assert.equal(200, t:request("POST", V3 .. "/join/" .. enc(room), {}, bob.access_token).status)
  end)
  after_each(function() t:stop() end)

  local function say(who, n, prefix)
    for i = 1, n do
      assert.equal(200, t:send(who.access_token, room, { msgtype = "m.text", body = prefix .. i }).status)
    end
  end

  local function sync(who, since, limit, redundant)
    local path = V3 .. "/sync?filter=" .. filter(limit or 2, redundant)
    if since then path = path .. "&since=" .. enc(since) end
    local r = t:request("GET", path, nil, who.access_token)
    assert.equal(200, r.status, r.body)
    return r.json
  end

  local function section(body) return body.rooms.join[room] end

  -- The member events in the room's state section: { [state_key] = event_id }.
  local function members(body)
    local out = {}
    local sec = section(body)
    if not sec then return out end
    for _, ev in ipairs(sec.state.events) do
      if ev.type == "m.room.member" then out[ev.state_key] = ev.event_id end
    end
    return out
  end

  local function bob_member_content()
    local r = t:request("GET", V3 .. "/rooms/" .. enc(room) .. "/state/m.room.member/" .. enc(bob.user_id),
      nil, alice.access_token)
    assert.equal(200, r.status)
    return r.json
  end

  local function current_member_event_id(user_id)
    local r = t:request("GET", V3 .. "/rooms/" .. enc(room) .. "/state", nil, alice.access_token)
    assert.equal(200, r.status)
    for _, ev in ipairs(r.json) do
      if ev.type == "m.room.member" and ev.state_key == user_id then return ev.event_id end
    end
  end

  -- A second device of alice (a second login).
  local function second_device()
    return assert(t.hs.accounts:login(alice.user_id, alice.password))
  end

  it("a limited sync carries the membership of a sender the device was never sent, older than since", function()
    say(alice, 3, "a")
    local first = sync(alice)                     -- timeline: alice's messages only
    assert.is_nil(members(first)[bob.user_id])
    say(alice, 4, "gap")
    say(bob, 1, "b")
    local body = sync(alice, first.next_batch)
    assert.is_true(section(body).timeline.limited)
    local bob_join = current_member_event_id(bob.user_id)
    assert.equal(bob_join, members(body)[bob.user_id])
    -- sent once: the next gappy sync does not repeat it …
    say(alice, 4, "gap2")
    say(bob, 1, "b2")
    local again = sync(alice, body.next_batch)
    assert.is_true(section(again).timeline.limited)
    assert.is_nil(members(again)[bob.user_id])
    -- … unless the client asks for redundant members
    say(alice, 4, "gap3")
    say(bob, 1, "b3")
    local redundant = sync(alice, again.next_batch, 2, true)
    assert.equal(bob_join, members(redundant)[bob.user_id])
  end)

  it("a limited sync carries a sender's membership change inside the gap", function()
    say(alice, 3, "a")
    local first = sync(alice)
    say(bob, 1, "b")                              -- alice's device is sent bob's join
    local mid = sync(alice, first.next_batch, 5)
    assert.equal(current_member_event_id(bob.user_id), members(mid)[bob.user_id])
    -- in the gap: bob changes his display name; then the timeline
    local prof = t:request("PUT", V3 .. "/profile/" .. enc(bob.user_id) .. "/displayname",
      { displayname = "Bobby" }, bob.access_token)
    assert.equal(200, prof.status)
    say(alice, 4, "gap")
    say(bob, 1, "b2")
    local body = sync(alice, mid.next_batch)
    assert.is_true(section(body).timeline.limited)
    local renamed = current_member_event_id(bob.user_id)
    assert.equal(renamed, members(body)[bob.user_id])
    assert.equal("Bobby", bob_member_content().displayname)
  end)

  it("a sync without a gap carries the membership of a sender the device was never sent", function()
    say(alice, 3, "a")
    local first = sync(alice)
    say(bob, 1, "b")
    local body = sync(alice, first.next_batch, 10)
    assert.is_false(section(body).timeline.limited)
    assert.equal(current_member_event_id(bob.user_id), members(body)[bob.user_id])
    say(bob, 1, "again")
    local again = sync(alice, body.next_batch, 10)
    assert.is_false(section(again).timeline.limited)
    assert.is_nil(members(again)[bob.user_id])
  end)

  it("include_redundant_members sends a sender's membership in every sync, with or without a gap", function()
    say(alice, 3, "a")
    local first = sync(alice, nil, 2, true)
    say(bob, 1, "b")
    local bob_join = current_member_event_id(bob.user_id)
    local one = sync(alice, first.next_batch, 10, true)
    assert.equal(bob_join, members(one)[bob.user_id])
    say(bob, 1, "b2")
    local two = sync(alice, one.next_batch, 10, true)
    assert.is_false(section(two).timeline.limited)
    assert.equal(bob_join, members(two)[bob.user_id])
  end)

  it("tracks what was sent per device", function()
    say(alice, 3, "a")
    local phone = second_device()
    local first_a, first_b = sync(alice), sync(phone)
    assert.is_nil(members(first_a)[bob.user_id])
    assert.is_nil(members(first_b)[bob.user_id])
    say(bob, 1, "b")
    local bob_join = current_member_event_id(bob.user_id)
    local a = sync(alice, first_a.next_batch, 10)
    assert.equal(bob_join, members(a)[bob.user_id])
    -- the other device was not sent it yet
    say(alice, 4, "gap")
    say(bob, 1, "b2")
    local b = sync(phone, first_b.next_batch)
    assert.is_true(section(b).timeline.limited)
    assert.equal(bob_join, members(b)[bob.user_id])
    -- and the first device is not sent it twice
    local a2 = sync(alice, a.next_batch)
    assert.is_nil(members(a2)[bob.user_id])
  end)

  it("forgets what a device was sent when its sync starts over", function()
    say(alice, 3, "a")
    local first = sync(alice)
    say(bob, 1, "b")
    local bob_join = current_member_event_id(bob.user_id)
    assert.equal(bob_join, members(sync(alice, first.next_batch, 10))[bob.user_id])
    say(alice, 3, "c")
    local restart = sync(alice)                   -- an initial sync: the timeline is alice's only
    assert.is_nil(members(restart)[bob.user_id])
    say(bob, 1, "b2")
    assert.equal(bob_join, members(sync(alice, restart.next_batch, 10))[bob.user_id])
  end)
end)
