-- SQL lives in lua/loom/store/ and lua/loom/db/ only: no other module
-- touches a database connection or carries SQL in its string literals.
-- The sources are read and lexed here (comments, short and long strings),
-- so prose in comments does not count and SQL split over concatenations
-- still does.
local shell = require "support.shell"

local ALLOWED = { "^lua/loom/store/", "^lua/loom/db/" }

-- The length of a long bracket opening at i ("[[", "[==["), or nil.
local function long_open(src, i)
  local eq = src:match("^%[(=*)%[", i)
  if eq then return #eq end
end

-- Split Lua source into code (strings and comments blanked, newlines kept)
-- and its string literals { { line, text }, ... }.
local function lex(src)
  local code, strings = {}, {}
  local i, n, line = 1, #src, 1
  local function skip_to(j, keep)
    local piece = src:sub(i, j - 1)
    local _, nl = piece:gsub("\n", "")
    line = line + nl
    if keep then code[#code + 1] = piece else code[#code + 1] = " " .. ("\n"):rep(nl) end
    i = j
  end
  while i <= n do
    local c = src:sub(i, i)
    if src:sub(i, i + 1) == "--" then
      local lvl = long_open(src, i + 2)
      if lvl then
        local close = "]" .. ("="):rep(lvl) .. "]"
        local _, e = src:find(close, i, true)
        skip_to((e or n) + 1, false)
      else
        local e = src:find("\n", i, true) or n + 1
        skip_to(e, false)
      end
    elseif c == "[" and long_open(src, i) then
      local lvl = long_open(src, i)
      local close = "]" .. ("="):rep(lvl) .. "]"
      local s = i + lvl + 2
      local e = src:find(close, s, true) or n + 1
      strings[#strings + 1] = { line, src:sub(s, e - 1) }
      skip_to(math.min(n + 1, e + #close), false)
    elseif c == '"' or c == "'" then
      local j = i + 1
      local buf = {}
      while j <= n do
        local d = src:sub(j, j)
        if d == "\\" then buf[#buf + 1] = src:sub(j, j + 1); j = j + 2
        elseif d == c or d == "\n" then break
        else buf[#buf + 1] = d; j = j + 1 end
      end
      strings[#strings + 1] = { line, table.concat(buf) }
      skip_to(j + 1, false)
    else
      local e = src:find("[%-%[\"']", i + 1) or n + 1
      skip_to(e, true)
    end
  end
  return table.concat(code), strings
end

local SQL = {
  "%f[%w_]SELECT%f[^%w_]",
  "%f[%w_]INSERT%s+[%u%s]*INTO%f[^%w_]",
  "%f[%w_]REPLACE%s+INTO%f[^%w_]",
  "%f[%w_]UPDATE%s+[%w_]+%s+SET%f[^%w_]",
  "%f[%w_]DELETE%s+FROM%f[^%w_]",
  "%f[%w_]CREATE%s+[%u%s]*TABLE%f[^%w_]",
  "%f[%w_]PRAGMA%f[^%w_]",
  "sqlite_master",
}

local CONN = { "%f[%w_]conn%s*:", "%.%s*conn%f[^%w_]", "%f[%w_]conn%s*%[" }

-- The boundary violations in one source text: { "line N: ...", ... }.
local function violations(src)
  local out = {}
  local code, strings = lex(src)
  local ln = 1
  for text in (code .. "\n"):gmatch("([^\n]*)\n") do
    for _, p in ipairs(CONN) do
      if text:find(p) then out[#out + 1] = ("line %d: database connection: %s"):format(ln, text); break end
    end
    ln = ln + 1
  end
  for _, s in ipairs(strings) do
    if s[2] == "conn" then out[#out + 1] = ("line %d: database connection by name"):format(s[1]) end
    for _, p in ipairs(SQL) do
      if s[2]:find(p) then out[#out + 1] = ("line %d: SQL in a string: %s"):format(s[1], s[2]); break end
    end
  end
  return out
end

local read = require("support.files").read

describe("store boundary", function()
  it("no module outside store/ and db/ uses a connection or holds SQL", function()
    local files = shell.lines("find lua/loom -name '*.lua'")
    table.sort(files)
    assert.is_true(#files > 40)
    local checked, found = 0, {}
    for _, path in ipairs(files) do
      local inside = false
      for _, p in ipairs(ALLOWED) do if path:find(p) then inside = true end end
      if not inside then
        checked = checked + 1
        for _, v in ipairs(violations(read(path))) do found[#found + 1] = path .. " " .. v end
      end
    end
    assert.is_true(checked > 25)
    assert.same({}, found)
  end)

  it("the store itself is seen to hold SQL and use its connection (the check reads what it should)", function()
    assert.is_true(#violations(read("lua/loom/store/rooms.lua")) > 5)
    assert.is_true(#violations(read("lua/loom/db/init.lua")) > 0)
  end)

  it("catches connections and SQL, also split over lines and concatenations", function()
    local bad = {
      [[local v = hs.store.conn:value("SELECT 1 FROM t")]],
      [[local c = store.conn
        c:run("x")]],
      [[local rows = conn:all(q)]],
      [[local q = "SELECT " .. COLS .. " FROM events"]],
      [[local q = [=[
        INSERT OR IGNORE INTO forgotten_rooms (a) VALUES (?)]=] ]],
      [[x("UPDATE events SET current_after = ?")]],
      [[x('DELETE FROM room_aliases WHERE alias = ?')]],
      [[x("INSERT INTO txn_ids (a) VALUES (?)")]],
      [[x("SELECT 1 FROM sqlite_master")]],
      [[local t = s["conn"] local u = s . conn]],
    }
    for _, src in ipairs(bad) do
      assert.is_true(#violations(src) > 0, src)
    end
  end)

  it("does not count comments, prose or look-alike names", function()
    local good = {
      [[-- store.conn:value("SELECT 1 FROM t") is what we do not write here]],
      [=[--[[ DELETE FROM x; conn:run() ]] local a = 1]=],
      [[local msg = "you may not select from a list"]],
      [[local connection, reconnect = a.connection, b:reconnect()]],
      [[local s = "Select a room, then update its settings"]],
      [=[local x = "a -- b" local y = "conn: is text here" local z = 'it\'s [[ not long' ]=],
    }
    for _, src in ipairs(good) do
      assert.same({}, violations(src), src)
    end
  end)
end)
