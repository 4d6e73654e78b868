-- To-device messages to users of other servers (Client-Server API
-- "Send-to-Device messaging"; Server-Server API "Send-to-device messaging"):
-- PUT /sendToDevice with targets on another server sends that server one
-- m.direct_to_device EDU per send; its users get the messages in /sync.
local lab_mod = require "loom.lab"

local function sync_to_device(s, user, since)
  local r = s:client("GET", "/_matrix/client/v3/sync?timeout=0" .. (since and ("&since=" .. since) or ""), nil,
    user.access_token)
  assert.equal(200, r.status)
  return r.json.to_device and r.json.to_device.events or {}, r.json.next_batch
end

describe("to-device messages over federation", function()
  it("reach the devices of remote users once per transaction ID", function()
    local lab = lab_mod.new { seed = 3 }
    local a, b, c = lab:server("a.lab"), lab:server("b.lab"), lab:server("c.lab")
    local got_b, got_c, again = lab:run(function()
      local alice, bob, carol = a:register("alice"), b:register("bob"), c:register("carol")
      local body = { messages = {
        [bob.user_id] = { [bob.device_id] = { text = "for bob", n = 15 } },
        [carol.user_id] = { ["*"] = { text = "for carol" } },
      } }
      local r = a:client("PUT", "/_matrix/client/v3/sendToDevice/m.lab.test/t1", body, alice.access_token)
      assert.equal(200, r.status)
      -- canonical JSON has no floats: refused for remote users, nothing sent
      local f = a:client("PUT", "/_matrix/client/v3/sendToDevice/m.lab.test/t0",
        { messages = { [bob.user_id] = { ["*"] = { n = 1.5 } } } }, alice.access_token)
      assert.equal(400, f.status)
      assert.equal("M_BAD_JSON", f.json.errcode)
      assert(lab:settle())
      local gb, since = sync_to_device(b, bob)
      local gc = sync_to_device(c, carol)
      -- the same transaction ID again: nothing is sent again
      r = a:client("PUT", "/_matrix/client/v3/sendToDevice/m.lab.test/t1", body, alice.access_token)
      assert.equal(200, r.status)
      assert(lab:settle())
      return gb, gc, (sync_to_device(b, bob, since))
    end)
    assert.equal(1, #got_b)
    assert.equal("m.lab.test", got_b[1].type)
    assert.equal("@alice:a.lab", got_b[1].sender)
    assert.same({ text = "for bob", n = 15 }, got_b[1].content)
    assert.equal(1, #got_c)
    assert.equal("for carol", got_c[1].content.text)
    assert.equal(0, #again)
    lab:close()
  end)
end)
