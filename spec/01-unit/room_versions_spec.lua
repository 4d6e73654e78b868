-- Room versions 3 to 9 next to 10: event IDs, redaction and the authorization
-- rules that differ (Matrix spec, rooms/v3 .. v10 pages). The full rule-by-rule
-- suites of v10-v12 are auth_spec, redact_spec and room_event_spec; here each
-- difference is checked on both sides of the version that introduced it.
local auth = require("loom.room.auth")
local version = require("loom.room.version")
local crypto = require("loom.room.crypto")
local redact = require("loom.room.redact")
local event = require("loom.room.event")
local receive = require("loom.federation.receive")
local core = require("loom.core")
local json = core.json

local OLD = { "3", "4", "5", "6", "7", "8", "9" }
local ALL = { "3", "4", "5", "6", "7", "8", "9", "10", "11", "12" }
local ALICE, BOB, MOD, CAROL = "@alice:a.example", "@bob:b.example", "@mod:a.example", "@carol:c.example"
local NOW = 1700000000000

local function arr(t) return json.array(t or {}) end
local function n(vid) return tonumber(vid) end

local key = assert(crypto.signing_key(core.crypto.random_bytes(32), "ed25519:k1", "a.example"))

describe("room versions", function()
  it("3 to 12 are supported and listed for /capabilities; 1 and 2 are known but refused", function()
    local avail = version.available()
    for _, vid in ipairs(ALL) do
      assert.is_true(version.supported(vid), vid)
      assert.equals("stable", avail[vid])
      assert.equals(vid, assert(version.get(vid)).id)
    end
    for _, vid in ipairs({ "1", "2" }) do
      assert.is_false(version.supported(vid))
      assert.is_nil(avail[vid])
      local v, _, code = version.get(vid)
      assert.is_nil(v)
      assert.equals("unsupported_room_version", code)
      assert.is_true(version.known(vid))
    end
    assert.is_false(version.known("13"))
    local count = 0
    for _ in pairs(avail) do count = count + 1 end
    assert.equals(10, count)
  end)

  it("flags follow the version that introduced each change", function()
    for _, vid in ipairs(ALL) do
      local v = assert(version.get(vid))
      assert.equals(n(vid) == 3 and "v3" or "v4", v.event_id_format, vid)
      assert.equals(n(vid) >= 5, v.enforce_key_validity, vid)
      assert.equals(n(vid) <= 5, v.aliases_auth_rule, vid)
      assert.equals(n(vid) >= 6, v.strict_canonical_json, vid)
      assert.equals(n(vid) >= 6, v.notifications_in_power_levels, vid)
      assert.equals(n(vid) >= 7, v.knock_join_rule, vid)
      assert.equals(n(vid) >= 8, v.restricted_join_rule, vid)
      assert.equals(n(vid) >= 10, v.integer_power_levels, vid)
      assert.equals(n(vid) >= 10, v.knock_restricted_join_rule, vid)
      assert.equals(n(vid) <= 10, v.creator_in_content, vid)
      assert.equals(n(vid) == 12 and "v2.1" or "v2", v.state_res, vid)
    end
  end)
end)

-- ---- event IDs -----------------------------------------------------------------

