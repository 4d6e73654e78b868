-- loom.config: loom.cfg.lua files, defaults, type errors.
local config = require "loom.cli.config"
local tmp = require "support.tmpdb"

local function write(text)
  local path = tmp.path():gsub("%.db$", ".cfg.lua")
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

describe("loom.config", function()
  it("merges a file over the defaults and keeps unknown keys", function()
    local path = write([[
server_name = "example.org"
port = 0
database = { path = "/tmp/x.db" }
my_script_option = { 1, 2, 3 }
]])
    local cfg = assert(config.load(path))
    os.remove(path)
    assert.equal("example.org", cfg.server_name)
    assert.equal(0, cfg.port)
    assert.equal("/tmp/x.db", cfg.database.path)
    assert.equal("127.0.0.1", cfg.host)
    assert.equal("info", cfg.log_level)
    assert.equal("11", cfg.default_room_version)
    assert.same({ 1, 2, 3 }, cfg.my_script_option)
  end)

  it("never shares the default tables", function()
    local a = assert(config.from_table({}))
    a.database.path = "changed"
    assert.equal("var/loom.db", config.defaults.database.path)
    assert.equal("var/loom.db", assert(config.from_table({})).database.path)
  end)

  it("reads back names set earlier in the file", function()
    local values = assert(config.parse('name = "example.org"\nserver_name = name\n', "t"))
    assert.equal("example.org", values.server_name)
  end)

  it("runs the file in an empty environment", function()
    for _, text in ipairs { 'port = tonumber("1")', 'x = os.getenv("HOME")', 'x = require "loom"',
                            "port = PORT" } do
      local v, err, code = config.parse(text, "cfg")
      assert.is_nil(v)
      assert.equal("config_error", code)
      assert.matches("unknown name", err)
    end
  end)

  it("reports syntax and runtime errors with the file name", function()
    local v, err, code = config.parse("port = = 1", "my.cfg.lua")
    assert.is_nil(v)
    assert.equal("config_error", code)
    assert.matches("^my%.cfg%.lua:1:", err)
    v, err = config.parse('x = {} .. "a"', "my.cfg.lua")
    assert.is_nil(v)
    assert.matches("my%.cfg%.lua:1:", err)
  end)

  it("names the key of a wrongly typed value", function()
    local cases = {
      { 'port = "8008"', "port must be an integer 0..65535, got \"8008\"" },
      { "port = 70000", "port must be an integer" },
      { "port = 1.5", "port must be an integer" },
      { "server_name = 5", "server_name must be a server name" },
      { 'server_name = "a b"', "server_name must be a server name" },
      { "database = 'x.db'", "database must be a table with a path string" },
      { 'log_level = "loud"', "log_level must be one of debug, info, warn, error" },
      { 'default_room_version = "1"', "default_room_version must be one of 3, 4, 5, 6, 7, 8, 9, 10, 11, 12" },
      { 'public_baseurl = "example.org"', "public_baseurl must be an http:// or https:// URL" },
      { "limits = 5", "limits must be a table, got number" },
      { "password_iterations = 10", "password_iterations must be an integer" },
    }
    for _, c in ipairs(cases) do
      local path = write(c[1])
      local cfg, err, code = config.load(path)
      os.remove(path)
      assert.is_nil(cfg, c[1])
      assert.equal("config_error", code)
      assert.truthy(err:find(c[2], 1, true), err)
      assert.truthy(err:find(path, 1, true), err)
    end
  end)

  it("reports a missing file", function()
    local cfg, err, code = config.load("/nonexistent/loom.cfg.lua")
    assert.is_nil(cfg)
    assert.equal("config_error", code)
    assert.matches("cannot read config file", err)
  end)

  it("records the file and its directory, and checks scripts and pid_file", function()
    local path = write('scripts = { "policy/a.lua", "b.lua" }\npid_file = "run/loom.pid"\n')
    local cfg = assert(config.load(path))
    os.remove(path)
    assert.equal(path, cfg.config_file)
    assert.equal(path:match("^(.*)/[^/]*$"), cfg.config_dir)
    assert.same({ "policy/a.lua", "b.lua" }, cfg.scripts)
    assert.equal("run/loom.pid", config.pid_file(cfg))
    assert.equal("var/db/loom.pid", config.pid_file { database = { path = "var/db/x.db" } })
    assert.equal("./loom.pid", config.pid_file { database = { path = "x.db" } })
    assert.equal(".", config.dirname("loom.cfg.lua"))
    for _, text in ipairs { 'scripts = "a.lua"', "scripts = { 1 }", 'scripts = { "" }',
                            'scripts = { a = "x.lua" }', "pid_file = 7", 'pid_file = ""' } do
      path = write(text)
      local bad, err, code = config.load(path)
      os.remove(path)
      assert.is_nil(bad, text)
      assert.equal("config_error", code)
      assert.matches(text:match("^([%w_]+)") .. " must be", err)
    end
  end)

  it("loads the shipped example", function()
    local cfg = assert(config.load("loom.cfg.lua.example"))
    assert.equal("localhost", cfg.server_name)
    assert.equal(8008, cfg.port)
    assert.equal("var/loom.db", cfg.database.path)
  end)
end)
