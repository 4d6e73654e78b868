-- Acceptance: the hook points as docs/hooks/ describes them, tried from a
-- program that embeds loom (server:hook, hs) against a real homeserver on
-- 127.0.0.1; the examples on the hook pages run as written.
local tesths = require "support.hs"
local enc = tesths.enc

local function joined(t, user)
  return t:request("GET", "/_matrix/client/v3/joined_rooms", nil, user.access_token).json.joined_rooms
end

local function profile_path(user_id, field)
  return "/_matrix/client/v3/profile/" .. enc(user_id) .. "/" .. field
end

describe("acceptance: hook points", function()
  local t
  after_each(function()
    if t then t:stop(); t = nil end
  end)

  it("the casino example of docs/hooks/README.md refuses createRoom and leaves no room", function()
    t = tesths.start()
    local server = t.server
    server:hook("room/event/check", function(event)
      if event.type == "m.room.name" and type(event.content.name) == "string"
          and event.content.name:lower():find("casino", 1, true) then
        return false, "Room names about casinos are not allowed here"
      end
    end)
    local alice = t:register("alice")
    local r = t:request("POST", "/_matrix/client/v3/createRoom", { name = "Casino Royale" }, alice.access_token)
    assert.equal(403, r.status)
    assert.equal("M_FORBIDDEN", r.json.errcode)
    assert.equal("Room names about casinos are not allowed here", r.json.error)
    assert.same({}, joined(t, alice))
    assert.equal(200, t:request("POST", "/_matrix/client/v3/createRoom", { name = "Chess" }, alice.access_token).status)
  end)

  it("the example of docs/hooks/room-event-check.md masks words and refuses links from new members", function()
    t = tesths.start()
    local server, hs = t.server, t.hs
    server:hook("room/event/check", function(event, context)
      if event.type ~= "m.room.message" or type(event.content.body) ~= "string" then return end
      if context.origin == "local" and event.content.body:find("darn", 1, true) then
        local content = {}
        for k, v in pairs(event.content) do content[k] = v end
        content.body = event.content.body:gsub("darn", "****")
        event.content = content
      end
      if event.content.body:find("https?://") then
        local m = hs.rooms:state_event(event.room_id, "m.room.member", event.sender)
        if m and m.origin_server_ts > require("loom.core").now_ms() - 60000 then
          return false, "New members cannot post links yet"
        end
      end
    end, 10)
    local alice = t:register("alice")
    local room = t:create_room(alice)
    local r = t:send(alice.access_token, room, { msgtype = "m.text", body = "darn http://x.example" })
    assert.equal(403, r.status, r.body)
    assert.equal("New members cannot post links yet", r.json.error)
    r = t:send(alice.access_token, room, { msgtype = "m.text", body = "darn" })
    assert.equal(200, r.status, r.body)
    local ev = t:request("GET", "/_matrix/client/v3/rooms/" .. enc(room) .. "/event/" .. enc(r.json.event_id), nil,
      alice.access_token)
    assert.equal("****", ev.json.content.body)
  end)

  it("the bot of docs/hooks/room-event-persisted.md answers !ping in the room", function()
    t = tesths.start()
    local server, hs = t.server, t.hs
    local async = require "loom.async"
    local alice = t:register("alice")
    local BOT = "@bot:test.local"
    local bot = t:register("bot")
    local room = t:create_room(alice, { preset = "public_chat" })
    assert.equal(200, t:request("POST", "/_matrix/client/v3/join/" .. enc(room), {}, bot.access_token).status)
    server:hook("room/event/persisted", function(event)
      if event.type == "m.room.message" and event.sender ~= BOT
          and type(event.content.body) == "string" and event.content.body == "!ping" then
        async.sleep(100)
        hs.rooms:send(event.room_id, { type = "m.room.message", sender = BOT,
          content = { msgtype = "m.notice", body = "pong" } })
      end
    end)
    assert.equal(200, t:send(alice.access_token, room, { msgtype = "m.text", body = "!ping" }).status)
    local found
    t:run(function()
      for _ = 1, 150 do
        local r = t:call("GET", "/_matrix/client/v3/rooms/" .. enc(room) .. "/messages?dir=b&limit=5", nil,
          alice.access_token)
        for _, e in ipairs(r.json.chunk) do
          if e.content.body == "pong" then found = e end
        end
        if found then break end
        t:sleep(20)
      end
    end)
    assert.truthy(found, table.concat(t.logs, "\n"))
    assert.equal(BOT, found.sender)
  end)

  it("the example of docs/hooks/directory-publish-check.md: public listing only for named rooms", function()
    t = tesths.start()
    local hs, server = t.hs, t.server
    server:hook("directory/publish/check", function(info)
      if info.alias and info.alias:find("^#official") then
        return false, "Aliases starting with #official are reserved"
      end
      if info.visibility == "public" then
        local name = hs.rooms:state_event(info.room_id, "m.room.name", "")
        if not name then return false, "Name the room before listing it" end
      end
    end)
    local alice = t:register("alice")
    local named = t:create_room(alice, { name = "Named", visibility = "public" })
    local r = t:request("POST", "/_matrix/client/v3/createRoom", { visibility = "public" }, alice.access_token)
    assert.equal(403, r.status)
    assert.equal("Name the room before listing it", r.json.error)
    assert.same({ named }, joined(t, alice))
    local room = t:create_room(alice)
    local list = "/_matrix/client/v3/directory/list/room/" .. enc(room)
    assert.equal(403, t:request("PUT", list, { visibility = "public" }, alice.access_token).status)
    t:request("PUT", "/_matrix/client/v3/rooms/" .. enc(room) .. "/state/m.room.name/", { name = "N" },
      alice.access_token)
    assert.equal(200, t:request("PUT", list, { visibility = "public" }, alice.access_token).status)
    local listed = {}
    for _, entry in ipairs(t:request("GET", "/_matrix/client/v3/publicRooms").json.chunk) do
      listed[entry.room_id] = entry.name
    end
    assert.same({ [named] = "Named", [room] = "N" }, listed)
  end)

  it("the example of docs/hooks/room-create-check.md: public rooms only from admins", function()
    t = tesths.start()
    local hs, server = t.hs, t.server
    server:hook("room/create/check", function(info)
      if info.visibility == "public" or info.preset == "public_chat" then
        local u = hs.accounts:user(info.user_id)
        if not (u and u.admin) then return false, "Only admins create public rooms" end
      end
    end)
    local alice = t:register("alice")
    assert(hs.accounts:register("boss", "password-boss", { admin = true }))
    local boss = assert(hs.accounts:login("@boss:test.local", "password-boss"))
    local r = t:request("POST", "/_matrix/client/v3/createRoom", { preset = "public_chat" }, alice.access_token)
    assert.equal(403, r.status)
    assert.equal("Only admins create public rooms", r.json.error)
    assert.equal(200, t:request("POST", "/_matrix/client/v3/createRoom", {}, alice.access_token).status)
    assert.equal(200, t:request("POST", "/_matrix/client/v3/createRoom", { preset = "public_chat" },
      boss.access_token).status)
  end)

  it("a higher priority runs first and true ends the chain", function()
    t = tesths.start()
    local order = {}
    t.server:hook("profile/check", function() order[#order + 1] = "low"; return false, "low says no" end, 1)
    t.server:hook("profile/check", function() order[#order + 1] = "high"; return true end, 10)
    local alice = t:register("alice")
    local r = t:request("PUT", profile_path(alice.user_id, "displayname"), { displayname = "A" }, alice.access_token)
    assert.equal(200, r.status, r.body)
    assert.same({ "high" }, order)
  end)

  it("profile/check gets user_id, field and value; a veto leaves the profile as it was", function()
    t = tesths.start()
    local got
    t.server:hook("profile/check", function(info) got = info; return false, "no avatars" end)
    local alice = t:register("alice")
    local r = t:request("PUT", profile_path(alice.user_id, "avatar_url"), { avatar_url = "mxc://x/y" },
      alice.access_token)
    assert.equal(403, r.status)
    assert.equal("no avatars", r.json.error)
    assert.same({ user_id = alice.user_id, field = "avatar_url", value = "mxc://x/y" }, got)
    local p = t:request("GET", profile_path(alice.user_id, "avatar_url"))
    assert.not_equal("mxc://x/y", p.json and p.json.avatar_url)
  end)

  it("room/join/check gets user_id, room_id, invited; a veto means no join", function()
    t = tesths.start()
    local got
    t.server:hook("room/join/check", function(info) got = info; return false, "closed" end)
    local alice = t:register("alice")
    local bob = t:register("bob")
    local room = t:create_room(alice, { preset = "public_chat" })
    local r = t:request("POST", "/_matrix/client/v3/rooms/" .. enc(room) .. "/join", {}, bob.access_token)
    assert.equal(403, r.status)
    assert.equal("closed", r.json.error)
    assert.same({ user_id = bob.user_id, room_id = room, invited = false }, got)
    assert.same({}, joined(t, bob))
  end)

  it("directory/publish/check: a vetoed alias in createRoom leaves no room; allowed ones resolve", function()
    t = tesths.start()
    t.server:hook("directory/publish/check", function(info)
      if info.alias and info.alias:find("^#official") then
        return false, "Aliases starting with #official are reserved"
      end
    end)
    local alice = t:register("alice")
    local r = t:request("POST", "/_matrix/client/v3/createRoom", { room_alias_name = "official-news" },
      alice.access_token)
    assert.equal(403, r.status, r.body)
    assert.equal("Aliases starting with #official are reserved", r.json.error)
    assert.same({}, joined(t, alice))
    local room = t:create_room(alice, { room_alias_name = "news", visibility = "public" })
    local r2 = t:request("GET", "/_matrix/client/v3/directory/room/" .. enc("#news:test.local"))
    assert.equal(room, r2.json.room_id)
    local r3 = t:request("PUT", "/_matrix/client/v3/directory/room/" .. enc("#official2:test.local"),
      { room_id = room }, alice.access_token)
    assert.equal(403, r3.status, r3.body)
    assert.equal(404, t:request("GET", "/_matrix/client/v3/directory/room/" .. enc("#official2:test.local")).status)
  end)

  it("sync/response observers get the answer and context; one that raises does not break /sync", function()
    t = tesths.start()
    local seen
    t.server:hook("sync/response", function(resp, context) seen = { nb = resp.next_batch, c = context } end)
    t.server:hook("sync/response", function() error("observer down") end, 5)
    local alice = t:register("alice")
    local r = t:request("GET", "/_matrix/client/v3/sync", nil, alice.access_token)
    assert.equal(200, r.status)
    assert.equal(r.json.next_batch, seen.nb)
    assert.equal(alice.user_id, seen.c.user_id)
    assert.equal(r.json.next_batch, seen.c.next_batch)
    assert.is_nil(seen.c.since)
    assert.is_false(seen.c.full_state)
    assert.truthy(t:logged("observer down"))
  end)

  it("login/check: a veto issues no token", function()
    t = tesths.start()
    local alice = t:register("alice")
    t.server:hook("login/check", function() return false, "maintenance" end)
    local r = t:request("POST", "/_matrix/client/v3/login",
      { type = "m.login.password", identifier = { type = "m.id.user", user = "alice" }, password = alice.password })
    assert.equal(403, r.status)
    assert.equal("maintenance", r.json.error)
    assert.is_nil(r.json.access_token)
    assert.equal(200, t:request("GET", "/_matrix/client/v3/account/whoami", nil, alice.access_token).status)
  end)

  it("a vetoed invite inside createRoom leaves no room and no invite", function()
    t = tesths.start()
    local alice = t:register("alice")
    local bob = t:register("bob")
    t.server:hook("room/invite/check", function() return false, "no invites" end)
    local r = t:request("POST", "/_matrix/client/v3/createRoom", { invite = { bob.user_id } }, alice.access_token)
    assert.equal(403, r.status)
    assert.equal("no invites", r.json.error)
    assert.same({}, joined(t, alice))
    assert.same({}, t:request("GET", "/_matrix/client/v3/sync", nil, bob.access_token).json.rooms.invite)
  end)

  it("a redaction passes room/event/check with the client's txn_id; a veto keeps the event", function()
    t = tesths.start()
    local ctx
    t.server:hook("room/event/check", function(ev, c)
      if ev.type == "m.room.redaction" then ctx = c; return false, "no redactions" end
    end)
    local alice = t:register("alice")
    local room = t:create_room(alice)
    local s = t:send(alice.access_token, room, { msgtype = "m.text", body = "keep me" })
    local r = t:request("PUT", "/_matrix/client/v3/rooms/" .. enc(room) .. "/redact/" .. enc(s.json.event_id) .. "/rd1",
      {}, alice.access_token)
    assert.equal(403, r.status)
    assert.equal("no redactions", r.json.error)
    assert.equal("rd1", ctx.txn_id)
    assert.equal("local", ctx.origin)
    local ev = t:request("GET", "/_matrix/client/v3/rooms/" .. enc(room) .. "/event/" .. enc(s.json.event_id), nil,
      alice.access_token)
    assert.equal("keep me", ev.json.content.body)
  end)

  it("rewritten content that canonical JSON cannot hold is 400 M_BAD_JSON; too big is 413 M_TOO_LARGE", function()
    t = tesths.start()
    local next_content
    t.server:hook("room/event/check", function(ev)
      if ev.type == "m.room.message" then ev.content = next_content end
    end)
    local alice = t:register("alice")
    local room = t:create_room(alice)
    next_content = { body = "x", n = 1.5 }
    local r = t:send(alice.access_token, room, { body = "x" })
    assert.equal(400, r.status)
    assert.equal("M_BAD_JSON", r.json.errcode)
    next_content = { body = print }
    r = t:send(alice.access_token, room, { body = "x" })
    assert.equal(400, r.status)
    assert.equal("M_BAD_JSON", r.json.errcode)
    next_content = { body = ("x"):rep(70000) }
    r = t:send(alice.access_token, room, { body = "x" })
    assert.equal(413, r.status)
    assert.equal("M_TOO_LARGE", r.json.errcode)
    next_content = {}
    r = t:send(alice.access_token, room, { body = "x" })
    assert.equal(200, r.status, r.body)
    local ev = t:request("GET", "/_matrix/client/v3/rooms/" .. enc(room) .. "/event/" .. enc(r.json.event_id), nil,
      alice.access_token)
    assert.equal("{}", ev.body:match('"content":(%b{})'))
  end)

  it("a veto without a usable reason is still 403 M_FORBIDDEN with a string error", function()
    t = tesths.start()
    local answer
    t.server:hook("room/event/check", function(ev)
      if ev.type == "m.room.message" then return answer[1], answer[2] end
    end)
    local alice = t:register("alice")
    local room = t:create_room(alice)
    for _, a in ipairs { { false }, { false, { "x" } }, { false, 42 } } do
      answer = a
      local r = t:send(alice.access_token, room, { body = "x" })
      assert.equal(403, r.status)
      assert.equal("M_FORBIDDEN", r.json.errcode)
      assert.equal("string", type(r.json.error))
    end
  end)

  it("the runnable example of docs/http.md answers as its curl lines say", function()
    t = tesths.start()
    local errors = require "loom.http.errors"
    local async = require "loom.async"
    t.server:route("GET", "/hello/{name}", function(req)
      return { greeting = "hello " .. req.params.name }
    end)
    t.server:route("POST", "/_matrix/client/v3/rooms/{roomId}/echo", function(req)
      local body = req:json()
      if body.wait then async.sleep(100) end
      if not body.text then return errors.new("M_MISSING_PARAM", "text is required") end
      return 201, { room = req.params.roomId, text = body.text }
    end)
    t.server:hook("http/request", function(req)
      if req:header("Authorization") == "Bearer banned" then return errors.new("M_FORBIDDEN", "Go away") end
    end, 10)
    assert.same({ greeting = "hello world" }, t:request("GET", "/hello/world").json)
    local r = t:request("POST", "/_matrix/client/r0/rooms/%21a%3Ab/echo", { text = "hi" })
    assert.equal(201, r.status)
    assert.same({ room = "!a:b", text = "hi" }, r.json)
    r = t:request("POST", "/_matrix/client/r0/rooms/%21a%3Ab/echo", { wait = true })
    assert.equal(400, r.status)
    assert.equal("M_MISSING_PARAM", r.json.errcode)
    r = t:request("POST", "/_matrix/client/v3/rooms/%21a%3Ab/echo", "[1]")
    assert.equal(400, r.status)
    assert.equal("M_BAD_JSON", r.json.errcode)
    r = t:request("GET", "/hello/world", nil, "banned")
    assert.equal(403, r.status)
    assert.equal("Go away", r.json.error)
    assert.equal(404, t:request("GET", "/nowhere").status)
  end)

  it("metrics count an unknown method as other and unrouted answers as unmatched", function()
    t = tesths.start()
    t:request("PROPFIND", "/_matrix/client/versions")
    t:request("DELETE", "/_matrix/client/versions")
    local text = t.server.metrics:render()
    assert.truthy(text:find('loom_http_requests_total{route="unmatched",method="other",code="405"} 1', 1, true), text)
    assert.truthy(text:find('loom_http_requests_total{route="unmatched",method="DELETE",code="405"} 1', 1, true))
    assert.falsy(text:find("PROPFIND", 1, true))
  end)
end)
