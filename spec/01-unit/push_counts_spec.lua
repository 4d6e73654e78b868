-- loom.store.push_actions against a model: the unread counts kept per room,
-- thread and user (schema 51) must always equal a count of the rows made
-- from the receipts as the spec's threaded read receipts say, after any
-- sequence of notifications and receipts; /notifications pages must give
-- every row once, newest first, however small the per-room read; the rows
-- of schema 33/38 carry over into schema 51 with their counts; a purged
-- room leaves no notification rows. Seeded; PUSH_COUNTS_SEED replays.
local tmp = require "support.tmpdb"

local SEED = tonumber(os.getenv("PUSH_COUNTS_SEED") or "") or os.time()
local USERS = { "@u1:test", "@u2:test", "@u3:test", "@u4:test" }
local ROOMS = { "!r1:test", "!r2:test" }

-- Persist a message (a thread reply when root is given) and give its
-- stream ordering.
local function message(s, room, depth, prev, id, root)
  local extra = { content = { body = "x" } }
  if root then extra.content["m.relates_to"] = { rel_type = "m.thread", event_id = root } end
  return assert(s:persist(id, tmp.message(room, depth, { prev }, extra))).stream_ordering
end

-- The model: rows[i] = { so, room, thread, user, highlight, event_id };
-- receipts[room][user][thread or ""][type] = stream ordering.
local function unread(m, row)
  local r = ((m.receipts[row.room] or {})[row.user]) or {}
  local function at(thread)
    local t = r[thread] or {}
    return math.max(t["m.read"] or 0, t["m.read.private"] or 0)
  end
  return row.so > math.max(at(""), at(row.thread))
end

local function model_counts(m, user)
  local out = {}
  for _, row in ipairs(m.rows) do
    if row.user == user and unread(m, row) then
      local room = out[row.room] or { threads = {} }
      out[row.room] = room
      local key = row.thread == "main" and "main" or row.thread
      local c
      if key == "main" then room.main = room.main or { 0, 0 }; c = room.main
      else room.threads[key] = room.threads[key] or { 0, 0 }; c = room.threads[key] end
      c[1], c[2] = c[1] + 1, c[2] + (row.highlight and 1 or 0)
    end
  end
  return out
end

