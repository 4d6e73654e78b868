-- Differential specs: the same client requests against loom and against
-- Synapse 1.67 (spec/support/synapse.lua starts it from the shared peer
-- folder; scripts/deps.sh installs its Debian packages), comparing what must
-- match — status, errcode, which keys are present — where the Matrix spec
-- leaves room. IDs, tokens and timestamps are never compared, only whether
-- they are equal to each other within one server. Both servers are named
-- diff.test, so user IDs and aliases compare as they are.
--
-- Where Synapse 1.67 and the current spec disagree, the case says so and
-- states both answers (`spec`), so that a change on either side shows up.
local tesths = require "support.hs"
local synapse = require "support.synapse"
local json = require("loom.core").json

local NAME = "diff.test"
local enc = tesths.enc
local null = json.null

local loom_t, peer
local servers = {}

local function call(s, method, path, body, token)
  return s.c:request(method, "/_matrix/client/v3" .. path, body, token)
end

-- Registration through user-interactive auth (m.login.dummy), as clients do.
local function register(s, user)
  local body = { username = user, password = "pw-" .. user }
  local r = call(s, "POST", "/register", body)
  assert(r.status == 401 and r.json and r.json.session, "register " .. user .. ": " .. r.body)
  body.auth = { type = "m.login.dummy", session = r.json.session }
  r = call(s, "POST", "/register", body)
  assert(r.status == 200, "register " .. user .. ": " .. r.body)
  return r.json
end

local function create(s, who, body)
  body = body or {}
  body.room_version = body.room_version or "10"
  local r = call(s, "POST", "/createRoom", body, who.access_token)
  assert(r.status == 200, "createRoom: " .. r.body)
  return r.json.room_id
end

local function join(s, who, room)
  local r = call(s, "POST", "/rooms/" .. enc(room) .. "/join", {}, who.access_token)
  assert(r.status == 200, "join: " .. r.body)
end

local function send(s, who, room, content, etype)
  s.txn = (s.txn or 0) + 1
  local r = call(s, "PUT", ("/rooms/%s/send/%s/d%d"):format(enc(room), etype or "m.room.message", s.txn),
    content or { msgtype = "m.text", body = "hello" }, who.access_token)
  assert(r.status == 200, "send: " .. r.body)
  return r.json.event_id
end

local function state(s, who, room, etype, key, content)
  return call(s, "PUT", ("/rooms/%s/state/%s/%s"):format(enc(room), etype, enc(key or "")), content, who.access_token)
end

