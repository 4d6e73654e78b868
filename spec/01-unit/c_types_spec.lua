-- Every C type is registered by one helper (loom_new_type in csrc/core.c):
-- a registry metatable with __name, its metamethods, and __index = methods.
local core = require "loom.core"

describe("C types", function()
  local reg = debug.getregistry()
  local WITH_METHODS = {
    "loom.Ed25519Signer", "loom.HttpParser", "loom.Regex", "loom.Db", "loom.Stmt", "loom.Blob",
    "loom.State", "loom.StateGraph",
  }
  local OTHERS = { "loom.JSONArray", "loom.JSONEncoder", "loom.Token", "loom.Bound" }

  it("each has a registry metatable named after it", function()
    assert.is_table(core.json)
    for _, list in ipairs({ WITH_METHODS, OTHERS }) do
      for _, name in ipairs(list) do
        local mt = reg[name]
        assert.is_table(mt, name)
        assert.equals(name, mt.__name)
      end
    end
  end)

  it("methods are an __index table; objects made in C carry the type", function()
    for _, name in ipairs(WITH_METHODS) do
      assert.is_table(reg[name].__index, name)
      assert.is_not_nil(next(reg[name].__index), name)
    end
    assert.equals(reg["loom.Regex"], getmetatable(assert(core.regex.compile("a+"))))
    assert.is_function(assert(core.regex.compile("a+")).match)
    assert.equals(reg["loom.StateGraph"], getmetatable(core.stateres.graph()))
    assert.equals(core.json.array_mt, reg["loom.JSONArray"])
    assert.equals("[]", core.json.encode(core.json.array()))
    -- a Bound reads its methods from mt.methods
    assert.is_table(reg["loom.Bound"].methods)
  end)
end)
