-- Acceptance: the example scripts set up as their header comments tell an
-- operator to (bin/loom register-user for the accounts, the scripts listed
-- in the config by absolute path, their options in tables named after
-- them), served by `bin/loom serve` as a child process on 127.0.0.1.
local uv = require "luv"
local child = require "support.child"
local files = require "support.files"
local enc = require("support.hs").enc
local write, sh = files.write, child.sh

local function request(port, method, path, body, token)
  local st = child.request(port, method, path, body, token)
  assert(st.body, "no answer")
  return st
end

describe("acceptance: the example scripts as an operator installs them", function()
  it("bot, admin_rooms and room_rules from the examples directory", function()
    local cwd = assert(uv.cwd())
    local dir = files.tmpdir()
    local db, cfg = dir .. "/loom.db", dir .. "/loom.cfg.lua"
    write(cfg, ([[
server_name = "ex.test"
port = 0
database = { path = %q }
password_iterations = 1000
scripts = { %q, %q, %q }
bot = { bot_user = "@echo:ex.test" }
room_rules = { allowed_domains = { "ex.test" } }
]]):format(db, cwd .. "/examples/bot.lua", cwd .. "/examples/admin_rooms.lua",
      cwd .. "/examples/policy/room_rules.lua"))
    local out = sh("echo echo-password | lua5.4 bin/loom register-user echo --config " .. cfg)
    assert.truthy(out:find("registered @echo:ex.test\nrc=0", 1, true), out)
    out = sh("lua5.4 bin/loom register-user boss --admin --password boss-password --config " .. cfg)
    assert.truthy(out:find("rc=0", 1, true), out)
    out = sh("lua5.4 bin/loom register-user boss --password again --config " .. cfg)
    assert.truthy(out:find("rc=1", 1, true), out)                    -- a taken user name

    local c = child.start { "bin/loom", "serve", "--config", cfg }
    local port = tonumber(assert(c:wait_for("http://127%.0%.0%.1:(%d+)")))
    local login = request(port, "POST", "/_matrix/client/v3/login",
      { type = "m.login.password", identifier = { type = "m.id.user", user = "boss" }, password = "boss-password" })
    assert.equal(200, login.status, login.body)
    local tok = login.json.access_token
    local reg = request(port, "POST", "/_matrix/client/v3/register",
      { username = "plain", password = "plain-password", auth = { type = "m.login.dummy" } })
    assert.equal(200, reg.status)

    local created = request(port, "POST", "/_matrix/client/v3/createRoom",
      { name = "Lobby", invite = { "@echo:ex.test" } }, tok)
    assert.equal(200, created.status, created.body)
    local room = created.json.room_id
    -- room_rules: no invites to other servers
    local inv = request(port, "POST", "/_matrix/client/v3/rooms/" .. enc(room) .. "/invite",
      { user_id = "@x:evil.example" }, tok)
    assert.equal(403, inv.status)
    assert.equal("M_FORBIDDEN", inv.json.errcode)
    -- the bot joins on its invite, then echoes
    child.turn_until(function()
      local m = request(port, "GET", "/_matrix/client/v3/rooms/" .. enc(room) .. "/joined_members", nil, tok)
      return m.json and m.json.joined and m.json.joined["@echo:ex.test"] ~= nil
    end, 5000)
    assert.equal(200, request(port, "PUT", "/_matrix/client/v3/rooms/" .. enc(room) .. "/send/m.room.message/e1",
      { msgtype = "m.text", body = "hello bot" }, tok).status)
    local echo
    child.turn_until(function()
      local m = request(port, "GET", "/_matrix/client/v3/rooms/" .. enc(room) .. "/messages?dir=b&limit=5", nil, tok)
      for _, e in ipairs(m.json.chunk) do
        if e.sender == "@echo:ex.test" and e.type == "m.room.message" then echo = e end
      end
      return echo
    end, 5000)
    assert.truthy(echo, "the bot did not answer")
    assert.equal("echo: hello bot", echo.content.body)
    -- admin_rooms: admins only, with member counts
    local list = request(port, "GET", "/_loom/admin/v1/rooms", nil, tok)
    assert.equal(200, list.status, list.body)
    assert.equal(1, list.json.total)
    assert.same({ room_id = room, name = "Lobby", joined_members = 2, invited_members = 0 }, list.json.rooms[1])
    local denied = request(port, "GET", "/_loom/admin/v1/rooms", nil, reg.json.access_token)
    assert.equal(403, denied.status)
    assert.equal("M_FORBIDDEN", denied.json.errcode)
    assert.equal(401, request(port, "GET", "/_loom/admin/v1/rooms").status)

    assert.equal(0, (c:stop()))
    files.remove_tree(dir)
  end)
end)
