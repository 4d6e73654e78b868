-- Reporting content (Client-Server API, report_content.yaml): events,
-- rooms and users are reported for the server's admins; a score outside
-- -100..0 is M_INVALID_PARAM; what the reporter cannot see answers 404
-- without revealing whether it exists, and a refused report stores nothing.
local tesths = require "support.hs"

local enc = tesths.enc
local V3 = "/_matrix/client/v3"

describe("reporting content", function()
  local t, alice, bob, room, msg

  setup(function()
    t = tesths.start()
    alice, bob = t:register("alice"), t:register("bob")
    room = t:create_room(alice, { preset = "public_chat" })
    t:join(bob, room)
    msg = t:send(bob.access_token, room, { msgtype = "m.text", body = "spam" }).json.event_id
  end)
  teardown(function() t:stop() end)

  local function report(who, path, body)
    return t:request("POST", V3 .. path, body, who.access_token)
  end
  local function count() return #t.hs.store:reports_list(nil, 1000) end

  it("stores an event report with its reason and score", function()
    local r = report(alice, "/rooms/" .. enc(room) .. "/report/" .. enc(msg), { reason = "spam!", score = -100 })
    assert.equal(200, r.status, r.body)
    assert.same({}, r.json)
    local latest = t.hs.store:reports_list(nil, 1)[1]
    assert.equal(alice.user_id, latest.reporter)
    assert.equal(room, latest.room_id)
    assert.equal(msg, latest.event_id)
    assert.equal("spam!", latest.reason)
    assert.equal(-100, latest.score)
    assert.is_number(latest.received_ts)
    -- reason and score are optional
    assert.equal(200, report(alice, "/rooms/" .. enc(room) .. "/report/" .. enc(msg), {}).status)
  end)

  it("validates the score and the reason", function()
    local before = count()
    for _, body in ipairs { { score = 1 }, { score = -101 }, { score = -5.5 }, { score = "-5" }, { reason = 5 } } do
      local r = report(alice, "/rooms/" .. enc(room) .. "/report/" .. enc(msg), body)
      assert.equal(400, r.status)
      assert.equal("M_INVALID_PARAM", r.json.errcode)
    end
    assert.equal(400, report(alice, "/rooms/" .. enc(room) .. "/report/" .. enc(msg), "[]").status)
    assert.equal(before, count())
  end)

  it("answers 404 for events the reporter cannot see", function()
    local before = count()
    local outsider = t:fresh("out")
    local private = t:create_room(alice, { preset = "private_chat" })
    local secret = t:send(alice.access_token, private, { msgtype = "m.text", body = "s" }).json.event_id
    local leaver = t:fresh("left")
    t:join(leaver, room)
    assert.equal(200, t:request("POST", V3 .. "/rooms/" .. enc(room) .. "/leave", {}, leaver.access_token).status)
    local cases = {
      { leaver, room, msg },            -- no longer joined
      { alice, room, "$doesnotexist" },
      { outsider, private, secret },
      { alice, room, secret },          -- an event of another room
      { alice, "!nope:localhost", msg },
    }
    for i, c in ipairs(cases) do
      local r = report(c[1], "/rooms/" .. enc(c[2]) .. "/report/" .. enc(c[3]), { reason = "x", score = -1 })
      assert.equal(404, r.status, i)
      assert.equal("M_NOT_FOUND", r.json.errcode, i)
    end
    assert.equal(before, count())
  end)

  it("reports rooms and users", function()
    local before = count()
    assert.equal(200, report(bob, "/rooms/" .. enc(room) .. "/report", { reason = "bad room" }).status)
    assert.equal(room, t.hs.store:reports_list(nil, 1)[1].room_id)
    assert.equal(404, report(bob, "/rooms/" .. enc("!unknown:localhost") .. "/report", { reason = "x" }).status)
    assert.equal(200, report(bob, "/users/" .. enc(alice.user_id) .. "/report", { reason = "rude" }).status)
    local latest = t.hs.store:reports_list(nil, 1)[1]
    assert.equal(alice.user_id, latest.user_id)
    assert.equal("rude", latest.reason)
    assert.is_nil(latest.event_id)
    local unknown = report(bob, "/users/" .. enc("@ghost:elsewhere.example") .. "/report", { reason = "x" })
    assert.equal(404, unknown.status)
    assert.equal("M_NOT_FOUND", unknown.json.errcode)
    assert.equal(400, report(bob, "/users/" .. enc("not-a-user") .. "/report", { reason = "x" }).status)
    assert.equal(before + 2, count())
  end)

  it("lists reports newest first, page by page", function()
    local all = t.hs.store:reports_list(nil, 1000)
    assert.is_true(#all >= 3)
    for i = 2, #all do assert.is_true(all[i - 1].report_id > all[i].report_id) end
    local page = t.hs.store:reports_list(all[1].report_id, 2)
    assert.equal(all[2].report_id, page[1].report_id)
    assert.equal(all[3].report_id, page[2].report_id)
  end)
end)
