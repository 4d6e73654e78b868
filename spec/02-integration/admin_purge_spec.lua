-- Deleting a room with purge (Synapse's admin API "Delete Room", purge =
-- true): the room's events, state and every other row of it leave the
-- database; the room is unknown afterwards, other rooms are untouched and
-- the server starts again on that database.
local tesths = require "support.hs"
local enc = tesths.enc

local V3 = "/_matrix/client/v3"
local A1 = "/_synapse/admin/v1"
local A2 = "/_synapse/admin/v2"

describe("admin API: purging a room", function()
  local t, adm
  before_each(function()
    t = tesths.start()
    assert(t.hs.accounts:register("root", "root-password", { admin = true }))
    adm = assert(t.hs.accounts:login("@root:test.local", "root-password"))
  end)
  after_each(function() if t then t:stop() end end)

  local function texts(room, who)
    local r = t:request("GET", V3 .. "/rooms/" .. enc(room) .. "/messages?dir=b&limit=50", nil, who.access_token)
    assert.equal(200, r.status, r.body)
    local out = {}
    for _, ev in ipairs(r.json.chunk) do
      if ev.type == "m.room.message" then table.insert(out, 1, ev.content.body) end
    end
    return out
  end

  -- a room with history of every kind: messages, a reply thread, a
  -- reaction, a redaction, receipts, tags, an alias, a directory entry
  local function busy_room(owner, member, alias)
    local room = t:create_room(owner, { preset = "public_chat", room_alias_name = alias, visibility = "public",
      name = "Busy" })
    t:join(member, room)
    local first = t:send(owner.access_token, room, { msgtype = "m.text", body = "searchable zebra" }).json.event_id
    t:send(member.access_token, room, { msgtype = "m.text", body = "in thread",
      ["m.relates_to"] = { rel_type = "m.thread", event_id = first } })
    t:send(member.access_token, room, { ["m.relates_to"] = { rel_type = "m.annotation", event_id = first,
      key = "+1" } }, "m.reaction")
    local gone = t:send(owner.access_token, room, { msgtype = "m.text", body = "oops" }).json.event_id
    assert.equal(200, t:request("PUT", V3 .. "/rooms/" .. enc(room) .. "/redact/" .. enc(gone) .. "/r1",
      {}, owner.access_token).status)
    local last = t:send(owner.access_token, room, { msgtype = "m.text", body = "hello @" .. member.user_id })
    assert.equal(200, t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/receipt/m.read/" .. enc(last.json.event_id),
      {}, member.access_token).status)
    assert.equal(200, t:request("PUT", V3 .. "/user/" .. enc(member.user_id) .. "/rooms/" .. enc(room)
      .. "/tags/u.work", { order = 0.5 }, member.access_token).status)
    return room, first
  end

  it("leaves no row of the room in any table; other rooms, sync and a restart are fine", function()
    local owner, member = t:register("owner"), t:register("member")
    -- (the purged room holds the latest events, receipts and tags: positions must not go back)
    local other = busy_room(member, owner, "kept")
    local room, first = busy_room(owner, member, "purged")
    local other_texts = texts(other, owner)
    local since = t:sync(member).next_batch
    local nid = t.hs.store:room_nid(room)
    local before = t.hs.store:room_rows(room, nid)
    for _, tbl in ipairs { "events", "current_state", "room_memberships", "room_aliases", "room_directory",
        "receipts", "account_data", "event_relations", "threads" } do
      assert.is_true((before[tbl] or 0) > 0, tbl)
    end
    local r = t:request("DELETE", A1 .. "/rooms/" .. enc(room), { purge = true }, adm.access_token)
    assert.equal(200, r.status, r.body)
    local positions = { t.hs.store.max_stream, t.hs.store:receipts_position(), t.hs.store:account_data_position() }
    -- the database: no row names the room in any table with a room column
    assert.same({}, t.hs.store:room_rows(room, nid))
    assert.same({}, t.hs.store:orphan_event_rows())
    assert.is_nil(t.hs.store:room_nid(room))
    -- the room is unknown everywhere
    for _, path in ipairs { "/messages?dir=b", "/state", "/event/" .. enc(first), "/members",
        "/state/m.room.name" } do
      local q = t:request("GET", V3 .. "/rooms/" .. enc(room) .. path, nil, owner.access_token)
      assert.is_true(q.status == 403 or q.status == 404, path .. " " .. q.status .. " " .. q.body)
      assert.matches("^M_", q.json.errcode)
    end
    assert.equal(404, t:request("GET", A1 .. "/rooms/" .. enc(room), nil, adm.access_token).status)
    assert.equal(404, t:request("GET", V3 .. "/directory/room/" .. enc("#purged:test.local")).status)
    local s = t:request("POST", V3 .. "/search", { search_categories = { room_events = { search_term = "zebra" } } },
      owner.access_token)
    assert.equal(200, s.status, s.body)
    for _, res in ipairs(s.json.search_categories.room_events.results) do
      assert.not_equal(room, res.result.room_id)
    end
    -- joining it fails (no server has it)
    local j = t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/join", {}, owner.access_token)
    assert.is_true(j.status >= 400 and j.status < 500, j.body)
    -- the other room is untouched
    assert.same(other_texts, texts(other, owner))
    assert.equal(200, t:request("GET", V3 .. "/rooms/" .. enc(other) .. "/state/m.room.name/", nil,
      owner.access_token).status)
    local kept = t:request("GET", V3 .. "/directory/room/" .. enc("#kept:test.local"))
    assert.equal(other, kept.json.room_id)
    -- a former member's sync goes on: nothing of the room
    local body = t:sync(member, since)
    assert.is_nil((body.rooms and body.rooms.join or {})[room])
    local initial = t:sync(member)
    assert.is_nil((initial.rooms.join or {})[room])
    assert.is_nil((initial.rooms.leave or {})[room])
    assert.is_not_nil(initial.rooms.join[other])
    -- the server starts again on the database; positions never go back
    -- (nothing was sent since the purge: the latest positions were the room's)
    local token = body.next_batch
    local path = t.db_path
    local uv = require "luv"
    local stopped = false
    t.server:stop(function() stopped = true end)
    for _ = 1, 1000 do if stopped then break end; uv.run("once") end
    for _ = 1, 5 do uv.run("nowait") end
    t.hs.store:close()
    local t2 = tesths.start { database = { path = path } }
    t2.db_path = path
    t = t2
    local m2 = assert(t.hs.accounts:login(member.user_id, member.password))
    local o2 = assert(t.hs.accounts:login(owner.user_id, owner.password))
    assert.same({}, t.hs.store:room_rows(room, nid))
    assert.is_true(t.hs.store.max_stream >= positions[1])
    assert.is_true(t.hs.store:receipts_position() >= positions[2])
    assert.is_true(t.hs.store:account_data_position() >= positions[3])
    t:send(o2.access_token, other, { msgtype = "m.text", body = "after the restart" })
    body = t:sync(m2, token)
    local tl = body.rooms.join[other].timeline.events
    assert.equal("after the restart", tl[#tl].content.body)
    local after = texts(other, o2)
    assert.equal("after the restart", after[#after])
  end)

  it("the v2 form purges too; without purge the room stays on disk", function()
    local owner, member = t:register("owner"), t:register("member")
    local room = busy_room(owner, member, "v2")
    local nid = t.hs.store:room_nid(room)
    local r = t:request("DELETE", A2 .. "/rooms/" .. enc(room), { block = true }, adm.access_token)
    assert.equal(200, r.status, r.body)
    assert.same({ blocked_rooms = 1 }, t.hs.store:room_rows(room, nid))
    -- the former members' sync: the other rooms go on live
    local other = t:create_room(owner, { preset = "public_chat" })
    t:join(member, other)
    local since = t:sync(member).next_batch
    t:send(owner.access_token, other, { msgtype = "m.text", body = "after the purge" })
    local body = t:sync(member, since)
    local tl = body.rooms.join[other].timeline.events
    assert.equal("after the purge", tl[#tl].content.body)
    assert.is_nil(body.rooms.join[room])
    local j = t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/join", {}, owner.access_token)
    assert.equal(403, j.status)
    local kept = busy_room(owner, member, "nopurge")
    r = t:request("DELETE", A1 .. "/rooms/" .. enc(kept), { purge = false }, adm.access_token)
    assert.equal(200, r.status, r.body)
    assert.is_true((t.hs.store:room_rows(kept, t.hs.store:room_nid(kept)).events or 0) > 0)
  end)
end)
