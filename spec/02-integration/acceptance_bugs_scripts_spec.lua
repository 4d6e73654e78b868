-- luacheck: std +busted
-- Acceptance findings: bugs found by trying loom as operators and script
-- authors do, from the docs and the issue text; each spec failed before its fix.
local uv = require "luv"
local json = require("loom.core").json
local tesths = require "support.hs"
local child = require "support.child"
local files = require "support.files"
local enc = tesths.enc
local write = files.write

-- docs/scripting.md: module:log(level, ...) takes `debug`, `info`, `warn`,
-- `error`; docs/http.md: every JSON log line's `level` is "one of the four
-- levels", and log_level filters below it. A script that passes another level
-- (a typo, "warning", "WARN") gets neither an error nor a filtered line: the
-- JSON log carries "level":"loud" past log_level = "warn".
describe("acceptance: module:log with a level that is not one of the four", function()
  it("never writes a JSON line whose level is not debug/info/warn/error", function()
    local dir = files.tmpdir()
    write(dir .. "/loom.cfg.lua", ('server_name = "ops.test"\nport = 0\ndatabase = { path = %q }\n'
      .. 'log_format = "json"\nlog_level = "warn"\nscripts = { "l.lua" }\n'):format(dir .. "/loom.db"))
    write(dir .. "/l.lua", 'pcall(module.log, module, "warning", "disk %s", "low")\n'
      .. 'pcall(module.log, module, "WARN", "upper case")\nmodule:log("warn", "done")\n')
    local c = child.start { "bin/loom", "serve", "--config", dir .. "/loom.cfg.lua" }
    assert(c:wait_for("http://127%.0%.0%.1:(%d+)"))
    child.turn_until(function() return c.err:find("done", 1, true) end, 3000)
    c:stop()
    files.remove_tree(dir)
    local levels = { debug = true, info = true, warn = true, error = true }
    for line in c.err:gmatch("[^\n]+") do
      local obj = json.decode(line)
      assert.truthy(obj and levels[obj.level], "a JSON log line with an unknown level: " .. line)
    end
  end)
end)

-- docs/hooks/room-event-check.md: the handler gets the event's `content` and
-- "that content is what is hashed, signed, stored and sent". In room versions
-- 11 and 12 the redacted event's ID is part of a redaction's content
-- (`content.redacts`), and the stored redaction has it there; the hook gets
-- the content without it, so a policy cannot tell which event is being
-- redacted (e.g. "nobody redacts the moderators' notices").
describe("acceptance: a local redaction in room/event/check", function()
  it("shows content.redacts in a v11 room, as the event is stored", function()
    local t = tesths.start()
    local seen
    t.server:hook("room/event/check", function(ev, ctx)
      if ev.type == "m.room.redaction" then seen = { content = ev.content, version = ctx.room_version } end
    end)
    local alice = t:register("alice")
    local room = t:request("POST", "/_matrix/client/v3/createRoom", { room_version = "11" }, alice.access_token)
      .json.room_id
    local s = t:request("PUT", "/_matrix/client/v3/rooms/" .. enc(room) .. "/send/m.room.message/1", { body = "x" },
      alice.access_token)
    local r = t:request("PUT", "/_matrix/client/v3/rooms/" .. enc(room) .. "/redact/" .. enc(s.json.event_id) .. "/r1",
      { reason = "spam" }, alice.access_token)
    assert.equal(200, r.status, r.body)
    local stored = t:request("GET", "/_matrix/client/v3/rooms/" .. enc(room) .. "/event/" .. enc(r.json.event_id),
      nil, alice.access_token).json
    t:stop()
    assert.equal(s.json.event_id, stored.content.redacts)
    assert.equal("11", seen.version)
    assert.equal(s.json.event_id, seen.content.redacts)
    assert.same(stored.content, seen.content)
  end)
end)

