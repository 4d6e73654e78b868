-- Relations and jumping to a date between two loom servers on 127.0.0.1:
-- GET /_matrix/federation/v1/timestamp_to_event/{roomId} (Server-Server
-- API, "Timestamp to event") refuses a server with nobody in the room and
-- answers a joined one with the closest event in the direction it asks;
-- relations that arrive over federation are indexed like local ones (the
-- edit, the thread reply and their redaction, seen by the other server's
-- client).
local async = require "loom.async"
local files = require "support.files"
local fed = require "support.fed"
local fedclient = require "loom.federation.client"

local E = fedclient.encode
local task = fed.task

local dir, a, b

describe("federation: timestamp_to_event and relations", function()
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

  -- (bob joined in the test above)
  local function call(t, method, path, body, token)
    return t:run(function() return t:call(method, path, body, token) end, 20000)
  end
  local function until_(pred, limit)
    return a:run(function()
      local waited = 0
      while not pred() and waited < (limit or 5000) do a:sleep(20); waited = waited + 20 end
      return pred()
    end, (limit or 5000) + 2000)
  end
  local function bob_event(id)
    local r = b:request("GET", "/_matrix/client/v3/rooms/" .. E(room) .. "/event/" .. E(id), nil, bob.access_token)
    assert.equal(200, r.status, r.body)
    return r.json
  end

  it("indexes relations that arrive over federation, and their redactions", function()
    local n = 0
    local function send(content)
      n = n + 1
      local r = call(a, "PUT", "/_matrix/client/v3/rooms/" .. E(room) .. "/send/m.room.message/f" .. n, content,
        alice.access_token)
      assert.equal(200, r.status, r.body)
      return r.json.event_id
    end
    local root = send { msgtype = "m.text", body = "root" }
    local edit = send { msgtype = "m.text", body = "* root!",
      ["m.new_content"] = { msgtype = "m.text", body = "root!" },
      ["m.relates_to"] = { rel_type = "m.replace", event_id = root } }
    local reply = send { msgtype = "m.text", body = "in thread",
      ["m.relates_to"] = { rel_type = "m.thread", event_id = root } }
    assert.is_true(until_(function() return b.hs.store:event(reply) ~= nil end), "b never got the reply")
    local seen = bob_event(root).unsigned["m.relations"]
    assert.equal(edit, seen["m.replace"].event_id)
    assert.equal(1, seen["m.thread"].count)
    assert.equal(reply, seen["m.thread"].latest_event.event_id)
    local rel = b:request("GET", "/_matrix/client/v1/rooms/" .. E(room) .. "/relations/" .. E(root), nil,
      bob.access_token)
    assert.equal(2, #rel.json.chunk)
    local threads = b:request("GET", "/_matrix/client/v1/rooms/" .. E(room) .. "/threads", nil, bob.access_token)
    assert.equal(root, threads.json.chunk[1].event_id)
    -- alice redacts her edit: b takes it out of the aggregation
    local red = call(a, "PUT", "/_matrix/client/v3/rooms/" .. E(room) .. "/redact/" .. E(edit) .. "/r1", {},
      alice.access_token)
    assert.equal(200, red.status, red.body)
    assert.is_true(until_(function() return b.hs.store:event(red.json.event_id) ~= nil end), "b never got it")
    assert.is_nil(bob_event(root).unsigned["m.relations"]["m.replace"])
  end)
end)
