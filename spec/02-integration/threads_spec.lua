-- Threads (Client-Server API "Threading", threads_list.yaml): thread roots
-- carry an m.thread summary (latest_event, count,
-- current_user_participated) in unsigned["m.relations"] wherever they are
-- served, and /threads lists a room's roots latest activity first, all or
-- those the user took part in, page by page.
local tesths = require "support.hs"

local enc = tesths.enc
local V1 = "/_matrix/client/v1"

describe("threads", function()
  local t, alice, bob, carol, room

  setup(function()
    t = tesths.start()
    alice, bob, carol = t:register("alice"), t:register("bob"), t:register("carol")
  end)
  teardown(function() t:stop() end)

  before_each(function()
    room = t:create_room(alice, { preset = "public_chat" })
    t:join(bob, room)
    t:join(carol, room)
  end)

  local function send(who, content, etype)
    local r = t:send(who.access_token, room, content, etype)
    assert.equal(200, r.status, r.body)
    return r.json.event_id
  end
  local function msg(who, body) return send(who, { msgtype = "m.text", body = body }) end
  local function reply(who, root, body)
    return send(who, { msgtype = "m.text", body = body, ["m.relates_to"] = { rel_type = "m.thread",
      event_id = root, is_falling_back = true, ["m.in_reply_to"] = { event_id = root } } })
  end
  local function threads(who, query)
    local r = t:request("GET", V1 .. "/rooms/" .. enc(room) .. "/threads" .. (query and "?" .. query or ""), nil,
      who.access_token)
    return r
  end
  local function ids(chunk)
    local out = {}
    for i, ev in ipairs(chunk) do out[i] = ev.event_id end
    return out
  end
  local function summary(who, id)
    local r = t:request("GET", "/_matrix/client/v3/rooms/" .. enc(room) .. "/event/" .. enc(id), nil,
      who.access_token)
    assert.equal(200, r.status, r.body)
    return (r.json.unsigned["m.relations"] or {})["m.thread"]
  end

  it("keeps the thread summary up to date", function()
    local root = msg(alice, "root")
    assert.is_nil(summary(alice, root))
    local r1 = reply(bob, root, "one")
    local s = summary(alice, root)
    assert.equal(1, s.count)
    assert.equal(r1, s.latest_event.event_id)
    assert.equal("one", s.latest_event.content.body)
    assert.is_true(s.current_user_participated)   -- alice sent the root
    assert.is_false(summary(carol, root).current_user_participated)
    assert.is_true(summary(bob, root).current_user_participated)
    local r2 = reply(carol, root, "two")
    s = summary(carol, root)
    assert.equal(2, s.count)
    assert.equal(r2, s.latest_event.event_id)
    assert.is_true(s.current_user_participated)
    -- the latest reply carries its own aggregations (an edit)
    local e = send(carol, { msgtype = "m.text", body = "* two!", ["m.new_content"] = { msgtype = "m.text",
      body = "two!" }, ["m.relates_to"] = { rel_type = "m.replace", event_id = r2 } })
    s = summary(alice, root)
    assert.equal(2, s.count)     -- an edit of a reply is no reply
    assert.equal(r2, s.latest_event.event_id)
    assert.equal(e, s.latest_event.unsigned["m.relations"]["m.replace"].event_id)
    -- a redacted latest reply leaves the summary
    assert.equal(200, t:request("PUT", "/_matrix/client/v3/rooms/" .. enc(room) .. "/redact/" .. enc(r2) .. "/x1",
      {}, carol.access_token).status)
    s = summary(alice, root)
    assert.equal(1, s.count)
    assert.equal(r1, s.latest_event.event_id)
  end)

  it("shows the summary in /sync and /messages", function()
    local root = msg(alice, "root")
    local since = t:sync(alice).next_batch
    local r1 = reply(bob, root, "hi")
    local m = t:request("GET", "/_matrix/client/v3/rooms/" .. enc(room) .. "/messages?dir=b&limit=10", nil,
      alice.access_token)
    local found
    for _, ev in ipairs(m.json.chunk) do if ev.event_id == root then found = ev end end
    assert.equal(r1, found.unsigned["m.relations"]["m.thread"].latest_event.event_id)
    -- an initial sync's timeline carries the root with its summary
    local s = t:sync(alice)
    local seen
    for _, ev in ipairs(s.rooms.join[room].timeline.events) do if ev.event_id == root then seen = ev end end
    assert.is_table(seen)
    assert.equal(1, seen.unsigned["m.relations"]["m.thread"].count)
    -- the incremental sync has the reply
    local inc = t:sync(alice, since)
    assert.same({ r1 }, ids(inc.rooms.join[room].timeline.events))
  end)

  it("lists threads latest activity first, page by page", function()
    local roots = {}
    for i = 1, 5 do roots[i] = msg(alice, "root " .. i) end
    msg(alice, "no thread")
    for i = 1, 5 do reply(bob, roots[i], "r" .. i) end
    reply(carol, roots[2], "bump")
    local r = threads(alice, "limit=2")
    assert.equal(200, r.status, r.body)
    assert.same({ roots[2], roots[5] }, ids(r.json.chunk))
    assert.equal(2, r.json.chunk[1].unsigned["m.relations"]["m.thread"].count)
    assert.is_string(r.json.next_batch)
    local r2 = threads(alice, "limit=2&from=" .. enc(r.json.next_batch))
    assert.same({ roots[4], roots[3] }, ids(r2.json.chunk))
    local r3 = threads(alice, "limit=2&from=" .. enc(r2.json.next_batch))
    assert.same({ roots[1] }, ids(r3.json.chunk))
    assert.is_nil(r3.json.next_batch)
    assert.same({ roots[2], roots[5], roots[4], roots[3], roots[1] }, ids(threads(alice, "limit=50").json.chunk))
  end)

  it("lists only the threads the user took part in with include=participated", function()
    local a = msg(alice, "a")
    local b = msg(bob, "b")
    local c = msg(bob, "c")
    reply(bob, a, "x")
    reply(carol, b, "y")
    reply(bob, c, "z")
    assert.same({ c, b, a }, ids(threads(carol, "include=all&limit=10").json.chunk))
    assert.same({ b }, ids(threads(carol, "include=participated&limit=10").json.chunk))
    assert.same({ a }, ids(threads(alice, "include=participated&limit=10").json.chunk))
    assert.same({ c, b, a }, ids(threads(bob, "include=participated&limit=10").json.chunk))
  end)

  it("refuses a thread off an event with a relation (so threads never nest), and nothing is sent", function()
    local root = msg(alice, "root")
    local in_thread = reply(bob, root, "in the thread")
    local edit = send(alice, { msgtype = "m.text", body = "* root", ["m.new_content"] = { msgtype = "m.text",
      body = "root" }, ["m.relates_to"] = { rel_type = "m.replace", event_id = root } })
    local reaction = send(carol, { ["m.relates_to"] = { rel_type = "m.annotation", event_id = root, key = "x" } },
      "m.reaction")
    for _, target in ipairs { in_thread, edit, reaction } do
      local r = t:send(carol.access_token, room, { msgtype = "m.text", body = "nested",
        ["m.relates_to"] = { rel_type = "m.thread", event_id = target } })
      assert.equal(400, r.status, r.body)
      assert.equal("M_UNKNOWN", r.json.errcode)
      assert.is_nil(summary(alice, target))
    end
    assert.equal(1, summary(alice, root).count)
    -- a rich reply (m.in_reply_to, no rel_type) may be a thread root
    local rich = send(bob, { msgtype = "m.text", body = "> root\n\nreply",
      ["m.relates_to"] = { ["m.in_reply_to"] = { event_id = root } } })
    reply(carol, rich, "a thread off a reply")
    assert.equal(1, summary(alice, rich).count)
  end)

  it("refuses bad parameters and outsiders", function()
    for _, q in ipairs { "include=some", "limit=x", "from=nonsense" } do
      local r = threads(alice, q)
      assert.equal(400, r.status, q)
      assert.equal("M_INVALID_PARAM", r.json.errcode, q)
    end
    local outsider = t:fresh("out")
    local private = t:create_room(alice, { preset = "private_chat" })
    local r = t:request("GET", V1 .. "/rooms/" .. enc(private) .. "/threads", nil, outsider.access_token)
    assert.equal(403, r.status)
    assert.equal("M_FORBIDDEN", r.json.errcode)
  end)
end)
