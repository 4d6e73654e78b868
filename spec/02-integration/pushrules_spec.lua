-- Push rules over a real server (Client-Server API, Push Notifications
-- module, "Push Rules: API"): adding, placing (before/after), reading,
-- enabling, changing actions and deleting rules; the predefined rules'
-- sub-resources; the errors; and the m.push_rules account data in /sync.
local tesths = require "support.hs"
local array = require("loom.core").json.array

local enc = tesths.enc
local V3 = "/_matrix/client/v3"
local RULES = V3 .. "/pushrules/global/"

describe("push rules", function()
  local t
  setup(function() t = tesths.start() end)
  teardown(function() t:stop() end)

  local function fresh() return t:fresh("pr") end
  local function path(kind, id, attr) return RULES .. kind .. "/" .. enc(id) .. (attr and "/" .. attr or "") end
  local function ids(list)
    local out = {}
    for _, r in ipairs(list) do out[#out + 1] = r.rule_id end
    return out
  end
  local function put(u, kind, id, body, query)
    return t:request("PUT", path(kind, id) .. (query or ""), body, u.access_token)
  end
  local function err(r, status, errcode)
    assert.equal(status, r.status, r.body)
    assert.equal(errcode, r.json.errcode)
  end

  it("adds rules of every kind and serves them beside the predefined ones", function()
    local u = fresh()
    local cond = { { kind = "event_match", key = "content.body", pattern = "cake*" } }
    assert.equal(200, put(u, "override", "cake", { conditions = cond, actions = { "notify" } }).status)
    assert.equal(200, put(u, "underride", "u1", { conditions = array(), actions = { "dont_notify" } }).status)
    assert.equal(200, put(u, "content", "lie", { pattern = "lie", actions = { "notify",
      { set_tweak = "sound", value = "default" } } }).status)
    assert.equal(200, put(u, "room", "!abc:example.org", { actions = { "dont_notify" } }).status)
    assert.equal(200, put(u, "sender", "@bob:example.org", { actions = array() }).status)
    local g = t:request("GET", V3 .. "/pushrules/", nil, u.access_token).json.global
    -- master stays first; the user's override rules come before the other predefined ones
    assert.same({ ".m.rule.master", "cake" }, { g.override[1].rule_id, g.override[2].rule_id })
    assert.equal(".m.rule.suppress_notices", g.override[3].rule_id)
    assert.same({ "u1", ".m.rule.call" }, { g.underride[1].rule_id, g.underride[2].rule_id })
    assert.same({ "lie", ".m.rule.contains_user_name" }, ids(g.content))
    assert.same({ "!abc:example.org" }, ids(g.room))
    assert.same({ "@bob:example.org" }, ids(g.sender))
    local r = t:request("GET", path("override", "cake"), nil, u.access_token)
    assert.equal(200, r.status)
    assert.same({ rule_id = "cake", default = false, enabled = true, conditions = cond, actions = { "notify" } },
      r.json)
    r = t:request("GET", path("content", "lie"), nil, u.access_token)
    assert.same({ rule_id = "lie", default = false, enabled = true, pattern = "lie",
      actions = { "notify", { set_tweak = "sound", value = "default" } } }, r.json)
    r = t:request("GET", path("sender", "@bob:example.org"), nil, u.access_token)
    assert.same({ rule_id = "@bob:example.org", default = false, enabled = true, actions = array() }, r.json)
    assert.matches('"actions":%[%]', r.body)
    -- another user does not see them
    local other = fresh()
    err(t:request("GET", path("override", "cake"), nil, other.access_token), 404, "M_NOT_FOUND")
  end)

  it("places rules with before and after, and replaces a rule in place of its old one", function()
    local u = fresh()
    local function add(id, q)
      assert.equal(200, put(u, "content", id, { pattern = id, actions = array() }, q).status)
    end
    add("a")
    add("b")                 -- no before/after: highest priority
    add("c", "?after=b")
    add("d", "?before=a")
    add("e", "?before=b&after=a") -- before wins
    local function order()
      local l = ids(t:request("GET", RULES .. "content/", nil, u.access_token).json)
      table.remove(l) -- .m.rule.contains_user_name
      return l
    end
    assert.same({ "e", "b", "c", "d", "a" }, order())
    add("c", "?before=e")
    assert.same({ "c", "e", "b", "d", "a" }, order())
    err(put(u, "content", "x", { pattern = "x", actions = array() }, "?before=nope"), 404, "M_NOT_FOUND")
    err(put(u, "content", "x", { pattern = "x", actions = array() }, "?after=.m.rule.contains_user_name"),
      404, "M_NOT_FOUND")
    assert.same({ "c", "e", "b", "d", "a" }, order())
  end)

  it("reads and changes enabled and actions, of the user's rules and of the predefined ones", function()
    local u = fresh()
    assert.equal(200, put(u, "room", "!r:x", { actions = { "notify" } }).status)
    local function get(kind, id, attr) return t:request("GET", path(kind, id, attr), nil, u.access_token) end
    local function set(kind, id, attr, body) return t:request("PUT", path(kind, id, attr), body, u.access_token) end
    assert.same({ enabled = true }, get("room", "!r:x", "enabled").json)
    assert.equal(200, set("room", "!r:x", "enabled", { enabled = false }).status)
    assert.same({ enabled = false }, get("room", "!r:x", "enabled").json)
    assert.equal(200, set("room", "!r:x", "actions", { actions = { "dont_notify" } }).status)
    assert.same({ actions = { "dont_notify" } }, get("room", "!r:x", "actions").json)
    -- predefined rules
    assert.same({ enabled = false }, get("override", ".m.rule.master", "enabled").json)
    assert.equal(200, set("override", ".m.rule.master", "enabled", { enabled = true }).status)
    assert.same({ enabled = true }, get("override", ".m.rule.master", "enabled").json)
    assert.equal(200, set("underride", ".m.rule.message", "actions", { actions = array() }).status)
    local m = get("underride", ".m.rule.message").json
    assert.same({}, m.actions)
    assert.is_true(m.enabled)
    assert.is_true(m.default)
    assert.equal(200, set("underride", ".m.rule.message", "enabled", { enabled = false }).status)
    m = get("underride", ".m.rule.message").json
    assert.same({}, m.actions) -- the actions change is kept
    assert.is_false(m.enabled)
    -- a change to a predefined rule is the user's own
    assert.same({ enabled = false },
      t:request("GET", path("override", ".m.rule.master", "enabled"), nil, fresh().access_token).json)
    err(set("override", ".m.rule.nope", "enabled", { enabled = true }), 404, "M_NOT_FOUND")
    err(set("room", "!nope:x", "actions", { actions = array() }), 404, "M_NOT_FOUND")
    err(get("room", "!nope:x", "actions"), 404, "M_NOT_FOUND")
    err(set("room", "!r:x", "enabled", { enabled = "yes" }), 400, "M_INVALID_PARAM")
    err(set("room", "!r:x", "enabled", {}), 400, "M_INVALID_PARAM")
    err(set("room", "!r:x", "actions", { actions = { "explode" } }), 400, "M_INVALID_PARAM")
    err(set("room", "!r:x", "actions", { actions = "notify" }), 400, "M_INVALID_PARAM")
  end)

  it("deletes the user's rules; predefined rules cannot be created or deleted", function()
    local u = fresh()
    assert.equal(200, put(u, "sender", "@s:x", { actions = array() }).status)
    assert.equal(200, t:request("DELETE", path("sender", "@s:x"), nil, u.access_token).status)
    err(t:request("GET", path("sender", "@s:x"), nil, u.access_token), 404, "M_NOT_FOUND")
    err(t:request("DELETE", path("sender", "@s:x"), nil, u.access_token), 404, "M_NOT_FOUND")
    err(t:request("DELETE", path("override", ".m.rule.master"), nil, u.access_token), 404, "M_NOT_FOUND")
    assert.equal(200, t:request("GET", path("override", ".m.rule.master"), nil, u.access_token).status)
    err(put(u, "override", ".m.rule.mine", { conditions = array(), actions = array() }), 400, "M_INVALID_PARAM")
    err(put(u, "override", ".m.rule.master", { conditions = array(), actions = array() }), 400, "M_INVALID_PARAM")
  end)

  it("refuses bad kinds, bodies, actions, conditions and patterns", function()
    local u = fresh()
    err(put(u, "nope", "x", { actions = array() }), 400, "M_INVALID_PARAM")
    err(t:request("GET", path("nope", "x"), nil, u.access_token), 400, "M_INVALID_PARAM")
    err(t:request("DELETE", path("nope", "x"), nil, u.access_token), 400, "M_INVALID_PARAM")
    err(put(u, "room", "!r:x", {}), 400, "M_INVALID_PARAM")
    err(put(u, "room", "!r:x", { actions = { 1 } }), 400, "M_INVALID_PARAM")
    err(put(u, "room", "!r:x", { actions = { { value = "x" } } }), 400, "M_INVALID_PARAM")
    err(put(u, "override", "o", { actions = array() }), 400, "M_INVALID_PARAM")
    err(put(u, "override", "o", { conditions = { 1 }, actions = array() }), 400, "M_INVALID_PARAM")
    err(put(u, "override", "o", { conditions = { { key = "type" } }, actions = array() }), 400, "M_INVALID_PARAM")
    err(put(u, "override", "o", { conditions = { { kind = "event_match", key = "type", pattern = 5 } },
      actions = array() }), 400, "M_INVALID_PARAM")
    err(put(u, "content", "c", { actions = array() }), 400, "M_INVALID_PARAM")
    err(put(u, "content", "c", { pattern = ("?"):rep(1000), actions = array() }), 400, "M_INVALID_PARAM")
    err(put(u, "content", "c", { pattern = ("x"):rep(2000), actions = array() }), 400, "M_INVALID_PARAM")
    err(put(u, "room", "a\\b", { actions = array() }), 400, "M_INVALID_PARAM")
    err(put(u, "room", ("r"):rep(256), { actions = array() }), 400, "M_INVALID_PARAM")
    err(put(u, "room", "!r:x", "[1]"), 400, "M_BAD_JSON")
    err(put(u, "room", "!r:x", "{nope"), 400, "M_NOT_JSON")
    assert.equal(401, t:request("PUT", path("room", "!r:x"), { actions = array() }).status)
    -- nothing was stored
    local g = t:request("GET", V3 .. "/pushrules/", nil, u.access_token).json.global
    assert.same({}, g.room)
    assert.same({ ".m.rule.contains_user_name" }, ids(g.content))
  end)

  it("delivers the rule set as m.push_rules account data in /sync", function()
    local u = fresh()
    local r = t:request("GET", V3 .. "/sync", nil, u.access_token)
    local since = r.json.next_batch
    assert.equal(200, put(u, "content", "kw", { pattern = "kw", actions = { "notify" } }).status)
    r = t:request("GET", V3 .. "/sync?timeout=0&since=" .. enc(since), nil, u.access_token)
    local ev = tesths.find_type(r.json.account_data.events, "m.push_rules")
    assert.is_not_nil(ev)
    assert.same({ "kw", ".m.rule.contains_user_name" }, ids(ev.content.global.content))
    assert.equal(".m.rule.master", ev.content.global.override[1].rule_id)
    since = r.json.next_batch
    assert.equal(200, t:request("DELETE", path("content", "kw"), nil, u.access_token).status)
    r = t:request("GET", V3 .. "/sync?timeout=0&since=" .. enc(since), nil, u.access_token)
    ev = tesths.find_type(r.json.account_data.events, "m.push_rules")
    assert.same({ ".m.rule.contains_user_name" }, ids(ev.content.global.content))
    -- and through the account-data API
    r = t:request("GET", V3 .. "/user/" .. enc(u.user_id) .. "/account_data/m.push_rules", nil, u.access_token)
    assert.equal(200, r.status)
    assert.same(ev.content, r.json)
  end)
end)
