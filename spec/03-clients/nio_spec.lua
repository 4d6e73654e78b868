-- A real client: matrix-nio (Debian's python3-matrix-nio, run with
-- /usr/bin/python3) registers, logs in, creates a room, sends 30 messages,
-- syncs with timeline limit 5, pages back to the start from prev_batch,
-- fetches a context, invites and joins a second user, who leaves.
local tesths = require "support.hs"
local json = require("loom.core").json

local PYTHON = "/usr/bin/python3"

local function have_nio()
  local p = io.popen("env -u LD_PRELOAD " .. PYTHON .. " -c 'import nio' 2>&1; echo rc=$?")
  local out = p:read("a")
  p:close()
  return out:match("rc=0") ~= nil, out
end

describe("matrix-nio against loom", function()
  it("runs the whole scenario", function()
    local ok, why = have_nio()
    assert(ok, "matrix-nio is needed (apt-get install python3-matrix-nio): " .. why)
    local t = tesths.start { server_name = "localhost" }
    local base = "http://127.0.0.1:" .. t.port
    local code, out, err = t:spawn(PYTHON, { "spec/03-clients/nio_client.py", base })
    t:stop()
    assert.equal(0, code, "nio client failed:\n" .. out .. "\n" .. err)
    local result = assert(json.decode(out:match("([^\n]+)\n?$")))
    assert.is_true(result.ok)
    assert.equal("@alice:localhost", result.user_id)
    assert.is_true(result.pages >= 4)
  end)
end)
