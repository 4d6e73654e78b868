-- One list of configuration keys: loom.new checks its config table with the
-- defaults and checks of loom.cli.config, the ones a loom.cfg.lua file gets.
local loom = require "loom"
local config = require "loom.cli.config"

describe("configuration keys", function()
  it("loom.new refuses what a config file refuses, with the same message", function()
    for _, case in ipairs({
      { { port = 70000 }, "port must be an integer 0..65535" },
      { { port = 1.5 }, "port must be an integer" },
      { { server_name = "a b" }, "server_name must be a server name" },
      { { default_room_version = "1" }, "default_room_version must be one of 3, 4, 5, 6, 7, 8, 9, 10, 11, 12" },
      { { log_level = "loud" }, "log_level must be one of debug, info, warn, error" },
      { { database = "x.db" }, "database must be a table with a path string" },
      { { logger = 5 }, "logger must be a function" },
      { { enable_registration = "yes" }, "enable_registration must be true or false" },
      { { push = { allow_ips = "127.0.0.1/32" } }, "push must be a table with allow_ips" },
      { { push = { retry_base_ms = 0 } }, "push must be a table with allow_ips" },
    }) do
      local ok, err = pcall(loom.new, case[1])
      assert.is_false(ok)
      assert.matches(case[2], tostring(err), 1, true)
      local cfg, ferr = config.from_table(case[1])
      assert.is_nil(cfg)
      assert.matches(case[2], ferr, 1, true)
    end
  end)

  it("loom.new fills the same defaults, in fresh tables per server", function()
    local a = loom.new { port = 0, log_level = "warn" }
    local b = loom.new { port = 0, log_level = "warn" }
    for k, v in pairs(config.defaults) do
      if type(v) == "table" then
        assert.same(v, a.config[k], k)
        assert.are_not.equal(v, a.config[k], k .. " is shared with the defaults")
        assert.are_not.equal(a.config[k], b.config[k], k .. " is shared between servers")
      elseif k ~= "port" and k ~= "log_level" then
        assert.equals(v, a.config[k], k)
      end
    end
    assert.equals(0, a.config.port)
    a.config.versions[1] = "v1.1"
    assert.is_nil(b.config.versions[1])
    assert.is_nil(config.defaults.versions[1])
  end)
end)
