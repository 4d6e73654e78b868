-- Signing key validity by room version (spec: rooms/v5 "Signing key validity
-- period"): from room version 5 an event counts as signed by a key only when
-- the key's valid_until_ts is at least the event's origin_server_ts; in
-- versions 3 and 4 any key the server published counts. The keys come from
-- the server's keyring as receiving over federation fetches them
-- (loom.federation.receive.prefetch_keys), here from a key of b.test that
-- expired a minute ago.
local tesths = require "support.hs"
local remote = require "support.remote"
local receive = require "loom.federation.receive"
local version_mod = require "loom.room.version"
local event_mod = require "loom.room.event"
local core = require "loom.core"

local json = core.json

describe("signing key validity by room version", function()
  local t, alice, other, expired_at

  before_each(function()
    t = tesths.start()
    alice = t:register("alice")
    other = remote.key("b.test", 2)
    expired_at = core.now_ms() - 60000
    -- b.test's key, as an old_verify_keys entry: valid until a minute ago
    assert(t.hs.store:put_remote_keys("b.test", "b.test", "{}", { { key_id = other.key_id,
      public_key = other.public_key, valid_until_ts = expired_at, expired = true } }))
  end)

  after_each(function() t:stop() end)

  -- A join of @carol:b.test signed with the expired key at origin_server_ts ts,
  -- received as federation receives it.
  local function receive_join(vid, room_id, user, ts)
    local v = assert(version_mod.get(vid))
    local ev = assert(event_mod.build(v, { room_id = room_id, type = "m.room.member", state_key = user,
      sender = user, content = { membership = "join" } }, remote.room(t.hs.store, t.hs.rooms, room_id), other,
      { now = ts }))
    local wire = assert(json.decode(assert(json.encode(event_mod.pdu(ev)))))
    return t:run(function()
      local keys = receive.prefetch_keys(t.hs, v, { wire })
      return t.hs.rooms:receive(wire, { keys = keys, room_version = vid })
    end)
  end

  for _, case in ipairs({ { "3", true }, { "4", true }, { "5", false }, { "9", false }, { "11", false } }) do
    local vid, lenient = case[1], case[2]
    it("v" .. vid .. ": an event signed after its key expired is " .. (lenient and "accepted" or "refused"),
      function()
      local room_id = t:create_room(alice, { preset = "public_chat", room_version = vid })
      local r, msg, code = receive_join(vid, room_id, "@carol:b.test", core.now_ms())
      if lenient then
        assert.is_table(r, msg)
        assert.is_nil(r.rejected)
        assert.equal("join", t.hs.rooms:state_event(room_id, "m.room.member", "@carol:b.test").content.membership)
      else
        assert.is_nil(r)
        assert.equal("bad_signature", code, msg)
        assert.is_nil(t.hs.rooms:state_event(room_id, "m.room.member", "@carol:b.test"))
      end
      -- signed while the key was valid: accepted in every version
      r, msg = receive_join(vid, room_id, "@dave:b.test", expired_at - 1000)
      assert.is_table(r, msg)
      assert.is_nil(r.rejected)
      assert.equal("join", t.hs.rooms:state_event(room_id, "m.room.member", "@dave:b.test").content.membership)
    end)
  end
end)
