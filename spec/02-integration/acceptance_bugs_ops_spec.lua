-- luacheck: std +busted
-- Acceptance findings: bugs found by trying loom as operators and script
-- authors do, from the docs and the issue text; each spec failed before its fix.
local files = require "support.files"
local child = require "support.child"

-- Run bin/loom serve with a config; it must exit by itself within 5 s.
local function serve_with(lines)
  local dir = files.tmpdir()
  local cfg = dir .. "/loom.cfg.lua"
  files.write(cfg, ('server_name = "ops.test"\nport = 0\ndatabase = { path = %q }\n%s\n')
    :format(dir .. "/loom.db", lines))
  local out = child.sh("timeout 5 lua5.4 bin/loom serve --config " .. cfg)
  files.remove_tree(dir)
  return out, cfg
end

-- docs/config.md: "A known key with a value of the wrong type stops loom with
-- a message that names the file and the key"; docs/cli.md: exit 1 with
-- `loom: <message>` on standard error (one line). `host` is documented as an
-- IP address, not a name; a name is the operator's likeliest mistake.
describe("acceptance: a host name where an IP address belongs", function()
  for _, case in ipairs {
    { 'host = "localhost"', "host" },
    { 'host = "999.1.1.1"', "host" },
    { 'metrics = { host = "localhost", port = 0 }', "metrics" },
  } do
    it(case[1] .. " stops serve with one line naming the file and the key, no traceback", function()
      local out, cfg = serve_with(case[1])
      assert.truthy(out:find("rc=1\n", 1, true), out)
      assert.falsy(out:find("stack traceback", 1, true), out)
      assert.falsy(out:find("%.lua:%d+: "), out)                 -- no source position of loom's code
      local first = out:match("^([^\n]*)\n")
      assert.truthy(first:find("^loom: "), out)
      assert.truthy(first:find(cfg, 1, true), "the message names the config file: " .. out)
      assert.truthy(first:find(case[2], 1, true), out)
      assert.equal("rc=1", out:match("\n([^\n]*)\n$"))           -- nothing between the message and the exit
    end)
  end
end)

describe("acceptance: a bad limits or timeouts entry in a config file", function()
  it("names the config file, not a line of loom's source", function()
    local out, cfg = serve_with("limits = { bogus = 1 }")
    assert.truthy(out:find("rc=1\n", 1, true), out)
    assert.falsy(out:find("lua/loom/", 1, true), out)
    assert.truthy(out:find(cfg, 1, true), out)
  end)
end)
