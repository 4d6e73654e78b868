-- Older room versions over federation, in the lab (loom.lab): a room of
-- version 3, 5 or 9 is created on one server, a user of another server joins
-- it, messages flow both ways, a power level given as a string (allowed
-- before v10) authorises a state change on both servers, a partition heals,
-- history is backfilled and both servers converge. v3's event IDs use the
-- standard base64 alphabet ("/" and "+"), which travel URL-encoded.
local lab_mod = require "loom.lab"

local E = require("loom.federation.client").encode

local function find(events, pred)
  for _, e in ipairs(events) do if pred(e) then return e end end
  return nil
end

for _, rv in ipairs({ "3", "5", "9" }) do
  describe("the federation lab, room version " .. rv, function()
    it("two servers join, talk, follow string power levels and converge", function()
      local lab = lab_mod.new { seed = 3 }
      local a, b = lab:server("a.lab"), lab:server("b.lab")
      local report, checks = lab:run(function()
        local alice, bob = a:register("alice"), b:register("bob")
        local room = a:create_room(alice, { preset = "public_chat", room_version = rv })
        for i = 1, 3 do a:say(alice, room, "before bob " .. i) end
        b:join(bob, room, { "a.lab" })
        local ids = {}
        ids[#ids + 1] = a:say(alice, room, "hello bob")
        ids[#ids + 1] = b:say(bob, room, "hello alice")
        assert(lab:settle())
        -- the room version came with the join
        local cr = b:client("GET", "/_matrix/client/v3/rooms/" .. E(room) .. "/state/m.room.create/", nil,
          bob.access_token)
        assert(cr.status == 200, cr.body)
        -- alice gives bob 50 as a string: valid in v3-v9 (a client cannot send
        -- one, so the event is made by the room service itself, as an older
        -- server might send it); bob may then set the topic
        local pl = a:client("GET", "/_matrix/client/v3/rooms/" .. E(room) .. "/state/m.room.power_levels/", nil,
          alice.access_token).json
        pl.users[bob.user_id] = "50"
        local refused = a:client("PUT", "/_matrix/client/v3/rooms/" .. E(room) .. "/state/m.room.power_levels/", pl,
          alice.access_token)
        assert(refused.status == 400 and refused.json.errcode == "M_BAD_JSON", refused.body)
        assert(a.hs.rooms:send(room, { type = "m.room.power_levels", state_key = "", sender = alice.user_id,
          content = pl }))
        assert(lab:settle())
        local topic_id = b:state(bob, room, "m.room.topic", "", { topic = "set by bob" })
        assert(lab:settle())
        lab:partition({ "a.lab" }, { "b.lab" })
        ids[#ids + 1] = a:say(alice, room, "during the split (a)")
        ids[#ids + 1] = b:say(bob, room, "during the split (b)")
        lab:heal()
        assert(lab:settle())
        lab:backfill(room)
        local out = { version = cr.json.room_version, ids = ids, topic_id = topic_id, topics = {}, seen = {} }
        for name, s in pairs({ a = { a, alice }, b = { b, bob } }) do
          local t = s[1]:client("GET", "/_matrix/client/v3/rooms/" .. E(room) .. "/state/m.room.topic/", nil,
            s[2].access_token)
          out.topics[name] = t.json and t.json.topic
          local page = s[1]:client("GET", "/_matrix/client/v3/rooms/" .. E(room) .. "/messages?dir=b&limit=50", nil,
            s[2].access_token)
          out.seen[name] = page.json.chunk
        end
        return lab:check(room), out
      end)
      assert.same({}, report.problems)
      assert.is_true(report.ok)
      assert.equal(rv, checks.version)
      assert.same({ a = "set by bob", b = "set by bob" }, checks.topics)
      for _, id in ipairs(checks.ids) do
        if rv == "3" then
          assert.matches("^%$[A-Za-z0-9+/]+$", id)
        else
          assert.matches("^%$[A-Za-z0-9_-]+$", id)
        end
        for name, chunk in pairs(checks.seen) do
          assert.is_table(find(chunk, function(e) return e.event_id == id end), id .. " on " .. name)
        end
      end
      -- b backfilled what was said before bob joined
      assert.is_table(find(checks.seen.b, function(e) return e.content and e.content.body == "before bob 1" end))
      lab:close()
    end)
  end)
end
