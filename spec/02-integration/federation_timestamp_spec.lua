-- Jumping to a date over federation (Server-Server API, "Timestamp to
-- event"): GET /_matrix/federation/v1/timestamp_to_event/{roomId} between
-- two loom servers on 127.0.0.1: a server with nobody in the room is
-- refused, a joined one gets the closest event in the direction it asks.
local async = require "loom.async"
local files = require "support.files"
local fed = require "support.fed"
local fedclient = require "loom.federation.client"

local E = fedclient.encode
local task = fed.task

local dir, a, b

describe("federation timestamp_to_event", function()
  local alice, bob, room, msg

  setup(function()
    dir = files.tmpdir("loom-fedts")
    a = fed.server(dir, "a")
    b = fed.server(dir, "b")
    alice = a:register("alice")
    bob = b:register("bob")
    room = a:create_room(alice, { preset = "public_chat" })
    local id = a:send(alice.access_token, room, { msgtype = "m.text", body = "hello" }).json.event_id
    msg = a:request("GET", "/_matrix/client/v3/rooms/" .. E(room) .. "/event/" .. E(id), nil,
      alice.access_token).json
  end)

  teardown(function()
    a:stop(); b:stop()
    async.finish_closing()
    files.remove_tree(dir)
  end)

  local function ask(query)
    return task(function()
      local status, body = b.hs.federation:request(a.name, "GET", "/_matrix/federation/v1/timestamp_to_event/"
        .. E(room), { query = query })
      return { status = status, body = body }
    end)
  end

  it("refuses a server with nobody in the room, then answers it once joined", function()
    local r = ask { ts = tostring(msg.origin_server_ts), dir = "b" }
    assert.equal(403, r.status)
    assert.equal("M_FORBIDDEN", r.body.errcode)
    local j = b:run(function()
      return b:call("POST", "/_matrix/client/v3/join/" .. E(room) .. "?server_name=" .. E(a.name), {},
        bob.access_token)
    end, 20000)
    assert.equal(200, j.status, j.body)
    r = ask { ts = tostring(msg.origin_server_ts), dir = "b" }
    assert.equal(200, r.status)
    assert.equal(msg.event_id, r.body.event_id)
    assert.equal(msg.origin_server_ts, r.body.origin_server_ts)
    r = ask { ts = "0", dir = "b" }
    assert.equal(404, r.status)
    assert.equal("M_NOT_FOUND", r.body.errcode)
    r = ask { ts = "0", dir = "sideways" }
    assert.equal(400, r.status)
    assert.equal("M_INVALID_PARAM", r.body.errcode)
    r = ask { dir = "f" }
    assert.equal(400, r.status)
  end)
end)