-- docs/scripting.md: "When fn returns a number, it runs again that many
-- seconds later"; STYLE.md: a faulty script must not take the server down.
-- A timer that returns 0 (or anything under a millisecond, 0.0001) is re-run
-- by libuv within the same pass over its timers, for ever: the server answers
-- nothing more and ignores SIGTERM (the process spins at 100% CPU until
-- SIGKILL). A bad interval should be refused (an error, logged; the timer
-- ends) or rounded up so that the loop gets to the clients.
describe("acceptance: a timer that asks to run again after 0 seconds", function()
  for _, again in ipairs { "0", "0.0001" } do
    it("returning " .. again .. " leaves the server answering and stoppable", function()
      local dir = files.tmpdir()
      write(dir .. "/loom.cfg.lua", ('server_name = "ops.test"\nport = 0\ndatabase = { path = %q }\n'
        .. 'scripts = { "t.lua" }\n'):format(dir .. "/loom.db"))
      write(dir .. "/t.lua", "module:timer(0.2, function() return " .. again .. " end)\n")
      local c = child.start { "bin/loom", "serve", "--config", dir .. "/loom.cfg.lua" }
      local port = tonumber(assert(c:wait_for("http://127%.0%.0%.1:(%d+)")))
      child.turn_until(function() return false end, 400)     -- the timer has fired by now
      local answered = false
      local tcp = uv.new_tcp()
      tcp:connect("127.0.0.1", port, function(e)
        if e then return end
        tcp:read_start(function(_, data) if data and data:find("^HTTP/1%.1 200") then answered = true end end)
        tcp:write("GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      end)
      child.turn_until(function() return answered end, 2000)
      tcp:close()
      c.handle:kill("sigterm")
      child.turn_until(function() return c.exit_code ~= nil end, 3000)
      local stopped = c.exit_code ~= nil
      if not stopped then c.handle:kill("sigkill") end
      c:stop()
      files.remove_tree(dir)
      assert.is_true(answered, "no answer to /versions within 2 s")
      assert.is_true(stopped, "SIGTERM did not stop the server within 3 s")
    end)
  end
end)

-- docs/scripting.md: module:send "builds, signs and stores an event ... It
-- returns the event ID, or nil, a message and an errcode". A script that
-- posts a notice from inside a room/event/check handler and then vetoes the
-- message (a natural "tell the room why" policy) gets an event ID back, but
-- the notice runs inside the vetoed event's transaction and is rolled back
-- with it: the ID names an event that is not stored, was never announced to
-- room/event/persisted, and that no client sees. module:send must either
-- store what it acknowledges or refuse (nil, message, errcode, or a loud
-- error for the wrong phase).
describe("acceptance: module:send inside a veto hook", function()
  it("does not acknowledge an event that is then not stored", function()
    local dir = files.tmpdir()
    write(dir .. "/s.lua", [[
      local sent = {}
      module:hook("room/event/check", function(ev)
        if ev.type == "m.room.message" and ev.content.body == "bad" then
          sent.id = module:send(ev.sender, ev.room_id, "m.room.message",
            { msgtype = "m.notice", body = "a message was refused" })
          return false, "bad word"
        end
      end)
      module:route("GET", "/_sent", function()
        return { id = sent.id, stored = sent.id ~= nil and module:event(sent.id) ~= nil }
      end, { auth = false })
    ]])
    local t = tesths.start { config_dir = dir, scripts = { "s.lua" } }
    local alice = t:register("alice")
    local room = t:request("POST", "/_matrix/client/v3/createRoom", {}, alice.access_token).json.room_id
    local r = t:request("PUT", "/_matrix/client/v3/rooms/" .. enc(room) .. "/send/m.room.message/b1", { body = "bad" },
      alice.access_token)
    local sent = t:request("GET", "/_sent").json
    t:stop()
    files.remove_tree(dir)
    assert.equal(403, r.status)
    if sent.id then
      assert.is_true(sent.stored, "module:send returned " .. sent.id .. " but that event is not stored")
    end
  end)
end)

-- Issue 7: "On shutdown, waiting long-polls get their (empty) response at
-- once"; "observers are isolated from each other"; docs/scripting.md:
-- "Stopping the server unloads every script" (running their on_unload).
-- server/stopping is fired with server:fire, so the first handler that
-- raises ends the chain: a script whose server/stopping handler has a bug
-- (at a priority above the homeserver's own handler) leaves the sync
-- notifier open — a waiting /sync gets no answer and is cut at the shutdown
-- deadline — and at any priority it stops the other scripts' stopping
-- handlers and every script's unload (on_unload never runs).
describe("acceptance: a script's server/stopping handler that raises", function()
  it("does not keep long-polls, other handlers or unloading from running at SIGTERM", function()
    local dir = files.tmpdir()
    write(dir .. "/loom.cfg.lua", ('server_name = "ops.test"\nport = 0\ndatabase = { path = %q }\n'
      .. 'password_iterations = 1000\ntimeouts = { shutdown = 4000 }\nscripts = { "a.lua", "b.lua" }\n')
      :format(dir .. "/loom.db"))
    write(dir .. "/a.lua", 'module:hook("server/stopping", function() error("bug in a") end, 100)\n')
    write(dir .. "/b.lua", 'module:on_unload(function() module:log("info", "b on_unload ran") end)\n'
      .. 'module:hook("server/stopping", function() module:log("info", "b stopping ran") end)\n')
    local c = child.start { "bin/loom", "serve", "--config", dir .. "/loom.cfg.lua" }
    c.port = tonumber(assert(c:wait_for("http://127%.0%.0%.1:(%d+)")))
    local reg = c:request("POST", "/_matrix/client/v3/register",
      { username = "alice", password = "pw-alice-long", auth = { type = "m.login.dummy" } })
    local tok = reg.json.access_token
    local since = c:request("GET", "/_matrix/client/v3/sync", nil, tok).json.next_batch
    local raw, done = "", false
    local tcp = uv.new_tcp()
    tcp:connect("127.0.0.1", c.port, function(e)
      if e then done = true; return end
      tcp:read_start(function(_, data) if data then raw = raw .. data else done = true end end)
      tcp:write(("GET /_matrix/client/v3/sync?timeout=30000&since=%s HTTP/1.1\r\nHost: x\r\n"
        .. "Authorization: Bearer %s\r\nConnection: close\r\n\r\n"):format(since, tok))
    end)
    child.turn_until(function() return false end, 300)
    local t0 = uv.hrtime()
    c.handle:kill("sigterm")
    child.turn_until(function() return done end, 8000)
    local ms = (uv.hrtime() - t0) / 1e6
    tcp:close()
    c:stop()
    files.remove_tree(dir)
    assert.truthy(c.err:find("bug in a", 1, true))               -- logged
    assert.truthy(raw:find("^HTTP/1%.1 200"), "the waiting /sync got no answer: " .. raw)
    assert.truthy(ms < 2000, ("the waiting /sync was answered after %.0f ms"):format(ms))
    assert.truthy(c.err:find("b stopping ran", 1, true), "b's server/stopping handler did not run")
    assert.truthy(c.err:find("b on_unload ran", 1, true), "b was not unloaded at stop")
  end)
end)
