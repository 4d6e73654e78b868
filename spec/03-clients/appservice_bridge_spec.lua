-- A real bridge: matrix-appservice-bridge (npm, installed into
-- build/as-bridge on first use) runs a small bridge against loom. loom reads
-- the bridge's registration file; the bridge listens on 127.0.0.1 for
-- loom's transactions. Its bot accepts an invite, a Matrix user's message
-- reaches the bridge, and a message from the bridge's side enters the room
-- as a virtual user the bridge registers through the application service API.
local tesths = require "support.hs"
local shell = require "support.shell"
local uv = require "luv"
local json = require("loom.core").json

local DIR = "build/as-bridge"

-- The library loads the Rust crypto bindings even with encryption off; their
-- native part is downloaded from GitHub at install, which is out of reach, so
-- spec/03-clients/as/no-native-crypto (loads, throws when used) stands in.
local function install()
  local placeholder = "node_modules/@matrix-org/matrix-sdk-crypto-nodejs-linux-x64-gnu"
  local out = shell.lines(("mkdir -p %s && cp spec/03-clients/as/package.json spec/03-clients/as/bridge.mjs %s/ && "
    .. "cd %s && (test -d node_modules/matrix-appservice-bridge || npm install --no-audit --no-fund "
    .. "--loglevel=error --ignore-scripts) >/dev/null 2>&1 && mkdir -p %s && "
    .. "cp ../../spec/03-clients/as/no-native-crypto/* %s/; echo rc=$?")
    :format(DIR, DIR, DIR, placeholder, placeholder))
  return out[#out] == "rc=0"
end

local function free_port()
  local tcp = uv.new_tcp()
  assert(tcp:bind("127.0.0.1", 0))
  local port = tcp:getsockname().port
  tcp:close()
  uv.run("nowait")
  return port
end

describe("matrix-appservice-bridge against loom", function()
  it("relays a message each way through a small bridge", function()
    assert(install(), "could not install matrix-appservice-bridge with npm into " .. DIR)
    local port = free_port()
    local reg = DIR .. "/registration.yaml"
    local f = assert(io.open(reg, "w"))
    f:write(([[
id: loom-test-bridge
url: "http://127.0.0.1:%d"
as_token: "bridge-as-token-0123456789"
hs_token: "bridge-hs-token-9876543210"
sender_localpart: "_bridge_bot"
namespaces:
  users:
    - exclusive: true
      regex: "@_bridge_.*:localhost"
  aliases: []
  rooms: []
rate_limited: false
]]):format(port))
    f:close()
    local t = tesths.start { server_name = "localhost", app_services = { reg }, app_service_retry_ms = 100 }
    local alice = t:register("alice")
    local code, out, err = t:spawn("node", { DIR .. "/bridge.mjs", "http://127.0.0.1:" .. t.port, reg,
      tostring(port), alice.access_token, "localhost" })
    local ghost = t.hs.accounts:user("@_bridge_remote1:localhost")
    t:stop()
    assert.equal(0, code, "bridge failed:\n" .. out .. "\n" .. err)
    local result = assert(json.decode(out:match("([^\n]+)\n?$")))
    assert.is_true(result.ok)
    assert.equal(1, #result.relayed)
    assert.same({ "@alice:localhost", "hello from matrix" }, { result.relayed[1].sender, result.relayed[1].body })
    assert.same({ sender = "@_bridge_remote1:localhost", body = "hello from the other side" }, result.seen_by_alice)
    assert.is_table(ghost)          -- registered through the application service API
  end)
end)