describe("room versions: event IDs", function()
  it("the spec's v3 and v4 vectors", function()
    local f = assert(io.open("../shared/vectors/spec.json", "rb"))
    local V = assert(json.decode(f:read("a")))
    f:close()
    for _, case in ipairs(V.event_ids) do
      local v = assert(version.get(case.room_version))
      assert.equals(case.expected_event_id, event.compute_id(v, case.event))
    end
    -- every later version redacts this create event the same way (creator kept,
    -- before v11), so v5 .. v10 give the v4 ID
    local v4 = V.event_ids[2]
    for _, vid in ipairs({ "5", "6", "7", "8", "9", "10" }) do
      assert.equals(v4.expected_event_id, event.compute_id(assert(version.get(vid)), v4.event), vid)
    end
  end)

  it("v3 uses the standard base64 alphabet, v4 and later the URL-safe one", function()
    local plus_or_slash = 0
    for i = 1, 40 do
      local ev = { type = "m.room.message", room_id = "!r:a.example", sender = ALICE, content = { body = "m" .. i },
        prev_events = arr({ "$p" }), auth_events = arr(), depth = i, origin_server_ts = NOW + i,
        hashes = { sha256 = "x" }, signatures = {} }
      local id3 = assert(event.compute_id(assert(version.get("3")), ev))
      assert.matches("^%$[A-Za-z0-9+/]+$", id3)
      assert.equals(44, #id3)                -- "$" + 43 unpadded characters
      if id3:find("[+/]") then plus_or_slash = plus_or_slash + 1 end
      local urlsafe = (id3:gsub("+", "-"):gsub("/", "_"))
      for _, vid in ipairs({ "4", "5", "6", "7", "8", "9", "10" }) do
        local id = assert(event.compute_id(assert(version.get(vid)), ev))
        assert.equals(urlsafe, id, vid)
        assert.matches("^%$[A-Za-z0-9_-]+$", id)
      end
    end
    assert.is_true(plus_or_slash > 0)
  end)

  it("an event built in each version carries the version's ID and signature", function()
    for _, vid in ipairs(OLD) do
      local v = assert(version.get(vid))
      local room = { forward_extremities = function() return {} end }
      local ev = assert(event.build(v, { type = "m.room.create", state_key = "", sender = ALICE,
        room_id = "!r:a.example", content = {} }, room, key, { now = NOW }))
      assert.equals(vid, ev.content.room_version)
      assert.equals(ALICE, ev.content.creator)
      assert.equals(ev.event_id, crypto.event_id(event.pdu(ev), vid))
      local ok = event.check(v, json.decode(json.encode(event.pdu(ev))), { keys = function(s, k)
        if s == "a.example" and k == key.key_id then return key.public_key end
      end })
      assert.is_table(ok)
      assert.equals(ev.event_id, ok.event_id)
    end
  end)
end)

-- ---- redaction -------------------------------------------------------------------

describe("room versions: redaction", function()
  local function red(vid, ev) return assert(redact.event(ev, vid)).content end

  it("m.room.aliases keeps aliases up to v5 only", function()
    local ev = { type = "m.room.aliases", state_key = "a.example", content = { aliases = { "#a:a.example" } } }
    for _, vid in ipairs(ALL) do
      assert.equals(n(vid) <= 5, red(vid, ev).aliases ~= nil, vid)
    end
  end)

  it("join_rules keep allow from v8", function()
    local ev = { type = "m.room.join_rules", state_key = "", content = { join_rule = "restricted",
      allow = { { type = "m.room_membership", room_id = "!x:a" } }, other = 1 } }
    for _, vid in ipairs(ALL) do
      local c = red(vid, ev)
      assert.equals("restricted", c.join_rule)
      assert.equals(n(vid) >= 8, c.allow ~= nil, vid)
      assert.is_nil(c.other)
    end
  end)

  it("members keep join_authorised_via_users_server from v9", function()
    local ev = { type = "m.room.member", state_key = BOB, content = { membership = "join",
      join_authorised_via_users_server = ALICE, displayname = "b" } }
    for _, vid in ipairs(ALL) do
      local c = red(vid, ev)
      assert.equals("join", c.membership)
      assert.equals(n(vid) >= 9, c.join_authorised_via_users_server == ALICE, vid)
      assert.is_nil(c.displayname)
    end
  end)

  it("v3-v10 keep origin, membership, prev_state and the whole power levels but invite", function()
    local ev = { type = "m.room.power_levels", state_key = "", origin = "a.example", membership = "join",
      prev_state = arr(), content = { ban = 50, invite = 0, notifications = { room = 50 }, users = { [ALICE] = 100 } } }
    for _, vid in ipairs(OLD) do
      local r = assert(redact.event(ev, vid))
      assert.equals("a.example", r.origin)
      assert.equals("join", r.membership)
      assert.is_table(r.prev_state)
      assert.equals(50, r.content.ban)
      assert.is_nil(r.content.invite)
      assert.is_nil(r.content.notifications)
    end
  end)

  it("m.room.create keeps creator only, before v11", function()
    local ev = { type = "m.room.create", state_key = "", content = { creator = ALICE, room_version = "5" } }
    for _, vid in ipairs(OLD) do
      local c = red(vid, ev)
      assert.equals(ALICE, c.creator)
      assert.is_nil(c.room_version)
    end
  end)
end)

-- ---- authorization ---------------------------------------------------------------

local counter = 0

-- A room of version vid: create, alice (creator, 100) joined, mod (50) and bob
-- (0) joined, power levels `pl` (strings allowed), join rule `jr`.
local function room(vid, pl, jr)
  local v = assert(version.get(vid))
  local map = {}
  local function put(ev) map[ev.type .. "\0" .. ev.state_key] = ev return ev end
  local r = { v = v, map = map }
  function r.ev(fields)
    counter = counter + 1
    local ev = { event_id = "$e" .. counter, room_id = "!r:a.example", sender = BOB, type = "m.room.message",
      content = {}, prev_events = arr({ "$prev" }), auth_events = arr(), depth = 5, origin_server_ts = counter,
      hashes = { sha256 = "h" }, signatures = {} }
    for k, x in pairs(fields) do ev[k] = x end
    local d = ev.sender:match(":(.+)$")
    ev.signatures[d] = { ["ed25519:1"] = "sig" }
    return ev
  end
  r.put = put
  function r.check(ev) return auth.check(v, ev, function(t, sk) return map[t .. "\0" .. sk] end) end
  local create = r.ev({ type = "m.room.create", state_key = "", sender = ALICE, prev_events = arr(),
    content = { room_version = vid } })
  if v.creator_in_content then create.content.creator = ALICE end
  if v.room_id_is_create_hash then create.room_id = nil end
  put(create)
  for _, u in ipairs({ ALICE, MOD, BOB }) do
    put(r.ev({ type = "m.room.member", state_key = u, sender = u, content = { membership = "join" } }))
  end
  put(r.ev({ type = "m.room.power_levels", state_key = "", sender = ALICE, content = pl or {
    users = { [ALICE] = 100, [MOD] = 50 }, events = {}, state_default = 50, ban = 50, kick = 50 } }))
  put(r.ev({ type = "m.room.join_rules", state_key = "", sender = ALICE, content = { join_rule = jr or "public" } }))
  return r
end

local function expect(want, ok, reason, rule, what)
  if want == "allow" then
    assert.is_true(ok, ("%s: expected allow, got %s (%s)"):format(what, tostring(rule), tostring(reason)))
  else
    assert.is_nil(ok, what .. ": expected " .. want)
    assert.equals(want, rule, what .. ": " .. tostring(reason))
  end
end

-- { name, expectations by version "3" .. "10" (one string per version), build(vid) -> room, ev }
local CASES = {
  { "m.room.aliases by the state_key's server, not joined",
    { "allow", "allow", "allow", "5", "5", "5", "5", "5" }, function(vid)
    local r = room(vid)
    return r, r.ev({ type = "m.room.aliases", state_key = "c.example", sender = CAROL,
      content = { aliases = arr({ "#x:c.example" }) } })
  end },
  { "m.room.aliases for another server", { "4.2", "4.2", "4.2", "7", "7", "7", "7", "7" }, function(vid)
    local r = room(vid)
    return r, r.ev({ type = "m.room.aliases", state_key = "a.example", sender = BOB,
      content = { aliases = arr() } })
  end },
  { "m.room.aliases without a state_key", { "4.1", "4.1", "4.1", "allow", "allow", "allow", "allow", "allow" },
    function(vid)
    local r = room(vid)
    return r, r.ev({ type = "m.room.aliases", sender = MOD, content = { aliases = arr() } })
  end },
  { "a string power level reads as an integer", { "8", "8", "8", "7", "7", "7", "7", "allow" }, function(vid)
    local r = room(vid, { users = { [ALICE] = "100", [MOD] = " +050 " }, events = { ["m.x"] = "051" } })
    return r, r.ev({ type = "m.x", sender = MOD })
  end },
  { "string levels let a string-50 mod send a 050 event", { "allow", "allow", "allow", "allow", "allow",
    "allow", "allow", "7" }, function(vid)
    local r = room(vid, { users = { [ALICE] = "100", [MOD] = "50" }, events = { ["m.x"] = 50 } })
    return r, r.ev({ type = "m.x", sender = MOD })
  end },
  { "a string that is not an integer counts as absent", { "allow", "allow", "allow", "allow", "allow",
    "allow", "allow", "allow" }, function(vid)
    local r = room(vid, { users = { [ALICE] = 100 }, events = { ["m.x"] = "5.0" }, users_default = "x" })
    return r, r.ev({ type = "m.x", sender = BOB })
  end },
  { "power_levels with string values", { "allow", "allow", "allow", "allow", "allow", "allow", "allow", "9.1" },
    function(vid)
    local r = room(vid)
    return r, r.ev({ type = "m.room.power_levels", state_key = "", sender = ALICE,
      content = { users = { [ALICE] = "100", [MOD] = "50" }, ban = "50", events = { ["m.x"] = "10" } } })
  end },
  { "power_levels: users with a non-integer string", { "10.1", "10.1", "10.1", "9.1", "9.1", "9.1", "9.1", "9.3" },
    function(vid)
    local r = room(vid)
    return r, r.ev({ type = "m.room.power_levels", state_key = "", sender = ALICE,
      content = { users = { [ALICE] = "100", [MOD] = "fifty" } } })
  end },
  { "power_levels: a string level raised above the sender", { "10.3.2", "10.3.2", "10.3.2", "9.3.2", "9.3.2",
    "9.3.2", "9.3.2", "9.5.2" }, function(vid)
    local r = room(vid)
    local ban = n(vid) >= 10 and 60 or "60"
    return r, r.ev({ type = "m.room.power_levels", state_key = "", sender = MOD,
      content = { users = { [ALICE] = 100, [MOD] = 50 }, events = {}, state_default = 50, ban = ban, kick = 50 } })
  end },
  { "power_levels: rewriting a level as the same string is no change", { "allow", "allow", "allow", "allow",
    "allow", "allow", "allow", "9.1" }, function(vid)
    local r = room(vid, { users = { [ALICE] = 100, [MOD] = 50 }, events = {}, state_default = 50, ban = 75 })
    return r, r.ev({ type = "m.room.power_levels", state_key = "", sender = MOD,
      content = { users = { [ALICE] = "100", [MOD] = "50" }, events = {}, state_default = "50", ban = " 75" } })
  end },
  { "power_levels: notifications above the sender", { "allow", "allow", "allow", "9.5", "9.5", "9.5", "9.5",
    "9.7" }, function(vid)
    local r = room(vid)
    return r, r.ev({ type = "m.room.power_levels", state_key = "", sender = MOD,
      content = { users = { [ALICE] = 100, [MOD] = 50 }, events = {}, state_default = 50, ban = 50, kick = 50,
        notifications = { room = 99 } } })
  end },
  { "power_levels: removing users above the sender", { "10.6", "10.6", "10.6", "9.6", "9.6", "9.6", "9.6", "9.8" },
    function(vid)
    local r = room(vid)
    return r, r.ev({ type = "m.room.power_levels", state_key = "", sender = MOD,
      content = { users = { [MOD] = 50 }, events = {}, state_default = 50, ban = 50, kick = 50 } })
  end },
  { "knock", { "5.2.6", "5.2.6", "5.2.6", "4.6", "allow", "allow", "allow", "allow" }, function(vid)
    -- before v7 "knock" is an unknown membership (v6: 4.6), and in v3-v5 a join
    -- under the unknown "knock" join rule is refused (5.2.6)
    local r = room(vid, nil, "knock")
    local m = n(vid) <= 5 and "join" or "knock"
    return r, r.ev({ type = "m.room.member", state_key = CAROL, sender = CAROL, content = { membership = m } })
  end },
  { "leaving from knock", { "5.4.1", "5.4.1", "5.4.1", "4.4.1", "allow", "allow", "allow", "allow" },
    function(vid)
    local r = room(vid, nil, "knock")
    r.put(r.ev({ type = "m.room.member", state_key = CAROL, sender = CAROL, content = { membership = "knock" } }))
    return r, r.ev({ type = "m.room.member", state_key = CAROL, sender = CAROL, content = { membership = "leave" } })
  end },
  { "a restricted join authorised by a joined user", { "5.2.6", "5.2.6", "5.2.6", "4.2.6", "4.2.6", "allow",
    "allow", "allow" }, function(vid)
    local r = room(vid, nil, "restricted")
    local ev = r.ev({ type = "m.room.member", state_key = CAROL, sender = CAROL,
      content = { membership = "join", join_authorised_via_users_server = MOD } })
    ev.signatures["a.example"] = { ["ed25519:1"] = "sig" }
    return r, ev
  end },
  { "knock_restricted join", { "5.2.6", "5.2.6", "5.2.6", "4.2.6", "4.2.6", "4.3.7", "4.3.7", "allow" },
    function(vid)
    local r = room(vid, nil, "knock_restricted")
    local ev = r.ev({ type = "m.room.member", state_key = CAROL, sender = CAROL,
      content = { membership = "join", join_authorised_via_users_server = MOD } })
    ev.signatures["a.example"] = { ["ed25519:1"] = "sig" }
    return r, ev
  end },
  { "join_authorised_via_users_server unsigned by its server", { "allow", "allow", "allow", "allow", "allow",
    "4.2.1", "4.2.1", "4.2.1" }, function(vid)
    local r = room(vid)
    return r, r.ev({ type = "m.room.member", state_key = CAROL, sender = CAROL,
      content = { membership = "join", join_authorised_via_users_server = MOD } })
  end },
  { "unknown membership", { "5.6", "5.6", "5.6", "4.6", "4.7", "4.8", "4.8", "4.8" }, function(vid)
    local r = room(vid)
    return r, r.ev({ type = "m.room.member", state_key = CAROL, sender = CAROL, content = { membership = "x" } })
  end },
  { "invite below the invite level", { "5.3.5", "5.3.5", "5.3.5", "4.3.5", "4.3.5", "4.4.5", "4.4.5", "4.4.5" },
    function(vid)
    local r = room(vid, { users = { [ALICE] = 100 }, invite = "10" })
    if n(vid) >= 10 then r.map["m.room.power_levels\0"].content.invite = 10 end
    return r, r.ev({ type = "m.room.member", state_key = CAROL, sender = BOB, content = { membership = "invite" } })
  end },
  { "not joined", { "6", "6", "6", "5", "5", "5", "5", "5" }, function(vid)
    local r = room(vid)
    return r, r.ev({ sender = CAROL })
  end },
  { "state_key of another user", { "9", "9", "9", "8", "8", "8", "8", "8" }, function(vid)
    local r = room(vid)
    return r, r.ev({ type = "m.x", state_key = ALICE, sender = MOD, content = {} })
  end },
}

for _, vid in ipairs({ "3", "4", "5", "6", "7", "8", "9", "10" }) do
  describe("room versions: auth rules of v" .. vid, function()
    for _, case in ipairs(CASES) do
      local want = case[2][n(vid) - 2]
      it(case[1] .. " -> " .. want, function()
        local r, ev = case[3](vid)
        local ok, reason, rule = r.check(ev)
        expect(want, ok, reason, rule, case[1])
      end)
    end
  end)
end

describe("room versions: power level strings", function()
  it("level_of reads the spec's string forms before v10 only", function()
    local v9, v10 = assert(version.get("9")), assert(version.get("10"))
    local cases = { { "100", 100 }, { "000100", 100 }, { "+100", 100 }, { "-100", -100 }, { " 100 ", 100 },
      { " 00100 ", 100 }, { " +100 ", 100 }, { " -100 ", -100 }, { "1.0", nil }, { "1e2", nil }, { "", nil },
      { "+-1", nil }, { "0x10", nil }, { "99999999999999999999", nil }, { 7, 7 }, { 7.5, nil }, { true, nil } }
    for _, c in ipairs(cases) do
      assert.equals(c[2], auth.level_of(v9, c[1]), tostring(c[1]))
      assert.equals(math.type(c[1]) == "integer" and c[1] or nil, auth.level_of(v10, c[1]), tostring(c[1]))
    end
  end)
end)

-- ---- signing key validity (v5) ---------------------------------------------------

describe("room versions: signing key validity", function()
  it("from v5 keys are fetched valid at origin_server_ts; before, any key counts", function()
    for _, vid in ipairs({ "3", "4", "5", "9" }) do
      local asked = {}
      local hs = { keyring = { verify_key = function(_, server, key_id, ts)
        asked[#asked + 1] = { server, key_id, ts }
        return "pk"
      end } }
      local keys = receive.prefetch_keys(hs, assert(version.get(vid)), {
        { sender = BOB, origin_server_ts = 1234, signatures = { ["b.example"] = { ["ed25519:x"] = "s" } } } })
      assert.equals("pk", keys("b.example", "ed25519:x"))
      assert.equals(1, #asked)
      assert.equals(n(vid) >= 5 and 1234 or 0, asked[1][3], vid)
    end
  end)
end)
