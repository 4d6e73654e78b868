-- loom.push.notify over a real server: the room's members, display names
-- and rule sets are cached, so the cache must follow membership events
-- (joins, leaves, display-name changes, invites) and rule changes; each
-- recorded row carries the actions of the rule that matched (tweaks included,
-- for pushers). Client-Server API, Push Notifications module.
local tesths = require "support.hs"

local enc = tesths.enc
local V3 = "/_matrix/client/v3"

describe("push notify (cached rooms)", function()
  local t, captured
  setup(function()
    t = tesths.start()
    local store = t.hs.store
    local add = store.add_push_actions
    store.add_push_actions = function(self, room_id, so, event_id, rows)
      captured[event_id] = rows
      return add(self, room_id, so, event_id, rows)
    end
  end)
  teardown(function() t:stop() end)
  before_each(function() captured = {} end)

  -- the rows recorded for an event, by user: { [user_id] = { highlight, actions } }
  local function rows_of(event_id)
    t:run(function() t:sleep(20) end) -- evaluation is an observer on the next loop turn
    local out = {}
    for _, r in ipairs(captured[event_id] or {}) do out[r[1]] = { r[2], r[3] } end
    return out
  end

  local function say(u, room, body, extra)
    local content = { msgtype = "m.text", body = body }
    for k, v in pairs(extra or {}) do content[k] = v end
    local r = t:send(u.access_token, room, content)
    assert.equal(200, r.status)
    return r.json.event_id
  end

  local function has_tweak(actions, tweak, value)
    for _, a in ipairs(actions or {}) do
      if type(a) == "table" and a.set_tweak == tweak and (value == nil or a.value == value) then return true end
    end
    return false
  end

  it("follows joins and leaves of the room", function()
    local alice, bob, carol = t:fresh("pn"), t:fresh("pn"), t:fresh("pn")
    local room = t:create_room(alice, { preset = "public_chat" })
    t:join(bob, room)
    local rows = rows_of(say(alice, room, "one"))
    assert.is_not_nil(rows[bob.user_id])
    assert.is_nil(rows[carol.user_id])
    assert.is_nil(rows[alice.user_id]) -- never the sender
    t:join(carol, room)
    rows = rows_of(say(alice, room, "two"))
    assert.is_not_nil(rows[bob.user_id])
    assert.is_not_nil(rows[carol.user_id])
    assert.equal(200, t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/leave", {}, bob.access_token).status)
    rows = rows_of(say(alice, room, "three"))
    assert.is_nil(rows[bob.user_id])
    assert.is_not_nil(rows[carol.user_id])
  end)

  it("uses a display name changed after the room was cached", function()
    local alice, bob = t:fresh("pn"), t:fresh("pn")
    local room = t:create_room(alice, { preset = "public_chat" })
    t:join(bob, room)
    local rows = rows_of(say(alice, room, "hello Captain Zed!"))
    assert.is_false(rows[bob.user_id][1])
    local r = t:request("PUT", V3 .. "/rooms/" .. enc(room) .. "/state/m.room.member/" .. enc(bob.user_id),
      { membership = "join", displayname = "Captain Zed" }, bob.access_token)
    assert.equal(200, r.status)
    rows = rows_of(say(alice, room, "hello captain zed!"))
    assert.is_true(rows[bob.user_id][1])
    assert.is_true(has_tweak(rows[bob.user_id][2], "sound", "default"))
    -- a name with glob and regex characters is matched literally
    r = t:request("PUT", V3 .. "/rooms/" .. enc(room) .. "/state/m.room.member/" .. enc(bob.user_id),
      { membership = "join", displayname = "b*b (x)" }, bob.access_token)
    assert.equal(200, r.status)
    assert.is_false(rows_of(say(alice, room, "hi bob (x)"))[bob.user_id][1])
    assert.is_true(rows_of(say(alice, room, "hi B*B (X)!"))[bob.user_id][1])
  end)

  it("applies a rule change to a cached room and passes the rule's actions on", function()
    local alice, bob = t:fresh("pn"), t:fresh("pn")
    local room = t:create_room(alice, { preset = "public_chat" })
    t:join(bob, room)
    local rows = rows_of(say(alice, room, "I baked a pie"))
    -- two members: .m.rule.room_one_to_one
    assert.equal("notify", rows[bob.user_id][2][1])
    assert.is_true(has_tweak(rows[bob.user_id][2], "sound", "default"))
    local r = t:request("PUT", V3 .. "/pushrules/global/content/pie", { pattern = "p?e",
      actions = { "notify", { set_tweak = "sound", value = "pie.ogg" }, { set_tweak = "highlight", value = false } } },
      bob.access_token)
    assert.equal(200, r.status)
    rows = rows_of(say(alice, room, "more PIE"))
    assert.is_false(rows[bob.user_id][1])
    assert.is_true(has_tweak(rows[bob.user_id][2], "sound", "pie.ogg"))
    -- a mention of bob: highlight, by .m.rule.is_user_mention
    rows = rows_of(say(alice, room, "x", { ["m.mentions"] = { user_ids = { bob.user_id } } }))
    assert.is_true(rows[bob.user_id][1])
    assert.is_true(has_tweak(rows[bob.user_id][2], "highlight"))
  end)

  it("notifies the target of an invite (.m.rule.invite_for_me) before they are a member", function()
    local alice, bob, dave = t:fresh("pn"), t:fresh("pn"), t:fresh("pn")
    local room = t:create_room(alice, { preset = "public_chat" })
    t:join(bob, room)
    rows_of(say(alice, room, "fill the cache"))
    local r = t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/invite", { user_id = dave.user_id },
      alice.access_token)
    assert.equal(200, r.status)
    t:run(function() t:sleep(20) end)
    local found
    for _, rows in pairs(captured) do
      for _, row in ipairs(rows) do if row[1] == dave.user_id then found = row end end
    end
    assert.is_not_nil(found)
    assert.is_false(found[2])
    assert.is_true(has_tweak(found[3], "sound", "default"))
  end)
end)
