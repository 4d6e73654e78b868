-- A real homeserver for specs: loom.new on 127.0.0.1 (free port) over a
-- temporary SQLite file, with every built-in endpoint installed, and an HTTP
-- client that talks to it over TCP.
--
--   local tesths = require "support.hs"
--   local t = tesths.start()
--   local r = t:request("GET", "/_matrix/client/versions")      -- { status, json, headers, body }
--   local alice = t:register("alice")                           -- { user_id, access_token, device_id }
--   local r2 = t:request("GET", "/_matrix/client/v3/account/whoami", nil, alice.access_token)
--   local room = t:create_room(alice, { preset = "public_chat" })     -- asserts 200
--   local body = t:sync(alice, since, filter)                    -- GET /sync, asserts 200
--   assert(t:logged("^warn: "))                                 -- first log line matching
--   t:wait_until(function() return done end, 5000)              -- turn the loop until true
--   t:run(function()                                            -- concurrent requests:
--     local a = t:go(function() return t:call("GET", "/_matrix/client/v3/sync?timeout=5000", nil, tok) end)
--     t:sleep(50)
--     t:call("PUT", "/_matrix/client/v3/rooms/" .. room .. "/send/m.room.message/1", { body = "hi" }, tok)
--     local resp = t:await(a)
--   end)
--   t:stop()
local uv = require "luv"
local loom = require "loom"
local api = require "loom.api"
local core = require "loom.core"
local tmp = require "support.tmpdb"

local json = core.json

local _M = {}
local T = {}
T.__index = T

local function resume(t, co, ...)
  local ok, err = coroutine.resume(co, ...)
  if not ok and not t.failure then t.failure = debug.traceback(co, tostring(err)) end
end

