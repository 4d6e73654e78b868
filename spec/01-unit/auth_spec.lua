-- loom.room.auth: the authorization rules of room versions 3 to 12.
-- Every rejecting rule is reached by at least one event (checked at the end
-- against the full list per version), and every "allow" branch by one.
-- Cases name their outcome in v10, v11 and v12; versions 3 to 9 follow v10
-- (renumbered as their spec pages number the rules) except where OLDER says.
local auth = require("loom.room.auth")
local version = require("loom.room.version")
local crypto = require("loom.room.crypto")
local core = require("loom.core")
local json = core.json

local VERSIONS = { "3", "4", "5", "6", "7", "8", "9", "10", "11", "12" }
local IDX = { ["10"] = 1, ["11"] = 2, ["12"] = 3 }

local ALICE = "@alice:a.example"   -- the creator
local MOD = "@mod:a.example"       -- power 50
local ADMIN = "@admin:a.example"   -- power 75
local ADMIN2 = "@admin2:a.example" -- power 75
local BOB = "@bob:b.example"       -- power 0, joined
local CAROL = "@carol:c.example"   -- not in the room
local EVE = "@eve:e.example"       -- banned
local DAVE = "@dave:d.example"     -- v12: an additional creator (joined)

local function arr(t) return json.array(t or {}) end

local function domain(id) return id:match("^.[^:]*:(.+)$") end

local function merge(a, b)
  local out = {}
  for k, v in pairs(a or {}) do out[k] = v end
  for k, v in pairs(b or {}) do out[k] = v end
  return out
end

-- ---- a room fixture: plain tables ----------------------------------------------

local Room = {}
Room.__index = Room

local counter = 0

function Room:put(ev)
  self.map[ev.type .. "\0" .. ev.state_key] = ev
  return ev
end

function Room:get(t, sk) return self.map[t .. "\0" .. (sk or "")] end

function Room:remove(t, sk) self.map[t .. "\0" .. (sk or "")] = nil end

function Room:state()
  return function(t, sk) return self.map[t .. "\0" .. sk] end
end

-- An event in this room; `fields` override the defaults.
function Room:ev(fields)
  counter = counter + 1
  local sender = fields.sender or BOB
  local ev = {
    event_id = "$e" .. counter, room_id = self.room_id, sender = sender, type = "m.room.message",
    content = {}, prev_events = arr({ "$prev" }), auth_events = arr(), depth = 5,
    origin_server_ts = 1000 + counter, hashes = { sha256 = "h" },
    signatures = { [domain(sender)] = { ["ed25519:1"] = "sig" } },
  }
  for k, v in pairs(fields) do ev[k] = v end
  return ev
end

function Room:member_ev(sender, target, membership, content)
  return self:ev({ type = "m.room.member", sender = sender, state_key = target,
    content = merge({ membership = membership }, content) })
end

function Room:member(user, membership, sender)
  return self:put(self:member_ev(sender or user, user, membership))
end

function Room:pl(content)
  return self:put(self:ev({ type = "m.room.power_levels", state_key = "", sender = ALICE, content = content }))
end

function Room:jr(rule)
  return self:put(self:ev({ type = "m.room.join_rules", state_key = "", sender = ALICE,
    content = { join_rule = rule } }))
end

function Room:check(ev, opts)
  return auth.check(self.v, ev, self:state(), opts)
end

-- A room holding only its m.room.create event.
local function fresh(vid, create_content)
  local v = assert(version.get(vid))
  local r = setmetatable({ v = v, map = {} }, Room)
  local create = {
    type = "m.room.create", state_key = "", sender = ALICE, content = { room_version = vid },
    prev_events = arr(), auth_events = arr(), depth = 1, origin_server_ts = 1,
    hashes = { sha256 = "h" }, signatures = { ["a.example"] = { ["ed25519:1"] = "sig" } },
  }
  if v.creator_in_content then create.content.creator = ALICE end
  if v.additional_creators then create.content.additional_creators = arr({ DAVE }) end
  for k, val in pairs(create_content or {}) do create.content[k] = val end
  if v.room_id_is_create_hash then
    create.event_id = "$createhash"
    r.room_id = "!createhash"
  else
    create.event_id = "$create"
    create.room_id = "!room:a.example"
    r.room_id = create.room_id
  end
  r.create = r:put(create)
  return r
end

local function std_pl(r, extra)
  local users = { [MOD] = 50, [ADMIN] = 75, [ADMIN2] = 75 }
  if not r.v.creators_have_infinite_power then users[ALICE] = 100 end
  return merge({
    users = users, users_default = 0,
    events = { ["m.room.name"] = 50, ["m.room.power_levels"] = 50, ["m.room.topic"] = 100 },
    state_default = 50, events_default = 0, ban = 50, kick = 50, redact = 50, invite = 0,
  }, extra)
end

-- A room with the usual cast: joined alice, mod, admin, admin2, bob (and
-- dave in v12), banned eve, a public join rule and power levels.
local function standard(vid, opts)
  opts = opts or {}
  local r = fresh(vid, opts.create)
  r:member(ALICE, "join")
  r.pl_ev = r:pl(std_pl(r, opts.pl))
  r:jr(opts.join_rule or "public")
  for _, u in ipairs({ MOD, ADMIN, ADMIN2, BOB }) do r:member(u, "join") end
  if r.v.additional_creators then r:member(DAVE, "join") end
  r:member(EVE, "ban", ALICE)
  return r
end

-- ---- expectations -------------------------------------------------------------

local seen = {}
for _, vid in ipairs(VERSIONS) do seen[vid] = {} end

-- A v10 rule number as versions 3-9 number it. v8/v9 pages: no power-levels
-- rules 9.1 and 9.2 (integers only, new in v10), so 9.3 is 9.1 and 9.5-9.9
-- are 9.3-9.7. v6/v7 pages: no 4.2 (join_authorised_via_users_server) and no
-- 4.3.5 (restricted), so join is 4.2 (its last rule 4.2.6) and the later
-- memberships move up by one; v6 has no 4.7 (knock) either. v3-v5 pages:
-- rule 4 is m.room.aliases, every later top-level rule moves down by one.
local PL_BEFORE_V10 = { ["9.3"] = "9.1", ["9.5.1"] = "9.3.1", ["9.5.2"] = "9.3.2", ["9.6"] = "9.4",
  ["9.7"] = "9.5", ["9.8"] = "9.6", ["9.9"] = "9.7" }
local function relabel(vid, label)
  local n = tonumber(vid)
  if label == "allow" or n >= 10 then return label end
  if label:sub(1, 1) == "=" then return label:sub(2) end   -- already in the version's numbering
  label = PL_BEFORE_V10[label] or label
  if n < 8 then
    local sub, rest = label:match("^4%.(%d+)(.*)$")
    sub = tonumber(sub)
    if label == "4.3.7" then
      label = "4.2.6"
    elseif label == "4.8" then
      label = n == 7 and "4.7" or "4.6"
    elseif sub and sub >= 3 then
      label = "4." .. (sub - 1) .. rest
    end
  end
  if n < 6 then
    local top, rest = label:match("^(%d+)(.*)$")
    if tonumber(top) >= 4 then label = (tonumber(top) + 1) .. rest end
  end
  return label
end

