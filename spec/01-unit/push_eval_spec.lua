-- loom.push.eval: push-rule conditions and the predefined rules, from the
-- Client-Server API's Push Notifications module ("Conditions",
-- "Predefined Rules").
local eval = require "loom.push.eval"
local pushrules = require "loom.api.pushrules"
local json = require("loom.core").json

local ALICE = "@alice:example.org"

local function msg(body, extra)
  local ev = { type = "m.room.message", sender = "@bob:example.org", room_id = "!r:example.org",
    content = { msgtype = "m.text", body = body } }
  for k, v in pairs(extra or {}) do ev[k] = v end
  return ev
end

local function ctx(over)
  local c = { user_id = ALICE, display_name = "Alice Liddell", member_count = 5, sender_power = 0,
    notifications = { room = 50 } }
  for k, v in pairs(over or {}) do c[k] = v end
  return c
end

local function one(cond, ev, c)
  local compiled = eval.compile { override = { { rule_id = "x", enabled = true, conditions = { cond },
    actions = { "notify" } } } }
  return eval.run(compiled, ev, c or ctx()) ~= nil
end

local function defaults(ev, c)
  local actions, rule_id = eval.run(eval.compile(pushrules.defaults(ALICE)), ev, c or ctx())
  local notify, highlight = eval.outcome(actions)
  return rule_id, notify, highlight
end

