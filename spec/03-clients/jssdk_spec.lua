-- A real client: matrix-js-sdk 36 (from npm, installed into build/js-clients
-- on first use) under node: registers through user-interactive auth, starts
-- the full client (versions, push rules, capabilities, filters, sync), creates
-- a room, sends 30 messages, syncs with timeline limit 5, pages back to the
-- start, fetches a context, invites and joins a second user, who leaves.
local tesths = require "support.hs"
local shell = require "support.shell"
local json = require("loom.core").json

local DIR = "build/js-clients"

local function install()
  local out = shell.lines(("mkdir -p %s && cp spec/03-clients/js/package.json spec/03-clients/js/client.mjs %s/ && "
    .. "cd %s && (test -d node_modules/matrix-js-sdk || npm install --no-audit --no-fund --loglevel=error) "
    .. ">/dev/null 2>&1; echo rc=$?"):format(DIR, DIR, DIR))
  return out[#out] == "rc=0"
end

describe("matrix-js-sdk against loom", function()
  it("runs the whole scenario", function()
    assert(install(), "could not install matrix-js-sdk with npm into " .. DIR)
    local t = tesths.start { server_name = "localhost" }
    local code, out, err = t:spawn("node", { DIR .. "/client.mjs", "http://127.0.0.1:" .. t.port })
    t:stop()
    assert.equal(0, code, "js-sdk client failed:\n" .. out .. "\n" .. err)
    local result = assert(json.decode(out:match("([^\n]+)\n?$")))
    assert.is_true(result.ok)
    assert.is_true(result.prepared)
  end)
end)
