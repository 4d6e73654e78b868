-- The rockspec lists every module file, every C source, and the version
-- that loom._VERSION reports.
local shell = require "support.shell"

local function load_rockspec()
  local name = shell.lines("ls loom-*.rockspec")[1]
  assert(name, "no rockspec found")
  local env = {}
  assert(loadfile(name, "t", env))()
  return env, name
end

local function files(cmd)
  local out = shell.lines(cmd)
  table.sort(out)
  return out
end

describe("rockspec", function()
  local spec = load_rockspec()

  it("lists every Lua module under lua/", function()
    local listed = {}
    for name, src in pairs(spec.build.modules) do
      if type(src) == "string" then
        listed[#listed + 1] = src
        local expect = "lua/" .. name:gsub("%.", "/") .. ".lua"
        local expect_init = "lua/" .. name:gsub("%.", "/") .. "/init.lua"
        assert.is_true(src == expect or src == expect_init, name .. " -> " .. src)
      end
    end
    table.sort(listed)
    assert.same(files("find lua -name '*.lua'"), listed)
  end)

  it("builds loom.core from every C source", function()
    local srcs = {}
    for _, s in ipairs(spec.build.modules["loom.core"].sources) do srcs[#srcs + 1] = s end
    table.sort(srcs)
    assert.same(files("ls csrc/*.c"), srcs)
  end)

  it("matches loom._VERSION and loom.core._VERSION", function()
    local v = spec.version:match("^(.-)%-%d+$")
    local loom = require "loom"
    assert.is_string(loom._VERSION)
    assert.equal(loom._VERSION, require("loom.core")._VERSION)
    if v ~= "scm" then assert.equal(v, loom._VERSION) end
  end)
end)

describe("rockspec migrations", function()
  it("installs every migration", function()
    local env = load_rockspec()
    local listed = {}
    for mod, file in pairs(env.build.install.lua) do
      listed[#listed + 1] = file
      assert.equal("loom.migrations." .. file:match("^migrations/(.*)%.sql$"):gsub("/", "."), mod)
    end
    table.sort(listed)
    local found = shell.lines("find migrations -name '*.sql' | sort")
    assert.same(found, listed)
  end)
end)
