-- /metrics on its own listener and JSON logs, against real servers: requests
-- counted by route pattern, events persisted, long-polls woken, memory; the
-- scrape is read by a strict parser of the Prometheus text format 0.0.4.
local uv = require "luv"
local tesths = require "support.hs"
local child = require "support.child"
local tmp = require "support.tmpdb"
local core = require "loom.core"
local app = require "loom.http.app"

local json = core.json
local enc = tesths.enc
local V3 = "/_matrix/client/v3"

-- ---- a strict reader of the text exposition format --------------------------

local function parse_value(s)
  if s == "NaN" then return 0 / 0 end
  if s == "+Inf" or s == "Inf" then return math.huge end
  if s == "-Inf" then return -math.huge end
  assert(s:match("^[-+]?%d*%.?%d+[eE]?[-+]?%d*$"), "bad sample value " .. s)
  return assert(tonumber(s), "bad sample value " .. s)
end

-- label set text after "{" -> labels table, rest of the line after "}"
local function parse_labels(s, lineno)
  local labels, pos = {}, 1
  while true do
    if s:sub(pos, pos) == "}" then return labels, s:sub(pos + 1) end
    local name, after = s:match("^([%a_][%w_]*)=\"()", pos)
    assert(name, "line " .. lineno .. ": bad label at " .. s:sub(pos))
    assert(labels[name] == nil, "line " .. lineno .. ": label " .. name .. " twice")
    pos = after
    local out = {}
    while true do
      local c = s:sub(pos, pos)
      assert(c ~= "", "line " .. lineno .. ": unterminated label value")
      if c == '"' then pos = pos + 1; break end
      if c == "\\" then
        local e = s:sub(pos + 1, pos + 1)
        local map = { ["\\"] = "\\", ['"'] = '"', n = "\n" }
        assert(map[e], "line " .. lineno .. ": bad escape \\" .. e)
        out[#out + 1] = map[e]
        pos = pos + 2
      else
        out[#out + 1] = c
        pos = pos + 1
      end
    end
    labels[name] = table.concat(out)
    local sep = s:sub(pos, pos)
    if sep == "," then pos = pos + 1
    else assert(sep == "}", "line " .. lineno .. ": expected , or } after a label") end
  end
end

local function label_key(labels, skip)
  local names = {}
  for k in pairs(labels) do if k ~= skip then names[#names + 1] = k end end
  table.sort(names)
  local parts = {}
  for i, k in ipairs(names) do parts[i] = k .. "=" .. labels[k] end
  return table.concat(parts, ",")
end

-- text -> { [family name] = { type, help, samples = { { name, labels, value } } } }.
-- Raises on anything the format does not allow.
local function parse_exposition(text)
  assert(text:sub(-1) == "\n", "the exposition must end with a newline")
  local families, seen_series = {}, {}
  local function family(name)
    local f = families[name]
    if not f then f = { samples = {} }; families[name] = f end
    return f
  end
  local lineno = 0
  for line in text:gmatch("([^\n]*)\n") do
    lineno = lineno + 1
    if line:match("^#") then
      local kw, name, rest = line:match("^# (%u+) ([%a_:][%w_:]*) ?(.*)$")
      if kw == "TYPE" then
        local f = family(name)
        assert(f.type == nil, "line " .. lineno .. ": second TYPE for " .. name)
        assert(#f.samples == 0, "line " .. lineno .. ": TYPE after samples of " .. name)
        assert(({ counter = 1, gauge = 1, histogram = 1, summary = 1, untyped = 1 })[rest],
          "line " .. lineno .. ": bad type " .. rest)
        f.type = rest
      elseif kw == "HELP" then
        local f = family(name)
        assert(f.help == nil, "line " .. lineno .. ": second HELP for " .. name)
        assert(not rest:find("\\[^\\n]") or rest:find("\\\\"), "line " .. lineno .. ": bad escape in HELP")
        f.help = rest
      end
    elseif line ~= "" then
      local name, rest = line:match("^([%a_:][%w_:]*)(.*)$")
      assert(name, "line " .. lineno .. ": not a sample: " .. line)
      local labels = {}
      if rest:sub(1, 1) == "{" then labels, rest = parse_labels(rest:sub(2), lineno) end
      local value, ts = rest:match("^ (%S+)( ?%-?%d*)$")
      assert(value, "line " .. lineno .. ": bad sample: " .. line)
      assert(ts == "" or ts:match("^ %-?%d+$"), "line " .. lineno .. ": bad timestamp")
      local base = name
      if not (families[name] and families[name].type) then
        base = name:match("^(.*)_bucket$") or name:match("^(.*)_sum$") or name:match("^(.*)_count$") or name
      end
      local f = families[base]
      assert(f and f.type, "line " .. lineno .. ": sample of " .. name .. " has no TYPE")
      if f.type ~= "histogram" and f.type ~= "summary" then
        assert(base == name, "line " .. lineno .. ": " .. name .. " is not a sample of " .. base)
      end
      if f.type == "histogram" and name == base .. "_bucket" then
        assert(labels.le, "line " .. lineno .. ": bucket without le")
        parse_value(labels.le)
      end
      local key = name .. "{" .. label_key(labels) .. "}"
      assert(not seen_series[key], "line " .. lineno .. ": series twice: " .. key)
      seen_series[key] = true
      f.samples[#f.samples + 1] = { name = name, labels = labels, value = parse_value(value) }
    end
  end
  -- histograms: per label set, buckets in increasing le with cumulative
  -- counts, a +Inf bucket equal to _count, and a _sum
  for base, f in pairs(families) do
    if f.type == "histogram" then
      local sets = {}
      for _, s in ipairs(f.samples) do
        local k = label_key(s.labels, "le")
        local set = sets[k] or { buckets = {} }
        sets[k] = set
        if s.name == base .. "_bucket" then set.buckets[#set.buckets + 1] = s
        elseif s.name == base .. "_count" then set.count = s.value
        elseif s.name == base .. "_sum" then set.sum = s.value end
      end
      for k, set in pairs(sets) do
        local where = base .. "{" .. k .. "}"
        assert(set.count and set.sum, where .. ": _count and _sum missing")
        local last_le, last_n = -math.huge, 0
        for _, b in ipairs(set.buckets) do
          local le = parse_value(b.labels.le)
          assert(le > last_le, where .. ": le not increasing")
          assert(b.value >= last_n, where .. ": buckets not cumulative")
          last_le, last_n = le, b.value
        end
        assert(last_le == math.huge, where .. ": no +Inf bucket")
        assert(last_n == set.count, where .. ": +Inf bucket differs from _count")
      end
    end
  end
  return families
end

-- The value of the series of family name whose labels include want (nil when none).
local function sample(families, name, want, family_name)
  local f = families[family_name or name]
  if not f then return nil end
  for _, s in ipairs(f.samples) do
    if s.name == name then
      local match = true
      for k, v in pairs(want or {}) do if s.labels[k] ~= v then match = false end end
      if match then return s.value end
    end
  end
  return nil
end

-- One request to the metrics listener of t (inside t:run).
local function call_metrics(t, method, path)
  local client_port = t.port
  t.port = t.server:metrics_port()
  local ok, r = pcall(t.call, t, method, path)
  t.port = client_port
  assert(ok, r)
  return r
end

local function scrape(t)
  local r = t:run(function() return call_metrics(t, "GET", "/metrics") end)
  assert.equal(200, r.status)
  assert.equal("text/plain; version=0.0.4; charset=utf-8", r.headers["content-type"])
  return parse_exposition(r.body), r.body
end

describe("parse_exposition (the spec's own reader)", function()
  it("accepts good text and refuses what the format forbids", function()
    local good = table.concat({
      "# HELP a_total Things.", "# TYPE a_total counter", 'a_total{x="q\\"\\n\\\\"} 1', "",
      "# TYPE h histogram", 'h_bucket{le="1"} 1', 'h_bucket{le="+Inf"} 2', "h_sum 3.5", "h_count 2", "" }, "\n")
    local f = parse_exposition(good)
    assert.equal(1, sample(f, "a_total", { x = 'q"\n\\' }))
    assert.equal(2, sample(f, "h_count", {}, "h"))
    local bad = {
      "a 1\n",                                                            -- no TYPE
      "# TYPE a gauge\na{x=\"1} 1\n",                                     -- unterminated
      "# TYPE a gauge\na 1 2 3\n",                                        -- junk
      "# TYPE a gauge\na one\n",                                          -- bad value
      "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n", -- not cumulative
      "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n", -- +Inf ~= count
      "# TYPE a gauge\na 1",                                              -- no final newline
      "# TYPE a gauge\na{x=\"\\t\"} 1\n",                                 -- bad escape
    }
    for _, text in ipairs(bad) do
      assert.has_error(function() parse_exposition(text) end)
    end
  end)
end)

describe("/metrics", function()
  local t
  after_each(function() if t then t:stop(); t = nil end end)

  it("counts requests by route, events, long-polls woken and memory", function()
    t = tesths.start { metrics = { port = 0 } }
    local mport = t.server:metrics_port()
    assert.is_number(mport)
    assert.not_equal(t.port, mport)

    local reg = t:request("POST", V3 .. "/register", { username = "mallory", password = "pw",
      auth = { type = "m.login.dummy" } })
    assert.equal(200, reg.status)
    local tok = reg.json.access_token
    local room = t:request("POST", V3 .. "/createRoom", { name = "metrics" }, tok)
    assert.equal(200, room.status)
    local room_id = room.json.room_id
    local first = t:request("GET", V3 .. "/sync", nil, tok)
    assert.equal(200, first.status)
    local since = first.json.next_batch
    local sent = 0
    local woken = t:run(function()
      local poll = t:go(function()
        return t:call("GET", V3 .. "/sync?timeout=5000&since=" .. enc(since), nil, tok)
      end)
      t:sleep(100)
      local s = t:call("PUT", V3 .. "/rooms/" .. enc(room_id) .. "/send/m.room.message/t1",
        { msgtype = "m.text", body = "wake up" }, tok)
      assert.equal(200, s.status)
      sent = sent + 1
      return t:await(poll)
    end)
    assert.equal(200, woken.status)
    assert.truthy(woken.json.rooms.join[room_id], "the long-poll saw the room")
    for i = 2, 3 do
      local s = t:request("PUT", V3 .. "/rooms/" .. enc(room_id) .. "/send/m.room.message/t" .. i,
        { msgtype = "m.text", body = "more " .. i }, tok)
      assert.equal(200, s.status)
      sent = sent + 1
    end
    local missing = t:request("GET", "/_matrix/client/v3/no/such/thing", nil, tok)
    assert.equal(404, missing.status)

    local f, text = scrape(t)
    local send_route = V3 .. "/rooms/{roomId}/send/{eventType}/{txnId}"
    assert.equal(sent, sample(f, "loom_http_requests_total",
      { route = send_route, method = "PUT", code = "200" }), text)
    assert.equal(1, sample(f, "loom_http_requests_total",
      { route = V3 .. "/createRoom", method = "POST", code = "200" }))
    assert.equal(1, sample(f, "loom_http_requests_total", { route = V3 .. "/register", code = "200" }))
    assert.equal(2, sample(f, "loom_http_requests_total", { route = V3 .. "/sync", code = "200" }))
    assert.equal(1, sample(f, "loom_http_requests_total", { route = "unmatched", method = "GET", code = "404" }))
    -- raw paths never become labels
    assert.is_nil(text:find(room_id, 1, true))
    assert.is_nil(text:find("no/such/thing", 1, true))
    -- a latency histogram per route
    assert.equal(sent, sample(f, "loom_http_request_duration_seconds_count",
      { route = send_route, method = "PUT" }, "loom_http_request_duration_seconds"))
    local sync_secs = sample(f, "loom_http_request_duration_seconds_sum",
      { route = V3 .. "/sync", method = "GET" }, "loom_http_request_duration_seconds")
    assert.truthy(sync_secs >= 0.09, "the long-poll waited ~100 ms: " .. sync_secs)

    assert.truthy(sample(f, "loom_events_persisted_total") >= sent + 5, "createRoom adds several events")
    assert.truthy(sample(f, "loom_sync_wakeups_total", { reason = "data" }) >= 1)
    assert.equal(0, sample(f, "loom_sync_wakeups_total", { reason = "timeout" }))
    assert.equal(0, sample(f, "loom_sync_waiting"))
    assert.truthy(sample(f, "loom_lua_memory_bytes") > 0)
    assert.truthy(sample(f, "loom_http_connections") >= 0)
    local db_count = sample(f, "loom_db_statement_duration_seconds_count", {}, "loom_db_statement_duration_seconds")
    assert.truthy(db_count > 10, "statements timed: " .. tostring(db_count))
    local start = sample(f, "process_start_time_seconds")
    local now = core.now_ms() / 1000
    assert.truthy(start > now - 86400 * 365 and start <= now + 1, "start time " .. start)
    for name, fam in pairs(f) do
      assert.is_string(fam.help, name .. " has HELP")
    end
  end)

  it("counts a long-poll that times out, and shows it waiting meanwhile", function()
    t = tesths.start { metrics = { port = 0 } }
    local u = t:register("walter")
    local first = t:request("GET", V3 .. "/sync", nil, u.access_token)
    local during = t:run(function()
      local poll = t:go(function()
        return t:call("GET", V3 .. "/sync?timeout=300&since=" .. enc(first.json.next_batch), nil, u.access_token)
      end)
      t:sleep(100)
      local r = call_metrics(t, "GET", "/metrics")
      assert.equal(200, t:await(poll).status)
      return r
    end)
    local f = parse_exposition(during.body)
    assert.equal(1, sample(f, "loom_sync_waiting"))
    assert.truthy(sample(f, "loom_http_connections") >= 1)
    f = scrape(t)
    assert.equal(0, sample(f, "loom_sync_waiting"))
    assert.equal(1, sample(f, "loom_sync_wakeups_total", { reason = "timeout" }))
    assert.equal(0, sample(f, "loom_sync_wakeups_total", { reason = "data" }))
  end)

  it("is off by default", function()
    t = tesths.start()
    assert.is_nil(t.server:metrics_port())
    assert.is_nil(t.server.metrics_http)
    -- the registry still counts (scripts may read it), nothing listens
    t:request("GET", "/_matrix/client/versions")
    assert.equal(1, t.server.metrics:get("loom_http_requests_total"):value(
      "/_matrix/client/versions", "GET", 200))
  end)

  it("keeps the two listeners apart", function()
    t = tesths.start { metrics = { host = "127.0.0.1", port = 0 } }
    local r = t:request("GET", "/metrics")
    assert.equal(404, r.status)
    assert.equal("M_UNRECOGNIZED", r.json.errcode)
    local v = t:run(function() return call_metrics(t, "GET", "/_matrix/client/versions") end)
    assert.equal(404, v.status)
    assert.equal("M_UNRECOGNIZED", v.json.errcode)
    local p = t:run(function() return call_metrics(t, "POST", "/metrics") end)
    assert.equal(404, p.status)
    local sub = t:run(function() return call_metrics(t, "GET", "/metrics/x") end)
    assert.equal(404, sub.status)
    -- scrapes are not client requests
    local f = scrape(t)
    assert.is_nil(sample(f, "loom_http_requests_total", { route = "/metrics" }))
  end)

  it("gives each server its own registry and closes the listener on stop", function()
    t = tesths.start { metrics = { port = 0 } }
    local t2 = tesths.start { metrics = { port = 0 } }
    t2:request("GET", "/_matrix/client/versions")
    t2:request("GET", "/_matrix/client/versions")
    t:request("GET", "/_matrix/client/versions")
    local route = { route = "/_matrix/client/versions", code = "200" }
    assert.equal(1, sample(scrape(t), "loom_http_requests_total", route))
    assert.equal(2, sample(scrape(t2), "loom_http_requests_total", route))
    local port2 = t2.server:metrics_port()
    t2:stop()
    local refused = t:run(function()
      local co, result = coroutine.running(), nil
      local tcp = uv.new_tcp()
      tcp:connect("127.0.0.1", port2, function(err)
        result = err
        tcp:close()
        local ok, e = coroutine.resume(co)
        if not ok then error(e) end
      end)
      coroutine.yield()
      return result
    end)
    assert.is_string(refused, "nothing listens on the stopped server's metrics port")
  end)

  it("refuses a bad metrics config and a taken port", function()
    local loom = require "loom"
    assert.has_error(function() loom.new { metrics = { port = "9108" } } end)
    assert.has_error(function() loom.new { metrics = { port = 70000 } } end)
    assert.has_error(function() loom.new { metrics = { host = 1, port = 0 } } end)
    assert.has_error(function() loom.new { log_format = "xml" } end)
    local cfg = require "loom.cli.config"
    assert.is_nil((cfg.from_table { metrics = { port = -1 } }))
    assert.is_nil((cfg.from_table { log_format = "yaml" }))
    assert.truthy(cfg.from_table { metrics = { host = "127.0.0.1", port = 0 }, log_format = "json" })

    t = tesths.start { metrics = { port = 0 } }
    local s = loom.new { port = 0, metrics = { port = t.server:metrics_port() }, logger = function() end }
    local ok, msg, code = s:start()
    assert.is_nil(ok)
    assert.matches("cannot listen", msg)
    assert.equal("io_error", code)
    assert.is_nil(s:port(), "the client listener did not start either")
    local stopped = false
    s:stop(function() stopped = true end)
    assert.is_true(stopped)
    for _ = 1, 3 do uv.run("nowait") end   -- the refused socket finishes closing
  end)
end)

describe("JSON logs", function()
  it("writes one JSON object per line from loom serve, request lines with their status", function()
    local dir = tmp.dir()
    local cfg = dir .. "/loom.cfg.lua"
    local f = assert(io.open(cfg, "w"))
    f:write('server_name = "test.local"\nport = 0\nlog_level = "debug"\nlog_format = "json"\n',
      'password_iterations = 1000\ndatabase = { path = "', dir, '/loom.db" }\nmetrics = { port = 0 }\n')
    f:close()
    local c = child.start { "bin/loom", "serve", "--config", cfg }
    local ok, err = pcall(function()
      assert.truthy(c:wait_for("metrics at http://[%d.]+:%d+"), "no URLs printed; stderr: " .. c.err)
      local port = tonumber(c.out:match("serving test%.local at http://[%d.]+:(%d+)"))
      local mport = tonumber(c.out:match("metrics at http://[%d.]+:(%d+)"))
      assert.is_number(port, c.err)
      assert.is_number(mport, c.err)
      local function get(p, path, method) return c:request_at(p, method or "GET", path).raw end
      assert.matches("^HTTP/1%.1 200", get(port, "/_matrix/client/versions"))
      assert.matches("^HTTP/1%.1 404", get(port, "/quote%22and%0Anewline"))
      local head = get(mport, "/metrics", "HEAD")
      assert.matches("^HTTP/1%.1 200", head)
      assert.matches("\r\n\r\n$", head)
      local scraped = get(mport, "/metrics")
      assert.matches("^HTTP/1%.1 200", scraped)
      assert.matches('loom_http_requests_total{route="/_matrix/client/versions",method="GET",code="200"} 1',
        scraped, 1, true)
    end)
    local exit_code = c:stop()
    tmp.remove_dir(dir)
    assert(ok, err)
    assert.equal(0, exit_code)

    local errtext = c.err
    local lines, requests = 0, {}
    for line in errtext:gmatch("([^\n]*)\n") do
      lines = lines + 1
      local obj = json.decode(line)
      assert.is_table(obj, "not a JSON object: " .. line)
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", obj.ts)
      assert.truthy(({ debug = 1, info = 1, warn = 1, error = 1 })[obj.level], line)
      assert.is_string(obj.msg)
      if obj.status then requests[#requests + 1] = obj end
    end
    assert.equal("", errtext:gsub("[^\n]*\n", ""), "the output ends with a whole line")
    assert.truthy(lines >= 3, errtext)
    assert.equal(2, #requests, errtext)
    assert.same({ "GET", "/_matrix/client/versions", 200, "127.0.0.1" },
      { requests[1].method, requests[1].path, requests[1].status, requests[1].remote })
    assert.is_number(requests[1].ms)
    assert.equal(404, requests[2].status)
  end)
end)

describe("JSON log lines", function()
  it("are one object per line with ts, level, msg and fields", function()
    local line = app.json_line("warn", 'said "hi"\nthen\tleft\0', { path = "/x", status = 200, ms = 1.5 },
      1796083200123)
    assert.is_nil(line:find("\n", 1, true))
    assert.equal('{"ts":"2026-12-01T00:00:00.123Z","level":"warn","msg":', line:sub(1, 54))
    local obj = json.decode(line)
    assert.same({ ts = "2026-12-01T00:00:00.123Z", level = "warn", msg = 'said "hi"\nthen\tleft\0',
      path = "/x", status = 200, ms = 1.5 }, obj)
    -- fields never overwrite ts, level or msg
    obj = json.decode(app.json_line("info", "m", { msg = "x", level = "y", ts = "z" }, 5))
    assert.same({ "1970-01-01T00:00:00.005Z", "info", "m" }, { obj.ts, obj.level, obj.msg })
  end)

  it("keep a line when the message is not UTF-8", function()
    local obj = json.decode(app.json_line("info", "bad \255 byte", { path = "/\200" }, 0))
    assert.equal("bad ? byte", obj.msg)
    assert.equal("/?", obj.path)
  end)
end)
