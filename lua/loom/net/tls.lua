-- loom.net.tls: a TLS stream over a luv TCP handle.
--
--   local tls = require "loom.net.tls"
--   local s = tls.wrap(tcp, ctx:session("example.org"))   -- ctx: core.tls.context
--   s:read_start(function(err, plaintext) ... end)   -- plaintext nil at the end
--   s:write("GET / HTTP/1.1\r\n...", function(err) ... end)
--   s:shutdown(cb); s:close(cb); s:is_closing(); s:getpeername(); s:nodelay(on)
--
-- The wrapped stream has the methods of the TCP handle that loom's HTTP
-- server and client use, so they run over TLS unchanged. The handshake runs by
-- itself: the socket is read from the start (whatever the caller's reading
-- state), writes made before it finishes wait for it, and plaintext that
-- arrives while the caller is not reading is kept until it reads again. A TLS
-- failure reaches the reader as read_start's error ("tls: ..."), and closes
-- the stream's writing side; the caller closes the stream as for any error.
local setmetatable, tostring, ipairs = setmetatable, tostring, ipairs
local table_concat = table.concat

local _ENV = nil -- luacheck: ignore 211

local tls = {}

local Stream = {}
Stream.__index = Stream
Stream.__name = "loom.net.tls.Stream"

-- Sends whatever ciphertext the session has produced; cb (optional) runs
-- when that write completes (at once when there was nothing to send).
local function flush(self, cb)
  local out = self.session:take()
  if not out then
    if cb then cb(nil) end
    return true
  end
  if self.tcp:is_closing() then
    if cb then cb("closed") end
    return false
  end
  return self.tcp:write(out, cb or function() end)
end

local function deliver(self)
  while self.user_reading and (self.pending[1] or self.ended) do
    if self.pending[1] then
      local text = #self.pending == 1 and self.pending[1] or table_concat(self.pending)
      self.pending = {}
      self.on_read(nil, text)
    else
      local err = self.failed
      self.ended = false
      self.user_reading = false
      if err then self.on_read(err) else self.on_read(nil, nil) end
      return
    end
  end
end

local function fail(self, msg)
  if self.failed then return end
  self.failed = "tls: " .. tostring(msg)
  flush(self)   -- an alert, when the session made one
  self.ended = true
  self.tcp:read_stop()
  deliver(self)
end

-- The handshake finished: run the writes that waited for it.
local function handshake_done(self)
  self.ready = true
  local queued = self.queued
  self.queued = {}
  for _, w in ipairs(queued) do self:write(w[1], w[2]) end
  if self.shutdown_cb then
    local cb = self.shutdown_cb
    self.shutdown_cb = nil
    self:shutdown(cb)
  end
end

local function on_cipher(self, err, data)
  if self.failed or self.ended then return end
  if err then return fail(self, err) end
  if not data then
    -- the peer closed its side (with or without close_notify)
    self.ended = true
    self.tcp:read_stop()
    return deliver(self)
  end
  local session = self.session
  session:put(data)
  if not self.ready then
    local ok, msg = session:handshake()
    flush(self)
    if ok == nil then return fail(self, msg) end
    if not ok then return end
    handshake_done(self)
  end
  local text, msg, code = session:read()
  flush(self)   -- session tickets, key updates
  if text == nil then
    if code == "closed" then
      self.ended = true
      self.tcp:read_stop()
      return deliver(self)
    end
    return fail(self, msg)
  end
  if text ~= "" then self.pending[#self.pending + 1] = text end
  if not self.user_reading and #self.pending > 0 then
    -- nobody is reading: stop taking bytes until someone is
    self.tcp:read_stop()
    self.tcp_reading = false
  end
  deliver(self)
end

local function tcp_read(self)
  if self.tcp_reading or self.ended or self.tcp:is_closing() then return true end
  self.tcp_reading = true
  return self.tcp:read_start(self.on_cipher)
end

--- tls.wrap(tcp, session) -> stream. The session is a core.tls session (a
-- server one for an accepted connection, a client one for an outbound).
function tls.wrap(tcp, session)
  local self = setmetatable({
    tcp = tcp, session = session, ready = false, queued = {}, pending = {},
    user_reading = false, tcp_reading = false, ended = false,
  }, Stream)
  self.on_cipher = function(err, data) on_cipher(self, err, data) end
  -- a client speaks first
  local ok, msg = session:handshake()
  if ok == nil then self.failed = "tls: " .. tostring(msg) end
  flush(self)
  tcp_read(self)
  return self
end

function Stream.read_start(self, cb)
  self.on_read = cb
  self.user_reading = true
  deliver(self)
  if self.user_reading and not self.ended then return tcp_read(self) end
  return true
end

function Stream.read_stop(self)
  self.user_reading = false
  -- during the handshake the socket stays read (the caller does not see it)
  return true
end

function Stream.write(self, data, cb)
  if self.failed then
    if cb then cb(self.failed) end
    return true
  end
  if not self.ready then
    self.queued[#self.queued + 1] = { data, cb }
    return true
  end
  local ok, msg = self.session:write(data)
  if not ok then
    if cb then cb("tls: " .. tostring(msg)) end
    return true
  end
  return flush(self, cb)
end

function Stream.shutdown(self, cb)
  if not self.ready and not self.failed then
    self.shutdown_cb = cb or function() end
    return true
  end
  if not self.failed then self.session:shutdown() end
  flush(self)
  if self.tcp:is_closing() then return false end
  return self.tcp:shutdown(cb)
end

function Stream.close(self, cb)
  self.user_reading = false
  if self.tcp:is_closing() then return end
  self.tcp:close(function()
    self.session:close()
    if cb then cb() end
  end)
end

function Stream.is_closing(self) return self.tcp:is_closing() end
function Stream.getpeername(self) return self.tcp:getpeername() end
function Stream.getsockname(self) return self.tcp:getsockname() end
function Stream.nodelay(self, on) return self.tcp:nodelay(on) end

--- stream:info() -> the session's { version, cipher, verified, peer }
function Stream.info(self) return self.session:info() end

return tls
