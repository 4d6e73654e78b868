-- The test homeserver harness works: a real server answers over TCP.
local tesths = require "support.hs"

describe("test homeserver", function()
  it("serves versions and authenticates registered users", function()
    local t = tesths.start()
    local r = t:request("GET", "/_matrix/client/versions")
    assert.equal(200, r.status)
    local has15 = false
    for _, v in ipairs(r.json.versions) do if v == "v1.5" then has15 = true end end
    assert.is_true(has15)
    local alice = t:register("alice")
    assert.equal("@alice:test.local", alice.user_id)
    assert.truthy(t.hs:authenticate({ header = function() return "Bearer " .. alice.access_token end,
      arg = function() end }))
    t:stop()
  end)
end)
