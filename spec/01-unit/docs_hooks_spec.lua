-- docs/hooks/ and the code agree: every hook point the code fires has a
-- page listed in the index and linked from docs/http.md, every documented
-- hook is fired, and the examples are valid Lua.

local read = require("support.files").read

local function lines_of(cmd)
  local p = assert(io.popen(cmd))
  local out = {}
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  return out
end

-- Hook names the code fires: hs:check("x"), :fire("x"), :notify("x"),
-- :observe("x"), check_hook(self, "x") and check_local's room/event/check.
local function fired_names()
  local names = {}
  for _, file in ipairs(lines_of("find lua/loom -name '*.lua'")) do
    local src = read(file)
    for _, pat in ipairs { ':check%("([%w_/]+)"', ':fire%("([%w_/]+)"', ':notify%("([%w_/]+)"',
        ':observe%("([%w_/]+)"', 'check_hook%(self, "([%w_/]+)"' } do
      for name in src:gmatch(pat) do names[name] = true end
    end
  end
  return names
end

describe("docs/hooks", function()
  local index = read("docs/hooks/README.md")
  local http = read("docs/http.md")

  -- The index table: `name` -> page file.
  local pages = {}
  for name, page in index:gmatch("%[`([%w_/]+)`%]%(([%w%-]+%.md)%)") do pages[name] = page end

  it("document every hook point the code fires, and only those", function()
    local fired = fired_names()
    assert.is_true(fired["room/event/persisted"])   -- the scan finds what it should
    for name in pairs(fired) do
      if not name:match("^http/") and not name:match("^server/") then
        assert.is_string(pages[name], name .. " is fired but has no page in docs/hooks/README.md")
      end
    end
    for name in pairs(pages) do assert.is_true(fired[name], name .. " is documented but never fired") end
  end)

  it("have one page per hook, each linked from docs/http.md, with its name, arguments, return and example", function()
    local n = 0
    for name, page in pairs(pages) do
      n = n + 1
      local text = read("docs/hooks/" .. page)
      assert.truthy(text:find("# `" .. name .. "`", 1, true), page)
      assert.truthy(text:find("## Arguments", 1, true), page)
      assert.truthy(text:find("## Return", 1, true) or text:find("## Running", 1, true), page)
      assert.truthy(text:find("## Example", 1, true), page)
      assert.truthy(http:find("(hooks/" .. page .. ")", 1, true), page .. " is not linked from docs/http.md")
    end
    assert.equal(11, n)
    assert.equal(n + 1, #lines_of("ls docs/hooks/*.md"))
  end)

  it("have examples that are valid Lua", function()
    local blocks = 0
    for _, file in ipairs(lines_of("ls docs/hooks/*.md")) do
      for code in read(file):gmatch("```lua\n(.-)```") do
        blocks = blocks + 1
        local fn, err = load(code, "=" .. file)
        assert(fn, err)
      end
    end
    assert.is_true(blocks >= 12)
  end)
end)
