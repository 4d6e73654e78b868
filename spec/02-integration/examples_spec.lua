-- The examples run against a real homeserver on 127.0.0.1: examples/embed.lua
-- as a child process, the scripts (examples/policy/*.lua, bot.lua,
-- admin_rooms.lua) loaded through config.scripts. Each script is checked
-- twice: its own logic, with the hook fired by the spec, and end to end over
-- HTTP, where the room service and the endpoints fire the hooks.
local tesths = require "support.hs"
local child = require "support.child"
local tmp = require "support.tmpdb"
local core = require "loom.core"
local enc = tesths.enc

-- Inside t:run: poll pred every 10 ms for up to ms; returns pred().
local function eventually(t, pred, ms)
  for _ = 1, (ms or 3000) // 10 do
    if pred() then return pred() end
    t:sleep(10)
  end
  return pred()
end

local function make_old(t, user_id, minutes)
  assert(t.hs.store.conn:run("UPDATE users SET created_ts = ? WHERE user_id = ?",
    core.now_ms() - minutes * 60000, user_id))
end

local txn = 0
local function send_text(t, user, room, body)
  txn = txn + 1
  return t:request("PUT", "/_matrix/client/v3/rooms/" .. enc(room) .. "/send/m.room.message/t" .. txn,
    { msgtype = "m.text", body = body }, user.access_token)
end

local function bodies(t, user, room)
  local r = t:request("GET", "/_matrix/client/v3/rooms/" .. enc(room) .. "/messages?dir=b&limit=50", nil,
    user.access_token)
  assert(r.status == 200, r.body)
  local out = {}
  for _, ev in ipairs(r.json.chunk) do
    if ev.type == "m.room.message" then table.insert(out, 1, { sender = ev.sender, body = ev.content.body }) end
  end
  return out
end

describe("examples", function()
  local t
  after_each(function()
    if t then t:stop(); t = nil end
  end)

  describe("embed.lua", function()
    it("serves the built-in endpoints, its own route and its hooks, and stops on SIGTERM", function()
      local db = os.tmpname()
      local c = child.start { "examples/embed.lua", "0", db .. ".db" }
      local ok, err = pcall(function()
        assert(c:wait_for("embed serving embed%.example at http://127%.0%.0%.1:(%d+)"))
        assert.equal(200, c:request("GET", "/_matrix/client/versions").status)
        assert.same({ greeting = "hello loom" }, c:request("GET", "/_embed/hello/loom").json)
        assert.equal("M_INVALID_PARAM", c:request("GET", "/_embed/hello/" .. ("x"):rep(65)).json.errcode)
        assert.equal(4, c:request("GET", "/_embed/stats").json.requests)
        local reg = c:request("POST", "/_matrix/client/v3/register",
          { username = "alice", password = "a long password", auth = { type = "m.login.dummy" } })
        assert.equal(200, reg.status, reg.body)
        local token = reg.json.access_token
        local r = c:request("POST", "/_matrix/client/v3/createRoom", { name = "fine" }, token)
        assert.equal(200, r.status, r.body)
        -- the veto hook (room/create/check, fired by /createRoom)
        r = c:request("POST", "/_matrix/client/v3/createRoom", { name = "forbidden" }, token)
        assert.equal(403, r.status, r.body)
        assert.equal("M_FORBIDDEN", r.json.errcode)
        assert.equal("Rooms may not be called that here", r.json.error)
      end)
      local code = c:stop()
      for _, sfx in ipairs { "", ".db", ".db-wal", ".db-shm" } do os.remove(db .. sfx) end
      assert(ok, err)
      assert.equal(0, code, c.err)
    end)
  end)

  describe("timeline.lua", function()
    it("builds a forked room in the database it is given and prints its timeline, pages and context", function()
      local dir = tmp.dir()
      local path = dir .. "/tour/example.db"
      local c = child.start { "examples/timeline.lua", path }
      child.turn_until(function() return c.exit_code and c.out:find("database: ", 1, true) end, 30000)
      local code = c:stop()
      local out, err = c.out, c.err
      local f = io.open(path, "rb")
      local exists = f ~= nil
      if f then f:close() end
      tmp.remove_dir(dir)
      assert.equal(0, code, err)
      assert.is_true(exists, "no database at " .. path)
      assert.equal("database: " .. path .. "\n", out:match("database: [^\n]*\n$"))
      -- two extremities after the fork, one after the merge
      assert.matches("forward extremities after the fork: %$[%w_-]+, %$[%w_-]+\n", out)
      assert.matches("forward extremities after the merge: %$[%w_-]+\n", out)
      -- /messages?dir=b in pages of 4: 9 events, newest first
      assert.matches("page 1 %(from t8%-9, next t6%-5%)", out)
      assert.matches("page 2 %(from t6%-5, next t2%-1%)", out)
      assert.matches("page 3 %(from t2%-1, next nil%)", out)
      local newest_first = {}
      local row = "\n  t%d+%-%d+ +depth %d+ +stream %d+ +@%w+:example%.org +([^\n]*)"
      for what in out:match("pages of 4.-\n\n"):gmatch(row) do
        newest_first[#newest_first + 1] = what
      end
      assert.same({ "Hi Alice, I merged the fork.", "(sent at the same time)", "join", "and its stream ordering.",
        "Each one is stored with its depth", "This room is a DAG of signed events.", "Hello, loom!", "join",
        "m.room.create" }, newest_first)
      -- the filter keeps the six messages, oldest first
      local messages = out:match("Only messages.-\n\n")
      local _, n = messages:gsub("\n  t%d", "")
      assert.equal(6, n)
      assert.matches("^[^\n]*\n  t3%-3 .-Hello, loom!", messages)
      -- context: bob's join, the side event, the merge
      assert.matches("Context around[^\n]*\n  t7%-7 [^\n]*join\n  t7%-8 [^\n]*%(sent at the same time%)\n"
        .. "  t8%-9 [^\n]*merged the fork%.\nstart t7%-6, end t8%-9; current stream token s9\n", out)
    end)
  end)

  describe("policy/anti_spam.lua", function()
    local config = { scripts = { "examples/policy/anti_spam.lua" },
      anti_spam = { min_account_age_minutes = 10, flood_messages = 3, flood_seconds = 60 } }

    it("vetoes links from young accounts and message floods (hook fired by the spec)", function()
      t = tesths.start(config)
      local young, old = t:register("young"), t:register("old")
      make_old(t, old.user_id, 11)
      local function check(user, body, ctx)
        return t.server:fire("room/event/check", { type = "m.room.message", sender = user.user_id,
          room_id = "!r:test.local", content = { msgtype = "m.text", body = body } }, ctx or { origin = "local" })
      end
      local ok, reason = check(young, "see https://spam.example/x")
      assert.is_false(ok)
      assert.equal("New accounts may not send links yet", reason)
      assert.is_nil(check(young, "no link here"))
      assert.is_nil(check(old, "see https://fine.example"))
      assert.is_nil(check(old, "two"))
      assert.is_nil(check(old, "three"))
      ok, reason = check(old, "four")
      assert.is_false(ok)
      assert.matches("too fast", reason)
      assert.truthy(t:logged("anti_spam: @old:test.local is sending too fast"))
      -- received events are not its business
      assert.is_nil(check(old, "from afar", { origin = "federation" }))
      assert.is_nil(check(young, "http://x.example", { origin = "federation" }))
    end)

    it("refuses bad options", function()
      t = tesths.start { scripts = { "examples/policy/anti_spam.lua" }, anti_spam = { flood_messages = 0 } }
      assert.is_nil(t.hs.scripts:get("anti_spam"))
      assert.truthy(t:logged("option anti_spam.flood_messages must be an integer in 1..10000, got 0"))
    end)

    it("clients get 403 M_FORBIDDEN with the reason (end to end)", function()
      t = tesths.start(config)
      local young, old = t:register("young"), t:register("old")
      make_old(t, old.user_id, 11)
      local room = t:create_room(old, { preset = "public_chat" })
      assert.equal(200, t:request("POST", "/_matrix/client/v3/join/" .. enc(room), {}, young.access_token).status)
      local r = send_text(t, young, room, "buy at https://spam.example")
      assert.equal(403, r.status, r.body)
      assert.equal("M_FORBIDDEN", r.json.errcode)
      assert.equal("New accounts may not send links yet", r.json.error)
      assert.equal(200, send_text(t, old, room, "https://fine.example").status)
      assert.equal(200, send_text(t, old, room, "two").status)
      assert.equal(200, send_text(t, old, room, "three").status)
      r = send_text(t, old, room, "four")
      assert.equal(403, r.status, r.body)
      assert.matches("too fast", r.json.error)
    end)
  end)

  describe("policy/room_rules.lua", function()
    local config = { scripts = { "examples/policy/room_rules.lua" },
      room_rules = { allowed_domains = { "test.local", "partner.example" } } }

    it("limits room creation and invites to the listed domains (hooks fired by the spec)", function()
      t = tesths.start(config)
      local fire = function(...) return t.server:fire(...) end
      assert.is_nil(fire("room/create/check", { user_id = "@a:test.local", invite = { "@b:partner.example" } }))
      local ok, reason = fire("room/create/check", { user_id = "@a:test.local", invite = { "@e:evil.example" } })
      assert.is_false(ok)
      assert.matches("@e:evil.example", reason)
      assert.is_false((fire("room/create/check", { user_id = "@a:elsewhere.example", invite = {} })))
      assert.is_nil(fire("room/invite/check", { user_id = "@a:test.local", invitee = "@b:PARTNER.example",
        room_id = "!r:test.local" }))
      assert.is_false((fire("room/invite/check", { user_id = "@a:test.local", invitee = "@e:evil.example",
        room_id = "!r:test.local" })))
    end)

    it("refuses an empty list", function()
      t = tesths.start { scripts = { "examples/policy/room_rules.lua" }, room_rules = { allowed_domains = {} } }
      assert.is_nil(t.hs.scripts:get("room_rules"))
      assert.truthy(t:logged("option room_rules.allowed_domains must be an array with"))
    end)

    it("clients get 403 M_FORBIDDEN for createRoom and /invite to other domains (end to end)", function()
      t = tesths.start(config)
      local alice, bob = t:register("alice"), t:register("bob")
      local r = t:request("POST", "/_matrix/client/v3/createRoom", { invite = { "@e:evil.example" } },
        alice.access_token)
      assert.equal(403, r.status, r.body)
      assert.equal("M_FORBIDDEN", r.json.errcode)
      local room = t:create_room(alice)
      r = t:request("POST", "/_matrix/client/v3/rooms/" .. enc(room) .. "/invite", { user_id = "@e:evil.example" },
        alice.access_token)
      assert.equal(403, r.status, r.body)
      assert.matches("not allowed", r.json.error)
      r = t:request("POST", "/_matrix/client/v3/rooms/" .. enc(room) .. "/invite", { user_id = bob.user_id },
        alice.access_token)
      assert.equal(200, r.status, r.body)
    end)
  end)

  describe("bot.lua", function()
    local config = { scripts = { "examples/bot.lua" }, bot = { bot_user = "@echo:test.local" } }

    it("joins when invited and echoes text messages, never itself (hook fired by the spec)", function()
      t = tesths.start(config)
      local alice = t:register("alice")
      t:register("echo")
      local room = t:create_room(alice, { invite = { "@echo:test.local" } })
      local function persisted(ev)
        ev.room_id = room
        t.server:fire("room/event/persisted", ev, { origin = "local" })
      end
      persisted { type = "m.room.member", sender = alice.user_id, state_key = "@echo:test.local",
        content = { membership = "invite" } }
      assert.equal("join", t.hs.rooms:state_event(room, "m.room.member", "@echo:test.local").content.membership)
      persisted { type = "m.room.message", sender = alice.user_id, content = { msgtype = "m.text", body = "hello" } }
      persisted { type = "m.room.message", sender = "@echo:test.local",
        content = { msgtype = "m.text", body = "echo: hello" } }
      persisted { type = "m.room.message", sender = alice.user_id, content = { msgtype = "m.image", body = "x" } }
      assert.same({ { sender = "@echo:test.local", body = "echo: hello" } }, bodies(t, alice, room))
    end)

    it("answers in the room as its own user (end to end)", function()
      t = tesths.start(config)
      local alice = t:register("alice")
      t:register("echo")
      local room = t:create_room(alice)
      local r = t:request("POST", "/_matrix/client/v3/rooms/" .. enc(room) .. "/invite",
        { user_id = "@echo:test.local" }, alice.access_token)
      assert.equal(200, r.status, r.body)
      t:run(function()
        assert.truthy(eventually(t, function()
          local m = t.hs.rooms:state_event(room, "m.room.member", "@echo:test.local")
          return m and m.content.membership == "join"
        end), "the bot did not join")
      end)
      assert.equal(200, send_text(t, alice, room, "hello").status)
      local got
      t:run(function()
        eventually(t, function()
          got = bodies(t, alice, room)
          return #got >= 2
        end)
        t:sleep(100)    -- the bot's own message must not make it answer again
      end)
      got = bodies(t, alice, room)
      assert.same({ { sender = alice.user_id, body = "hello" }, { sender = "@echo:test.local", body = "echo: hello" } },
        got)
    end)
  end)

  describe("admin_rooms.lua", function()
    it("lists rooms with member counts for admins only", function()
      t = tesths.start { scripts = { "examples/admin_rooms.lua" } }
      local admin_user = t:register("root")
      assert(t.hs.store.conn:run("UPDATE users SET admin = 1 WHERE user_id = ?", admin_user.user_id))
      local alice, bob = t:register("alice"), t:register("bob")
      local room = t:create_room(alice, { name = "Lobby", invite = { bob.user_id } })
      local empty = t:create_room(bob)
      local r = t:request("GET", "/_loom/admin/v1/rooms")
      assert.equal(401, r.status)
      r = t:request("GET", "/_loom/admin/v1/rooms", nil, alice.access_token)
      assert.equal(403, r.status)
      assert.equal("M_FORBIDDEN", r.json.errcode)
      r = t:request("GET", "/_loom/admin/v1/rooms", nil, admin_user.access_token)
      assert.equal(200, r.status, r.body)
      assert.equal(2, r.json.total)
      assert.same({ room_id = room, name = "Lobby", joined_members = 1, invited_members = 1 }, r.json.rooms[1])
      assert.same({ room_id = empty, joined_members = 1, invited_members = 0 }, r.json.rooms[2])
    end)

    it("answers an empty list as a JSON array", function()
      t = tesths.start { scripts = { "examples/admin_rooms.lua" } }
      local root = t:register("root")
      assert(t.hs.store.conn:run("UPDATE users SET admin = 1 WHERE user_id = ?", root.user_id))
      local r = t:request("GET", "/_loom/admin/v1/rooms", nil, root.access_token)
      assert.matches('"rooms":%[%]', r.body)
      assert.equal(0, r.json.total)
    end)
  end)
end)
