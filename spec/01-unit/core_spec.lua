-- loom.core's own helpers.
local core = require "loom.core"

describe("core.listdir", function()
  it("lists a directory's names, sorted, without . and ..", function()
    local names = assert(core.listdir("migrations/sqlite"))
    assert.equal("001_events.sql", names[1])
    for i = 2, #names do assert.is_true(names[i - 1] < names[i]) end
    for _, n in ipairs(names) do assert.is_true(n ~= "." and n ~= "..") end
  end)

  it("answers a missing directory with nil, message, io_error", function()
    local r, msg, code = core.listdir("no/such/dir")
    assert.is_nil(r)
    assert.matches("no/such/dir", msg)
    assert.equal("io_error", code)
  end)
end)
