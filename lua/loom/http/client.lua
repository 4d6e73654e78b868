-- loom.http.client: the outbound HTTP/1.1 client (federation, push gateways,
-- media), on luv, over TCP or TLS.
--
--   local client = require "loom.http.client"
--   local c = assert(client.new { allow_ips = { "127.0.0.1/32" }, verify = false })
--   c:request({ method = "GET", host = "localhost", port = 8448, tls = true,
--               path = "/_matrix/federation/v1/version" }, function(err, res)
--     -- res = { status =, headers = { lowercased = ... }, body = }
--   end)
--   local res, err = c:fetch(opts)   -- the same, inside a loom.async task
--   c:close()                        -- closes idle connections; no new requests
--
-- Connections are kept alive per destination (host, port, TLS and the name
-- the certificate must carry) and reused; at most max_per_host are open to
-- one destination at a time, and more requests wait in order. Every address a
-- host name resolves to passes the address guard (loom.net.ipguard): loopback,
-- private and link-local addresses are refused unless listed in allow_ips.
-- Names are resolved by libuv's thread pool, so the loop never blocks.
-- Timeouts (ms): connect_timeout (resolve + connect + TLS handshake),
-- request_timeout (from sending to the end of the response; per request with
-- opts.timeout), idle_timeout (a kept-alive connection unused that long is
-- closed). A response larger than max_response bytes is an error. Errors are
-- strings: "timeout: ...", "refused address: ...", "connect: ...", "tls: ...",
-- "http: ..." (a malformed response), "closed" (the connection ended first).
local setmetatable, tostring, type, pairs, ipairs, error, xpcall = setmetatable, tostring, type, pairs, ipairs,
  error, xpcall
local traceback = debug.traceback
local table_concat, table_remove = table.concat, table.remove
local string_format = string.format
local uv = require "luv"
local core = require "loom.core"
local async = require "loom.async"
local ipguard = require "loom.net.ipguard"
local tls_stream = require "loom.net.tls"

local _ENV = nil -- luacheck: ignore 211

local client = {}

client.defaults = {
  connect_timeout = 10000,
  request_timeout = 60000,
  idle_timeout = 30000,
  max_per_host = 8,
  max_response = 64 * 1024 * 1024,
}

local Client = {}
Client.__index = Client
Client.__name = "loom.http.Client"

local function no_log() end

--- client.new(opts) -> Client | nil, message
-- opts: allow_ips / deny_ips (CIDR lists for the guard), verify (check
-- certificates against the system store or ca_file; default true), ca_file,
-- tls_context (a core.tls client context to use instead), timeouts and limits
-- as in client.defaults, user_agent, log (function(level, message)).
function client.new(opts)
  opts = opts or {}
  local guard, gerr = ipguard.new { allow = opts.allow_ips, deny = opts.deny_ips }
  if not guard then return nil, gerr end
  local self = setmetatable({
    guard = guard, pools = {}, closed = false, log = opts.log or no_log,
    user_agent = opts.user_agent or "loom",
    verify = opts.verify ~= false, ca_file = opts.ca_file, tls_ctx = opts.tls_context,
  }, Client)
  for k, v in pairs(client.defaults) do
    local given = opts[k]
    if given ~= nil and (type(given) ~= "number" or given <= 0) then
      return nil, k .. " must be a positive number"
    end
    self[k] = given or v
  end
  return self
end

local function guarded(self, f)
  return function(...)
    local ok, err = xpcall(f, traceback, ...)
    if not ok then self.log("error", "http client: " .. tostring(err)) end
  end
end

local function tls_context(self)
  if not self.tls_ctx then
    local ctx, err = core.tls.context { verify = self.verify, ca_file = self.ca_file }
    if not ctx then return nil, err end
    self.tls_ctx = ctx
  end
  return self.tls_ctx
end

-- ---- connections -----------------------------------------------------------

local function conn_close(conn)
  if conn.closed then return end
  conn.closed = true
  if conn.timer then conn.timer:close() end
  if conn.stream then conn.stream:close() end
  if conn.parser then conn.parser:close() end
  local pool = conn.pool
  pool.open = pool.open - 1
  for i, c in ipairs(pool.idle) do
    if c == conn then table_remove(pool.idle, i); break end
  end