describe("loom.push.eval", function()
  it("splits keys on unescaped dots", function()
    assert.same({ "content", "m.relates_to", "rel_type" }, eval.split_key("content.m\\.relates_to.rel_type"))
    assert.same({ "a\\b", "c" }, eval.split_key("a\\\\b.c"))
    assert.same({ "content", "body" }, eval.split_key("content.body"))
  end)

  it("event_match: globs on string values, whole value or words of content.body", function()
    assert.is_true(one({ kind = "event_match", key = "type", pattern = "m.room.*" }, msg("hi")))
    assert.is_false(one({ kind = "event_match", key = "type", pattern = "m.room" }, msg("hi")))
    assert.is_true(one({ kind = "event_match", key = "content.msgtype", pattern = "M.TEXT" }, msg("hi")))
    assert.is_true(one({ kind = "event_match", key = "content.body", pattern = "cake" }, msg("I like Cake!")))
    assert.is_false(one({ kind = "event_match", key = "content.body", pattern = "cake" }, msg("cakes")))
    -- the value must be a string
    assert.is_false(one({ kind = "event_match", key = "content.n", pattern = "1" }, msg("x", { content = { n = 1 } })))
    assert.is_false(one({ kind = "event_match", key = "content.missing", pattern = "*" }, msg("x")))
    assert.is_false(one({ kind = "event_match", key = "content", pattern = "*" }, msg("x")))
    -- a glob the compiler refuses never matches
    assert.is_false(one({ kind = "event_match", key = "type", pattern = ("?"):rep(1000) }, msg("x")))
  end)

  it("event_property_is and event_property_contains: exact values", function()
    local ev = msg("x", { content = { body = "x", ["m.mentions"] = { room = true, user_ids = { ALICE } },
      n = 3, f = false, z = json.null } })
    assert.is_true(one({ kind = "event_property_is", key = "content.m\\.mentions.room", value = true }, ev))
    assert.is_false(one({ kind = "event_property_is", key = "content.m\\.mentions.room", value = "true" }, ev))
    assert.is_true(one({ kind = "event_property_is", key = "content.n", value = 3 }, ev))
    assert.is_false(one({ kind = "event_property_is", key = "content.n", value = "3" }, ev))
    assert.is_true(one({ kind = "event_property_is", key = "content.f", value = false }, ev))
    assert.is_true(one({ kind = "event_property_is", key = "content.z", value = json.null }, ev))
    assert.is_false(one({ kind = "event_property_is", key = "content.missing", value = json.null }, ev))
    assert.is_true(one({ kind = "event_property_is", key = "content.body", value = "x" }, ev))
    assert.is_false(one({ kind = "event_property_is", key = "content.body", value = "X" }, ev))
    assert.is_true(one({ kind = "event_property_contains", key = "content.m\\.mentions.user_ids", value = ALICE }, ev))
    assert.is_false(one({ kind = "event_property_contains", key = "content.m\\.mentions.user_ids",
      value = "@bob:example.org" }, ev))
    assert.is_false(one({ kind = "event_property_contains", key = "content.body", value = "x" }, ev))
  end)

  it("contains_display_name: the name as whole words, case-insensitive, literally", function()
    local c = { kind = "contains_display_name" }
    assert.is_true(one(c, msg("hey alice liddell, look")))
    assert.is_false(one(c, msg("hey alice")))
    assert.is_false(one(c, msg("xalice liddellx")))
    assert.is_false(one(c, msg("hey alice liddell"), ctx { display_name = "" }))
    assert.is_false(one(c, msg("hey"), ctx { display_name = nil }))
    assert.is_true(one(c, msg("ping a*b now"), ctx { display_name = "a*b" }))
    assert.is_false(one(c, msg("ping axb now"), ctx { display_name = "a*b" }))
  end)

  it("room_member_count: ==, <, >, <=, >= and a bare number", function()
    local function is(s, n) return one({ kind = "room_member_count", is = s }, msg("x"), ctx { member_count = n }) end
    assert.is_true(is("2", 2))
    assert.is_false(is("2", 3))
    assert.is_true(is("==2", 2))
    assert.is_true(is("<3", 2))
    assert.is_false(is("<2", 2))
    assert.is_true(is(">1", 2))
    assert.is_true(is("<=2", 2))
    assert.is_true(is(">=2", 2))
    assert.is_false(is(">=3", 2))
    assert.is_false(is("=>2", 2))
    assert.is_false(is("two", 2))
    assert.is_false(is(2, 2))
  end)

  it("sender_notification_permission: the sender's power reaches notifications[key]", function()
    local c = { kind = "sender_notification_permission", key = "room" }
    assert.is_false(one(c, msg("x"), ctx { sender_power = 49 }))
    assert.is_true(one(c, msg("x"), ctx { sender_power = 50 }))
    assert.is_true(one(c, msg("x"), ctx { sender_power = 10, notifications = { room = 10 } }))
    assert.is_true(one(c, msg("x"), ctx { sender_power = 50, notifications = {} })) -- default 50
    assert.is_false(one(c, msg("x"), ctx { sender_power = 40, notifications = {} }))
  end)

  it("an unknown condition kind never matches; disabled rules are skipped", function()
    assert.is_false(one({ kind = "org.example.nope" }, msg("x")))
    local compiled = eval.compile { override = {
      { rule_id = "off", enabled = false, conditions = {}, actions = { "dont_notify" } },
      { rule_id = "on", enabled = true, conditions = {}, actions = { "notify" } } } }
    local _, id = eval.run(compiled, msg("x"), ctx())
    assert.equal("on", id)
  end)

  it("the predefined rules give the spec's outcomes", function()
    assert.same({ ".m.rule.message", true, false }, { defaults(msg("hello")) })
    assert.same({ ".m.rule.room_one_to_one", true, false }, { defaults(msg("hello"), ctx { member_count = 2 }) })
    assert.same({ ".m.rule.suppress_notices", false, false },
      { defaults(msg("x", { content = { msgtype = "m.notice", body = "x" } })) })
    assert.same({ ".m.rule.contains_display_name", true, true }, { defaults(msg("Alice Liddell: hi")) })
    assert.same({ ".m.rule.contains_user_name", true, true }, { defaults(msg("hi alice")) })
    local mention = msg("hi", { content = { body = "hi", ["m.mentions"] = { user_ids = { ALICE } } } })
    assert.same({ ".m.rule.is_user_mention", true, true }, { defaults(mention) })
    local room = msg("hi", { content = { body = "hi", ["m.mentions"] = { room = true } } })
    assert.same({ ".m.rule.message", true, false }, { defaults(room) })
    assert.same({ ".m.rule.is_room_mention", true, true }, { defaults(room, ctx { sender_power = 50 }) })
    assert.same({ ".m.rule.roomnotif", true, true }, { defaults(msg("@room look"), ctx { sender_power = 100 }) })
    local invite = { type = "m.room.member", state_key = ALICE, sender = "@bob:example.org",
      content = { membership = "invite" } }
    assert.same({ ".m.rule.invite_for_me", true, false }, { defaults(invite) })
    assert.same({ ".m.rule.member_event", false, false },
      { defaults { type = "m.room.member", state_key = "@c:x", sender = "@c:x", content = { membership = "join" } } })
    assert.same({ ".m.rule.tombstone", true, true },
      { defaults { type = "m.room.tombstone", state_key = "", sender = "@b:x", content = { body = "moved" } } })
    assert.same({ ".m.rule.reaction", false, false },
      { defaults { type = "m.reaction", sender = "@b:x", content = {} } })
    local edit = msg("* hi", { content = { body = "* hi", ["m.relates_to"] = { rel_type = "m.replace" } } })
    assert.same({ ".m.rule.suppress_edits", false, false }, { defaults(edit) })
    assert.same({ ".m.rule.encrypted", true, false }, { defaults { type = "m.room.encrypted", sender = "@b:x",
      content = {} } })
    assert.same({ ".m.rule.encrypted_room_one_to_one", true, false }, { defaults({ type = "m.room.encrypted",
      sender = "@b:x", content = {} }, ctx { member_count = 2 }) })
    assert.same({ ".m.rule.call", true, false }, { defaults { type = "m.call.invite", sender = "@b:x", content = {} } })
    assert.is_nil((defaults { type = "org.example.custom", sender = "@b:x", content = {} }))
  end)

  it("runs content, room and sender rules in the spec's order, and honours master", function()
    local rules = pushrules.merge(ALICE, {})
    table.insert(rules.room, { rule_id = "!r:example.org", default = false, enabled = true, actions = {} })
    table.insert(rules.sender, 1, { rule_id = "@bob:example.org", default = false, enabled = true,
      actions = { "notify", { set_tweak = "highlight" } } })
    local _, id = eval.run(eval.compile(rules), msg("hello"), ctx())
    assert.equal("!r:example.org", id) -- room before sender
    table.insert(rules.content, 1, { rule_id = "kw", default = false, enabled = true, pattern = "hel*",
      actions = { "notify" } })
    _, id = eval.run(eval.compile(rules), msg("hello"), ctx())
    assert.equal("kw", id)
    rules.override[1].enabled = true -- .m.rule.master: nothing notifies
    local actions
    actions, id = eval.run(eval.compile(rules), msg("hello"), ctx())
    assert.equal(".m.rule.master", id)
    assert.is_false((eval.outcome(actions)))
  end)
end)
