-- Redactions as clients see them: an applied redaction serves the event in
-- its redacted form with unsigned.redacted_because, everywhere an event is
-- served; a redaction without the power to apply stays without effect.
local tesths = require "support.hs"

local enc = tesths.enc

describe("redactions", function()
  local t, alice, bob, room

  before_each(function()
    t = tesths.start()
    alice, bob = t:register("alice"), t:register("bob")
    local r = t:request("POST", "/_matrix/client/v3/createRoom", { preset = "public_chat" }, alice.access_token)
    assert.equal(200, r.status)
    room = r.json.room_id
    assert.equal(200, t:request("POST", "/_matrix/client/v3/join/" .. enc(room), {}, bob.access_token).status)
  end)

  after_each(function() t:stop() end)

  local function send(who, body, txn)
    local r = t:request("PUT", ("/_matrix/client/v3/rooms/%s/send/m.room.message/%s"):format(enc(room), txn),
      { msgtype = "m.text", body = body }, who.access_token)
    assert.equal(200, r.status)
    return r.json.event_id
  end

  local function get_event(who, id)
    return t:request("GET", ("/_matrix/client/v3/rooms/%s/event/%s"):format(enc(room), enc(id)), nil,
      who.access_token)
  end

  it("serves a redacted event redacted, with the redaction in unsigned", function()
    local msg = send(bob, "regrettable", "t1")
    local r = t:request("PUT", ("/_matrix/client/v3/rooms/%s/redact/%s/r1"):format(enc(room), enc(msg)),
      { reason = "spam" }, alice.access_token)
    assert.equal(200, r.status)
    local redaction = r.json.event_id
    local ev = get_event(bob, msg)
    assert.equal(200, ev.status)
    assert.same({}, ev.json.content)
    assert.equal(redaction, ev.json.unsigned.redacted_because.event_id)
    assert.equal("spam", ev.json.unsigned.redacted_because.content.reason)
    -- /messages too
    local page = t:request("GET", ("/_matrix/client/v3/rooms/%s/messages?dir=b&limit=5"):format(enc(room)), nil,
      bob.access_token)
    local seen = false
    for _, e in ipairs(page.json.chunk) do
      if e.event_id == msg then
        seen = true
        assert.is_nil(e.content.body)
        assert.equal(redaction, e.unsigned.redacted_because.event_id)
      end
    end
    assert.is_true(seen)
    -- and an unredacted event is untouched
    local other = send(alice, "fine", "t2")
    assert.equal("fine", get_event(bob, other).json.content.body)
  end)

  it("applies only redactions with the power to apply them", function()
    local mine = send(alice, "alice's words", "t3")
    -- bob has no redact power: the endpoint refuses
    local r = t:request("PUT", ("/_matrix/client/v3/rooms/%s/redact/%s/r2"):format(enc(room), enc(mine)), {},
      bob.access_token)
    assert.equal(403, r.status)
    assert.equal("M_FORBIDDEN", r.json.errcode)
    -- a redaction event sent past the endpoint is stored but does not apply
    assert(t.hs.rooms:send(room, { type = "m.room.redaction", sender = bob.user_id, content = { redacts = mine } }))
    assert.equal("alice's words", get_event(alice, mine).json.content.body)
    -- bob may redact his own message
    local his = send(bob, "oops", "t4")
    r = t:request("PUT", ("/_matrix/client/v3/rooms/%s/redact/%s/r3"):format(enc(room), enc(his)), {},
      bob.access_token)
    assert.equal(200, r.status)
    assert.is_nil(get_event(alice, his).json.content.body)
  end)
end)
