-- The federation read endpoints (event, state, state_ids, event_auth,
-- backfill, get_missing_events) between two loom servers on 127.0.0.1:
-- what a server that is not in a room, or asks badly, is answered. (Serving
-- a room's graph to a joined server is covered with joins.)
local uv = require "luv"
local async = require "loom.async"
local tesths = require "support.hs"
local loop = require "support.loop"
local files = require "support.files"

local function free_port()
  local probe = uv.new_tcp()
  probe:bind("127.0.0.1", 0)
  local port = probe:getsockname().port
  probe:close()
  return port
end

local function task(fn)
  local done, ok, res
  async.spawn(fn, nil, function(o, r) done, ok, res = true, o, r end)
  assert(loop.turn_until(function() return done end, 10000), "task did not finish")
  assert(ok, res)
  return res
end

local dir, a, b

local function fed_server(name)
  local port = free_port()
  local t = tesths.start {
    server_name = "localhost:" .. port,
    federation = { port = port, tls_certificate = dir .. "/" .. name .. ".crt",
                   tls_private_key = dir .. "/" .. name .. ".key",
                   verify_certificates = false, allow_ips = { "127.0.0.1/32" } },
  }
  t.name = "localhost:" .. port
  return t
end

describe("federation read endpoints", function()
  local room, event_id

  setup(function()
    dir = files.tmpdir("loom-fedread")
    a = fed_server("a")
    b = fed_server("b")
    local alice = a:register("alice")
    room = a:create_room(alice, { preset = "public_chat" })
    event_id = a:send(alice.access_token, room, { msgtype = "m.text", body = "hi" }).json.event_id
  end)

  teardown(function()
    a:stop(); b:stop()
    async.finish_closing()
    files.remove_tree(dir)
  end)

  local function ask(method, path, opts)
    return task(function()
      local status, body = b.hs.federation:request(a.name, method, path, opts)
      return { status = status, body = body }
    end)
  end

  it("answers a server with nobody in the room 403 M_FORBIDDEN, and an unknown room 404", function()
    local E = require("loom.federation.client").encode
    local paths = {
      { "GET", "/_matrix/federation/v1/event/" .. E(event_id) },
      { "GET", "/_matrix/federation/v1/state/" .. E(room), { query = { event_id = event_id } } },
      { "GET", "/_matrix/federation/v1/state_ids/" .. E(room), { query = { event_id = event_id } } },
      { "GET", "/_matrix/federation/v1/event_auth/" .. E(room) .. "/" .. E(event_id) },
      { "GET", "/_matrix/federation/v1/backfill/" .. E(room), { query = { v = event_id, limit = "10" } } },
      { "POST", "/_matrix/federation/v1/get_missing_events/" .. E(room),
        { body = { earliest_events = require("loom.core").json.array(), latest_events = { event_id } } } },
    }
    for _, p in ipairs(paths) do
      local r = ask(p[1], p[2], p[3])
      assert.equal(403, r.status, p[2])
      assert.equal("M_FORBIDDEN", r.body.errcode, p[2])
    end
    local r = ask("GET", "/_matrix/federation/v1/state_ids/" .. E("!nope:" .. a.name),
      { query = { event_id = event_id } })
    assert.equal(404, r.status)
    assert.equal("M_NOT_FOUND", r.body.errcode)
    r = ask("GET", "/_matrix/federation/v1/event/" .. E("$nope"))
    assert.equal(404, r.status)
  end)

  it("answers unsigned requests 401 M_UNAUTHORIZED", function()
    local E = require("loom.federation.client").encode
    local r = ask("GET", "/_matrix/federation/v1/event/" .. E(event_id), { unsigned = true })
    assert.equal(401, r.status)
    assert.equal("M_UNAUTHORIZED", r.body.errcode)
  end)
end)