end

local dispatch

-- The current request of conn ends with err or res; conn goes back to the
-- pool when it may carry another request.
local function finish(conn, err, res, reusable)
  local req = conn.req
  conn.req = nil
  conn.timer:stop()
  local pool, self = conn.pool, conn.client
  if reusable and not err and not self.closed then
    conn.stream:read_stop()
    conn.idle_since = uv.now()
    pool.idle[#pool.idle + 1] = conn
    conn.timer:start(self.idle_timeout, 0, guarded(self, function() conn_close(conn) end))
  else
    conn_close(conn)
  end
  if req then
    -- a kept-alive connection the server had closed: try once on a new one
    if err and req.retry_ok and not conn.got_bytes then
      req.retry_ok = false
      pool.queue[#pool.queue + 1] = req
    else
      req.cb(err, res)
    end
  end
  dispatch(self, pool)
end

local function on_data(conn, err, data)
  if conn.closed then return end
  if not conn.req then
    -- bytes (or the end) on an idle connection: it is of no more use
    return conn_close(conn)
  end
  if err then return finish(conn, tostring(err)) end
  local list, msg
  if data then
    conn.got_bytes = true
    conn.received = conn.received + #data
    if conn.received > conn.client.max_response + 65536 then
      return finish(conn, "http: response too large")
    end
    list, msg = conn.parser:feed(data)
  else
    list, msg = conn.parser:finish()
  end
  if not list then return finish(conn, "http: " .. tostring(msg)) end
  for _, res in ipairs(list) do
    if res.status >= 200 or res.status == 101 then
      local reusable = res.keep_alive and data ~= nil and #list == 1
      return finish(conn, nil, { status = res.status, headers = res.headers, body = res.body }, reusable)
    end
    -- 1xx interim responses are skipped
  end
  if not data then return finish(conn, "closed") end
end

local function serialize(self, req)
  local o = req.opts
  local body = o.body or ""
  local host = o.host_header or o.host
  local head = { string_format("%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\n", o.method or "GET",
    o.path or "/", host, self.user_agent) }
  local has_len = false
  for k, v in pairs(o.headers or {}) do
    if k:find("[\r\n:]") or tostring(v):find("[\r\n]") then error("bad header " .. k, 0) end
    if k:lower() == "content-length" then has_len = true end
    head[#head + 1] = string_format("%s: %s\r\n", k, v)
  end
  if not has_len and (body ~= "" or (o.method and o.method ~= "GET" and o.method ~= "HEAD")) then
    head[#head + 1] = string_format("Content-Length: %d\r\n", #body)
  end
  head[#head + 1] = "\r\n"
  head[#head + 1] = body
  return table_concat(head)
end

local function send_on(conn, req)
  local self = conn.client
  conn.req = req
  conn.got_bytes, conn.received = false, 0
  conn.timer:stop()
  conn.timer:start(req.opts.timeout or self.request_timeout, 0, guarded(self, function()
    finish(conn, "timeout: no response in time")
  end))
  local ok, bytes = xpcall(serialize, traceback, self, req)
  if not ok then return finish(conn, "http: " .. tostring(bytes)) end
  conn.stream:write(bytes, guarded(self, function(err)
    if err and conn.req == req then finish(conn, "connect: write failed: " .. tostring(err)) end
  end))
  conn.stream:read_start(guarded(self, function(err, data) on_data(conn, err, data) end))
end

-- Resolves the host, checks every address with the guard, connects to the
-- first permitted one (then the next on failure), wraps TLS; cb(err, conn).
local function connect(self, pool, cb)
  local conn = { client = self, pool = pool, closed = false, timer = uv.new_timer() }
  pool.open = pool.open + 1
  local done = false
  local function once(err)
    if done then return end
    done = true
    if err then
      conn_close(conn)
      return cb(err)
    end
    conn.timer:stop()
    cb(nil, conn)
  end
  conn.timer:start(self.connect_timeout, 0, guarded(self, function() once("timeout: connecting took too long") end))
  local d = pool.dest
  local function try(addrs, i, last_err)
    if done then return end
    local a = addrs[i]
    if not a then return once(last_err or "connect: no address") end
    local tcp = uv.new_tcp()
    conn.stream = tcp
    tcp:connect(a, d.port, guarded(self, function(err)
      if done then return end
      if err then
        tcp:close()
        conn.stream = nil
        return try(addrs, i + 1, "connect: " .. tostring(err))
      end
      tcp:nodelay(true)
      if d.tls then
        local ctx, cerr = tls_context(self)
        if not ctx then return once("tls: " .. tostring(cerr)) end
        local session, serr = ctx:session(d.servername)
        if not session then return once("tls: " .. tostring(serr)) end
        local s = tls_stream.wrap(tcp, session)
        conn.stream = s
        -- wait for the handshake: a write completes once it went out
        s:write("", guarded(self, function(werr)
          if werr then return once(tostring(werr)) end
          once()
        end))
        s:read_start(guarded(self, function(rerr, data)
          if rerr then return once(tostring(rerr)) end
          if not data then return once("closed") end
        end))
      else
        once()
      end
    end))
  end
  local literal = ipguard.parse(d.host)
  if literal then
    local ok, why = self.guard:permits(d.host)
    if not ok then return once("refused address: " .. d.host .. " is a " .. tostring(why)) end
    return try({ (d.host:gsub("^%[(.*)%]$", "%1")) }, 1)
  end
  uv.getaddrinfo(d.host, nil, { socktype = "stream" }, guarded(self, function(err, res)
    if done then return end
    if err or not res or not res[1] then return once("connect: cannot resolve " .. d.host .. ": " .. tostring(err)) end
    local addrs, refused = {}, nil
    for _, r in ipairs(res) do
      local ok, why = self.guard:permits(r.addr)
      if ok then addrs[#addrs + 1] = r.addr else refused = r.addr .. " is a " .. tostring(why) end
    end
    -- a name with any refused address is refused whole: the resolver's
    -- order is not ours to trust
    if refused then return once("refused address: " .. d.host .. ": " .. refused) end
    try(addrs, 1)
  end))
end

function dispatch(self, pool)
  while pool.queue[1] do
    local conn = table_remove(pool.idle)
    if conn then
      local req = table_remove(pool.queue, 1)
      req.retry_ok = req.retry_ok ~= false   -- the server may have closed it meanwhile
      send_on(conn, req)
    elseif pool.open < self.max_per_host then
      local req = table_remove(pool.queue, 1)
      req.retry_ok = false
      connect(self, pool, function(err, fresh)
        if err then
          req.cb(err)
          return dispatch(self, pool)
        end
        fresh.parser = core.http.response_parser { max_body = self.max_response }
        send_on(fresh, req)
      end)
    else
      return
    end
  end
end

--- client:request(opts, cb): opts = { method, host, port, tls, servername
-- (the name the certificate must carry; default host), host_header, path,
-- headers, body, timeout }; cb(err, res).
function Client.request(self, opts, cb)
  if type(cb) ~= "function" then error("client:request: callback required", 2) end
  if type(opts) ~= "table" or type(opts.host) ~= "string" or opts.host == "" then
    error("client:request: opts.host required", 2)
  end
  if self.closed then return cb("closed") end
  local port = opts.port or (opts.tls and 443 or 80)
  local servername = opts.servername or opts.host
  local key = table_concat({ opts.host, tostring(port), opts.tls and "tls" or "tcp", servername }, "\0")
  local pool = self.pools[key]
  if not pool then
    pool = { dest = { host = opts.host, port = port, tls = opts.tls, servername = servername },
             idle = {}, queue = {}, open = 0 }
    self.pools[key] = pool
  end
  pool.queue[#pool.queue + 1] = { opts = opts, cb = cb }
  dispatch(self, pool)
end

--- client:fetch(opts) -> res | nil, err (inside a loom.async task)
function Client.fetch(self, opts)
  return async.wait(function(wake)
    self:request(opts, function(err, res)
      if err then wake(nil, err) else wake(res) end
    end)
  end)
end

--- client:close(): closes idle connections; requests in flight finish.
function Client.close(self)
  self.closed = true
  for _, pool in pairs(self.pools) do
    for i = #pool.idle, 1, -1 do conn_close(pool.idle[i]) end
    local queue = pool.queue
    pool.queue = {}
    for _, req in ipairs(queue) do req.cb("closed") end
  end
end

return client
