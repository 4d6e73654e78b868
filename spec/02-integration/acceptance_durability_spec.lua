-- Acceptance: an event a client was told about survives the server being
-- killed. `bin/loom serve` runs as a child on 127.0.0.1; 8 clients send
-- messages as fast as they are answered; the child gets SIGKILL in the middle
-- of the burst; a fresh serve on the same database must return every event
-- ID that was acknowledged, with its content.
local uv = require "luv"
local json = require("loom.core").json
local child = require "support.child"
local tmp = require "support.tmpdb"

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- One request on its own connection, callback style: done(status, decoded body).
local function request(port, method, path, body, token, done)
  local text = body and assert(json.encode(body)) or ""
  local lines = { ("%s %s HTTP/1.1"):format(method, path), "Host: localhost", "Connection: close",
    "Content-Length: " .. #text }
  if token then lines[#lines + 1] = "Authorization: Bearer " .. token end
  local tcp, raw, finished = uv.new_tcp(), "", false
  local function finish(status, obj)
    if finished then return end
    finished = true
    if not tcp:is_closing() then tcp:close() end
    done(status, obj)
  end
  tcp:connect("127.0.0.1", port, function(e)
    if e then return finish(nil) end
    tcp:read_start(function(err, data)
      if data then raw = raw .. data; return end
      if err or not raw:find("\r\n\r\n", 1, true) then return finish(nil) end
      local head_end = raw:find("\r\n\r\n", 1, true)
      finish(tonumber(raw:match("^HTTP/1%.1 (%d%d%d)")), json.decode(raw:sub(head_end + 4)))
    end)
    tcp:write(table.concat(lines, "\r\n") .. "\r\n\r\n" .. text)
  end)
end

local function sync_request(port, method, path, body, token)
  local st, obj, done
  request(port, method, path, body, token, function(s, o) st, obj, done = s, o, true end)
  child.turn_until(function() return done end, 10000)
  return st, obj
end

describe("acceptance: kill -9 during a burst of sends", function()
  it("loses no acknowledged event", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(uv.fs_mkdir(dir, tonumber("755", 8)))
    local db = dir .. "/loom.db"
    local cfg = dir .. "/loom.cfg.lua"
    write(cfg, ('server_name = "crash.test"\nport = 0\ndatabase = { path = %q }\npassword_iterations = 1000\n'
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
    tmp.remove(db)
    for _, f in ipairs { "loom.cfg.lua", "loom.pid" } do os.remove(dir .. "/" .. f) end
    uv.fs_rmdir(dir)
    assert.same({}, missing)
  end)
end)
