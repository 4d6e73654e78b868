-- The room service on a real database: local events are built, authorised
-- and stored with the state before and after each; received events go
-- through the checks on receipt; forks resolve through state resolution.
local room_mod = require "loom.room"
local statemap = require "loom.room.statemap"
local stateres = require "loom.room.stateres"
local version_mod = require "loom.room.version"
local event_mod = require "loom.room.event"
local core = require "loom.core"
local tmp = require "support.tmpdb"
local remote = require "support.remote"

local json = core.json
local ALICE, BOB, CAROL = "@alice:a.test", "@bob:a.test", "@carol:b.test"

local key_for, keys_of = remote.key, remote.keys_of

-- Replay a linear history: the state after each event, by brute force.
local function replay(events)
  local states, cur = {}, {}
  for _, ev in ipairs(events) do
    if ev.state_key ~= nil then
      local nxt = {}
      for k, v in pairs(cur) do nxt[k] = v end
      nxt[statemap.key(ev.type, ev.state_key)] = ev.event_id
      cur = nxt
    end
    states[ev.event_id] = cur
  end
  return states
end

-- The number of a rule (named in v11's numbering) in room version rv: v3-v5
-- have rule 4 (m.room.aliases) and v12 rule 2 (the room ID) before the rest;
-- before v8 the join rules have no 4.2 and no 4.3.5 (restricted).
local function rule_in(rv, label)
  local n = tonumber(rv)
  local top, rest = label:match("^(%d+)(.*)$")
  if n < 8 and label == "4.3.7" then rest = ".2.6" end
  if n <= 5 or n == 12 then top = top + 1 end
  return top .. rest
end

for _, rv in ipairs { "3", "4", "5", "6", "7", "8", "9", "10", "11", "12" } do
  describe("rooms (version " .. rv .. ")", function()
    local path, store, rooms, key

    before_each(function()
      store, path = tmp.open_store()
      key = key_for("a.test", 1)
      rooms = room_mod.new(store, { server_name = "a.test", key = key, default_version = rv })
    end)

    after_each(function() tmp.close_store(store, path) end)

    local function send(room_id, proto)
      local ev, r, _, rule = rooms:send(room_id, proto)
      assert(ev, tostring(r) .. " " .. tostring(rule))
      return ev
    end

    it("stores every local event with the state before and after it", function()
      local room_id, create = assert(rooms:create_room(ALICE))
      if rv == "12" then
        assert.equal("!" .. create.event_id:sub(2), room_id)
        assert.is_nil(create.room_id)
      else
        assert.matches(":a%.test$", room_id)
      end
      local history = { create }
      local function add(proto) history[#history + 1] = send(room_id, proto) end
      add { type = "m.room.member", state_key = ALICE, sender = ALICE, content = { membership = "join" } }
      add { type = "m.room.power_levels", state_key = "", sender = ALICE,
        content = { users = rv == "12" and {} or { [ALICE] = 100 }, events_default = 0, state_default = 50 } }
      add { type = "m.room.join_rules", state_key = "", sender = ALICE, content = { join_rule = "public" } }
      for i = 1, 5 do
        add { type = "m.room.message", sender = ALICE, content = { msgtype = "m.text", body = "m" .. i } }
      end
      add { type = "m.room.member", state_key = BOB, sender = BOB, content = { membership = "join" } }
      add { type = "m.room.topic", state_key = "", sender = ALICE, content = { topic = "hello" } }
      add { type = "m.room.message", sender = BOB, content = { msgtype = "m.text", body = "hi" } }
      add { type = "m.room.topic", state_key = "", sender = ALICE, content = { topic = "hello again" } }
      local want = replay(history)
      for i, ev in ipairs(history) do
        local before = i == 1 and {} or want[history[i - 1].event_id]
        assert.is_true(statemap.equal(before, assert(rooms:state_at(ev.event_id, "before"))), ev.event_id)
        assert.is_true(statemap.equal(want[ev.event_id], assert(rooms:state_at(ev.event_id))), ev.event_id)
        -- every event carries the auth events the selection rules pick
        if i > 1 and rv ~= "12" then
          local has_create = false
          for _, a in ipairs(ev.auth_events) do if a == create.event_id then has_create = true end end
          assert.is_true(has_create)
        end
      end
      for _, ev in ipairs(history) do
        if rv == "12" then
          for _, a in ipairs(ev.auth_events) do assert.are_not.equal(create.event_id, a) end
        end
      end
      assert.is_true(statemap.equal(want[history[#history].event_id], assert(rooms:current_state(room_id))))
      assert.equal("hello again", rooms:state_event(room_id, "m.room.topic", "").content.topic)
      -- the current-state table answers membership questions
      local rn = store:room_nid(room_id)
      assert.equal(3 + 2 + 1, #store:current_state(rn))      -- create, 2 members, PL, join rules, topic
    end)

    it("refuses events the auth rules forbid, naming the rule, and stores nothing", function()
      local room_id = assert(rooms:create_room(ALICE))
      send(room_id, { type = "m.room.member", state_key = ALICE, sender = ALICE, content = { membership = "join" } })
      local before = store.conn:value("SELECT count(*) FROM events")
      local tok = store:current_token()
      -- Bob is not in the room (the join rule is invite by default)
      local ev, msg, code, rule = rooms:send(room_id, { type = "m.room.message", sender = BOB,
        content = { msgtype = "m.text", body = "let me in" } })
      assert.is_nil(ev)
      assert.equal("forbidden", code)
      assert.is_string(msg)
      assert.equal(rule_in(rv, "5"), rule)
      ev, _, code, rule = rooms:send(room_id, { type = "m.room.member", state_key = BOB, sender = BOB,
        content = { membership = "join" } })
      assert.is_nil(ev)
      assert.equal("forbidden", code)
      assert.equal(rule_in(rv, "4.3.7"), rule)
      assert.equal(before, store.conn:value("SELECT count(*) FROM events"))
      assert.equal(tok, store:current_token())
    end)

    it("receives events from another server: rejected, soft-failed and accepted", function()
      local other = key_for("b.test", 2)
      local keys = keys_of(key, other)
      local room_id = assert(rooms:create_room(ALICE))
      send(room_id, { type = "m.room.member", state_key = ALICE, sender = ALICE, content = { membership = "join" } })
      send(room_id, { type = "m.room.power_levels", state_key = "", sender = ALICE,
        content = { users = rv == "12" and {} or { [ALICE] = 100 } } })
      send(room_id, { type = "m.room.join_rules", state_key = "", sender = ALICE, content = { join_rule = "public" } })
      local version = assert(version_mod.get(rv))
      -- Carol's server builds her join against the room as it is now
      local ctx = remote.room(store, rooms, room_id)
      local join = assert(event_mod.build(version, { room_id = room_id, type = "m.room.member", state_key = CAROL,
        sender = CAROL, content = { membership = "join" } }, ctx, other))
      local r = assert(rooms:receive(json.decode(json.encode(join)), { keys = keys }))
      assert.is_nil(r.rejected)
      assert.is_nil(r.soft_failed)
      assert.equal(join.event_id, rooms:state_event(room_id, "m.room.member", CAROL).event_id)
      -- a message signed by the wrong server is refused outright
      local bad = assert(event_mod.build(version, { room_id = room_id, type = "m.room.message", sender = CAROL,
        content = { body = "x" } }, ctx, key))
      local none, _, code = rooms:receive(bad, { keys = keys })
      assert.is_nil(none)
      assert.equal("bad_signature", code)
      -- Carol tries to change the join rules: allowed by nobody's power
      local jr = assert(event_mod.build(version, { room_id = room_id, type = "m.room.join_rules", state_key = "",
        sender = CAROL, content = { join_rule = "invite" } }, ctx, other))
      r = assert(rooms:receive(jr, { keys = keys }))
      assert.is_string(r.rejected)
      assert.equal(rule_in(rv, "7"), r.rule)
      assert.equal("public", rooms:state_event(room_id, "m.room.join_rules", "").content.join_rule)
      -- a message built before Alice banned Carol arrives after the ban: it
      -- passes against its own history but not the current state
      local late = assert(event_mod.build(version, { room_id = room_id, type = "m.room.message", sender = CAROL,
        content = { body = "late" } }, ctx, other))
      send(room_id, { type = "m.room.member", state_key = CAROL, sender = ALICE, content = { membership = "ban" } })
      r = assert(rooms:receive(late, { keys = keys }))
      assert.is_nil(r.rejected)
      assert.is_true(r.soft_failed)
      local fwd = store:forward_extremities(room_id)
      for _, id in ipairs(fwd) do assert.are_not.equal(late.event_id, id) end
    end)

    it("keeps sending after an old event arrives by backfill", function()
      local room_id = assert(rooms:create_room(ALICE))
      send(room_id, { type = "m.room.member", state_key = ALICE, sender = ALICE, content = { membership = "join" } })
      -- stored without state (as backfilled history is before its state is known)
      assert(store:persist("$backfilled", { room_id = room_id, type = "m.room.message", sender = "@x:b.test",
        depth = 40, origin_server_ts = 1, prev_events = json.array { "$unknown" }, content = { body = "old" } },
        { backfilled = true }))
      local ev = send(room_id, { type = "m.room.message", sender = ALICE, content = { body = "still here" } })
      for _, p in ipairs(ev.prev_events) do assert.are_not.equal("$backfilled", p) end
    end)

    it("resolves concurrent state through state resolution", function()
      local other = key_for("b.test", 2)
      local keys = keys_of(key, other)
      local room_id = assert(rooms:create_room(ALICE))
      send(room_id, { type = "m.room.member", state_key = ALICE, sender = ALICE, content = { membership = "join" } })
      send(room_id, { type = "m.room.join_rules", state_key = "", sender = ALICE, content = { join_rule = "public" } })
      local version = assert(version_mod.get(rv))
      local fork_point = store:forward_extremities(room_id)
      local function ctx_at(prevs) return remote.room(store, rooms, room_id, prevs) end
      -- Carol joins (her server), while Alice sets a topic (local): two branches
      local join = assert(event_mod.build(version, { room_id = room_id, type = "m.room.member", state_key = CAROL,
        sender = CAROL, content = { membership = "join" } }, ctx_at(fork_point), other))
      local topic = send(room_id, { type = "m.room.topic", state_key = "", sender = ALICE, content = { topic = "t" } })
      assert(rooms:receive(join, { keys = keys }))
      local fwd = store:forward_extremities(room_id)
      assert.equal(2, #fwd)
      -- the current state holds both branches' state, and equals the
      -- resolution of the two states computed directly
      local cur = assert(rooms:current_state(room_id))
      assert.equal(join.event_id, cur[statemap.key("m.room.member", CAROL)])
      assert.equal(topic.event_id, cur[statemap.key("m.room.topic", "")])
      local direct = assert(stateres.resolve(version, { assert(rooms:state_at(join.event_id)),
        assert(rooms:state_at(topic.event_id)) }, function(id)
          local ev, meta = store:event(id)
          if ev then return ev, meta.rejected end
        end))
      assert.is_true(statemap.equal(direct, cur))
      -- the room's current state is recorded with the event that made it:
      -- the join's own state lacks the other branch's topic, the record has both
      assert.is_nil(assert(rooms:state_at(join.event_id))[statemap.key("m.room.topic", "")])
      local recorded = store.conn:value("SELECT current_after FROM events WHERE event_id = ?", join.event_id)
      assert.is_true(statemap.equal(cur, assert(rooms:state_map(assert(store:load_state(recorded))))))
      -- the next local event merges the fork and its state before is that resolution
      local msg = send(room_id, { type = "m.room.message", sender = ALICE,
        content = { body = "merged" } })
      assert.equal(2, #msg.prev_events)
      assert.is_true(statemap.equal(cur, assert(rooms:state_at(msg.event_id, "before"))))
      assert.same({ msg.event_id }, store:forward_extremities(room_id))
    end)
  end)
end