describe("store: push counts and notifications (seed " .. SEED .. ")", function()
  local s, path
  before_each(function() s, path = tmp.open_store() end)
  after_each(function() tmp.close_store(s, path) end)

  it("keeps the unread counts equal to the rows after the receipts, per room and thread", function()
    math.randomseed(SEED)
    local m = { rows = {}, receipts = {} }
    local rooms = {}
    for i, room in ipairs(ROOMS) do
      assert(s:persist("$c" .. i, tmp.message(room, 1, {}, { type = "m.room.create", state_key = "" })))
      rooms[room] = { depth = 1, last = "$c" .. i, events = {}, roots = {} }
    end
    for step = 1, 300 do
      local what = math.random(10)
      if what <= 6 then
        -- a message notifying some users, in the main timeline or a thread
        local room_id = ROOMS[math.random(#ROOMS)]
        local room = rooms[room_id]
        local root = #room.roots > 0 and math.random(3) == 1 and room.roots[math.random(#room.roots)] or nil
        local id = ("$e%d"):format(step)
        room.depth = room.depth + 1
        local so = message(s, room_id, room.depth, room.last, id, root)
        room.last = id
        room.events[#room.events + 1] = { id = id, so = so, thread = root or "main" }
        if not root and math.random(3) == 1 then room.roots[#room.roots + 1] = id end
        local rows = {}
        for _, u in ipairs(USERS) do
          if math.random(3) > 1 then
            local hl = math.random(4) == 1
            rows[#rows + 1] = { u, hl, hl and { "notify", { set_tweak = "highlight" } } or nil }
            m.rows[#m.rows + 1] = { so = so, room = room_id, thread = root or "main", user = u, highlight = hl,
              event_id = id }
          end
        end
        s:add_push_actions(room_id, so, id, rows)
      else
        -- a receipt (unthreaded, or for the main timeline or a thread) at some event
        local room_id = ROOMS[math.random(#ROOMS)]
        local room = rooms[room_id]
        if #room.events > 0 then
          local e = room.events[math.random(#room.events)]
          local user = USERS[math.random(#USERS)]
          local kind = math.random(3)
          local thread = kind == 1 and "" or kind == 2 and "main" or e.thread
          local rtype = math.random(2) == 1 and "m.read" or "m.read.private"
          local ok = s:set_receipt { room_id = room_id, receipt_type = rtype, user_id = user,
            thread_id = thread ~= "" and thread or nil, event_id = e.id, event_stream = e.so, ts = step }
          if ok then
            m.receipts[room_id] = m.receipts[room_id] or {}
            local r = m.receipts[room_id]
            r[user] = r[user] or {}
            r[user][thread] = r[user][thread] or {}
            r[user][thread][rtype] = e.so
          end
        end
      end
      for _, u in ipairs(USERS) do
        local want = model_counts(m, u)
        assert.same(want, s:unread_thread_counts(u), ("seed %d step %d user %s"):format(SEED, step, u))
        local flat = {}
        for room, c in pairs(want) do
          local n, h = 0, 0
          if c.main then n, h = c.main[1], c.main[2] end
          for _, t in pairs(c.threads) do n, h = n + t[1], h + t[2] end
          flat[room] = { n, h }
        end
        assert.same(flat, s:unread_counts(u), ("seed %d step %d user %s"):format(SEED, step, u))
      end
    end

    -- /notifications: every row once, newest first, with a small per-room read
    for _, u in ipairs(USERS) do
      for _, only in ipairs { false, true } do
        local want = {}
        for i = #m.rows, 1, -1 do
          local row = m.rows[i]
          if row.user == u and (not only or row.highlight) then want[#want + 1] = row end
        end
        table.sort(want, function(a, b) return a.so > b.so end)
        for _, scan in ipairs { 1, 3, 7, 2000 } do
          local got, from, pages = {}, nil, 0
          repeat
            local list, next_from = s:notifications(u, { from = from, limit = 5, highlight = only, scan = scan })
            pages = pages + 1
            for _, n in ipairs(list) do got[#got + 1] = n end
            if #list == 5 then from = list[#list].stream_ordering else from = next_from end
            assert(pages < 1000, "pages never end")
          until from == nil
          assert.equal(#want, #got, ("seed %d user %s scan %d"):format(SEED, u, scan))
          for i, w in ipairs(want) do
            local g = got[i]
            assert.equal(w.event_id, g.event_id)
            assert.equal(w.room, g.room_id)
            assert.equal(w.highlight, g.highlight)
            assert.equal(not unread(m, w), g.read)
            assert.same(w.highlight and { "notify", { set_tweak = "highlight" } } or { "notify" }, g.actions)
          end
        end
      end
    end
  end)

  it("records an event's rows once: the same event again changes nothing", function()
    assert(s:persist("$c", tmp.message("!r:test", 1, {}, { type = "m.room.create", state_key = "" })))
    local so = message(s, "!r:test", 2, "$c", "$m")
    s:add_push_actions("!r:test", so, "$m", { { "@a:test", true }, { "@b:test", false }, { "@a:test", false } })
    s:add_push_actions("!r:test", so, "$m", { { "@a:test", true }, { "@b:test", false } })
    assert.same({ ["!r:test"] = { 1, 1 } }, s:unread_counts("@a:test"))
    assert.same({ ["!r:test"] = { 1, 0 } }, s:unread_counts("@b:test"))
  end)

  it("leaves no notification rows behind when the room is purged", function()
    assert(s:persist("$c", tmp.message("!r:test", 1, {}, { type = "m.room.create", state_key = "" })))
    local so = message(s, "!r:test", 2, "$c", "$m")
    s:add_push_actions("!r:test", so, "$m", { { "@a:test", true, { "notify", { set_tweak = "sound" } } } })
    assert.equal(1, s.conn:value("SELECT count(*) FROM push_notifs"))
    assert.is_true(s:purge_room("!r:test"))
    for _, t in ipairs { "push_notifs", "push_events", "push_counts" } do
      assert.equal(0, s.conn:value("SELECT count(*) FROM " .. t), t)
    end
    assert.same({}, s:unread_counts("@a:test"))
    assert.same({}, (s:notifications("@a:test", { limit = 10 })))
  end)
end)

describe("schema 51 carries the notification rows of schema 38 over", function()
  it("with their actions, threads, times and unread counts", function()
    local dir = tmp.dir()
    local path = tmp.path()
    local migrate = require "loom.db.migrate"
    assert(os.execute("mkdir -p '" .. dir .. "/sqlite'"))
    for _, mig in ipairs(migrate.list("sqlite")) do
      if mig.version <= 50 then assert(os.execute(("cp '%s' '%s/sqlite/'"):format(mig.path, dir))) end
    end
    local db = require "loom.db"
    local conn = assert(db.open { path = path, migrations_dir = dir })
    local rows = {
      -- user, room, so, event, highlight, actions, thread, ts
      { "@a:test", "!r:test", 10, "$10", 1, '["notify",{"set_tweak":"highlight"}]', "main", 100 },
      { "@a:test", "!r:test", 11, "$11", 0, '["notify"]', "$root", 110 },
      { "@a:test", "!r:test", 12, "$12", 0, nil, "main", 120 },
      { "@b:test", "!r:test", 10, "$10", 0, '["notify"]', "main", 100 },
      { "@b:test", "!q:test", 13, "$13", 1, '["notify",{"set_tweak":"highlight"}]', "main", 130 },
    }
    for _, r in ipairs(rows) do
      conn:run([[INSERT INTO event_push_actions (user_id, room_id, stream_ordering, event_id, highlight, actions,
        thread_id, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)]], table.unpack(r, 1, 8))
    end
    -- @a read the main timeline up to 10; @b read !r up to 10 unthreaded
    conn:run([[INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id, event_stream, ts, stream_id)
      VALUES ('!r:test', 'm.read', '@a:test', 'main', '$10', 10, 1, 1),
             ('!r:test', 'm.read.private', '@b:test', '', '$10', 10, 1, 2)]])
    conn:close()
    local s = assert(require("loom.store").open { path = path })
    assert.equal(0, s.conn:value("SELECT count(*) FROM sqlite_master WHERE name = 'event_push_actions'"))
    assert.same({ ["!r:test"] = { main = { 1, 0 }, threads = { ["$root"] = { 1, 0 } } } },
      s:unread_thread_counts("@a:test"))
    assert.same({ ["!q:test"] = { 1, 1 } }, s:unread_counts("@b:test"))
    local list = s:notifications("@a:test", { limit = 10 })
    assert.equal(3, #list)
    assert.same({ "$12", "$11", "$10" }, { list[1].event_id, list[2].event_id, list[3].event_id })
    assert.same({ false, false, true }, { list[1].read, list[2].read, list[3].read })
    assert.same({ "notify", { set_tweak = "highlight" } }, list[3].actions)
    assert.equal(100, list[3].ts)
    -- counting goes on from the carried counts
    s:add_push_actions("!r:test", 14, "$14", { { "@a:test", false } })
    assert.same({ ["!r:test"] = { 3, 0 } }, s:unread_counts("@a:test"))
    s:close()
    tmp.remove(path)
    tmp.remove_dir(dir)
  end)
end)
