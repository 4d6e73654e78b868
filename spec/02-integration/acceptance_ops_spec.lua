-- Acceptance: loom as an operator runs it, written from docs/cli.md,
-- docs/config.md, docs/http.md and docs/metrics.md alone: `bin/loom serve`
-- as a child process on 127.0.0.1, metrics and JSON logs turned on, a
-- long-poll cut by SIGTERM, a taken port, a bad config, the connection limit.
local uv = require "luv"
local json = require("loom.core").json
local tesths = require "support.hs"
local child = require "support.child"
local files = require "support.files"
local tmp = require "support.tmpdb"
local write, exists, sh = files.write, files.exists, child.sh
local begin_request, finish, request = child.begin_request, child.finish, child.request

-- Prometheus text format 0.0.4, line by line: every sample belongs to a
-- metric with HELP and TYPE lines; returns { [name] = { type, samples = {line...} } }.
local function parse_prometheus(text)
  local metrics, types = {}, {}
  assert(text:sub(-1) == "\n", "the exposition ends with a newline")
  for line in text:gmatch("([^\n]*)\n") do
    if line:find("^# HELP ") then
      local name = assert(line:match("^# HELP ([%a_:][%w_:]*) "), line)
      metrics[name] = metrics[name] or { samples = {} }
    elseif line:find("^# TYPE ") then
      local name, typ = line:match("^# TYPE ([%a_:][%w_:]*) (%a+)$")
      assert(name, line)
      assert(({ counter = 1, gauge = 1, histogram = 1, summary = 1, untyped = 1 })[typ], line)
      types[name] = typ
    elseif line ~= "" then
      local name, rest = line:match("^([%a_:][%w_:]*)(.*)$")
      assert(name, "bad sample line: " .. line)
      local labels, value = rest:match("^(%b{}) (%S+)$")
      if not labels then value = rest:match("^ (%S+)$") end
      assert(value, "bad sample line: " .. line)
      assert(tonumber(value) or value == "+Inf" or value == "-Inf" or value == "NaN", line)
      if labels then
        local inner = labels:sub(2, -2)
        local rebuilt = inner:gsub('[%a_][%w_]*="[^"\\]*"', ""):gsub(",", "")
        assert(rebuilt == "", "bad labels: " .. line)
      end
      local base = name:gsub("_bucket$", ""):gsub("_sum$", ""):gsub("_count$", "")
      local m = metrics[name] or metrics[base]
      assert(m, "sample without HELP: " .. line)
      assert(types[name] or types[base], "sample without TYPE: " .. line)
      m.samples[#m.samples + 1] = line
      m.type = types[name] or types[base]
    end
  end
  return metrics
end

describe("acceptance: bin/loom serve as an operator runs it", function()
  local dir, c, db
  before_each(function()
    dir = files.tmpdir()
    db = dir .. "/loom.db"
  end)
  after_each(function()
    if c then c:stop(); c = nil end
    files.remove_tree(dir)
  end)

  local function config(extra)
    local cfg = dir .. "/loom.cfg.lua"
    write(cfg, ([[
server_name = "ops.test"
port = 0
database = { path = %q }
password_iterations = 1000
%s
]]):format(db, extra or ""))
    return cfg
  end

  local function serve(cfg)
    c = child.start { "bin/loom", "serve", "--config", cfg }
    local port = assert(c:wait_for("serving ops%.test at http://127%.0%.0%.1:(%d+)"))
    return tonumber(port)
  end

  local function register(port, name)
    local r = request(port, "POST", "/_matrix/client/v3/register",
      { username = name, password = "pw-" .. name .. "-long", auth = { type = "m.login.dummy" } })
    assert(r.status == 200, r.body)
    return r.json
  end

  it("metrics = { port = 0 }: /metrics on its own listener, in Prometheus text, counting what was done", function()
    local port = serve(config("metrics = { port = 0 }"))
    local mport = tonumber(c.out:match("metrics at http://127%.0%.0%.1:(%d+)/metrics"))
    assert.truthy(mport, c.out)
    assert.not_equal(port, mport)
    local alice = register(port, "alice")
    local room = request(port, "POST", "/_matrix/client/v3/createRoom", {}, alice.access_token).json.room_id
    assert.truthy(room)
    assert.equal(404, request(port, "GET", "/no/such/path").status)
    assert.equal(404, request(port, "GET", "/metrics").status)      -- the client listener never serves it

    local r = request(mport, "GET", "/metrics")
    assert.equal(200, r.status)
    assert.truthy(r.raw:lower():find("content%-type: text/plain; version=0%.0%.4"))
    local m = parse_prometheus(r.body)
    for _, name in ipairs { "loom_http_requests_total", "loom_http_request_duration_seconds",
      "loom_http_connections", "loom_events_persisted_total", "loom_sync_waiting", "loom_sync_wakeups_total",
      "loom_db_statement_duration_seconds", "loom_lua_memory_bytes", "process_start_time_seconds" } do
      assert.truthy(m[name], "missing " .. name)
    end
    assert.equal("counter", m.loom_http_requests_total.type)
    assert.equal("histogram", m.loom_http_request_duration_seconds.type)
    local body = r.body
    local created = 'loom_http_requests_total{route="/_matrix/client/v3/createRoom",method="POST",code="200"} 1'
    assert.truthy(body:find(created, 1, true), body)
    assert.truthy(body:find('route="unmatched"', 1, true))
    assert.falsy(body:find("/no/such/path", 1, true))               -- never the raw path
    local persisted = tonumber(body:match("\nloom_events_persisted_total (%d+)"))
    assert.truthy(persisted and persisted >= 5, "createRoom persists several events")
    assert.truthy(body:find('loom_sync_wakeups_total{reason="data"}', 1, true))
    assert.truthy(body:find('loom_sync_wakeups_total{reason="timeout"}', 1, true))
    assert.truthy(tonumber(body:match("\nloom_lua_memory_bytes (%S+)")) > 0)
    assert.equal(404, request(mport, "GET", "/_matrix/client/versions").status)
  end)

  it("a long-poll waiting shows in loom_sync_waiting and is answered at once on SIGTERM; exit 0, pid file gone",
    function()
    local port = serve(config("metrics = { port = 0 }"))
    local mport = tonumber(c.out:match("metrics at http://127%.0%.0%.1:(%d+)/metrics"))
    local alice = register(port, "alice")
    assert.truthy(exists(dir .. "/loom.pid"))
    local first = request(port, "GET", "/_matrix/client/v3/sync", nil, alice.access_token)
    local since = first.json.next_batch
    local poll = begin_request(port, "GET", "/_matrix/client/v3/sync?timeout=30000&since=" .. since, nil,
      alice.access_token)
    local waiting
    child.turn_until(function()
      waiting = request(mport, "GET", "/metrics").body:match("\nloom_sync_waiting (%d+)")
      return waiting == "1"
    end, 5000)
    assert.equal("1", waiting)
    local t0 = uv.hrtime()
    c.handle:kill("sigterm")
    finish(poll, 8000)
    local ms = (uv.hrtime() - t0) / 1e6
    assert.equal(200, poll.status, poll.raw)
    assert.equal(since, poll.json.next_batch)
    assert.truthy(ms < 2000, ("the long-poll took %.0f ms to be answered"):format(ms // 1))
    child.turn_until(function() return c.exit_code ~= nil end, 10000)
    assert.equal(0, c.exit_code)
    assert.falsy(exists(dir .. "/loom.pid"))
  end)

  it("a port already taken: exit status 1 and one line on stderr; the running server keeps its pid file", function()
    local cfg = config()
    local port = serve(cfg)
    local other = dir .. "/other.cfg.lua"
    write(other, ([[
server_name = "ops.test"
port = %d
database = { path = %q }
pid_file = %q
]]):format(port, db, dir .. "/loom.pid"))
    local out = sh("lua5.4 bin/loom serve --config " .. other)
    assert.truthy(out:find("rc=1\n", 1, true), out)
    assert.truthy(out:find("loom: cannot listen on 127.0.0.1 port " .. port .. ": EADDRINUSE", 1, true), out)
    assert.falsy(out:find("Segmentation", 1, true), out)
    assert.truthy(exists(dir .. "/loom.pid"))
    assert.equal(200, request(port, "GET", "/_matrix/client/versions").status)
  end)

  it("a config value of the wrong type stops serve with status 1 and a message naming file and key", function()
    local cfg = dir .. "/loom.cfg.lua"
    write(cfg, ('port = "8008"\ndatabase = { path = %q }\n'):format(db))
    local out = sh("lua5.4 bin/loom serve --config " .. cfg)
    assert.truthy(out:find("rc=1\n", 1, true), out)
    assert.truthy(out:find(cfg .. ": port must be an integer 0..65535", 1, true), out)
  end)

  it("an unknown command or option is bad usage: status 2", function()
    assert.truthy(sh("lua5.4 bin/loom frobnicate"):find("rc=2\n", 1, true))
    assert.truthy(sh("lua5.4 bin/loom serve --no-such-option"):find("rc=2\n", 1, true))
  end)
end)

describe("acceptance: JSON logs from bin/loom serve", function()
  it("each line parses; request lines have method, path without the query, status, ms, remote", function()
    local dir = files.tmpdir()
    local db = dir .. "/loom.db"
    local cfg = dir .. "/loom.cfg.lua"
    write(cfg, ('server_name = "ops.test"\nport = 0\ndatabase = { path = %q }\npassword_iterations = 1000\n'
      .. 'log_format = "json"\nlog_level = "debug"\n'):format(db))
    local c = child.start { "bin/loom", "serve", "--config", cfg }
    local port = tonumber(assert(c:wait_for("http://127%.0%.0%.1:(%d+)")))
    local r = request(port, "GET", "/_matrix/client/versions?access_token=secret-token-value")
    assert.equal(200, r.status)
    assert.equal(404, request(port, "GET", "/nowhere").status)
    child.turn_until(function() return c.err:find("/nowhere", 1, true) end, 3000)
    assert.equal(0, (c:stop()))
    local lines, request_lines = 0, 0
    for line in c.err:gmatch("[^\n]+") do
      lines = lines + 1
      local obj = json.decode(line)
      assert.equal("table", type(obj), line)
      assert.truthy(obj.ts:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"), line)
      assert.truthy(({ debug = 1, info = 1, warn = 1, error = 1 })[obj.level], line)
      assert.equal("string", type(obj.msg))
      assert.truthy(line:find('^{"ts":"[^"]*","level":"[^"]*","msg":'), line)
      if obj.method then
        request_lines = request_lines + 1
        assert.equal("string", type(obj.path))
        assert.falsy(obj.path:find("?", 1, true))
        assert.equal("number", type(obj.status))
        assert.equal("number", type(obj.ms))
        assert.equal("127.0.0.1", obj.remote)
      end
    end
    assert.truthy(lines >= 3)
    assert.equal(2, request_lines)
    assert.falsy(c.err:find("secret-token-value", 1, true))
    files.remove_tree(dir)
  end)
end)

describe("acceptance: past limits.max_connections", function()
  it("new connections get 503 M_LIMIT_EXCEEDED with Retry-After, and the log does not get a line each", function()
    local t = tesths.start { limits = { max_connections = 2 }, log_level = "info", metrics = { port = 0 } }
    local idle = {}
    for i = 1, 2 do
      local tcp = uv.new_tcp()
      local ok = false
      tcp:connect("127.0.0.1", t.port, function(e) ok = not e end)
      child.turn_until(function() return ok end, 2000)
      idle[i] = tcp
    end
    child.turn_until(function() return false end, 100)
    local answers = {}
    for i = 1, 20 do answers[i] = begin_request(t.port, "GET", "/_matrix/client/versions") end
    for i = 1, 20 do finish(answers[i], 5000) end
    for i = 1, 20 do
      local a = answers[i]
      assert.equal(503, a.status, a.raw)
      assert.truthy(a.raw:find("\r\nRetry%-After: %d+\r\n"), a.raw)
      assert.equal("M_LIMIT_EXCEEDED", a.json.errcode)
      assert.equal("number", type(a.json.retry_after_ms))
    end
    local warn_lines = 0
    for _, line in ipairs(t.logs) do
      if line:find("connection", 1, true) then warn_lines = warn_lines + 1 end
    end
    assert.truthy(warn_lines >= 1 and warn_lines <= 2, table.concat(t.logs, "\n"))
    -- the metrics listener still answers while the client listener is full
    local scrape = finish(begin_request(t.server:metrics_port(), "GET", "/metrics"), 3000)
    assert.equal(200, scrape.status)
    assert.truthy(tonumber(scrape.body:match("\nloom_http_connections (%d+)")) >= 2)
    for _, tcp in ipairs(idle) do tcp:close() end
    child.turn_until(function() return false end, 100)
    -- once the idle ones are gone, clients are served again
    local r = finish(begin_request(t.port, "GET", "/_matrix/client/versions"), 5000)
    assert.equal(200, r.status)
    t:stop()
  end)
end)

describe("acceptance: metrics of a serving homeserver with a script", function()
  it("counts wakeups by reason, labels a script's route by its pattern, answers HEAD without a body", function()
    local dir = files.tmpdir()
    write(dir .. "/s.lua", [[
      module:route("GET", "/_s/{x}", function() return {} end, { auth = false })
      module:hook("server/stopping", function() module:log("info", "bye from the script") end)
    ]])
    local t = tesths.start { config_dir = dir, scripts = { "s.lua" }, metrics = { port = 0 }, log_level = "info" }
    local alice = t:register("alice")
    local room = t:request("POST", "/_matrix/client/v3/createRoom", {}, alice.access_token).json.room_id
    local nb = t:request("GET", "/_matrix/client/v3/sync", nil, alice.access_token).json.next_batch
    assert.equal(200, t:request("GET", "/_s/abc").status)
    t:run(function()
      local h = t:go(function()
        return t:call("GET", "/_matrix/client/v3/sync?timeout=5000&since=" .. nb, nil, alice.access_token)
      end)
      t:sleep(100)
      t:call("PUT", "/_matrix/client/v3/rooms/" .. tesths.enc(room) .. "/send/m.room.message/1", { body = "hi" },
        alice.access_token)
      local r = t:await(h)
      assert.equal(1, #r.json.rooms.join[room].timeline.events)
      t:call("GET", "/_matrix/client/v3/sync?timeout=100&since=" .. r.json.next_batch, nil, alice.access_token)
    end)
    local text = t.server.metrics:render()
    assert.truthy(text:find('\nloom_sync_wakeups_total{reason="data"} 1\n', 1, true), text)
    assert.truthy(text:find('\nloom_sync_wakeups_total{reason="timeout"} 1\n', 1, true), text)
    assert.truthy(text:find('\nloom_sync_waiting 0\n', 1, true), text)
    assert.truthy(text:find('loom_http_requests_total{route="/_s/{x}",method="GET",code="200"} 1', 1, true), text)
    assert.falsy(text:find("/_s/abc", 1, true))
    local st = begin_request(t.server:metrics_port(), "HEAD", "/metrics")
    finish(st, 3000)
    assert.equal(200, st.status)
    assert.equal("", st.body)
    assert.truthy(tonumber(st.raw:match("Content%-Length: (%d+)")) > 0)
    t:stop()
    local said
    for _, line in ipairs(t.logs) do if line:find("bye from the script", 1, true) then said = true end end
    assert.is_true(said, "a script's server/stopping hook runs when the server stops")
    files.remove_tree(dir)
  end)
end)

describe("acceptance: a database another process holds locked", function()
  it("writes answer a logged 500 M_UNKNOWN with nothing about the database; the retried txn then succeeds once",
    function()
    local db = require "loom.db"
    local path = tmp.path()
    local t = tesths.start { database = { path = path, busy_timeout = 100 } }
    local alice = t:register("alice")
    local room = t:request("POST", "/_matrix/client/v3/createRoom", {}, alice.access_token).json.room_id
    local since = t:request("GET", "/_matrix/client/v3/sync", nil, alice.access_token).json.next_batch
    local other = assert(db.open { path = path, migrate = false, busy_timeout = 0 })
    other:exec("BEGIN EXCLUSIVE")
    local send_path = "/_matrix/client/v3/rooms/" .. tesths.enc(room) .. "/send/m.room.message/locked1"
    local r = t:request("PUT", send_path, { msgtype = "m.text", body = "while locked" }, alice.access_token)
    local created = t:request("POST", "/_matrix/client/v3/createRoom", {}, alice.access_token)
    local s = t:request("GET", "/_matrix/client/v3/sync?timeout=0&since=" .. since, nil, alice.access_token)
    other:exec("ROLLBACK")
    other:close()
    assert.equal(500, r.status)
    assert.equal("M_UNKNOWN", r.json.errcode)
    assert.falsy(r.body:lower():find("lock", 1, true))
    assert.falsy(r.body:lower():find("sqlite", 1, true))
    assert.equal(500, created.status)
    assert.truthy(t:logged_text("sqlite_busy"), table.concat(t.logs, "\n"))
    -- the read during the lock is not an empty answer with an advanced token
    assert.equal(200, s.status)
    assert.equal(since, s.json.next_batch)
    local again = t:request("PUT", send_path, { msgtype = "m.text", body = "while locked" }, alice.access_token)
    assert.equal(200, again.status, again.body)
    local msgs = t:request("GET", "/_matrix/client/v3/rooms/" .. tesths.enc(room) .. "/messages?dir=b&limit=20", nil,
      alice.access_token).json.chunk
    local n = 0
    for _, e in ipairs(msgs) do if e.type == "m.room.message" then n = n + 1 end end
    assert.equal(1, n)
    assert.equal(1, #t:request("GET", "/_matrix/client/v3/joined_rooms", nil, alice.access_token).json.joined_rooms)
    t:stop()
    tmp.remove(path)
  end)
end)
