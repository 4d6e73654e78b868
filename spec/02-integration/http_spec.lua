-- The HTTP layer on real sockets: a loom server on 127.0.0.1 (port 0) and a
-- small client written here on luv's TCP, both on the one luv loop. Each test
-- runs as a coroutine that drives the loop (bounded in time).
local uv = require "luv"
local loom = require "loom"
local async = require "loom.async"
local errors = require "loom.http.errors"
local core = require "loom.core"
local json = core.json
local shell = require "support.shell"

-- ---- driving the loop -------------------------------------------------------

local failure

local function resume(co, ...)
  local ok, err = coroutine.resume(co, ...)
  if not ok and not failure then failure = debug.traceback(co, tostring(err)) end
end

-- Runs fn as a coroutine, turning the loop until it ends (at most limit ms).
local function run(fn, limit)
  failure = nil
  local co = coroutine.create(fn)
  local expired = false
  local guard = uv.new_timer()
  guard:start(limit or 5000, 0, function() expired = true end)
  resume(co)
  while coroutine.status(co) ~= "dead" and not failure and not expired do uv.run("once") end
  guard:close()
  for _ = 1, 5 do uv.run("nowait") end
  if failure then error(failure, 0) end
  if expired then error("test did not finish in time", 0) end
end

local function sleep(ms)
  local co = coroutine.running()
  local t = uv.new_timer()
  t:start(ms, 0, function() t:close(); resume(co) end)
  coroutine.yield()
end

-- ---- a tiny HTTP client -----------------------------------------------------

local client = {}
client.__index = client

local function connect(port)
  local co = coroutine.running()
  local c = setmetatable({ tcp = uv.new_tcp(), buf = "", eof = false }, client)
  local cerr
  c.tcp:connect("127.0.0.1", port, function(err)
    cerr = err
    resume(co)
  end)
  coroutine.yield()
  if cerr then
    c.tcp:close()
    return nil, cerr
  end
  c.tcp:read_start(function(err, data)
    if data then c.buf = c.buf .. data else c.eof = err or true end
    local w = c.waiting
    c.waiting = nil
    if w then resume(w) end
  end)
  return c
end

function client:send(s)
  self.tcp:write(s)
end

function client:wait_data()
  self.waiting = coroutine.running()
  coroutine.yield()
end

-- The next response: { status, headers (lowercase names), body, json } or
-- nil, "eof" when the server closed first. no_body: the answer to a HEAD.
function client:read_response(no_body)
  while true do
    local head_end = self.buf:find("\r\n\r\n", 1, true)
    if head_end then
      local head = self.buf:sub(1, head_end - 1)
      local status = tonumber(head:match("^HTTP/1%.1 (%d%d%d) "))
      local headers = {}
      for name, value in head:gmatch("\r\n([^:\r\n]+): ([^\r\n]*)") do headers[name:lower()] = value end
      local len = no_body and 0 or tonumber(headers["content-length"] or "0")
      if status == 100 then
        self.buf = self.buf:sub(head_end + 4)
        self.saw_continue = true
      elseif #self.buf >= head_end + 3 + len then
        local body = self.buf:sub(head_end + 4, head_end + 3 + len)
        self.buf = self.buf:sub(head_end + 4 + len)
        return { status = status, headers = headers, body = body, json = json.decode(body) }
      elseif self.eof then
        return nil, "eof"
      else
        self:wait_data()
      end
    elseif self.eof then
      return nil, "eof"
    else
      self:wait_data()
    end
  end
end

-- Waits for the server to close; returns what came before that.
function client:read_until_eof()
  while not self.eof do self:wait_data() end
  local rest = self.buf
  self.buf = ""
  return rest
end

function client:close()
  if not self.tcp:is_closing() then self.tcp:close() end
end

local function get(path, extra)
  return ("GET %s HTTP/1.1\r\nHost: localhost\r\n%s\r\n"):format(path, extra or "")
end

