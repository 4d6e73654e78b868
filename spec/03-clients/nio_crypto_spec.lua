-- Real end-to-end encryption: matrix-nio (Debian's python3-matrix-nio with
-- python3-olm, run with /usr/bin/python3) against loom. Two clients with key
-- stores upload device and one-time keys, see and verify each other's device
-- through /keys/query, and each decrypts the other's megolm messages (the
-- room keys go over olm to-device messages after /keys/claim); a device
-- logged in later is announced in /sync's device_lists and gets the keys
-- (spec/03-clients/nio_crypto.py).
local tesths = require "support.hs"
local shell = require "support.shell"
local json = require("loom.core").json

local PYTHON = "/usr/bin/python3"

describe("matrix-nio's olm encryption against loom", function()
  it("two clients see each other's devices and decrypt each other's messages", function()
    local store = shell.lines("mktemp -d")[1]
    local t = tesths.start { server_name = "localhost" }
    local code, out, err = t:spawn(PYTHON, { "spec/03-clients/nio_crypto.py", "http://127.0.0.1:" .. t.port, store })
    t:stop()
    shell.lines("rm -rf '" .. store .. "'")
    assert.equal(0, code, "nio crypto client failed:\n" .. out .. "\n" .. err)
    local result = assert(json.decode(out:match("([^\n]+)\n?$")))
    assert.is_true(result.devices)
    assert.is_true(result.alice_to_bob)
    assert.is_true(result.bob_to_alice)
    assert.is_true(result.again)
    assert.is_true(result.new_device)
    assert.is_true(result.ok)
  end)
end)