-- Cases whose outcome in versions 3-9 is not v10's: { { below, outcome }, ... }
-- in order; the first entry with vid < below gives the outcome (a v10 rule
-- number, renumbered; "=x" is already the version's own number).
local OLDER = {
  -- restricted joins (v8) and knock_restricted (v10): before, an unknown join rule
  ["join_authorised_via_users_server not signed by its server"] = { { 8, "4.3.7" } },
  ["join_authorised_via_users_server not a user ID"] = { { 8, "4.3.7" } },
  ["join_authorised_via_users_server: verify_signature says no"] = { { 8, "4.3.7" } },
  ["restricted: invited user joins"] = { { 8, "4.3.7" } },
  ["restricted: no authorising user"] = { { 8, "4.3.7" } },
  ["restricted: authorising user below the invite level"] = { { 8, "4.3.7" } },
  ["restricted: authorising user not joined"] = { { 8, "4.3.7" } },
  ["restricted: authorised by a joined moderator"] = { { 8, "4.3.7" } },
  ["knock_restricted: authorised join"] = { { 10, "4.3.7" } },
  ["knock_restricted: unauthorised join"] = { { 10, "4.3.7" } },
  ["knock_restricted: joined member re-joins"] = { { 10, "4.3.7" } },
  -- knocking (v7): before, "knock" is an unknown membership and join rule
  ["knock: invited user joins"] = { { 7, "4.3.7" } },
  ["knocking user withdraws"] = { { 7, "4.5.1" } },
  ["knock in a public room"] = { { 7, "4.8" } },
  ["knock for someone else"] = { { 7, "4.8" } },
  ["knock in a knock room"] = { { 7, "4.8" } },
  ["knock in a knock_restricted room after leaving"] = { { 7, "4.8" }, { 10, "4.7.1" } },
  ["joined user knocks"] = { { 7, "4.8" } },
  ["banned user knocks"] = { { 7, "4.8" } },
  -- integer power levels (v10): before, only users is checked, and strings count
  ["power_levels: string level"] = { { 10, "allow" } },
  ["power_levels: float level"] = { { 10, "allow" } },
  ["power_levels: events value not an integer"] = { { 10, "allow" } },
  ["power_levels: notifications not an object"] = { { 10, "allow" } },
  -- notifications in rules 9.4/9.5 from v6
  ["power_levels: changing a notifications entry above the sender's"] = { { 6, "allow" } },
  -- m.room.aliases (v3-v5 rule 4)
  ["m.room.aliases for another server"] = { { 6, "=4.2" } },
  ["m.room.aliases without a state_key"] = { { 6, "=4.1" } },
  ["m.room.aliases by a server not in the room"] = { { 6, "allow" } },
}

local function expected(case, vid)
  if IDX[vid] then return case[2][IDX[vid]] end
  for _, o in ipairs(OLDER[case[1]] or {}) do
    if tonumber(vid) < o[1] then return relabel(vid, o[2]) end
  end
  return relabel(vid, case[2][1])
end

local function expect(vid, want, ok, reason, rule, what)
  if want == "allow" then
    assert.is_true(ok, ("%s: expected allow, got %s (%s)"):format(what, tostring(rule), tostring(reason)))
  else
    assert.is_nil(ok, what .. ": expected rejection by " .. want)
    assert.is_string(reason)
    assert.equals(want, rule, what .. ": " .. tostring(reason))
    seen[vid][rule] = true
  end
end

-- Third-party invite material: an identity server key and a signed object.
local id_key = assert(crypto.signing_key(core.crypto.random_bytes(32), "ed25519:0", "id.example"))
local other_key = assert(crypto.signing_key(core.crypto.random_bytes(32), "ed25519:0", "id.example"))

local function tpi_setup(r, opts)
  opts = opts or {}
  local content = {}
  if opts.list then
    content.public_keys = arr({ { public_key = id_key.public_key_base64, key_validity_url = "https://id/x" } })
  else
    content.public_key = id_key.public_key_base64
  end
  r:put(r:ev({ type = "m.room.third_party_invite", state_key = "tok", sender = MOD, content = content }))
  local signed = { mxid = CAROL, token = "tok", sender = MOD }
  assert(crypto.sign_json(signed, opts.key or id_key))
  return signed
end

local function tpi_invite(r, signed, sender, target)
  return r:member_ev(sender or MOD, target or CAROL, "invite",
    { third_party_invite = { display_name = "carol", signed = signed } })
end

local function create_ev(r, content, extra)
  local ev = {
    type = "m.room.create", state_key = "", sender = ALICE,
    content = content or { room_version = r.v.id }, prev_events = arr(), auth_events = arr(), depth = 1,
  }
  if content == nil and r.v.creator_in_content then ev.content.creator = ALICE end
  if not r.v.room_id_is_create_hash then ev.room_id = "!new:a.example" end
  for k, v in pairs(extra or {}) do ev[k] = v end
  return ev
end

-- { name, { v10, v11, v12 } expectations, build(vid) -> room, ev, opts }: an expectation is "allow",
-- or the rule that rejects, or nil where the case does not exist in that version.
local CASES = {
  -- 1: m.room.create
  { "create with prev_events", { "1.1", "1.1", "1.1" }, function(vid)
    local r = fresh(vid)
    return r, create_ev(r, nil, { prev_events = arr({ "$x" }) })
  end },
  { "create: room_id domain / v12 room_id present", { "1.2", "1.2", "1.2" }, function(vid)
    local r = fresh(vid)
    local ev = create_ev(r)
    ev.room_id = r.v.room_id_is_create_hash and "!abc" or "!new:other.example"
    return r, ev
  end },
  { "create: unknown room_version", { "1.3", "1.3", "1.3" }, function(vid)
    local r = fresh(vid)
    local ev = create_ev(r)
    ev.content.room_version = "99"
    return r, ev
  end },
  { "create: room_version not a string", { "1.3", "1.3", "1.3" }, function(vid)
    local r = fresh(vid)
    local ev = create_ev(r)
    ev.content.room_version = 11
    return r, ev
  end },
  { "create without creator", { "1.4", "allow", "allow" }, function(vid)
    local r = fresh(vid)
    return r, create_ev(r, { room_version = vid })
  end },
  { "create: additional_creators not user IDs", { "allow", "allow", "1.4" }, function(vid)
    local r = fresh(vid)
    local ev = create_ev(r)
    ev.content.additional_creators = arr({ DAVE, "not-a-user" })
    return r, ev
  end },
  { "create: additional_creators not an array", { "allow", "allow", "1.4" }, function(vid)
    local r = fresh(vid)
    local ev = create_ev(r)
    ev.content.additional_creators = DAVE
    return r, ev
  end },
  { "create: additional_creators with a non-string", { "allow", "allow", "1.4" }, function(vid)
    local r = fresh(vid)
    local ev = create_ev(r)
    ev.content.additional_creators = arr({ DAVE, 7 })
    return r, ev
  end },
  { "create: valid additional_creators", { "allow", "allow", "allow" }, function(vid)
    local r = fresh(vid)
    local ev = create_ev(r)
    ev.content.additional_creators = arr({ DAVE, BOB })
    return r, ev
  end },
  { "create: empty additional_creators", { "allow", "allow", "allow" }, function(vid)
    local r = fresh(vid)
    local ev = create_ev(r)
    ev.content.additional_creators = arr()
    return r, ev
  end },
  { "create: unknown but spec-defined room_version, m.federate", { "allow", "allow", "allow" }, function(vid)
    local r = fresh(vid)
    local ev = create_ev(r)
    ev.content.room_version = "1"
    ev.content["m.federate"] = false
    return r, ev
  end },

  -- v12 rule 2 / v10-v11 no create
  { "no m.room.create in the state", { "2.4", "2.4", "2" }, function(vid)
    local r = standard(vid)
    r:remove("m.room.create")
    return r, r:ev({ sender = BOB })
  end },
  { "v12: room_id is not the create event's", { "allow", "allow", "2" }, function(vid)
    local r = standard(vid)
    local ev = r:ev({ sender = BOB })
    if r.v.room_id_is_create_hash then ev.room_id = "!otherhash" end
    return r, ev
  end },
  { "v12: the create event was rejected", { "allow", "allow", "2" }, function(vid)
    local r = standard(vid)
    return r, r:ev({ sender = BOB }), { rejected = function(id) return id == r.create.event_id end }
  end },

  -- 3: m.federate
  { "m.federate false, remote sender", { "3", "3", "4" }, function(vid)
    local r = standard(vid, { create = { ["m.federate"] = false } })
    return r, r:ev({ sender = BOB })
  end },
  { "m.federate false, local sender", { "allow", "allow", "allow" }, function(vid)
    local r = standard(vid, { create = { ["m.federate"] = false } })
    return r, r:ev({ sender = MOD })
  end },

  -- 4.1, 4.2
  { "member without state_key", { "4.1", "4.1", "5.1" }, function(vid)
    local r = standard(vid)
    return r, r:ev({ type = "m.room.member", sender = BOB, content = { membership = "join" } })
  end },
  { "member without membership", { "4.1", "4.1", "5.1" }, function(vid)
    local r = standard(vid)
    return r, r:ev({ type = "m.room.member", sender = BOB, state_key = BOB, content = { displayname = "b" } })
  end },
  { "join_authorised_via_users_server not signed by its server", { "4.2.1", "4.2.1", "5.2.1" }, function(vid)
    local r = standard(vid, { join_rule = "restricted" })
    return r, r:member_ev(CAROL, CAROL, "join", { join_authorised_via_users_server = MOD })
  end },
  { "join_authorised_via_users_server not a user ID", { "4.2.1", "4.2.1", "5.2.1" }, function(vid)
    local r = standard(vid, { join_rule = "restricted" })
    return r, r:member_ev(CAROL, CAROL, "join", { join_authorised_via_users_server = "mod" })
  end },
  { "join_authorised_via_users_server: verify_signature says no", { "4.2.1", "4.2.1", "5.2.1" }, function(vid)
    local r = standard(vid, { join_rule = "restricted" })
    local ev = r:member_ev(CAROL, CAROL, "join", { join_authorised_via_users_server = MOD })
    ev.signatures["a.example"] = { ["ed25519:1"] = "sig" }
    return r, ev, { verify_signature = function(_, server) return server ~= "a.example" end }
  end },

  -- 4.3 join
  { "creator's first join after the create", { "allow", "allow", "allow" }, function(vid)
    local r = fresh(vid)
    local ev = r:member_ev(ALICE, ALICE, "join")
    ev.prev_events = arr({ r.create.event_id })
    return r, ev
  end },
  { "v10: the first join is content.creator's, not the sender's", { "allow", "4.3.7", "5.3.7" }, function(vid)
    local r = fresh(vid, { creator = BOB })
    local ev = r:member_ev(BOB, BOB, "join")
    ev.prev_events = arr({ r.create.event_id })
    return r, ev
  end },
  { "v11+: the first join is the create sender's", { "4.3.7", "allow", "allow" }, function(vid)
    local r = fresh(vid, { creator = BOB })
    local ev = r:member_ev(ALICE, ALICE, "join")
    ev.prev_events = arr({ r.create.event_id })
    return r, ev
  end },
  { "join for someone else", { "4.3.2", "4.3.2", "5.3.2" }, function(vid)
    local r = standard(vid)
    return r, r:member_ev(BOB, CAROL, "join")
  end },
  { "banned user joins", { "4.3.3", "4.3.3", "5.3.3" }, function(vid)
    local r = standard(vid)
    return r, r:member_ev(EVE, EVE, "join")
  end },
  { "invite-only: invited user joins", { "allow", "allow", "allow" }, function(vid)
    local r = standard(vid, { join_rule = "invite" })
    r:member(CAROL, "invite", MOD)
    return r, r:member_ev(CAROL, CAROL, "join")
  end },
  { "invite-only: joined user re-joins", { "allow", "allow", "allow" }, function(vid)
    local r = standard(vid, { join_rule = "invite" })
    return r, r:member_ev(BOB, BOB, "join", { displayname = "Bob" })
  end },
  { "invite-only: uninvited user joins", { "4.3.7", "4.3.7", "5.3.7" }, function(vid)
    local r = standard(vid, { join_rule = "invite" })
    return r, r:member_ev(CAROL, CAROL, "join")
  end },
  { "knock: invited user joins", { "allow", "allow", "allow" }, function(vid)
    local r = standard(vid, { join_rule = "knock" })
    r:member(CAROL, "invite", MOD)
    return r, r:member_ev(CAROL, CAROL, "join")
  end },
  { "knock: knocking user cannot join yet", { "4.3.7", "4.3.7", "5.3.7" }, function(vid)
    local r = standard(vid, { join_rule = "knock" })
    r:member(CAROL, "knock")
    return r, r:member_ev(CAROL, CAROL, "join")
  end },
  { "restricted: invited user joins", { "allow", "allow", "allow" }, function(vid)
    local r = standard(vid, { join_rule = "restricted" })
    r:member(CAROL, "invite", MOD)
    return r, r:member_ev(CAROL, CAROL, "join")
  end },
  { "restricted: no authorising user", { "4.3.5.2", "4.3.5.2", "5.3.5.2" }, function(vid)
    local r = standard(vid, { join_rule = "restricted" })
    return r, r:member_ev(CAROL, CAROL, "join")
  end },
  { "restricted: authorising user below the invite level", { "4.3.5.2", "4.3.5.2", "5.3.5.2" }, function(vid)
    local r = standard(vid, { join_rule = "restricted", pl = { invite = 60 } })
    local ev = r:member_ev(CAROL, CAROL, "join", { join_authorised_via_users_server = MOD })
    ev.signatures["a.example"] = { ["ed25519:1"] = "sig" }
    return r, ev
  end },
  { "restricted: authorising user not joined", { "4.3.5.2", "4.3.5.2", "5.3.5.2" }, function(vid)
    local r = standard(vid, { join_rule = "restricted" })
    r:member(MOD, "leave")
    local ev = r:member_ev(CAROL, CAROL, "join", { join_authorised_via_users_server = MOD })
    ev.signatures["a.example"] = { ["ed25519:1"] = "sig" }
    return r, ev
  end },
  { "restricted: authorised by a joined moderator", { "allow", "allow", "allow" }, function(vid)
    local r = standard(vid, { join_rule = "restricted", pl = { invite = 50 } })
    local ev = r:member_ev(CAROL, CAROL, "join", { join_authorised_via_users_server = MOD })
    ev.signatures["a.example"] = { ["ed25519:1"] = "sig" }
    return r, ev, { verify_signature = function(_, server) return server == "a.example" end }
  end },
  { "knock_restricted: authorised join", { "allow", "allow", "allow" }, function(vid)
    local r = standard(vid, { join_rule = "knock_restricted" })
    local ev = r:member_ev(CAROL, CAROL, "join", { join_authorised_via_users_server = MOD })
    ev.signatures["a.example"] = { ["ed25519:1"] = "sig" }
    return r, ev
  end },
  { "knock_restricted: unauthorised join", { "4.3.5.2", "4.3.5.2", "5.3.5.2" }, function(vid)
    local r = standard(vid, { join_rule = "knock_restricted" })
    return r, r:member_ev(CAROL, CAROL, "join")
  end },
  { "knock_restricted: joined member re-joins", { "allow", "allow", "allow" }, function(vid)
    local r = standard(vid, { join_rule = "knock_restricted" })
    return r, r:member_ev(BOB, BOB, "join")
  end },
  { "public: anyone joins", { "allow", "allow", "allow" }, function(vid)
    local r = standard(vid)
    return r, r:member_ev(CAROL, CAROL, "join")
  end },
  { "private join rule", { "4.3.7", "4.3.7", "5.3.7" }, function(vid)
    local r = standard(vid, { join_rule = "private" })
    return r, r:member_ev(CAROL, CAROL, "join")
  end },
  { "no join rules event", { "4.3.7", "4.3.7", "5.3.7" }, function(vid)
    local r = standard(vid)
    r:remove("m.room.join_rules")
    return r, r:member_ev(CAROL, CAROL, "join")
  end },

  -- 4.4 invite, third-party
  { "3pid invite: target banned", { "4.4.1.1", "4.4.1.1", "5.4.1.1" }, function(vid)
    local r = standard(vid)
    local signed = tpi_setup(r)
    signed.mxid = EVE
    return r, tpi_invite(r, signed, MOD, EVE)
  end },
  { "3pid invite: no signed", { "4.4.1.2", "4.4.1.2", "5.4.1.2" }, function(vid)
    local r = standard(vid)
    tpi_setup(r)
    return r, r:member_ev(MOD, CAROL, "invite", { third_party_invite = { display_name = "c" } })
  end },
  { "3pid invite: third_party_invite not an object", { "4.4.1.2", "4.4.1.2", "5.4.1.2" }, function(vid)
    local r = standard(vid)
    return r, r:member_ev(MOD, CAROL, "invite", { third_party_invite = "x" })
  end },
  { "3pid invite: signed without token", { "4.4.1.3", "4.4.1.3", "5.4.1.3" }, function(vid)
    local r = standard(vid)
    local signed = tpi_setup(r)
    signed.token = nil
    return r, tpi_invite(r, signed)
  end },
  { "3pid invite: signed without mxid", { "4.4.1.3", "4.4.1.3", "5.4.1.3" }, function(vid)
    local r = standard(vid)
    local signed = tpi_setup(r)
    signed.mxid = nil
    return r, tpi_invite(r, signed)
  end },
  { "3pid invite: mxid is not the target", { "4.4.1.4", "4.4.1.4", "5.4.1.4" }, function(vid)
    local r = standard(vid)
    local signed = tpi_setup(r)
    return r, tpi_invite(r, signed, MOD, "@other:c.example")
  end },
  { "3pid invite: no m.room.third_party_invite for the token", { "4.4.1.5", "4.4.1.5", "5.4.1.5" }, function(vid)
    local r = standard(vid)
    local signed = tpi_setup(r)
    r:remove("m.room.third_party_invite", "tok")
    return r, tpi_invite(r, signed)
  end },
  { "3pid invite: sender is not the third_party_invite's sender", { "4.4.1.6", "4.4.1.6", "5.4.1.6" },
    function(vid)
      local r = standard(vid)
      local signed = tpi_setup(r)
      return r, tpi_invite(r, signed, ADMIN)
    end },
  { "3pid invite: signature by the identity server (public_key)", { "allow", "allow", "allow" }, function(vid)
    local r = standard(vid)
    return r, tpi_invite(r, tpi_setup(r))
  end },
  { "3pid invite: signature by the identity server (public_keys)", { "allow", "allow", "allow" }, function(vid)
    local r = standard(vid)
    return r, tpi_invite(r, tpi_setup(r, { list = true }))
  end },
  { "3pid invite: signed by another key", { "4.4.1.8", "4.4.1.8", "5.4.1.8" }, function(vid)
    local r = standard(vid)
    return r, tpi_invite(r, tpi_setup(r, { key = other_key }))
  end },
  { "3pid invite: signed object altered after signing", { "4.4.1.8", "4.4.1.8", "5.4.1.8" }, function(vid)
    local r = standard(vid)
    local signed = tpi_setup(r)
    signed.extra = "tampered"
    return r, tpi_invite(r, signed)
  end },

  -- 4.4 invite
  { "invite by a non-member", { "4.4.2", "4.4.2", "5.4.2" }, function(vid)
    local r = standard(vid)
    return r, r:member_ev(CAROL, "@x:c.example", "invite")
  end },
  { "invite a joined user", { "4.4.3", "4.4.3", "5.4.3" }, function(vid)
    local r = standard(vid)
    return r, r:member_ev(MOD, BOB, "invite")
  end },
  { "invite a banned user", { "4.4.3", "4.4.3", "5.4.3" }, function(vid)
    local r = standard(vid)
    return r, r:member_ev(MOD, EVE, "invite")
  end },
  { "invite with the default invite level 0", { "allow", "allow", "allow" }, function(vid)
    local r = standard(vid)
    return r, r:member_ev(BOB, CAROL, "invite")
  end },
  { "invite below the invite level", { "4.4.5", "4.4.5", "5.4.5" }, function(vid)
    local r = standard(vid, { pl = { invite = 50 } })
    return r, r:member_ev(BOB, CAROL, "invite")
  end },
  { "invite at the invite level", { "allow", "allow", "allow" }, function(vid)
    local r = standard(vid, { pl = { invite = 50 } })
    return r, r:member_ev(MOD, CAROL, "invite")
  end },

  -- 4.5 leave
  { "joined user leaves", { "allow", "allow", "allow" }, function(vid)
    local r = standard(vid)
    return r, r:member_ev(BOB, BOB, "leave")
  end },
  { "invited user rejects", { "allow", "allow", "allow" }, function(vid)
    local r = standard(vid)
    r:member(CAROL, "invite", MOD)
    return r, r:member_ev(CAROL, CAROL, "leave")
  end },
  { "knocking user withdraws", { "allow", "allow", "allow" }, function(vid)
    local r = standard(vid, { join_rule = "knock" })
    r:member(CAROL, "knock")
    return r, r:member_ev(CAROL, CAROL, "leave")
  end },
  { "non-member leaves", { "4.5.1", "4.5.1", "5.5.1" }, function(vid)
    local r = standard(vid)
    return r, r:member_ev(CAROL, CAROL, "leave")
  end },
  { "banned user unbans themself", { "4.5.1", "4.5.1", "5.5.1" }, function(vid)
    local r = standard(vid)
    return r, r:member_ev(EVE, EVE, "leave")
  end },
  { "kick by a non-member", { "4.5.2", "4.5.2", "5.5.2" }, function(vid)
    local r = standard(vid)
    return r, r:member_ev(CAROL, BOB, "leave")
  end },
  { "unban below the ban level", { "4.5.3", "4.5.3", "5.5.3" }, function(vid)
    local r = standard(vid, { pl = { ban = 60 } })
    return r, r:member_ev(MOD, EVE, "leave")
  end },
  { "unban by an admin", { "allow", "allow", "allow" }, function(vid)
    local r = standard(vid)
    return r, r:member_ev(ADMIN, EVE, "leave")
  end },
  { "moderator kicks a user", { "allow", "allow", "allow" }, function(vid)
    local r = standard(vid)
    return r, r:member_ev(MOD, BOB, "leave")
  end },
  { "user kicks a moderator", { "4.5.5", "4.5.5", "5.5.5" }, function(vid)
    local r = standard(vid)
    return r, r:member_ev(BOB, MOD, "leave")
  end },
  { "admin kicks an equal admin", { "4.5.5", "4.5.5", "5.5.5" }, function(vid)
    local r = standard(vid)
    return r, r:member_ev(ADMIN, ADMIN2, "leave")
  end },
  { "kick below the kick level", { "4.5.5", "4.5.5", "5.5.5" }, function(vid)
    local r = standard(vid, { pl = { kick = 80 } })
    return r, r:member_ev(ADMIN, BOB, "leave")
  end },
  { "admin kicks the creator", { "4.5.5", "4.5.5", "5.5.5" }, function(vid)
    local r = standard(vid)
    return r, r:member_ev(ADMIN, ALICE, "leave")
  end },

  -- 4.6 ban
  { "ban by a non-member", { "4.6.1", "4.6.1", "5.6.1" }, function(vid)
    local r = standard(vid)
    return r, r:member_ev(CAROL, BOB, "ban")
  end },
  { "moderator bans a user", { "allow", "allow", "allow" }, function(vid)
    local r = standard(vid)
    return r, r:member_ev(MOD, BOB, "ban")
  end },
  { "moderator bans a non-member", { "allow", "allow", "allow" }, function(vid)
    local r = standard(vid)
    return r, r:member_ev(MOD, CAROL, "ban")
  end },
  { "user bans a moderator", { "4.6.3", "4.6.3", "5.6.3" }, function(vid)
    local r = standard(vid)
    return r, r:member_ev(BOB, MOD, "ban")
  end },
  { "ban below the ban level", { "4.6.3", "4.6.3", "5.6.3" }, function(vid)
    local r = standard(vid, { pl = { ban = 80 } })
    return r, r:member_ev(ADMIN, BOB, "ban")
  end },
  { "admin bans the creator", { "4.6.3", "4.6.3", "5.6.3" }, function(vid)
    local r = standard(vid)
    return r, r:member_ev(ADMIN, ALICE, "ban")
  end },
  { "creator bans an admin", { "allow", "allow", "allow" }, function(vid)
    local r = standard(vid)
    return r, r:member_ev(ALICE, ADMIN, "ban")
  end },
  { "creator bans an additional creator (v12: both infinite)", { "allow", "allow", "5.6.3" }, function(vid)
    local r = standard(vid)
    return r, r:member_ev(ALICE, DAVE, "ban")
  end },
  { "additional creator bans the creator (v12: both infinite)", { "4.6.1", "4.6.1", "5.6.3" }, function(vid)
    local r = standard(vid)
    return r, r:member_ev(DAVE, ALICE, "ban")
  end },
  { "creator listed at 100 bans a user listed at 100 (v10/v11)", { "4.6.3", "4.6.3", "5.6.3" }, function(vid)
    local r = standard(vid, { pl = { users = { [ALICE] = 100, [MOD] = 100 } } })
    if r.v.creators_have_infinite_power then
      r:pl(std_pl(r, { users = { [MOD] = 100 } }))
      return r, r:member_ev(MOD, ALICE, "ban")
    end
    return r, r:member_ev(ALICE, MOD, "ban")
  end },

  -- 4.7 knock
  { "knock in a public room", { "4.7.1", "4.7.1", "5.7.1" }, function(vid)
    local r = standard(vid)
    return r, r:member_ev(CAROL, CAROL, "knock")
  end },
  { "knock for someone else", { "4.7.2", "4.7.2", "5.7.2" }, function(vid)
    local r = standard(vid, { join_rule = "knock" })
    return r, r:member_ev(CAROL, "@x:c.example", "knock")
  end },
  { "knock in a knock room", { "allow", "allow", "allow" }, function(vid)
    local r = standard(vid, { join_rule = "knock" })
    return r, r:member_ev(CAROL, CAROL, "knock")
  end },
  { "knock in a knock_restricted room after leaving", { "allow", "allow", "allow" }, function(vid)
    local r = standard(vid, { join_rule = "knock_restricted" })
    r:member(CAROL, "leave")
    return r, r:member_ev(CAROL, CAROL, "knock")
  end },
  { "joined user knocks", { "4.7.4", "4.7.4", "5.7.4" }, function(vid)
    local r = standard(vid, { join_rule = "knock" })
    return r, r:member_ev(BOB, BOB, "knock")
  end },
  { "banned user knocks", { "4.7.4", "4.7.4", "5.7.4" }, function(vid)
    local r = standard(vid, { join_rule = "knock" })
    return r, r:member_ev(EVE, EVE, "knock")
  end },
  { "unknown membership", { "4.8", "4.8", "5.8" }, function(vid)
    local r = standard(vid)
    return r, r:member_ev(BOB, BOB, "dance")
  end },
  { "membership not a string", { "4.8", "4.8", "5.8" }, function(vid)
    local r = standard(vid)
    return r, r:member_ev(BOB, BOB, 5)
  end },

  -- m.room.aliases: rule 4 of v3-v5, an ordinary state event from v6
  { "m.room.aliases for another server", { "7", "7", "8" }, function(vid)
    local r = standard(vid)
    return r, r:ev({ type = "m.room.aliases", state_key = "a.example", sender = BOB,
      content = { aliases = arr({ "#x:a.example" }) } })
  end },
  { "m.room.aliases without a state_key", { "allow", "allow", "allow" }, function(vid)
    local r = standard(vid)
    return r, r:ev({ type = "m.room.aliases", sender = BOB, content = { aliases = arr() } })
  end },
  { "m.room.aliases by a server not in the room", { "5", "5", "6" }, function(vid)
    local r = standard(vid)
    return r, r:ev({ type = "m.room.aliases", state_key = "c.example", sender = CAROL,
      content = { aliases = arr({ "#x:c.example" }) } })
  end },

  -- 5, 6, 7, 8
  { "message from a non-member", { "5", "5", "6" }, function(vid)
    local r = standard(vid)
    return r, r:ev({ sender = CAROL })
  end },
  { "message from an invited user", { "5", "5", "6" }, function(vid)
    local r = standard(vid)
    r:member(CAROL, "invite", MOD)
    return r, r:ev({ sender = CAROL })
  end },
  { "message from a member", { "allow", "allow", "allow" }, function(vid)
    local r = standard(vid)
    return r, r:ev({ sender = BOB, content = { body = "hi" } })
  end },
  { "third_party_invite below the invite level", { "6.1", "6.1", "7.1" }, function(vid)
    local r = standard(vid, { pl = { invite = 50 } })
    return r, r:ev({ type = "m.room.third_party_invite", state_key = "t", sender = BOB })
  end },
  { "third_party_invite at the invite level", { "allow", "allow", "allow" }, function(vid)
    local r = standard(vid, { pl = { invite = 50 } })
    return r, r:ev({ type = "m.room.third_party_invite", state_key = "t", sender = MOD })
  end },
  { "state event below events[type]", { "7", "7", "8" }, function(vid)
    local r = standard(vid)
    return r, r:ev({ type = "m.room.name", state_key = "", sender = BOB, content = { name = "x" } })
  end },
  { "state event below state_default", { "7", "7", "8" }, function(vid)
    local r = standard(vid)
    return r, r:ev({ type = "x.custom", state_key = "", sender = BOB })
  end },
  { "message below events_default", { "7", "7", "8" }, function(vid)
    local r = standard(vid, { pl = { events_default = 10 } })
    return r, r:ev({ sender = BOB })
  end },
  { "state event at events[type]", { "allow", "allow", "allow" }, function(vid)
    local r = standard(vid)
    return r, r:ev({ type = "m.room.name", state_key = "", sender = MOD, content = { name = "x" } })
  end },
  { "no power levels: state_default is 0", { "allow", "allow", "allow" }, function(vid)
    local r = standard(vid)
    r:remove("m.room.power_levels")
    return r, r:ev({ type = "x.custom", state_key = "", sender = BOB })
  end },
  { "state_key is another user's ID", { "8", "8", "9" }, function(vid)
    local r = standard(vid, { pl = { state_default = 0 } })
    return r, r:ev({ type = "x.custom", state_key = MOD, sender = BOB })
  end },
  { "state_key is the sender's ID", { "allow", "allow", "allow" }, function(vid)
    local r = standard(vid, { pl = { state_default = 0 } })
    return r, r:ev({ type = "x.custom", state_key = BOB, sender = BOB })
  end },

  -- 9 power levels (v12: 10)
  { "power_levels: string level", { "9.1", "9.1", "10.1" }, function(vid)
    local r = standard(vid)
    return r, r:ev({ type = "m.room.power_levels", state_key = "", sender = ALICE,
      content = std_pl(r, { ban = "50" }) })
  end },
  { "power_levels: float level", { "9.1", "9.1", "10.1" }, function(vid)
    local r = standard(vid)
    return r, r:ev({ type = "m.room.power_levels", state_key = "", sender = ALICE,
      content = std_pl(r, { invite = 0.5 }) })
  end },
  { "power_levels: events value not an integer", { "9.2", "9.2", "10.2" }, function(vid)
    local r = standard(vid)
    return r, r:ev({ type = "m.room.power_levels", state_key = "", sender = ALICE,
      content = std_pl(r, { events = { ["m.room.name"] = "50" } }) })
  end },
  { "power_levels: notifications not an object", { "9.2", "9.2", "10.2" }, function(vid)
    local r = standard(vid)
    return r, r:ev({ type = "m.room.power_levels", state_key = "", sender = ALICE,
      content = std_pl(r, { notifications = arr({ 50 }) }) })
  end },
  { "power_levels: users key not a user ID", { "9.3", "9.3", "10.3" }, function(vid)
    local r = standard(vid)
    return r, r:ev({ type = "m.room.power_levels", state_key = "", sender = ALICE,
      content = std_pl(r, { users = { ["bob"] = 10 } }) })
  end },
  { "power_levels: users value not an integer", { "9.3", "9.3", "10.3" }, function(vid)
    local r = standard(vid)
    return r, r:ev({ type = "m.room.power_levels", state_key = "", sender = ALICE,
      content = std_pl(r, { users = { [BOB] = 10.0 } }) })
  end },
  { "power_levels: users not an object", { "9.3", "9.3", "10.3" }, function(vid)
    local r = standard(vid)
    return r, r:ev({ type = "m.room.power_levels", state_key = "", sender = ALICE,
      content = std_pl(r, { users = "all" }) })
  end },
  { "power_levels: users lists the creator", { "allow", "allow", "10.4" }, function(vid)
    local r = standard(vid)
    return r, r:ev({ type = "m.room.power_levels", state_key = "", sender = ALICE,
      content = std_pl(r, { users = { [ALICE] = 100 } }) })
  end },
  { "power_levels: users lists an additional creator", { "allow", "allow", "10.4" }, function(vid)
    local r = standard(vid)
    return r, r:ev({ type = "m.room.power_levels", state_key = "", sender = ALICE,
      content = std_pl(r, { users = { [DAVE] = 10 } }) })
  end },
  { "power_levels: the first one", { "allow", "allow", "allow" }, function(vid)
    local r = standard(vid)
    r:remove("m.room.power_levels")
    return r, r:ev({ type = "m.room.power_levels", state_key = "", sender = BOB,
      content = { users = { [BOB] = 100 }, ban = 1000 } })
  end },
  { "power_levels: changing a level above the sender's", { "9.5.1", "9.5.1", "10.6.1" }, function(vid)
    local r = standard(vid, { pl = { kick = 100 } })
    return r, r:ev({ type = "m.room.power_levels", state_key = "", sender = ADMIN,
      content = std_pl(r, { kick = 50 }) })
  end },
  { "power_levels: removing a level above the sender's", { "9.5.1", "9.5.1", "10.6.1" }, function(vid)
    local r = standard(vid, { pl = { redact = 90 } })
    local content = std_pl(r)
    content.redact = nil
    return r, r:ev({ type = "m.room.power_levels", state_key = "", sender = ADMIN, content = content })
  end },
  { "power_levels: setting a level above the sender's", { "9.5.2", "9.5.2", "10.6.2" }, function(vid)
    local r = standard(vid)
    return r, r:ev({ type = "m.room.power_levels", state_key = "", sender = ADMIN,
      content = std_pl(r, { state_default = 80 }) })
  end },
  { "power_levels: removing an events entry above the sender's", { "9.6", "9.6", "10.7" }, function(vid)
    local r = standard(vid)
    return r, r:ev({ type = "m.room.power_levels", state_key = "", sender = ADMIN,
      content = std_pl(r, { events = { ["m.room.name"] = 50, ["m.room.power_levels"] = 50 } }) })
  end },
  { "power_levels: changing a notifications entry above the sender's", { "9.6", "9.6", "10.7" },
    function(vid)
      local r = standard(vid, { pl = { notifications = { room = 90 } } })
      return r, r:ev({ type = "m.room.power_levels", state_key = "", sender = ADMIN,
        content = std_pl(r, { notifications = { room = 50 } }) })
    end },
  { "power_levels: adding an events entry above the sender's", { "9.7", "9.7", "10.8" }, function(vid)
    local r = standard(vid)
    return r, r:ev({ type = "m.room.power_levels", state_key = "", sender = ADMIN,
      content = std_pl(r, { events = { ["m.room.name"] = 50, ["m.room.power_levels"] = 50,
        ["m.room.topic"] = 100, ["x.new"] = 76 } }) })
  end },
  { "power_levels: demoting an equal user", { "9.8", "9.8", "10.9" }, function(vid)
    local r = standard(vid)
    local content = std_pl(r)
    content.users[ADMIN2] = 10
    return r, r:ev({ type = "m.room.power_levels", state_key = "", sender = ADMIN, content = content })
  end },
  { "power_levels: removing an equal user", { "9.8", "9.8", "10.9" }, function(vid)
    local r = standard(vid)
    local content = std_pl(r)
    content.users[ADMIN2] = nil
    return r, r:ev({ type = "m.room.power_levels", state_key = "", sender = ADMIN, content = content })
  end },
  { "power_levels: promoting a user above the sender", { "9.9", "9.9", "10.10" }, function(vid)
    local r = standard(vid)
    local content = std_pl(r)
    content.users[BOB] = 76
    return r, r:ev({ type = "m.room.power_levels", state_key = "", sender = ADMIN, content = content })
  end },
  { "power_levels: raising one's own level", { "9.9", "9.9", "10.10" }, function(vid)
    local r = standard(vid)
    local content = std_pl(r)
    content.users[ADMIN] = 80
    return r, r:ev({ type = "m.room.power_levels", state_key = "", sender = ADMIN, content = content })
  end },
  { "power_levels: allowed changes", { "allow", "allow", "allow" }, function(vid)
    local r = standard(vid)
    local content = std_pl(r, { kick = 75, notifications = { room = 20 } })
    content.users[BOB] = 75       -- up to the sender's own level
    content.users[MOD] = nil      -- below the sender: may be removed
    content.users[ADMIN] = 10     -- demoting oneself
    content.events["x.new"] = 75
    return r, r:ev({ type = "m.room.power_levels", state_key = "", sender = ADMIN, content = content })
  end },
  { "power_levels: the creator changes anything", { "allow", "allow", "allow" }, function(vid)
    local r = standard(vid)
    local content = std_pl(r, { ban = 100, kick = 100 })
    content.users[ADMIN] = 0
    content.users[ADMIN2] = nil
    return r, r:ev({ type = "m.room.power_levels", state_key = "", sender = ALICE, content = content })
  end },
  { "v12: power_levels by a creator at any level", { "9.9", "9.9", "allow" }, function(vid)
    local r = standard(vid)
    local content = std_pl(r)
    content.users[BOB] = 1000000
    return r, r:ev({ type = "m.room.power_levels", state_key = "", sender = ALICE, content = content })
  end },
}

for _, vid in ipairs(VERSIONS) do
  describe("loom.room.auth v" .. vid, function()
    for _, case in ipairs(CASES) do
      local want = expected(case, vid)
      if want then
        it(case[1] .. " -> " .. want, function()
          local r, ev, opts = case[3](vid)
          local ok, reason, rule = r:check(ev, opts)
          expect(vid, want, ok, reason, rule, case[1])
        end)
      end
    end
  end)
end

-- ---- considering the event's auth_events --------------------------------------

local function auth_list(r, ev, extra)
  local list = {}
  local function add(x) if x then list[#list + 1] = x end end
  if not r.v.room_id_is_create_hash then add(r.create) end
  add(r:get("m.room.power_levels"))
  add(r:get("m.room.member", ev.sender))
  for _, x in ipairs(extra or {}) do add(x) end
  return list
end

local AUTH_CASES = {
  { "the selected auth events", { "allow", "allow", "allow" }, function(r)
    local ev = r:ev({ sender = BOB })
    return ev, auth_list(r, ev)
  end },
  { "a join with the target and join rules", { "allow", "allow", "allow" }, function(r)
    local ev = r:member_ev(CAROL, CAROL, "join")
    return ev, auth_list(r, ev, { r:get("m.room.join_rules") })
  end },
  { "a later rule still applies", { "7", "7", "8" }, function(r)
    local ev = r:ev({ type = "m.room.name", state_key = "", sender = BOB })
    return ev, auth_list(r, ev)
  end },
  { "rules only see the auth events", { "5", "5", "6" }, function(r)
    local ev = r:ev({ sender = BOB })
    local list = auth_list(r, ev)
    list[#list] = nil -- drop bob's membership
    return ev, list
  end },
  { "duplicate power levels", { "2.1", "2.1", "3.1" }, function(r)
    local ev = r:ev({ sender = BOB })
    local pl2 = merge(r:get("m.room.power_levels"), { event_id = "$pl2" })
    return ev, auth_list(r, ev, { pl2 })
  end },
  { "an m.room.name among the auth events", { "2.2", "2.2", "3.2" }, function(r)
    local ev = r:ev({ sender = BOB })
    local name = r:ev({ type = "m.room.name", state_key = "", sender = ALICE })
    return ev, auth_list(r, ev, { name })
  end },
  { "another user's membership among the auth events", { "2.2", "2.2", "3.2" }, function(r)
    local ev = r:ev({ sender = BOB })
    return ev, auth_list(r, ev, { r:get("m.room.member", MOD) })
  end },
  { "join rules for a message", { "2.2", "2.2", "3.2" }, function(r)
    local ev = r:ev({ sender = BOB })
    return ev, auth_list(r, ev, { r:get("m.room.join_rules") })
  end },
  { "a non-state event among the auth events", { "2.2", "2.2", "3.2" }, function(r)
    local ev = r:ev({ sender = BOB })
    return ev, auth_list(r, ev, { r:ev({ sender = BOB }) })
  end },
  { "v12: the create event among the auth events", { "allow", "allow", "3.2" }, function(r)
    local ev = r:ev({ sender = BOB })
    local list = auth_list(r, ev)
    if r.v.room_id_is_create_hash then list[#list + 1] = r.create end
    return ev, list
  end },
  { "a rejected auth event", { "2.3", "2.3", "3.3" }, function(r)
    local ev = r:ev({ sender = BOB })
    local pl = r:get("m.room.power_levels")
    return ev, auth_list(r, ev), { rejected = function(id) return id == pl.event_id end }
  end },
  { "v12: an auth event from another room", { "allow", "allow", "3.5" }, function(r)
    local ev = r:ev({ sender = BOB })
    local list = auth_list(r, ev)
    list[#list] = merge(list[#list], { room_id = "!elsewhere" })
    return ev, list
  end },
  { "no create event", { "2.4", "2.4", "allow" }, function(r)
    local ev = r:ev({ sender = BOB })
    local list = auth_list(r, ev)
    if not r.v.room_id_is_create_hash then table.remove(list, 1) end
    return ev, list
  end },
  { "v12: no create event given", { "allow", "allow", "2" }, function(r)
    local ev = r:ev({ sender = BOB })
    return ev, auth_list(r, ev), { create = false }
  end },
  { "v12: room ID of another create event", { "allow", "allow", "2" }, function(r)
    local ev = r:ev({ sender = BOB })
    local other = merge(r.create, { event_id = "$othercreate" })
    return ev, auth_list(r, ev), { create = other }
  end },
  { "the create event was rejected", { "2.3", "2.3", "2" }, function(r)
    local ev = r:ev({ sender = BOB })
    return ev, auth_list(r, ev), { rejected = function(id) return id == r.create.event_id end }
  end },
  { "a create event is checked by rule 1 alone", { "1.1", "1.1", "1.1" }, function(r)
    return create_ev(r, nil, { prev_events = arr({ "$x" }) }), {}
  end },
}

for _, vid in ipairs(VERSIONS) do
  describe("loom.room.auth.check_auth_events v" .. vid, function()
    for _, case in ipairs(AUTH_CASES) do
      local want = expected(case, vid)
      it(case[1] .. " -> " .. want, function()
        local r = standard(vid)
        local ev, list, opts = case[3](r)
        opts = opts or {}
        if opts.create == nil then opts.create = r.create elseif opts.create == false then opts.create = nil end
        local ok, reason, rule = auth.check_auth_events(r.v, ev, list, opts)
        expect(vid, want, ok, reason, rule, case[1])
      end)
    end
  end)
end

-- ---- every rejecting rule was reached -----------------------------------------

local ALL_RULES = {
  ["10"] = { "1.1", "1.2", "1.3", "1.4", "2.1", "2.2", "2.3", "2.4", "3", "4.1", "4.2.1", "4.3.2", "4.3.3",
    "4.3.5.2", "4.3.7", "4.4.1.1", "4.4.1.2", "4.4.1.3", "4.4.1.4", "4.4.1.5", "4.4.1.6", "4.4.1.8",
    "4.4.2", "4.4.3", "4.4.5", "4.5.1", "4.5.2", "4.5.3", "4.5.5", "4.6.1", "4.6.3", "4.7.1", "4.7.2",
    "4.7.4", "4.8", "5", "6.1", "7", "8", "9.1", "9.2", "9.3", "9.5.1", "9.5.2", "9.6", "9.7", "9.8",
    "9.9" },
  ["11"] = { "1.1", "1.2", "1.3", "2.1", "2.2", "2.3", "2.4", "3", "4.1", "4.2.1", "4.3.2", "4.3.3",
    "4.3.5.2", "4.3.7", "4.4.1.1", "4.4.1.2", "4.4.1.3", "4.4.1.4", "4.4.1.5", "4.4.1.6", "4.4.1.8",
    "4.4.2", "4.4.3", "4.4.5", "4.5.1", "4.5.2", "4.5.3", "4.5.5", "4.6.1", "4.6.3", "4.7.1", "4.7.2",
    "4.7.4", "4.8", "5", "6.1", "7", "8", "9.1", "9.2", "9.3", "9.5.1", "9.5.2", "9.6", "9.7", "9.8",
    "9.9" },
  ["12"] = { "1.1", "1.2", "1.3", "1.4", "2", "3.1", "3.2", "3.3", "3.5", "4", "5.1", "5.2.1", "5.3.2",
    "5.3.3", "5.3.5.2", "5.3.7", "5.4.1.1", "5.4.1.2", "5.4.1.3", "5.4.1.4", "5.4.1.5", "5.4.1.6",
    "5.4.1.8", "5.4.2", "5.4.3", "5.4.5", "5.5.1", "5.5.2", "5.5.3", "5.5.5", "5.6.1", "5.6.3", "5.7.1",
    "5.7.2", "5.7.4", "5.8", "6", "7.1", "8", "9", "10.1", "10.2", "10.3", "10.4", "10.6.1", "10.6.2",
    "10.7", "10.8", "10.9", "10.10" },
}

-- Versions 3-9: v10's rules, without those the version lacks, renumbered;
-- v3-v5 add the m.room.aliases rules 4.1 and 4.2.
for _, vid in ipairs({ "3", "4", "5", "6", "7", "8", "9" }) do
  local n = tonumber(vid)
  local list, dup = {}, {}
  local absent = { ["9.1"] = true, ["9.2"] = true }
  if n < 8 then absent["4.2.1"], absent["4.3.5.2"] = true, true end
  if n < 7 then absent["4.7.1"], absent["4.7.2"], absent["4.7.4"] = true, true, true end
  for _, rule in ipairs(ALL_RULES["10"]) do
    local label = relabel(vid, rule)
    if not absent[rule] and not dup[label] then dup[label] = true; list[#list + 1] = label end
  end
  if n < 6 then list[#list + 1] = "4.1"; list[#list + 1] = "4.2" end
  ALL_RULES[vid] = list
end

describe("loom.room.auth rule coverage", function()
  for _, vid in ipairs(VERSIONS) do
    it("every rejecting rule of v" .. vid .. " was reached, and no other", function()
      local want = {}
      for _, rule in ipairs(ALL_RULES[vid]) do
        want[rule] = true
        assert.is_true(seen[vid][rule] == true, "rule " .. rule .. " of v" .. vid .. " never rejected")
      end
      for rule in pairs(seen[vid]) do
        assert.is_true(want[rule] == true, "unexpected rule " .. rule .. " in v" .. vid)
      end
    end)
  end
end)

-- ---- power levels, selection, helpers -------------------------------------------

describe("loom.room.auth power levels", function()
  it("defaults without an m.room.power_levels event", function()
    for _, vid in ipairs(VERSIONS) do
      local r = fresh(vid)
      local v, state = r.v, r:state()
      if v.creators_have_infinite_power then
        assert.equals(math.huge, auth.power_level(v, state, ALICE))
        assert.equals(math.huge, auth.power_level(v, state, DAVE))
      else
        assert.equals(100, auth.power_level(v, state, ALICE))
      end
      assert.equals(0, auth.power_level(v, state, BOB))
      assert.same({ ban = 50, kick = 50, redact = 50, invite = 0, users_default = 0,
        events_default = 0, state_default = 0 }, auth.levels(v, state))
      assert.equals(0, auth.required_level(v, state, "m.room.name", true))
      assert.equals(0, auth.required_level(v, state, "m.room.message", false))
    end
  end)

  it("v10 takes the creator from content.creator, v11 from the sender", function()
    local r10 = fresh("10", { creator = BOB })
    assert.equals(100, auth.power_level(r10.v, r10:state(), BOB))
    assert.equals(0, auth.power_level(r10.v, r10:state(), ALICE))
    local r11 = fresh("11", { creator = BOB })
    assert.equals(0, auth.power_level(r11.v, r11:state(), BOB))
    assert.equals(100, auth.power_level(r11.v, r11:state(), ALICE))
  end)

  it("reads users, users_default and the named levels", function()
    for _, vid in ipairs(VERSIONS) do
      local r = standard(vid, { pl = { users_default = 5, ban = 70, events_default = 3 } })
      local v, state = r.v, r:state()
      assert.equals(75, auth.power_level(v, state, ADMIN))
      assert.equals(5, auth.power_level(v, state, CAROL))
      local levels = auth.levels(v, state)
      assert.equals(70, levels.ban)
      assert.equals(50, levels.state_default)
      assert.equals(50, auth.required_level(v, state, "m.room.name", true))
      assert.equals(100, auth.required_level(v, state, "m.room.topic", true))
      assert.equals(50, auth.required_level(v, state, "x.other", true))
      assert.equals(3, auth.required_level(v, state, "x.other", false))
    end
  end)

  it("missing fields of a power_levels event take the defaults", function()
    local r = standard("11")
    r:pl({})
    local levels = auth.levels(r.v, r:state())
    assert.same({ ban = 50, kick = 50, redact = 50, invite = 0, users_default = 0,
      events_default = 0, state_default = 50 }, levels)
    assert.equals(0, auth.power_level(r.v, r:state(), ALICE))
  end)

  it("non-integer values count as absent when reading levels", function()
    local r = standard("11")
    r:pl({ users = { [BOB] = "90", [MOD] = 40.0 }, users_default = "7", ban = "1", kick = 20,
      events = { ["m.room.name"] = "0" }, state_default = 1.5 })
    local v, state = r.v, r:state()
    assert.equals(0, auth.power_level(v, state, BOB))
    assert.equals(0, auth.power_level(v, state, MOD))
    local levels = auth.levels(v, state)
    assert.equals(50, levels.ban)
    assert.equals(20, levels.kick)
    assert.equals(50, levels.state_default)
    assert.equals(50, auth.required_level(v, state, "m.room.name", true))
  end)

  it("v12 creators are infinite even when a power_levels event exists", function()
    local r = standard("12")
    assert.equals(math.huge, auth.power_level(r.v, r:state(), ALICE))
    assert.equals(math.huge, auth.power_level(r.v, r:state(), DAVE))
    assert.equals(75, auth.power_level(r.v, r:state(), ADMIN))
  end)
end)

describe("loom.room.auth selection", function()
  local function ids(list) local t = {} for _, id in ipairs(list) do t[#t + 1] = id end table.sort(t) return t end
  local function sorted(t) table.sort(t) return t end

  it("selects create (not in v12), power levels and the sender's membership", function()
    for _, vid in ipairs(VERSIONS) do
      local r = standard(vid)
      local ev = r:ev({ sender = BOB })
      local want = { r:get("m.room.power_levels").event_id, r:get("m.room.member", BOB).event_id }
      if not r.v.room_id_is_create_hash then want[#want + 1] = r.create.event_id end
      local got = auth.select(r.v, ev, r:state())
      assert.is_true(json.is_array(got))
      assert.same(sorted(want), ids(got))
    end
  end)

  it("adds the target, join rules, third-party invite and authorising user for members", function()
    for _, vid in ipairs(VERSIONS) do
      local r = standard(vid)
      local signed = tpi_setup(r)
      local inv = tpi_invite(r, signed, MOD, CAROL)
      r:member(CAROL, "leave")
      local want = { r:get("m.room.power_levels").event_id, r:get("m.room.member", MOD).event_id,
        r:get("m.room.member", CAROL).event_id, r:get("m.room.join_rules").event_id,
        r:get("m.room.third_party_invite", "tok").event_id }
      if not r.v.room_id_is_create_hash then want[#want + 1] = r.create.event_id end
      assert.same(sorted(want), ids(auth.select(r.v, inv, r:state())))

      local join = r:member_ev(BOB, BOB, "join", { join_authorised_via_users_server = MOD })
      want = { r:get("m.room.power_levels").event_id, r:get("m.room.member", BOB).event_id,
        r:get("m.room.join_rules").event_id }
      if not r.v.room_id_is_create_hash then want[#want + 1] = r.create.event_id end
      -- the authorising user's membership only where restricted rooms exist (v8+)
      local with_via = { table.unpack(want) }
      with_via[#with_via + 1] = r:get("m.room.member", MOD).event_id
      assert.same(sorted(r.v.restricted_join_rule and with_via or want), ids(auth.select(r.v, join, r:state())))
      want = with_via

      local knock = r:member_ev(CAROL, CAROL, "knock")
      assert.equals(#want - 1, #auth.select(r.v, knock, r:state())) -- no authorising user
      local leave = r:member_ev(MOD, BOB, "leave")
      assert.equals(#want - 1, #auth.select(r.v, leave, r:state()))
      local ban = r:member_ev(MOD, CAROL, "ban")
      assert.equals(#want - 1, #auth.select(r.v, ban, r:state()))
    end
  end)

  it("selects only what exists, and nothing for a create event", function()
    local r = fresh("11")
    local ev = r:member_ev(ALICE, ALICE, "join")
    assert.same({ r.create.event_id }, ids(auth.select(r.v, ev, r:state())))
    assert.same({}, ids(auth.select(r.v, r.create, r:state())))
    local r12 = fresh("12")
    assert.same({}, ids(auth.select(r12.v, r12:member_ev(ALICE, ALICE, "join"), r12:state())))
  end)

  it("auth_types lists the pairs", function()
    local v = assert(version.get("12"))
    local ev = { type = "m.room.member", sender = BOB, state_key = BOB, content = { membership = "join" } }
    assert.same({ { "m.room.power_levels", "" }, { "m.room.member", BOB }, { "m.room.join_rules", "" } },
      auth.auth_types(v, ev))
  end)
end)

describe("loom.room.auth helpers", function()
  it("is_power_event", function()
    local r = standard("11")
    assert.is_true(auth.is_power_event(r:get("m.room.power_levels")))
    assert.is_true(auth.is_power_event(r:get("m.room.join_rules")))
    assert.is_true(auth.is_power_event(r:member_ev(MOD, BOB, "leave")))
    assert.is_true(auth.is_power_event(r:member_ev(MOD, BOB, "ban")))
    assert.is_false(auth.is_power_event(r:member_ev(BOB, BOB, "leave")))
    assert.is_false(auth.is_power_event(r:member_ev(MOD, BOB, "invite")))
    assert.is_false(auth.is_power_event(r:ev({ type = "m.room.topic", state_key = "" })))
    assert.is_false(auth.is_power_event(r:ev({ type = "m.room.power_levels" })))
  end)

  it("valid_user_id", function()
    assert.is_true(auth.valid_user_id("@a:b"))
    assert.is_true(auth.valid_user_id("@a:b.example:8448"))
    for _, bad in ipairs({ "a:b", "@:b", "@a:", "@a", 5, ("@" .. ("x"):rep(251) .. ":b.c") }) do
      assert.is_false(auth.valid_user_id(bad), tostring(bad))
    end
  end)

  it("state_of builds a state function from events", function()
    local r = standard("11")
    local state = auth.state_of({ r.create, r:get("m.room.member", BOB) })
    assert.equals(r.create, state("m.room.create", ""))
    assert.is_nil(state("m.room.power_levels", ""))
  end)

  it("raises on misuse", function()
    local v = assert(version.get("11"))
    assert.has_error(function() auth.check("11", {}, function() end) end)
    assert.has_error(function() auth.check(v, "x", function() end) end)
    assert.has_error(function() auth.check(v, {}, {}) end)
    assert.has_error(function() auth.select(v, {}, nil) end)
    assert.has_error(function() auth.check_auth_events(v, {}, nil) end)
  end)
end)
