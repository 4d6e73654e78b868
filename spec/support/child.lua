-- A loom process as a child of the spec (bin/loom serve, examples/embed.lua):
-- started with lua5.4, its output collected while the spec turns the luv
-- loop, spoken to over HTTP on 127.0.0.1, stopped with SIGTERM.
--
--   local child = require "support.child"
--   local c = child.start { "bin/loom", "serve", "--config", cfg }
--   local port = assert(c:wait_for("http://127%.0%.0%.1:(%d+)"))
--   local r = c:request("GET", "/_matrix/client/versions")    -- { status, json, body }
--   local code = c:stop()
--   local r2 = child.request(port, "GET", "/metrics")        -- any port: { status, json, body, raw }
--   local out = child.sh("lua5.4 bin/loom frobnicate")       -- output, then "rc=N\n"
local uv = require "luv"
local loop = require "support.loop"
local shell = require "support.shell"
local json = require("loom.core").json

local _M = {}
local C = {}
C.__index = C

--- Turn the loop until pred() is true or ms pass; returns pred().
_M.turn_until = loop.turn_until

--- Start lua5.4 with args (an array) and this process's environment (the
-- Lua paths, and the sanitizer preload of the test suite's second pass).
function _M.start(args)
  local c = setmetatable({ out = "", err = "" }, C)
  c.stdout, c.stderr = uv.new_pipe(false), uv.new_pipe(false)
  c.handle = uv.spawn("lua5.4", { args = args, stdio = { nil, c.stdout, c.stderr } },
    function(code, signal) c.exit_code, c.exit_signal = code, signal end)
  assert(c.handle, "could not start lua5.4")
  c.pid = c.handle:get_pid()
  c.stdout:read_start(function(_, data) if data then c.out = c.out .. data end end)
  c.stderr:read_start(function(_, data) if data then c.err = c.err .. data end end)
  return c
end

--- The first capture of pattern in the child's standard output, once it
-- appears (nil, stderr when the child ends first or ms pass).
function C:wait_for(pattern, ms)
  _M.turn_until(function() return self.out:match(pattern) or self.exit_code end, ms or 15000)
  local m = self.out:match(pattern)
  if m then
    if pattern:find("(%d+)", 1, true) then self.port = tonumber(m) end
    return m
  end
  return nil, "child output: " .. self.out .. "\nstderr: " .. self.err
end

--- One HTTP request to the child (on self.port): { status, json, body, raw }
-- (raw: the whole response, head and body).
function C:request(method, path, body, token)
  return self:request_at(self.port, method, path, body, token)
end

--- One HTTP request to another port of the child (a second listener).
function C:request_at(port, method, path, body, token)
  local st = _M.request(port, method, path, body, token)
  assert(st.body, (st.err or "") .. " no response from the child: " .. st.raw .. "\nstderr: " .. self.err)
  return { status = st.status, body = st.body, json = st.json, raw = st.raw }
end

--- An HTTP request (Connection: close) to 127.0.0.1:port (or to
-- "host:port" when port is such a string) that runs while the caller turns
-- the loop. Returns a state table: done, then status, body,
-- json, raw (err when the connection failed or broke). on_done(state), when
-- given, runs as it completes.
function _M.begin_request(port, method, path, body, token, on_done)
  local text = ""
  if type(body) == "table" then text = assert(json.encode(body)) elseif type(body) == "string" then text = body end
  local lines = { ("%s %s HTTP/1.1"):format(method, path), "Host: localhost", "Connection: close",
    "Content-Length: " .. #text }
  if #text > 0 then lines[#lines + 1] = "Content-Type: application/json" end
  if token then lines[#lines + 1] = "Authorization: Bearer " .. token end
  local st = { raw = "", done = false }
  local tcp = uv.new_tcp()
  st.tcp = tcp
  local function complete(err)
    if st.done then return end
    st.done, st.err = true, err
    st.status = tonumber(st.raw:match("^HTTP/1%.1 (%d%d%d)"))
    local head_end = st.raw:find("\r\n\r\n", 1, true)
    if head_end then st.body = st.raw:sub(head_end + 4); st.json = json.decode(st.body) end
    if not tcp:is_closing() then tcp:close() end
    if on_done then on_done(st) end
  end
  local host = "127.0.0.1"
  if type(port) == "string" then host, port = port:match("^(.*):(%d+)$"); port = tonumber(port) end
  tcp:connect(host, port, function(e)
    if e then return complete(e) end
    tcp:read_start(function(err, data)
      if data then st.raw = st.raw .. data else complete(err) end
    end)
    tcp:write(table.concat(lines, "\r\n") .. "\r\n\r\n" .. text)
  end)
  return st
end

--- Turn the loop until a begun request is answered (or ms pass); returns
-- its state.
function _M.finish(st, ms)
  _M.turn_until(function() return st.done end, ms or 10000)
  if not st.tcp:is_closing() then st.tcp:close() end
  return st
end

--- One HTTP request to 127.0.0.1:port, the loop turned until it is
-- answered: { status, json, body, raw }.
function _M.request(port, method, path, body, token)
  return _M.finish(_M.begin_request(port, method, path, body, token))
end

--- lua5.4 as a shell command: the shell itself runs without the sanitizer
-- preload of the test suite's second pass, the Lua child with it (its
-- LUA_CPATH is the sanitized build). An `env` form, so that it also works
-- after `timeout`.
function _M.lua_cmd()
  local preload = os.getenv("LD_PRELOAD")
  return preload and ("env LD_PRELOAD=" .. shell.quote(preload) .. " lua5.4") or "lua5.4"
end

--- Run a shell command (each "lua5.4 " in it becomes lua_cmd()); returns
-- its standard output and error, then "rc=<exit status>\n".
function _M.sh(cmd)
  cmd = cmd:gsub("lua5%.4 ", function() return _M.lua_cmd() .. " " end)
  local h = assert(io.popen("env -u LD_PRELOAD sh -c " .. shell.quote(cmd) .. " 2>&1; echo rc=$?"))
  local out = h:read("a")
  h:close()
  return out
end

--- SIGTERM, then wait for the exit: exit code, signal.
function C:stop()
  if not self.exit_code then
    self.handle:kill("sigterm")
    _M.turn_until(function() return self.exit_code ~= nil end, 15000)
  end
  if not self.exit_code then self.handle:kill("sigkill"); _M.turn_until(function() return self.exit_code end, 5000) end
  self.stdout:close(); self.stderr:close()
  if not self.handle:is_closing() then self.handle:close() end
  for _ = 1, 3 do uv.run("nowait") end
  return self.exit_code, self.exit_signal
end

return _M
