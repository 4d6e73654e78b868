-- The relations index (loom.store.relations, schema 41): what persist
-- records and what it never does, redactions taking rows out, the thread
-- list following its latest reply, pages both ways, the room a child must
-- share with its parent, and the store's memory of events without
-- relations (filled only by what commits, emptied by a new relation).
local tmp = require "support.tmpdb"

local msg = tmp.message

describe("relations store", function()
  local path, s

  before_each(function() s, path = tmp.open_store() end)
  after_each(function() tmp.close_store(s, path) end)

  local depth = 0
  local function put(id, content, opts, room)
    depth = depth + 1
    return assert(s:persist(id, msg(room or "!r:t", depth, nil, { type = "m.room.message", content = content }), opts))
  end
  local function rel(rel_type, parent, extra)
    local c = { body = "x", ["m.relates_to"] = { rel_type = rel_type, event_id = parent } }
    for k, v in pairs(extra or {}) do c["m.relates_to"][k] = v end
    return c
  end
  local function page(parent, opts)
    opts = opts or {}
    opts.limit = opts.limit or 50
    return assert(s:relations_page("!r:t", parent, opts))
  end

  it("records timeline children, never outliers, rejected or soft-failed ones; backfilled ones too", function()
    put("$p", { body = "parent" })
    put("$a", rel("m.annotation", "$p", { key = "k" }))
    put("$out", rel("m.annotation", "$p", { key = "k" }), { outlier = true })
    put("$rej", rel("m.annotation", "$p", { key = "k" }), { rejected = "no" })
    put("$soft", rel("m.annotation", "$p", { key = "k" }), { soft_failed = true })
    put("$back", rel("m.thread", "$p"), { backfilled = true })
    put("$bad1", { ["m.relates_to"] = { rel_type = 5, event_id = "$p" } })
    put("$bad2", { ["m.relates_to"] = "$p" })
    put("$self", rel("m.reference", "$self"))
    local ids = page("$p").ids
    table.sort(ids)
    assert.same({ "$a", "$back" }, ids)
    assert.is_true(s:annotation_sent("!r:t", "$p", "@a:test", "m.room.message", "k"))
    assert.is_false(s:annotation_sent("!r:t", "$p", "@a:test", "m.room.message", "other"))
  end)

  it("pages both ways with tokens that do not overlap", function()
    put("$p", { body = "parent" })
    local kids = {}
    for i = 1, 7 do kids[i] = "$k" .. i; put(kids[i], rel("m.reference", "$p")) end
    local seen, from = {}, nil
    repeat
      local pg = page("$p", { limit = 3, from = from })
      for _, id in ipairs(pg.ids) do seen[#seen + 1] = id end
      from = pg.next
    until not from
    assert.same({ "$k7", "$k6", "$k5", "$k4", "$k3", "$k2", "$k1" }, seen)
    seen, from = {}, nil
    repeat
      local pg = page("$p", { limit = 2, from = from, dir = "f" })
      for _, id in ipairs(pg.ids) do seen[#seen + 1] = id end
      from = pg.next
    until not from
    assert.same(kids, seen)
    local none, err, code = s:relations_page("!r:t", "$p", { limit = 2, from = "bogus" })
    assert.is_nil(none)
    assert.is_string(err)
    assert.equal("bad_token", code)
  end)

  it("takes a redacted child out; the thread list follows the latest remaining reply", function()
    put("$root", { body = "root" })
    put("$r1", rel("m.thread", "$root"))
    put("$r2", rel("m.thread", "$root"))
    put("$other", { body = "another root" })
    put("$o1", rel("m.thread", "$other"))
    assert.same({ "$other", "$root" }, s:threads_page("!r:t", { limit = 10 }).ids)
    s:record_redaction("$o1", "$red1")
    assert.same({ "$root" }, s:threads_page("!r:t", { limit = 10 }).ids)
    local sum = s:thread_summaries({ "$root" }, "@u:t", {})["$root"]
    assert.equal(2, sum.count)
    assert.equal("$r2", sum.latest_id)
    s:record_redaction("$r2", "$red2")
    sum = s:thread_summaries({ "$root" }, "@u:t", {})["$root"]
    assert.equal(1, sum.count)
    assert.equal("$r1", sum.latest_id)
    assert.same({ "$r1" }, page("$root").ids)
  end)

  it("counts a child only in its parent's room", function()
    put("$p", { body = "parent" })
    put("$elsewhere", rel("m.thread", "$p"), nil, "!other:t")
    put("$ref", rel("m.reference", "$p"), nil, "!other:t")
    assert.same({}, s:thread_summaries({ "$p" }, "@u:t", {}))
    assert.same({}, s:relations_of_parents({ "$p" }, {}))
    assert.same({}, s:threads_page("!other:t", { limit = 10 }).ids)
  end)

  it("remembers committed events without relations, and forgets one when a relation comes", function()
    put("$p", { body = "parent" })
    assert.same({}, s:relations_unknown({ "$p" }))
    -- a child stored before its parent: the parent is not taken for relationless
    put("$early", rel("m.thread", "$late"))
    put("$late", { body = "arrives late" })
    assert.same({ "$late" }, s:relations_unknown({ "$late" }))
    -- a relation to a remembered event takes it out at once
    put("$c", rel("m.replace", "$p"))
    assert.same({ "$p" }, s:relations_unknown({ "$p" }))
    -- a rolled-back batch notes nothing
    local ok = pcall(s.transaction, s, function()
      put("$gone", { body = "rolled back" })
      error("abort")
    end)
    assert.is_false(ok)
    assert.same({ "$gone" }, s:relations_unknown({ "$gone" }))
    -- inside an open transaction nothing is noted either
    s:transaction(function()
      s:note_relationless({ "$x" })
      return true
    end)
    assert.same({ "$x" }, s:relations_unknown({ "$x" }))
  end)

  it("stores reports and lists them newest first", function()
    local a = s:add_report { reporter = "@a:t", room_id = "!r:t", event_id = "$e", reason = "spam", score = -50 }
    local b = s:add_report { reporter = "@b:t", user_id = "@c:t", reason = "rude" }
    assert.is_true(b > a)
    local list = s:reports_list(nil, 10)
    assert.equal(2, #list)
    assert.equal(b, list[1].report_id)
    assert.equal("@c:t", list[1].user_id)
    assert.is_nil(list[1].event_id)
    assert.equal(-50, list[2].score)
    assert.same({ list[2] }, s:reports_list(b, 10))
  end)
end)
