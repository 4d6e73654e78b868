-- Synapse 1.67 as a reference peer for differential specs
-- (spec/04-differential/). The peer script (peer.sh from the shared
-- Synapse peer folder; LOOM_SYNAPSE_PEER overrides the path) sets Synapse up
-- once into build/synapse-peer, which later runs reuse; every start gets a
-- fresh database and a free port on 127.0.0.1, with federation off.
--
--   local synapse = require "support.synapse"
--   local peer = assert(synapse.start("diff.test"))  -- nil, why on failure
--   -- peer.port: client API on http://127.0.0.1:<port>
--   peer:stop()
local uv = require "luv"
local shell = require "support.shell"

local _M = {}

local DEFAULT_PEER = "../shared/peers/synapse/peer.sh"

local function run(cmd)
  local out = shell.lines(cmd .. " 2>&1; echo rc=$?")
  local rc = table.remove(out)
  return rc == "rc=0", table.concat(out, "\n")
end

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() end
  return f ~= nil
end

local function free_port()
  local tcp = uv.new_tcp()
  assert(tcp:bind("127.0.0.1", 0))
  local port = tcp:getsockname().port
  tcp:close()
  uv.run("nowait")
  return port
end

local function read(path)
  local f = assert(io.open(path, "r"))
  local s = f:read("a")
  f:close()
  return s
end

local function write(path, s)
  local f = assert(io.open(path, "w"))
  f:write(s)
  f:close()
end

-- Moves a set-up instance to another client port (peer.env and the
-- listener in homeserver.yaml, both written by peer.sh setup).
local function move_port(dir, port)
  local env = read(dir .. "/peer.env")
  local old = env:match("CLIENT_PORT=(%d+)")
  if not old then return nil, dir .. "/peer.env has no CLIENT_PORT" end
  write(dir .. "/peer.env", (env:gsub("CLIENT_PORT=%d+", "CLIENT_PORT=" .. port)))
  local yaml = read(dir .. "/homeserver.yaml")
  local n1, n2
  yaml, n1 = yaml:gsub("\n(%s*%-?%s*port: )" .. old .. "\n", "\n%1" .. port .. "\n")
  yaml, n2 = yaml:gsub("127%.0%.0%.1:" .. old .. "/", "127.0.0.1:" .. port .. "/")
  if n1 ~= 1 or n2 ~= 1 then return nil, "could not move the listener in " .. dir .. "/homeserver.yaml" end
  write(dir .. "/homeserver.yaml", yaml)
  return true
end

--- Set up (first time only) and start Synapse with server_name `name`.
-- Returns a peer { port, dir, stop = fn } or nil and a message that says
-- what is missing.
function _M.start(name)
  local root = shell.lines("pwd")[1]
  local script = os.getenv("LOOM_SYNAPSE_PEER") or DEFAULT_PEER
  if not exists(script) then
    return nil, "the Synapse peer script is not at " .. script .. " (set LOOM_SYNAPSE_PEER to peer.sh)"
  end
  local q = shell.quote
  local dir = root .. "/build/synapse-peer"
  -- poetry leaves out files that git ignores, and build/ is ignored: keep
  -- git from finding this repository while the wheel is built
  local env = ("GIT_CEILING_DIRECTORIES=%s SYNAPSE_PEER_CACHE=%s"):format(q(root .. "/build"),
    q(root .. "/build/synapse-wheel"))
  local ready = exists(dir .. "/peer.env") and exists(dir .. "/venv/bin/python")
    and read(dir .. "/peer.env"):match("NAME=([^\n]*)") == name
  if not ready then
    local force = exists(dir .. "/.synapse-peer") and "--force " or ""
    shell.lines("mkdir -p " .. q(root .. "/build"))
    local ok, out = run(("%s %s setup %s%s %s %d"):format(env, q(script), force, q(dir), q(name), free_port()))
    if not ok then return nil, "peer.sh setup failed (scripts/deps.sh installs what Synapse needs):\n" .. out end
  end
  run(("%s stop %s"):format(q(script), q(dir)))    -- one left running by an interrupted run
  local port = free_port()
  local moved, why = move_port(dir, port)
  if not moved then return nil, why end
  run("rm -f " .. q(dir) .. "/homeserver.db " .. q(dir) .. "/homeserver.db-*")
  local ok, out = run(("%s start %s"):format(q(script), q(dir)))
  if not ok then return nil, "peer.sh start failed:\n" .. out end
  return {
    port = port, dir = dir,
    stop = function() return run(("%s stop %s"):format(q(script), q(dir))) end,
  }
end

-- Is a TCP port on 127.0.0.1 free?
local function port_free(port)
  local tcp = uv.new_tcp()
  local ok = tcp:bind("127.0.0.1", port)
  tcp:close()
  uv.run("nowait")
  return ok ~= nil and ok ~= false
end

--- Set up (when needed) and start a Synapse that federates: server name
-- localhost:<federation port>, client API and federation (TLS, self-signed)
-- on 127.0.0.1, outbound requests allowed to loopback only. The instance in
-- build/synapse-fed is reused while its ports are free (its name holds its
-- federation port), else set up again on new ones. Returns { port (client),
-- fed_port, name, dir, stop } or nil, message.
function _M.start_federating()
  local root = shell.lines("pwd")[1]
  local script = os.getenv("LOOM_SYNAPSE_PEER") or DEFAULT_PEER
  if not exists(script) then
    return nil, "the Synapse peer script is not at " .. script .. " (set LOOM_SYNAPSE_PEER to peer.sh)"
  end
  local q = shell.quote
  local dir = root .. "/build/synapse-fed"
  local env = ("GIT_CEILING_DIRECTORIES=%s SYNAPSE_PEER_CACHE=%s"):format(q(root .. "/build"),
    q(root .. "/build/synapse-wheel"))
  run(("%s stop %s"):format(q(script), q(dir)))    -- one left running by an interrupted run
  local cport, fport
  if exists(dir .. "/peer.env") and exists(dir .. "/venv/bin/python") then
    local penv = read(dir .. "/peer.env")
    cport, fport = tonumber(penv:match("CLIENT_PORT=(%d+)")), tonumber(penv:match("FED_PORT=(%d+)"))
    if not (cport and fport and port_free(cport) and port_free(fport)) then cport, fport = nil, nil end
  end
  if not cport then
    cport, fport = free_port(), free_port()
    while fport == cport do fport = free_port() end
    local force = exists(dir .. "/.synapse-peer") and "--force " or ""
    shell.lines("mkdir -p " .. q(root .. "/build"))
    local ok, out = run(("%s %s setup %s%s localhost:%d %d %d"):format(env, q(script), force, q(dir), fport, cport,
      fport))
    if not ok then return nil, "peer.sh setup failed (scripts/deps.sh installs what Synapse needs):\n" .. out end
  end
  run("rm -f " .. q(dir) .. "/homeserver.db " .. q(dir) .. "/homeserver.db-*")
  local ok, out = run(("%s start %s"):format(q(script), q(dir)))
  if not ok then return nil, "peer.sh start failed:\n" .. out end
  return {
    port = cport, fed_port = fport, name = "localhost:" .. fport, dir = dir,
    stop = function() return run(("%s stop %s"):format(q(script), q(dir))) end,
  }
end

return _M
