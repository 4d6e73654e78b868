-- loom.room.redact: the redaction algorithm for room versions 1..12.
local redact = require("loom.room.redact")
local json = require("loom.core").json

local function deepcopy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = deepcopy(x) end
  return setmetatable(out, getmetatable(v))
end

local ALL = {}
for v = 1, 12 do ALL[#ALL + 1] = tostring(v) end

-- A value for every key, so "kept" and "dropped" are both visible.
local function event_of(etype, content, extra)
  local e = {
    event_id = "$ev:x", type = etype, room_id = "!r:x", sender = "@a:x",
    state_key = "", content = content, hashes = { sha256 = "abc" },
    signatures = { x = { ["ed25519:1"] = "sig" } }, depth = 7,
    prev_events = setmetatable({ "$p:x" }, json.array_mt),
    auth_events = setmetatable({ "$a:x" }, json.array_mt),
    origin_server_ts = 1234, prev_state = setmetatable({}, json.array_mt),
    origin = "x", membership = "join", unsigned = { age_ts = 5 },
    age_ts = 5, redacts = "$target:x", other = "dropped",
  }
  for k, v in pairs(extra or {}) do e[k] = v end
  return e
end

-- { event type, content key, first version kept, last version kept }
local CONTENT_RULES = {
  { "m.room.member", "membership", 1, 12 },
  { "m.room.member", "join_authorised_via_users_server", 9, 12 },
  { "m.room.member", "displayname", nil },
  { "m.room.member", "reason", nil },
  { "m.room.create", "creator", 1, 12 },       -- v11 keeps all content
  { "m.room.create", "room_version", 11, 12 },
  { "m.room.create", "m.federate", 11, 12 },
  { "m.room.join_rules", "join_rule", 1, 12 },
  { "m.room.join_rules", "allow", 8, 12 },
  { "m.room.join_rules", "other", nil },
  { "m.room.power_levels", "ban", 1, 12 },
  { "m.room.power_levels", "events", 1, 12 },
  { "m.room.power_levels", "events_default", 1, 12 },
  { "m.room.power_levels", "kick", 1, 12 },
  { "m.room.power_levels", "redact", 1, 12 },
  { "m.room.power_levels", "state_default", 1, 12 },
  { "m.room.power_levels", "users", 1, 12 },
  { "m.room.power_levels", "users_default", 1, 12 },
  { "m.room.power_levels", "invite", 11, 12 },
  { "m.room.power_levels", "notifications", nil },
  { "m.room.history_visibility", "history_visibility", 1, 12 },
  { "m.room.history_visibility", "other", nil },
  { "m.room.aliases", "aliases", 1, 5 },
  { "m.room.redaction", "redacts", 11, 12 },
  { "m.room.redaction", "reason", nil },
  { "m.room.message", "body", nil },
  { "m.room.name", "name", nil },
}

local TOP_ALWAYS = {
  "event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
  "signatures", "depth", "prev_events", "auth_events", "origin_server_ts",
}
local TOP_BEFORE_V11 = { "prev_state", "origin", "membership" }
local TOP_NEVER = { "unsigned", "age_ts", "redacts", "other" }

describe("redact.supported", function()
  it("accepts the strings \"1\" to \"12\"", function()
    for _, v in ipairs(ALL) do assert.is_true(redact.supported(v), v) end
  end)
  it("rejects anything else", function()
    for _, v in ipairs({ "0", "13", "01", "1.0", "", "org.matrix.msc1767.10" }) do
      assert.is_false(redact.supported(v), v)
    end
    assert.is_false(redact.supported(11))
    assert.is_false(redact.supported(nil))
  end)
end)

describe("redact.event", function()
  it("returns nil, message, unsupported_room_version for unknown versions", function()
    local r, msg, code = redact.event(event_of("m.room.message", {}), "13")
    assert.is_nil(r)
    assert.is_string(msg)
    assert.equals("unsupported_room_version", code)
  end)

  it("raises for a non-table event", function()
    assert.has_error(function() redact.event("x", "11") end)
  end)

  it("keeps the top-level keys every version keeps", function()
    for _, v in ipairs(ALL) do
      local r = redact.event(event_of("m.room.message", { body = "hi" }), v)
      for _, k in ipairs(TOP_ALWAYS) do
        assert.is_not_nil(r[k], ("v%s keeps %s"):format(v, k))
      end
    end
  end)

  it("keeps prev_state, origin and membership before v11 only", function()
    for _, v in ipairs(ALL) do
      local r = redact.event(event_of("m.room.member", { membership = "join" }), v)
      for _, k in ipairs(TOP_BEFORE_V11) do
        if tonumber(v) < 11 then
          assert.is_not_nil(r[k], ("v%s keeps %s"):format(v, k))
        else
          assert.is_nil(r[k], ("v%s drops %s"):format(v, k))
        end
      end
    end
  end)

  it("drops unsigned, age_ts, top-level redacts and unknown keys in every version", function()
    for _, v in ipairs(ALL) do
      local r = redact.event(event_of("m.room.redaction", { redacts = "$t:x" }), v)
      for _, k in ipairs(TOP_NEVER) do
        assert.is_nil(r[k], ("v%s drops %s"):format(v, k))
      end
    end
  end)

  for _, rule in ipairs(CONTENT_RULES) do
    local etype, key, first, last = rule[1], rule[2], rule[3], rule[4]
    local what = first and ("in v%d..v%d"):format(first, last) or "never"
    it(("%s keeps content.%s %s"):format(etype, key, what), function()
      for _, v in ipairs(ALL) do
        local n = tonumber(v)
        local r = redact.event(event_of(etype, { [key] = { value = key } }), v)
        local label = ("%s v%s content.%s"):format(etype, v, key)
        if first and n >= first and n <= last then
          assert.same({ value = key }, r.content[key], label .. " kept")
        else
          assert.is_nil(r.content[key], label .. " dropped")
        end
      end
    end)
  end

  it("m.room.member keeps only third_party_invite.signed, from v11", function()
    local content = {
      membership = "invite",
      third_party_invite = { display_name = "Alice", signed = { mxid = "@a:x", token = "t" } },
    }
    for _, v in ipairs(ALL) do
      local r = redact.event(event_of("m.room.member", content), v)
      if tonumber(v) >= 11 then
        assert.same({ signed = { mxid = "@a:x", token = "t" } }, r.content.third_party_invite, v)
      else
        assert.is_nil(r.content.third_party_invite, v)
      end
      assert.equals("invite", r.content.membership)
    end
    -- no signed key: nothing to keep
    local r = redact.event(event_of("m.room.member", {
      membership = "invite", third_party_invite = { display_name = "Alice" } }), "11")
    assert.is_nil(r.content.third_party_invite)
  end)

  it("v11 keeps all m.room.create content, earlier versions only creator", function()
    local content = { creator = "@a:x", room_version = "11", predecessor = { room_id = "!o:x" } }
    local r10 = redact.event(event_of("m.room.create", content), "10")
    assert.same({ creator = "@a:x" }, r10.content)
    local r11 = redact.event(event_of("m.room.create", content), "11")
    assert.same(content, r11.content)
    assert.are_not.equal(content, r11.content)  -- a copy
  end)

  it("checks the v8, v9 and v11 boundaries side by side", function()
    local jr = { join_rule = "restricted", allow = setmetatable({}, json.array_mt), x = 1 }
    assert.same({ join_rule = "restricted" }, redact.event(event_of("m.room.join_rules", jr), "7").content)
    assert.same({ join_rule = "restricted", allow = {} },
      redact.event(event_of("m.room.join_rules", jr), "8").content)
    local m = { membership = "join", join_authorised_via_users_server = "@s:x", displayname = "A" }
    assert.same({ membership = "join" }, redact.event(event_of("m.room.member", m), "8").content)
    assert.same({ membership = "join", join_authorised_via_users_server = "@s:x" },
      redact.event(event_of("m.room.member", m), "9").content)
    local pl = { ban = 50, invite = 0, notifications = { room = 50 } }
    assert.same({ ban = 50 }, redact.event(event_of("m.room.power_levels", pl), "10").content)
    assert.same({ ban = 50, invite = 0 }, redact.event(event_of("m.room.power_levels", pl), "11").content)
  end)

  it("always has a content object, even when the input has none or a bad one", function()
    local e = event_of("m.room.message", nil)
    assert.same({}, redact.event(e, "10").content)
    e.content = "not an object"
    assert.same({}, redact.event(e, "10").content)
  end)

  it("never mutates the input and deep-copies what it keeps", function()
    local content = { membership = "join", displayname = "A" }
    local e = event_of("m.room.member", content)
    local snapshot = deepcopy(e)
    local r = redact.event(e, "10")
    assert.same(snapshot, e)
    r.signatures.x["ed25519:1"] = "changed"
    r.prev_events[1] = "changed"
    r.content.membership = "leave"
    assert.equals("sig", e.signatures.x["ed25519:1"])
    assert.equals("$p:x", e.prev_events[1])
    assert.equals("join", e.content.membership)
    assert.same(snapshot, e)
  end)

  it("keeps empty arrays as arrays and json.null as json.null", function()
    local e = event_of("m.room.power_levels", { users = {}, events = { x = json.null } })
    e.prev_events = setmetatable({}, json.array_mt)
    e.auth_events = setmetatable({}, json.array_mt)
    local r = redact.event(e, "11")
    assert.equals(json.array_mt, getmetatable(r.prev_events))
    assert.equals(json.array_mt, getmetatable(r.auth_events))
    assert.equals(json.null, r.content.events.x)
    assert.equals("[]", json.encode(r.prev_events))
  end)
end)
