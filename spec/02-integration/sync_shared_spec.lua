-- Syncs woken by the same commit share what can be shared (the room's
-- stream read once per range, events without redactions remembered), but
-- never one user's view: history visibility is judged per user, private
-- receipts go to their owner only, a transaction ID only to the sending
-- device — even when the users' tokens name the same positions.
local tesths = require "support.hs"

local enc = tesths.enc
local V3 = "/_matrix/client/v3"
local find = tesths.find_type

describe("shared sync computation", function()
  local t
  setup(function() t = tesths.start() end)
  teardown(function() t:stop() end)

  -- set_presence=offline: a sync that sets presence would wake the other
  -- user's long-poll with a presence change before the commit under test
  local function sync_path(since, timeout)
    return V3 .. "/sync?set_presence=offline&timeout=" .. (timeout or 0) .. (since and "&since=" .. enc(since) or "")
  end
  local function bodies(events)
    local out = {}
    for _, ev in ipairs(events) do
      if ev.type == "m.room.message" then out[#out + 1] = ev.content.body end
    end
    return out
  end

  it("judges history visibility per user for the same range", function()
    local a, b = t:fresh("sh"), t:fresh("sh")
    local room = t:create_room(a, { preset = "public_chat" })
    assert.equal(200, t:request("PUT", V3 .. "/rooms/" .. enc(room) .. "/state/m.room.history_visibility/",
      { history_visibility = "joined" }, a.access_token).status)
    t:join(b, room)
    local since = t:request("GET", sync_path(), nil, a.access_token).json.next_batch
    -- b leaves, a message is sent while b is away, b comes back
    assert.equal(200, t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/leave", {}, b.access_token).status)
    assert.equal(200, t:send(a.access_token, room, { msgtype = "m.text", body = "while away" }).status)
    t:join(b, room)
    assert.equal(200, t:send(a.access_token, room, { msgtype = "m.text", body = "back" }).status)
    -- both sync from the same token (the same positions in every stream)
    local ra = t:request("GET", sync_path(since), nil, a.access_token)
    local rb = t:request("GET", sync_path(since), nil, b.access_token)
    assert.same({ "while away", "back" }, bodies(ra.json.rooms.join[room].timeline.events))
    assert.same({ "back" }, bodies(rb.json.rooms.join[room].timeline.events))
    -- and again, in the other order (whatever was kept from the first)
    rb = t:request("GET", sync_path(since), nil, b.access_token)
    ra = t:request("GET", sync_path(since), nil, a.access_token)
    assert.same({ "back" }, bodies(rb.json.rooms.join[room].timeline.events))
    assert.same({ "while away", "back" }, bodies(ra.json.rooms.join[room].timeline.events))
  end)

  it("forgets that an event had no redaction once it is redacted", function()
    local a = t:fresh("rd")
    local room = t:create_room(a, { preset = "public_chat" })
    local since = t:request("GET", sync_path(), nil, a.access_token).json.next_batch
    local id = t:send(a.access_token, room, { msgtype = "m.text", body = "secret" }).json.event_id
    local r = t:request("GET", sync_path(since), nil, a.access_token)
    local evs = r.json.rooms.join[room].timeline.events
    assert.equal("secret", evs[#evs].content.body)
    assert.equal(200, t:request("PUT", V3 .. "/rooms/" .. enc(room) .. "/redact/" .. enc(id) .. "/rd1", {},
      a.access_token).status)
    -- the same range again: the event now comes redacted
    r = t:request("GET", sync_path(since), nil, a.access_token)
    local got
    for _, ev in ipairs(r.json.rooms.join[room].timeline.events) do if ev.event_id == id then got = ev end end
    assert.is_table(got)
    assert.is_nil(got.content.body)
    assert.is_table(got.unsigned.redacted_because)
  end)

  it("wakes two long-polls with one commit, each with its own view", function()
    local a, b = t:fresh("lp"), t:fresh("lp")
    local room = t:create_room(a, { preset = "public_chat" })
    t:join(b, room)
    local first = t:send(a.access_token, room, { msgtype = "m.text", body = "first" }).json.event_id
    local sa = t:request("GET", sync_path(), nil, a.access_token).json.next_batch
    local sb = t:request("GET", sync_path(), nil, b.access_token).json.next_batch
    local ra, rb = t:run(function()
      local ha = t:go(function() return t:call("GET", sync_path(sa, 5000), nil, a.access_token) end)
      local hb = t:go(function() return t:call("GET", sync_path(sb, 5000), nil, b.access_token) end)
      t:sleep(50)
      -- one commit: a's private receipt; then a message from a's device
      local r = t:call("POST", V3 .. "/rooms/" .. enc(room) .. "/receipt/m.read.private/" .. enc(first), {},
        a.access_token)
      assert.equal(200, r.status)
      return t:await(ha), t:await(hb)
    end)
    assert.equal(200, ra.status)
    local ea = ra.json.rooms.join[room].ephemeral.events
    assert.is_table(find(ea, "m.receipt"))
    assert.is_table(find(ea, "m.receipt").content[first]["m.read.private"])
    -- b was woken by the same commit (or times out): never a's private receipt
    if rb.status == 200 and rb.json.rooms.join[room] then
      local rc = find(rb.json.rooms.join[room].ephemeral.events, "m.receipt")
      assert.is_true(rc == nil or rc.content[first] == nil or rc.content[first]["m.read.private"] == nil)
    end
    -- a message sent by a: the transaction ID goes to a's device only
    sa, sb = ra.json.next_batch, rb.json.next_batch
    ra, rb = t:run(function()
      local ha = t:go(function() return t:call("GET", sync_path(sa, 5000), nil, a.access_token) end)
      local hb = t:go(function() return t:call("GET", sync_path(sb, 5000), nil, b.access_token) end)
      t:sleep(50)
      local r = t:call("PUT", V3 .. "/rooms/" .. enc(room) .. "/send/m.room.message/txn-shared-1",
        { msgtype = "m.text", body = "second" }, a.access_token)
      assert.equal(200, r.status)
      return t:await(ha), t:await(hb)
    end)
    local ta = ra.json.rooms.join[room].timeline.events
    local tb = rb.json.rooms.join[room].timeline.events
    assert.same({ "second" }, bodies(ta))
    assert.same({ "second" }, bodies(tb))
    assert.equal("txn-shared-1", ta[#ta].unsigned.transaction_id)
    assert.is_nil(tb[#tb].unsigned.transaction_id)
  end)
end)
