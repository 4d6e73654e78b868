-- loom.core.state: the loom.State object and the BLOB codecs, against
-- brute-force Lua maps.
local core = require "loom.core"
local cstate = core.state
local model = require "support.statemodel"
local key, apply_map, copy, sorted = model.key, model.apply, model.copy, model.sorted

local MAXI = math.maxinteger

-- A random change: mostly adds and replacements of a few types, some removals.
local function random_delta(rng, m, size)
  local d = {}
  local keys = {}
  for _, v in pairs(m) do keys[#keys + 1] = v end
  table.sort(keys, function(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end)
  for _ = 1, size do
    local r = rng(100)
    if r <= 15 and #keys > 0 then
      local v = keys[rng(#keys)]
      d[#d + 1] = { v[1], v[2], 0 }
    elseif r <= 45 and #keys > 0 then
      local v = keys[rng(#keys)]
      d[#d + 1] = { v[1], v[2], rng(1000000) }
    else
      d[#d + 1] = { rng(6), rng(300), rng(1000000) }
    end
  end
  return d
end

local function check_state(st, m)
  local want = sorted(m)
  assert.equal(#want, #st)
  assert.same(want, st:triples())
  local ts, ks, es = st:entries()
  assert.equal(#want, #ts)
  for i, v in ipairs(want) do
    assert(ts[i] == v[1] and ks[i] == v[2] and es[i] == v[3])
  end
end

describe("loom.State", function()
  it("is a typed object", function()
    local st = cstate.new { { 5, 2, 9 }, { 1, 1, 3 } }
    assert.equal("loom.State (2 entries)", tostring(st))
    assert.equal("loom.State", getmetatable(st).__name)
    assert.equal(2, #st)
    assert.equal(3, st:get(1, 1))
    assert.is_nil(st:get(1, 2))
    assert.same({ { 1, 1, 3 }, { 5, 2, 9 } }, st:triples())
  end)

  it("follows random sequences of changes like a Lua map", function()
    local seed = 12345
    for round = 1, 20 do
      math.randomseed(seed + round)
      local rng = math.random
      local st, m = cstate.new {}, {}
      for _ = 1, 60 do
        local d = random_delta(rng, m, rng(1, 12))
        local before, before_map = st, copy(m)
        local changes
        st, changes = st:apply(d)
        apply_map(m, d)
        check_state(st, m)
        -- lookups of present and absent keys
        for _ = 1, 10 do
          local t, k = rng(7), rng(310)
          local v = m[key(t, k)]
          assert.equal(v and v[3], st:get(t, k))
        end
        -- by type
        for t = 0, 7 do
          local ks, es = st:by_type(t)
          local wk, we = {}, {}
          for _, v in ipairs(sorted(m)) do
            if v[1] == t then wk[#wk + 1] = v[2]; we[#we + 1] = v[3] end
          end
          assert.same(wk, ks)
          assert.same(we, es)
        end
        -- diff and delta against the previous state
        local removed, added = before:diff(st)
        local wr, wa = {}, {}
        for k, v in pairs(before_map) do
          local w = m[k]
          if not w or w[3] ~= v[3] then wr[#wr + 1] = v end
        end
        for k, v in pairs(m) do
          local w = before_map[k]
          if not w or w[3] ~= v[3] then wa[#wa + 1] = v end
        end
        local function sort(l)
          local t = {}
          for _, v in ipairs(l) do t[key(v[1], v[2])] = v end
          return sorted(t)
        end
        assert.same(sort(wr), removed)
        assert.same(sort(wa), added)
        local delta = before:delta(st)
        assert.is_true(before:apply(delta) == st)
        assert.same(delta, changes)
        assert.equal(#sort(wa) + #sort(wr) - (function()
          local both = 0
          for _, v in ipairs(wr) do if m[key(v[1], v[2])] then both = both + 1 end end
          return both
        end)(), #delta)
        -- the set hash depends on the content only
        assert.equal(cstate.new(sorted(m)):hash(), st:hash())
        assert.is_true(cstate.new(sorted(m)) == st)
      end
    end
  end)

  it("lets the later entry win when a delta names a key twice", function()
    local st = cstate.new({}):apply { { 1, 1, 5 }, { 1, 1, 6 }, { 2, 1, 7 }, { 2, 1, 0 } }
    assert.same({ { 1, 1, 6 } }, st:triples())
  end)

  it("treats removals of absent keys as no-ops", function()
    local st = cstate.new { { 1, 1, 5 } }
    local st2 = st:apply { { 9, 9, 0 } }
    assert.is_true(st == st2)
    assert.equal(st:hash(), st2:hash())
  end)

  it("handles NIDs up to the integer limit", function()
    local st = cstate.new { { MAXI, MAXI, MAXI }, { 1, MAXI, 1 }, { MAXI, 1, MAXI - 1 } }
    assert.equal(MAXI, st:get(MAXI, MAXI))
    local blob = cstate.encode_block(st:triples())
    assert.same(st:triples(), cstate.decode_block(blob))
  end)

  it("raises on misuse", function()
    assert.has_error(function() cstate.new { { 1, 1, 1 }, { 1, 1, 2 } } end)
    assert.has_error(function() cstate.new { { 1, 1, 0 } } end)
    assert.has_error(function() cstate.new { { 0, 1, 1 } } end)
    assert.has_error(function() cstate.new { { 1, -1, 1 } } end)
    assert.has_error(function() cstate.new { { 1, 1.5, 1 } } end)
    assert.has_error(function() cstate.new { { 1, "1", 1 } } end)
    assert.has_error(function() cstate.new { 5 } end)
    assert.has_error(function() cstate.new "x" end)
    local st = cstate.new {}
    assert.has_error(function() st:apply { { 1, 1, -1 } } end)
    assert.has_error(function() st:get(1) end)
    assert.has_error(function() st:by_type("m.room.member") end)
    assert.has_error(function() st:diff({}) end)
    assert.has_error(function() cstate.encode_block {} end)
    assert.has_error(function() cstate.encode_block { { 1, 1, 1 }, { 1, 1, 1 } } end)
    assert.has_error(function() cstate.encode_segment({}, {}) end)
    assert.has_error(function() cstate.encode_segment({ 1, 1 }, { {} }) end)
    assert.has_error(function() cstate.encode_segment({ 0 }, { {} }) end)
    assert.has_error(function() cstate.assemble({ 5 }, {}, {}) end)
    assert.has_error(function() cstate.assemble({}, { "x" }, {}) end)
    assert.has_error(function() cstate.bucket_add(nil, -1, 5) end)
    assert.has_error(function() cstate.bucket_add(nil, 1 << 32, 5) end)
    assert.has_error(function() cstate.bucket_add(nil, 1, 0) end)
    assert.has_error(function() cstate.bucket_split("", 7) end)
  end)
end)

describe("state blobs", function()
  local function bad(res, msg, code)
    assert.is_nil(res)
    assert.is_string(msg)
    assert.equal("bad_state_blob", code)
  end

  it("round-trip blocks, removals included, canonically", function()
    math.randomseed(7)
    for _ = 1, 300 do
      local m = {}
      for _ = 1, math.random(1, 80) do
        local t = math.random(1, 3) == 1 and math.random(1, MAXI) or math.random(1, 40)
        local k = math.random(1, 4) == 1 and math.random(1, MAXI) or math.random(1, 1000)
        local e = math.random(1, 3) == 1 and math.random(1, MAXI) or math.random(1, 5000)
        if math.random(1, 5) == 1 then e = 0 end
        m[key(t, k)] = { t, k, e }
      end
      local want = sorted(m)
      local blob = cstate.encode_block(want)
      assert.same(want, cstate.decode_block(blob))
      assert.equal(blob, cstate.encode_block(cstate.decode_block(blob)))
      -- the input order does not matter
      local shuffled = {}
      for i, v in ipairs(want) do table.insert(shuffled, math.random(1, i), v) end
      assert.equal(blob, cstate.encode_block(shuffled))
    end
  end)

  it("encode a run of joins in about two bytes an entry", function()
    local t = {}
    for i = 1, 1000 do t[i] = { 5, 100 + i, 5000 + 17 * i } end
    local blob = cstate.encode_block(t)
    assert.is_true(#blob <= 2 * 1000 + 8, #blob)
  end)

  it("round-trip segments", function()
    math.randomseed(8)
    for _ = 1, 200 do
      local blocks, seen = {}, {}
      for _ = 1, math.random(0, 64) do
        local b = math.random(1, 4) == 1 and math.random(1, MAXI) or math.random(1, 500)
        if not seen[b] then seen[b] = true; blocks[#blocks + 1] = b end
      end
      local deltas = {}
      for i = 1, math.random(1, 64) do
        local m = {}
        for _ = 1, math.random(0, 6) do
          local t, k = math.random(1, 9), math.random(1, 99)
          m[key(t, k)] = { t, k, math.random(0, 3) == 0 and 0 or math.random(1, 10 ^ 6) }
        end
        deltas[i] = sorted(m)
      end
      local blob = cstate.encode_segment(blocks, deltas)
      local b2, d2 = cstate.decode_segment(blob)
      assert.same(blocks, b2)
      assert.same(deltas, d2)
      assert.equal(blob, cstate.encode_segment(b2, d2))
      local b3, n = cstate.segment_info(blob)
      assert.same(blocks, b3)
      assert.equal(#deltas, n)
    end
  end)

  it("append deltas to a segment up to 64", function()
    local blob = cstate.encode_segment({ 3, 1 }, { {} })
    for i = 1, 63 do
      local slot
      blob, slot = cstate.segment_append(blob, { { 5, i, 100 + i } })
      assert.equal(i, slot)
    end
    local res, msg, code = cstate.segment_append(blob, { { 5, 64, 164 } })
    assert.is_nil(res)
    assert.is_string(msg)
    assert.equal("segment_full", code)
    local _, deltas = cstate.decode_segment(blob)
    assert.equal(64, #deltas)
    assert.same({ { 5, 63, 163 } }, deltas[64])
  end)

  describe("reject corrupt input with nil, message, bad_state_blob", function()
    local good = cstate.encode_block { { 1, 1, 1 }, { 5, 2, 40 }, { 5, 3, 50 } }

    it("empty and unknown tags", function()
      bad(cstate.decode_block(""))
      bad(cstate.decode_block("\2\1\1\0\2"))
      bad(cstate.decode_block("\0"))
      bad(cstate.decode_segment(""))
      bad(cstate.decode_segment(good))
    end)

    it("truncated varints and every truncation of a valid blob", function()
      bad(cstate.decode_block("\1\1\129"))              -- continuation bit, then nothing
      bad(cstate.decode_block("\1\1\1\128"))
      for i = 0, #good - 1 do bad(cstate.decode_block(good:sub(1, i))) end
      local seg = cstate.encode_segment({ 7, 9 }, { { { 1, 1, 1 } }, {}, { { 2, 3, 0 } } })
      for i = 0, #seg - 1 do bad(cstate.decode_segment(seg:sub(1, i))) end
    end)

    it("overlong and overflowing varints", function()
      bad(cstate.decode_block("\1\129\0\1\0\2"))         -- count 1 written in two bytes
      bad(cstate.decode_block("\1\1\129\0\0\2"))         -- x written in two bytes
      -- 10-byte varint whose last byte carries more than bit 63
      bad(cstate.decode_block("\1\1\1\0" .. ("\255"):rep(9) .. "\2"))
      bad(cstate.decode_block("\1\1" .. ("\255"):rep(10) .. "\1\0\2"))
    end)

    it("keys out of order or out of range", function()
      -- first entry with the 'same type' form: no type named
      bad(cstate.decode_block("\1\1\0\0\2"))
      -- a state key delta that overflows past the largest NID
      local near = cstate.encode_block { { 1, MAXI - 1, 1 } }
      bad(cstate.decode_block(near:sub(1, 1) .. "\2" .. near:sub(3) .. "\2\2"))
      -- a type that overflows
      bad(cstate.decode_block("\1\1" .. "\255\255\255\255\255\255\255\255\255\1" .. "\0\2"))
      -- event NIDs below zero or past the limit
      bad(cstate.decode_block("\1\1\1\0\1"))            -- zigzag -1 from 0
      local top = cstate.encode_block { { 1, 1, MAXI }, { 1, 2, MAXI } }
      bad(cstate.decode_block(top:sub(1, -2) .. "\2"))   -- +1 past MAXI
    end)

    it("count mismatches and trailing bytes", function()
      bad(cstate.decode_block("\1\0"))                  -- no entries
      bad(cstate.decode_block("\1\4" .. good:sub(3)))   -- says 4, holds 3
      bad(cstate.decode_block("\1\2" .. good:sub(3)))   -- says 2, holds 3
      bad(cstate.decode_block("\1\100" .. good:sub(3))) -- far more than the bytes allow
      bad(cstate.decode_block(good .. "\0"))
      local seg = cstate.encode_segment({}, { {} })
      bad(cstate.decode_segment(seg .. "\1"))
      bad(cstate.decode_segment("\2\0\0"))                 -- no deltas
      bad(cstate.decode_segment("\2\0\65" .. ("\0"):rep(65))) -- 65 deltas
      bad(cstate.decode_segment("\2\65" .. ("\2"):rep(65) .. "\1\0")) -- 65 blocks
    end)

    it("block lists with repeats or bad NIDs", function()
      bad(cstate.decode_segment("\2\2\5\0\1\0"))        -- delta 0: the same block twice
      bad(cstate.decode_segment("\2\3\5\2\1\1\0"))      -- 5, 6, 5
      bad(cstate.decode_segment("\2\1\0\1\0"))          -- block NID 0
      bad(cstate.decode_segment("\2\2\1\1\1\0"))        -- 1 then 0
    end)

    it("hash buckets", function()
      local b = cstate.bucket_add(nil, 0xabcdef12, 99)
      bad(cstate.bucket_find(b:sub(1, 2), 1))
      bad(cstate.bucket_find(b .. "\1", 1))
      bad(cstate.bucket_find("\0\0\0\0", 1))            -- snapshot NID 0
      bad(cstate.bucket_find("\0\0\0\128", 1))
      bad(cstate.bucket_add(b .. "\1\2", 1, 1))
      bad(cstate.bucket_split("\1", 9))
    end)

    it("assemble reports the bad part", function()
      local seg = cstate.encode_segment({}, { {} })
      bad(cstate.assemble({ good, good:sub(1, 3) }, { seg }, { 0 }))
      bad(cstate.assemble({ good }, { seg:sub(1, 2) }, { 0 }))
      bad(cstate.assemble({ good }, { seg }, { 1 }))
      bad(cstate.assemble({ good }, { seg }, { -1 }))
    end)

    it("random damage: rejected, or a different valid blob that is canonical", function()
      math.randomseed(99)
      local blobs = {}
      for i = 1, 20 do
        local t = {}
        for j = 1, i * 3 do t[j] = { j % 4 + 1, j * 7, (j % 5 == 0) and 0 or j * 13 } end
        blobs[#blobs + 1] = { "block", cstate.encode_block(t) }
        blobs[#blobs + 1] = { "segment", cstate.encode_segment({ i, i + 3 }, { t, { { 1, 1, 0 } } }) }
      end
      for _ = 1, 3000 do
        local kind, b = table.unpack(blobs[math.random(#blobs)])
        local pos = math.random(#b)
        local mutated = b:sub(1, pos - 1) .. string.char(math.random(0, 255)) .. b:sub(pos + 1)
        if math.random(4) == 1 then mutated = mutated:sub(1, math.random(0, #mutated)) end
        if kind == "block" then
          local t, msg, code = cstate.decode_block(mutated)
          if t then assert.equal(mutated, cstate.encode_block(t))
          else assert.is_string(msg); assert.equal("bad_state_blob", code) end
        else
          local bl, d, code = cstate.decode_segment(mutated)
          if bl then assert.equal(mutated, cstate.encode_segment(bl, d))
          else assert.is_string(d); assert.equal("bad_state_blob", code) end
        end
      end
    end)
  end)
end)

describe("state.assemble", function()
  it("merges blocks in order, then the deltas of each segment up to its slot", function()
    math.randomseed(21)
    for _ = 1, 100 do
      local m = {}
      local blobs = {}
      for _ = 1, math.random(0, 10) do
        local bm = {}
        for _ = 1, math.random(1, 30) do
          local t, k = math.random(1, 4), math.random(1, 60)
          bm[key(t, k)] = { t, k, math.random(0, 4) == 0 and 0 or math.random(1, 10 ^ 5) }
        end
        local entries = sorted(bm)
        blobs[#blobs + 1] = cstate.encode_block(entries)
        apply_map(m, entries)
      end
      local base_map = copy(m)
      local segs, slots = {}, {}
      for i = 1, math.random(1, 4) do
        local deltas = {}
        for j = 1, math.random(1, 8) do
          local dm = {}
          for _ = 1, math.random(0, 5) do
            local t, k = math.random(1, 4), math.random(1, 60)
            dm[key(t, k)] = { t, k, math.random(0, 3) == 0 and 0 or math.random(1, 10 ^ 5) }
          end
          deltas[j] = sorted(dm)
        end
        segs[i] = cstate.encode_segment(i == 1 and { 1 } or {}, deltas)
        slots[i] = math.random(0, #deltas - 1)
        for j = 1, slots[i] + 1 do apply_map(m, deltas[j]) end
      end
      local st, base, decoded = cstate.assemble(blobs, segs, slots)
      check_state(st, m)
      check_state(base, base_map)
      local n = 0
      for _, b in ipairs(blobs) do n = n + #cstate.decode_block(b) end
      assert.equal(n, decoded)
    end
  end)
end)

describe("st:chunks", function()
  local function big(n, seed)
    math.randomseed(seed)
    local m = {}
    for i = 1, n do
      local t = i % 10 == 0 and math.random(1, 30) or 5
      local k = i % 10 == 0 and math.random(1, 10 ^ 6) or i
      m[key(t, k)] = { t, k, i * 3 }
    end
    return m
  end

  it("cover the state in at most 32 key-ordered blocks, the same for equal states", function()
    for _, n in ipairs { 0, 1, 50, 700, 5000, 40000 } do
      local m = big(n, n)
      local st = cstate.new(sorted(m))
      local chunks = st:chunks()
      assert.is_true(#chunks <= 32)
      if n > 0 then assert.is_true(#chunks >= 1) end
      local st2 = cstate.assemble(chunks, {}, {})
      assert.is_true(st2 == st)
      assert.same(chunks, cstate.new(st:triples()):chunks())
      -- chunks are disjoint and ordered: their triples concatenate to the state
      local all = {}
      for _, c in ipairs(chunks) do for _, v in ipairs(cstate.decode_block(c)) do all[#all + 1] = v end end
      assert.same(st:triples(), all)
    end
  end)

  it("keep most chunks when one entry changes", function()
    local m = big(20000, 3)
    local st = cstate.new(sorted(m))
    local a = st:chunks()
    local b = st:apply({ { 5, 777, 1 } }):chunks()
    local same = {}
    for _, c in ipairs(a) do same[c] = true end
    local changed = 0
    for _, c in ipairs(b) do if not same[c] then changed = changed + 1 end end
    assert.is_true(#a >= 8)
    assert.is_true(changed <= 2, changed)
  end)
end)

describe("hash buckets", function()
  it("find what was added, and split on a bit", function()
    math.randomseed(5)
    local blob, entries = nil, {}
    for i = 1, 200 do
      local h = math.random(0, 0xffffffff) & ~0xff | 0x17
      entries[i] = { h, i * 1000 }
      local n
      blob, n = cstate.bucket_add(blob, h, i * 1000)
      assert.equal(i, n)
    end
    for _, e in ipairs(entries) do
      local found = cstate.bucket_find(blob, e[1])
      local ok = false
      for _, nid in ipairs(found) do if nid == e[2] then ok = true end end
      assert.is_true(ok)
    end
    assert.same({}, cstate.bucket_find(blob, 0x12345617 ~ 0x100000))
    for bit = 8, 31 do
      local lo, hi = cstate.bucket_split(blob, bit)
      for _, e in ipairs(entries) do
        local side = ((e[1] >> bit) & 1) == 1 and hi or lo
        local other = side == hi and lo or hi
        local function has(b)
          for _, nid in ipairs(cstate.bucket_find(b, e[1])) do if nid == e[2] then return true end end
          return false
        end
        assert.is_true(has(side))
        assert.is_false(has(other))
      end
    end
  end)
end)
