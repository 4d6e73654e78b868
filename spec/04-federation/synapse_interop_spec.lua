-- loom and a real Synapse 1.67 federating over TLS on 127.0.0.1 (room
-- version 10): loom joins Synapse's room and Synapse joins loom's; messages
-- and state changes both ways; history fetched by backfill; a gap while
-- loom was away, filled when the next event arrives. Then older versions:
-- loom joins a room made with Synapse's default version (9) and Synapse
-- joins a loom room of version 5 (and of version 3, whose event IDs use the
-- standard base64 alphabet); joins of version 1 and 2 rooms are refused. Synapse comes from the
-- shared peer folder (spec/support/synapse.lua); a machine without it fails
-- here with the reason.
local tesths = require "support.hs"
local synapse = require "support.synapse"
local files = require "support.files"
local uv = require "luv"

local E = tesths.enc

local function free_port()
  local tcp = uv.new_tcp()
  tcp:bind("127.0.0.1", 0)
  local port = tcp:getsockname().port
  tcp:close()
  uv.run("nowait")
  return port
end

describe("federation with Synapse 1.67", function()
  local peer, loom, syn, dir, lport
  local salice, bob, syn_room

  local function until_(pred, limit) return loom:wait_until(pred, limit, 100) end

  local function scall(method, path, body, token)
    return loom:run(function() return syn:call(method, path, body, token) end, 30000)
  end

  local function lcall(method, path, body, token)
    return loom:run(function() return loom:call(method, path, body, token) end, 30000)
  end

  local function bodies(resp)
    local out = {}
    for _, ev in ipairs(resp.json and resp.json.chunk or {}) do
      if ev.type == "m.room.message" then out[ev.content.body] = ev.sender end
    end
    return out
  end

  local function start_loom(db_path)
    loom = tesths.start {
      server_name = "localhost:" .. lport, default_room_version = "10",
      database = db_path and { path = db_path } or nil,
      federation = { port = lport, tls_certificate = dir .. "/loom.crt", tls_private_key = dir .. "/loom.key",
        verify_certificates = false, allow_ips = { "127.0.0.1/32", "::1/128" } },
    }
    syn = loom:client_for(peer.port)
  end

  setup(function()
    local why
    peer, why = synapse.start_federating()
    assert(peer, why)
    dir = files.tmpdir("loom-interop")
    lport = free_port()
    start_loom()
    local r = scall("POST", "/_matrix/client/v3/register",
      { username = "salice", password = "interop-password-1", auth = { type = "m.login.dummy" } })
    assert.equal(200, r.status, r.body)
    salice = { user_id = r.json.user_id, access_token = r.json.access_token }
    bob = loom:register("bob")
  end)

  teardown(function()
    if loom then loom:stop() end
    if peer then peer.stop() end
    if dir then files.remove_tree(dir) end
  end)

  it("joins a Synapse room, and messages and state flow both ways", function()
    local room = scall("POST", "/_matrix/client/v3/createRoom",
      { preset = "public_chat", room_version = "10", name = "On Synapse" }, salice.access_token)
    assert.equal(200, room.status, room.body)
    local room_id = room.json.room_id
    syn_room = room_id
    scall("PUT", "/_matrix/client/v3/rooms/" .. E(room_id) .. "/send/m.room.message/h1",
      { msgtype = "m.text", body = "history before bob" }, salice.access_token)
    local j = lcall("POST", "/_matrix/client/v3/join/" .. E(room_id) .. "?server_name=" .. E(peer.name), {},
      bob.access_token)
    assert.equal(200, j.status, j.body)
    -- loom holds the room's state: its name
    local name = loom:request("GET", "/_matrix/client/v3/rooms/" .. E(room_id) .. "/state/m.room.name", nil,
      bob.access_token)
    assert.equal("On Synapse", name.json.name)
    -- Synapse → loom
    scall("PUT", "/_matrix/client/v3/rooms/" .. E(room_id) .. "/send/m.room.message/s1",
      { msgtype = "m.text", body = "from synapse" }, salice.access_token)
    assert.is_true(until_(function()
      local m = loom:call("GET", "/_matrix/client/v3/rooms/" .. E(room_id) .. "/messages?dir=b&limit=10", nil,
        bob.access_token)
      return bodies(m)["from synapse"] ~= nil
    end, 15000), "loom never got Synapse's message")
    -- history from before the join, by backfill from Synapse (/messages
    -- answers with what is here when the backfill takes longer than it waits)
    assert.is_true(until_(function()
      local m = loom:call("GET", "/_matrix/client/v3/rooms/" .. E(room_id) .. "/messages?dir=b&limit=50", nil,
        bob.access_token)
      return bodies(m)["history before bob"] ~= nil
    end, 15000), "no backfilled history")
    -- loom → Synapse: a message and a topic
    lcall("PUT", "/_matrix/client/v3/rooms/" .. E(room_id) .. "/send/m.room.message/l1",
      { msgtype = "m.text", body = "from loom" }, bob.access_token)
    local t = lcall("PUT", "/_matrix/client/v3/rooms/" .. E(room_id) .. "/state/m.room.topic",
      { topic = "set by bob" }, bob.access_token)
    assert.equal(403, t.status)   -- bob has no power for state: both servers agree it is refused
    assert.is_true(until_(function()
      local sm = syn:call("GET", "/_matrix/client/v3/rooms/" .. E(room_id) .. "/messages?dir=b&limit=10", nil,
        salice.access_token)
      return bodies(sm)["from loom"] == bob.user_id
    end, 20000), "Synapse never got loom's message")
    -- Synapse's topic reaches loom
    scall("PUT", "/_matrix/client/v3/rooms/" .. E(room_id) .. "/state/m.room.topic",
      { topic = "set on synapse" }, salice.access_token)
    assert.is_true(until_(function()
      local st = loom:call("GET", "/_matrix/client/v3/rooms/" .. E(room_id) .. "/state/m.room.topic", nil,
        bob.access_token)
      return st.status == 200 and st.json.topic == "set on synapse"
    end, 15000), "loom never got the topic")
  end)

  it("fills the gap of events sent while loom was stopped once it is back", function()
    assert.is_string(syn_room, "needs the room of the first case")
    -- stop loom, keeping its database
    local db = loom.server.config.database.path
    local stopped = false
    loom.server:stop(function() stopped = true end)
    while not stopped do uv.run("once") end
    for _ = 1, 5 do uv.run("nowait") end
    loom.hs.store:close()
    for i = 1, 3 do
      local r = scall("PUT", "/_matrix/client/v3/rooms/" .. E(syn_room) .. "/send/m.room.message/away" .. i,
        { msgtype = "m.text", body = "while loom was away " .. i }, salice.access_token)
      assert.equal(200, r.status)
    end
    start_loom(db)
    -- loom speaks first: Synapse sees it is back and catches it up; loom
    -- fetches what lies between with get_missing_events
    local r = lcall("PUT", "/_matrix/client/v3/rooms/" .. E(syn_room) .. "/send/m.room.message/back",
      { msgtype = "m.text", body = "loom is back" }, bob.access_token)
    assert.equal(200, r.status, r.body)
    assert.is_true(until_(function()
      local m = loom:call("GET", "/_matrix/client/v3/rooms/" .. E(syn_room) .. "/messages?dir=b&limit=20", nil,
        bob.access_token)
      local b = bodies(m)
      return b["while loom was away 1"] and b["while loom was away 2"] and b["while loom was away 3"] and true
    end, 30000), "loom never filled the gap")
    assert.is_true(until_(function()
      local sm = syn:call("GET", "/_matrix/client/v3/rooms/" .. E(syn_room) .. "/messages?dir=b&limit=20", nil,
        salice.access_token)
      return bodies(sm)["loom is back"] ~= nil
    end, 20000), "Synapse never got loom's message after the gap")
  end)

  it("lets a Synapse user join a loom room, backfill its history and talk", function()
    local alice = loom:register("alice")
    local room_id = loom:create_room(alice, { preset = "public_chat", name = "On loom", room_version = "10" })
    loom:send(alice.access_token, room_id, { msgtype = "m.text", body = "loom history" })
    local j = scall("POST", "/_matrix/client/v3/join/" .. E(room_id) .. "?server_name=" .. E(loom.server.config
      .server_name), {}, salice.access_token)
    assert.equal(200, j.status, j.body)
    assert.is_true(until_(function()
      local jm = loom:call("GET", "/_matrix/client/v3/rooms/" .. E(room_id) .. "/joined_members", nil,
        alice.access_token)
      return jm.json.joined[salice.user_id] ~= nil
    end, 10000), "loom never saw Synapse's join")
    scall("PUT", "/_matrix/client/v3/rooms/" .. E(room_id) .. "/send/m.room.message/x1",
      { msgtype = "m.text", body = "synapse in loom's room" }, salice.access_token)
    assert.is_true(until_(function()
      local m = loom:call("GET", "/_matrix/client/v3/rooms/" .. E(room_id) .. "/messages?dir=b&limit=10", nil,
        alice.access_token)
      return bodies(m)["synapse in loom's room"] ~= nil
    end, 15000), "loom never got the message")
    loom:send(alice.access_token, room_id, { msgtype = "m.text", body = "loom answers" })
    assert.is_true(until_(function()
      local sm = syn:call("GET", "/_matrix/client/v3/rooms/" .. E(room_id) .. "/messages?dir=b&limit=20", nil,
        salice.access_token)
      local b = bodies(sm)
      return b["loom answers"] ~= nil and b["loom history"] ~= nil
    end, 20000), "Synapse never got loom's answer and history")
  end)

  it("invites a Synapse user to a loom room and is invited by one (v2 invite)", function()
    local carol = loom:register("carol")
    local lroom = loom:create_room(carol, { preset = "private_chat", name = "Invite only", room_version = "10" })
    local inv = lcall("POST", "/_matrix/client/v3/rooms/" .. E(lroom) .. "/invite", { user_id = salice.user_id },
      carol.access_token)
    assert.equal(200, inv.status, inv.body)
    local s = scall("GET", "/_matrix/client/v3/sync?timeout=0", nil, salice.access_token)
    assert.is_table(s.json.rooms.invite and s.json.rooms.invite[lroom], "no invite in Synapse's sync")
    local j = scall("POST", "/_matrix/client/v3/join/" .. E(lroom), {}, salice.access_token)
    assert.equal(200, j.status, j.body)
    assert.is_true(until_(function()
      local jm = loom:call("GET", "/_matrix/client/v3/rooms/" .. E(lroom) .. "/joined_members", nil,
        carol.access_token)
      return jm.json.joined[salice.user_id] ~= nil
    end, 10000), "loom never saw the invited Synapse user join")
    -- Synapse invites a loom user
    local sroom = scall("POST", "/_matrix/client/v3/createRoom",
      { preset = "private_chat", room_version = "10", name = "Synapse invite" }, salice.access_token)
    assert.equal(200, sroom.status, sroom.body)
    local sroom_id = sroom.json.room_id
    inv = scall("POST", "/_matrix/client/v3/rooms/" .. E(sroom_id) .. "/invite", { user_id = carol.user_id },
      salice.access_token)
    assert.equal(200, inv.status, inv.body)
    local ls = lcall("GET", "/_matrix/client/v3/sync?timeout=0", nil, carol.access_token)
    local li = ls.json.rooms.invite[sroom_id]
    assert.is_table(li, "no invite in loom's sync")
    local named = false
    for _, e in ipairs(li.invite_state.events) do
      if e.type == "m.room.name" and e.content.name == "Synapse invite" then named = true end
    end
    assert.is_true(named, "the invite came without the room's stripped state")
    j = lcall("POST", "/_matrix/client/v3/join/" .. E(sroom_id), {}, carol.access_token)
    assert.equal(200, j.status, j.body)
    assert.is_true(until_(function()
      local jm = syn:call("GET", "/_matrix/client/v3/rooms/" .. E(sroom_id) .. "/joined_members", nil,
        salice.access_token)
      return jm.status == 200 and jm.json.joined[carol.user_id] ~= nil
    end, 15000), "Synapse never saw the invited loom user join")
  end)

  it("answers and asks profile and alias queries, and sends to-device messages", function()
    local dan = loom:register("dan")
    local r = lcall("PUT", "/_matrix/client/v3/profile/" .. E(dan.user_id) .. "/displayname",
      { displayname = "Dan on loom" }, dan.access_token)
    assert.equal(200, r.status)
    local sp = scall("GET", "/_matrix/client/v3/profile/" .. E(dan.user_id), nil, salice.access_token)
    assert.equal(200, sp.status, sp.body)
    assert.equal("Dan on loom", sp.json.displayname)
    local lp = lcall("GET", "/_matrix/client/v3/profile/" .. E(salice.user_id) .. "/displayname", nil,
      dan.access_token)
    assert.equal(200, lp.status, lp.body)
    assert.equal("salice", lp.json.displayname)
    loom:create_room(dan, { preset = "public_chat", room_alias_name = "interop", room_version = "10" })
    local alias = "#interop:" .. loom.server.config.server_name
    local sd = scall("GET", "/_matrix/client/v3/directory/room/" .. E(alias), nil, salice.access_token)
    assert.equal(200, sd.status, sd.body)
    assert.equal(loom.server.config.server_name, sd.json.servers[1])
    local sj = scall("POST", "/_matrix/client/v3/join/" .. E(alias), {}, salice.access_token)
    assert.equal(200, sj.status, sj.body)
    assert.equal(sd.json.room_id, sj.json.room_id)
    -- to-device: loom -> Synapse
    local td = lcall("PUT", "/_matrix/client/v3/sendToDevice/m.interop.ping/t1",
      { messages = { [salice.user_id] = { ["*"] = { ping = 1 } } } }, dan.access_token)
    assert.equal(200, td.status, td.body)
    assert.is_true(until_(function()
      local s = syn:call("GET", "/_matrix/client/v3/sync?timeout=0", nil, salice.access_token)
      for _, e in ipairs(s.json and s.json.to_device and s.json.to_device.events or {}) do
        if e.type == "m.interop.ping" and e.sender == dan.user_id then return true end
      end
      return false
    end, 15000), "Synapse never delivered loom's to-device message")
  end)

  it("knocks both ways with Synapse, and rejects a Synapse invite", function()
    local erin = loom:register("erin")
    -- loom knocks on a Synapse room
    local sroom = scall("POST", "/_matrix/client/v3/createRoom", { preset = "private_chat", room_version = "10",
      initial_state = { { type = "m.room.join_rules", state_key = "", content = { join_rule = "knock" } } } },
      salice.access_token)
    assert.equal(200, sroom.status, sroom.body)
    local sroom_id = sroom.json.room_id
    local k = lcall("POST", "/_matrix/client/v3/knock/" .. E(sroom_id) .. "?server_name=" .. E(peer.name),
      { reason = "from loom" }, erin.access_token)
    assert.equal(200, k.status, k.body)
    -- Synapse's stripped state shows in loom's /sync
    local ls = lcall("GET", "/_matrix/client/v3/sync?timeout=0", nil, erin.access_token)
    local ks = ls.json.rooms.knock and ls.json.rooms.knock[sroom_id]
    assert.is_table(ks, "no knock in loom's sync")
    local rule
    for _, e in ipairs(ks.knock_state.events) do
      if e.type == "m.room.join_rules" then rule = e.content.join_rule end
    end
    assert.equal("knock", rule)
    assert.is_true(until_(function()
      local st = syn:call("GET", "/_matrix/client/v3/rooms/" .. E(sroom_id) .. "/state/m.room.member/"
        .. E(erin.user_id), nil, salice.access_token)
      return st.status == 200 and st.json.membership == "knock"
    end, 15000), "Synapse never saw loom's knock")
    -- a Synapse user knocks on a loom room
    local lroom = loom:create_room(erin, { preset = "private_chat", room_version = "10" })
    local rs = lcall("PUT", "/_matrix/client/v3/rooms/" .. E(lroom) .. "/state/m.room.join_rules",
      { join_rule = "knock" }, erin.access_token)
    assert.equal(200, rs.status, rs.body)
    k = scall("POST", "/_matrix/client/v3/knock/" .. E(lroom) .. "?server_name="
      .. E(loom.server.config.server_name), {}, salice.access_token)
    assert.equal(200, k.status, k.body)
    local m = lcall("GET", "/_matrix/client/v3/rooms/" .. E(lroom) .. "/state/m.room.member/" .. E(salice.user_id),
      nil, erin.access_token)
    assert.equal("knock", m.json.membership)
    -- a Synapse invite, rejected from loom
    local r2 = scall("POST", "/_matrix/client/v3/createRoom", { preset = "private_chat", room_version = "10" },
      salice.access_token)
    local r2_id = r2.json.room_id
    local inv = scall("POST", "/_matrix/client/v3/rooms/" .. E(r2_id) .. "/invite", { user_id = erin.user_id },
      salice.access_token)
    assert.equal(200, inv.status, inv.body)
    local l = lcall("POST", "/_matrix/client/v3/rooms/" .. E(r2_id) .. "/leave", {}, erin.access_token)
    assert.equal(200, l.status, l.body)
    assert.is_true(until_(function()
      local st = syn:call("GET", "/_matrix/client/v3/rooms/" .. E(r2_id) .. "/state/m.room.member/"
        .. E(erin.user_id), nil, salice.access_token)
      return st.status == 200 and st.json.membership == "leave"
    end, 15000), "Synapse never saw the rejection")
  end)

  it("joins a room made with Synapse's default room version (9), messages both ways", function()
    local room = scall("POST", "/_matrix/client/v3/createRoom", { preset = "public_chat", name = "Default" },
      salice.access_token)
    assert.equal(200, room.status, room.body)
    local room_id = room.json.room_id
    local cr = scall("GET", "/_matrix/client/v3/rooms/" .. E(room_id) .. "/state/m.room.create/", nil,
      salice.access_token)
    assert.equal("9", cr.json.room_version)
    scall("PUT", "/_matrix/client/v3/rooms/" .. E(room_id) .. "/send/m.room.message/d0",
      { msgtype = "m.text", body = "v9 history" }, salice.access_token)
    local j = lcall("POST", "/_matrix/client/v3/join/" .. E(room_id) .. "?server_name=" .. E(peer.name), {},
      bob.access_token)
    assert.equal(200, j.status, j.body)
    local lcr = loom:request("GET", "/_matrix/client/v3/rooms/" .. E(room_id) .. "/state/m.room.create/", nil,
      bob.access_token)
    assert.equal("9", lcr.json.room_version)
    assert.equal("Default", loom:request("GET", "/_matrix/client/v3/rooms/" .. E(room_id) .. "/state/m.room.name",
      nil, bob.access_token).json.name)
    scall("PUT", "/_matrix/client/v3/rooms/" .. E(room_id) .. "/send/m.room.message/d1",
      { msgtype = "m.text", body = "v9 from synapse" }, salice.access_token)
    assert.is_true(until_(function()
      local m = loom:call("GET", "/_matrix/client/v3/rooms/" .. E(room_id) .. "/messages?dir=b&limit=20", nil,
        bob.access_token)
      local b = bodies(m)
      return b["v9 from synapse"] ~= nil and b["v9 history"] ~= nil
    end, 15000), "loom never got Synapse's v9 messages")
    lcall("PUT", "/_matrix/client/v3/rooms/" .. E(room_id) .. "/send/m.room.message/d2",
      { msgtype = "m.text", body = "v9 from loom" }, bob.access_token)
    assert.is_true(until_(function()
      local sm = syn:call("GET", "/_matrix/client/v3/rooms/" .. E(room_id) .. "/messages?dir=b&limit=10", nil,
        salice.access_token)
      return bodies(sm)["v9 from loom"] == bob.user_id
    end, 20000), "Synapse never got loom's v9 message")
    -- a client may not send a power level as a string, even before v10:
    -- Synapse refuses it with 400 M_BAD_JSON, as loom does
    local pl = scall("GET", "/_matrix/client/v3/rooms/" .. E(room_id) .. "/state/m.room.power_levels/", nil,
      salice.access_token)
    assert.equal(200, pl.status, pl.body)
    pl.json.users[bob.user_id] = "50"
    local put = scall("PUT", "/_matrix/client/v3/rooms/" .. E(room_id) .. "/state/m.room.power_levels/", pl.json,
      salice.access_token)
    assert.equal(400, put.status, put.body)
    assert.equal("M_BAD_JSON", put.json.errcode)
  end)

  it("refuses to join Synapse rooms of versions 1 and 2 with M_UNSUPPORTED_ROOM_VERSION", function()
    for _, rv in ipairs({ "1", "2" }) do
      local room = scall("POST", "/_matrix/client/v3/createRoom", { preset = "public_chat", room_version = rv },
        salice.access_token)
      assert.equal(200, room.status, room.body)
      local j = lcall("POST", "/_matrix/client/v3/join/" .. E(room.json.room_id) .. "?server_name=" .. E(peer.name),
        {}, bob.access_token)
      assert.equal(400, j.status, j.body)
      assert.equal("M_UNSUPPORTED_ROOM_VERSION", j.json.errcode)
      local st = loom:request("GET", "/_matrix/client/v3/rooms/" .. E(room.json.room_id) .. "/state", nil,
        bob.access_token)
      assert.is_true(st.status == 403 or st.status == 404, st.body)
    end
  end)

  for _, rv in ipairs({ "5", "3" }) do
    it("lets a Synapse user join a loom room of version " .. rv .. " and talk", function()
      local carol = loom:fresh("carol")
      local room_id = loom:create_room(carol, { preset = "public_chat", name = "v" .. rv, room_version = rv })
      loom:send(carol.access_token, room_id, { msgtype = "m.text", body = "v" .. rv .. " history" })
      local j = scall("POST", "/_matrix/client/v3/join/" .. E(room_id) .. "?server_name=" .. E(loom.server.config
        .server_name), {}, salice.access_token)
      assert.equal(200, j.status, j.body)
      local cr = scall("GET", "/_matrix/client/v3/rooms/" .. E(room_id) .. "/state/m.room.create/", nil,
        salice.access_token)
      assert.equal(rv, cr.json.room_version)
      scall("PUT", "/_matrix/client/v3/rooms/" .. E(room_id) .. "/send/m.room.message/v" .. rv,
        { msgtype = "m.text", body = "v" .. rv .. " from synapse" }, salice.access_token)
      assert.is_true(until_(function()
        local m = loom:call("GET", "/_matrix/client/v3/rooms/" .. E(room_id) .. "/messages?dir=b&limit=10", nil,
          carol.access_token)
        return bodies(m)["v" .. rv .. " from synapse"] ~= nil
      end, 15000), "loom never got the message")
      loom:send(carol.access_token, room_id, { msgtype = "m.text", body = "v" .. rv .. " from loom" })
      assert.is_true(until_(function()
        local sm = syn:call("GET", "/_matrix/client/v3/rooms/" .. E(room_id) .. "/messages?dir=b&limit=20", nil,
          salice.access_token)
        local b = bodies(sm)
        return b["v" .. rv .. " from loom"] ~= nil and b["v" .. rv .. " history"] ~= nil
      end, 20000), "Synapse never got loom's message and history")
      -- a power level as a string (valid before v10; made by the room service,
      -- as a client may not send one): Synapse reads it as 50 and lets salice
      -- set the topic, and loom accepts the topic from Synapse
      local pl = loom.hs.rooms:state_event(room_id, "m.room.power_levels", "").content
      local content = { users = { [carol.user_id] = 100, [salice.user_id] = "50" } }
      for k, v in pairs(pl) do if k ~= "users" then content[k] = v end end
      assert(loom.hs.rooms:send(room_id, { type = "m.room.power_levels", state_key = "", sender = carol.user_id,
        content = content }))
      assert.is_true(until_(function()
        local st = syn:call("GET", "/_matrix/client/v3/rooms/" .. E(room_id) .. "/state/m.room.power_levels/", nil,
          salice.access_token)
        return st.status == 200 and st.json.users[salice.user_id] == "50"
      end, 20000), "Synapse never got the power levels")
      local tp = scall("PUT", "/_matrix/client/v3/rooms/" .. E(room_id) .. "/state/m.room.topic/",
        { topic = "v" .. rv .. " topic by salice" }, salice.access_token)
      assert.equal(200, tp.status, tp.body)
      assert.is_true(until_(function()
        local st = loom:call("GET", "/_matrix/client/v3/rooms/" .. E(room_id) .. "/state/m.room.topic/", nil,
          carol.access_token)
        return st.status == 200 and st.json.topic == "v" .. rv .. " topic by salice"
      end, 20000), "loom never took salice's topic")
    end)
  end
end)
