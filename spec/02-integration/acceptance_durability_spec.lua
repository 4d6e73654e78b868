-- Acceptance: an event a client was told about survives the server being
-- killed. `bin/loom serve` runs as a child on 127.0.0.1; 8 clients send
-- messages as fast as they are answered; the child gets SIGKILL in the middle
-- of the burst; a fresh serve on the same database must return every event
-- ID that was acknowledged, with its content.
local child = require "support.child"
local files = require "support.files"

-- One request on its own connection, callback style: done(status, decoded
-- body), done(nil) when the connection fails or ends before a response.
local function request(port, method, path, body, token, done)
  child.begin_request(port, method, path, body, token, function(st)
    if st.err or not st.body then return done(nil) end
    done(st.status, st.json)
  end)
end

local function sync_request(port, method, path, body, token)
  local st = child.request(port, method, path, body, token)
  if st.err or not st.body then return nil end
  return st.status, st.json
end

describe("acceptance: kill -9 during a burst of sends", function()
  it("loses no acknowledged event", function()
    local dir = files.tmpdir()
    local db = dir .. "/loom.db"
    local cfg = dir .. "/loom.cfg.lua"
    files.write(cfg, ('server_name = "crash.test"\nport = 0\ndatabase = { path = %q }\npassword_iterations = 1000\n'
      .. 'log_level = "warn"\n'):format(db))
    local c = child.start { "bin/loom", "serve", "--config", cfg }
    local port = tonumber(assert(c:wait_for("http://127%.0%.0%.1:(%d+)")))
    local st, reg = sync_request(port, "POST", "/_matrix/client/v3/register",
      { username = "alice", password = "pw-alice-long", auth = { type = "m.login.dummy" } })
    assert.equal(200, st)
    local tok = reg.access_token
    local room
    st, room = sync_request(port, "POST", "/_matrix/client/v3/createRoom", {}, tok)
    assert.equal(200, st)
    room = room.room_id
    local path = "/_matrix/client/v3/rooms/" .. room:gsub("[!:]", function(ch) return ("%%%02X"):format(ch:byte()) end)
      .. "/send/m.room.message/"

    local acked, n, stop = {}, 0, false
    local function sender(k)
      local function one()
        if stop then return end
        n = n + 1
        local txn = "b" .. k .. "-" .. n
        request(port, "PUT", path .. txn, { msgtype = "m.text", body = txn }, tok, function(s, obj)
          if s == 200 and obj and obj.event_id then acked[#acked + 1] = { id = obj.event_id, body = txn } end
          if s == 200 then one() end
        end)
      end
      one()
    end
    for k = 1, 8 do sender(k) end
    child.turn_until(function() return #acked >= 150 end, 20000)
    c.handle:kill("sigkill")
    stop = true
    child.turn_until(function() return c.exit_signal ~= nil and c.exit_signal ~= 0 end, 5000)
    c:stop()
    assert.truthy(#acked >= 150, "only " .. #acked .. " sends were answered")

    local c2 = child.start { "bin/loom", "serve", "--config", cfg }
    port = tonumber(assert(c2:wait_for("http://127%.0%.0%.1:(%d+)")))
    local missing = {}
    for _, a in ipairs(acked) do
      local s, ev = sync_request(port, "GET", "/_matrix/client/v3/rooms/" .. room:gsub("[!:]",
        function(ch) return ("%%%02X"):format(ch:byte()) end) .. "/event/" .. a.id:gsub("[$/+=]",
        function(ch) return ("%%%02X"):format(ch:byte()) end), nil, tok)
      if s ~= 200 or ev.content.body ~= a.body then missing[#missing + 1] = a.id end
    end
    assert.equal(0, c2:stop())
    files.remove_tree(dir)
    assert.same({}, missing)
  end)
end)
