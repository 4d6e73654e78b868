-- loom.push.glob: event_match globs of the Push Notifications module.
local glob = require "loom.push.glob"

local function matches(p, s, words) return assert(glob.compile(p, { words = words })):match(s) end

describe("loom.push.glob", function()
  it("matches whole values with * and ? case-insensitively", function()
    assert.is_true(matches("cake*lie", "Cake is a LIE"))
    assert.is_false(matches("cake*lie", "the cake is a lie"))
    assert.is_true(matches("m.notice", "m.notice"))
    assert.is_false(matches("m.notice", "mXnotice"))
    assert.is_false(matches("m.notice", "m.notices"))
    assert.is_true(matches("a?c", "abc"))
    assert.is_true(matches("a?c", "aéc")) -- ? is one character, not one byte
    assert.is_false(matches("a?c", "abbc"))
    assert.is_true(matches("*", ""))
  end)

  it("treats every other character as a literal", function()
    for _, p in ipairs({ "x(y", "a|b", "[ab]", "a{2}", "^a$", "a\\b", "a+b" }) do
      assert.is_true(matches(p, p:upper()), p)
    end
    assert.is_false(matches("[ab]", "a"))
    assert.is_false(matches("a|b", "a"))
  end)

  it("matches content.body by whole words", function()
    assert.is_true(matches("alice", "hi alice!", true))
    assert.is_true(matches("alice", "ALICE", true))
    assert.is_false(matches("alice", "malice", true))
    assert.is_false(matches("alice", "alice_b", true))
    assert.is_false(matches("caf", "café", true))
    assert.is_true(matches("@room", "hey @room now", true))
    assert.is_true(matches("ali*", "alice and bob", true))
    assert.is_true(matches("cake lie", "the cake lie", true))
  end)

  it("is bounded for every pattern and reports bad ones as bad_glob", function()
    local t = os.clock()
    for _, p in ipairs({ ("?"):rep(1024), ("a"):rep(1025), "a\0b" }) do
      local re, msg, code = glob.compile(p)
      assert.is_nil(re, #p)
      assert.equal("string", type(msg))
      assert.equal("bad_glob", code)
    end
    assert.is_true(matches(("*"):rep(1023) .. "x", "yx"))
    assert.is_true(matches(("*a"):rep(500), ("a"):rep(500)))
    assert.is_true(os.clock() - t < 2)
    local re, _, code = glob.compile(42)
    assert.is_nil(re)
    assert.equal("bad_glob", code)
  end)
end)