-- What is compared of a response: status, errcode, plus `extra` fields.
local function outcome(r, extra)
  local o = { status = r.status, errcode = r.json and r.json.errcode or nil }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t or {}) do ks[#ks + 1] = k end
  table.sort(ks)
  return table.concat(ks, ",")
end

-- A room alice made in which bob is joined; carol has never been in it.
local function room_with_bob(s)
  local room = create(s, s.alice, { preset = "public_chat" })
  join(s, s.bob, room)
  return room
end

local cases = {}
local function case(name, fn, spec) cases[#cases + 1] = { name = name, fn = fn, spec = spec } end

case("kicking a banned user", function(s)
  local room = room_with_bob(s)
  assert(call(s, "POST", "/rooms/" .. enc(room) .. "/ban", { user_id = s.bob.user_id }, s.alice.access_token)
    .status == 200)
  return outcome(call(s, "POST", "/rooms/" .. enc(room) .. "/kick", { user_id = s.bob.user_id }, s.alice.access_token))
end)

case("kicking a user who was never in the room", function(s)
  local room = room_with_bob(s)
  return outcome(call(s, "POST", "/rooms/" .. enc(room) .. "/kick", { user_id = s.carol.user_id },
    s.alice.access_token))
end)

case("kicking a user who left", function(s)
  local room = room_with_bob(s)
  assert(call(s, "POST", "/rooms/" .. enc(room) .. "/leave", {}, s.bob.access_token).status == 200)
  return outcome(call(s, "POST", "/rooms/" .. enc(room) .. "/kick", { user_id = s.bob.user_id }, s.alice.access_token))
end)

case("m.room.canonical_alias naming another room's alias", function(s)
  local other = create(s, s.alice)
  local alias = "#other" .. (s.txn or 0) .. ":" .. NAME
  assert(call(s, "PUT", "/directory/room/" .. enc(alias), { room_id = other }, s.alice.access_token).status == 200)
  local room = create(s, s.alice)
  return outcome(state(s, s.alice, room, "m.room.canonical_alias", "", { alias = alias }))
end)

case("m.room.canonical_alias naming an alias that does not exist", function(s)
  local room = create(s, s.alice)
  return outcome(state(s, s.alice, room, "m.room.canonical_alias", "", { alias = "#nowhere:" .. NAME }))
end)

case("setting state to its current content", function(s)
  local room = create(s, s.alice)
  local a = state(s, s.alice, room, "m.room.topic", "", { topic = "same" })
  local b = state(s, s.alice, room, "m.room.topic", "", { topic = "same" })
  return outcome(b, { same_event_id = a.json.event_id == b.json.event_id })
end)

case("/joined_members of users without a display name or avatar", function(s)
  local room = room_with_bob(s)
  local r = call(s, "GET", "/rooms/" .. enc(room) .. "/joined_members", nil, s.alice.access_token)
  local bob = r.json.joined and r.json.joined[s.bob.user_id] or {}
  return outcome(r, { keys = sorted_keys(r.json), member_keys = sorted_keys(bob),
    avatar_null = bob.avatar_url == null, name = bob.display_name })
end)

case("/event of an event from before the user joined (history visibility joined)", function(s)
  local room = create(s, s.alice, { preset = "public_chat",
    initial_state = { { type = "m.room.history_visibility", state_key = "", content = { history_visibility = "joined" } } } })
  local ev = send(s, s.alice, room)
  join(s, s.bob, room)
  return outcome(call(s, "GET", ("/rooms/%s/event/%s"):format(enc(room), enc(ev)), nil, s.bob.access_token))
end)

case("/event in a room the user was never in", function(s)
  local room = create(s, s.alice)
  local ev = send(s, s.alice, room)
  return outcome(call(s, "GET", ("/rooms/%s/event/%s"):format(enc(room), enc(ev)), nil, s.carol.access_token))
end)

case("/event of an event ID that does not exist", function(s)
  local room = create(s, s.alice)
  return outcome(call(s, "GET", ("/rooms/%s/event/%s"):format(enc(room), enc("$nosuchevent")), nil,
    s.alice.access_token))
end)

case("another user's filter, through their user ID and through one's own", function(s)
  local r = call(s, "POST", "/user/" .. enc(s.alice.user_id) .. "/filter", { room = { timeline = { limit = 3 } } },
    s.alice.access_token)
  assert(r.status == 200, r.body)
  local id = r.json.filter_id
  local theirs = call(s, "GET", ("/user/%s/filter/%s"):format(enc(s.alice.user_id), enc(id)), nil, s.bob.access_token)
  local mine = call(s, "GET", ("/user/%s/filter/%s"):format(enc(s.bob.user_id), enc(id)), nil, s.bob.access_token)
  return { theirs = outcome(theirs), mine = outcome(mine) }
end)

case("uploading a filter for another user", function(s)
  return outcome(call(s, "POST", "/user/" .. enc(s.alice.user_id) .. "/filter", {}, s.bob.access_token))
end)

case("a filter with timeline limit 0", function(s)
  local r = call(s, "POST", "/user/" .. enc(s.alice.user_id) .. "/filter", { room = { timeline = { limit = 0 } } },
    s.alice.access_token)
  local o = outcome(r)
  if r.status == 200 then
    local room = create(s, s.alice)
    send(s, s.alice, room)
    local sync = call(s, "GET", "/sync?timeout=0&filter=" .. enc(r.json.filter_id), nil, s.alice.access_token)
    local joined = sync.json.rooms and sync.json.rooms.join and sync.json.rooms.join[room]
    o.sync = sync.status
    o.events = joined and #joined.timeline.events
    o.limited = joined and joined.timeline.limited
  end
  return o
end)

case("filters naming invalid room IDs and user IDs", function(s)
  local function up(filter)
    return outcome(call(s, "POST", "/user/" .. enc(s.alice.user_id) .. "/filter", filter, s.alice.access_token))
  end
  return {
    rooms = up { room = { rooms = { "not a room id" } } },
    not_rooms = up { room = { not_rooms = { "#alias:" .. NAME } } },
    senders = up { room = { timeline = { senders = { "bob" } } } },
    not_senders = up { presence = { not_senders = { "@" } } },
    types_not_strings = up { room = { timeline = { types = { 1 } } } },
  }
end)

case("POST /publicRooms with since: null", function(s)
  local r = call(s, "POST", "/publicRooms", { since = null, limit = 5 }, s.alice.access_token)
  return outcome(r, { chunk = r.json and type(r.json.chunk) })
end)

case("/messages dir=f from the live end", function(s)
  local room = create(s, s.alice)
  send(s, s.alice, room)
  local sync = call(s, "GET", "/sync?timeout=0", nil, s.alice.access_token)
  local r = call(s, "GET", ("/rooms/%s/messages?dir=f&from=%s"):format(enc(room), enc(sync.json.next_batch)), nil,
    s.alice.access_token)
  return outcome(r, { chunk = r.json.chunk and #r.json.chunk, has_end = r.json["end"] ~= nil,
    has_start = r.json.start ~= nil })
end, "spec: `end` is omitted when there are no further events; Synapse 1.67 returns it")

case("redacting an event of another room", function(s)
  local a, b = create(s, s.alice), create(s, s.alice)
  local ev = send(s, s.alice, a)
  return outcome(call(s, "PUT", ("/rooms/%s/redact/%s/x1"):format(enc(b), enc(ev)), { reason = "x" },
    s.alice.access_token))
end)

case("PUT account data m.fully_read", function(s)
  local global = call(s, "PUT", ("/user/%s/account_data/m.fully_read"):format(enc(s.alice.user_id)),
    { event_id = "$x" }, s.alice.access_token)
  local room = create(s, s.alice)
  local per_room = call(s, "PUT", ("/user/%s/rooms/%s/account_data/m.fully_read"):format(enc(s.alice.user_id),
    enc(room)), { event_id = "$x" }, s.alice.access_token)
  return { global = outcome(global), per_room = outcome(per_room) }
end)

case("typing without a timeout", function(s)
  local room = create(s, s.alice)
  return outcome(call(s, "PUT", ("/rooms/%s/typing/%s"):format(enc(room), enc(s.alice.user_id)), { typing = true },
    s.alice.access_token))
end)

case("a receipt of an unknown type", function(s)
  local room = create(s, s.alice)
  local ev = send(s, s.alice, room)
  return outcome(call(s, "POST", ("/rooms/%s/receipt/m.unknown/%s"):format(enc(room), enc(ev)), {},
    s.alice.access_token))
end)

case("a to-device message sent twice with one transaction ID", function(s)
  local since = call(s, "GET", "/sync?timeout=0", nil, s.bob.access_token).json.next_batch
  local msg = { messages = { [s.bob.user_id] = { [s.bob.device_id] = { n = 1 } } } }
  local a = call(s, "PUT", "/sendToDevice/org.loom.diff/same", msg, s.alice.access_token)
  local b = call(s, "PUT", "/sendToDevice/org.loom.diff/same", msg, s.alice.access_token)
  local sync = call(s, "GET", "/sync?timeout=0&since=" .. enc(since), nil, s.bob.access_token)
  local n = 0
  for _, ev in ipairs(sync.json.to_device and sync.json.to_device.events or {}) do
    if ev.type == "org.loom.diff" then n = n + 1 end
  end
  return { first = outcome(a), second = outcome(b), delivered = n }
end)

local function show(v)
  return json.encode(v, { canonical = true }) or tostring(v)
end

describe("loom and Synapse 1.67 answer alike", function()
  setup(function()
    loom_t = tesths.start { server_name = NAME }
    local why
    peer, why = synapse.start(NAME)
    assert(peer, "differential specs need Synapse 1.67: " .. tostring(why))
    servers.loom = { c = loom_t }
    servers.synapse = { c = loom_t:client_for(peer.port) }
    for _, s in pairs(servers) do
      s.alice, s.bob, s.carol = register(s, "alice"), register(s, "bob"), register(s, "carol")
    end
  end)

  teardown(function()
    if peer then peer.stop() end
    if loom_t then loom_t:stop() end
  end)

  for _, c in ipairs(cases) do
    it(c.name, function()
      local want = c.fn(servers.synapse)
      local got = c.fn(servers.loom)
      assert.same(want, got, ("%s\n  synapse: %s\n  loom:    %s%s"):format(c.name, show(want), show(got),
        c.spec and "\n  " .. c.spec or ""))
    end)
  end
end)
