-- The HTTP/1.1 server on luv: accepts connections, feeds their bytes to the C
-- parser (loom.core.http), runs one handler per request as a task (loom.async) and
-- writes the responses in request order.
--
--   local http = require "loom.http.server"
--   local srv = http.new { host = "127.0.0.1", port = 0, handler = function(req)
--     async.sleep(10)                       -- waits without blocking the loop (loom.async)
--     return response.json(200, { ok = true })
--   end }
--   assert(srv:listen()); print(srv:port())
--   uv.run()
--
-- Per connection: keep-alive; pipelined requests are read ahead (up to
-- limits.max_pipeline) but handled one after the other, so responses go out
-- in order and a later request sees the effects of an earlier one. A request
-- over a limit is answered 413 M_TOO_LARGE, a malformed one 400 M_UNKNOWN,
-- and the connection closes after the answer. Timeouts (milliseconds): a
-- request's headers must arrive within timeouts.header of its first byte, its
-- body within timeouts.body of the headers, and an idle keep-alive connection
-- is closed after timeouts.keepalive; a slow request is answered 408. No
-- timeout runs while a handler works (long-polling is the handler's business).
-- stop() is graceful: no new connections, idle ones close, requests being
-- handled finish (their response says Connection: close) until
-- timeouts.shutdown, then everything closes.
--
-- Past limits.max_connections, a new connection is answered at once with
-- 503 M_LIMIT_EXCEEDED (Retry-After: 1, Connection: close) and closed; no
-- request is read from it. One warning says so when it starts, then one per
-- timeouts.warn_interval with the number refused meanwhile (failed accepts
-- are logged the same way).
--
-- Streaming (opts.stream_prefix): a request whose target starts with the
-- prefix and has a body reaches its handler as soon as its headers are in;
-- the handler reads the body piece by piece with req:read_body() (nil at
-- the end; nil, error value when the client stalls past timeouts.body or the
-- body breaks a limit). At most STREAM_HIGH bytes wait unread: past that the
-- server stops reading the socket until the handler catches up. A handler
-- that answers without reading the whole body gets its connection closed
-- after the answer. "Expect: 100-continue" is answered on the first read.
--
-- File responses (response.file): the headers, then the file read in
-- chunks, each written once the previous one is out (backpressure), so a
-- big download never sits in memory.
--
-- Every luv callback runs under xpcall; an error is logged with its
-- traceback and the server goes on.
local setmetatable, pairs, ipairs, type, tostring, xpcall, next =
  setmetatable, pairs, ipairs, type, tostring, xpcall, next
local error, io_open, string_lower = error, io.open, string.lower
local traceback = debug.traceback
local uv = require "luv"
local core = require "loom.core"
local async = require "loom.async"
local errors = require "loom.http.errors"
local response = require "loom.http.response"
local tls_stream = require "loom.net.tls"

local _ENV = nil -- luacheck: ignore 211

local http = {}

local function no_log() end

--- Defaults for http.new's limits and timeouts (milliseconds).
http.defaults = {
  limits = {
    max_request_line = core.http.limits.max_request_line,
    max_header_line = core.http.limits.max_header_line,
    max_headers = core.http.limits.max_headers,
    max_header_bytes = core.http.limits.max_header_bytes,
    max_body = core.http.limits.max_body,
    max_media_body = core.http.limits.max_media_body, -- bodies under /_matrix/media/ (uploads)
    max_pipeline = 16,        -- requests read ahead on one connection
    max_connections = 1024,   -- open connections; more are answered 503 and closed
  },
  timeouts = {
    header = 20000,     -- first byte of a request -> end of its headers
    body = 60000,       -- end of the headers -> end of the body
    keepalive = 60000,  -- idle between requests
    shutdown = 10000,   -- stop(): longest wait for requests being handled
    linger = 2000,      -- after a final response: wait for the client's close
    warn_interval = 10000, -- a repeated warning (refused connections …): at most one line per interval
  },
}

-- streamed request bodies: reading pauses past STREAM_HIGH unread bytes and
-- resumes below STREAM_LOW; file responses go out FILE_CHUNK bytes at a time
local STREAM_HIGH, STREAM_LOW = 1024 * 1024, 256 * 1024
local FILE_CHUNK = 256 * 1024
http.STREAM_HIGH, http.FILE_CHUNK = STREAM_HIGH, FILE_CHUNK

local parser_limit_names = { "max_request_line", "max_header_line", "max_headers",
                             "max_header_bytes", "max_body", "max_media_body" }

-- ---- server ---------------------------------------------------------------

local methods = {}
local mt = { __name = "loom.HttpServer", __index = methods }
http.methods, http.mt = methods, mt

local function merge(defaults, given, what)
  local out = {}
  for k, v in pairs(defaults) do out[k] = v end
  for k, v in pairs(given or {}) do
    if defaults[k] == nil then error("unknown " .. what .. " '" .. tostring(k) .. "'", 0) end
    if type(v) ~= "number" or v < 0 or v % 1 ~= 0 then
      error(what .. " '" .. k .. "' must be a non-negative integer", 0)
    end
    out[k] = v
  end
  return out
end

--- http.new(opts) -> HttpServer
-- opts: host ("127.0.0.1"; an IP address), port (8008; 0 picks a free one),
-- handler (function(req) -> Response, run as a task; req is the parser's
-- table plus peer = { ip, port }), limits and timeouts (see http.defaults),
-- log (function(level, message)), tls (a core.tls server context: every
-- connection speaks HTTPS).
function http.new(opts)
  if type(opts) ~= "table" or type(opts.handler) ~= "function" then
    error("http.new: opts.handler (a function) is required", 2)
  end
  local self = setmetatable({
    host = opts.host or "127.0.0.1",
    port_wanted = opts.port or 8008,
    handler = opts.handler,
    limits = merge(http.defaults.limits, opts.limits, "limit"),
    timeouts = merge(http.defaults.timeouts, opts.timeouts, "timeout"),
    log = opts.log or no_log,
    tls = opts.tls,
    stream_prefix = opts.stream_prefix,
    conns = {},
    nconns = 0,
    refusing = {},     -- connections being answered 503 (past max_connections)
    nrefusing = 0,
    warnings = {},     -- kind -> { n = repeats since the last line, timer } (warn_often)
    draining = false,
    stopped = false,
    on_stopped = {},
  }, mt)
  local pl = {}
  for _, k in ipairs(parser_limit_names) do pl[k] = self.limits[k] end
  core.http.parser(pl):close()   -- checks the limits now
  self.parser_limits = pl
  return self
end

-- f wrapped for luv: errors are logged with a traceback, never raised
local function guard(self, f)
  return function(...)
    local ok, err = xpcall(f, traceback, ...)
    if not ok then self.log("error", "luv callback failed: " .. tostring(err)) end
  end
end
http.guard = guard

local update, pump, begin_close, close_now, refuse, reading_allowed

local function queued(c) return c.qt - c.qh + 1 end

local function start_reading(c)
  if c.stream and c.stream.paused then return end
  if not c.reading and not c.closed then
    c.tcp:read_start(c.on_read)
    c.reading = true
  end
end

local function stop_reading(c)
  if c.reading and not c.closed then
    c.tcp:read_stop()
    c.reading = false
  end
end

local function check_stopped(self)
  -- stopped once every connection and the listener have finished closing
  -- (a handle still closing when the loop ends would have its close callback
  -- run while Lua itself is being torn down)
  if self.draining and not self.stopped and next(self.conns) == nil and next(self.refusing) == nil
     and not self.listener_closing then
    self.stopped = true
    if self.deadline then
      self.deadline:close()
      self.deadline = nil
    end
    for kind, w in pairs(self.warnings) do
      w.timer:close()
      self.warnings[kind] = nil
    end
    local list = self.on_stopped
    self.on_stopped = {}
    for _, f in ipairs(list) do f() end
  end
end

-- ---- streamed request bodies -----------------------------------------------

local stream_methods = {}
local stream_mt = { __name = "loom.http.BodyStream", __index = stream_methods }

local function stream_wake(st)
  local w = st.waiter
  if w then
    st.waiter = nil
    w()
  end
end

local function stream_fail(st, err)
  if not st.done and not st.err then st.err = err end
  stream_wake(st)
end

--- stream:read() -> the next piece of the body | nil at its end | nil, error value
function stream_methods.read(st)
  local c = st.c
  while true do
    if st.head <= st.tail then
      local chunk = st.parts[st.head]
      st.parts[st.head] = nil
      st.head = st.head + 1
      st.buffered = st.buffered - #chunk
      st.consumed = st.consumed + #chunk
      if st.paused and st.buffered < STREAM_LOW then
        st.paused = false
        if reading_allowed(c) then start_reading(c) end
      end
      return chunk
    end
    if st.done then return nil end
    if st.err then return nil, st.err end
    if st.expect and not st.continued and not c.closed and not c.closing then
      st.continued = true
      c.tcp:write("HTTP/1.1 100 Continue\r\n\r\n")
    end
    local timer, timed_out = uv.new_timer(), false
    async.wait(function(wake)
      st.waiter = wake
      timer:start(c.srv.timeouts.body, 0, guard(c.srv, function()
        timed_out = true
        wake()
      end))
    end)
    st.waiter = nil
    timer:close()
    if timed_out and st.head > st.tail and not st.done then
      stream_fail(st, errors.new("REQUEST_TIMEOUT", "Timed out waiting for the request body"))
    end
  end
end

local function new_stream(c, req)
  local expect = req.headers.expect
  return setmetatable({ c = c, parts = {}, head = 1, tail = 0, buffered = 0, consumed = 0,
    done = false, err = nil, paused = false, continued = false,
    expect = expect ~= nil and string_lower(expect) == "100-continue" }, stream_mt)
end

-- a piece of the body being streamed (or its end) from the parser
local function stream_item(c, item)
  local st = c.stream
  if not st then return end
  if item.chunk then
    st.tail = st.tail + 1
    st.parts[st.tail] = item.chunk
    st.buffered = st.buffered + #item.chunk
    if st.buffered > STREAM_HIGH and not st.paused then
      st.paused = true
      if c.reading then
        c.tcp:read_stop()
        c.reading = false
      end
    end
  else
    st.done = true
    c.stream = nil
  end
  stream_wake(st)
end

function close_now(c)
  if c.closed then return end
  if c.stream then
    stream_fail(c.stream, errors.new("BAD_REQUEST", "The connection closed during the request body"))
    c.stream = nil
  end
  c.closed = true
  c.reading = false
  c.timer:close()
  c.parser:close()
  local self = c.srv
  local function gone()
    if self.conns[c] then
      self.conns[c] = nil
      self.nconns = self.nconns - 1
    end
    check_stopped(self)
  end
  if c.tcp:is_closing() then gone() else c.tcp:close(guard(self, gone)) end
end

-- After a final response: FIN once the writes are out, then wait (reading
-- and dropping what comes) for the client to close, at most timeouts.linger.
-- Closing at once could make the kernel reset the connection and lose the
-- response when unread request bytes remain.
function begin_close(c)
  if c.closing or c.closed then return end
  c.closing = true
  c.timer:stop()
  local self = c.srv
  local ok = c.tcp:shutdown(guard(self, function()
    if c.eof then close_now(c) end
  end))
  if not ok then return close_now(c) end
  c.timer:start(self.timeouts.linger, 0, guard(self, function() close_now(c) end))
  if not c.eof then start_reading(c) end
end

-- The rest of a file response, FILE_CHUNK at a time, each after the
-- previous write completed; then done().
local function send_file(c, f, left, done)
  local self = c.srv
  local function step()
    if c.closed then f:close() return end
    if left <= 0 then
      f:close()
      return done()
    end
    local chunk = f:read(left < FILE_CHUNK and left or FILE_CHUNK)
    if not chunk then
      f:close()
      self.log("error", "file response: the file ended early")
      return close_now(c)
    end
    left = left - #chunk
    local ok = c.tcp:write(chunk, guard(self, function(err)
      if err then
        f:close()
        self.log("debug", "write failed: " .. tostring(err))
        return close_now(c)
      end
      step()
    end))
    if not ok then
      f:close()
      close_now(c)
    end
  end
  step()
end

-- f: the open file of a file response (not for HEAD); after(): called once
-- the file is out.
local function send(c, resp, close, head, f, after)
  if c.closed or c.closing then
    if f then f:close() end
    return
  end
  local bytes = response.serialize(resp, { close = close, head = head })
  local self = c.srv
  if f then
    do
      local ok = c.tcp:write(bytes, guard(self, function(err)
        if err then
          f:close()
          self.log("debug", "write failed: " .. tostring(err))
          return close_now(c)
        end
        send_file(c, f, resp.file_size, function()
          if close then begin_close(c) end
          if after then after() end
        end)
      end))
      if not ok then
        f:close()
        close_now(c)
      end
      return true
    end
  end
  local ok = c.tcp:write(bytes, guard(self, function(err)
    if err then
      self.log("debug", "write failed: " .. tostring(err))
      close_now(c)
    end
  end))
  if not ok then return close_now(c) end
  if close then begin_close(c) end
end

local function on_request_done(c, req, ok, resp)
  local self = c.srv
  c.busy = false
  if not ok then
    self.log("error", "request handler failed: " .. tostring(resp))
    resp = nil
  elseif not response.is(resp) then
    self.log("error", "request handler returned " .. tostring(resp) .. ", not a response")
    resp = nil
  end
  resp = resp or response.for_error("M_UNKNOWN")
  if c.closed then return end
  local close = not req.keep_alive or self.draining or (c.eof and queued(c) == 0)
  local st = req.body_stream
  if st and not st.done then
    -- the handler answered before the body's end: nothing more is read
    close = true
    c.stream = nil
    c.input_done = true
    stop_reading(c)
  end
  local f
  if resp.file and req.method ~= "HEAD" then
    f = io_open(resp.file, "rb")
    if not f then
      self.log("error", "file response: cannot open " .. tostring(resp.file))
      resp = response.for_error("M_UNKNOWN")
    end
  end
  if f then
    -- the connection stays busy until the file is out (responses in order)
    c.busy = true
    return send(c, resp, close, false, f, function()
      c.busy = false
      pump(c)
    end)
  end
  send(c, resp, close, req.method == "HEAD")
end

function pump(c)
  local self = c.srv
  while not c.busy and not c.closed and not c.closing and queued(c) > 0 do
    local item = c.queue[c.qh]
    c.queue[c.qh] = nil
    c.qh = c.qh + 1
    if reading_allowed(c) then start_reading(c) end
    if item.err then
      send(c, response.error(item.err), true, false)
    else
      local req, sync = item.req, true
      c.busy = true
      async.spawn(self.handler, req, function(ok, resp)
        on_request_done(c, req, ok, resp)
        if not sync then
          pump(c)
        end
      end, self.log)
      sync = false
    end
  end
  update(c)
end

function reading_allowed(c)
  return not c.input_done and not c.eof and queued(c) < c.srv.limits.max_pipeline
end

local function on_timeout(c)
  if c.closed or c.closing or c.busy or queued(c) > 0 then return end
  local state = c.parser:state()
  if state == "idle" then
    c.srv.log("debug", "closing idle connection from " .. tostring(c.peer.ip))
    begin_close(c)
  else
    c.srv.log("info", "request timed out (" .. state .. ") from " .. tostring(c.peer.ip))
    send(c, response.for_error("REQUEST_TIMEOUT", "Timed out waiting for the request " .. state),
         true, false)
  end
end

-- Sets the connection's timer for its current phase.
function update(c)
  if c.closed or c.closing then return end
  local self = c.srv
  if c.busy or queued(c) > 0 then
    c.phase = nil
    c.timer:stop()
    return
  end
  if c.eof then return begin_close(c) end
  local state, expect = c.parser:state()
  if self.draining and state == "idle" then return begin_close(c) end
  local now = uv.now()
  if state ~= c.phase then
    c.phase, c.phase_at = state, now
  end
  if expect and c.continued ~= c.nreq then
    c.continued = c.nreq
    c.tcp:write("HTTP/1.1 100 Continue\r\n\r\n")
  end
  local t = self.timeouts
  local timeout = state == "idle" and t.keepalive or state == "headers" and t.header or t.body
  local left = c.phase_at + timeout - now
  c.timer:stop()
  c.timer:start(left > 0 and left or 0, 0, c.on_timeout)
end

local function on_read(c, err, data)
  if c.closed then return end
  local self = c.srv
  if c.closing then
    -- lingering: drop the bytes, close on the client's FIN
    if err or not data then close_now(c) end
    return
  end
  if err then
    self.log("debug", "read failed: " .. tostring(err))
    return close_now(c)
  end
  if not data then
    -- the client is done sending: answer what is queued, then close
    c.eof = true
    stop_reading(c)
    if not c.busy and queued(c) == 0 then return begin_close(c) end
    return
  end
  local list = c.parser:feed(data)
  if list then
    for _, req in ipairs(list) do
      if req.chunk or req.body_end then
        stream_item(c, req)
      else
        req.peer = c.peer
        if req.streaming then
          req.body_stream = new_stream(c, req)
          c.stream = req.body_stream
        end
        c.nreq = c.nreq + 1
        c.qt = c.qt + 1
        c.queue[c.qt] = { req = req }
      end
    end
  end
  local msg, code = c.parser:error()
  if msg and c.stream then
    -- the streamed body broke a limit: its handler learns it from read_body
    local st = c.stream
    c.stream = nil
    c.input_done = true
    stop_reading(c)
    stream_fail(st, errors.from_code(code, msg))
    self.log("info", "bad request body from " .. tostring(c.peer.ip) .. ": " .. msg)
  elseif msg then
    c.input_done = true
    stop_reading(c)
    c.qt = c.qt + 1
    c.queue[c.qt] = { err = errors.from_code(code, msg) }
    self.log("info", "bad request from " .. tostring(c.peer.ip) .. ": " .. msg)
  elseif queued(c) >= self.limits.max_pipeline then
    stop_reading(c)
  end
  pump(c)
end

-- A warning that can come in floods (refused connections, failed accepts):
-- logged at once, then at most once per timeouts.warn_interval with the
-- number of repeats in that interval, while they go on.
local function warn_often(self, kind, first, repeated)
  local w = self.warnings[kind]
  if w then
    w.n = w.n + 1
    return
  end
  self.log("warn", first)
  local interval = self.timeouts.warn_interval
  w = { n = 0, timer = uv.new_timer() }
  self.warnings[kind] = w
  w.timer:unref()   -- a warning to come does not keep the loop alive
  w.timer:start(interval, interval, guard(self, function()
    if w.n > 0 then
      self.log("warn", ("%s (%d in the last %d ms)"):format(repeated, w.n, interval))
      w.n = 0
    else
      w.timer:close()
      self.warnings[kind] = nil
    end
  end))
end

-- A connection past max_connections: the 503 goes out, then FIN; what the
-- client sends meanwhile is dropped unread until it closes (at most
-- timeouts.linger), so that the kernel does not reset the connection before
-- the client has read the answer.
function refuse(self, tcp)
  warn_often(self, "refused", ("connection limit reached (%d open): answering new connections 503")
    :format(self.nconns), "connection limit: connections refused")
  local r = { tcp = tcp }
  self.refusing[r] = true
  self.nrefusing = self.nrefusing + 1
  local function gone()
    self.refusing[r] = nil
    self.nrefusing = self.nrefusing - 1
    check_stopped(self)
  end
  local function finish()
    if r.closed then return end
    r.closed = true
    if r.timer then r.timer:close() end
    tcp:close(guard(self, gone))
  end
  r.finish = finish
  local err = errors.new("TOO_MANY_CONNECTIONS", nil, { retry_after_ms = 1000 })
  err.headers = { ["Retry-After"] = "1" }
  local ok = tcp:write(response.serialize(response.error(err), { close = true }), guard(self, function(e)
    if e then finish() end
  end))
  -- so many refusals lingering already: close as soon as the answer is out
  local hurry = self.nrefusing > self.limits.max_connections
  if ok then ok = tcp:shutdown(guard(self, function() if hurry then finish() end end)) end
  if ok and not hurry then
    ok = tcp:read_start(guard(self, function(e, data) if e or not data then finish() end end))
  end
  if not ok then return finish() end
  r.timer = uv.new_timer()
  r.timer:start(self.timeouts.linger, 0, guard(self, finish))
end

local function on_connection(self, err)
  if err then
    warn_often(self, "accept", "accept failed: " .. tostring(err), "accept failed")
    return
  end
  if not self.listener then return end
  local tcp = uv.new_tcp()
  local ok, aerr = self.listener:accept(tcp)
  if not ok then
    tcp:close()
    warn_often(self, "accept", "accept failed: " .. tostring(aerr), "accept failed")
    return
  end
  if self.draining then
    tcp:close()
    return
  end
  if self.tls then tcp = tls_stream.wrap(tcp, self.tls:session()) end
  if self.nconns >= self.limits.max_connections then return refuse(self, tcp) end
  tcp:nodelay(true)
  local peer = tcp:getpeername() or {}
  local c = {
    srv = self, tcp = tcp, peer = { ip = peer.ip, port = peer.port },
    parser = core.http.parser(self.parser_limits),
    stream = nil,      -- the body stream of the request whose body is arriving
    queue = {}, qh = 1, qt = 0, nreq = 0, continued = -1,
    busy = false, reading = false, closing = false, closed = false, eof = false,
    timer = uv.new_timer(),
  }
  if self.stream_prefix then c.parser:stream(self.stream_prefix) end
  c.on_read = guard(self, function(e, data) on_read(c, e, data) end)
  c.on_timeout = guard(self, function() on_timeout(c) end)
  self.conns[c] = true
  self.nconns = self.nconns + 1
  start_reading(c)
  update(c)
end

--- srv:listen() -> true | nil, message, "io_error"
-- Binds host:port and starts accepting (the loop must run: uv.run()).
function methods.listen(self)
  if self.listener then return true end
  if self.draining then error("server is stopped", 2) end
  local tcp = uv.new_tcp()
  local ok, err = tcp:bind(self.host, self.port_wanted)
  if ok then
    ok, err = tcp:listen(511,   -- past max_connections, waiting clients get a 503 rather than a dropped SYN
                         guard(self, function(e) on_connection(self, e) end))
  end
  if not ok then
    tcp:close()
    async.finish_closing()   -- outside the loop (a failed start): let the close complete
    return nil, ("cannot listen on %s port %s: %s"):format(self.host, tostring(self.port_wanted),
                                                          tostring(err)), "io_error"
  end
  self.listener = tcp
  self.bound_port = tcp:getsockname().port
  self.log("info", ("listening on %s port %d"):format(self.host, self.bound_port))
  return true
end

--- srv:port() -> the port listened on (the one picked, when port was 0)
function methods.port(self)
  return self.bound_port
end

--- srv:connections() -> number of open connections
function methods.connections(self)
  return self.nconns
end

--- srv:stop([on_stopped]): graceful shutdown (see the top of this file).
-- on_stopped() is called once every connection is closed.
function methods.stop(self, on_stopped)
  if on_stopped then
    if self.stopped then on_stopped() return end
    self.on_stopped[#self.on_stopped + 1] = on_stopped
  end
  if self.draining then return end
  self.draining = true
  if self.listener then
    self.listener_closing = true
    self.listener:close(guard(self, function()
      self.listener_closing = false
      check_stopped(self)
    end))
    self.listener = nil
  end
  for c in pairs(self.conns) do update(c) end
  for r in pairs(self.refusing) do r.finish() end
  if next(self.conns) ~= nil then
    self.deadline = uv.new_timer()
    self.deadline:start(self.timeouts.shutdown, 0, guard(self, function()
      local n = 0
      for c in pairs(self.conns) do
        n = n + 1
        close_now(c)
      end
      if n > 0 then self.log("warn", ("shutdown deadline: closed %d connections"):format(n)) end
    end))
  end
  check_stopped(self)
end

return http
