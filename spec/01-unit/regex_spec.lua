-- loom.core.regex: POSIX extended regular expressions for appservice namespaces.
local regex = require("loom.core").regex

describe("loom.core.regex", function()
  it("matches anywhere by default", function()
    local re = assert(regex.compile("@_irc_.*:example\\.org"))
    assert.is_true(re:match("@_irc_alice:example.org"))
    assert.is_true(re:match("x@_irc_alice:example.org.evil"))
    assert.is_false(re:match("@_irc_alice:exampleXorg"))
    assert.is_false(re:match("@_xmpp_alice:example.org"))
    assert.is_false(re:match(""))
  end)

  it("matches the whole string in anchored mode", function()
    local re = assert(regex.compile("@_irc_.*:example\\.org", { anchored = true }))
    assert.is_true(re:match("@_irc_alice:example.org"))
    assert.is_true(re:match("@_irc_:example.org"))
    assert.is_false(re:match("x@_irc_alice:example.org"))
    assert.is_false(re:match("@_irc_alice:example.org.evil"))
    assert.is_false(re:match("@_irc_alice:example.orgx"))
    local room = assert(regex.compile("#_irc_[a-z]+:example\\.org", { anchored = true }))
    assert.is_true(room:match("#_irc_chan:example.org"))
    assert.is_false(room:match("#_irc_Chan:example.org"))
  end)

  it("anchors alternations as a whole", function()
    local re = assert(regex.compile("a|ab", { anchored = true }))
    assert.is_true(re:match("a"))
    assert.is_true(re:match("ab"))
    assert.is_false(re:match("abc"))
    assert.is_false(re:match("b"))
    local alt = assert(regex.compile("@a:x|@b:y", { anchored = true }))
    assert.is_true(alt:match("@b:y"))
    assert.is_false(alt:match("@a:x.more"))
    assert.is_false(alt:match("pre@b:y"))
  end)

  it("is not fooled by a stray ')' in anchored mode", function()
    -- wrapped textually as ^(a)|b)$ this would accept "abc"
    local re = assert(regex.compile("a)|b", { anchored = true }))
    assert.is_true(re:match("a)"))
    assert.is_true(re:match("b"))
    assert.is_false(re:match("a"))
    assert.is_false(re:match("abc"))
  end)

  it("honours anchors inside the pattern", function()
    local re = assert(regex.compile("^@bot$"))
    assert.is_true(re:match("@bot"))
    assert.is_false(re:match("@bot2"))
  end)

  it("supports icase", function()
    local re = assert(regex.compile("@_IRC_.*", { icase = true, anchored = true }))
    assert.is_true(re:match("@_irc_bob:example.org"))
    assert.is_true(re:match("@_IrC_bob:example.org"))
    assert.is_false(assert(regex.compile("@_IRC_.*")):match("@_irc_bob"))
  end)

  it("reports bad patterns as bad_regex", function()
    for _, p in ipairs({ "(", "a{2,1}", "[z-a]", "a\\", "*[" }) do
      local re, msg, code = regex.compile(p)
      assert.is_nil(re, p)
      assert.equal("string", type(msg))
      assert.equal("bad_regex", code)
    end
    local re, msg, code = regex.compile("(", { anchored = true })
    assert.is_nil(re)
    assert.truthy(#msg > 0)
    assert.equal("bad_regex", code)
  end)

  it("rejects patterns with NUL bytes or over 4096 bytes", function()
    local re, _, code = regex.compile("a\0b")
    assert.is_nil(re)
    assert.equal("bad_regex", code)
    re, _, code = regex.compile(("a"):rep(4097))
    assert.is_nil(re)
    assert.equal("bad_regex", code)
    assert.is_not_nil(regex.compile(("a"):rep(4096)))
  end)

  it("rejects back-references, stacked repetitions and explosive patterns", function()
    for _, p in ipairs({ "(a)\\1", "a**", "a+?", "a{2}{3}", "(a{1000}){101}",
                         "(a*){3000}", ("("):rep(20) .. "a*" .. (")+"):rep(20),
                         ("("):rep(300) .. "a" .. (")"):rep(300) }) do
      local re, msg, code = regex.compile(p)
      assert.is_nil(re, p)
      assert.equal("string", type(msg))
      assert.equal("bad_regex", code)
    end
    -- generous enough for anything a namespace needs
    for _, p in ipairs({ "(a{1000}){100}", "(a*){1000}", "[a-z0-9._=/-]{1,255}",
                         "@(_irc_|_xmpp_)[^:]+:(example\\.org|example\\.com)" }) do
      assert.is_not_nil(regex.compile(p), p)
    end
  end)

  it("refuses every repetition form that would copy optional operands without bound", function()
    -- fuzz finding: glibc builds x{,m} as m nested optional copies ((x?x)?x)?...
    -- whose epsilon closures grew to gigabytes for this 9-byte pattern
    local clock = os.clock
    for _, p in ipairs({ ")\xC7{,9378}", "a{,9378}", "a{0,9378}", "a{1,9378}", "(ba{0,100}){21}",
                         "(a{0,100}b){30}", "((a{0,50}){0,50}){0,50}", ("a?"):rep(2001),
                         "(a{,3000})+", "[ab]{2,2500}" }) do
      local t = clock()
      local re, msg, code = regex.compile(p)
      assert.is_nil(re, p)
      assert.matches("too complex", msg, 1, true)
      assert.equal("bad_regex", code)
      assert.is_true(clock() - t < 0.05, p)
    end
    for _, p in ipairs({ "a{,1999}", "(ba{0,100}){20}", "a{5,}", "a{5}", "(a{0,40}){0,40}",
                         ("a?"):rep(1000) }) do
      local t = clock()
      assert.is_not_nil(regex.compile(p), p)
      assert.is_true(clock() - t < 2, p)
    end
  end)

  it("treats NUL bytes in the subject as ordinary bytes", function()
    local re = assert(regex.compile("b"))
    assert.is_true(re:match("a\0b"))
    assert.is_false(re:match("a\0c"))
    local whole = assert(regex.compile("a[^c]b", { anchored = true }))
    assert.is_true(whole:match("a\0b"))
    assert.is_false(whole:match("a\0b\0"))
    -- glibc's ERE syntax has RE_DOT_NOT_NULL: '.' never matches a NUL byte
    assert.is_false(assert(regex.compile("a.b")):match("a\0b"))
    local user = assert(regex.compile("@_irc_.*:example\\.org", { anchored = true }))
    assert.is_false(user:match("@_irc_a:example.org\0junk"))
  end)

  it("exposes pattern, __name and __tostring", function()
    local re = assert(regex.compile("x+", { anchored = true }))
    assert.equal("x+", re:pattern())
    assert.equal("loom.Regex", getmetatable(re).__name)
    assert.equal("loom.Regex (x+, anchored)", tostring(re))
  end)

  it("raises on misuse", function()
    assert.has_error(function() regex.compile() end)
    assert.has_error(function() regex.compile("a", 1) end)
    assert.has_error(function() regex.compile("a", { anchored = "yes" }) end)
    local re = assert(regex.compile("a"))
    assert.has_error(function() re:match() end)
    assert.has_error(function() re.match({}, "a") end)
  end)

  it("survives garbage collection of many compiled patterns", function()
    for i = 1, 1000 do
      assert(regex.compile("@_bridge_" .. i .. "_.*"))
    end
    collectgarbage()
    collectgarbage()
  end)
end)
