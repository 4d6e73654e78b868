-- Presence over a real server (Client-Server API "Presence"): GET and PUT
-- /presence/{userId}/status and their errors, who may see whose presence,
-- the /sync presence section (initial, incremental, the presence filter,
-- set_presence), long-polls woken by a change, the idle and offline timers,
-- and a server with presence turned off.
local tesths = require "support.hs"
local uv = require "luv"
local sync_token = require "loom.sync.token"

local enc = tesths.enc
local V3 = "/_matrix/client/v3"

local function ppath(u) return V3 .. "/presence/" .. enc(type(u) == "table" and u.user_id or u) .. "/status" end

-- the m.presence event of `user` in a /sync body, or nil
local function presence_of(body, user)
  for _, ev in ipairs(body.presence and body.presence.events or {}) do
    if ev.sender == user.user_id then return ev end
  end
end

describe("presence", function()
  local t
  setup(function() t = tesths.start() end)
  teardown(function() t:stop() end)

  local function fresh() return t:fresh("pr") end
  local function sync(u, query)
    local r = t:request("GET", V3 .. "/sync" .. (query or ""), nil, u.access_token)
    assert.equal(200, r.status, r.body)
    return r.json
  end
  local function put(u, body, who)
    return t:request("PUT", ppath(who or u), body, u.access_token)
  end

  it("sets and reads one's own presence", function()
    local a = fresh()
    local r = put(a, { presence = "online", status_msg = "at work" })
    assert.equal(200, r.status, r.body)
    assert.same({}, r.json)
    r = t:request("GET", ppath(a), nil, a.access_token)
    assert.equal(200, r.status, r.body)
    assert.equal("online", r.json.presence)
    assert.equal("at work", r.json.status_msg)
    assert.is_true(r.json.currently_active)
    assert.is_true(math.type(r.json.last_active_ago) == "integer" and r.json.last_active_ago >= 0
      and r.json.last_active_ago < 5000)
    -- unavailable, without a status message: the message is cleared
    assert.equal(200, put(a, { presence = "unavailable" }).status)
    r = t:request("GET", ppath(a), nil, a.access_token)
    assert.equal("unavailable", r.json.presence)
    assert.is_nil(r.json.status_msg)
    assert.is_false(r.json.currently_active)
    assert.equal(200, put(a, { presence = "offline", status_msg = "gone" }).status)
    r = t:request("GET", ppath(a), nil, a.access_token)
    assert.equal("offline", r.json.presence)
    assert.equal("gone", r.json.status_msg)
  end)

  it("answers offline for a user who never had a presence", function()
    local a = fresh()
    local r = t:request("GET", ppath(a), nil, a.access_token)
    assert.equal(200, r.status)
    assert.equal("offline", r.json.presence)
  end)

  it("refuses other users, bad bodies and unknown users", function()
    local a, b = fresh(), fresh()
    local r = put(b, { presence = "online" }, a)
    assert.equal(403, r.status)
    assert.equal("M_FORBIDDEN", r.json.errcode)
    for _, case in ipairs {
      { { presence = "busy" }, "M_INVALID_PARAM" },
      { { presence = "ONLINE" }, "M_INVALID_PARAM" },
      { {}, "M_BAD_JSON" },
      { { presence = 1 }, "M_BAD_JSON" },
      { { presence = "online", status_msg = 5 }, "M_BAD_JSON" },
      { { presence = "online", status_msg = { "x" } }, "M_BAD_JSON" },
    } do
      r = put(a, case[1])
      assert.equal(400, r.status, r.body)
      assert.equal(case[2], r.json.errcode, r.body)
    end
    for _, raw in ipairs { "[1]", "not json", "" } do
      r = put(a, raw)
      assert.equal(400, r.status, raw)
      assert.is_string(r.json.errcode)
    end
    r = t:request("GET", ppath("@nobody:test.local"), nil, a.access_token)
    assert.equal(404, r.status)
    assert.equal("M_NOT_FOUND", r.json.errcode)
    r = t:request("GET", ppath("@someone:elsewhere.example"), nil, a.access_token)
    assert.equal(404, r.status)
    r = t:request("GET", ppath("not-a-user"), nil, a.access_token)
    assert.equal(400, r.status)
    assert.equal("M_INVALID_PARAM", r.json.errcode)
    r = t:request("GET", ppath(a), nil, nil)
    assert.equal(401, r.status)
  end)

  it("shows presence only to users who share a room", function()
    local a, b, c = fresh(), fresh(), fresh()
    assert.equal(200, put(b, { presence = "online", status_msg = "hi" }).status)
    local r = t:request("GET", ppath(b), nil, a.access_token)
    assert.equal(403, r.status)
    assert.equal("M_FORBIDDEN", r.json.errcode)
    local room = t:create_room(a, { preset = "public_chat" })
    t:join(b, room)
    r = t:request("GET", ppath(b), nil, a.access_token)
    assert.equal(200, r.status)
    assert.equal("online", r.json.presence)
    assert.equal("hi", r.json.status_msg)
    -- an invite is not enough
    local priv = t:create_room(a)
    assert.equal(200, t:request("POST", V3 .. "/rooms/" .. enc(priv) .. "/invite", { user_id = c.user_id },
      a.access_token).status)
    assert.equal(403, t:request("GET", ppath(a), nil, c.access_token).status)
    -- a user who left shares nothing any more
    assert.equal(200, t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/leave", {}, b.access_token).status)
    assert.equal(403, t:request("GET", ppath(b), nil, a.access_token).status)
  end)

  it("sends presence in initial and incremental syncs, only for users who share a room", function()
    local a, b, c = fresh(), fresh(), fresh()
    local room = t:create_room(a, { preset = "public_chat" })
    t:join(b, room)
    assert.equal(200, put(b, { presence = "unavailable", status_msg = "brb" }).status)
    assert.equal(200, put(c, { presence = "online" }).status)   -- shares no room with a
    -- initial: a (online: a sync sets it) and b; never c
    local body = sync(a)
    local ev = presence_of(body, b)
    assert.same({ "content", "sender", "type" }, (function()
      local k = {}; for key in pairs(ev) do k[#k + 1] = key end; table.sort(k); return k end)())
    assert.equal("m.presence", ev.type)
    assert.equal("unavailable", ev.content.presence)
    assert.equal("brb", ev.content.status_msg)
    assert.is_false(ev.content.currently_active)
    assert.equal("online", presence_of(body, a).content.presence)
    assert.is_true(presence_of(body, a).content.currently_active)
    assert.is_nil(presence_of(body, c))
    -- the token carries a presence part
    assert.is_true(sync_token.parse(body.next_batch).presence > 0)
    assert.matches("^s%d+_%d+_%d+_%d+_%d+_%d+_%d+$", body.next_batch)
    local since = body.next_batch
    -- nothing changed: no presence events
    body = sync(a, "?since=" .. enc(since))
    assert.same({}, body.presence.events)
    since = body.next_batch
    -- a change of b: only that one
    assert.equal(200, put(b, { presence = "online", status_msg = "back" }).status)
    assert.equal(200, put(c, { presence = "unavailable" }).status)
    body = sync(a, "?since=" .. enc(since))
    assert.equal(1, #body.presence.events)
    ev = presence_of(body, b)
    assert.equal("online", ev.content.presence)
    assert.equal("back", ev.content.status_msg)
    assert.is_true(ev.content.currently_active)
    since = body.next_batch
    -- going offline is sent on an incremental sync, but an initial sync leaves offline users out
    assert.equal(200, put(b, { presence = "offline" }).status)
    body = sync(a, "?since=" .. enc(since))
    assert.equal("offline", presence_of(body, b).content.presence)
    assert.is_nil(presence_of(sync(a), b))
    -- older tokens (five parts, four parts, s<n>) still work: presence from the start
    local p = sync_token.parse(body.next_batch)
    for _, old in ipairs { ("s%d_%d_%d_%d_%d"):format(p.stream, p.typing, p.receipts, p.to_device, p.account_data),
        ("s%d_%d_%d_%d"):format(p.stream, p.typing, p.receipts, p.to_device), "s" .. p.stream } do
      local r = t:request("GET", V3 .. "/sync?since=" .. enc(old), nil, a.access_token)
      assert.equal(200, r.status, old)
      assert.is_table(presence_of(r.json, a), old)
    end
  end)

  it("sends only the changes of users who share a room, among many changes", function()
    local a, b = fresh(), fresh()
    local room = t:create_room(a, { preset = "public_chat" })
    t:join(b, room)
    local since = sync(a).next_batch
    for _ = 1, 20 do assert.equal(200, put(fresh(), { presence = "online" }).status) end
    assert.equal(200, put(b, { presence = "unavailable" }).status)
    local body = sync(a, "?since=" .. enc(since))
    assert.equal(1, #body.presence.events)
    assert.equal("unavailable", presence_of(body, b).content.presence)
    -- and with few changes
    since = body.next_batch
    assert.equal(200, put(fresh(), { presence = "online" }).status)
    assert.equal(200, put(b, { presence = "online" }).status)
    body = sync(a, "?since=" .. enc(since))
    assert.equal(1, #body.presence.events)
    assert.equal("online", presence_of(body, b).content.presence)
  end)

  it("sends the presence of users who newly share a room on an incremental sync", function()
    local a, c, d = fresh(), fresh(), fresh()
    local room = t:create_room(a, { preset = "public_chat" })
    local other = t:create_room(d, { preset = "public_chat" })
    assert.equal(200, put(c, { presence = "unavailable", status_msg = "c here" }).status)
    assert.equal(200, put(d, { presence = "online" }).status)
    local since = sync(a).next_batch
    assert.is_nil(presence_of(sync(a, "?since=" .. enc(since)), c))
    -- c joins a's room: c's join is in a's timeline, and c's presence comes along
    t:join(c, room)
    local body = sync(a, "?since=" .. enc(since))
    local ev = presence_of(body, c)
    assert.equal("unavailable", ev.content.presence)
    assert.equal("c here", ev.content.status_msg)
    since = body.next_batch
    -- a joins d's room: the members' presence comes with the new room
    t:join(a, other)
    body = sync(a, "?since=" .. enc(since))
    assert.is_table(body.rooms.join[other])
    assert.equal("online", presence_of(body, d).content.presence)
    -- the presence filter applies to them too
    since = body.next_batch
    local e = fresh()
    assert.equal(200, put(e, { presence = "online" }).status)
    t:join(e, room)
    body = sync(a, "?since=" .. enc(since) .. "&filter=" .. enc('{"presence":{"not_types":["m.presence"]}}'))
    assert.is_table(body.rooms.join[room])
    assert.same({}, body.presence.events)
  end)

  it("honours set_presence and refuses bad values", function()
    local a, b = fresh(), fresh()
    local room = t:create_room(a, { preset = "public_chat" })
    t:join(b, room)
    -- offline: the sync does not touch presence
    sync(a, "?set_presence=offline")
    local r = t:request("GET", ppath(a), nil, b.access_token)
    assert.equal("offline", r.json.presence)
    assert.is_nil(r.json.last_active_ago)
    sync(a, "?set_presence=unavailable")
    assert.equal("unavailable", t:request("GET", ppath(a), nil, b.access_token).json.presence)
    -- default: online, keeping the status message set before
    assert.equal(200, put(a, { presence = "unavailable", status_msg = "lunch" }).status)
    sync(a)
    r = t:request("GET", ppath(a), nil, b.access_token)
    assert.equal("online", r.json.presence)
    assert.equal("lunch", r.json.status_msg)
    assert.is_true(r.json.currently_active)
    for _, bad in ipairs { "busy", "ONLINE", "1" } do
      r = t:request("GET", V3 .. "/sync?set_presence=" .. bad, nil, a.access_token)
      assert.equal(400, r.status, bad)
      assert.equal("M_INVALID_PARAM", r.json.errcode, bad)
    end
  end)

  it("applies the presence filter", function()
    local a, b, c = fresh(), fresh(), fresh()
    local room = t:create_room(a, { preset = "public_chat" })
    t:join(b, room)
    t:join(c, room)
    assert.equal(200, put(b, { presence = "online" }).status)
    assert.equal(200, put(c, { presence = "online" }).status)
    local function users(f)
      local body = sync(a, "?set_presence=offline&filter=" .. enc(f))
      local out = {}
      for _, ev in ipairs(body.presence.events) do out[#out + 1] = ev.sender end
      table.sort(out)
      return out
    end
    local bc = { b.user_id, c.user_id }
    table.sort(bc)
    assert.same(bc, users('{"presence":{}}'))
    assert.same({ b.user_id }, users('{"presence":{"senders":["' .. b.user_id .. '"]}}'))
    assert.same({ c.user_id }, users('{"presence":{"not_senders":["' .. b.user_id .. '"]}}'))
    assert.same({}, users('{"presence":{"types":["m.typing"]}}'))
    assert.same({}, users('{"presence":{"not_types":["m.presence"]}}'))
    assert.same(bc, users('{"presence":{"types":["m.*"]}}'))
    assert.equal(1, #users('{"presence":{"limit":1}}'))
    assert.same({}, users('{"presence":{"limit":0}}'))
    -- a stored filter too
    local r = t:request("POST", V3 .. "/user/" .. enc(a.user_id) .. "/filter",
      { presence = { senders = { c.user_id } } }, a.access_token)
    assert.equal(200, r.status)
    assert.same({ c.user_id }, users(r.json.filter_id))
    -- a bad presence filter is refused
    r = t:request("GET", V3 .. "/sync?filter=" .. enc('{"presence":{"limit":"x"}}'), nil, a.access_token)
    assert.equal(400, r.status)
  end)

  it("wakes the long-polls of users who share a room, not of others", function()
    local a, b, c = fresh(), fresh(), fresh()
    local room = t:create_room(a, { preset = "public_chat" })
    t:join(b, room)
    local since_a = sync(a, "?set_presence=offline").next_batch
    local since_c = sync(c, "?set_presence=offline").next_batch
    t:run(function()
      local ha = t:go(function()
        return t:call("GET", V3 .. "/sync?set_presence=offline&timeout=5000&since=" .. enc(since_a), nil,
          a.access_token)
      end)
      local hc = t:go(function()
        return t:call("GET", V3 .. "/sync?set_presence=offline&timeout=1500&since=" .. enc(since_c), nil,
          c.access_token)
      end)
      t:sleep(50)
      local sent = uv.hrtime()
      assert.equal(200, t:call("PUT", ppath(b), { presence = "online", status_msg = "here" }, b.access_token).status)
      local r = t:await(ha)
      local waited = (uv.hrtime() - sent) / 1e6
      assert.equal(200, r.status)
      assert.equal("here", presence_of(r.json, b).content.status_msg)
      assert.is_true(waited < 1000, "returned " .. waited .. " ms after the PUT")
      r = t:await(hc)
      assert.equal(200, r.status)
      assert.same({}, r.json.presence.events)
    end)
  end)
end)

describe("presence timers", function()
  local t
  setup(function() t = tesths.start { presence_idle_ms = 600, presence_offline_ms = 1500 } end)
  teardown(function() t:stop() end)

  local function get(u) return t:request("GET", ppath(u), nil, u.access_token).json end

  it("makes an idle user unavailable, then offline when not syncing", function()
    local a = t:fresh("pt")
    assert.equal(200, t:request("PUT", ppath(a), { presence = "online", status_msg = "s" }, a.access_token).status)
    assert.equal("online", get(a).presence)
    t:run(function() t:sleep(1000) end)
    local p = get(a)
    assert.equal("unavailable", p.presence)
    assert.is_false(p.currently_active)
    assert.equal("s", p.status_msg)
    assert.is_true(p.last_active_ago >= 600)
    t:run(function() t:sleep(1000) end)
    assert.equal("offline", get(a).presence)
  end)

  it("keeps a syncing user from going offline, and sends the changes in /sync", function()
    local a, b = t:fresh("pt"), t:fresh("pt")
    local room = t:create_room(a, { preset = "public_chat" })
    t:join(b, room)
    local since = t:request("GET", V3 .. "/sync", nil, a.access_token).json.next_batch
    local since_b = t:request("GET", V3 .. "/sync?set_presence=unavailable", nil, b.access_token).json.next_batch
    t:run(function()
      -- b long-polls with set_presence=unavailable (nothing bumps activity) for 2.5 s: b stays unavailable
      local hb = t:go(function()
        return t:call("GET", V3 .. "/sync?set_presence=unavailable&timeout=2500&since=" .. enc(since_b), nil,
          b.access_token)
      end)
      t:sleep(1800)
      local r = t:call("GET", ppath(b), nil, a.access_token)
      assert.equal("unavailable", r.json.presence)
      t:await(hb)
      -- b's sync ended: offline after presence_offline_ms
      t:sleep(2000)
      r = t:call("GET", ppath(b), nil, a.access_token)
      assert.equal("offline", r.json.presence)
    end, 15000)
    local body = t:request("GET", V3 .. "/sync?set_presence=offline&since=" .. enc(since), nil, a.access_token).json
    assert.equal("offline", presence_of(body, b).content.presence)
  end)

  it("wakes a waiting long-poll when a timer changes presence", function()
    local a, b = t:fresh("pt"), t:fresh("pt")
    local room = t:create_room(a, { preset = "public_chat" })
    t:join(b, room)
    assert.equal(200, t:request("PUT", ppath(b), { presence = "online" }, b.access_token).status)
    local since = t:request("GET", V3 .. "/sync?set_presence=offline", nil, a.access_token).json.next_batch
    t:run(function()
      local started = uv.hrtime()
      local r = t:call("GET", V3 .. "/sync?set_presence=offline&timeout=5000&since=" .. enc(since), nil,
        a.access_token)
      local waited = (uv.hrtime() - started) / 1e6
      assert.equal(200, r.status)
      -- unavailable (or already offline, on a slow machine): no longer online
      assert.are_not.equal("online", presence_of(r.json, b).content.presence)
      assert.is_true(waited < 3000, "returned after " .. waited .. " ms")
    end)
  end)
end)

describe("presence configuration", function()
  it("checks the presence keys", function()
    local loom = require "loom"
    local config = require "loom.cli.config"
    assert.is_true(config.defaults.presence)
    assert.equal(300000, config.defaults.presence_idle_ms)
    assert.equal(30000, config.defaults.presence_offline_ms)
    for _, case in ipairs {
      { { presence = "yes" }, "presence must be true or false" },
      { { presence_idle_ms = 5 }, "presence_idle_ms must be an integer 10..86400000" },
      { { presence_offline_ms = 1.5 }, "presence_offline_ms must be an integer" },
      { { presence_offline_ms = "30000" }, "presence_offline_ms must be an integer" },
    } do
      local ok, err = pcall(loom.new, case[1])
      assert.is_false(ok)
      assert.matches(case[2], tostring(err), 1, true)
      local cfg, ferr = config.from_table(case[1])
      assert.is_nil(cfg)
      assert.matches(case[2], ferr, 1, true)
    end
    -- the example file sets presence and documents the timeouts
    local f = assert(io.open("loom.cfg.lua.example"))
    local text = f:read("a")
    f:close()
    assert.truthy(text:find("\npresence = true", 1))
    assert.truthy(text:find("presence_idle_ms", 1, true))
    assert.truthy(text:find("presence_offline_ms", 1, true))
  end)
end)

describe("presence after a restart", function()
  it("ages the presence an earlier run left online", function()
    local tmp = require "support.tmpdb"
    local t1 = tesths.start()
    local a = t1:fresh("rs")
    assert.equal(200, t1:request("PUT", ppath(a), { presence = "online" }, a.access_token).status)
    local keep = t1.db_path
    t1.db_path = tmp.path()        -- stop the first server, keeping its database
    t1:stop()
    local t2 = tesths.start { database = { path = keep }, presence_idle_ms = 200, presence_offline_ms = 400 }
    t2.db_path = keep
    local ok, err = pcall(function()
      local login = assert(t2.hs.accounts:login(a.user_id, a.password))
      t2:run(function() t2:sleep(1000) end)
      local r = t2:request("GET", ppath(a), nil, login.access_token)
      assert.equal(200, r.status)
      assert.equal("offline", r.json.presence)
    end)
    t2:stop()
    assert(ok, err)
  end)
end)

describe("presence turned off", function()
  local t
  setup(function() t = tesths.start { presence = false, presence_idle_ms = 50, presence_offline_ms = 50 } end)
  teardown(function() t:stop() end)

  it("accepts PUT, answers offline and sends no presence in /sync", function()
    local a, b = t:fresh("po"), t:fresh("po")
    local room = t:create_room(a, { preset = "public_chat" })
    t:join(b, room)
    local r = t:request("PUT", ppath(a), { presence = "online", status_msg = "x" }, a.access_token)
    assert.equal(200, r.status)
    assert.same({}, r.json)
    -- still validated
    assert.equal(400, t:request("PUT", ppath(a), { presence = "busy" }, a.access_token).status)
    assert.equal(403, t:request("PUT", ppath(a), { presence = "online" }, b.access_token).status)
    r = t:request("GET", ppath(a), nil, b.access_token)
    assert.equal(200, r.status)
    assert.same({ presence = "offline" }, r.json)
    local body = t:request("GET", V3 .. "/sync", nil, a.access_token).json
    assert.same({}, body.presence.events)
    body = t:request("GET", V3 .. "/sync?since=" .. enc(body.next_batch), nil, b.access_token).json
    assert.same({}, body.presence.events)
    assert.is_nil(t.hs.presence.timer)
    assert.is_nil(t.hs.store:presence_of(a.user_id))
  end)
end)
