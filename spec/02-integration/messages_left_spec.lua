-- GET /rooms/{roomId}/messages and /context for a user who left or was
-- banned: the history ends at their leave ("History visibility": events
-- after it are not theirs to see), paging backwards from the live end
-- starts at the leave, and history visibility is applied before the limit.
local tesths = require "support.hs"

local enc = tesths.enc
local V3 = "/_matrix/client/v3"

-- A room with "joined" history visibility: alice sends "a0", bob joins,
-- sends b1, b2, alice sends a1, then bob is removed by `how` ("leave" or
-- "ban") and alice sends `after` messages.
local function setup(t, how, after)
  local alice, bob = t:register("alice"), t:register("bob")
  local room = t:create_room(alice, { preset = "public_chat", initial_state = {
    { type = "m.room.history_visibility", state_key = "", content = { history_visibility = "joined" } } } })
  assert.equal(200, t:send(alice.access_token, room, { msgtype = "m.text", body = "a0" }).status)
  assert.equal(200, t:request("POST", V3 .. "/join/" .. enc(room), {}, bob.access_token).status)
  for _, b in ipairs({ "b1", "b2" }) do
    assert.equal(200, t:send(bob.access_token, room, { msgtype = "m.text", body = b }).status)
  end
  assert.equal(200, t:send(alice.access_token, room, { msgtype = "m.text", body = "a1" }).status)
  if how == "ban" then
    assert.equal(200, t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/ban", { user_id = bob.user_id },
      alice.access_token).status)
  else
    assert.equal(200, t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/leave", {}, bob.access_token).status)
  end
  for i = 1, after do
    assert.equal(200, t:send(alice.access_token, room, { msgtype = "m.text", body = "late" .. i }).status)
  end
  return alice, bob, room
end

-- What a chunk shows: message bodies, or "<membership>" for member events.
local function labels(chunk)
  local out = {}
  for _, e in ipairs(chunk) do
    if e.type == "m.room.member" then out[#out + 1] = "<" .. e.content.membership .. ">"
    elseif e.type == "m.room.message" then out[#out + 1] = e.content.body
    else out[#out + 1] = e.type end
  end
  return out
end

local function messages(t, who, room, query)
  local r = t:request("GET", V3 .. "/rooms/" .. enc(room) .. "/messages?" .. query, nil, who.access_token)
  assert.equal(200, r.status, r.body)
  return r.json
end

describe("/messages for a room the user left", function()
  for _, how in ipairs({ "leave", "ban" }) do
    it("pages backwards from the live end starting at the " .. how, function()
      local t = tesths.start()
      local _, bob, room = setup(t, how, 15)
      local page = messages(t, bob, room, "dir=b&limit=4")
      assert.same({ "<" .. how .. ">", "a1", "b2", "b1" }, labels(page.chunk))
      assert.is_string(page["end"])
      local more = messages(t, bob, room, "dir=b&limit=2&from=" .. enc(page["end"]))
      -- a0 predates the join ("joined"); the room's setup predates the
      -- history_visibility event, so the default "shared" applies to it
      assert.same({ "<join>", "m.room.history_visibility" }, labels(more.chunk))
      t:stop()
    end)
  end

  it("treats a from token after the leave as the leave", function()
    local t = tesths.start()
    local alice, bob, room = setup(t, "leave", 12)
    local since = t:request("GET", V3 .. "/sync", nil, alice.access_token).json.next_batch
    local page = messages(t, bob, room, "dir=b&limit=3&from=" .. enc(since))
    assert.same({ "<leave>", "a1", "b2" }, labels(page.chunk))
    assert.equal(since, page.start)
    t:stop()
  end)

  it("pages in small steps down to the join, never past the leave", function()
    local t = tesths.start()
    local _, bob, room = setup(t, "leave", 3)
    local seen, from = {}, nil
    for _ = 1, 10 do
      local page = messages(t, bob, room, "dir=b&limit=2" .. (from and "&from=" .. enc(from) or ""))
      for _, l in ipairs(labels(page.chunk)) do seen[#seen + 1] = l end
      from = page["end"]
      if not from then break end
    end
    assert.same({ "<leave>", "a1", "b2", "b1", "<join>", "m.room.history_visibility" },
      { table.unpack(seen, 1, 6) })
    assert.equal("m.room.create", seen[#seen])
    for _, l in ipairs(seen) do assert.is_nil(l:find("^late") or l:find("^a0")) end
    t:stop()
  end)

  it("forwards pagination stops at the leave", function()
    local t = tesths.start()
    local _, bob, room = setup(t, "leave", 5)
    local page = messages(t, bob, room, "dir=f&limit=50")
    local got = labels(page.chunk)
    assert.same({ "<join>", "b1", "b2", "a1", "<leave>" }, { table.unpack(got, #got - 4, #got) })
    assert.is_nil(page["end"])
    t:stop()
  end)

  it("applies history visibility before the limit", function()
    local t = tesths.start()
    local alice, bob, room = setup(t, "leave", 12)
    -- bob comes back: the twelve messages sent while he was away stay hidden
    assert.equal(200, t:request("POST", V3 .. "/join/" .. enc(room), {}, bob.access_token).status)
    local page = messages(t, bob, room, "dir=b&limit=3")
    assert.same({ "<join>", "<leave>", "a1" }, labels(page.chunk))
    assert.is_string(page["end"])
    local rest = messages(t, bob, room, "dir=b&limit=3&from=" .. enc(page["end"]))
    assert.same({ "b2", "b1", "<join>" }, labels(rest.chunk))
    -- alice, joined throughout, sees everything
    assert.equal(3, #messages(t, alice, room, "dir=b&limit=3").chunk)
    t:stop()
  end)

  it("/context: nothing after the leave, and events after it are not found", function()
    local t = tesths.start()
    local alice, bob, room = setup(t, "leave", 4)
    local page = messages(t, bob, room, "dir=b&limit=1")
    local leave_id = page.chunk[1].event_id
    local r = t:request("GET", V3 .. "/rooms/" .. enc(room) .. "/context/" .. enc(leave_id) .. "?limit=8", nil,
      bob.access_token)
    assert.equal(200, r.status, r.body)
    assert.same({}, r.json.events_after)
    assert.same({ "a1", "b2", "b1", "<join>" }, labels(r.json.events_before))
    -- paging forwards from the context's end shows nothing more
    local fwd = messages(t, bob, room, "dir=f&limit=10&from=" .. enc(r.json["end"]))
    assert.same({}, fwd.chunk)
    assert.is_nil(fwd["end"])
    local late = messages(t, alice, room, "dir=b&limit=1").chunk[1].event_id
    r = t:request("GET", V3 .. "/rooms/" .. enc(room) .. "/context/" .. enc(late), nil, bob.access_token)
    assert.equal(404, r.status)
    assert.equal("M_NOT_FOUND", r.json.errcode)
    t:stop()
  end)
end)
