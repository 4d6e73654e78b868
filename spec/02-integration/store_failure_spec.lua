-- A database that fails is an error at the edge, never an empty answer: a
-- busy or broken database must not make /sync answer "nothing new" with a
-- later next_batch (the client would skip what it missed), and /messages
-- and /members must not answer empty lists.
--
-- The failures are real engine failures: the server's connection is given
-- a real SQLite handle on a file that is not a database (every statement
-- fails with SQLITE_NOTADB), and a second connection holds the write lock
-- while the server has a short busy timeout (SQLITE_BUSY).
local tesths = require "support.hs"
local tmp = require "support.tmpdb"
local sqlite = require("loom.core").sqlite

local enc = tesths.enc

local V3 = "/_matrix/client/v3"

local function timeline_bodies(sync, room)
  local out = {}
  local j = sync.rooms and sync.rooms.join and sync.rooms.join[room]
  for _, ev in ipairs(j and j.timeline.events or {}) do
    if ev.type == "m.room.message" then out[#out + 1] = ev.content.body end
  end
  return out
end

describe("a failing database", function()
  local t, alice, room, path, garbage

  before_each(function()
    path = tmp.path()
    t = tesths.start { database = { path = path, busy_timeout = 100 } }
    alice = t:register("alice")
    room = t:request("POST", V3 .. "/createRoom", { preset = "private_chat" }, alice.access_token).json.room_id
    assert.is_string(room)
    garbage = os.tmpname()
    local f = assert(io.open(garbage, "wb"))
    f:write(("this is not an SQLite database\n"):rep(200))
    f:close()
  end)

  after_each(function()
    t:stop()
    tmp.remove(path)
    os.remove(garbage)
  end)

  local function send(body, txn)
    return t:request("PUT", ("%s/rooms/%s/send/m.room.message/%s"):format(V3, enc(room), txn),
      { msgtype = "m.text", body = body }, alice.access_token)
  end

  -- Give the server's connection a handle whose every statement fails in
  -- the engine; returns a function that puts the real one back.
  local function break_reads()
    local conn = t.hs.store.conn
    local bad = assert(sqlite.open(garbage, { busy_timeout = 0 }))
    local handle, stmts, nstmts = conn.handle, conn.stmts, conn.nstmts
    conn.handle, conn.stmts, conn.nstmts = bad, {}, 0
    return function()
      conn.handle, conn.stmts, conn.nstmts = handle, stmts, nstmts
      bad:close()
    end
  end

  it("answers 500 M_UNKNOWN, logs it, and the same since token then returns everything", function()
    assert.equal(200, send("before", "t0").status)
    local initial = t:request("GET", V3 .. "/sync", nil, alice.access_token)
    assert.equal(200, initial.status)
    local since = initial.json.next_batch
    assert.is_string(since)
    assert.same({ "before" }, timeline_bodies(initial.json, room))
    assert.equal(200, send("one", "t1").status)
    assert.equal(200, send("two", "t2").status)

    local restore = break_reads()
    local r = t:request("GET", V3 .. "/sync?since=" .. enc(since), nil, alice.access_token)
    local m = t:request("GET", ("%s/rooms/%s/messages?dir=b"):format(V3, enc(room)), nil, alice.access_token)
    local mem = t:request("GET", ("%s/rooms/%s/members"):format(V3, enc(room)), nil, alice.access_token)
    local full = t:request("GET", V3 .. "/sync", nil, alice.access_token)
    restore()

    for what, resp in pairs { sync = r, messages = m, members = mem, initial_sync = full } do
      assert.equal(500, resp.status, what)
      assert.equal("M_UNKNOWN", resp.json.errcode, what)
      assert.is_nil(resp.json.next_batch, what)
      assert.is_nil(resp.json.chunk, what)
      -- nothing about the database reaches the client
      assert.is_nil(resp.body:find("sqlite", 1, true), what)
      assert.is_nil(resp.body:find("traceback", 1, true), what)
    end
    local line = t:logged("^error: GET /_matrix/client/v3/sync failed: database error %(sqlite_notadb%)")
    assert.is_string(line)
    assert.is_string(t:logged("^error: GET /_matrix/client/v3/rooms/[^ ]+/messages failed: database error"))
    assert.is_string(t:logged("^error: GET /_matrix/client/v3/rooms/[^ ]+/members failed: database error"))

    -- the failure is gone: the same token gives what was sent since
    local again = t:request("GET", V3 .. "/sync?since=" .. enc(since), nil, alice.access_token)
    assert.equal(200, again.status)
    assert.same({ "one", "two" }, timeline_bodies(again.json, room))
    assert.are_not.equal(since, again.json.next_batch)
    local page = t:request("GET", ("%s/rooms/%s/messages?dir=b&limit=3"):format(V3, enc(room)), nil,
      alice.access_token)
    assert.equal(200, page.status)
    assert.equal(3, #page.json.chunk)
    assert.equal("two", page.json.chunk[1].content.body)
    assert.equal(200, t:request("GET", ("%s/rooms/%s/members"):format(V3, enc(room)), nil,
      alice.access_token).status)
  end)

  it("a send that fails is not half-done: the sync token does not move past it", function()
    local since = t:request("GET", V3 .. "/sync", nil, alice.access_token).json.next_batch
    local restore = break_reads()
    local failed = send("lost", "t1")
    restore()
    assert.equal(500, failed.status)
    assert.equal("M_UNKNOWN", failed.json.errcode)
    assert.equal(200, send("kept", "t2").status)
    local r = t:request("GET", V3 .. "/sync?since=" .. enc(since), nil, alice.access_token)
    assert.equal(200, r.status)
    assert.same({ "kept" }, timeline_bodies(r.json, room))
    -- the failed transaction ID was not recorded: sending it again works
    assert.equal(200, send("lost", "t1").status)
  end)

  it("an alias taken between createRoom's check and its write rolls the whole room back", function()
    local directory = require "loom.api.client.directory"
    assert.is_true(t.hs.store:add_alias("#taken:test.local", room, alice.user_id))
    local resolve = directory.resolve
    directory.resolve = function() return nil end      -- the check sees the alias free
    local ok, r = pcall(t.request, t, "POST", V3 .. "/createRoom", { room_alias_name = "taken" },
      alice.access_token)
    directory.resolve = resolve
    assert.is_true(ok, r)
    assert.equal(400, r.status)
    assert.equal("M_ROOM_IN_USE", r.json.errcode)
    assert.equal(room, t.hs.store:alias_room("#taken:test.local"))
    local joined = t:request("GET", V3 .. "/joined_rooms", nil, alice.access_token).json.joined_rooms
    assert.same({ room }, joined)
  end)

  it("a write lock held by another connection makes a send answer 500, and nothing is skipped", function()
    local since = t:request("GET", V3 .. "/sync", nil, alice.access_token).json.next_batch
    local other = assert(sqlite.open(path, { busy_timeout = 0 }))
    assert(other:exec("BEGIN IMMEDIATE"))
    local blocked = send("blocked", "t1")
    -- reads are not blocked by a writer in WAL mode: /sync still answers, with nothing new
    local quiet = t:request("GET", V3 .. "/sync?since=" .. enc(since) .. "&timeout=0", nil, alice.access_token)
    assert(other:exec("ROLLBACK"))
    other:close()
    assert.equal(500, blocked.status)
    assert.equal("M_UNKNOWN", blocked.json.errcode)
    assert.is_string(t:logged("^error: PUT /_matrix/client/v3/rooms/[^ ]+/send/"))
    assert.equal(200, quiet.status)
    assert.same({}, timeline_bodies(quiet.json, room))
    assert.equal(since, quiet.json.next_batch)
    assert.equal(200, send("after", "t1").status)
    local r = t:request("GET", V3 .. "/sync?since=" .. enc(since), nil, alice.access_token)
    assert.same({ "after" }, timeline_bodies(r.json, room))
  end)
end)
