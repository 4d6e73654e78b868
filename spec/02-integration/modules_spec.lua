-- Policy scripts (loom.modules) against a real homeserver on 127.0.0.1: the
-- module API, typed options, failures that stay inside the script, reload by
-- call, by SIGHUP and by `bin/loom reload`.
local uv = require "luv"
local tesths = require "support.hs"
local child = require "support.child"
local tmp = require "support.tmpdb"
local cli = require "loom.cli"
local enc = tesths.enc

local write = require("support.files").write

describe("policy scripts", function()
  local dir, t

  -- Start a server with scripts (name -> source) listed in that order.
  local function start(scripts, order, config)
    dir = tmp.dir()
    local list = {}
    for i, name in ipairs(order) do
      write(dir .. "/" .. name .. ".lua", scripts[name])
      list[i] = name .. ".lua"
    end
    local cfg = { scripts = list, config_dir = dir }
    for k, v in pairs(config or {}) do cfg[k] = v end
    t = tesths.start(cfg)
    return t
  end

  local function env(name)
    local m = t.hs.scripts:get(name)
    return m and m.environment
  end

  after_each(function()
    if t then t:stop(); t = nil end
    if dir then tmp.remove_dir(dir); dir = nil end
  end)

  it("runs each listed script in its own environment with a module object", function()
    start({
      a = [[
        shared = "from a"
        string.extra = "a's string"
        my_name, my_path = module.name, module.path
        json = require("loom.core").json
        g_is_env = (_G == _ENV)
      ]],
      b = [[
        seen_shared = shared
        seen_extra = string.extra
        chunk_global = load("leak = 1; return leak")()
      ]],
    }, { "a", "b" })
    local a, b = env("a"), env("b")
    assert.equal("a", a.my_name)
    assert.equal(dir .. "/a.lua", a.my_path)
    assert.equal("from a", a.shared)
    assert.is_table(a.json)
    assert.is_true(a.g_is_env)
    assert.is_nil(b.seen_shared)
    assert.is_nil(b.seen_extra)
    assert.is_nil(rawget(string, "extra"))
    assert.is_nil(rawget(_G, "shared"))
    assert.equal(1, b.chunk_global)
    assert.equal(1, rawget(b, "leak"))
    assert.is_nil(rawget(_G, "leak"))
    assert.same({ "a", "b" }, { t.hs.scripts:list()[1].name, t.hs.scripts:list()[2].name })
  end)

  it("module:hook registers on the server's bus by priority; vetoes and results come back", function()
    start({ p = [[
      module:hook("test/check", function(x) if x == "bad" then return false, "no bad things" end end, 5)
      module:hook("test/check", function() return "low" end, -1)
      module:hook("test/check", function(x) if x == "mid" then return "mid" end end)
    ]] }, { "p" })
    local ok, reason = t.server:fire("test/check", "bad")
    assert.is_false(ok)
    assert.equal("no bad things", reason)
    assert.equal("mid", t.server:fire("test/check", "mid"))
    assert.equal("low", t.server:fire("test/check", "other"))
  end)

  it("a hook that raises fails closed, is logged, and the server keeps serving", function()
    start({ h = [[module:hook("test/raise", function() error("hook boom") end)]] }, { "h" })
    local r = t.server:fire("test/raise")
    assert.equal("M_UNKNOWN", r.errcode)
    assert.truthy(t:logged("hook boom"))
    assert.equal(200, t:request("GET", "/_matrix/client/versions").status)
  end)

  it("module:route needs an access token by default; auth = false opens it; failures are Matrix errors", function()
    start({ r = [[
      local errors = require "loom.http.errors"
      module:route("GET", "/_loom/t/me", function(req) return { user_id = req.user_id, device_id = req.device_id } end)
      module:route("GET", "/_loom/t/open/{x}", function(req) return { x = req.params.x } end, { auth = false })
      module:route("GET", "/_loom/t/raise", function() error("route kaboom") end, { auth = false })
      module:route("POST", "/_loom/t/forbid", function() return errors.new("M_FORBIDDEN", "not you") end)
    ]] }, { "r" })
    local alice = t:register("alice")
    local r = t:request("GET", "/_loom/t/me")
    assert.equal(401, r.status)
    assert.equal("M_MISSING_TOKEN", r.json.errcode)
    r = t:request("GET", "/_loom/t/me", nil, "nonsense")
    assert.equal("M_UNKNOWN_TOKEN", r.json.errcode)
    r = t:request("GET", "/_loom/t/me", nil, alice.access_token)
    assert.equal(200, r.status)
    assert.same({ user_id = alice.user_id, device_id = alice.device_id }, r.json)
    r = t:request("GET", "/_loom/t/open/" .. enc("a b"))
    assert.same({ x = "a b" }, r.json)
    r = t:request("GET", "/_loom/t/raise")
    assert.equal(500, r.status)
    assert.equal("M_UNKNOWN", r.json.errcode)
    assert.not_matches("kaboom", r.body)
    assert.truthy(t:logged("route kaboom"))
    r = t:request("POST", "/_loom/t/forbid", {}, alice.access_token)
    assert.equal(403, r.status)
    assert.equal("not you", r.json.error)
    assert.equal(200, t:request("GET", "/_matrix/client/versions").status)
  end)

  it("a route that is already served (a built-in one) makes the script fail to load", function()
    start({
      clash = [[
        module:hook("test/clash", function() return "should be gone" end)
        module:route("GET", "/_matrix/client/v3/rooms/{other}/state", function() return {} end)
      ]],
      fine = [[module:route("GET", "/_loom/fine", function() return { ok = true } end, { auth = false })]],
    }, { "clash", "fine" })
    assert.is_nil(t.hs.scripts:get("clash"))
    assert.truthy(t:logged("clash.lua failed to load:.*is already a route"))
    assert.is_nil(t.server:fire("test/clash"))
    assert.equal(200, t:request("GET", "/_loom/fine").status)
    assert.equal(401, t:request("GET", "/_matrix/client/v3/rooms/!x:test.local/state").status)
  end)

  it("reads typed options from its own table first, then the top level, else the default", function()
    start({ opts = [[
      s = module:get_option_string("greeting", "hi")
      n = module:get_option_number("ratio", 0.5, 0, 1)
      i = module:get_option_integer("count", 3, 1, 10)
      top = module:get_option_integer("top_level", 0)
      f = module:get_option_integer("whole_float", 0)
      b = module:get_option_boolean("enabled", false)
      a = module:get_option_array("domains", {}, 1, 3)
      d = module:get_option_string("missing", "default")
      nothing = module:get_option_boolean("absent")
    ]] }, { "opts" }, { opts = { greeting = "hello", ratio = 0.25, count = 7, enabled = true,
      domains = { "a.example", "b.example" }, whole_float = 2.0 }, top_level = 42, greeting = "top" })
    local e = env("opts")
    assert.equal("hello", e.s)
    assert.equal(0.25, e.n)
    assert.equal(7, e.i)
    assert.equal(42, e.top)
    assert.equal(2, e.f)
    assert.equal("integer", math.type(e.f))
    assert.is_true(e.b)
    assert.same({ "a.example", "b.example" }, e.a)
    assert.equal("default", e.d)
    assert.is_nil(e.nothing)
  end)

  it("a wrong type or an out-of-range option stops the script, naming the option and the script", function()
    local cases = {
      bad1 = { 'module:get_option_integer("count", 1, 0, 3)', { count = 5 },
               "script bad1: option bad1.count must be an integer in 0..3, got 5" },
      bad2 = { 'module:get_option_string("name")', { name = 1 }, "option bad2.name must be a string, got 1" },
      bad3 = { 'module:get_option_boolean("on")', { on = "yes" }, 'option bad3.on must be true or false, got "yes"' },
      bad4 = { 'module:get_option_array("list")', { list = { x = 1 } },
               "option bad4.list must be an array, got a table with other keys" },
      bad5 = { 'module:get_option_number("r", nil, 0, 1)', { r = 2.5 },
               "option bad5.r must be a finite number in 0..1" },
      bad8 = { 'module:get_option_number("r")', { r = math.huge }, "option bad8.r must be a finite number" },
      bad9 = { 'module:get_option_array("l")', { l = { 1, nil, 3 } }, "option bad9.l must be an array" },
      bad6 = { 'module:get_option_integer("n")', { n = 1.5 }, "option bad6.n must be an integer, got 1.5" },
      bad7 = { 'module:get_option_array("l", nil, 1)', { l = {} },
               "option bad7.l must be an array with >= 1 items, got 0 items" },
    }
    local scripts, order, config = {}, {}, {}
    for name, c in pairs(cases) do
      scripts[name] = c[1]
      order[#order + 1] = name
      config[name] = c[2]
    end
    table.sort(order)
    scripts.good = "ok = true"
    order[#order + 1] = "good"
    start(scripts, order, config)
    for name, c in pairs(cases) do
      assert.is_nil(t.hs.scripts:get(name), name)
      assert.truthy(t:logged(c[3]:gsub("[%.%-%(%)%[%]]", "%%%0")), c[3])
    end
    assert.is_true(env("good").ok)
  end)

  it("misuse of the module API raises an error that names the script and the method", function()
    start({ misuse = [[
      function try(method, ...)
        local ok, err = pcall(module[method], module, ...)
        return ok, err
      end
    ]] }, { "misuse" })
    local try = env("misuse").try
    local f = function() end
    local cases = {
      { "hook", 1, f }, { "hook", "x", 1 }, { "hook", "x", f, "high" },
      { "route", "get", "/_loom/x", f }, { "route", "GET", "no-slash", f }, { "route", "GET", "/_loom/x", 1 },
      { "route", "GET", "/_loom/x", f, "opts" },
      { "timer", -1, f }, { "timer", "soon", f }, { "timer", 1, "fn" }, { "on_unload", 1 },
      { "get_option_integer", 1 }, { "get_option_number", "x", 0, "min" },
      { "members", 1 }, { "members", "!r:test.local", 1 }, { "state", "!r:test.local", 1 }, { "event", 1 },
      { "send", 1, "!r:test.local", "m.room.message", {} }, { "send", "@a:test.local", "!r", "m.x", {}, 1 },
    }
    for _, c in ipairs(cases) do
      local ok, err = try(table.unpack(c))
      assert.is_false(ok, c[1])
      assert.matches("misuse: module:" .. c[1]:gsub("get_option_%a+", "get_option"), err, 1, true)
    end
    assert.is_nil(t.server.hooks.x)
  end)

  it("module:log writes to the server's log with the script's name", function()
    start({ logger = [[module:log("warn", "%d things", 3)]] }, { "logger" })
    assert.truthy(t:logged("^warn: logger: 3 things$"))
  end)

  it("a script that raises while loading is logged with a traceback and leaves nothing behind", function()
    start({
      syntax = "this is not lua",
      raise = [[
        module:hook("test/raise_load", function() return "left over" end)
        module:route("GET", "/_loom/raise", function() return {} end, { auth = false })
        module:timer(0, function() leaked = true end)
        error("broken at load")
      ]],
      good = [[module:hook("test/good", function() return "good" end)]],
    }, { "syntax", "raise", "good" })
    assert.truthy(t:logged("syntax.lua failed to load"))
    local line = t:logged("raise.lua failed to load")
    assert.truthy(line and line:find("broken at load", 1, true) and line:find("stack traceback", 1, true))
    assert.is_nil(t.hs.scripts:get("raise"))
    assert.is_nil(t.server:fire("test/raise_load"))
    assert.equal(404, t:request("GET", "/_loom/raise").status)
    assert.equal("good", t.server:fire("test/good"))
  end)

  it("module:timer runs once, repeats while it returns seconds, stops, may wait, and logs its errors", function()
    start({ timers = [[
      local async = require "loom.async"
      count, forever, waited = 0, 0, false
      module:timer(0.01, function() count = count + 1; if count < 3 then return 0.01 end end)
      forever_timer = module:timer(0, function() forever = forever + 1; return 0.005 end)
      module:timer(0.01, function() async.sleep(20); waited = true end)
      module:timer(0.01, function() error("timer oops") end)
      stopped = module:timer(0.01, function() never = true end)
      stopped:stop()
    ]] }, { "timers" })
    local e = env("timers")
    t:run(function()
      for _ = 1, 200 do
        if e.count == 3 and e.waited and e.forever > 3 then break end
        t:sleep(10)
      end
      t:sleep(30)
    end)
    assert.equal(3, e.count)
    assert.is_true(e.waited)
    assert.is_nil(e.never)
    assert.truthy(t:logged("timers: timer failed: .*timer oops"))
    assert.is_true(e.forever > 3)
    e.forever_timer:stop()
    local n = e.forever
    t:run(function() t:sleep(50) end)
    assert.equal(n, e.forever)
    assert.equal(200, t:request("GET", "/_matrix/client/versions").status)
    assert.has_error(function() e.module:timer(-1, function() end) end)
  end)

  it("reads rooms, members, state and events, and sends as a local user under the auth rules", function()
    start({ reader = [[
      function probe(room_id, event_id)
        return {
          rooms = module:rooms(),
          members = module:members(room_id),
          invited = module:members(room_id, "invite"),
          unknown = module:members("!nope:test.local"),
          create = module:state(room_id, "m.room.create", ""),
          name = module:state(room_id, "m.room.name"),
          event = module:event(event_id),
          no_event = module:event("$nope"),
          alice = module:user_exists("@alice:test.local"),
          ghost = module:user_exists("@ghost:test.local"),
        }
      end
      function send(...) return module:send(...) end
    ]] }, { "reader" })
    local alice, bob = t:register("alice"), t:register("bob")
    local room = t:request("POST", "/_matrix/client/v3/createRoom", { invite = { bob.user_id } },
      alice.access_token).json.room_id
    assert.truthy(room)
    local e = env("reader")
    local event_id = assert(e.send(alice.user_id, room, "m.room.message", { msgtype = "m.text", body = "hi" }))
    assert.matches("^%$", event_id)
    local p = e.probe(room, event_id)
    assert.same({ room }, p.rooms)
    assert.same({ alice.user_id }, p.members)
    assert.same({ bob.user_id }, p.invited)
    assert.same({}, p.unknown)
    assert.equal("m.room.create", p.create.type)
    assert.is_nil(p.name)
    assert.equal("hi", p.event.content.body)
    assert.equal(event_id, p.event.event_id)
    assert.is_nil(p.no_event)
    assert.is_true(p.alice)
    assert.is_false(p.ghost)
    -- the copy a script gets cannot change the stored event
    p.event.content.body = "changed"
    assert.equal("hi", e.probe(room, event_id).event.content.body)
    -- clients see the sent event
    local r = t:request("GET", "/_matrix/client/v3/rooms/" .. enc(room) .. "/event/" .. enc(event_id), nil,
      alice.access_token)
    assert.equal(200, r.status)
    assert.equal("hi", r.json.content.body)
    -- state events, and the auth rules
    assert.truthy(e.send(alice.user_id, room, "m.room.name", { name = "Scripted" }, ""))
    assert.equal("Scripted", e.probe(room, event_id).name.content.name)
    local id, msg, code = e.send(bob.user_id, room, "m.room.message", { body = "not joined" })
    assert.is_nil(id)
    assert.equal("M_FORBIDDEN", code)
    assert.is_string(msg)
    id, msg, code = e.send("@carol:elsewhere.example", room, "m.room.message", { body = "x" })
    assert.is_nil(id)
    assert.equal("M_FORBIDDEN", code)
    assert.matches("not a local user", msg)
    id, msg, code = e.send(alice.user_id, "!nope:test.local", "m.room.message", { body = "x" })
    assert.matches("unknown room", msg)
    assert.is_nil(id)
    assert.equal("M_NOT_FOUND", code)
    assert.has_error(function() e.send(alice.user_id, room, "m.room.message", "not a table") end)
    assert(t.hs.store.conn:run("UPDATE users SET deactivated = 1 WHERE user_id = ?", alice.user_id))
    id, msg, code = e.send(alice.user_id, room, "m.room.message", { body = "gone" })
    assert.is_nil(id)
    assert.equal("M_FORBIDDEN", code)
    assert.matches("deactivated", msg)
  end)

  it("reload replaces changed scripts, unloads removed ones and loads new ones", function()
    start({
      a = [[
        ticks = 0
        module:hook("test/v", function() return "a1" end)
        module:route("GET", "/_loom/a1", function() return { v = 1 } end, { auth = false })
        module:timer(0, function() ticks = ticks + 1; return 0.005 end)
        module:on_unload(function() unloaded = true end)
      ]],
      b = [[module:hook("test/b", function() return "b" end)]],
    }, { "a", "b" })
    local old = env("a")
    t:run(function() t:sleep(30) end)
    assert.truthy(old.ticks > 0)
    assert.equal(200, t:request("GET", "/_loom/a1").status)
    write(dir .. "/a.lua", [[
      module:hook("test/v", function() return "a2" end)
      module:route("GET", "/_loom/a2", function() return { v = 2 } end, { auth = false })
    ]])
    write(dir .. "/c.lua", [[module:hook("test/c", function() return "c" end)]])
    local report = assert(t.hs.scripts:reload { scripts = { "a.lua", "c.lua" }, config_dir = dir })
    assert.same({ "a" }, report.reloaded)
    assert.same({ "b" }, report.unloaded)
    assert.same({ "c" }, report.loaded)
    assert.same({}, report.failed)
    assert.is_true(old.unloaded)
    assert.equal("a2", t.server:fire("test/v"))
    assert.is_nil(t.server:fire("test/b"))
    assert.equal("c", t.server:fire("test/c"))
    assert.equal(404, t:request("GET", "/_loom/a1").status)
    assert.equal(2, t:request("GET", "/_loom/a2").json.v)
    local ticks = old.ticks
    t:run(function() t:sleep(30) end)
    assert.equal(ticks, old.ticks)
    assert.has_error(function() old.module:hook("test/late", function() end) end)

    -- unchanged text: nothing happens; a broken new version keeps the old one
    report = assert(t.hs.scripts:reload { scripts = { "a.lua", "c.lua" }, config_dir = dir })
    assert.same({}, report.reloaded)
    write(dir .. "/a.lua", "error('half-written')")
    report = assert(t.hs.scripts:reload { scripts = { "a.lua", "c.lua" }, config_dir = dir })
    assert.same({ "a" }, report.failed)
    assert.truthy(t:logged("half%-written"))
    assert.equal("a2", t.server:fire("test/v"))
    assert.equal(200, t:request("GET", "/_loom/a2").status)
  end)

  it("SIGHUP re-reads the config file and reloads", function()
    dir = tmp.dir()
    local cfg_path = dir .. "/loom.cfg.lua"
    write(dir .. "/one.lua", [[module:hook("test/one", function() return 1 end)]])
    write(dir .. "/two.lua", [[module:hook("test/two", function() return 2 end)]])
    write(cfg_path, 'scripts = { "one.lua" }\n')
    t = tesths.start { scripts = { "one.lua" }, config_dir = dir, config_file = cfg_path }
    assert.equal(1, t.server:fire("test/one"))
    write(cfg_path, 'scripts = { "two.lua" }\ntwo = { greeting = "x" }\n')
    uv.kill(uv.os_getpid(), "sighup")
    t:run(function()
      for _ = 1, 100 do
        if t.hs.scripts:get("two") then break end
        t:sleep(10)
      end
    end)
    assert.equal(2, t.server:fire("test/two"))
    assert.is_nil(t.server:fire("test/one"))
    assert.equal("x", t.hs.scripts:get("two"):get_option_string("greeting"))
  end)

  it("two servers in one process load the same script apart", function()
    start({ count = [[
      n = 0
      module:hook("test/count", function() n = n + 1; return n end)
      module:route("GET", "/_loom/count", function() return { n = n, server = module.server_name } end,
        { auth = false })
    ]] }, { "count" })
    local other = tesths.start { scripts = { "count.lua" }, config_dir = dir, server_name = "other.local" }
    finally(function() other:stop() end)
    assert.equal(1, t.server:fire("test/count"))
    assert.equal(2, t.server:fire("test/count"))
    assert.equal(1, other.server:fire("test/count"))
    assert.same({ n = 2, server = "test.local" }, t:request("GET", "/_loom/count").json)
    assert.same({ n = 1, server = "other.local" }, other:request("GET", "/_loom/count").json)
    assert.truthy(other.hs.scripts:unload("count"))
    assert.is_nil(other.server:fire("test/count"))
    assert.equal(3, t.server:fire("test/count"))
  end)

  it("stopping the server unloads every script", function()
    start({ s = [[
      module:hook("test/s", function() return "s" end)
      module:on_unload(function() unloaded = true end)
    ]] }, { "s" })
    local e = env("s")
    t:stop()
    local server = t.server
    t = nil
    assert.is_true(e.unloaded)
    assert.is_nil(server:fire("test/s"))
  end)

  -- The text of a file from the line starting with first up to the end of
  -- its fenced code block.
  local function doc_block(path, first)
    local f = assert(io.open(path))
    local text = f:read("a")
    f:close()
    local at = assert(text:find("\n" .. first, 1, true), first .. " not found in " .. path)
    local stop = assert(text:find("\n```", at, true))
    return text:sub(at + 1, stop), text:sub(1, at)
  end

  it("the script in README.md works as shown", function()
    local script, before = doc_block("README.md", "-- policy/no_links.lua")
    local cfg_text = before:match("```lua\n(%-%- loom%.cfg%.lua\n.-)\n$")
    local values = assert(require("loom.cli.config").parse(cfg_text, "README"))
    start({ no_links = script }, { "no_links" }, { no_links = values.no_links })
    assert.equal("policy/no_links.lua", values.scripts[1])
    local alice = t:register("alice")
    local function check(body, origin)
      return t.server:fire("room/event/check", { type = "m.room.message", sender = alice.user_id,
        room_id = "!r:test.local", content = { msgtype = "m.text", body = body } }, { origin = origin or "local" })
    end
    local ok, reason = check("see http://x.example")
    assert.is_false(ok)
    assert.equal("No links here, please", reason)
    assert.is_nil(check("no link"))
    assert.is_nil(check("http://x.example", "federation"))
    assert.equal(401, t:request("GET", "/_loom/no_links").status)
    assert.same({ you = alice.user_id }, t:request("GET", "/_loom/no_links", nil, alice.access_token).json)
  end)

  it("the worked example in docs/scripting.md works as shown", function()
    local script = doc_block("docs/scripting.md", "-- motd.lua")
    start({ motd = script }, {})
    write(dir .. "/motd.lua", script)
    local motd, alice = t:register("motd"), t:register("alice")
    local room = t:request("POST", "/_matrix/client/v3/createRoom", { preset = "public_chat" },
      motd.access_token).json.room_id
    assert.equal(200, t:request("POST", "/_matrix/client/v3/join/" .. enc(room), {}, alice.access_token).status)
    -- without its room option it refuses to load
    local report = assert(t.hs.scripts:reload { scripts = { "motd.lua" }, config_dir = dir })
    assert.same({ "motd" }, report.failed)
    assert.truthy(t:logged("motd: set motd.room"))
    report = assert(t.hs.scripts:reload { scripts = { "motd.lua" }, config_dir = dir,
      motd = { room = room, poster = motd.user_id, every_hours = 1 } })
    assert.same({ "motd" }, report.loaded)
    local r = t:request("PUT", "/_loom/motd", { topic = "Be kind" }, alice.access_token)
    assert.equal(403, r.status)
    assert(t.hs.store.conn:run("UPDATE users SET admin = 1 WHERE user_id = ?", alice.user_id))
    r = t:request("PUT", "/_loom/motd", { topic = 1 }, alice.access_token)
    assert.equal("M_BAD_JSON", r.json.errcode)
    r = t:request("PUT", "/_loom/motd", { topic = "Be kind" }, alice.access_token)
    assert.equal(200, r.status, r.body)
    assert.equal("Be kind", t.hs.rooms:state_event(room, "m.room.topic", "").content.topic)
    local function check(sender)
      return t.server:fire("room/event/check", { type = "m.room.message", sender = sender, room_id = room,
        content = { msgtype = "m.text", body = "https://x.example" } }, { origin = "local" })
    end
    assert.is_nil(check(alice.user_id))
    local ok, reason = check(motd.user_id)
    assert.is_false(ok)
    assert.equal("Only admins may post links here", reason)
    -- the timer posts the topic as a notice
    local e = t.hs.scripts:get("motd").environment
    assert.is_table(e)
    local timer = t.hs.scripts:get("motd").timers[1]
    assert.is_number(timer.fn(timer))
    local msgs = t:request("GET", "/_matrix/client/v3/rooms/" .. enc(room) .. "/messages?dir=b&limit=5", nil,
      alice.access_token).json.chunk
    assert.equal("Today: Be kind", msgs[1].content.body)
    assert.equal(motd.user_id, msgs[1].sender)
  end)

  it("bin/loom reload makes a running bin/loom serve reload its scripts", function()
    dir = tmp.dir()
    local cfg = dir .. "/loom.cfg.lua"
    write(cfg, table.concat({
      'server_name = "test.local"', "port = 0", 'database = { path = "' .. dir .. '/loom.db" }',
      'log_level = "warn"', "password_iterations = 1000", 'scripts = { "policy/version.lua" }', "",
    }, "\n"))
    os.execute("mkdir -p '" .. dir .. "/policy'")
    local script = dir .. "/policy/version.lua"
    write(script, [[module:route("GET", "/_loom/version", function() return { v = 1 } end, { auth = false })]])
    local c = child.start { "bin/loom", "serve", "--config", cfg }
    local ok, err = pcall(function()
      assert(c:wait_for("http://127%.0%.0%.1:(%d+)"))
      assert.equal(1, c:request("GET", "/_loom/version").json.v)
      local f = assert(io.open(dir .. "/loom.pid"))
      assert.equal(c.pid, tonumber(f:read("l")))
      f:close()
      write(script, [[module:route("GET", "/_loom/version", function() return { v = 2 } end, { auth = false })]])
      local out = { text = "" }
      function out.write(_, ...) for _, s in ipairs { ... } do out.text = out.text .. s end end
      assert.equal(0, cli.main({ "reload", "--config", cfg }, { stdout = out, stderr = out }))
      assert.matches("SIGHUP", out.text)
      local v
      child.turn_until(function()
        v = c:request("GET", "/_loom/version").json.v
        return v == 2
      end, 5000)
      assert.equal(2, v)
    end)
    local code = c:stop()
    assert(ok, err)
    assert.equal(0, code, c.err)
    assert.is_nil(io.open(dir .. "/loom.pid"))
    -- no server: reload says so
    local out = { text = "" }
    function out.write(_, ...) for _, s in ipairs { ... } do out.text = out.text .. s end end
    assert.equal(1, cli.main({ "reload", "--config", cfg }, { stdout = out, stderr = out }))
    assert.matches("no pid file", out.text)
    -- a stale pid file naming another program: no signal
    local exited = false
    local sleeper = uv.spawn("sleep", { args = { "5" } }, function() exited = true end)
    write(dir .. "/loom.pid", sleeper:get_pid() .. "\n")
    out.text = ""
    assert.equal(1, cli.main({ "reload", "--config", cfg }, { stdout = out, stderr = out }))
    assert.matches("is not loom", out.text)
    sleeper:kill("sigterm")
    child.turn_until(function() return exited end, 5000)
    sleeper:close()
    for _ = 1, 3 do uv.run("nowait") end
    write(dir .. "/loom.pid", "garbage")
    out.text = ""
    assert.equal(1, cli.main({ "reload", "--config", cfg }, { stdout = out, stderr = out }))
    assert.matches("does not hold a process ID", out.text)
  end)
end)
