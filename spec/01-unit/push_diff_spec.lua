-- loom.core.push against loom.push.eval (the reference): random rule sets and
-- random events must give the same rule, the same actions and the same
-- notify/highlight outcome. Seeded; the seed is printed with any failure and
-- PUSH_DIFF_SEED=n replays it.
local core = require "loom.core"
local eval = require "loom.push.eval"
local pushrules = require "loom.api.pushrules"

local null = core.json.null
local SEED = tonumber(os.getenv("PUSH_DIFF_SEED") or "") or os.time()
local CASES = tonumber(os.getenv("PUSH_DIFF_CASES") or "") or (os.getenv("LOOM_SANITIZED") and 1000 or 3000)

local rand

local function pick(t) return t[rand(#t)] end

local WORDS = { "cake", "Cake", "CAKE", "lie", "alice", "Alice", "bob", "café", "CAFÉ", "naïve", "über",
  "x_y", "a1", "room", "@room", "hello", "m.notice", "m.text", "😀", "日本", "é", "É", "",
  "a.b", "a*b", "a?b", "[x]", "(y)", "{2}", "a+", "^s$", "back\\slash", "pipe|bar", "dot.", "*", "?",
  "ab\0cd", "\128", "\191x", "\255\254", "e\204\129" }
local SEPS = { " ", " ", "  ", ", ", "!", "-", ".", "_", "\n", "\t", "'", "é", "\0", "" }
local KEYS = { "type", "content.body", "content.msgtype", "state_key", "sender", "room_id",
  "content.m\\.mentions.user_ids", "content.m\\.mentions.room", "content.m.mentions.room",
  "content.a\\.b", "content.a\\\\b", "content.a\\b", "content.a\\c", "content.n", "content.f", "content.z",
  "content.nested.k", "content.nested", "content.list", "content.d\\.e.f", "content.", "content..x",
  "content.fl", "content.arr", "content.\\\\", "unsigned.age", "content.m\\.relates_to.rel_type",
  "content.body.x", "content.k\\" }
local USERS = { "@alice:example.org", "@bob:example.org", "@carol:example.org", "@Al.ice*:example.org",
  "@d[1]:example.org" }

local function text(n)
  local out = {}
  for _ = 1, n do out[#out + 1] = pick(WORDS); out[#out + 1] = pick(SEPS) end
  return table.concat(out)
end

local function glob_text()
  local out = {}
  for _ = 1, rand(0, 3) do
    local r = rand(10)
    if r <= 5 then out[#out + 1] = pick(WORDS)
    elseif r <= 7 then out[#out + 1] = "*"
    elseif r <= 8 then out[#out + 1] = "?"
    else out[#out + 1] = pick(SEPS) end
  end
  if rand(40) == 1 then out[#out + 1] = ("?"):rep(rand(150, 260)) end
  if rand(60) == 1 then out[#out + 1] = ("x"):rep(rand(1020, 1030)) end
  return table.concat(out)
end

local function scalar()
  local r = rand(9)
  if r == 1 then return rand(-3, 3)
  elseif r == 2 then return rand(2) == 1
  elseif r == 3 then return null
  elseif r == 4 then return rand(3) + 0.0
  elseif r == 5 then return 0.5
  else return pick(WORDS) end
end

local function random_event()
  local content = { msgtype = pick { "m.text", "m.notice", "m.emote", "M.TEXT" }, body = text(rand(0, 6)) }
  if rand(8) == 1 then content.body = rand(5) end
  if rand(10) == 1 then content.body = nil end
  if rand(2) == 1 then
    local m = {}
    if rand(2) == 1 then
      local ids = core.json.array {}
      for _ = 1, rand(0, 3) do ids[#ids + 1] = rand(4) == 1 and scalar() or pick(USERS) end
      m.user_ids = ids
    end
    if rand(2) == 1 then m.room = rand(3) == 1 and scalar() or true end
    content["m.mentions"] = m
  end
  if rand(3) == 1 then content["a.b"] = scalar() end
  if rand(3) == 1 then content["a\\b"] = scalar() end
  if rand(3) == 1 then content.n = scalar() end
  if rand(3) == 1 then content.f = scalar() end
  if rand(3) == 1 then content.z = null end
  if rand(3) == 1 then content.fl = 1.5 end
  if rand(3) == 1 then content.nested = { k = scalar(), ["d.e"] = { f = scalar() } } end
  if rand(3) == 1 then content["d.e"] = { f = scalar() } end
  if rand(4) == 1 then content[""] = scalar() end
  if rand(4) == 1 then content["\\"] = scalar() end
  if rand(4) == 1 then content["k\\"] = scalar() end
  if rand(3) == 1 then
    local a = core.json.array {}
    for _ = 1, rand(0, 4) do a[#a + 1] = rand(5) == 1 and { x = 1 } or scalar() end
    content.list, content.arr = a, a
  end
  if rand(4) == 1 then content["m.relates_to"] = { rel_type = pick { "m.replace", "m.thread", 3 } } end
  local ev = { type = pick { "m.room.message", "m.room.member", "m.room.encrypted", "m.reaction",
    "m.room.tombstone", "M.ROOM.MESSAGE", "m.call.invite" }, sender = pick(USERS),
    room_id = pick { "!r:example.org", "!other:example.org" }, content = content,
    unsigned = { age = rand(0, 100) } }
  if rand(3) == 1 then ev.state_key = rand(4) == 1 and "" or pick(USERS) end
  if ev.type == "m.room.member" then content.membership = pick { "invite", "join", "leave" } end
  return ev
end

local function random_condition()
  local r = rand(14)
  if r <= 5 then
    return { kind = "event_match", key = pick(KEYS), pattern = rand(12) == 1 and 5 or glob_text() }
  elseif r == 6 then
    return { kind = "event_property_is", key = pick(KEYS), value = scalar() }
  elseif r == 7 then
    return { kind = "event_property_contains", key = pick(KEYS),
      value = rand(2) == 1 and pick(USERS) or scalar() }
  elseif r == 8 then
    return { kind = "contains_display_name" }
  elseif r == 9 then
    return { kind = "room_member_count", is = pick { "2", "==2", "<3", ">1", "<=5", ">=10", "=2", "=<3", "x",
      "", 2, "99999999999999999999", "007", ">=0", "<0" } }
  elseif r == 10 then
    return { kind = "sender_notification_permission", key = pick { "room", "other", "" } }
  elseif r == 11 then
    return { kind = pick { "unknown", 7, "event_match" }, key = rand(2) == 1 and 3 or nil }
  elseif r == 12 then
    return "not a table"
  else
    return { kind = "event_match", key = pick(KEYS), pattern = pick(WORDS) }
  end
end

local function random_actions()
  local r = rand(7)
  if r == 1 then return core.json.array {} end
  if r == 2 then return "notify" end
  local a = core.json.array {}
  for _ = 1, rand(1, 3) do
    a[#a + 1] = pick { "notify", "dont_notify", { set_tweak = "highlight" },
      { set_tweak = "highlight", value = false }, { set_tweak = "highlight", value = true },
      { set_tweak = "sound", value = "default" }, 3 }
  end
  return a
end

local function random_rule(kind, i)
  local r = { rule_id = kind .. i, enabled = rand(6) ~= 1 and (rand(2) == 1 or nil), actions = random_actions() }
  if rand(10) == 1 then r.enabled = "yes" end
  if kind == "content" then
    r.pattern = rand(10) == 1 and nil or glob_text()
  elseif kind == "room" then
    r.rule_id = pick { "!r:example.org", "!R:EXAMPLE.ORG", "!*:example.org", "!other:example.org" }
  elseif kind == "sender" then
    r.rule_id = pick(USERS)
  else
    local conds = core.json.array {}
    for _ = 1, rand(0, 3) do conds[#conds + 1] = random_condition() end
    r.conditions = rand(15) == 1 and "x" or conds
  end
  return r
end

local function random_ruleset(user)
  local rs
  if rand(2) == 1 then rs = pushrules.defaults(user) else rs = {} end
  for _, kind in ipairs { "override", "content", "room", "sender", "underride" } do
    rs[kind] = rs[kind] or core.json.array {}
    for i = 1, rand(0, 3) do
      table.insert(rs[kind], rand(#rs[kind] + 1), random_rule(kind, i))
    end
  end
  if rand(30) == 1 then rs.room = "bad" end
  return rs
end

local function random_ctx()
  return {
    display_name = rand(8) == 1 and nil or rand(10) == 1 and 5 or pick {
      "Alice", "alice", "Alice Liddell", "a.b", "a*b", "a?b", "[x]", "(y)", "café", "😀", "", "@room", "x_y",
      "Al.ice*", "d[1]", "ab\0cd", ("z"):rep(1025), "bob", "hello, cake", "cake lie", "Cake!", "lie-bob",
      "CAFÉ au lait", "a1.", "x_y z", "bob\0", "café😀", "cake\tlie", " cake", "e\204\129" },
    member_count = rand(12) == 1 and "2" or rand(1, 12),
    sender_power = rand(6) == 1 and math.huge or rand(8) == 1 and nil or pick { 0, 50, 100, 49.5 },
    notifications = rand(4) == 1 and nil or { room = pick { 0, 50, 100, "50", 50.5 }, other = 10 },
  }
end

describe("loom.core.push agrees with loom.push.eval", function()
  it("on " .. CASES .. " random rule sets and events (seed " .. SEED .. ")", function()
    math.randomseed(SEED)
    rand = math.random
    local ev = core.push.new()
    for case = 1, CASES do
      -- dead rule sets take their interned conditions and rules with them
      if case % 250 == 0 then collectgarbage() end
      local user = pick(USERS)
      local rs = random_ruleset(user)
      local lua_rules, c_rules = eval.compile(rs), ev:compile(rs)
      for _ = 1, 3 do
        local event, ctx = random_event(), random_ctx()
        local la, lid = eval.run(lua_rules, event, ctx)
        local ca, cid = ev:run(c_rules, event, ctx)
        local where = ("seed %d case %d: event %s ctx %s"):format(SEED, case,
          core.json.encode(event, { floats = true }), tostring(ctx.display_name))
        assert(lid == cid, where .. (": rule %s (Lua) ~= %s (C)"):format(tostring(lid), tostring(cid)))
        if type(la) == "table" and #la == 0 then assert.same(la, ca, where) else assert(la == ca, where) end
      end
    end
  end)

  it("evaluates a whole room as the Lua evaluator does member by member (seed " .. SEED .. ")", function()
    math.randomseed(SEED + 1)
    rand = math.random
    local ev = core.push.new()
    for case = 1, math.max(1, CASES // 10) do
      local room = { rules = {}, names = {}, users = {}, member_count = rand(1, 10), sender_power = pick { 0, 100 },
        notifications = { room = 50 } }
      local lua = {}
      local n = rand(0, 12)
      for i = 1, n do
        local user = pick(USERS)
        local rs = random_ruleset(user)
        room.rules[i], room.users[i], lua[i] = ev:compile(rs), user .. i, eval.compile(rs)
        room.names[i] = random_ctx().display_name
      end
      local event = random_event()
      local expect = {}
      for i = 1, n do
        local actions = eval.run(lua[i], event, { display_name = room.names[i], member_count = room.member_count,
          sender_power = room.sender_power, notifications = room.notifications })
        local notify, highlight = eval.outcome(actions)
        if notify then expect[#expect + 1] = { room.users[i], highlight, actions } end
      end
      local rows = ev:evaluate(event, room)
      assert.equal(#expect, #rows, ("seed %d case %d"):format(SEED, case))
      for i, r in ipairs(expect) do
        assert.equal(r[1], rows[i][1], ("seed %d case %d row %d"):format(SEED, case, i))
        assert.equal(r[2], rows[i][2], ("seed %d case %d row %d"):format(SEED, case, i))
        assert.equal(r[3], rows[i][3], ("seed %d case %d row %d"):format(SEED, case, i))
      end
    end
  end)

  it("keeps the rows of one room right while its members, rule sets and size change (seed " .. SEED .. ")",
    function()
    math.randomseed(SEED + 2)
    rand = math.random
    local ev = core.push.new()
    local room = { rules = {}, names = {}, users = {}, member_count = 3, sender_power = 0 }
    local lua = {}
    local long = ("@" .. ("x"):rep(60) .. ":example.org") -- over Lua's interned length
    local function set(i)
      local user = pick(USERS)
      local rs = random_ruleset(user)
      if rand(2) == 1 then -- the predefined rules, the same rule hit with other actions
        rs = pushrules.defaults(user)
        for _, r in ipairs(rs.underride) do
          if r.rule_id == ".m.rule.message" then
            r.actions = { "notify", { set_tweak = "highlight", value = rand(2) == 1 },
              { set_tweak = "n", value = rand(9) } }
          end
        end
      end
      room.rules[i], lua[i] = ev:compile(rs), eval.compile(rs)
      -- a fresh (not interned) string of the same long user ID now and then
      room.users[i] = rand(3) == 1 and (long .. i):sub(1) or user .. i
      room.names[i] = random_ctx().display_name
    end
    local n = 0
    for case = 1, math.max(1, CASES // 10) do
      local grow = rand(0, 4) - 1
      for i = n + 1, n + math.max(0, grow) do set(i) end
      n = math.max(0, n + grow)
      for i = n + 1, #room.rules do room.rules[i], room.users[i], room.names[i], lua[i] = nil, nil, nil, nil end
      for _ = 1, rand(0, 3) do if n > 0 then set(rand(n)) end end
      for _ = 1, rand(0, 2) do
        if n > 0 then
          room.names[rand(n)] = rand(2) == 1 and random_ctx().display_name or pick { "cake", "Bob", "lie" }
        end
      end
      if case % 7 == 0 then collectgarbage() end
      room.count, room.skip = n, rand(0, n + 1)
      local event = rand(2) == 1 and random_event()
        or { type = "m.room.message", sender = "@x:example.org", content = { msgtype = "m.text",
          body = pick { "a cake", "bob's lie", pick(WORDS) .. pick(SEPS) .. pick(WORDS) } } }
      local expect = {}
      for i = 1, n do
        if i ~= room.skip then
          local actions = eval.run(lua[i], event, { display_name = room.names[i], member_count = room.member_count,
            sender_power = room.sender_power })
          local notify, highlight = eval.outcome(actions)
          if notify then expect[#expect + 1] = { room.users[i], highlight, actions } end
        end
      end
      local where = ("seed %d case %d"):format(SEED, case)
      for _ = 1, 2 do -- the second call gives the kept rows
        local rows = ev:evaluate(event, room)
        assert.equal(#expect, #rows, where)
        for i, r in ipairs(expect) do
          assert.equal(r[1], rows[i][1], where)
          assert.equal(r[2], rows[i][2], where)
          assert.same(r[3], rows[i][3], where)
        end
      end
    end
  end)

  it("shares a member's row between events, read-only, and never across users", function()
    local ev = core.push.new()
    local rules = ev:compile(pushrules.defaults("@alice:example.org"))
    local event = { type = "m.room.message", sender = "@x:example.org", content = { msgtype = "m.text", body = "hi" } }
    local room = { rules = { rules, rules }, names = {}, users = { "@alice:example.org", "@bob:example.org" },
      member_count = 3, sender_power = 0 }
    local a = ev:evaluate(event, room)
    assert.same({ "@alice:example.org", "@bob:example.org" }, { a[1][1], a[2][1] })
    local b = ev:evaluate(event, room)
    assert.same({ "@alice:example.org", "@bob:example.org" }, { b[1][1], b[2][1] })
    assert.equal(false, b[1][2])
    assert.same({ "notify" }, b[1][3])
    assert.has_error(function() b[1].event_id = "$x" end)
    room.users = { "@carol:example.org" }
    room.rules = { rules }
    assert.equal("@carol:example.org", ev:evaluate(event, room)[1][1])
  end)

  it("refuses rule sets of another evaluator and bad arguments with an error, not a crash", function()
    local a, b = core.push.new(), core.push.new()
    local rules = a:compile(pushrules.defaults("@alice:example.org"))
    assert.has_error(function() b:run(rules, {}, {}) end)
    assert.has_error(function() a:evaluate({}, { rules = { 5 }, users = { "x" } }) end)
    assert.is_nil((a:run(a:compile(nil), {}, {})))
    assert.equal(0, #a:compile("x"))
  end)
end)
