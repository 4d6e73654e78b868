-- A real client's sync loop: matrix-js-sdk 36 (npm, installed into
-- build/js-clients on first use) runs startClient against loom and must see,
-- live, a redaction in a v11 room, typing, a read receipt, account data and a
-- to-device message (spec/03-clients/js/live.mjs says how each is checked).
local tesths = require "support.hs"
local shell = require "support.shell"
local json = require("loom.core").json

local DIR = "build/js-clients"

local function install()
  local out = shell.lines(("mkdir -p %s && cp spec/03-clients/js/package.json spec/03-clients/js/live.mjs %s/ && "
    .. "cd %s && (test -d node_modules/matrix-js-sdk || npm install --no-audit --no-fund --loglevel=error) "
    .. ">/dev/null 2>&1; echo rc=$?"):format(DIR, DIR, DIR))
  return out[#out] == "rc=0"
end

describe("matrix-js-sdk's sync loop against loom", function()
  it("sees a redaction, typing, a receipt, account data and a to-device message", function()
    assert(install(), "could not install matrix-js-sdk with npm into " .. DIR)
    local t = tesths.start { server_name = "localhost" }
    local code, out, err = t:spawn("node", { DIR .. "/live.mjs", "http://127.0.0.1:" .. t.port })
    t:stop()
    assert.equal(0, code, "js-sdk client failed:\n" .. out .. "\n" .. err)
    local result = assert(json.decode(out:match("([^\n]+)\n?$")))
    assert.is_true(result.redaction)
    assert.is_true(result.typing)
    assert.is_true(result.receipt)
    assert.is_true(result.account_data)
    assert.is_true(result.to_device)
    assert.is_true(result.ok)
  end)
end)
