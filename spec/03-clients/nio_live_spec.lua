-- A real client's sync: matrix-nio (Debian's python3-matrix-nio, run with
-- /usr/bin/python3) sees typing notices, read receipts (ephemeral events) and
-- to-device messages from loom; a to-device message sent twice with one
-- transaction ID arrives once (spec/03-clients/nio_live.py).
local tesths = require "support.hs"
local json = require("loom.core").json

local PYTHON = "/usr/bin/python3"

describe("matrix-nio's sync against loom", function()
  it("sees typing, a read receipt and a to-device message", function()
    local t = tesths.start { server_name = "localhost" }
    local code, out, err = t:spawn(PYTHON, { "spec/03-clients/nio_live.py", "http://127.0.0.1:" .. t.port })
    t:stop()
    assert.equal(0, code, "nio client failed:\n" .. out .. "\n" .. err)
    local result = assert(json.decode(out:match("([^\n]+)\n?$")))
    assert.is_true(result.typing)
    assert.is_true(result.receipt)
    assert.is_true(result.to_device)
    assert.is_true(result.ok)
  end)
end)
