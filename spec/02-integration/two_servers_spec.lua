-- Two homeservers in one process, on one luv loop: each is loom.new +
-- loom.api.install (support.hs) with its own SQLite file, port and logger.
-- They share nothing: users, rooms, tokens, log lines, configuration, and
-- stopping one leaves the other serving.
local uv = require "luv"
local loom = require "loom"
local tesths = require "support.hs"

local enc = tesths.enc
local V3 = "/_matrix/client/v3"

-- Registers through the endpoint (user-interactive auth with m.login.dummy);
-- request(t, method, path, body) makes the requests (default t:request).
local function register(t, name, request)
  request = request or function(s, ...) return s:request(...) end
  local r = request(t, "POST", V3 .. "/register", { username = name, password = "pw-" .. name })
  assert.equal(401, r.status)
  r = request(t, "POST", V3 .. "/register", { username = name, password = "pw-" .. name,
    auth = { type = "m.login.dummy", session = r.json.session } })
  assert.equal(200, r.status, r.body)
  return r.json
end

-- The requests a server logged, as "METHOD /path" (loom.http.app logs one
-- line per request at debug: "GET /path 200 1.0ms").
local methods = { GET = true, POST = true, PUT = true, DELETE = true }
local function request_lines(t)
  local out = {}
  for _, l in ipairs(t.logs) do
    local m, path = l:match("(%u+) (/[^%s\"?]*)")
    if m and methods[m] then out[#out + 1] = m .. " " .. path end
  end
  return out
end

describe("two homeservers in one process", function()
  local one, two
  before_each(function()
    one = tesths.start { server_name = "one.test", log_level = "debug" }
    two = tesths.start { server_name = "two.test", log_level = "debug" }
  end)
  after_each(function()
    one:stop()
    two:stop()
  end)

  it("keep their users, rooms, tokens and log lines apart", function()
    assert.not_equal(one.port, two.port)
    assert.not_equal(one.db_path, two.db_path)
    local sent = { [one] = {}, [two] = {} }
    local function req(t, method, path, body, token)
      local r = t:request(method, path, body, token)
      sent[t][#sent[t] + 1] = method .. " " .. path:gsub("%?.*", "")
      return r
    end
    -- the same localpart on each: two different users
    local users = {}
    for _, t in ipairs { one, two } do users[t] = register(t, "alice", req) end
    assert.equal("@alice:one.test", users[one].user_id)
    assert.equal("@alice:two.test", users[two].user_id)
    assert.not_equal(users[one].access_token, users[two].access_token)

    local rooms, since = {}, {}
    for _, t in ipairs { one, two } do
      local tok = users[t].access_token
      local who = req(t, "GET", V3 .. "/account/whoami", nil, tok)
      assert.equal(users[t].user_id, who.json.user_id)
      local p = req(t, "GET", V3 .. "/profile/" .. enc(users[t].user_id), nil, tok)
      assert.equal(200, p.status)
      local c = req(t, "POST", V3 .. "/createRoom", { name = "room of " .. t.server.config.server_name }, tok)
      assert.equal(200, c.status, c.body)
      rooms[t] = c.json.room_id
      assert.matches(":" .. t.server.config.server_name:gsub("%.", "%%.") .. "$", rooms[t])
      local s = req(t, "PUT", V3 .. "/rooms/" .. enc(rooms[t]) .. "/send/m.room.message/t1",
        { msgtype = "m.text", body = "hello from " .. t.server.config.server_name }, tok)
      assert.equal(200, s.status, s.body)
      local y = req(t, "GET", V3 .. "/sync", nil, tok)
      assert.equal(200, y.status)
      since[t] = y.json.next_batch
      local joined = {}
      for id in pairs(y.json.rooms.join) do joined[#joined + 1] = id end
      assert.same({ rooms[t] }, joined)
      local events = y.json.rooms.join[rooms[t]].timeline.events
      assert.equal("hello from " .. t.server.config.server_name, events[#events].content.body)
    end

    -- what happened on the other server after one's sync is not news to it
    for _, t in ipairs { one, two } do
      local y = req(t, "GET", V3 .. "/sync?since=" .. enc(since[t]), nil, users[t].access_token)
      assert.equal(200, y.status)
      assert.is_nil(next(y.json.rooms.join))
    end

    -- a token of one is unknown to the other; so are its rooms and users
    for t, other in pairs { [one] = two, [two] = one } do
      local r = req(t, "GET", V3 .. "/account/whoami", nil, users[other].access_token)
      assert.equal(401, r.status)
      assert.equal("M_UNKNOWN_TOKEN", r.json.errcode)
      local m = req(t, "GET", V3 .. "/rooms/" .. enc(rooms[other]) .. "/messages?dir=b", nil, users[t].access_token)
      assert.equal(403, m.status)
      local p = req(t, "GET", V3 .. "/profile/" .. enc(users[other].user_id), nil, users[t].access_token)
      assert.equal(404, p.status)
      assert.is_nil(t.hs.accounts:user(users[other].user_id))
    end

    -- each log holds exactly its own server's requests, in order
    for _, t in ipairs { one, two } do
      assert.equal(11, #sent[t])
      assert.same(sent[t], request_lines(t))
    end
  end)

  it("keep their configuration apart", function()
    assert.not_equal(one.server.config.versions, two.server.config.versions)
    table.insert(one.server.config.versions, "v9.9")
    assert.is_nil(two.server.config.versions[#two.server.config.versions]:find("v9.9", 1, true))
    -- a server without the Matrix endpoints advertises no versions at all
    local bare = loom.new { port = 0 }
    assert.same({}, bare.config.versions)
    assert.not_equal(one.server.config.database, two.server.config.database)
    assert.not_equal(one.hs.notifier, two.hs.notifier)
  end)

  it("stopping one leaves the other serving, its long-polls included", function()
    local a = register(one, "alice")
    local b = register(two, "bob")
    local room = two:request("POST", V3 .. "/createRoom", {}, b.access_token).json.room_id
    local since = two:request("GET", V3 .. "/sync", nil, b.access_token).json.next_batch
    local a_since = one:request("GET", V3 .. "/sync", nil, a.access_token).json.next_batch
    two:run(function()
      -- a long-poll waiting on each server
      local on_one = two:go(function()
        return one:call("GET", V3 .. "/sync?timeout=20000&since=" .. enc(a_since), nil, a.access_token)
      end)
      local on_two = two:go(function()
        return two:call("GET", V3 .. "/sync?timeout=20000&since=" .. enc(since), nil, b.access_token)
      end)
      two:sleep(100)
      assert.equal(1, one.hs.notifier.waiting)
      assert.equal(1, two.hs.notifier.waiting)
      local stopped = false
      one.server:stop(function() stopped = true end)
      local r1 = two:await(on_one)           -- answered at once by the stopping server
      assert.equal(200, r1.status)
      while not stopped do two:sleep(10) end
      -- the other one still waits, and serves
      assert.equal(1, two.hs.notifier.waiting)
      assert.is_false(two.hs.notifier.closed)
      local v = two:call("GET", "/_matrix/client/versions")
      assert.equal(200, v.status)
      local s = two:call("PUT", V3 .. "/rooms/" .. enc(room) .. "/send/m.room.message/x1",
        { msgtype = "m.text", body = "still here" }, b.access_token)
      assert.equal(200, s.status)
      local r2 = two:await(on_two)
      assert.equal(200, r2.status)
      local events = r2.json.rooms.join[room].timeline.events
      assert.equal("still here", events[#events].content.body)
    end)
    -- the stopped one's port takes no connections
    local refused = false
    local tcp = uv.new_tcp()
    tcp:connect("127.0.0.1", one.port, function(err) refused = err ~= nil end)
    for _ = 1, 20 do uv.run("nowait") end
    tcp:close()
    uv.run("nowait")
    assert.is_true(refused)
    assert.equal(200, two:request("GET", V3 .. "/account/whoami", nil, b.access_token).status)
  end)
end)
