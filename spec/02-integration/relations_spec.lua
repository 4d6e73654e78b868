-- Relationships (Client-Server API "Relationships", relations.yaml): the
-- /relations endpoint pages the children of an event both ways, filtered by
-- rel_type and event type, showing only what the user may see; events come
-- with their server-side aggregations (m.replace, m.reference) in
-- unsigned["m.relations"].
local tesths = require "support.hs"

local enc = tesths.enc
local V1 = "/_matrix/client/v1"

describe("relations", function()
  local t, alice, bob, room

  setup(function()
    t = tesths.start()
    alice, bob = t:register("alice"), t:register("bob")
  end)
  teardown(function() t:stop() end)

  before_each(function()
    room = t:create_room(alice, { preset = "public_chat" })
    t:join(bob, room)
  end)

  local function send(who, content, etype)
    local r = t:send(who.access_token, room, content, etype)
    assert.equal(200, r.status, r.body)
    return r.json.event_id
  end
  local function msg(who, body) return send(who, { msgtype = "m.text", body = body }) end
  local function react(who, parent, key)
    return send(who, { ["m.relates_to"] = { rel_type = "m.annotation", event_id = parent, key = key } }, "m.reaction")
  end
  local function reply_in_thread(who, root, body)
    return send(who, { msgtype = "m.text", body = body,
      ["m.relates_to"] = { rel_type = "m.thread", event_id = root } })
  end
  local function edit(who, parent, body)
    return send(who, { msgtype = "m.text", body = "* " .. body,
      ["m.new_content"] = { msgtype = "m.text", body = body },
      ["m.relates_to"] = { rel_type = "m.replace", event_id = parent } })
  end
  local function relations(who, parent, suffix, query)
    return t:request("GET", V1 .. "/rooms/" .. enc(room) .. "/relations/" .. enc(parent) .. (suffix or "")
      .. (query and "?" .. query or ""), nil, who.access_token)
  end
  local function ids(chunk)
    local out = {}
    for i, ev in ipairs(chunk) do out[i] = ev.event_id end
    return out
  end
  local function get_event(who, id)
    local r = t:request("GET", "/_matrix/client/v3/rooms/" .. enc(room) .. "/event/" .. enc(id), nil,
      who.access_token)
    assert.equal(200, r.status, r.body)
    return r.json
  end

  it("pages the children newest first and back again, with tokens", function()
    local parent = msg(alice, "parent")
    local kids = {}
    for i = 1, 5 do kids[i] = react(bob, parent, "k" .. i) end
    local r = relations(alice, parent, nil, "limit=2")
    assert.equal(200, r.status, r.body)
    assert.same({ kids[5], kids[4] }, ids(r.json.chunk))
    assert.is_string(r.json.next_batch)
    assert.is_nil(r.json.prev_batch)
    local r2 = relations(alice, parent, nil, "limit=2&from=" .. enc(r.json.next_batch))
    assert.same({ kids[3], kids[2] }, ids(r2.json.chunk))
    assert.equal(r.json.next_batch, r2.json.prev_batch)
    local r3 = relations(alice, parent, nil, "limit=2&from=" .. enc(r2.json.next_batch))
    assert.same({ kids[1] }, ids(r3.json.chunk))
    assert.is_nil(r3.json.next_batch)
    -- forwards: oldest first
    local f = relations(alice, parent, nil, "dir=f&limit=3")
    assert.same({ kids[1], kids[2], kids[3] }, ids(f.json.chunk))
    local f2 = relations(alice, parent, nil, "dir=f&limit=3&from=" .. enc(f.json.next_batch))
    assert.same({ kids[4], kids[5] }, ids(f2.json.chunk))
    assert.is_nil(f2.json.next_batch)
    -- `to` stops a page
    local bounded = relations(alice, parent, nil, "limit=10&to=" .. enc(r.json.next_batch))
    assert.same({ kids[5], kids[4] }, ids(bounded.json.chunk))
    -- a /sync token works as `from` too
    local since = t:sync(alice).next_batch
    assert.same({ kids[5], kids[4], kids[3] },
      ids(relations(alice, parent, nil, "limit=3&from=" .. enc(since)).json.chunk))
    local later = react(alice, parent, "later")
    assert.same({ kids[5] }, ids(relations(alice, parent, nil, "limit=1&from=" .. enc(since)).json.chunk))
    assert.same({ later }, ids(relations(alice, parent, nil, "limit=1").json.chunk))
    -- the chunk is in the client format
    local ev = r.json.chunk[1]
    assert.equal("m.reaction", ev.type)
    assert.equal(bob.user_id, ev.sender)
    assert.equal(room, ev.room_id)
    assert.is_number(ev.unsigned.age)
  end)

  it("filters by rel_type and by event type", function()
    local parent = msg(alice, "root")
    local r1 = react(bob, parent, "👍")
    local th = reply_in_thread(bob, parent, "in thread")
    local r2 = react(alice, parent, "🎉")
    assert.same({ r2, th, r1 }, ids(relations(alice, parent).json.chunk))
    assert.same({ r2, r1 }, ids(relations(alice, parent, "/m.annotation", "limit=10").json.chunk))
    assert.same({ th }, ids(relations(alice, parent, "/m.thread").json.chunk))
    assert.same({ r2, r1 }, ids(relations(alice, parent, "/m.annotation/m.reaction").json.chunk))
    assert.same({}, ids(relations(alice, parent, "/m.annotation/m.room.message").json.chunk))
    assert.same({}, ids(relations(alice, parent, "/m.reference").json.chunk))
  end)

  it("follows relations of relations with recurse, to a bounded depth", function()
    local parent = msg(alice, "root")
    local child = reply_in_thread(bob, parent, "reply")
    local grandchild = react(alice, child, "x")
    local flat = relations(alice, parent, nil, "limit=10")
    assert.same({ child }, ids(flat.json.chunk))
    assert.is_nil(flat.json.recursion_depth)
    local asked_flat = relations(alice, parent, nil, "limit=10&recurse=false")
    assert.same({ child }, ids(asked_flat.json.chunk))
    assert.equal(1, asked_flat.json.recursion_depth)
    local deep = relations(alice, parent, nil, "limit=10&recurse=true")
    assert.equal(200, deep.status, deep.body)
    assert.same({ grandchild, child }, ids(deep.json.chunk))
    assert.equal(3, deep.json.recursion_depth)
    assert.same({ grandchild }, ids(relations(alice, parent, "/m.annotation", "recurse=true").json.chunk))
    assert.equal(400, relations(alice, parent, nil, "recurse=maybe").status)
  end)

  it("refuses bad parameters with M_INVALID_PARAM", function()
    local parent = msg(alice, "p")
    for _, q in ipairs { "dir=x", "limit=abc", "from=garbage", "to=t0-0" } do
      local r = relations(alice, parent, nil, q)
      assert.equal(400, r.status, q)
      assert.equal("M_INVALID_PARAM", r.json.errcode, q)
    end
  end)

  it("hides a parent the user may not see (404) and a room they are not in (403)", function()
    local private = t:create_room(alice, { preset = "private_chat",
      initial_state = { { type = "m.room.history_visibility", content = { history_visibility = "joined" } } } })
    local r0 = t:send(alice.access_token, private, { msgtype = "m.text", body = "before carol" })
    local early = r0.json.event_id
    t:send(alice.access_token, private, { ["m.relates_to"] = { rel_type = "m.annotation", event_id = early,
      key = "a" } }, "m.reaction")
    local carol = t:fresh("carol")
    local function rel(who, id)
      return t:request("GET", V1 .. "/rooms/" .. enc(private) .. "/relations/" .. enc(id), nil, who.access_token)
    end
    local outsider = rel(carol, early)
    assert.equal(403, outsider.status)
    assert.equal("M_FORBIDDEN", outsider.json.errcode)
    assert.equal(200, t:request("POST", "/_matrix/client/v3/rooms/" .. enc(private) .. "/invite",
      { user_id = carol.user_id }, alice.access_token).status)
    t:join(carol, private)
    local hidden = rel(carol, early)
    assert.equal(404, hidden.status)
    assert.equal("M_NOT_FOUND", hidden.json.errcode)
    assert.equal(200, rel(alice, early).status)
    assert.equal(404, rel(alice, "$nonexistent").status)
  end)

  it("leaves out an ignored user's children, here and in aggregations", function()
    local parent = msg(alice, "p")
    local mine = react(alice, parent, "a")
    react(bob, parent, "b")
    local ref = send(bob, { msgtype = "m.text", body = "ref",
      ["m.relates_to"] = { rel_type = "m.reference", event_id = parent } })
    assert.same({ { event_id = ref } }, get_event(alice, parent).unsigned["m.relations"]["m.reference"].chunk)
    assert.equal(200, t:request("PUT", "/_matrix/client/v3/user/" .. enc(alice.user_id)
      .. "/account_data/m.ignored_user_list", { ignored_users = { [bob.user_id] = {} } }, alice.access_token).status)
    assert.same({ mine }, ids(relations(alice, parent, nil, "limit=10").json.chunk))
    assert.is_nil((get_event(alice, parent).unsigned["m.relations"] or {})["m.reference"])
    assert.equal(200, t:request("PUT", "/_matrix/client/v3/user/" .. enc(alice.user_id)
      .. "/account_data/m.ignored_user_list", { ignored_users = {} }, alice.access_token).status)
  end)

  it("drops a redacted child from the relations and the aggregations", function()
    local parent = msg(alice, "p")
    local kid = react(bob, parent, "x")
    local ref = send(bob, { msgtype = "m.text", body = "see above",
      ["m.relates_to"] = { rel_type = "m.reference", event_id = parent } })
    assert.same({ ref, kid }, ids(relations(alice, parent).json.chunk))
    for i, id in ipairs { kid, ref } do
      assert.equal(200, t:request("PUT", "/_matrix/client/v3/rooms/" .. enc(room) .. "/redact/" .. enc(id)
        .. "/red" .. i, {}, bob.access_token).status)
    end
    assert.same({}, ids(relations(alice, parent).json.chunk))
    assert.is_nil(get_event(alice, parent).unsigned["m.relations"])
  end)

  it("does not count children sent in another room", function()
    local parent = msg(alice, "here")
    local other = t:create_room(bob, { preset = "public_chat" })
    local function rel_in_other(rel_type, body)
      local r = t:send(bob.access_token, other, { msgtype = "m.text", body = body,
        ["m.relates_to"] = { rel_type = rel_type, event_id = parent } })
      assert.equal(200, r.status, r.body)
      return r.json.event_id
    end
    rel_in_other("m.thread", "elsewhere")
    rel_in_other("m.reference", "elsewhere too")
    assert.is_nil(get_event(alice, parent).unsigned["m.relations"])
    assert.same({}, ids(relations(alice, parent).json.chunk))
    local th = t:request("GET", V1 .. "/rooms/" .. enc(other) .. "/threads", nil, bob.access_token)
    assert.equal(200, th.status)
    assert.same({}, ids(th.json.chunk))
  end)

  it("refuses a duplicate annotation until the first is redacted", function()
    local parent = msg(alice, "p")
    local first = react(bob, parent, "👍")
    local again = t:send(bob.access_token, room, { ["m.relates_to"] = { rel_type = "m.annotation",
      event_id = parent, key = "👍" } }, "m.reaction")
    assert.equal(400, again.status)
    assert.equal("M_DUPLICATE_ANNOTATION", again.json.errcode)
    -- another key, another sender, another event type: fine
    react(bob, parent, "🎉")
    react(alice, parent, "👍")
    send(bob, { ["m.relates_to"] = { rel_type = "m.annotation", event_id = parent, key = "👍" } }, "org.example.vote")
    -- the same transaction ID again answers the first event, not an error
    local txn = "dup-" .. tostring(os.time())
    local path = "/_matrix/client/v3/rooms/" .. enc(room) .. "/send/m.reaction/" .. txn
    local content = { ["m.relates_to"] = { rel_type = "m.annotation", event_id = parent, key = "✅" } }
    local r1 = t:request("PUT", path, content, bob.access_token)
    local r2 = t:request("PUT", path, content, bob.access_token)
    assert.equal(200, r1.status)
    assert.equal(200, r2.status)
    assert.equal(r1.json.event_id, r2.json.event_id)
    assert.equal(200, t:request("PUT", "/_matrix/client/v3/rooms/" .. enc(room) .. "/redact/" .. enc(first)
      .. "/undo", {}, bob.access_token).status)
    react(bob, parent, "👍")
  end)

  it("counts encrypted children (their m.relates_to is in the clear)", function()
    local parent = msg(alice, "p")
    local enc_id = send(bob, { algorithm = "m.megolm.v1.aes-sha2", ciphertext = "AAAA", sender_key = "k",
      session_id = "s", device_id = "D", ["m.relates_to"] = { rel_type = "m.thread", event_id = parent } },
      "m.room.encrypted")
    assert.same({ enc_id }, ids(relations(alice, parent, "/m.thread").json.chunk))
    local agg = get_event(alice, parent).unsigned["m.relations"]["m.thread"]
    assert.equal(1, agg.count)
    assert.equal(enc_id, agg.latest_event.event_id)
  end)

  describe("edits (m.replace)", function()
    it("bundles the latest edit by the same sender; the content stays the original", function()
      local parent = msg(alice, "original")
      edit(alice, parent, "first fix")
      local second = edit(alice, parent, "second fix")
      local ev = get_event(bob, parent)
      assert.equal("original", ev.content.body)
      local rep = ev.unsigned["m.relations"]["m.replace"]
      assert.equal(second, rep.event_id)
      assert.equal("second fix", rep.content["m.new_content"].body)
      assert.equal(alice.user_id, rep.sender)
      -- /messages and /sync carry it too
      local m = t:request("GET", "/_matrix/client/v3/rooms/" .. enc(room) .. "/messages?dir=b&limit=5", nil,
        bob.access_token)
      local found
      for _, e in ipairs(m.json.chunk) do if e.event_id == parent then found = e end end
      assert.equal(second, found.unsigned["m.relations"]["m.replace"].event_id)
      local s = t:sync(bob)
      local seen
      for _, e in ipairs(s.rooms.join[room].timeline.events) do if e.event_id == parent then seen = e end end
      if seen then assert.equal(second, seen.unsigned["m.relations"]["m.replace"].event_id) end
    end)

    it("ignores an edit from another sender, of another type, or as a state event", function()
      local parent = msg(alice, "mine")
      edit(bob, parent, "hijacked")
      send(alice, { body = "* x", ["m.new_content"] = { body = "x" },
        ["m.relates_to"] = { rel_type = "m.replace", event_id = parent } }, "m.sticker")
      send(alice, { body = "* y", ["m.relates_to"] = { rel_type = "m.replace", event_id = parent } })
      local ev = get_event(alice, parent)
      assert.is_nil((ev.unsigned["m.relations"] or {})["m.replace"])
      -- the edit is still listed as a relation
      assert.equal(3, #relations(alice, parent, "/m.replace").json.chunk)
    end)

    it("falls back to the previous edit when the latest is redacted", function()
      local parent = msg(alice, "v0")
      local first = edit(alice, parent, "v1")
      local second = edit(alice, parent, "v2")
      assert.equal(second, get_event(alice, parent).unsigned["m.relations"]["m.replace"].event_id)
      assert.equal(200, t:request("PUT", "/_matrix/client/v3/rooms/" .. enc(room) .. "/redact/" .. enc(second)
        .. "/e1", {}, alice.access_token).status)
      assert.equal(first, get_event(alice, parent).unsigned["m.relations"]["m.replace"].event_id)
      assert.equal(200, t:request("PUT", "/_matrix/client/v3/rooms/" .. enc(room) .. "/redact/" .. enc(first)
        .. "/e2", {}, alice.access_token).status)
      assert.is_nil(get_event(alice, parent).unsigned["m.relations"])
    end)

    it("does not bundle edits of an edit", function()
      local parent = msg(alice, "v0")
      local e1 = edit(alice, parent, "v1")
      edit(alice, e1, "v1b")
      local ev = get_event(alice, e1)
      assert.is_nil((ev.unsigned["m.relations"] or {})["m.replace"])
    end)
  end)
end)
