-- Typing notifications over a real server (Client-Server API "Typing
-- Notifications"): PUT /rooms/{roomId}/typing/{userId}, its errors, and the
-- m.typing ephemeral event of /sync (initial, incremental, expiry, long-poll).
local tesths = require "support.hs"
local uv = require "luv"
local json_null = require("loom.core").json.null

local enc = tesths.enc
local V3 = "/_matrix/client/v3"

local find = tesths.find_type

describe("typing", function()
  local t
  setup(function() t = tesths.start() end)
  teardown(function() t:stop() end)

  local function fresh() return t:fresh("ty") end
  local function tpath(room, u) return V3 .. "/rooms/" .. enc(room) .. "/typing/" .. enc(u.user_id) end
  local function join(u, room) t:join(u, room) end
  local function typing_of(body, room)
    local sec = body.rooms and body.rooms.join and body.rooms.join[room]
    return sec and find(sec.ephemeral.events, "m.typing")
  end

  it("shows the typers in initial and incremental syncs, and stops", function()
    local a, b = fresh(), fresh()
    local room = t:create_room(a, { preset = "public_chat" })
    join(b, room)
    local since = t:request("GET", V3 .. "/sync", nil, b.access_token).json.next_batch
    local r = t:request("PUT", tpath(room, a), { typing = true, timeout = 30000 }, a.access_token)
    assert.equal(200, r.status)
    assert.same({}, r.json)
    -- incremental: the room changed
    r = t:request("GET", V3 .. "/sync?since=" .. enc(since), nil, b.access_token)
    assert.equal(200, r.status)
    assert.same({ type = "m.typing", content = { user_ids = { a.user_id } } }, typing_of(r.json, room))
    since = r.json.next_batch
    -- initial: the current typers
    r = t:request("GET", V3 .. "/sync", nil, b.access_token)
    assert.same({ a.user_id }, typing_of(r.json, room).content.user_ids)
    -- nothing changed since: no m.typing
    r = t:request("GET", V3 .. "/sync?since=" .. enc(since), nil, b.access_token)
    assert.is_nil(typing_of(r.json, room))
    -- two typers, sorted; then one stops
    assert.equal(200, t:request("PUT", tpath(room, b), { typing = true, timeout = 30000 }, b.access_token).status)
    r = t:request("GET", V3 .. "/sync?since=" .. enc(since), nil, b.access_token)
    local both = { a.user_id, b.user_id }
    table.sort(both)
    assert.same(both, typing_of(r.json, room).content.user_ids)
    since = r.json.next_batch
    assert.equal(200, t:request("PUT", tpath(room, a), { typing = false }, a.access_token).status)
    assert.equal(200, t:request("PUT", tpath(room, b), { typing = false }, b.access_token).status)
    r = t:request("GET", V3 .. "/sync?since=" .. enc(since), nil, b.access_token)
    assert.same({}, typing_of(r.json, room).content.user_ids)
    -- nobody typing: an initial sync carries no m.typing
    r = t:request("GET", V3 .. "/sync", nil, b.access_token)
    assert.is_nil(typing_of(r.json, room))
  end)

  it("typing without a timeout types for 30 s (the spec requires only `typing`; Synapse's default)", function()
    local a, b = fresh(), fresh()
    local room = t:create_room(a, { preset = "public_chat" })
    join(b, room)
    local r = t:request("PUT", tpath(room, a), { typing = true }, a.access_token)
    assert.equal(200, r.status)
    assert.same({}, r.json)
    r = t:request("GET", V3 .. "/sync", nil, b.access_token)
    assert.same({ a.user_id }, typing_of(r.json, room).content.user_ids)
    assert.equal(200, t:request("PUT", tpath(room, a), { typing = true, timeout = json_null }, a.access_token).status)
  end)

  it("expires after the timeout", function()
    local a = fresh()
    local room = t:create_room(a)
    local since = t:request("GET", V3 .. "/sync", nil, a.access_token).json.next_batch
    assert.equal(200, t:request("PUT", tpath(room, a), { typing = true, timeout = 200 }, a.access_token).status)
    local r = t:request("GET", V3 .. "/sync?since=" .. enc(since), nil, a.access_token)
    assert.same({ a.user_id }, typing_of(r.json, room).content.user_ids)
    since = r.json.next_batch
    t:run(function() t:sleep(400) end)
    r = t:request("GET", V3 .. "/sync?since=" .. enc(since), nil, a.access_token)
    assert.same({}, typing_of(r.json, room).content.user_ids)
    assert.is_nil(typing_of(t:request("GET", V3 .. "/sync", nil, a.access_token).json, room))
  end)

  it("wakes the room members' waiting long-polls, on a change and on expiry", function()
    local a, b = fresh(), fresh()
    local room = t:create_room(a, { preset = "public_chat" })
    join(b, room)
    local since = t:request("GET", V3 .. "/sync", nil, b.access_token).json.next_batch
    t:run(function()
      local h = t:go(function()
        return t:call("GET", V3 .. "/sync?timeout=5000&since=" .. enc(since), nil, b.access_token)
      end)
      t:sleep(50)
      local sent = uv.hrtime()
      assert.equal(200, t:call("PUT", tpath(room, a), { typing = true, timeout = 300 }, a.access_token).status)
      local r = t:await(h)
      local waited = (uv.hrtime() - sent) / 1e6
      assert.equal(200, r.status)
      assert.same({ a.user_id }, typing_of(r.json, room).content.user_ids)
      assert.is_true(waited < 1000, "returned " .. waited .. " ms after the PUT")
      -- the expiry wakes the next long-poll
      since = r.json.next_batch
      h = t:go(function()
        return t:call("GET", V3 .. "/sync?timeout=5000&since=" .. enc(since), nil, b.access_token)
      end)
      sent = uv.hrtime()
      r = t:await(h)
      waited = (uv.hrtime() - sent) / 1e6
      assert.equal(200, r.status)
      assert.same({}, typing_of(r.json, room).content.user_ids)
      assert.is_true(waited < 2000, "returned " .. waited .. " ms after the long-poll started")
    end)
  end)

  it("refuses other users, non-members and bad bodies", function()
    local a, b = fresh(), fresh()
    local room = t:create_room(a)
    -- another user's typing: 400 M_FORBIDDEN, as Synapse answers (the spec is silent)
    local r = t:request("PUT", tpath(room, a), { typing = true, timeout = 1000 }, b.access_token)
    assert.equal(400, r.status)
    assert.equal("M_FORBIDDEN", r.json.errcode)
    r = t:request("PUT", tpath(room, b), { typing = true, timeout = 1000 }, b.access_token)
    assert.equal(403, r.status)
    assert.equal("M_FORBIDDEN", r.json.errcode)
    r = t:request("PUT", tpath("!nope:test.local", a), { typing = true, timeout = 1000 }, a.access_token)
    assert.equal(403, r.status)
    for _, body in ipairs { { typing = "yes", timeout = 10 }, { timeout = 10 },
        { typing = true, timeout = -1 }, { typing = true, timeout = 1.5 }, { typing = true, timeout = "10" } } do
      r = t:request("PUT", tpath(room, a), body, a.access_token)
      assert.equal(400, r.status)
      assert.equal("M_BAD_JSON", r.json.errcode)
    end
    r = t:request("PUT", tpath(room, a), "[1]", a.access_token)
    assert.equal(400, r.status)
    -- a huge timeout is capped, not refused
    local huge = { typing = true, timeout = 9007199254740991 }
    assert.equal(200, t:request("PUT", tpath(room, a), huge, a.access_token).status)
    assert.equal(200, t:request("PUT", tpath(room, a), { typing = false }, a.access_token).status)
  end)
end)