local function with_body(method, path, body, extra)
  return ("%s %s HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n%s\r\n%s"):format(
    method, path, #body, extra or "", body)
end

-- ---- the server under test --------------------------------------------------

local logs

local function new_server(config)
  logs = {}
  config = config or {}
  config.port = 0
  config.log_level = config.log_level or "debug"
  config.logger = function(level, message) logs[#logs + 1] = level .. " " .. message end
  local srv = loom.new(config)
  srv:route("GET", "/fast", function() return { fast = true } end)
  srv:route("GET", "/slow/{ms}", function(req)
    async.sleep(tonumber(req.params.ms))
    return { slow = tonumber(req.params.ms) }
  end)
  srv:route("GET", "/echo/{n}", function(req) return { n = req.params.n } end)
  srv:route("POST", "/echo", function(req) return { body = req:json() } end)
  srv:route("GET", "/boom", function() local t = nil; return t.field end)
  srv:route("PUT", "/_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}", function(req)
    return { params = req.params }
  end)
  assert(srv:start())
  return srv
end

local function stop(srv)
  local co = coroutine.running()
  local stopped = false
  srv:stop(function()
    stopped = true
    resume(co)
  end)
  if not stopped then coroutine.yield() end
end

-- one request on its own connection
local function request(srv, bytes)
  local c = assert(connect(srv:port()))
  c:send(bytes)
  local r = assert(c:read_response())
  c:close()
  return r
end

local function assert_cors(r)
  assert.equal("*", r.headers["access-control-allow-origin"])
  assert.truthy(r.headers["access-control-allow-methods"]:find("OPTIONS", 1, true))
  assert.equal("X-Requested-With, Content-Type, Authorization", r.headers["access-control-allow-headers"])
end

local function has_log(pattern)
  for _, l in ipairs(logs) do
    if l:find(pattern) then return true end
  end
  return false
end

-- ---- specs ------------------------------------------------------------------

describe("loom.core.http parser", function()
  local parser = core.http.parser

  it("gives the same requests fed byte by byte as in one piece", function()
    local stream = get("/a%20b/c?x=1&y=%2F", "X-A: 1\r\nx-a: 2\r\n") ..
                   with_body("POST", "/p", "hello") .. get("/last")
    local whole = assert(parser():feed(stream))
    local p, pieces = parser(), {}
    for i = 1, #stream do
      for _, r in ipairs(assert(p:feed(stream:sub(i, i)))) do pieces[#pieces + 1] = r end
    end
    assert.same(whole, pieces)
    assert.equal(3, #whole)
    assert.equal("/a%20b/c", whole[1].path)
    assert.equal("x=1&y=%2F", whole[1].query)
    assert.equal("1, 2", whole[1].headers["x-a"])
    assert.equal("hello", whole[2].body)
    assert.equal("/last", whole[3].target)
  end)

  it("reports which limit a request went past", function()
    local cases = {
      { { max_request_line = 32 }, get("/" .. ("a"):rep(40)), "request_line" },
      { { max_header_line = 20 }, get("/", "X-Long: " .. ("v"):rep(30) .. "\r\n"), "header_line" },
      { { max_headers = 2 }, get("/", "A: 1\r\nB: 2\r\n"), "headers" },
      { { max_header_bytes = 30 }, get("/", "A: 123456789\r\nB: 123456789\r\nC: 123456789\r\n"), "header_bytes" },
      { { max_body = 4 }, with_body("POST", "/", "12345"), "body" },
      { { max_body = 4 }, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n",
        "body" },
    }
    for _, case in ipairs(cases) do
      local p = parser(case[1])
      local list, msg, code, which = p:feed(case[2])
      assert.is_nil(list)
      assert.equal("http_too_large", code)
      assert.equal(case[3], which, msg)
      assert.equal(msg, (p:error()))
    end
    local list, msg, code = parser():feed("HELLO\r\n\r\n")
    assert.is_nil(list)
    assert.equal("http_bad_request", code)
    assert.is_string(msg)
  end)

  it("stops at a last request and keeps limits strict", function()
    local p = parser()
    local list = assert(p:feed(get("/one", "Connection: close\r\n") .. get("/two")))
    assert.equal(1, #list)
    assert.is_false(list[1].keep_alive)
    assert.same({}, assert(p:feed("garbage")))
    assert.has_error(function() parser { max_body = 0 } end)
    assert.has_error(function() parser { bogus = 1 } end)
    assert.matches("^loom.HttpParser", tostring(p))
    p:close()
    assert.has_error(function() p:feed("x") end)
  end)
end)

describe("loom.http.errors", function()
  it("maps loom's lower-level codes to Matrix errors", function()
    local function map(code, where) local e = errors.from_code(code, "m", where); return e.errcode, e.status end
    assert.same({ "M_INVALID_PARAM", 400 }, { map("bad_token") })
    assert.same({ "M_NOT_JSON", 400 }, { map("json_syntax") })
    assert.same({ "M_NOT_JSON", 400 }, { map("json_depth") })
    assert.same({ "M_BAD_JSON", 400 }, { map("json_dup_key") })
    assert.same({ "M_BAD_JSON", 400 }, { map("bad_filter") })
    assert.same({ "M_INVALID_PARAM", 400 }, { map("bad_filter", "param") })
    assert.same({ "M_BAD_JSON", 400 }, { map("bad_event") })
    assert.same({ "M_TOO_LARGE", 413 }, { map("too_large") })
    assert.same({ "M_NOT_FOUND", 404 }, { map("not_found") })
    assert.same({ "M_FORBIDDEN", 403 }, { map("forbidden") })
    assert.same({ "M_UNKNOWN", 500 }, { map("sqlite_busy") })
    assert.same({ "M_UNKNOWN", 500 }, { map("db_error") })
    local e, internal = errors.from_code("sqlite_error", "disk I/O error at /secret/path")
    assert.is_true(internal)
    assert.not_matches("secret", e.message)
    assert.same({ errcode = "M_LIMIT_EXCEEDED", error = "slow down", retry_after_ms = 5 },
                errors.new("M_LIMIT_EXCEEDED", "slow down", { retry_after_ms = 5 }):body())
    assert.equal(405, errors.new("METHOD_NOT_ALLOWED").status)
    assert.has_error(function() errors.new("M_NO_SUCH_THING") end)
  end)

  it("registers a script's own errcode once; a name keeps its meaning", function()
    errors.register("ORG_EXAMPLE_QUOTA", "ORG.EXAMPLE.QUOTA", 403, "Over quota")
    errors.register("ORG_EXAMPLE_QUOTA", "ORG.EXAMPLE.QUOTA", 403)   -- the same again: fine
    local e = errors.new("ORG_EXAMPLE_QUOTA")
    assert.same({ "ORG.EXAMPLE.QUOTA", 403, "Over quota" }, { e.errcode, e.status, e.message })
    assert.has_error(function() errors.register("ORG_EXAMPLE_QUOTA", "ORG.EXAMPLE.OTHER", 403) end,
      "errors.register: ORG_EXAMPLE_QUOTA is already ORG.EXAMPLE.QUOTA (403)")
    assert.has_error(function() errors.register("M_FORBIDDEN", "M_FORBIDDEN", 418) end)
    assert.equal(403, errors.new("M_FORBIDDEN").status)
    assert.has_error(function() errors.register("X", "X", 99) end)
    assert.has_error(function() errors.register("X", "X", 400, 5) end)
  end)
end)

describe("the HTTP server", function()
  it("serves several requests on one keep-alive connection", function()
    run(function()
      local srv = new_server()
      local c = assert(connect(srv:port()))
      for i = 1, 3 do
        c:send(get("/echo/" .. i))
        local r = assert(c:read_response())
        assert.equal(200, r.status)
        assert.equal("keep-alive", r.headers.connection)
        assert.equal("application/json", r.headers["content-type"])
        assert.same({ n = tostring(i) }, r.json)
      end
      c:close()
      stop(srv)
    end)
  end)

  it("answers pipelined requests in order", function()
    run(function()
      local srv = new_server()
      local c = assert(connect(srv:port()))
      c:send(get("/slow/60") .. get("/echo/2") .. get("/slow/10") .. get("/echo/4"))
      assert.same({ slow = 60 }, assert(c:read_response()).json)
      assert.same({ n = "2" }, assert(c:read_response()).json)
      assert.same({ slow = 10 }, assert(c:read_response()).json)
      assert.same({ n = "4" }, assert(c:read_response()).json)
      c:close()
      stop(srv)
    end)
  end)

  it("does not let a slow handler block another connection", function()
    run(function()
      local srv = new_server()
      local order = {}
      local slow = assert(connect(srv:port()))
      slow:send(get("/slow/400"))
      local fast = assert(connect(srv:port()))
      local t0 = uv.now()
      fast:send(get("/fast"))
      assert.same({ fast = true }, assert(fast:read_response()).json)
      order[#order + 1] = "fast"
      assert.is_true(uv.now() - t0 < 300)
      assert.same({ slow = 400 }, assert(slow:read_response()).json)
      order[#order + 1] = "slow"
      assert.same({ "fast", "slow" }, order)
      slow:close()
      fast:close()
      stop(srv)
    end)
  end)

  it("answers 413 M_TOO_LARGE past a limit, and closes", function()
    run(function()
      local srv = new_server { limits = { max_request_line = 200, max_header_line = 100,
                                          max_headers = 10, max_body = 64 } }
      local cases = {
        get("/" .. ("x"):rep(300)),
        get("/fast", "X-Big: " .. ("y"):rep(200) .. "\r\n"),
        get("/fast", ("H: 1\r\n"):rep(11)),
        with_body("POST", "/echo", ("z"):rep(65)),
        "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n" .. ("a"):rep(64) .. "\r\n1\r\nb\r\n0\r\n\r\n",
      }
      for _, bytes in ipairs(cases) do
        local c = assert(connect(srv:port()))
        c:send(bytes)
        local r = assert(c:read_response())
        assert.equal(413, r.status)
        assert.equal("M_TOO_LARGE", r.json.errcode)
        assert.equal("close", r.headers.connection)
        assert_cors(r)
        c:read_until_eof()
        c:close()
      end
      -- a body just within the limit is fine
      local r = request(srv, with_body("POST", "/echo", '{"a":"' .. ("b"):rep(56) .. '"}'))
      assert.equal(200, r.status)
      stop(srv)
    end)
  end)

  it("answers 400 to garbage and closes", function()
    run(function()
      local srv = new_server()
      local c = assert(connect(srv:port()))
      c:send("HELLO THERE\r\n\r\n")
      local r = assert(c:read_response())
      assert.equal(400, r.status)
      assert.equal("M_UNKNOWN", r.json.errcode)
      assert_cors(r)
      c:read_until_eof()
      c:close()
      -- a good request, then garbage in the same packet: the good one is answered first
      c = assert(connect(srv:port()))
      c:send(get("/echo/1") .. "\1\2\3 nonsense\r\n\r\n")
      assert.equal(200, assert(c:read_response()).status)
      assert.equal(400, assert(c:read_response()).status)
      c:read_until_eof()
      c:close()
      stop(srv)
    end)
  end)

  it("times out a slow client (headers, body) and an idle connection", function()
    run(function()
      local srv = new_server { timeouts = { header = 150, body = 150, keepalive = 200 } }
      local t0 = uv.now()
      local c = assert(connect(srv:port()))
      c:send("GET /fast HTTP/1.1\r\nHost: loc")
      local r = assert(c:read_response())
      assert.equal(408, r.status)
      assert.equal("M_UNKNOWN", r.json.errcode)
      c:read_until_eof()
      c:close()
      assert.is_true(uv.now() - t0 < 1000)

      c = assert(connect(srv:port()))
      c:send("POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\n{\"a\"")
      r = assert(c:read_response())
      assert.equal(408, r.status)
      c:read_until_eof()
      c:close()

      c = assert(connect(srv:port()))
      c:send(get("/fast"))
      assert.equal(200, assert(c:read_response()).status)
      t0 = uv.now()
      assert.equal("", c:read_until_eof())
      assert.is_true(uv.now() - t0 >= 150)
      c:close()
      stop(srv)
    end)
  end)

  it("shuts down gracefully: in-flight requests finish, idle connections close", function()
    run(function()
      local srv = new_server()
      local port = srv:port()
      local idle = assert(connect(port))
      idle:send(get("/fast"))
      assert.equal(200, assert(idle:read_response()).status)
      local busy = assert(connect(port))
      busy:send(get("/slow/250"))
      sleep(50)
      local stopped = false
      srv:stop(function() stopped = true end)
      assert.equal("", idle:read_until_eof())
      assert.is_false(stopped)
      local refused = connect(port)
      assert.is_nil(refused)
      local r = assert(busy:read_response())
      assert.equal(200, r.status)
      assert.same({ slow = 250 }, r.json)
      assert.equal("close", r.headers.connection)
      busy:read_until_eof()
      idle:close()
      busy:close()
      while not stopped do sleep(10) end
    end)
  end)

  it("answers unknown paths 404 and wrong methods 405, both M_UNRECOGNIZED with CORS", function()
    run(function()
      local srv = new_server()
      local r = request(srv, get("/_matrix/client/v3/nowhere"))
      assert.equal(404, r.status)
      assert.equal("M_UNRECOGNIZED", r.json.errcode)
      assert.is_string(r.json.error)
      assert_cors(r)
      r = request(srv, with_body("POST", "/fast", "{}"))
      assert.equal(405, r.status)
      assert.equal("M_UNRECOGNIZED", r.json.errcode)
      assert.equal("GET, HEAD, OPTIONS", r.headers.allow)
      assert_cors(r)
      stop(srv)
    end)
  end)

  it("answers OPTIONS on any path with CORS", function()
    run(function()
      local srv = new_server()
      for _, path in ipairs { "/fast", "/no/such/path", "/_matrix/client/v3/sync" } do
        local r = request(srv, ("OPTIONS %s HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\n" ..
                                "Access-Control-Request-Method: POST\r\n\r\n"):format(path))
        assert.equal(200, r.status)
        assert_cors(r)
      end
      stop(srv)
    end)
  end)

  it("serves /_matrix/client/r0/... from the v3 route, with decoded path parameters", function()
    run(function()
      local srv = new_server()
      for _, prefix in ipairs { "/_matrix/client/r0", "/_matrix/client/v3" } do
        local r = request(srv, with_body("PUT", prefix .. "/rooms/%21room%3Aexample.org/send/m.room.message/t%2F1%20x",
                                         "{}"))
        assert.equal(200, r.status)
        assert.same({ roomId = "!room:example.org", eventType = "m.room.message", txnId = "t/1 x" },
                    r.json.params)
      end
      local r = request(srv, with_body("PUT", "/_matrix/client/r0/rooms/%zz/send/a/b", "{}"))
      assert.equal(400, r.status)
      assert.equal("M_INVALID_PARAM", r.json.errcode)
      stop(srv)
    end)
  end)

  it("turns a handler error into 500 M_UNKNOWN, logs the traceback, and goes on", function()
    run(function()
      local srv = new_server()
      local c = assert(connect(srv:port()))
      c:send(get("/boom"))
      local r = assert(c:read_response())
      assert.equal(500, r.status)
      assert.equal("M_UNKNOWN", r.json.errcode)
      assert.not_matches("traceback", r.body)
      assert.not_matches("%.lua", r.body)
      assert.not_matches("field", r.body)
      assert.is_true(has_log("stack traceback"))
      assert.is_true(has_log("http_spec%.lua"))
      c:send(get("/fast"))
      assert.equal(200, assert(c:read_response()).status)
      c:close()
      stop(srv)
    end)
  end)

  it("answers M_NOT_JSON and M_BAD_JSON for bad bodies", function()
    run(function()
      local srv = new_server()
      local r = request(srv, with_body("POST", "/echo", "{not json"))
      assert.equal(400, r.status)
      assert.equal("M_NOT_JSON", r.json.errcode)
      r = request(srv, with_body("POST", "/echo", ""))
      assert.equal("M_NOT_JSON", r.json.errcode)
      r = request(srv, with_body("POST", "/echo", "\255\254"))
      assert.equal("M_NOT_JSON", r.json.errcode)
      r = request(srv, with_body("POST", "/echo", "[1,2]"))
      assert.equal("M_BAD_JSON", r.json.errcode)
      r = request(srv, with_body("POST", "/echo", '{"a":1,"a":2}'))
      assert.equal("M_BAD_JSON", r.json.errcode)
      r = request(srv, with_body("POST", "/echo", '{"a":[1.5,{}]}'))
      assert.equal(200, r.status)
      assert.equal('{"body":{"a":[1.5,{}]}}', r.body)
      stop(srv)
    end)
  end)

  it("serves /_matrix/client/versions and /.well-known/matrix/client", function()
    run(function()
      local srv = new_server { versions = { "v1.11", "v1.12" }, unstable_features = { ["org.x"] = true } }
      local r = request(srv, get("/_matrix/client/versions"))
      assert.equal(200, r.status)
      assert.equal('{"unstable_features":{"org.x":true},"versions":["v1.11","v1.12"]}', r.body)
      assert_cors(r)
      r = request(srv, get("/.well-known/matrix/client"))
      assert.equal(200, r.status)
      assert.same({ ["m.homeserver"] = { base_url = "http://127.0.0.1:" .. srv:port() } }, r.json)
      assert_cors(r)
      stop(srv)
      local bare = new_server()
      r = request(bare, get("/_matrix/client/versions"))
      assert.equal('{"unstable_features":{},"versions":[]}', r.body)
      stop(bare)
    end)
  end)

  it("handles HEAD, HTTP/1.0, Expect: 100-continue and handler return forms", function()
    run(function()
      local srv = new_server()
      srv:route("GET", "/forms/{kind}", function(req)
        local k = req.params.kind
        if k == "status" then return 201, { made = true }, { ["X-Made"] = "yes" } end
        if k == "error" then return errors.new("M_FORBIDDEN", "no") end
        if k == "nilerr" then return nil, "bad token s", "bad_token" end
        if k == "internal" then return nil, "database is locked", "sqlite_busy" end
        if k == "raise" then error(errors.new("M_NOT_FOUND", "gone")) end
        if k == "arg" then return { limit = req:arg_integer("limit", 10, 0, 100), q = req:arg("q") } end
        return nil
      end)
      local c = assert(connect(srv:port()))
      c:send("HEAD /fast HTTP/1.1\r\nHost: x\r\n\r\n" .. get("/fast"))
      local head = assert(c:read_response(true))
      assert.equal(200, head.status)
      assert.equal("13", head.headers["content-length"])
      -- no body after the head: the next response follows at once
      assert.same({ fast = true }, assert(c:read_response()).json)
      c:close()

      local r = request(srv, "GET /fast HTTP/1.0\r\n\r\n")
      assert.equal("close", r.headers.connection)

      c = assert(connect(srv:port()))
      c:send("POST /echo HTTP/1.1\r\nContent-Length: 8\r\nExpect: 100-continue\r\n\r\n")
      c:wait_data()
      assert.matches("^HTTP/1.1 100 Continue\r\n\r\n", c.buf)
      c:send('{"a":1}\n')
      r = assert(c:read_response())
      assert.equal(200, r.status)
      c:close()

      r = request(srv, get("/forms/status"))
      assert.equal(201, r.status)
      assert.equal("yes", r.headers["x-made"])
      r = request(srv, get("/forms/error"))
      assert.same({ 403, "M_FORBIDDEN", "no" }, { r.status, r.json.errcode, r.json.error })
      r = request(srv, get("/forms/nilerr"))
      assert.same({ 400, "M_INVALID_PARAM" }, { r.status, r.json.errcode })
      r = request(srv, get("/forms/internal"))
      assert.same({ 500, "M_UNKNOWN" }, { r.status, r.json.errcode })
      assert.not_matches("locked", r.body)
      assert.is_true(has_log("database is locked"))
      r = request(srv, get("/forms/raise"))
      assert.same({ 404, "M_NOT_FOUND" }, { r.status, r.json.errcode })
      r = request(srv, get("/forms/arg?limit=5&q=a+b%21"))
      assert.same({ limit = 5, q = "a b!" }, r.json)
      r = request(srv, get("/forms/arg?limit=x"))
      assert.equal("M_INVALID_PARAM", r.json.errcode)
      r = request(srv, get("/forms/nothing"))
      assert.same({ 500, "M_UNKNOWN" }, { r.status, r.json.errcode })
      stop(srv)
    end)
  end)

  it("runs hooks by priority; the first non-nil result ends the chain", function()
    run(function()
      local srv = new_server()
      local seen = {}
      srv:hook("test/x", function(v) seen[#seen + 1] = "low" .. v end, -5)
      srv:hook("test/x", function(v) seen[#seen + 1] = "high" .. v end, 10)
      srv:hook("test/x", function(v) seen[#seen + 1] = "mid" .. v end)
      assert.is_nil(srv:fire("test/x", 1))
      assert.same({ "high1", "mid1", "low1" }, seen)
      local veto = function() return "veto", 2 end
      srv:hook("test/x", veto, 5)
      seen = {}
      assert.same({ "veto", 2 }, { srv:fire("test/x", 2) })
      assert.same({ "high2" }, seen)
      assert.is_true(srv:unhook("test/x", veto))
      srv:hook("test/fail", function() error("oops") end)
      local e = srv:fire("test/fail")
      assert.is_true(errors.is(e))
      assert.equal("M_UNKNOWN", e.errcode)

      -- http/request can answer before routing; http/response sees every response
      local statuses = {}
      srv:hook("http/request", function(req)
        if req:header("Authorization") == "Bearer nope" then
          return errors.new("M_UNKNOWN_TOKEN", "Unknown token")
        end
      end)
      srv:hook("http/response", function(_, resp) statuses[#statuses + 1] = resp.status end)
      local r = request(srv, get("/fast", "Authorization: Bearer nope\r\n"))
      assert.same({ 401, "M_UNKNOWN_TOKEN" }, { r.status, r.json.errcode })
      assert.equal(200, request(srv, get("/fast")).status)
      assert.same({ 401, 200 }, statuses)
      stop(srv)
    end)
  end)

  it("survives clients that leave mid-request, and caps connections", function()
    run(function()
      local srv = new_server { limits = { max_connections = 2 } }
      local gone = assert(connect(srv:port()))
      gone:send(get("/slow/50"))
      sleep(10)
      gone:close()
      local a = assert(connect(srv:port()))
      local b = assert(connect(srv:port()))
      sleep(20)
      local extra = assert(connect(srv:port()))
      assert.matches("^HTTP/1%.1 503 ", extra:read_until_eof())
      extra:close()
      sleep(60)
      a:send(get("/fast"))
      assert.equal(200, assert(a:read_response()).status)
      a:close()
      b:close()
      for _, l in ipairs(logs) do assert.not_matches("^error", l) end
      stop(srv)
    end)
  end)

  it("answers connections past max_connections 503 M_LIMIT_EXCEEDED, with one log line", function()
    run(function()
      local srv = new_server { limits = { max_connections = 4 } }
      local port = srv:port()
      local held = {}
      for i = 1, 4 do
        held[i] = assert(connect(port))
        held[i]:send(get("/fast"))
        assert.equal(200, assert(held[i]:read_response()).status)   -- now idle, kept alive
      end
      local extra = {}
      for i = 1, 20 do
        extra[i] = assert(connect(port))
        if i % 2 == 0 then extra[i]:send(get("/fast")) end   -- its request is never handled
      end
      for i = 1, 20 do
        local r = assert(extra[i]:read_response())
        assert.equal(503, r.status)
        assert.equal("M_LIMIT_EXCEEDED", r.json.errcode)
        assert.is_string(r.json.error)
        assert.equal(1000, r.json.retry_after_ms)
        assert.equal("1", r.headers["retry-after"])
        assert.equal("close", r.headers.connection)
        assert.equal("application/json", r.headers["content-type"])
        assert.equal("", extra[i]:read_until_eof())
        extra[i]:close()
      end
      assert.equal(4, srv.http:connections())
      local lines = 0
      for _, l in ipairs(logs) do
        if l:find("connection", 1, true) and l:find("limit", 1, true) then lines = lines + 1 end
      end
      assert.equal(1, lines, table.concat(logs, "\n"))
      local handled = 0
      for _, l in ipairs(logs) do if l:find("^debug GET /fast 200") then handled = handled + 1 end end
      assert.equal(4, handled)   -- the refused connections' requests were not read
      for _, c in ipairs(held) do c:close() end
      sleep(50)
      assert.equal(0, srv.http:connections())
      local r = request(srv, get("/fast"))
      assert.equal(200, r.status)
      stop(srv)
    end)
  end)

  it("logs refused connections at most once per interval, with their count", function()
    run(function()
      local srv = new_server { limits = { max_connections = 1 }, timeouts = { warn_interval = 300 } }
      local held = assert(connect(srv:port()))
      sleep(20)
      for _ = 1, 3 do
        local c = assert(connect(srv:port()))
        assert.equal(503, assert(c:read_response()).status)
        c:close()
      end
      sleep(400)
      local warns = {}
      for _, l in ipairs(logs) do if l:find("^warn") then warns[#warns + 1] = l end end
      assert.equal(2, #warns, table.concat(warns, "\n"))
      assert.matches("connection limit reached %(1 open%)", warns[1])
      assert.equal("warn connection limit: connections refused (2 in the last 300 ms)", warns[2])
      held:close()
      stop(srv)
    end)
  end)

  it("runs as a process until SIGTERM (server:run)", function()
    local lua = arg and arg[-1] or "lua5.4"
    local script = [[
      local loom = require "loom"
      local srv = loom.new { port = 0, log_level = "warn" }
      srv:route("GET", "/pid", function() return { pid = require("luv").os_getpid() } end)
      assert(srv:start())
      io.stdout:write("port ", srv:port(), " pid ", require("luv").os_getpid(), "\n")
      io.stdout:flush()
      srv:run()
      io.stdout:write("stopped\n")
    ]]
    -- the child inherits the environment (in the sanitizer pass: the ASan preload
    -- that the sanitized loom.core needs)
    local child = assert(io.popen(("exec %s -e %s"):format(lua, shell.quote(script)), "r"))
    local line = child:read("l")
    local port, pid = line:match("^port (%d+) pid (%d+)$")
    assert.truthy(port, line)
    run(function()
      local c = assert(connect(tonumber(port)))
      c:send(get("/pid"))
      local r = assert(c:read_response())
      assert.equal(tonumber(pid), r.json.pid)
      c:close()
    end)
    assert.is_true(os.execute("kill -TERM " .. pid))
    assert.equal("stopped\n", child:read("a"))
    assert.is_true(child:close())
  end)
end)
