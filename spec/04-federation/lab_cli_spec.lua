-- `loom lab SCENARIO`: the example scenarios converge (exit 0) and draw
-- their graph as DOT; a scenario left partitioned does not (exit 1), and
-- a broken one fails with its error.
local cli = require "loom.cli"
local files = require "support.files"

local function run(args)
  local out, err = {}, {}
  local sink = function(t) return { write = function(_, ...) for _, s in ipairs { ... } do t[#t + 1] = s end end } end
  local code = cli.main(args, { stdout = sink(out), stderr = sink(err) })
  return code, table.concat(out), table.concat(err)
end

describe("loom lab", function()
  local dir
  setup(function() dir = files.tmpdir("loom-labcli") end)
  teardown(function() files.remove_tree(dir) end)

  for _, name in ipairs { "netsplit", "power_levels", "late_joiner" } do
    it("runs examples/lab/" .. name .. ".lua to convergence and writes its graph", function()
      local dot = dir .. "/" .. name .. ".dot"
      local code, out, err = run { "lab", "examples/lab/" .. name .. ".lua", "--dot", dot }
      assert.equal(0, code, out .. err)
      assert.matches("converged", out)
      local text = files.read(dot)
      assert.matches("^digraph room {", text)
      assert.matches("m%.room%.create", text)
      assert.matches('" %-> "', text)
      assert.matches("cluster_legend", text)
    end)
  end

  it("renders the graph as SVG with Graphviz", function()
    local svg = dir .. "/late.svg"
    local code, out, err = run { "lab", "examples/lab/late_joiner.lua", "--svg", svg }
    assert.equal(0, code, out .. err)
    local text = files.read(svg)
    assert.matches("<svg", text)
    assert.matches("m%.room%.create", text)
  end)

  it("exits 1 when a room did not converge, naming the problem", function()
    local f = dir .. "/split.lua"
    files.write(f, [[
      local a, b = lab:server("a.lab"), lab:server("b.lab")
      local alice, bob = a:register("alice"), b:register("bob")
      local room = a:create_room(alice, { preset = "public_chat" })
      b:join(bob, room, { "a.lab" })
      lab:partition({ "a.lab" }, { "b.lab" })
      a:say(alice, room, "b never hears this")
      return room
    ]])
    local code, out = run { "lab", f }
    assert.equal(1, code)
    assert.matches("NOT converged", out)
    assert.matches("events differ", out)
  end)

  it("reports a scenario that fails", function()
    local f = dir .. "/bad.lua"
    files.write(f, "error('no such thing')")
    local code, _, err = run { "lab", f }
    assert.equal(1, code)
    assert.matches("no such thing", err)
    code = run { "lab", dir .. "/missing.lua" }
    assert.equal(1, code)
    code = run { "lab" }
    assert.equal(2, code)
  end)
end)

describe("loom rotate-key", function()
  it("makes a new key and retires the old one", function()
    local tmp = require "support.tmpdb"
    local path = tmp.path()
    local cfgfile = path .. ".cfg.lua"
    files.write(cfgfile, ('database = { path = %q }\nserver_name = "rot.test"\n'):format(path))
    local store = assert(require("loom.store").open { path = path })
    store:add_signing_key("ed25519:first", ("\1"):rep(32))
    store:close()
    local code, out = run { "rotate-key", "--config", cfgfile }
    assert.equal(0, code)
    assert.matches("ed25519:first retired", out)
    store = assert(require("loom.store").open { path = path })
    local now = store:signing_key()
    assert.is_string(now)
    assert.are_not.equal("ed25519:first", now)
    assert.matches("^ed25519:[%w_]+$", now)
    local old = store:old_signing_keys()
    assert.equal(1, #old)
    assert.equal("ed25519:first", old[1].key_id)
    store:close()
    tmp.remove(path)
    os.remove(cfgfile)
  end)
end)
