-- Acceptance: policy scripts as an operator and a script author use them,
-- written from docs/scripting.md and docs/hooks/ alone. Scripts are files in
-- a directory beside a config, loaded by a real homeserver on 127.0.0.1;
-- clients speak plain HTTP to it.
local uv = require "luv"
local tesths = require "support.hs"
local child = require "support.child"
local tmp = require "support.tmpdb"
local files = require "support.files"
local enc = tesths.enc
local write = files.write

-- Register through the client API (m.login.dummy), as a client would.
local function register(t, name)
  local r = t:request("POST", "/_matrix/client/v3/register",
    { username = name, password = "pw-" .. name .. "-long", auth = { type = "m.login.dummy" } })
  return r
end

local function messages(t, tok, room)
  local r = t:request("GET", "/_matrix/client/v3/rooms/" .. enc(room) .. "/messages?dir=b&limit=50", nil, tok)
  assert(r.status == 200, r.body)
  local out = {}
  for _, ev in ipairs(r.json.chunk) do
    if ev.type == "m.room.message" then table.insert(out, 1, ev) end
  end
  return out
end

local function start(dir, scripts, extra)
  local cfg = { config_dir = dir, scripts = scripts }
  for k, v in pairs(extra or {}) do cfg[k] = v end
  return tesths.start(cfg)
end

