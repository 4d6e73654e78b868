-- Events decoded by another JSON library (lua-cjson; a dkjson-style decoder
-- that marks objects and arrays with metatables) give the public room API the
-- same results as the same events decoded by loom.core.json, or a clear error.
local cjson = require "cjson"
local ljson = require "loom.json"
local event = require "loom.room.event"
local auth = require "loom.room.auth"
local stateres = require "loom.room.stateres"
local statemap = require "loom.room.statemap"
local version = require "loom.room.version"
local crypto = require "loom.room.crypto"
local core = require "loom.core"
local json = core.json

local SERVER = "hs.example"
local ALICE, BOB = "@alice:hs.example", "@bob:hs.example"
local NOW = 1700000000000
local key = assert(crypto.signing_key(string.rep("k", 32), "ed25519:k1", SERVER))
local function keys(server, key_id)
  if server == SERVER and key_id == key.key_id then return key.public_key end
  return nil
end

-- ---- a dkjson-style decoder: objects and arrays carry __jsontype metatables,
-- numbers come from tonumber (integers stay integers), null is json.null.
local OBJ, ARR = { __jsontype = "object" }, { __jsontype = "array" }
local function dk_decode(text)
  local pos = 1
  local value
  local function skip() pos = text:find("[^ \t\r\n]", pos) or #text + 1 end
  local function str()
    local out = {}
    pos = pos + 1
    while true do
      local c = text:sub(pos, pos)
      if c == '"' then pos = pos + 1 return table.concat(out) end
      if c == "\\" then
        local e = text:sub(pos + 1, pos + 1)
        if e == "u" then
          out[#out + 1] = utf8.char(tonumber(text:sub(pos + 2, pos + 5), 16))
          pos = pos + 6
        else
          out[#out + 1] = ({ n = "\n", t = "\t", r = "\r", b = "\b", f = "\f" })[e] or e
          pos = pos + 2
        end
      else
        out[#out + 1] = c
        pos = pos + 1
      end
    end
  end
  function value()
    skip()
    local c = text:sub(pos, pos)
    if c == "{" or c == "[" then
      local is_obj = c == "{"
      local close = is_obj and "}" or "]"
      local t = setmetatable({}, is_obj and OBJ or ARR)
      pos = pos + 1
      skip()
      if text:sub(pos, pos) == close then pos = pos + 1 return t end
      while true do
        if is_obj then
          skip()
          local k = str()
          skip()
          pos = pos + 1 -- ":"
          t[k] = value()
        else
          t[#t + 1] = value()
        end
        skip()
        c = text:sub(pos, pos)
        pos = pos + 1
        if c == close then return t end
      end
    elseif c == '"' then
      return str()
    elseif text:sub(pos, pos + 3) == "true" then pos = pos + 4 return true
    elseif text:sub(pos, pos + 4) == "false" then pos = pos + 5 return false
    elseif text:sub(pos, pos + 3) == "null" then pos = pos + 4 return json.null
    end
    local num = text:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
    pos = pos + #num
    return tonumber(num)
  end
  return value()
end

local DECODERS = {
  { "lua-cjson", cjson.decode },
  { "dkjson-style", dk_decode },
}

local function loom_decode(text) return assert(json.decode(text)) end
local function wire(ev) return (assert(json.encode(event.pdu(ev)))) end

-- ---- a room built with event.build ----------------------------------------------

local function new_room(vid)
  local v = assert(version.get(vid))
  local r = { v = v, vid = vid, map = {}, exts = {}, events = {} }
  function r.forward_extremities(self) return self.exts end
  function r.state(self, t, sk) return self.map[t .. "\0" .. sk] end
  function r.send(self, proto)
    if not (proto.type == "m.room.create" and v.room_id_is_create_hash) then
      proto.room_id = proto.room_id or self.room_id
    end
    local ev = assert(event.build(v, proto, self, key, { now = NOW + #self.events }))
    self.exts = { { event_id = ev.event_id, depth = ev.depth } }
    if ev.state_key ~= nil then self.map[ev.type .. "\0" .. ev.state_key] = ev end
    self.events[#self.events + 1] = ev
    return ev
  end
  if not v.room_id_is_create_hash then r.room_id = "!room:" .. SERVER end
  local create = r:send({ type = "m.room.create", state_key = "", sender = ALICE,
    content = { room_version = vid } })
  r.room_id = assert(event.room_id_for_create(v, create))
  r:send({ type = "m.room.member", state_key = ALICE, sender = ALICE, content = { membership = "join" } })
  r:send({ type = "m.room.power_levels", state_key = "", sender = ALICE,
    content = { users = v.creators_have_infinite_power and { [BOB] = 50 } or { [ALICE] = 100, [BOB] = 50 },
      events = { ["m.room.name"] = 50 }, state_default = 50 } })
  r:send({ type = "m.room.join_rules", state_key = "", sender = ALICE, content = { join_rule = "public" } })
  r:send({ type = "m.room.member", state_key = BOB, sender = BOB, content = { membership = "join" } })
  r:send({ type = "m.room.message", sender = BOB,
    content = { msgtype = "m.text", body = "h\195\169llo \"quoted\"\n", list = json.array({ 1, 2, 3 }),
      empty = {}, nothing = json.null, big = 9007199254740991, neg = -12 } })
  return r
end

-- A state function over the room's current state, its events decoded by `decode`.
local function state_fn(r, decode)
  local cache = {}
  return function(t, sk)
    local ev = r.map[t .. "\0" .. sk]
    if ev == nil then return nil end
    local d = cache[ev]
    if d == nil then
      d = decode(wire(ev))
      d.event_id = ev.event_id
      cache[ev] = d
    end
    return d
  end
end

for _, vid in ipairs({ "11", "12" }) do
  describe("foreign JSON, room v" .. vid, function()
    local r = new_room(vid)
    local v = r.v

    for _, dec in ipairs(DECODERS) do
      local name, decode = dec[1], dec[2]

      it(name .. ": content hashes, event IDs, signatures and checks match loom's decoder", function()
        for _, ev in ipairs(r.events) do
          local text = wire(ev)
          local mine, theirs = loom_decode(text), decode(text)
          assert.equals(ev.hashes.sha256, assert(crypto.content_hash(theirs)))
          assert.equals(assert(crypto.content_hash(mine)), assert(crypto.content_hash(theirs)))
          assert.is_true(crypto.check_content_hash(theirs))
          assert.equals(ev.event_id, assert(event.compute_id(v, theirs)))
          assert.equals(ev.event_id, assert(crypto.event_id(theirs, vid)))
          assert.is_true(crypto.verify_event_signature(theirs, SERVER, key.key_id, key.public_key, vid))
          assert.is_true(event.check_format(v, theirs))
          local res = assert(event.check(v, theirs, { keys = keys }))
          assert.equals(ev.event_id, res.event_id)
          assert.is_false(res.redacted)
          assert.equals(ev.event_id, theirs.event_id) -- set on the caller's table too
          assert.equals(wire(ev), wire(res.event))
          -- a redacted copy in loom's form
          local red = assert(event.redact(v, decode(text)))
          assert.equals(assert(json.encode(event.redact(v, mine))), assert(json.encode(red)))
        end
      end)

      it(name .. ": signing a decoded event gives loom's signature", function()
        local ev = r.events[#r.events]
        local mine, theirs = loom_decode(wire(ev)), decode(wire(ev))
        mine.signatures, theirs.signatures = nil, nil
        assert(crypto.sign_event(mine, key, vid))
        assert(crypto.sign_event(theirs, key, vid))
        assert.equals(mine.signatures[SERVER][key.key_id], theirs.signatures[SERVER][key.key_id])
        assert.equals(ev.signatures[SERVER][key.key_id], theirs.signatures[SERVER][key.key_id])
      end)

      it(name .. ": authorization gives the same answers", function()
        local mine, theirs = state_fn(r, loom_decode), state_fn(r, decode)
        local function both(proto, want_ok)
          proto.room_id, proto.origin_server_ts = r.room_id, NOW
          proto.prev_events = json.array({ r.events[#r.events].event_id })
          proto.auth_events = auth.select(v, proto, mine)
          proto.depth = 10
          local text = assert(json.encode(proto))
          local a = { auth.check(v, loom_decode(text), mine) }
          local b = { auth.check(v, decode(text), theirs) }
          assert.same(a, b)
          assert.equals(want_ok, a[1] == true, tostring(a[2]))
        end
        both({ type = "m.room.name", state_key = "", sender = BOB, content = { name = "n" } }, true)
        both({ type = "m.room.topic", state_key = "", sender = BOB, content = { topic = "t" } }, true)
        both({ type = "m.room.power_levels", state_key = "", sender = BOB,
          content = { users = { [BOB] = 100 } } }, false)
        both({ type = "m.room.member", state_key = BOB, sender = BOB, content = { membership = "leave" } }, true)
        both({ type = "m.room.member", state_key = "@carol:x", sender = BOB,
          content = { membership = "ban" } }, true)
      end)
    end

    it("event.build takes a dkjson-style proto as loom's own", function()
      local text = '{"type":"m.room.topic","state_key":"","sender":"' .. ALICE .. '","content":{"topic":"t",'
        .. '"tags":[],"n":7}}'
      local function build(proto)
        local ev = assert(event.build(v, proto, r, key, { now = NOW }))
        return wire(ev)
      end
      local mine = loom_decode(text)
      mine.room_id = r.room_id
      local theirs = dk_decode(text)
      theirs.room_id = r.room_id
      assert.equals(build(mine), build(theirs))
      assert.matches('"tags":%[%]', build(theirs))
    end)

    it("auth.check names a value it cannot read", function()
      local text = wire(r.events[#r.events])
      local theirs = dk_decode(text)
      theirs.content.odd = setmetatable({}, { __index = {} })
      local ok, msg, code = auth.check(v, theirs, state_fn(r, loom_decode))
      assert.is_nil(ok)
      assert.equals("json_type", code)
      assert.matches("content.odd", msg, 1, true)
    end)

    it("a value in loom's form is returned as it is, nothing copied", function()
      local ev = r.events[#r.events]
      assert.equals(ev, ljson.import(ev, "event"))
      local d = loom_decode(wire(ev))
      assert.equals(d, ljson.import(d, "event"))
    end)
  end)
end

-- ---- state resolution ---------------------------------------------------------------

-- A forked room (v11): alice and bob fight over the join rules and the topic.
local function forked_room()
  local v = assert(version.get("11"))
  local A, B = "@alice:test", "@bob:test"
  local events, seq = {}, 0
  local function send(b, name, ty, sender, sk, content)
    seq = seq + 1
    local ev = { event_id = "$" .. name, type = ty, sender = sender, state_key = sk, content = content,
      origin_server_ts = 1000 + seq, prev_events = json.array(b.tip and { b.tip } or {}), room_id = "!r:test",
      depth = seq }
    local st = function(t, k) return events[b.state[statemap.key(t, k)]] end
    ev.auth_events = auth.select(v, ev, st)
    assert(auth.check(v, ev, st))
    events[ev.event_id] = ev
    b.state[statemap.key(ty, sk)] = ev.event_id
    b.tip = ev.event_id
  end
  local function branch(m)
    local s = {}
    for k, id in pairs(m.state) do s[k] = id end
    return { state = s, tip = m.tip }
  end
  local m = { state = {} }
  send(m, "CREATE", "m.room.create", A, "", { room_version = "11" })
  send(m, "IMA", "m.room.member", A, A, { membership = "join" })
  send(m, "IPOWER", "m.room.power_levels", A, "", { users = { [A] = 100, [B] = 50 }, state_default = 50 })
  send(m, "IJR", "m.room.join_rules", A, "", { join_rule = "public" })
  send(m, "IMB", "m.room.member", B, B, { membership = "join" })
  local a, b = branch(m), branch(m)
  send(a, "JR2", "m.room.join_rules", A, "", { join_rule = "invite" })
  send(a, "BAN", "m.room.member", A, B, { membership = "ban", reason = "x" })
  send(b, "T", "m.room.topic", B, "", { topic = "bob's" })
  send(b, "JR3", "m.room.join_rules", B, "", { join_rule = "knock" })
  return events, { a.state, b.state }
end

local function decoded(events, decode)
  local out = {}
  for id, ev in pairs(events) do
    local d = decode((assert(json.encode(ev))))
    out[id] = d
  end
  return out
end

describe("foreign JSON, state resolution", function()
  local events, sets = forked_room()
  local want = assert(stateres.resolve("11", sets, function(id) return events[id] end))
  -- the ban on fork a wins over bob's changes on fork b
  assert(want[statemap.key("m.room.join_rules", "")] == "$JR2")
  assert(want[statemap.key("m.room.member", "@bob:test")] == "$BAN")

  for _, dec in ipairs(DECODERS) do
    it(dec[1] .. ": resolve, auth_difference and auth_chain match loom's decoder", function()
      local mine, theirs = decoded(events, loom_decode), decoded(events, dec[2])
      local function f(evs) return function(id) return evs[id] end end
      assert.same(want, assert(stateres.resolve("11", sets, f(mine))))
      assert.same(want, assert(stateres.resolve("11", sets, f(theirs))))
      assert.same(want, assert(stateres.resolve("11", { sets[2], sets[1] }, f(theirs))))
      assert.same(assert(stateres.auth_difference(sets, f(mine))),
        assert(stateres.auth_difference(sets, f(theirs))))
      assert.same(assert(stateres.auth_chain({ "$BAN", "$JR3" }, f(mine))),
        assert(stateres.auth_chain({ "$BAN", "$JR3" }, f(theirs))))
    end)
  end

  it("an event that cannot be read as JSON ends resolution with bad_event", function()
    local theirs = decoded(events, dk_decode)
    theirs["$JR3"].content.odd = setmetatable({}, { __index = {} })
    local res, msg, code = stateres.resolve("11", sets, function(id) return theirs[id] end)
    assert.is_nil(res)
    assert.equals("bad_event", code)
    assert.matches("$JR3", msg, 1, true)
    assert.matches("neither an array nor an object", msg, 1, true)
  end)
end)

-- ---- bad values -------------------------------------------------------------------

describe("foreign JSON, bad values", function()
  local r = new_room("11")
  local v = r.v
  local ev = r.events[#r.events]

  it("a non-integral float is refused as loom's decoder's is", function()
    local text = wire(ev):gsub('"neg":%-12', '"neg":1.5', 1)
    local mine, theirs = loom_decode(text), cjson.decode(text)
    assert.equals(1.5, theirs.content.neg)
    local a = { event.check(v, mine, { keys = keys }) }
    local b = { event.check(v, theirs, { keys = keys }) }
    assert.is_nil(a[1])
    assert.same(a, b)
    assert.equals("bad_event", b[3])
    local h, msg, code = crypto.content_hash(theirs)
    assert.is_nil(h)
    assert.equals("json_float", code, msg)
  end)

  it("an integer beyond 2^53 read as a float by lua-cjson gives json_range", function()
    local text = wire(ev):gsub('"neg":%-12', '"neg":36028797018963968', 1)
    local theirs = cjson.decode(text)
    local res, msg, code = event.check(v, theirs, { keys = keys })
    assert.is_nil(res)
    assert.equals("bad_event", code)
    assert.matches("out of range", msg)
    local h
    h, msg, code = crypto.content_hash(theirs)
    assert.is_nil(h)
    assert.equals("json_range", code, msg)
  end)

  it("lua-cjson reads [] as {}: the content hash mismatch is reported as that, not taken for a redaction", function()
    local proto = { type = "m.room.message", sender = BOB, content = { body = "x", list = json.array({}) } }
    local sent = r:send(proto)
    local theirs = cjson.decode(wire(sent))
    assert.is_nil(getmetatable(theirs.content.list))
    local res, msg, code = event.check(v, theirs, { keys = keys })
    assert.is_nil(res)
    assert.equals("bad_event", code)
    assert.matches("content.list is an empty table", msg, 1, true)
    local ok
    ok, msg, code = crypto.check_content_hash(cjson.decode(wire(sent)))
    assert.is_nil(ok)
    assert.equals("bad_content_hash", code)
    assert.matches("content.list is an empty table", msg, 1, true)
    -- a redacted event (content {}) from lua-cjson still checks as redacted
    local red = assert(event.redact(v, sent))
    red.event_id, red.unsigned = nil, nil
    res = assert(event.check(v, cjson.decode((assert(json.encode(red)))), { keys = keys }))
    assert.is_true(res.redacted)
    assert.equals(sent.event_id, res.event_id)
    -- a decoder that marks arrays keeps them apart
    assert.equals(sent.event_id, (assert(event.check(v, dk_decode(wire(sent)), { keys = keys }))).event_id)
  end)

  it("loom.json.import names the bad value", function()
    local function bad(value, want, pattern)
      local out, msg, code = ljson.import(value)
      assert.is_nil(out)
      assert.equals(want, code, msg)
      assert.matches(pattern, msg)
    end
    bad(setmetatable({ a = setmetatable({}, { __index = {} }) }, OBJ), "json_type", "value%.a")
    bad(setmetatable({ x = 0 / 0 }, OBJ), "json_float", "value%.x: NaN")
    bad(setmetatable({ x = math.huge }, OBJ), "json_float", "infinite")
    bad(setmetatable({ f = print }, OBJ), "json_type", "function")
    bad(setmetatable({ 1, nil, 3 }, ARR), "json_type", "1%.%.n")
    bad(setmetatable({ [1] = "a", b = "c" }, OBJ), "json_type", "not a string")
    local deep = setmetatable({}, ARR)
    local t = deep
    for _ = 1, 150 do
      local n = setmetatable({}, ARR)
      t[1] = n
      t = n
    end
    bad(deep, "json_depth", "deeper")
  end)

  it("import converts: integral floats, plain sequences, dkjson marks, empty prev_events", function()
    local text = '{"a":1,"b":[1,2],"c":{},"prev_events":{},"d":[],"origin_server_ts":5}'
    local out = assert(ljson.import(cjson.decode(text), "event"))
    assert.equals("integer", math.type(out.a))
    assert.is_true(json.is_array(out.b))
    assert.is_true(json.is_array(out.prev_events))
    assert.equals('{"a":1,"b":[1,2],"c":{},"d":{},"origin_server_ts":5,"prev_events":[]}', json.encode(out))
    -- without those marks a value is taken as loom's, as it is
    local plain = { n = 2.0, prev_events = { "$x" }, origin_server_ts = 5 }
    assert.equals(plain, ljson.import(plain, "event"))
    out = assert(ljson.import(dk_decode('{"a":[],"b":{},"c":[{"d":null}]}')))
    assert.equals('{"a":[],"b":{},"c":[{"d":null}]}', json.encode(out))
    assert.is_nil(getmetatable(out.b))
  end)
end)
