-- GET /rooms/{roomId}/members?at=<token>: the members as of a token.
local tesths = require "support.hs"

local enc = tesths.enc

describe("members at a token", function()
  it("lists the members as of a sync token", function()
    local t = tesths.start()
    local alice, bob = t:register("alice"), t:register("bob")
    local room = t:request("POST", "/_matrix/client/v3/createRoom", { preset = "public_chat" },
      alice.access_token).json.room_id
    local before = t:request("GET", "/_matrix/client/v3/sync", nil, alice.access_token).json.next_batch
    assert.equal(200, t:request("POST", "/_matrix/client/v3/join/" .. enc(room), {}, bob.access_token).status)
    local function member_ids(query)
      local r = t:request("GET", ("/_matrix/client/v3/rooms/%s/members%s"):format(enc(room), query), nil,
        alice.access_token)
      assert.equal(200, r.status)
      local ids = {}
      for _, e in ipairs(r.json.chunk) do ids[#ids + 1] = e.state_key end
      table.sort(ids)
      return ids
    end
    assert.same({ alice.user_id, bob.user_id }, member_ids(""))
    assert.same({ alice.user_id }, member_ids("?at=" .. enc(before)))
    local r = t:request("GET", ("/_matrix/client/v3/rooms/%s/members?at=garbage"):format(enc(room)), nil,
      alice.access_token)
    assert.equal(400, r.status)
    assert.equal("M_INVALID_PARAM", r.json.errcode)
    t:stop()
  end)
end)