describe("acceptance: policy scripts", function()
  local dir, t
  before_each(function() dir = files.tmpdir("policy") end)
  after_each(function()
    if t then t:stop(); t = nil end
    files.remove_tree(dir)
  end)

  it("a veto from room/event/check is 403 M_FORBIDDEN with the reason, and nothing is stored", function()
    write(dir .. "/policy/veto.lua", [[
      local word = module:get_option_string("word", "nope")
      module:hook("room/event/check", function(event, context)
        if event.type == "m.room.message" and type(event.content.body) == "string"
            and event.content.body:find(word, 1, true) then
          return false, "messages with " .. word .. " are refused"
        end
      end)
    ]])
    t = start(dir, { "policy/veto.lua" }, { veto = { word = "spam" } })
    local alice = t:register("alice")
    local room = t:request("POST", "/_matrix/client/v3/createRoom", {}, alice.access_token).json.room_id
    local r = t:send(alice.access_token, room, { msgtype = "m.text", body = "buy spam now" })
    assert.equal(403, r.status)
    assert.equal("M_FORBIDDEN", r.json.errcode)
    assert.equal("messages with spam are refused", r.json.error)
    assert.equal(200, t:send(alice.access_token, room, { msgtype = "m.text", body = "hello" }).status)
    local msgs = messages(t, alice.access_token, room)
    assert.equal(1, #msgs)
    assert.equal("hello", msgs[1].content.body)
  end)

  it("a hook may rewrite a local event's content; the stored and synced event has the new content", function()
    write(dir .. "/policy/rewrite.lua", [[
      module:hook("room/event/check", function(event, context)
        if context.origin == "local" and event.type == "m.room.message" and type(event.content.body) == "string" then
          local c = {}
          for k, v in pairs(event.content) do c[k] = v end
          c.body = c.body:gsub("darn", "****")
          c["org.example.checked"] = true
          event.content = c
        end
      end)
    ]])
    t = start(dir, { "policy/rewrite.lua" })
    local alice = t:register("alice")
    local room = t:request("POST", "/_matrix/client/v3/createRoom", {}, alice.access_token).json.room_id
    local r = t:send(alice.access_token, room, { msgtype = "m.text", body = "darn it" })
    assert.equal(200, r.status, r.body)
    local ev = t:request("GET", "/_matrix/client/v3/rooms/" .. enc(room) .. "/event/" .. enc(r.json.event_id), nil,
      alice.access_token)
    assert.equal(200, ev.status, ev.body)
    assert.equal("**** it", ev.json.content.body)
    assert.is_true(ev.json.content["org.example.checked"])
    local s = t:request("GET", "/_matrix/client/v3/sync", nil, alice.access_token)
    local found
    for _, e in ipairs(s.json.rooms.join[room].timeline.events) do
      if e.event_id == r.json.event_id then found = e end
    end
    assert.truthy(found)
    assert.equal("**** it", found.content.body)
  end)

  it("content rewritten to something that is not a JSON object refuses the send with 400 M_BAD_JSON", function()
    write(dir .. "/policy/badrewrite.lua", [[
      module:hook("room/event/check", function(event, context)
        if event.type == "m.room.message" then event.content = "not an object" end
      end)
    ]])
    t = start(dir, { "policy/badrewrite.lua" })
    local alice = t:register("alice")
    local room = t:request("POST", "/_matrix/client/v3/createRoom", {}, alice.access_token).json.room_id
    local r = t:send(alice.access_token, room, { msgtype = "m.text", body = "x" })
    assert.equal(400, r.status)
    assert.equal("M_BAD_JSON", r.json.errcode)
    assert.equal(0, #messages(t, alice.access_token, room))
  end)

  it("a raising veto hook fails closed with 500 M_UNKNOWN, logs script and traceback, and the server goes on",
    function()
    write(dir .. "/policy/buggy.lua", [[
      module:hook("room/event/check", function(event)
        if event.type == "m.room.message" and event.content.body == "crash" then
          local x = nil
          return x.field
        end
      end)
    ]])
    t = start(dir, { "policy/buggy.lua" })
    local alice = t:register("alice")
    local room = t:request("POST", "/_matrix/client/v3/createRoom", {}, alice.access_token).json.room_id
    local r = t:send(alice.access_token, room, { msgtype = "m.text", body = "crash" })
    assert.equal(500, r.status)
    assert.equal("M_UNKNOWN", r.json.errcode)
    assert.falsy(r.body:find("traceback", 1, true))
    assert.falsy(r.body:find("buggy", 1, true))
    local line = t:logged("buggy")
    assert.truthy(line, table.concat(t.logs, "\n"))
    assert.truthy(line:find("stack traceback", 1, true))
    assert.equal(0, #messages(t, alice.access_token, room))
    assert.equal(200, t:send(alice.access_token, room, { msgtype = "m.text", body = "fine" }).status)
  end)

  it("an error value returned by a veto hook is the client's answer", function()
    write(dir .. "/policy/limit.lua", [[
      local errors = require "loom.http.errors"
      module:hook("login/check", function(info)
        return errors.new("M_USER_DEACTIVATED", "This account is suspended")
      end)
    ]])
    t = start(dir, { "policy/limit.lua" })
    t:register("mallory")
    local r = t:request("POST", "/_matrix/client/v3/login",
      { type = "m.login.password", identifier = { type = "m.id.user", user = "mallory" },
        password = "password-mallory" })
    assert.equal(403, r.status)
    assert.equal("M_USER_DEACTIVATED", r.json.errcode)
    assert.equal("This account is suspended", r.json.error)
  end)

  it("register/check refuses a name: 403 with the reason and the name stays free", function()
    write(dir .. "/policy/names.lua", [[
      module:hook("register/check", function(info)
        if info.localpart:find("admin", 1, true) then return false, "That name is reserved" end
      end)
    ]])
    t = start(dir, { "policy/names.lua" })
    local r = register(t, "siteadmin")
    assert.equal(403, r.status)
    assert.equal("M_FORBIDDEN", r.json.errcode)
    assert.equal("That name is reserved", r.json.error)
    local avail = t:request("GET", "/_matrix/client/v3/register/available?username=siteadmin")
    assert.equal(200, avail.status, avail.body)
    assert.is_true(avail.json.available)
    assert.equal(200, register(t, "bob").status)
  end)

  it("room/create/check and room/invite/check vetoes leave no room and no invite", function()
    write(dir .. "/policy/rooms.lua", [[
      module:hook("room/create/check", function(info)
        if info.name == "casino" then return false, "No casinos" end
      end)
      module:hook("room/invite/check", function(info)
        if info.invitee:find("^@mallory:") then return false, "Mallory may not be invited" end
      end)
    ]])
    t = start(dir, { "policy/rooms.lua" })
    local alice = t:register("alice")
    local mallory = t:register("mallory")
    local r = t:request("POST", "/_matrix/client/v3/createRoom", { name = "casino" }, alice.access_token)
    assert.equal(403, r.status)
    assert.equal("No casinos", r.json.error)
    local jr = t:request("GET", "/_matrix/client/v3/joined_rooms", nil, alice.access_token)
    assert.same({}, jr.json.joined_rooms)
    local room = t:request("POST", "/_matrix/client/v3/createRoom", { name = "ok" }, alice.access_token).json.room_id
    local inv = t:request("POST", "/_matrix/client/v3/rooms/" .. enc(room) .. "/invite",
      { user_id = mallory.user_id }, alice.access_token)
    assert.equal(403, inv.status)
    assert.equal("Mallory may not be invited", inv.json.error)
    local ms = t:request("GET", "/_matrix/client/v3/rooms/" .. enc(room) .. "/members", nil, alice.access_token)
    for _, ev in ipairs(ms.json.chunk) do assert.not_equal(mallory.user_id, ev.state_key) end
  end)

  it("routes: a token by default, opts.auth = false opens them, a raising one is a 500 without traceback", function()
    write(dir .. "/policy/routes.lua", [[
      module:route("GET", "/_acc/whoami", function(req) return { user_id = req.user_id } end)
      module:route("GET", "/_acc/open/{name}", function(req) return { hello = req.params.name } end, { auth = false })
      module:route("GET", "/_acc/crash", function(req) local x; return x.y end, { auth = false })
    ]])
    t = start(dir, { "policy/routes.lua" })
    local alice = t:register("alice")
    local r = t:request("GET", "/_acc/whoami")
    assert.equal(401, r.status)
    assert.equal("M_MISSING_TOKEN", r.json.errcode)
    r = t:request("GET", "/_acc/whoami", nil, "not-a-token")
    assert.equal(401, r.status)
    assert.equal("M_UNKNOWN_TOKEN", r.json.errcode)
    r = t:request("GET", "/_acc/whoami", nil, alice.access_token)
    assert.equal(200, r.status)
    assert.equal(alice.user_id, r.json.user_id)
    r = t:request("GET", "/_acc/open/w%20x")
    assert.equal(200, r.status)
    assert.equal("w x", r.json.hello)
    r = t:request("GET", "/_acc/crash")
    assert.equal(500, r.status)
    assert.equal("M_UNKNOWN", r.json.errcode)
    assert.falsy(r.body:find("routes.lua", 1, true))
    assert.truthy(t:logged("stack traceback"))
    assert.equal(200, t:request("GET", "/_matrix/client/versions").status)
  end)

  it("a script may not take over a built-in route: it does not load, the server starts", function()
    write(dir .. "/policy/thief.lua", [[
      module:hook("register/check", function() return false, "thief says no" end)
      module:route("GET", "/_matrix/client/versions", function() return { versions = {} } end, { auth = false })
    ]])
    t = start(dir, { "policy/thief.lua" })
    local r = t:request("GET", "/_matrix/client/versions")
    assert.equal(200, r.status)
    assert.truthy(#r.json.versions > 0)
    -- whatever it registered before raising is removed
    assert.equal(200, register(t, "bob").status)
    assert.truthy(t:logged("thief"))
  end)

  it("a bad option stops the script at load with a message naming the option and the script", function()
    write(dir .. "/policy/opt.lua", [[
      local n = module:get_option_integer("flood_messages", 10, 1, 10000)
      module:route("GET", "/_acc/opt", function() return { n = n } end, { auth = false })
    ]])
    t = start(dir, { "policy/opt.lua" }, { opt = { flood_messages = 0 } })
    assert.equal(404, t:request("GET", "/_acc/opt").status)
    local line = t:logged("flood_messages")
    assert.truthy(line, table.concat(t.logs, "\n"))
    assert.truthy(line:find("opt", 1, true))
    assert.equal(200, t:request("GET", "/_matrix/client/versions").status)
  end)

  it("options come from the script's table first, then the top level, then the default", function()
    write(dir .. "/policy/opts.lua", [[
      local a = module:get_option_string("a", "da")
      local b = module:get_option_number("b", 1)
      local c = module:get_option_boolean("c", false)
      local d = module:get_option_array("d", {})
      module:route("GET", "/_acc/opts", function() return { a = a, b = b, c = c, nd = #d } end, { auth = false })
    ]])
    t = start(dir, { "policy/opts.lua" }, { opts = { a = "own" }, a = "top", b = 7, c = true, d = { "x", "y" } })
    local r = t:request("GET", "/_acc/opts")
    assert.equal(200, r.status, r.body)
    assert.same({ a = "own", b = 7, c = true, nd = 2 }, r.json)
  end)

  it("scripts have their own globals and their own copies of the standard libraries", function()
    write(dir .. "/policy/one.lua", [[
      shared_name = "one"
      string.marker = "one"
      module:route("GET", "/_acc/one", function() return { g = tostring(shared_name) } end, { auth = false })
    ]])
    write(dir .. "/policy/two.lua", [[
      module:route("GET", "/_acc/two", function()
        return { g = tostring(shared_name), s = tostring(string.marker) }
      end, { auth = false })
    ]])
    t = start(dir, { "policy/one.lua", "policy/two.lua" })
    assert.equal("one", t:request("GET", "/_acc/one").json.g)
    local r = t:request("GET", "/_acc/two")
    assert.equal("nil", r.json.g)
    assert.equal("nil", r.json.s)
    assert.is_nil(rawget(string, "marker"))
  end)

  it("module:send from a timer posts as a local user; clients see it; the auth rules apply", function()
    write(dir .. "/policy/ticker.lua", [[
      local results = {}
      module:timer(0.05, function()
        local rooms = module:rooms()
        if #rooms == 0 then return 0.05 end
        local room = rooms[1]
        local creator = module:state(room, "m.room.create").sender
        local id = module:send(creator, room, "m.room.message", { msgtype = "m.notice", body = "tick" })
        results.sent = id
        local _, err, code = module:send("@stranger:" .. module.server_name, room, "m.room.message", { body = "x" })
        results.stranger = code
        local _, _, code2 = module:send("@someone:elsewhere.example", room, "m.room.message", { body = "x" })
        results.remote = code2
      end)
      module:route("GET", "/_acc/ticker", function() return results end, { auth = false })
    ]])
    t = start(dir, { "policy/ticker.lua" })
    local alice = t:register("alice")
    local room = t:request("POST", "/_matrix/client/v3/createRoom", {}, alice.access_token).json.room_id
    local res
    t:run(function()
      for _ = 1, 100 do
        res = t:call("GET", "/_acc/ticker").json
        if res.sent then break end
        t:sleep(20)
      end
    end)
    assert.truthy(res.sent, "the timer never sent")
    assert.equal("M_FORBIDDEN", res.stranger)
    assert.equal("M_FORBIDDEN", res.remote)
    local msgs = messages(t, alice.access_token, room)
    assert.equal(1, #msgs)
    assert.equal("tick", msgs[1].content.body)
    assert.equal(alice.user_id, msgs[1].sender)
    assert.equal(res.sent, msgs[1].event_id)
  end)

  it("room/event/persisted observers see committed events; a failing one breaks neither the send nor others",
    function()
    write(dir .. "/policy/watch.lua", [[
      local seen = {}
      module:hook("room/event/persisted", function(event) error("observer bug") end, 10)
      module:hook("room/event/persisted", function(event, context)
        if event.type == "m.room.message" then
          seen[#seen + 1] = { id = event.event_id, body = event.content.body, origin = context.origin,
            pos = context.stream_ordering, stored = module:event(event.event_id) ~= nil }
        end
      end)
      module:route("GET", "/_acc/seen", function() return { seen = seen } end, { auth = false })
    ]])
    t = start(dir, { "policy/watch.lua" })
    local alice = t:register("alice")
    local room = t:request("POST", "/_matrix/client/v3/createRoom", {}, alice.access_token).json.room_id
    local r = t:send(alice.access_token, room, { msgtype = "m.text", body = "observed" })
    assert.equal(200, r.status)
    local seen
    t:run(function()
      for _ = 1, 100 do
        seen = t:call("GET", "/_acc/seen").json.seen
        if #seen > 0 then break end
        t:sleep(10)
      end
    end)
    assert.equal(1, #seen)
    assert.equal(r.json.event_id, seen[1].id)
    assert.equal("observed", seen[1].body)
    assert.equal("local", seen[1].origin)
    assert.equal("number", type(seen[1].pos))
    assert.is_true(seen[1].stored)
    assert.truthy(t:logged("observer bug"))
  end)

  it("module:send answers nil, message, errcode as documented; hooks and auth rules apply to it", function()
    write(dir .. "/policy/sender.lua", [[
      module:hook("room/event/check", function(ev)
        if type(ev.content.body) == "string" and ev.content.body == "veto" then return false, "vetoed by policy" end
      end)
      module:route("POST", "/_acc/send", function(req)
        local b = req:json()
        local id, err, code = module:send(req.user_id, b.room, b.type or "m.room.message", b.content, b.state_key)
        return { id = id, err = err, code = code }
      end)
    ]])
    t = start(dir, { "policy/sender.lua" })
    local alice = t:register("alice")
    local room = t:request("POST", "/_matrix/client/v3/createRoom", {}, alice.access_token).json.room_id
    local function try(b) return t:request("POST", "/_acc/send", b, alice.access_token).json end
    local r = try { room = "!nope:test.local", content = { body = "x" } }
    assert.is_nil(r.id)
    assert.equal("M_NOT_FOUND", r.code)
    r = try { room = room, content = { body = "veto" } }
    assert.equal("M_FORBIDDEN", r.code)
    assert.equal("vetoed by policy", r.err)
    r = try { room = room, type = "m.room.power_levels", state_key = "", content = { users = "bad" } }
    assert.equal("M_FORBIDDEN", r.code)
    r = try { room = room, type = "m.room.topic", state_key = "", content = { topic = "Set by a script" } }
    assert.truthy(r.id)
    local topic = t:request("GET", "/_matrix/client/v3/rooms/" .. enc(room) .. "/state/m.room.topic/", nil,
      alice.access_token)
    assert.equal("Set by a script", topic.json.topic)
  end)

  it("options that are NaN, or of another type, are refused at load", function()
    write(dir .. "/policy/o.lua", [[
      local n = module:get_option_number("n", 1)
      module:route("GET", "/_acc/o", function() return { n = n } end, { auth = false })
    ]])
    for _, v in ipairs { 0 / 0, "5", true } do
      t = start(dir, { "policy/o.lua" }, { n = v })
      assert.equal(404, t:request("GET", "/_acc/o").status, tostring(v))
      assert.truthy(t:logged("option n must be a finite number"), table.concat(t.logs, "\n"))
      t:stop()
      t = nil
    end
    t = start(dir, { "policy/o.lua" }, { n = 2.5 })
    assert.equal(2.5, t:request("GET", "/_acc/o").json.n)
  end)

  it("the same script in two servers of one process keeps two states, two logs and two sets of hooks", function()
    write(dir .. "/policy/count.lua", [[
      local errors = require "loom.http.errors"
      errors.register("ACC_QUOTA", "ORG_EXAMPLE_QUOTA", 429, "Quota reached")
      local n = 0
      module:route("POST", "/_acc/count", function()
        n = n + 1
        module:log("warn", "count on %s is %d", module.server_name, n)
        if n > 2 then return errors.new("ACC_QUOTA") end
        return { n = n, server = module.server_name }
      end, { auth = false })
      module:hook("register/check", function(info)
        if info.localpart == "only" .. module.server_name:sub(1, 1) then
          return false, "not on " .. module.server_name
        end
      end)
    ]])
    t = start(dir, { "policy/count.lua" }, { server_name = "a.test" })
    local t2 = start(dir, { "policy/count.lua" }, { server_name = "b.test" })
    local ok, err = pcall(function()
      assert.same({ n = 1, server = "a.test" }, t:request("POST", "/_acc/count", {}).json)
      assert.same({ n = 2, server = "a.test" }, t:request("POST", "/_acc/count", {}).json)
      assert.same({ n = 1, server = "b.test" }, t2:request("POST", "/_acc/count", {}).json)
      local q = t:request("POST", "/_acc/count", {})
      assert.equal(429, q.status)
      assert.equal("ORG_EXAMPLE_QUOTA", q.json.errcode)
      assert.equal(403, register(t, "onlya").status)
      assert.equal(200, register(t2, "onlya").status)
      assert.equal(403, register(t2, "onlyb").status)
      assert.truthy(t:logged("count on a.test is 3"))
      assert.falsy((t:logged("b.test")))
      assert.truthy(t2:logged("count on b.test is 1"))
      assert.falsy((t2:logged("a.test")))
      t2.hs.scripts:unload("count")
      assert.equal(404, t2:request("POST", "/_acc/count", {}).status)
      assert.equal(429, t:request("POST", "/_acc/count", {}).status)
    end)
    t2:stop()
    assert(ok, err)
  end)

  it("room/event/persisted announces a retried transaction once; a slow observer delays no answer", function()
    write(dir .. "/policy/slow.lua", [[
      local count = {}
      module:hook("room/event/persisted", function(ev)
        count[ev.event_id] = (count[ev.event_id] or 0) + 1
        if ev.content.body == "slow" then require("loom.async").sleep(1500) end
      end)
      module:route("GET", "/_acc/count/{id}", function(req) return { n = count[req.params.id] or 0 } end,
        { auth = false })
    ]])
    t = start(dir, { "policy/slow.lua" })
    local alice = t:register("alice")
    local room = t:request("POST", "/_matrix/client/v3/createRoom", {}, alice.access_token).json.room_id
    local p = "/_matrix/client/v3/rooms/" .. enc(room) .. "/send/m.room.message/"
    local t0 = uv.hrtime()
    local slow = t:request("PUT", p .. "s1", { body = "slow" }, alice.access_token)
    local r1 = t:request("PUT", p .. "d1", { body = "dup" }, alice.access_token)
    local ms = (uv.hrtime() - t0) / 1e6
    assert.equal(200, slow.status)
    assert.truthy(ms < 1000, ("two sends took %.0f ms behind a sleeping observer"):format(ms))
    local r2 = t:request("PUT", p .. "d1", { body = "dup" }, alice.access_token)
    assert.equal(r1.json.event_id, r2.json.event_id)
    t:run(function() t:sleep(100) end)
    assert.equal(1, t:request("GET", "/_acc/count/" .. enc(r1.json.event_id)).json.n)
  end)

  it("the worked example of docs/scripting.md (motd.lua) runs as written", function()
    local f = assert(io.open("docs/scripting.md"))
    local doc = f:read("a")
    f:close()
    local code = doc:match("```lua\n(%-%- motd%.lua.-)```")
    assert.truthy(code, "no motd.lua example in docs/scripting.md")
    write(dir .. "/motd.lua", code)
    -- the room must exist before the script loads (it reads motd.room at load): make it first
    t = start(dir, {}, { password_iterations = 1000 })
    assert(t.hs.accounts:register("boss", "password-boss", { admin = true }))
    local admin = assert(t.hs.accounts:login("@boss:test.local", "password-boss"))
    local user = t:register("user")
    local room = t:request("POST", "/_matrix/client/v3/createRoom", { preset = "public_chat" },
      admin.access_token).json.room_id
    assert.equal(200, t:request("POST", "/_matrix/client/v3/join/" .. enc(room), {}, user.access_token).status)
    t.server.config.motd = { room = room, poster = admin.user_id, every_hours = 0.01 }
    assert(t.hs.scripts:load(dir .. "/motd.lua"))
    local r = t:request("PUT", "/_loom/motd", { topic = "Welcome" }, user.access_token)
    assert.equal(403, r.status)
    r = t:request("PUT", "/_loom/motd", { topic = "Welcome" }, admin.access_token)
    assert.equal(200, r.status, r.body)
    assert.equal("Welcome", t:request("GET", "/_matrix/client/v3/rooms/" .. enc(room) .. "/state/m.room.topic/",
      nil, user.access_token).json.topic)
    r = t:send(user.access_token, room, { msgtype = "m.text", body = "see https://x.example" })
    assert.equal(403, r.status)
    assert.equal("Only admins may post links here", r.json.error)
    assert.equal(200, t:send(admin.access_token, room, { msgtype = "m.text", body = "see https://x.example" }).status)
  end)
end)

describe("acceptance: bin/loom reload", function()
  local dir, c
  after_each(function()
    if c then c:stop(); c = nil end
    if dir then files.remove_tree(dir); dir = nil end
  end)

  local function reload(cfg)
    return child.sh("lua5.4 bin/loom reload --config " .. cfg)
  end

  local function eventually(pred, ms)
    return child.turn_until(pred, ms or 5000)
  end

  it("edits, unlisting and a broken new version behave as docs/scripting.md says", function()
    dir = files.tmpdir("policy")
    local db = dir .. "/loom.db"       -- the pid file goes beside it
    local cfg = dir .. "/loom.cfg.lua"
    local function config(scripts)
      write(cfg, ([[
server_name = "acc.test"
port = 0
database = { path = %q }
password_iterations = 1000
scripts = { %s }
]]):format(db, scripts))
    end
    config('"policy/a.lua", "policy/b.lua"')
    write(dir .. "/policy/a.lua", [[
      module:route("GET", "/_acc/a", function() return { v = 1 } end, { auth = false })
      module:hook("register/check", function(info)
        if info.localpart == "blocked" then return false, "v1 blocks" end
      end)
    ]])
    write(dir .. "/policy/b.lua", [[
      module:route("GET", "/_acc/b", function() return { b = true } end, { auth = false })
    ]])
    c = child.start { "bin/loom", "serve", "--config", cfg }
    assert(c:wait_for("http://127%.0%.0%.1:(%d+)"))
    assert.equal(1, c:request("GET", "/_acc/a").json.v)
    assert.equal(200, c:request("GET", "/_acc/b").status)

    -- change a.lua: the new version answers, its old hook is gone
    write(dir .. "/policy/a.lua", [[
      module:route("GET", "/_acc/a", function() return { v = 2 } end, { auth = false })
    ]])
    config('"policy/a.lua"')
    assert.truthy(reload(cfg):find("sent SIGHUP to loom (pid " .. c.pid .. ")", 1, true))
    assert.truthy(eventually(function() return c.err:find("reloaded", 1, true) end))
    assert.equal(2, c:request("GET", "/_acc/a").json.v)
    assert.equal(404, c:request("GET", "/_acc/b").status)
    local r = c:request("POST", "/_matrix/client/v3/register",
      { username = "blocked", password = "pw-blocked-long", auth = { type = "m.login.dummy" } })
    assert.equal(200, r.status, r.body)

    -- a broken new version: the old one stays
    write(dir .. "/policy/a.lua", "module:route(\"GET\", \n this is not lua")
    local before = #c.err
    assert.truthy(reload(cfg):find("rc=0", 1, true))
    assert.truthy(eventually(function() return c.err:find("fail", before, true) end))
    assert.equal(2, c:request("GET", "/_acc/a").json.v)

    local code = c:stop()
    c = nil
    assert.equal(0, code)
    tmp.remove(db)
  end)

  it("the scripting example of README.md runs as written", function()
    local f = assert(io.open("README.md"))
    local readme = f:read("a")
    f:close()
    local block = readme:match("```lua\n(%-%- loom%.cfg%.lua\n.-)```")
    assert.truthy(block, "no scripting example in README.md")
    local cfg_text, script = block:match("^(.-)\n(%-%- policy/no_links%.lua.*)$")
    assert.truthy(cfg_text and script)
    dir = files.tmpdir("policy")
    local db = dir .. "/loom.db"
    write(dir .. "/loom.cfg.lua", cfg_text .. ("\nserver_name = \"acc.test\"\nport = 0\ndatabase = { path = %q }\n"
      .. "password_iterations = 1000\n"):format(db))
    write(dir .. "/policy/no_links.lua", script)
    c = child.start { "bin/loom", "serve", "--config", dir .. "/loom.cfg.lua" }
    assert(c:wait_for("http://127%.0%.0%.1:(%d+)"))
    local reg = c:request("POST", "/_matrix/client/v3/register",
      { username = "alice", password = "pw-alice-long", auth = { type = "m.login.dummy" } })
    assert.equal(200, reg.status, reg.body)
    local tok = reg.json.access_token
    local me = c:request("GET", "/_loom/no_links", nil, tok)
    assert.equal(200, me.status)
    assert.equal("@alice:acc.test", me.json.you)
    assert.equal(401, c:request("GET", "/_loom/no_links").status)
    local room = c:request("POST", "/_matrix/client/v3/createRoom", {}, tok).json.room_id
    local r = c:request("PUT", "/_matrix/client/v3/rooms/" .. enc(room) .. "/send/m.room.message/1",
      { msgtype = "m.text", body = "see https://example.org" }, tok)
    assert.equal(403, r.status)
    assert.equal("M_FORBIDDEN", r.json.errcode)
    assert.equal("No links here, please", r.json.error)
    assert.equal(200, c:request("PUT", "/_matrix/client/v3/rooms/" .. enc(room) .. "/send/m.room.message/2",
      { msgtype = "m.text", body = "no link" }, tok).status)
    assert.equal(0, (c:stop()))
    c = nil
    tmp.remove(db)
  end)

  it("reload without a running server exits 1", function()
    dir = files.tmpdir("policy")
    local cfg = dir .. "/loom.cfg.lua"
    write(cfg, ("database = { path = %q }\n"):format(dir .. "/none.db"))
    local out = reload(cfg)
    assert.truthy(out:find("rc=1", 1, true), out)
    assert.truthy(out:find("loom: ", 1, true), out)
  end)
end)
