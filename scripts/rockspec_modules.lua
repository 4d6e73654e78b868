#!/usr/bin/env lua5.4
-- Rewrites the Lua module list of loom-*.rockspec from the files under lua/
-- (run after adding, moving or removing a module; the rockspec spec checks it).
local name = io.popen("ls loom-*.rockspec"):read("l")
local f = assert(io.open(name)); local src = f:read("a"); f:close()
local files = {}
for path in io.popen("find lua -name '*.lua' | sort"):lines() do files[#files + 1] = path end
local lines = {}
for _, path in ipairs(files) do
  local mod = path:sub(5, -5):gsub("/", "."):gsub("%.init$", "")
  lines[#lines + 1] = ('      ["%s"] = "%s",'):format(mod, path)
end
local a = assert(src:find('\n      %["loom[%w%.]*"%] = "lua/') + 1)
local b = assert(src:find("   },\n   install", a, true))
src = src:sub(1, a - 1) .. table.concat(lines, "\n") .. "\n" .. src:sub(b)
f = assert(io.open(name, "w")); f:write(src); f:close()
