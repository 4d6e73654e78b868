-- One module dialect: every file of lua/loom caches the globals it uses as
-- locals at the top, then closes its environment with
-- `local _ENV = nil -- luacheck: ignore 211`. A global read after that line
-- would fail when it runs; the compiler's listing shows every one, so this
-- spec finds them before they run.
local shell = require "support.shell"

local ENV_LINE = "local _ENV = nil -- luacheck: ignore 211"

describe("module dialect", function()
  local files = shell.lines("find lua/loom -name '*.lua' | sort")

  it("finds the modules", function()
    assert.is_true(#files > 40)
  end)

  for _, path in ipairs(files) do
    it(path .. ": globals cached, then _ENV closed; no global read after it", function()
      local env_at
      local n = 0
      for line in io.lines(path) do
        n = n + 1
        if line == ENV_LINE then
          assert.is_nil(env_at, "two _ENV lines")
          env_at = n
        end
      end
      assert.is_number(env_at, "no `" .. ENV_LINE .. "` line")
      local listing = shell.lines("luac5.4 -p -l -l " .. path .. " 2>&1")
      local first = listing[1] == "" and listing[2] or listing[1]
      assert.matches("^main <", first or "", nil, false, "luac5.4: " .. tostring(first))
      -- the main chunk's register of the local _ENV
      local env_reg, in_main_locals = nil, false
      for _, l in ipairs(listing) do
        if l:match("^locals %(") then
          if env_reg ~= nil or in_main_locals then break end
          in_main_locals = true
        elseif in_main_locals then
          local idx, name = l:match("^%s+(%d+)%s+([%w_]+)%s")
          if not idx then break end
          if name == "_ENV" then env_reg = tonumber(idx) end
        end
      end
      assert.is_number(env_reg, "no local _ENV in the main chunk")
      local late, main = {}, true
      for _, l in ipairs(listing) do
        if l:match("^function <") then main = false end
        -- in a function: an upvalue named _ENV is the closed one
        local at, name = l:match("%[(%d+)%]%s+[GS]ETTABUP%s.-; _ENV \"([%w_]+)\"")
        if at and tonumber(at) > env_at then late[#late + 1] = name .. " (line " .. at .. ")" end
        -- in the main chunk: a field of the local _ENV register
        if main then
          local at2, op, a, bb, name2 = l:match("%[(%d+)%]%s+([GS]ETFIELD)%s+(%d+) (%d+) %d+k?%s*; \"([%w_]+)\"")
          local reg = at2 and tonumber(op == "GETFIELD" and bb or a)
          if reg == env_reg and tonumber(at2) > env_at then late[#late + 1] = name2 .. " (line " .. at2 .. ")" end
        end
      end
      assert.same({}, late)
    end)
  end
end)
