-- Server-side search over a real server (Client-Server API "Server Side
-- Search", POST /search with search_categories.room_events): hits, rooms
-- and history the user may not see, redactions, rank and recent order,
-- next_batch pages, filters, event context, room state, groupings, hostile
-- search terms, the count and request errors.
local tesths = require "support.hs"

local enc = tesths.enc
local V3 = "/_matrix/client/v3"

describe("POST /search", function()
  local t
  setup(function() t = tesths.start() end)
  teardown(function() t:stop() end)

  local function fresh() return t:fresh("se") end
  local function send(u, room, body, etype, content)
    local r = t:send(u.access_token, room, content or { msgtype = "m.text", body = body }, etype)
    assert.equal(200, r.status, r.body)
    return r.json.event_id
  end
  local function put_state(u, room, etype, content)
    local r = t:request("PUT", V3 .. "/rooms/" .. enc(room) .. "/state/" .. etype .. "/", content, u.access_token)
    assert.equal(200, r.status, r.body)
    return r.json.event_id
  end
  local function search(u, room_events, next_batch)
    local path = V3 .. "/search" .. (next_batch and ("?next_batch=" .. enc(next_batch)) or "")
    return t:request("POST", path, { search_categories = { room_events = room_events } }, u.access_token)
  end
  local function ok_search(u, room_events, next_batch)
    local r = search(u, room_events, next_batch)
    assert.equal(200, r.status, r.body)
    return r.json.search_categories.room_events
  end
  local function ids(res)
    local out = {}
    for i, x in ipairs(res.results) do out[i] = x.result.event_id end
    return out
  end

  it("finds a message by a word of its body, as a client event with a rank", function()
    local a = fresh()
    local room = t:create_room(a, { preset = "private_chat" })
    local id = send(a, room, "The Martians have landed")
    send(a, room, "nothing to see here")
    local res = ok_search(a, { search_term = "martians" })
    assert.same({ id }, ids(res))
    local hit = res.results[1]
    assert.is_number(hit.rank)
    assert.equal("m.room.message", hit.result.type)
    assert.equal(room, hit.result.room_id)
    assert.equal(a.user_id, hit.result.sender)
    assert.equal("The Martians have landed", hit.result.content.body)
    assert.is_number(hit.result.origin_server_ts)
    assert.equal(1, res.count)
    assert.is_table(res.highlights)
    local hl = {}
    for _, w in ipairs(res.highlights) do hl[w] = true end
    assert.is_true(hl.martians)
    assert.is_nil(res.next_batch)
    -- a word prefix matches; every word must be there
    assert.same({ id }, ids(ok_search(a, { search_term = "martian land" })))
    assert.same({}, ids(ok_search(a, { search_term = "martians nothing" })))
    -- matrix-nio's r0 prefix
    local r = t:request("POST", "/_matrix/client/r0/search",
      { search_categories = { room_events = { search_term = "martians" } } }, a.access_token)
    assert.equal(200, r.status)
    assert.same({ id }, ids(r.json.search_categories.room_events))
  end)

  it("searches content.name and content.topic, and only the keys asked for", function()
    local a = fresh()
    local room = t:create_room(a, { preset = "private_chat" })
    local n = put_state(a, room, "m.room.name", { name = "Zorblax council" })
    local tp = put_state(a, room, "m.room.topic", { topic = "zorblax affairs" })
    local m = send(a, room, "a zorblax message")
    local all = ids(ok_search(a, { search_term = "zorblax", order_by = "recent" }))
    assert.same({ m, tp, n }, all)
    assert.same({ tp }, ids(ok_search(a, { search_term = "zorblax", keys = { "content.topic" } })))
    assert.same({ n }, ids(ok_search(a, { search_term = "zorblax", keys = { "content.name" } })))
    assert.same({ m }, ids(ok_search(a, { search_term = "zorblax", keys = { "content.body" } })))
  end)

  it("never shows events of rooms the user is not in", function()
    local a, b = fresh(), fresh()
    local mine = t:create_room(a, { preset = "private_chat" })
    local theirs = t:create_room(b, { preset = "public_chat" })
    local own = send(a, mine, "quokka sighting")
    send(b, theirs, "quokka elsewhere")
    local res = ok_search(a, { search_term = "quokka" })
    assert.same({ own }, ids(res))
    assert.equal(1, res.count)
    -- naming the room in the filter does not open it
    res = ok_search(a, { search_term = "quokka", filter = { rooms = { theirs } } })
    assert.same({}, ids(res))
    assert.equal(0, res.count)
  end)

  it("does not find messages of users the searcher ignores", function()
    local a, b = fresh(), fresh()
    local room = t:create_room(a, { preset = "public_chat" })
    t:join(b, room)
    local own = send(a, room, "wombat burrow")
    send(b, room, "wombat tunnel")
    assert.equal(2, #ids(ok_search(a, { search_term = "wombat" })))
    local r = t:request("PUT", V3 .. "/user/" .. enc(a.user_id) .. "/account_data/m.ignored_user_list",
      { ignored_users = { [b.user_id] = {} } }, a.access_token)
    assert.equal(200, r.status)
    local res = ok_search(a, { search_term = "wombat" })
    assert.same({ own }, ids(res))
    assert.equal(1, res.count)
  end)

  it("respects history visibility: joined-only history before the join is not found", function()
    local a, b = fresh(), fresh()
    local room = t:create_room(a, { preset = "public_chat" })
    put_state(a, room, "m.room.history_visibility", { history_visibility = "joined" })
    send(a, room, "wombat before")
    t:join(b, room)
    local after = send(a, room, "wombat after")
    local res = ok_search(b, { search_term = "wombat" })
    assert.same({ after }, ids(res))
    assert.equal(1, res.count)
    assert.equal(2, ok_search(a, { search_term = "wombat" }).count)
  end)

  it("in a joined-only room hides what was said while the user was away, and counts the rest", function()
    local a, b = fresh(), fresh()
    local room = t:create_room(a, { preset = "public_chat" })
    put_state(a, room, "m.room.history_visibility", { history_visibility = "joined" })
    t:join(b, room)
    local m1 = send(a, room, "numbat first")
    assert.equal(200, t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/leave", {}, b.access_token).status)
    send(a, room, "numbat away")
    t:join(b, room)
    local m3 = send(a, room, "numbat back")
    local res = ok_search(b, { search_term = "numbat", order_by = "recent" })
    assert.same({ m3, m1 }, ids(res))
    assert.equal(2, res.count)
    assert.equal(3, ok_search(a, { search_term = "numbat" }).count)
  end)

  it("in a shared room finds history from before the join, and counts it", function()
    local a, b = fresh(), fresh()
    local room = t:create_room(a, { preset = "public_chat" })
    local old = send(a, room, "bilby old")
    t:join(b, room)
    local new = send(a, room, "bilby new")
    local res = ok_search(b, { search_term = "bilby", order_by = "recent" })
    assert.same({ new, old }, ids(res))
    assert.equal(2, res.count)
    -- once the room was joined-only for a while, what was said then is hidden from
    -- a user who was not joined, even after it is shared again
    local c = fresh()
    put_state(a, room, "m.room.history_visibility", { history_visibility = "joined" })
    local hidden = send(a, room, "bilby hidden")
    put_state(a, room, "m.room.history_visibility", { history_visibility = "shared" })
    t:join(c, room)
    res = ok_search(c, { search_term = "bilby", order_by = "recent" })
    assert.same({ new, old }, ids(res))
    assert.equal(2, res.count)
    assert.equal(3, ok_search(b, { search_term = "bilby" }).count)
    assert.is_string(hidden)
  end)

  it("after leaving, finds what was visible up to the leave and nothing after", function()
    local a, b = fresh(), fresh()
    local room = t:create_room(a, { preset = "public_chat" })
    t:join(b, room)
    local seen = send(a, room, "platypus one")
    assert.equal(200, t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/leave", {}, b.access_token).status)
    send(a, room, "platypus two")
    local res = ok_search(b, { search_term = "platypus", include_state = true })
    assert.same({ seen }, ids(res))
    -- the state of a left room is the state as of the leave
    local st = res.state[room]
    local me
    for _, e in ipairs(st) do if e.type == "m.room.member" and e.state_key == b.user_id then me = e end end
    assert.equal("leave", me.content.membership)
    -- invited again, the room is still searched, with the same history
    local r = t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/invite", { user_id = b.user_id }, a.access_token)
    assert.equal(200, r.status, r.body)
    assert.same({ seen }, ids(ok_search(b, { search_term = "platypus" })))
    -- a user only ever invited finds nothing there
    local c = fresh()
    r = t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/invite", { user_id = c.user_id }, a.access_token)
    assert.equal(200, r.status, r.body)
    assert.same({}, ids(ok_search(c, { search_term = "platypus" })))
  end)

  it("drops a redacted event from the results", function()
    local a = fresh()
    local room = t:create_room(a, { preset = "private_chat" })
    local keep = send(a, room, "capybara kept")
    local gone = send(a, room, "capybara redacted")
    assert.same({ gone, keep }, ids(ok_search(a, { search_term = "capybara", order_by = "recent" })))
    local r = t:request("PUT", V3 .. "/rooms/" .. enc(room) .. "/redact/" .. enc(gone) .. "/r1", {},
      a.access_token)
    assert.equal(200, r.status, r.body)
    local res = ok_search(a, { search_term = "capybara", order_by = "recent" })
    assert.same({ keep }, ids(res))
    assert.equal(1, res.count)
  end)

  it("orders by rank (closest first) by default and by recent when asked", function()
    local a = fresh()
    local room = t:create_room(a, { preset = "private_chat" })
    local strong = send(a, room, "axolotl axolotl axolotl")
    local weak = send(a, room, "one axolotl among a great many other words that dilute the match a lot")
    local mid = send(a, room, "axolotl and axolotl")
    local rank = ok_search(a, { search_term = "axolotl" })
    assert.same({ strong, mid, weak }, ids(rank))
    assert.is_true(rank.results[1].rank >= rank.results[2].rank)
    assert.is_true(rank.results[2].rank >= rank.results[3].rank)
    assert.same({ strong, mid, weak }, ids(ok_search(a, { search_term = "axolotl", order_by = "rank" })))
    assert.same({ mid, weak, strong }, ids(ok_search(a, { search_term = "axolotl", order_by = "recent" })))
  end)

  for _, order in ipairs { "recent", "rank" } do
    it("pages with next_batch without duplicates or gaps (" .. order .. ")", function()
      local a = fresh()
      local room = t:create_room(a, { preset = "private_chat" })
      local sent = {}
      for i = 1, 7 do sent[#sent + 1] = send(a, room, "narwhal number " .. i) end
      local got, seen, batch, pages = {}, {}, nil, 0
      repeat
        local res = ok_search(a, { search_term = "narwhal", order_by = order, filter = { limit = 3 } }, batch)
        assert.is_true(#res.results <= 3)
        assert.equal(7, res.count)
        for _, id in ipairs(ids(res)) do
          assert.is_nil(seen[id], "duplicate " .. id)
          seen[id] = true
          got[#got + 1] = id
        end
        pages = pages + 1
        batch = res.next_batch
        -- a message arriving between pages changes nothing in them
        if pages == 1 then send(a, room, "narwhal latecomer") end
      until not batch or pages > 5
      assert.equal(3, pages)
      assert.equal(7, #got)
      if order == "recent" then
        local want = {}
        for i = 7, 1, -1 do want[#want + 1] = sent[i] end
        assert.same(want, got)
      end
    end)
  end

  it("refuses a next_batch it did not make, or made for another order", function()
    local a = fresh()
    for _, bad in ipairs { "garbage", "r1", "t-1_2", "r1_2_X00", "r99999999999999999999_1", "r1_2_Rzz" } do
      local r = search(a, { search_term = "x" }, bad)
      assert.equal(400, r.status, bad)
      assert.equal("M_INVALID_PARAM", r.json.errcode)
    end
    local room = t:create_room(a, { preset = "private_chat" })
    for i = 1, 3 do send(a, room, "ocelot " .. i) end
    local res = ok_search(a, { search_term = "ocelot", order_by = "recent", filter = { limit = 1 } })
    assert.is_string(res.next_batch)
    local r = search(a, { search_term = "ocelot", order_by = "rank", filter = { limit = 1 } }, res.next_batch)
    assert.equal(400, r.status)
  end)

  it("applies the filter: rooms, not_rooms, senders, not_senders, types, limit", function()
    local a, b = fresh(), fresh()
    local r1 = t:create_room(a, { preset = "public_chat" })
    local r2 = t:create_room(a, { preset = "public_chat" })
    t:join(b, r1)
    local a1 = send(a, r1, "lemur a1")
    local b1 = send(b, r1, "lemur b1")
    local a2 = send(a, r2, "lemur a2")
    local tp = put_state(a, r2, "m.room.topic", { topic = "lemur topic" })
    local function q(filter)
      return ids(ok_search(a, { search_term = "lemur", order_by = "recent", filter = filter }))
    end
    assert.same({ tp, a2, b1, a1 }, q(nil))
    assert.same({ b1, a1 }, q { rooms = { r1 } })
    assert.same({ tp, a2 }, q { not_rooms = { r1 } })
    assert.same({ b1 }, q { senders = { b.user_id } })
    assert.same({ tp, a2, a1 }, q { not_senders = { b.user_id } })
    assert.same({ tp }, q { types = { "m.room.topic" } })
    assert.same({ a2, b1, a1 }, q { not_types = { "m.room.t*" } })
    assert.same({ tp, a2 }, q { limit = 2 })
    local r = search(a, { search_term = "lemur", filter = { senders = "nope" } })
    assert.equal(400, r.status)
  end)

  it("searches the predecessors of a room named in filter.rooms (room upgrades)", function()
    local a = fresh()
    local old = t:create_room(a, { preset = "private_chat" })
    local new = t:create_room(a, { preset = "private_chat",
      creation_content = { predecessor = { room_id = old, event_id = "$tomb" } } })
    local other = t:create_room(a, { preset = "private_chat" })
    local e_old = send(a, old, "kakapo old")
    local e_new = send(a, new, "kakapo new")
    send(a, other, "kakapo other")
    local res = ok_search(a, { search_term = "kakapo", order_by = "recent", filter = { rooms = { new } } })
    assert.same({ e_new, e_old }, ids(res))
    res = ok_search(a, { search_term = "kakapo", order_by = "recent",
      filter = { rooms = { new }, not_rooms = { old } } })
    assert.same({ e_new }, ids(res))
  end)

  it("returns event_context: events_before/after, start, end and profile_info", function()
    local a, b = fresh(), fresh()
    local room = t:create_room(a, { preset = "public_chat" })
    t:join(b, room)
    assert.equal(200, t:request("PUT", V3 .. "/profile/" .. enc(b.user_id) .. "/displayname",
      { displayname = "Bee" }, b.access_token).status)
    local p1 = send(a, room, "before one")
    local p2 = send(b, room, "before two")
    local hit = send(a, room, "the dugong result")
    local n1 = send(b, room, "after one")
    send(a, room, "after two")
    local res = ok_search(a, { search_term = "dugong",
      event_context = { before_limit = 2, after_limit = 1, include_profile = true } })
    assert.same({ hit }, ids(res))
    local ctx = res.results[1].context
    local before = {}
    for i, e in ipairs(ctx.events_before) do before[i] = e.event_id end
    assert.same({ p2, p1 }, before)
    assert.equal(1, #ctx.events_after)
    assert.equal(n1, ctx.events_after[1].event_id)
    assert.is_string(ctx.start)
    assert.is_string(ctx["end"])
    -- the tokens page on from the context with /messages
    local m = t:request("GET", V3 .. "/rooms/" .. enc(room) .. "/messages?dir=f&limit=1&from=" .. enc(ctx["end"]),
      nil, a.access_token)
    assert.equal(200, m.status, m.body)
    assert.equal("after two", m.json.chunk[1].content.body)
    assert.equal("Bee", ctx.profile_info[b.user_id].displayname)
    assert.is_table(ctx.profile_info[a.user_id])
    -- defaults: 5 before, 5 after, no profile_info
    res = ok_search(a, { search_term = "dugong", event_context = {} })
    ctx = res.results[1].context
    assert.equal(5, #ctx.events_before)
    assert.equal(2, #ctx.events_after)
    assert.is_nil(ctx.profile_info)
    -- no event_context: no context events
    res = ok_search(a, { search_term = "dugong" })
    assert.is_nil(res.results[1].context.events_before)
  end)

  it("include_state gives the current state of each room in the results", function()
    local a = fresh()
    local r1 = t:create_room(a, { preset = "private_chat", name = "First" })
    local r2 = t:create_room(a, { preset = "private_chat", name = "Second" })
    t:create_room(a, { preset = "private_chat", name = "Third" })
    send(a, r1, "manatee one")
    send(a, r2, "manatee two")
    local res = ok_search(a, { search_term = "manatee", include_state = true })
    assert.is_table(res.state)
    local rooms = 0
    for _ in pairs(res.state) do rooms = rooms + 1 end
    assert.equal(2, rooms)
    local function name_of(list)
      for _, e in ipairs(list) do if e.type == "m.room.name" then return e.content.name end end
    end
    assert.equal("First", name_of(res.state[r1]))
    assert.equal("Second", name_of(res.state[r2]))
    assert.is_nil(ok_search(a, { search_term = "manatee" }).state)
  end)

  it("groups results by room_id and by sender, with per-group next_batch", function()
    local a, b = fresh(), fresh()
    local r1 = t:create_room(a, { preset = "public_chat" })
    local r2 = t:create_room(a, { preset = "public_chat" })
    t:join(b, r1)
    local e1 = send(a, r1, "tapir 1")
    local e2 = send(b, r1, "tapir 2")
    local e3 = send(a, r2, "tapir 3")
    local res = ok_search(a, { search_term = "tapir", order_by = "recent",
      groupings = { group_by = { { key = "room_id" }, { key = "sender" } } } })
    local g = res.groups
    assert.same({ e2, e1 }, g.room_id[r1].results)
    assert.same({ e3 }, g.room_id[r2].results)
    assert.equal(1, g.room_id[r2].order)
    assert.equal(2, g.room_id[r1].order)
    assert.same({ e3, e1 }, g.sender[a.user_id].results)
    assert.same({ e2 }, g.sender[b.user_id].results)
    assert.is_nil(g.room_id[r1].next_batch)
    -- a group's next_batch pages within the group
    res = ok_search(a, { search_term = "tapir", order_by = "recent", filter = { limit = 1 },
      groupings = { group_by = { { key = "room_id" } } } })
    assert.same({ e3 }, ids(res))
    local gb = res.groups.room_id[r2].next_batch
    assert.is_string(gb)
    local more = ok_search(a, { search_term = "tapir", order_by = "recent", filter = { limit = 1 } }, gb)
    assert.same({}, ids(more))
    more = ok_search(a, { search_term = "tapir", order_by = "recent", filter = { limit = 1 } }, res.next_batch)
    assert.same({ e2 }, ids(more))
    -- no groupings asked: no groups
    assert.is_nil(ok_search(a, { search_term = "tapir" }).groups)
    local r = search(a, { search_term = "tapir", groupings = { group_by = { { key = "type" } } } })
    assert.equal(400, r.status)
  end)

  it("answers hostile search terms with 200, results or none", function()
    local a = fresh()
    local room = t:create_room(a, { preset = "private_chat" })
    local id = send(a, room, 'gecko said "NEAR" AND (OR) NOT x:y*')
    local terms = { '"', '""', '"gecko', 'AND (', 'NEAR', 'NEAR(gecko said)', 'OR', 'NOT', '*', '^gecko',
      'body:gecko', 'gecko"', '(gecko', '{gecko}', "'", "\\", "", "   ", "%", "gecko AND", "- gecko",
      ("gecko "):rep(2000), ("z"):rep(60000), "\u{1F600}", "gecko\0said" }
    for _, term in ipairs(terms) do
      local r = search(a, { search_term = term })
      assert.equal(200, r.status, term:sub(1, 30) .. ": " .. r.body:sub(1, 200))
      assert.is_table(r.json.search_categories.room_events.results)
    end
    assert.same({ id }, ids(ok_search(a, { search_term = '"gecko' })))
    assert.same({ id }, ids(ok_search(a, { search_term = 'NEAR(gecko said)' })))
    assert.same({}, ids(ok_search(a, { search_term = "" })))
    assert.equal(0, ok_search(a, { search_term = "" }).count)
  end)

  it("counts every match the user may see, not just the page", function()
    local a = fresh()
    local room = t:create_room(a, { preset = "private_chat" })
    for i = 1, 12 do send(a, room, "pangolin " .. i) end
    local res = ok_search(a, { search_term = "pangolin" })
    assert.equal(10, #res.results)
    assert.equal(12, res.count)
    assert.is_string(res.next_batch)
  end)

  it("refuses malformed requests with Matrix errors", function()
    local a = fresh()
    local function status(body)
      local r = t:request("POST", V3 .. "/search", body, a.access_token)
      assert.is_string(r.json.errcode)
      return r.status, r.json.errcode
    end
    assert.equal(400, (status({})))
    assert.equal(400, (status({ search_categories = {} })))
    assert.equal(400, (status({ search_categories = "x" })))
    assert.same({ 400, "M_MISSING_PARAM" }, { status({ search_categories = { room_events = {} } }) })
    local cases = {
      { search_term = 5 },
      { search_term = "x", keys = { "content.body", "content.other" } },
      { search_term = "x", keys = "content.body" },
      { search_term = "x", order_by = "oldest" },
      { search_term = "x", filter = "no" },
      { search_term = "x", filter = { limit = -1 } },
      { search_term = "x", event_context = { before_limit = -1 } },
      { search_term = "x", event_context = { after_limit = "5" } },
      { search_term = "x", event_context = { include_profile = "yes" } },
      { search_term = "x", include_state = "yes" },
      { search_term = "x", groupings = { group_by = "room_id" } },
      { search_term = "x", groupings = { group_by = { "room_id" } } },
    }
    for i, c in ipairs(cases) do
      local code = status({ search_categories = { room_events = c } })
      assert.equal(400, code, "case " .. i)
    end
    local r = t:request("POST", V3 .. "/search", "not json", a.access_token)
    assert.equal(400, r.status)
    r = t:request("POST", V3 .. "/search", { search_categories = { room_events = { search_term = "x" } } })
    assert.equal(401, r.status)
    -- other categories are ignored
    r = t:request("POST", V3 .. "/search", { search_categories = { room_events = { search_term = "x" },
      other = { y = 1 } } }, a.access_token)
    assert.equal(200, r.status)
  end)
end)
