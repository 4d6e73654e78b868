-- Joining a room through another server, between two loom servers on
-- 127.0.0.1 over TLS: make_join / send_join as the resident and as the
-- joiner, the state and auth chain checked and stored, what each side's
-- clients then see, and the read endpoints answering the joined server.
local async = require "loom.async"
local files = require "support.files"
local fed = require "support.fed"
local fedclient = require "loom.federation.client"

local E = fedclient.encode
local task = fed.task

local dir, a, b

local function fed_server(name) return fed.server(dir, name) end

-- A request made by t's client inside the loop (the handler may itself wait
-- for the other server, so t:request, which turns the loop, cannot be used
-- from a task; t:run drives both servers).
local function call(t, method, path, body, token)
  return t:run(function() return t:call(method, path, body, token) end, 20000)
end

describe("joining through another server", function()
  local alice, bob, room, first_msg

  setup(function()
    dir = files.tmpdir("loom-fedjoin")
    a = fed_server("a")
    b = fed_server("b")
    alice = a:register("alice")
    bob = b:register("bob")
    room = a:create_room(alice, { preset = "public_chat", name = "Federated" })
    first_msg = a:send(alice.access_token, room, { msgtype = "m.text", body = "before bob" }).json.event_id
  end)

  teardown(function()
    a:stop(); b:stop()
    async.finish_closing()
    files.remove_tree(dir)
  end)

  it("refuses a join through a server that does not know the room", function()
    local r = call(b, "POST", "/_matrix/client/v3/join/" .. E("!nope:" .. a.name), {}, bob.access_token)
    assert.equal(404, r.status)
    assert.equal("M_NOT_FOUND", r.json.errcode)
  end)

  it("joins a public room of another server by room ID", function()
    local r = call(b, "POST", "/_matrix/client/v3/join/" .. E(room) .. "?server_name=" .. E(a.name), {},
      bob.access_token)
    assert.equal(200, r.status, r.body)
    assert.equal(room, r.json.room_id)
    -- the resident stored the join: bob is a member on a
    local members = a:request("GET", "/_matrix/client/v3/rooms/" .. E(room) .. "/joined_members", nil,
      alice.access_token)
    assert.equal(200, members.status)
    assert.is_truthy(members.json.joined[bob.user_id])
    -- and b knows the room's state: name and both members
    local st = b:request("GET", "/_matrix/client/v3/rooms/" .. E(room) .. "/state/m.room.name", nil, bob.access_token)
    assert.equal(200, st.status)
    assert.equal("Federated", st.json.name)
    local bm = b:request("GET", "/_matrix/client/v3/rooms/" .. E(room) .. "/joined_members", nil, bob.access_token)
    assert.is_truthy(bm.json.joined[alice.user_id])
    assert.is_truthy(bm.json.joined[bob.user_id])
    -- b's client sees the room in its sync, joined
    local s = b:request("GET", "/_matrix/client/v3/sync", nil, bob.access_token)
    assert.equal(200, s.status)
    assert.is_truthy(s.json.rooms.join[room])
  end)

  it("serves the joined server the room's graph", function()
    local r = task(function()
      local out = {}
      out.event = { b.hs.federation:request(a.name, "GET", "/_matrix/federation/v1/event/" .. E(first_msg)) }
      out.ids = { b.hs.federation:request(a.name, "GET", "/_matrix/federation/v1/state_ids/" .. E(room),
        { query = { event_id = first_msg } }) }
      out.back = { b.hs.federation:request(a.name, "GET", "/_matrix/federation/v1/backfill/" .. E(room),
        { query = { v = first_msg, limit = "5" } }) }
      out.missing = { b.hs.federation:request(a.name, "POST", "/_matrix/federation/v1/get_missing_events/" .. E(room),
        { body = { earliest_events = require("loom.core").json.array(), latest_events = { first_msg }, limit = 3 } }) }
      return out
    end)
    assert.equal(200, r.event[1])
    assert.equal("before bob", r.event[2].pdus[1].content.body)
    assert.equal(200, r.ids[1])
    assert.is_true(#r.ids[2].pdu_ids >= 5)
    assert.is_true(#r.ids[2].auth_chain_ids >= 1)
    assert.equal(200, r.back[1])
    assert.equal(5, #r.back[2].pdus)
    assert.equal("before bob", r.back[2].pdus[1].content.body)
    assert.equal(200, r.missing[1])
    assert.equal(3, #r.missing[2].events)
    assert.is_true(r.missing[2].events[1].depth <= r.missing[2].events[3].depth)
  end)

  it("refuses make_join for a user of another server and for unknown room versions", function()
    local r = task(function()
      local x = { b.hs.federation:request(a.name, "GET", "/_matrix/federation/v1/make_join/" .. E(room) .. "/"
        .. E(alice.user_id), { query = { ver = { "10", "11" } } }) }
      local y = { b.hs.federation:request(a.name, "GET", "/_matrix/federation/v1/make_join/" .. E(room) .. "/"
        .. E("@carol:" .. b.name), { query = { ver = { "1" } } }) }
      return { x, y }
    end)
    assert.equal(403, r[1][1])
    assert.equal(400, r[2][1])
    assert.equal("M_INCOMPATIBLE_ROOM_VERSION", r[2][2].errcode)
    assert.is_string(r[2][2].room_version)
  end)
end)

describe("messages and EDUs between two servers", function()
  local alice, bob, room

  setup(function()
    dir = files.tmpdir("loom-fedsend")
    a = fed_server("a")
    b = fed_server("b")
    alice = a:register("alice")
    bob = b:register("bob")
    room = a:create_room(alice, { preset = "public_chat" })
    local r = call(b, "POST", "/_matrix/client/v3/join/" .. E(room) .. "?server_name=" .. E(a.name), {},
      bob.access_token)
    assert.equal(200, r.status, r.body)
  end)

  teardown(function()
    a:stop(); b:stop()
    async.finish_closing()
    files.remove_tree(dir)
  end)

  -- Turns the loop (both servers run in it) until pred() or limit ms.
  local function until_(pred, limit)
    return a:run(function()
      local waited = 0
      while not pred() and waited < (limit or 5000) do a:sleep(20); waited = waited + 20 end
      return pred()
    end, (limit or 5000) + 2000)
  end

  local function timeline_bodies(t, who)
    local s = t:request("GET", "/_matrix/client/v3/rooms/" .. E(room) .. "/messages?dir=b&limit=50", nil,
      who.access_token)
    local out = {}
    for _, ev in ipairs(s.json.chunk or {}) do
      if ev.type == "m.room.message" then out[#out + 1] = ev.content.body end
    end
    return out
  end

  local function has(list, x) for _, v in ipairs(list) do if v == x then return true end end return false end

  it("delivers messages both ways", function()
    local id = call(a, "PUT", "/_matrix/client/v3/rooms/" .. E(room) .. "/send/m.room.message/1",
      { msgtype = "m.text", body = "hello from a" }, alice.access_token).json.event_id
    assert.is_string(id)
    assert.is_true(until_(function() return b.hs.store:event(id) ~= nil end), "b never got the message")
    assert.is_true(has(timeline_bodies(b, bob), "hello from a"))
    local id2 = call(b, "PUT", "/_matrix/client/v3/rooms/" .. E(room) .. "/send/m.room.message/1",
      { msgtype = "m.text", body = "hello from b" }, bob.access_token).json.event_id
    assert.is_true(until_(function() return a.hs.store:event(id2) ~= nil end), "a never got the reply")
    assert.is_true(has(timeline_bodies(a, alice), "hello from b"))
  end)

  it("delivers typing notifications and read receipts", function()
    call(b, "PUT", "/_matrix/client/v3/rooms/" .. E(room) .. "/typing/" .. E(bob.user_id),
      { typing = true, timeout = 10000 }, bob.access_token)
    assert.is_true(until_(function()
      local users = a.hs.typing:users(room)
      return users[1] == bob.user_id
    end), "a never saw bob typing")
    local id = call(a, "PUT", "/_matrix/client/v3/rooms/" .. E(room) .. "/send/m.room.message/2",
      { msgtype = "m.text", body = "read me" }, alice.access_token).json.event_id
    assert.is_true(until_(function() return b.hs.store:event(id) ~= nil end))
    local r = call(b, "POST", "/_matrix/client/v3/rooms/" .. E(room) .. "/receipt/m.read/" .. E(id), {},
      bob.access_token)
    assert.equal(200, r.status)
    assert.is_true(until_(function()
      local list = a.hs.store:receipts_changes({ room }, nil, a.hs.store:receipts_position())
      for _, x in ipairs(list) do
        if x[3] == bob.user_id and x[5] == id then return true end   -- room, type, user, thread, event
      end
      return false
    end), "a never got bob's receipt")
  end)

  it("fills a gap with get_missing_events when the other server missed events", function()
    -- events a sends while b's sender is held back reach b later as one gap
    a.hs.sender.closed = true
    local ids = {}
    for i = 1, 4 do
      ids[i] = call(a, "PUT", "/_matrix/client/v3/rooms/" .. E(room) .. "/send/m.room.message/g" .. i,
        { msgtype = "m.text", body = "gap " .. i }, alice.access_token).json.event_id
    end
    -- drop what was queued but the newest: b must fetch the rest itself
    local rows = a.hs.store:outbox(b.name, nil, 50, 100)
    local older = {}
    for _, row in ipairs(rows) do if row.payload ~= ids[4] then older[#older + 1] = row.seq end end
    a.hs.store:outbox_drop(b.name, older)
    a.hs.sender.closed = false
    a.hs.sender:kick(b.name)
    assert.is_true(until_(function() return b.hs.store:event(ids[4]) ~= nil end), "b never got the newest")
    for i = 1, 3 do
      local ev, meta = b.hs.store:event(ids[i])
      assert.is_truthy(ev, "gap event " .. i .. " missing")
      assert.is_false(meta.outlier)
    end
  end)
end)
