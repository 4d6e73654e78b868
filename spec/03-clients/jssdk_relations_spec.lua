-- matrix-js-sdk 36 (from npm, installed into build/js-clients on first use,
-- shared with jssdk_spec.lua) against loom: a client with thread support
-- sees an edit applied from the server's bundled m.replace, a thread's
-- replies and the room's thread lists (/threads, include=all and
-- participated), and a live reply in the thread
-- (spec/03-clients/js/relations.mjs).
local tesths = require "support.hs"
local shell = require "support.shell"
local json = require("loom.core").json

local DIR = "build/js-clients"

local function install()
  local out = shell.lines(("mkdir -p %s && cp spec/03-clients/js/package.json spec/03-clients/js/relations.mjs %s/ && "
    .. "cd %s && (test -d node_modules/matrix-js-sdk || npm install --no-audit --no-fund --loglevel=error) "
    .. ">/dev/null 2>&1; echo rc=$?"):format(DIR, DIR, DIR))
  return out[#out] == "rc=0"
end

describe("matrix-js-sdk against loom, edits and threads", function()
  it("applies a bundled edit and lists a thread with its replies", function()
    assert(install(), "could not install matrix-js-sdk with npm into " .. DIR)
    local t = tesths.start { server_name = "localhost" }
    local code, out, err = t:spawn("node", { DIR .. "/relations.mjs", "http://127.0.0.1:" .. t.port }, 90000)
    t:stop()
    assert.equal(0, code, "js-sdk client failed:\n" .. out .. "\n" .. err)
    local result = assert(json.decode(out:match("([^\n]+)\n?$")))
    assert.is_true(result.ok)
    assert.equal("hello world", result.edited_body)
    assert.equal(3, result.thread_length)
    assert.equal("reply 3", result.latest_reply)
    assert.same({ "root" }, result.threads)
    assert.is_true(result.participated)
    assert.equal(4, result.live_length)
  end)
end)
