-- The federation read endpoints (event, state, state_ids, event_auth,
-- backfill, get_missing_events) between two loom servers on 127.0.0.1:
-- what a server that is not in a room, or asks badly, is answered. (Serving
-- a room's graph to a joined server is covered with joins.)
local async = require "loom.async"
local files = require "support.files"
local fed = require "support.fed"

local task = fed.task

local dir, a, b

local function fed_server(name) return fed.server(dir, name) end

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