--- Start a homeserver. config: extra loom.new config (server_name defaults
-- to "test.local"; the database is a temporary file).
function _M.start(config)
  local t = setmetatable({ logs = {} }, T)
  t.db_path = tmp.path()
  local cfg = { port = 0, server_name = "test.local", log_level = "warn", password_iterations = 1000,
    database = { path = t.db_path },
    logger = function(level, message) t.logs[#t.logs + 1] = level .. ": " .. message end }
  for k, v in pairs(config or {}) do cfg[k] = v end
  t.server = loom.new(cfg)
  t.hs = api.install(t.server)
  assert(t.server:start())
  t.port = t.server:port()
  return t
end

--- Run fn as a coroutine, turning the loop until it ends (limit ms, default
-- 10000). Returns fn's results.
function T:run(fn, limit)
  self.failure = nil
  local co = coroutine.create(function() self.results = table.pack(fn()) end)
  local expired = false
  local guard = uv.new_timer()
  guard:start(limit or 10000, 0, function() expired = true end)
  resume(self, co)
  while coroutine.status(co) ~= "dead" and not self.failure and not expired do uv.run("once") end
  guard:close()
  for _ = 1, 3 do uv.run("nowait") end
  if self.failure then error(self.failure, 0) end
  if expired then error("test did not finish in time", 0) end
  return table.unpack(self.results, 1, self.results.n)
end

--- Inside run: wait ms milliseconds.
function T:sleep(ms)
  local co = coroutine.running()
  local timer = uv.new_timer()
  timer:start(ms, 0, function() timer:close(); resume(self, co) end)
  coroutine.yield()
end

--- Inside run: start fn concurrently; T:await(handle) returns its results.
function T:go(fn)
  local h = { done = false }
  local co = coroutine.create(function()
    h.results = table.pack(fn())
    h.done = true
    if h.waiter then resume(self, h.waiter) end
  end)
  resume(self, co)
  return h
end

function T.await(_, h)
  if not h.done then
    h.waiter = coroutine.running()
    coroutine.yield()
  end
  return table.unpack(h.results, 1, h.results.n)
end

-- The body of a chunked response that starts at pos in buf, or nil while
-- it is incomplete (other servers, such as a Synapse peer, send chunks).
local function dechunk(buf, pos)
  local parts = {}
  while true do
    local line_end = buf:find("\r\n", pos, true)
    if not line_end then return nil end
    local size = tonumber(buf:sub(pos, line_end - 1):match("^%x+"), 16)
    if not size then error("bad chunk size in response") end
    if size == 0 then return table.concat(parts) end
    if #buf < line_end + 3 + size then return nil end
    parts[#parts + 1] = buf:sub(line_end + 2, line_end + 1 + size)
    pos = line_end + 4 + size
  end
end

-- One HTTP exchange on a fresh connection (inside run).
local function exchange(self, raw)
  local co = coroutine.running()
  local tcp = uv.new_tcp()
  local buf, eof, waiting, cerr = "", false, nil, nil
  tcp:connect("127.0.0.1", self.port, function(err) cerr = err; resume(self, co) end)
  coroutine.yield()
  if cerr then tcp:close(); error("connect: " .. cerr) end
  tcp:read_start(function(err, data)
    if data then buf = buf .. data else eof = err or true end
    if waiting then local w = waiting; waiting = nil; resume(self, w) end
  end)
  tcp:write(raw)
  while true do
    local head_end = buf:find("\r\n\r\n", 1, true)
    if head_end then
      local head = buf:sub(1, head_end - 1)
      local status = tonumber(head:match("^HTTP/1%.1 (%d%d%d) "))
      local headers = {}
      for name, value in head:gmatch("\r\n([^:\r\n]+): ([^\r\n]*)") do headers[name:lower()] = value end
      local len = tonumber(headers["content-length"] or "0")
      if (headers["transfer-encoding"] or ""):lower() == "chunked" then
        local body = dechunk(buf, head_end + 4)
        if body then
          tcp:close()
          return { status = status, headers = headers, body = body, json = json.decode(body) }
        end
      elseif #buf >= head_end + 3 + len then
        tcp:close()
        local body = buf:sub(head_end + 4, head_end + 3 + len)
        return { status = status, headers = headers, body = body, json = json.decode(body) }
      end
    end
    if eof then tcp:close(); error("connection closed before a full response") end
    waiting = coroutine.running()
    coroutine.yield()
  end
end

--- Turn the loop (the server runs in it) until pred() is true or limit ms
-- (default 5000) have passed, checking every step ms (default 10); returns
-- pred()'s last value. From outside run.
function T:wait_until(pred, limit, step)
  limit, step = limit or 5000, step or 10
  return self:run(function()
    local waited = 0
    while not pred() and waited < limit do self:sleep(step); waited = waited + step end
    return pred()
  end, limit + 5000)
end

--- Inside run: one request. body: a table (sent as JSON), a string (sent
-- as is), or nil. token: an access token. Returns { status, json, headers,
-- body }.
function T:call(method, path, body, token, headers)
  local text = ""
  if type(body) == "table" then text = assert(json.encode(body, { floats = true }))
  elseif type(body) == "string" then text = body end
  local lines = { ("%s %s HTTP/1.1"):format(method, path), "Host: localhost",
    "Content-Length: " .. #text }
  local typed = false
  for k in pairs(headers or {}) do typed = typed or k:lower() == "content-type" end
  if #text > 0 and not typed then lines[#lines + 1] = "Content-Type: application/json" end
  if token then lines[#lines + 1] = "Authorization: Bearer " .. token end
  for k, v in pairs(headers or {}) do lines[#lines + 1] = k .. ": " .. v end
  return exchange(self, table.concat(lines, "\r\n") .. "\r\n\r\n" .. text)
end

--- One request from outside run.
function T:request(method, path, body, token, headers)
  return self:run(function() return self:call(method, path, body, token, headers) end)
end

--- Run a program as a child while the server's loop turns (clients under
-- test): returns exit code, stdout, stderr. The child gets PATH, HOME and
-- LANG only (not the sanitizer preload of the test process).
function T:spawn(cmd, args, limit)
  return self:run(function()
    local co = coroutine.running()
    local stdout, stderr = uv.new_pipe(false), uv.new_pipe(false)
    local out, err, code = {}, {}, nil
    local pending = 3
    local function done() pending = pending - 1; if pending == 0 then resume(self, co) end end
    local env = {}
    for _, k in ipairs { "PATH", "HOME", "LANG" } do
      if os.getenv(k) then env[#env + 1] = k .. "=" .. os.getenv(k) end
    end
    local handle
    handle = uv.spawn(cmd, { args = args, stdio = { nil, stdout, stderr }, env = env }, function(c)
      code = c
      handle:close()
      done()
    end)
    assert(handle, "could not start " .. cmd)
    stdout:read_start(function(_, data) if data then out[#out + 1] = data else stdout:close(); done() end end)
    stderr:read_start(function(_, data) if data then err[#err + 1] = data else stderr:close(); done() end end)
    coroutine.yield()
    return code, table.concat(out), table.concat(err)
  end, limit or 120000)
end

--- Register a user with a password (through the accounts object, not the
-- endpoint) and log in: { user_id, access_token, device_id }.
function T:register(localpart, password)
  password = password or "password-" .. localpart
  assert(self.hs.accounts:register(localpart, password))
  local user_id = self.hs.accounts:user_id(localpart)
  local login = assert(self.hs.accounts:login(user_id, password))
  login.password = password
  return login
end

--- A user with a name not used before on this server (prefix .. n).
function T:fresh(prefix)
  self.fresh_n = (self.fresh_n or 0) + 1
  return self:register((prefix or "u") .. self.fresh_n)
end

--- POST /rooms/{room}/join as `who`; asserts a 200.
function T:join(who, room)
  local r = self:request("POST", "/_matrix/client/v3/rooms/" .. _M.enc(room) .. "/join", {}, who.access_token)
  assert(r.status == 200, r.body)
end

--- POST /createRoom as `who` (body default {}); asserts a 200 and returns
-- the room ID.
function T:create_room(who, body)
  local r = self:request("POST", "/_matrix/client/v3/createRoom", body or {}, who.access_token)
  assert(r.status == 200, r.body)
  return r.json.room_id
end

--- PUT a message (or an event of etype) into room as the holder of token,
-- with a fresh transaction ID; returns the response.
function T:send(token, room, content, etype)
  self.txn = (self.txn or 0) + 1
  return self:request("PUT", "/_matrix/client/v3/rooms/" .. _M.enc(room) .. "/send/" .. (etype or "m.room.message")
    .. "/t" .. self.txn, content, token)
end

--- GET /sync as `who` (since and filter optional: a token, a filter ID or
-- inline JSON); asserts a 200 and returns the body.
function T:sync(who, since, filter)
  local q = {}
  if since then q[#q + 1] = "since=" .. _M.enc(since) end
  if filter then q[#q + 1] = "filter=" .. _M.enc(filter) end
  local r = self:request("GET", "/_matrix/client/v3/sync" .. (q[1] and "?" .. table.concat(q, "&") or ""), nil,
    who.access_token)
  assert(r.status == 200, r.body)
  return r.json
end

--- The first line the server logged ("level: message") that matches the
-- Lua pattern, or nil.
function T:logged(pattern)
  for _, line in ipairs(self.logs) do
    if line:find(pattern) then return line end
  end
end

--- The first line the server logged that contains text (as is), or nil.
function T:logged_text(text)
  for _, line in ipairs(self.logs) do
    if line:find(text, 1, true) then return line end
  end
end

--- A client of another server on 127.0.0.1:port that shares this harness's
-- loop: the same run/call/request (chunked responses too), no server of its own.
function T.client_for(_, port)
  return setmetatable({ port = port, logs = {} }, T)
end

--- Stop the server and remove its database.
function T:stop()
  local stopped = false
  self.server:stop(function() stopped = true end)
  local guard = 0
  while not stopped and guard < 1000 do uv.run("once"); guard = guard + 1 end
  for _ = 1, 5 do uv.run("nowait") end      -- let closing handles finish
  if self.hs.store then self.hs.store:close() end
  tmp.remove(self.db_path)
end

--- The first event of type etype in a list of events (nil-safe), or nil.
function _M.find_type(events, etype)
  for _, ev in ipairs(events or {}) do if ev.type == etype then return ev end end
end

--- Percent-encode a path segment (room IDs, event IDs, user IDs).
function _M.enc(s)
  return (s:gsub("[^%w%-%._~]", function(ch) return ("%%%02X"):format(ch:byte()) end))
end

return _M
