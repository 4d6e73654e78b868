-- Two loom processes federating over real TLS on two loopback addresses:
-- this process serves 127.0.0.1:<port>, a `bin/loom serve` child serves
-- 127.0.0.2:<port> (server names are those IP literals with their ports).
-- A user of the child joins a room of this server; messages go both ways.
local uv = require "luv"
local tesths = require "support.hs"
local child = require "support.child"
local files = require "support.files"

local E = tesths.enc

local function free_port(host)
  local tcp = uv.new_tcp()
  assert(tcp:bind(host, 0))
  local port = tcp:getsockname().port
  tcp:close()
  uv.run("nowait")
  return port
end

describe("two loom processes over TLS on 127.0.0.1 and 127.0.0.2", function()
  local dir, a, b, bport, bname, aname

  setup(function()
    dir = files.tmpdir("loom-procs")
    local afed = free_port("127.0.0.1")
    aname = "127.0.0.1:" .. afed
    a = tesths.start { server_name = aname,
      federation = { host = "127.0.0.1", port = afed, tls_certificate = dir .. "/a.crt",
        tls_private_key = dir .. "/a.key", verify_certificates = false, allow_ips = { "127.0.0.0/8" } } }
    local bfed = free_port("127.0.0.2")
    bport = free_port("127.0.0.2")
    bname = "127.0.0.2:" .. bfed
    local cfg = dir .. "/b.cfg.lua"
    files.write(cfg, ([[
server_name = %q
host = "127.0.0.2"
port = %d
database = { path = %q }
password_iterations = 1000
log_level = "warn"
federation = { host = "127.0.0.2", port = %d, tls_certificate = %q, tls_private_key = %q,
               verify_certificates = false, allow_ips = { "127.0.0.0/8" } }
]]):format(bname, bport, dir .. "/b.db", bfed, dir .. "/b.crt", dir .. "/b.key"))
    b = child.start { "bin/loom", "serve", "--config", cfg }
    assert(b:wait_for("serving", 15000), "the child did not start: " .. b.err)
  end)

  teardown(function()
    if b then b:stop() end
    if a then a:stop() end
    files.remove_tree(dir)
  end)

  -- A request to the child's client API while this process's loop (and
  -- server) turns.
  local function at_b(method, path, body, token)
    local st = child.finish(child.begin_request("127.0.0.2:" .. bport, method, path, body, token), 30000)
    assert(st.status, "no answer from the child: " .. tostring(st.err) .. "\n" .. b.err)
    return st
  end

  it("joins across processes and carries messages both ways", function()
    -- a user on the child, registered through its API
    local r = at_b("POST", "/_matrix/client/v3/register", { username = "bob", password = "bob-password-1",
      auth = { type = "m.login.dummy" } })
    if r.status == 401 then
      r = at_b("POST", "/_matrix/client/v3/register", { username = "bob", password = "bob-password-1",
        auth = { type = "m.login.dummy", session = r.json.session } })
    end
    assert.equal(200, r.status, r.body)
    local btok = r.json.access_token
    local alice = a:register("alice")
    local room = a:create_room(alice, { preset = "public_chat" })
    a:send(alice.access_token, room, { msgtype = "m.text", body = "hello from 127.0.0.1" })
    local j = at_b("POST", "/_matrix/client/v3/join/" .. E(room) .. "?server_name=" .. E(aname), {}, btok)
    assert.equal(200, j.status, j.body)
    -- history comes by backfill
    local found = false
    for _ = 1, 50 do
      local m = at_b("GET", "/_matrix/client/v3/rooms/" .. E(room) .. "/messages?dir=b&limit=20", nil, btok)
      for _, ev in ipairs(m.json and m.json.chunk or {}) do
        if ev.content and ev.content.body == "hello from 127.0.0.1" then found = true end
      end
      if found then break end
      child.turn_until(function() return false end, 100)
    end
    assert.is_true(found, "b never saw a's message")
    -- b → a
    local s = at_b("PUT", "/_matrix/client/v3/rooms/" .. E(room) .. "/send/m.room.message/p1",
      { msgtype = "m.text", body = "hello from 127.0.0.2" }, btok)
    assert.equal(200, s.status)
    local got = child.turn_until(function()
      local rn = a.hs.store:room_nid(room)
      for _, id in ipairs(a.hs.store:graph_event_ids(rn)) do
        local ev = a.hs.store:event(id)
        if ev.content and ev.content.body == "hello from 127.0.0.2" then return true end
      end
      return false
    end, 15000)
    assert.is_true(got, "a never got b's message")
  end)
end)
