-- The loom command: usage and exit codes, register-user, migrate, and
-- serve in a child process.
local uv = require "luv"
local cli = require "loom.cli"
local tesths = require "support.hs"
local tmp = require "support.tmpdb"
local shell = require "support.shell"
local child = require "support.child"

local LUA = arg and arg[-1] or "lua5.4"

-- A writable sink for cli.main's stdout/stderr.
local function sink()
  local s = { text = "" }
  function s.write(self, ...)
    for _, v in ipairs { ... } do self.text = self.text .. v end
    return self
  end
  function s.flush() end
  return s
end

local function run(args, stdin_lines)
  local out, err = sink(), sink()
  local lines = stdin_lines or {}
  local stdin = { read = function() return table.remove(lines, 1) end }
  local code = cli.main(args, { stdout = out, stderr = err, stdin = stdin })
  return code, out.text, err.text
end

local function read_all(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

-- Run bin/loom in a child process (keeping LD_PRELOAD: loom is under test).
local function loom(args)
  local out, err = os.tmpname(), os.tmpname()
  local ok, how, code = os.execute(("exec %s bin/loom %s >%s 2>%s"):format(LUA, args, out, err))
  local o, e = read_all(out), read_all(err)
  os.remove(out); os.remove(err)
  return how == "exit" and code or -1, o, e, ok
end

local function write_config(text)
  local path = tmp.path():gsub("%.db$", ".cfg.lua")
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

describe("loom command line", function()
  local db, cfg
  before_each(function()
    db = tmp.path()
    cfg = write_config(('server_name = "test.local"\nport = 0\nlog_level = "warn"\n'
      .. 'password_iterations = 1000\ndatabase = { path = %q }\n'):format(db))
  end)
  after_each(function()
    tmp.remove(db)
    os.remove(cfg)
  end)

  describe("usage", function()
    it("--help prints the usage and exits 0", function()
      local code, out = run({ "--help" })
      assert.equal(0, code)
      assert.matches("usage: loom", out)
      assert.equal(0, (run({ "serve", "--help" })))
      local c2, o2 = loom("--help")
      assert.equal(0, c2)
      assert.matches("register%-user", o2)
    end)

    it("bad usage exits 2 with a message on stderr", function()
      for _, args in ipairs {
        {}, { "frobnicate" }, { "serve", "--bogus" }, { "serve", "extra" }, { "serve", "--config" },
        { "register-user" }, { "register-user", "a", "b" },
        { "register-user", "a", "--password", "x", "--password-file", "f" }, { "migrate", "--admin=1" },
      } do
        local code, _, err = run(args)
        assert.equal(2, code, table.concat(args, " "))
        assert.matches("usage: loom", err)
      end
      local code, _, err = loom("frobnicate")
      assert.equal(2, code)
      assert.matches("unknown command", err)
    end)

    it("checks the arguments before it reads the config file", function()
      for _, case in ipairs {
        { { "serve", "x" }, "serve takes no arguments" }, { { "reload", "x" }, "reload takes no arguments" },
        { { "migrate", "x" }, "migrate takes no arguments" },
        { { "register-user" }, "register%-user takes one USER" },
        { { "register-user", "a", "--password", "x", "--password-file", "f" },
          "give %-%-password or %-%-password%-file" },
      } do
        local args = case[1]
        args[#args + 1] = "--config=/nonexistent.cfg.lua"
        local code, _, err = run(args)
        assert.equal(2, code, table.concat(args, " "))
        assert.matches("^loom: " .. case[2], err)
      end
    end)

    it("a bad config file exits 1 naming the problem", function()
      local bad = write_config('port = "x"\n')
      local code, _, err = run({ "migrate", "--config", bad })
      os.remove(bad)
      assert.equal(1, code)
      assert.matches("port must be an integer", err)
      code, _, err = run({ "serve", "--config", "/nonexistent.cfg.lua" })
      assert.equal(1, code)
      assert.matches("cannot read config file", err)
    end)
  end)

  describe("migrate", function()
    it("creates the database and reports its schema version", function()
      local code, out = run({ "migrate", "--config", cfg })
      assert.equal(0, code)
      assert.matches("schema version %d+", out)
      code = run({ "migrate", "--config=" .. cfg })
      assert.equal(0, code)
    end)
  end)

  describe("register-user", function()
    it("creates a user who can log in over HTTP", function()
      local pwfile = os.tmpname()
      local f = assert(io.open(pwfile, "wb")); f:write("s3cret\n"); f:close()
      local code, out, err = loom(("register-user alice --password-file %s --admin --config %s")
        :format(shell.quote(pwfile), shell.quote(cfg)))
      os.remove(pwfile)
      assert.equal(0, code, err)
      assert.matches("registered @alice:test%.local %(admin%)", out)
      -- from stdin, with a full user ID
      local code2, out2 = run({ "register-user", "@bob:test.local", "--config", cfg }, { "hunter2" })
      assert.equal(0, code2)
      assert.matches("@bob:test.local", out2, 1, true)

      local t = tesths.start({ database = { path = db } })
      finally(function() t:stop() end)
      assert.is_true(t.hs.accounts:user("@alice:test.local").admin)
      assert.is_false(t.hs.accounts:user("@bob:test.local").admin)
      for _, who in ipairs { { "alice", "s3cret" }, { "@bob:test.local", "hunter2" } } do
        local r = t:request("POST", "/_matrix/client/v3/login", { type = "m.login.password",
          identifier = { type = "m.id.user", user = who[1] }, password = who[2] })
        assert.equal(200, r.status)
        assert.is_string(r.json.access_token)
      end
    end)

    it("refuses taken and foreign names, and a missing password", function()
      assert.equal(0, (run({ "register-user", "carol", "--password", "pw", "--config", cfg })))
      local code, _, err = run({ "register-user", "carol", "--password", "pw", "--config", cfg })
      assert.equal(1, code)
      assert.matches("already taken", err)
      code, _, err = run({ "register-user", "@dave:elsewhere.org", "--password", "pw", "--config", cfg })
      assert.equal(1, code)
      assert.matches("not a user ID on test.local", err, 1, true)
      code, _, err = run({ "register-user", "Bad Name", "--password", "pw", "--config", cfg })
      assert.equal(1, code)
      assert.matches("cannot register", err)
      code, _, err = run({ "register-user", "erin", "--config", cfg }, {})
      assert.equal(1, code)
      assert.matches("no password", err)
    end)
  end)

  describe("serve", function()
    it("on a port already taken prints one error and exits 1, without a crash", function()
      local holder = uv.new_tcp()
      assert(holder:bind("127.0.0.1", 0))
      assert(holder:listen(1, function() end))
      local port = holder:getsockname().port
      local taken = write_config(('server_name = "test.local"\nport = %d\nlog_level = "warn"\n'
        .. 'database = { path = %q }\n'):format(port, db))
      finally(function()
        os.remove(taken)
        holder:close()
        for _ = 1, 3 do uv.run("nowait") end
      end)
      for _ = 1, 2 do
        local out, errf = os.tmpname(), os.tmpname()
        local _, how, code = os.execute(("exec %s bin/loom serve --config %s >%s 2>%s")
          :format(LUA, shell.quote(taken), out, errf))
        local o, e = read_all(out), read_all(errf)
        os.remove(out); os.remove(errf)
        assert.equal("exit", how, "killed by signal " .. tostring(code) .. "; stderr: " .. e)
        assert.not_equal(139, code)
        assert.equal(1, code, e)
        assert.equal("", o)
        assert.equal(("loom: cannot listen on 127.0.0.1 port %d: EADDRINUSE: address already in use\n")
          :format(port), e)
      end
    end)

    it("answers /versions on its printed URL and stops on SIGTERM", function()
      local c = child.start { "bin/loom", "serve", "--config", cfg }
      local port = c:wait_for("http://127%.0%.0%.1:(%d+)")
      local ok, err = pcall(function()
        assert.truthy(port, "no URL printed; stderr: " .. c.err)
        assert.not_equal("0", port)
        local r = c:request("GET", "/_matrix/client/versions")
        assert.equal(200, r.status)
        assert.matches('"versions":%[', r.body)
      end)
      local exit_code, exit_signal = c:stop()
      assert(ok, err)
      assert.equal(0, exit_code, c.err)
      assert.equal(0, exit_signal)
    end)
  end)
end)
