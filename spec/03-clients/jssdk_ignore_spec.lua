-- matrix-js-sdk 36 (from npm, installed into build/js-clients on first use,
-- shared with jssdk_spec.lua) against loom: with lazy-loaded members it
-- names an unnamed room from the /sync summary's heroes, and once the user
-- ignores someone, that user's messages and invites never reach the client
-- (spec/03-clients/js/ignore.mjs).
local tesths = require "support.hs"
local shell = require "support.shell"
local json = require("loom.core").json

local DIR = "build/js-clients"

local function install()
  local out = shell.lines(("mkdir -p %s && cp spec/03-clients/js/package.json spec/03-clients/js/ignore.mjs %s/ && "
    .. "cd %s && (test -d node_modules/matrix-js-sdk || npm install --no-audit --no-fund --loglevel=error) "
    .. ">/dev/null 2>&1; echo rc=$?"):format(DIR, DIR, DIR))
  return out[#out] == "rc=0"
end

describe("matrix-js-sdk against loom, ignoring users", function()
  it("names a room from its heroes and hides the ignored user's messages and invites", function()
    assert(install(), "could not install matrix-js-sdk with npm into " .. DIR)
    local t = tesths.start { server_name = "localhost" }
    local code, out, err = t:spawn("node", { DIR .. "/ignore.mjs", "http://127.0.0.1:" .. t.port }, 60000)
    t:stop()
    assert.equal(0, code, "js-sdk client failed:\n" .. out .. "\n" .. err)
    local result = assert(json.decode(out:match("([^\n]+)\n?$")))
    assert.is_true(result.ok)
    assert.is_true(result.invite_hidden)
    assert.same({ "alice last", "carol after" }, result.timeline)
  end)
end)
