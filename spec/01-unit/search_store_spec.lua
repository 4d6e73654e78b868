-- The search index (loom.store.search, schema 14): what is indexed when an
-- event is persisted, what never is, redactions leaving it, hostile search
-- text, ordering, counting and the migration over existing events.
local tmp = require "support.tmpdb"
local filter = require "loom.store.filter"
local db = require "loom.db"
local migrate = require "loom.db.migrate"

local msg = tmp.message

describe("search index", function()
  local path, s

  before_each(function() s, path = tmp.open_store() end)
  after_each(function() tmp.close_store(s, path) end)

  local depth = 0
  local function put(id, room, etype, content, opts, extra)
    depth = depth + 1
    local ev = msg(room, depth, nil, { type = etype, content = content })
    if etype == "m.room.name" or etype == "m.room.topic" then ev.state_key = "" end
    for k, v in pairs(extra or {}) do ev[k] = v end
    return assert(s:persist(id, ev, opts))
  end
  local function ids(rows)
    local out = {}
    for i, r in ipairs(rows) do out[i] = r.event_id end
    return out
  end
  local function find(text, q)
    q = q or {}
    q.words = s:search_words(text)
    q.room_nids = q.room_nids or { s:room_nid("!r:t") }
    q.limit = q.limit or 50
    return ids(s:search_events(q))
  end

  it("indexes content.body, content.name and content.topic of live timeline events", function()
    put("$m", "!r:t", "m.room.message", { msgtype = "m.text", body = "Hello martians" })
    put("$n", "!r:t", "m.room.name", { name = "Martian council" })
    put("$t", "!r:t", "m.room.topic", { topic = "all about martians" })
    put("$o", "!r:t", "m.room.other", { body = "martians elsewhere" })
    put("$x", "!r:t", "m.room.message", { body = 42 })
    assert.same({ "$m", "$n", "$t" }, (function() local l = find("martian"); table.sort(l); return l end)())
    assert.same({ "$t" }, find("martian", { keys = { "content.topic" } }))
    assert.same({ "$m" }, find("hello MARTIANS"))       -- every word, any case
    assert.same({}, find("hello council"))
  end)

  it("never indexes outliers, backfilled, rejected or soft-failed events", function()
    put("$out", "!r:t", "m.room.message", { body = "secret" }, { outlier = true })
    put("$back", "!r:t", "m.room.message", { body = "secret" }, { backfilled = true })
    put("$rej", "!r:t", "m.room.message", { body = "secret" }, { rejected = "no" })
    put("$soft", "!r:t", "m.room.message", { body = "secret" }, { soft_failed = true })
    assert.same({}, find("secret"))
    assert.is_false(s:is_search_indexed("$out"))
    assert.is_false(s:is_search_indexed("$back"))
  end)

  it("drops a redacted event from the index", function()
    put("$a", "!r:t", "m.room.message", { body = "keep this" })
    put("$b", "!r:t", "m.room.message", { body = "remove this" })
    assert.same({ "$b", "$a" }, find("this", { order = "recent" }))
    s:record_redaction("$b", "$red")
    assert.same({ "$a" }, find("this", { order = "recent" }))
    assert.is_false(s:is_search_indexed("$b"))
    -- an outlier redacted before it joins the timeline stays out of the index
    put("$late", "!r:t", "m.room.message", { body = "late this" }, { outlier = true })
    s:record_redaction("$late", "$red2")
    put("$late", "!r:t", "m.room.message", { body = "late this" })
    assert.is_false(s:is_search_indexed("$late"))
    -- while one that was not redacted is indexed when it joins
    put("$late2", "!r:t", "m.room.message", { body = "late this" }, { outlier = true })
    put("$late2", "!r:t", "m.room.message", { body = "late this" })
    assert.is_true(s:is_search_indexed("$late2"))
  end)

  it("is written in the event's transaction: a rollback leaves no entry", function()
    local ok = pcall(s.transaction, s, function()
      put("$gone", "!r:t", "m.room.message", { body = "vanishing" })
      error("boom")
    end)
    assert.is_false(ok)
    assert.is_nil(s:room_nid("!r:t"))
    put("$here", "!r:t", "m.room.message", { body = "present" })
    assert.same({}, find("vanishing"))
    assert.equal(1, s.conn:value("SELECT count(*) FROM event_search"))
  end)

  it("treats search text as words, never as an FTS5 expression", function()
    put("$q", "!r:t", "m.room.message", { body = 'he said "near" AND (or) NOT col:value' })
    for _, text in ipairs { '"', '""', 'AND (', 'NEAR', 'NEAR(a b)', 'OR', '*', '^x', 'body:x', 'a"b', '(', ')',
        '-', '+', 'NOT', '{a b}', '\0', "'", "\\", ("x"):rep(5000), ("a "):rep(5000), "é\xff\xfe" } do
      local ok, res = pcall(find, text)
      assert.is_true(ok, text:sub(1, 20) .. ": " .. tostring(res))
      assert.is_table(res)
    end
    assert.same({ "$q" }, find('"near'))
    assert.same({ "$q" }, find('AND ('))
    assert.same({ "$q" }, find('NEAR'))
    assert.same({ "$q" }, find('col:value'))
    assert.same({}, find(""))
    assert.same({}, find("  !!  "))
    -- words of non-ASCII punctuation or emoji alone are no words; letters of any script are
    assert.same({ "$q" }, find("said \u{2014} \u{1F600} \u{00AB}near\u{00BB}"))
    assert.same({}, s:search_words("\u{2014} \u{1F600}\u{FE0F} \u{3002}"))
    put("$u", "!r:t", "m.room.message", { body = "Na\u{00EF}ve \u{00C9}COLE \u{6771}\u{4EAC}" })
    assert.same({ "$u" }, find("naive \u{00E9}cole"))
    assert.same({ "$u" }, find("\u{6771}\u{4EAC}"))
    assert.same({}, s:search_words(nil))
    assert.equal(32, #s:search_words(("w%d "):rep(100):format(table.unpack((function()
      local t = {}
      for i = 1, 100 do t[i] = i end
      return t
    end)()))))
  end)

  it("orders by rank or by recency, pages with offset and before, and counts", function()
    put("$1", "!r:t", "m.room.message", { body = "cat" })
    put("$2", "!r:t", "m.room.message", { body = "cat cat cat cat" })
    put("$3", "!r:t", "m.room.message", { body = "a cat among many many other words in a long sentence" })
    local rank = s:search_events { words = s:search_words("cat"), room_nids = { s:room_nid("!r:t") }, limit = 10 }
    assert.equal("$2", rank[1].event_id)
    assert.equal("$3", rank[3].event_id)
    assert.is_true(rank[1].rank >= rank[2].rank and rank[2].rank >= rank[3].rank)
    assert.same({ "$3", "$2", "$1" }, find("cat", { order = "recent" }))
    local nid2 = rank[1].event_nid
    assert.same({ "$1" }, find("cat", { order = "recent", before = nid2 }))
    assert.same({ "$1", "$3" }, find("cat", { offset = 1 }))
    assert.same({ "$2" }, find("cat", { limit = 1 }))
    assert.equal(3, s:search_count { words = s:search_words("cat"), room_nids = { s:room_nid("!r:t") } })
    assert.equal(1, s:search_count { words = s:search_words("cat"), room_nids = { s:room_nid("!r:t") },
      before = nid2 })
    assert.equal(1, s:search_count { words = s:search_words("cat"), room_nids = { s:room_nid("!r:t") },
      after_stream = rank[1].stream_ordering })
    assert.equal(2, s:search_count { words = s:search_words("cat"), room_nids = { s:room_nid("!r:t") },
      max_stream = rank[1].stream_ordering })
  end)

  it("keeps to the given rooms and applies the filter's senders and types", function()
    put("$r1", "!r:t", "m.room.message", { body = "shared word" }, nil, { sender = "@a:t" })
    put("$r2", "!r:t", "m.room.message", { body = "shared word" }, nil, { sender = "@b:t" })
    put("$o1", "!other:t", "m.room.message", { body = "shared word" })
    put("$t1", "!r:t", "m.room.topic", { topic = "shared word" }, nil, { sender = "@a:t" })
    assert.same({ "$t1", "$r2", "$r1" }, find("shared", { order = "recent" }))
    local f = assert(filter.compile { senders = { "@a:t" } })
    assert.same({ "$t1", "$r1" }, find("shared", { order = "recent", filter = f }))
    f = assert(filter.compile { types = { "m.room.message" }, not_senders = { "@a:t" } })
    assert.same({ "$r2" }, find("shared", { order = "recent", filter = f }))
    assert.same({ "$r1" }, find("shared", { order = "recent", sender = "@a:t", keys = { "content.body" } }))
    assert.same({}, find("shared", { room_nids = {} }))
    assert.same({ "$o1" }, find("shared", { room_nids = { s:room_nid("!other:t") } }))
  end)

  it("indexes events stored before the migration", function()
    put("$old", "!r:t", "m.room.message", { body = "ancient scroll" })
    put("$oldred", "!r:t", "m.room.message", { body = "ancient redacted" })
    s:record_redaction("$oldred", "$red")
    put("$oldout", "!r:t", "m.room.message", { body = "ancient outlier" }, { outlier = true })
    local conn = s.conn
    assert(conn:exec("DROP TABLE event_search; DELETE FROM schema_version WHERE version = 14"))
    s:close()
    conn = assert(db.open { path = path })
    assert.equal(0, migrate.run(conn))     -- db.open migrates: already done
    conn:close()
    s = assert(require("loom.store").open { path = path })
    assert.same({ "$old" }, find("ancient"))
  end)
end)
