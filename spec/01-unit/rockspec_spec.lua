-- The rockspec lists every module file, every C source, and the version
-- that loom._VERSION reports.
local function load_rockspec()
  local p = io.popen("ls loom-*.rockspec")
  local name = p:read("l")
  p:close()
  assert(name, "no rockspec found")
  local env = {}
  assert(loadfile(name, "t", env))()
  return env, name
end

local function files(cmd)
  local out, p = {}, io.popen(cmd)
  for line in p:lines() do out[#out + 1] = line end
  p:close()
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
