-- loom.cli: the `loom` command (bin/loom is a thin wrapper). Every command
-- returns an exit code: 0 ok, 1 error (a message on stderr), 2 usage.
--
--   local cli = require "loom.cli"
--   os.exit(cli.main({ "serve", "--config", "var/loom.cfg.lua" }))
--   cli.main(args, { stdout = f, stderr = f, stdin = f })   -- for tests
--
-- See docs/cli.md.
local config_mod = require "loom.cli.config"

local ipairs, tostring, require, type, pcall, xpcall = ipairs, tostring, require, type, pcall, xpcall
local traceback = debug.traceback
local io_open, os_getenv, os_remove, tonumber = io.open, os.getenv, os.remove, tonumber
local os_execute, load_, assert_, error_, select_, pairs = os.execute, load, assert, error, select, pairs
local string_, table_, math_ = string, table, math
local table_pack, table_concat = table.pack, table.concat
local math_floor = math.floor
local io = io

local _ENV = nil -- luacheck: ignore 211

local cli = {}

cli.USAGE = [[
usage: loom <command> [options]

commands:
  serve [--config FILE]              run the homeserver until SIGINT/SIGTERM
  migrate [--config FILE]            create or upgrade the database, then exit
  reload [--config FILE]             make the running `loom serve` reload its scripts
                                     (SIGHUP to the pid in the config's pid_file)
  rotate-key [--config FILE]         make a new signing key; the old one is published as
                                     retired (old_verify_keys); restart the server after
  lab SCENARIO [--seed N] [--dot FILE] [--svg FILE]
                                     run a federation scenario in the lab (servers in one
                                     process); exit 0 only when every room converged
  register-user USER [--password P | --password-file F] [--admin] [--config FILE]
                                     create an account (USER: localpart or @user:server);
                                     without a password option, one line is read from stdin
  media delete MXC... [--config FILE]
                                     delete media (mxc://server/id): records, thumbnails and
                                     the files no other record uses
  media purge [--user USER] [--before-days N] [--config FILE]
                                     delete the local uploads of USER (or everyone's) made
                                     more than N days ago (0: all of them)
  --help                             this text

The configuration file defaults to $LOOM_CONFIG, else ./loom.cfg.lua when it
exists, else the built-in defaults (docs/config.md).
]]

-- Parse options: spec maps option name -> "flag" | "value". Returns
-- positional args and options, or nil and a usage message.
local function parse(args, first, spec)
  local pos, opts = {}, {}
  local i = first
  while i <= #args do
    local a = args[i]
    local name, inline = a:match("^%-%-([%w-]+)=(.*)$")
    name = name or a:match("^%-%-([%w-]+)$")
    if name then
      local kind = spec[name]
      if not kind then return nil, "unknown option --" .. name end
      if kind == "flag" then
        if inline then return nil, "--" .. name .. " takes no value" end
        opts[name] = true
      else
        local v = inline
        if not v then
          i = i + 1
          v = args[i]
          if v == nil then return nil, "--" .. name .. " needs a value" end
        end
        opts[name] = v
      end
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      return nil, "unknown option " .. a
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  return pos, opts
end
cli.parse = parse

local function file_exists(path)
  local f = io_open(path, "rb")
  if f then f:close(); return true end
  return false
end

--- The configuration for --config FILE (or $LOOM_CONFIG, ./loom.cfg.lua,
-- the defaults): config table, or nil, message.
function cli.load_config(path)
  path = path or os_getenv("LOOM_CONFIG")
  if not path and file_exists("loom.cfg.lua") then path = "loom.cfg.lua" end
  if not path then return config_mod.from_table({}, "defaults") end
  return config_mod.load(path)
end

local commands = {}

-- The start every command shares: its options parsed (spec as for parse;
-- --config is added), then its positional arguments counted (nargs of
-- them, else the usage message `why`), then check(opts) (a usage message or
-- nil), then the configuration loaded. Returns cfg, opts, pos; or nil and
-- the exit code after telling the user.
local function setup(ctx, args, spec, nargs, why, check)
  spec = spec or {}
  spec.config = "value"
  local pos, opts = parse(args, 2, spec)
  if not pos then return nil, ctx.usage(opts) end
  if #pos ~= nargs then return nil, ctx.usage(why) end
  local bad = check and check(opts)
  if bad then return nil, ctx.usage(bad) end
  local cfg, err = cli.load_config(opts.config)
  if not cfg then return nil, ctx.fail(err) end
  return cfg, opts, pos
end

function commands.serve(ctx, args)
  local cfg, code = setup(ctx, args, nil, 0, "serve takes no arguments")
  if not cfg then return code end
  local loom = require "loom"
  local ok, server = pcall(loom.new, cfg)
  if not ok then
    return ctx.fail((cfg.config_file and (cfg.config_file .. ": ") or "") .. tostring(server))
  end
  -- the database's folder (var/ for the default config) is made when missing
  local dir = type(cfg.database.path) == "string" and cfg.database.path:match("^(.*)/[^/]+$")
  if dir and dir ~= "" then require("luv").fs_mkdir(dir, 493) end   -- 0755; an existing folder is fine
  local store, serr = loom.open_store(cfg.database)
  if not store then
    return ctx.fail("cannot open the database " .. tostring(cfg.database.path) .. ": " .. tostring(serr))
  end
  require("loom.api").install(server, { store = store })
  local started, lerr = server:start()
  if not started then
    store:close()
    require("loom.async").finish_closing()
    return ctx.fail(lerr)
  end
  local pid_file, pid = config_mod.pid_file(cfg), ("%d"):format(require("luv").os_getpid())
  local pf, perr = io_open(pid_file, "wb")
  if pf then
    pf:write(pid, "\n")
    pf:close()
  else
    ctx.stderr:write("loom: cannot write the pid file (bin/loom reload will not find this process): ",
      tostring(perr), "\n")
  end
  ctx.stdout:write(("loom %s serving %s at %s\n"):format(loom._VERSION, cfg.server_name, server:base_url()))
  if server:metrics_port() then
    ctx.stdout:write(("metrics at http://%s:%d/metrics\n"):format(cfg.metrics.host or "127.0.0.1",
      server:metrics_port()))
  end
  ctx.stdout:flush()
  server:run()
  if pf then
    -- remove it unless another loom has written its own since
    local f = io_open(pid_file, "rb")
    local now = f and f:read("l")
    if f then f:close() end
    if now == pid then os_remove(pid_file) end
  end
  store:close()
  require("loom.async").finish_closing()
  return 0
end

function commands.reload(ctx, args)
  local cfg, code = setup(ctx, args, nil, 0, "reload takes no arguments")
  if not cfg then return code end
  local pid_file = config_mod.pid_file(cfg)
  local f, ferr = io_open(pid_file, "rb")
  if not f then return ctx.fail("no pid file (is loom serving with this config?): " .. tostring(ferr)) end
  local text = f:read("a") or ""
  f:close()
  local pid = tonumber(text:match("^%s*(%d+)%s*$"))
  if not pid or pid < 2 then return ctx.fail(pid_file .. " does not hold a process ID") end
  -- a stale file may name a process that is not loom now (where /proc tells)
  local proc = io_open("/proc/" .. pid .. "/cmdline", "rb")
  if proc then
    local cmdline = proc:read("a") or ""
    proc:close()
    if not cmdline:find("loom", 1, true) then
      return ctx.fail(("process %d from %s is not loom (a stale pid file?)"):format(pid, pid_file))
    end
  end
  local ok, kerr = require("luv").kill(pid, "sighup")
  if not ok then return ctx.fail(("cannot signal process %d from %s: %s"):format(pid, pid_file, tostring(kerr))) end
  ctx.stdout:write(("sent SIGHUP to loom (pid %d): scripts reload\n"):format(pid))
  return 0
end

function commands.migrate(ctx, args)
  local cfg, code = setup(ctx, args, nil, 0, "migrate takes no arguments")
  if not cfg then return code end
  local store, derr = require("loom.store").open(cfg.database)
  if not store then return ctx.fail("cannot migrate " .. cfg.database.path .. ": " .. tostring(derr)) end
  local v = store:schema_version()
  store:close()
  ctx.stdout:write(("%s: schema version %s\n"):format(cfg.database.path, tostring(v)))
  return 0
end

commands["register-user"] = function(ctx, args)
  local cfg, opts, pos = setup(ctx, args, { password = "value", ["password-file"] = "value", admin = "flag" }, 1,
    "register-user takes one USER", function(o)
      if o.password and o["password-file"] then return "give --password or --password-file, not both" end
    end)
  if not cfg then return opts end   -- the exit code
  local name = pos[1]
  if name:sub(1, 1) == "@" then
    local lp, server = name:match("^@([^:]+):(.+)$")
    if not lp or server ~= cfg.server_name then
      return ctx.fail(("%s is not a user ID on %s"):format(name, cfg.server_name))
    end
    name = lp
  end
  local password = opts.password
  if opts["password-file"] then
    local f, ferr = io_open(opts["password-file"], "rb")
    if not f then return ctx.fail("cannot read the password file: " .. tostring(ferr)) end
    password = f:read("l")
    f:close()
  elseif not password then
    password = ctx.stdin:read("l")
  end
  if type(password) ~= "string" or password == "" then return ctx.fail("no password given") end
  password = password:gsub("\r$", "")
  local store, derr = require("loom.store").open(cfg.database)
  if not store then return ctx.fail("cannot open the database " .. cfg.database.path .. ": " .. tostring(derr)) end
  local accounts = store:accounts { server_name = cfg.server_name, iterations = cfg.password_iterations }
  local user_id, rerr = accounts:register(name, password, { admin = opts.admin })
  store:close()
  if not user_id then return ctx.fail("cannot register " .. name .. ": " .. tostring(rerr)) end
  ctx.stdout:write(("registered %s%s\n"):format(user_id, opts.admin and " (admin)" or ""))
  return 0
end

commands["rotate-key"] = function(ctx, args)
  local cfg, code = setup(ctx, args, nil, 0, "rotate-key takes no arguments")
  if not cfg then return code end
  local store, derr = require("loom.store").open(cfg.database)
  if not store then return ctx.fail("cannot open the database " .. cfg.database.path .. ": " .. tostring(derr)) end
  local core = require "loom.core"
  local old = store:signing_key()
  local key_id = "ed25519:" .. core.crypto.base64_encode(core.crypto.random_bytes(6), true):gsub("-", "_")
  local ok, err = pcall(function()
    store:transaction(function()
      store:add_signing_key(key_id, core.crypto.random_bytes(32))
      store:retire_signing_keys(key_id)
      return true
    end)
  end)
  store:close()
  if not ok then return ctx.fail("cannot rotate the key: " .. tostring(err)) end
  ctx.stdout:write(("new signing key %s%s; restart the server to use it\n"):format(key_id,
    old and (" (" .. old .. " retired)") or ""))
  return 0
end

-- bin/loom media delete|purge: removes media through loom.media (records,
-- thumbnails, then each file once no record points at its hash).
commands.media = function(ctx, args)
  local pos, opts = parse(args, 2, { config = "value", user = "value", ["before-days"] = "value" })
  if not pos then return ctx.usage(opts) end
  local sub = pos[1]
  if sub ~= "delete" and sub ~= "purge" then return ctx.usage("media takes delete or purge") end
  if sub == "delete" and (#pos < 2 or opts.user or opts["before-days"]) then
    return ctx.usage("media delete takes one or more mxc:// URIs")
  end
  local days
  if sub == "purge" then
    if #pos ~= 1 then return ctx.usage("media purge takes options only") end
    days = tonumber(opts["before-days"] or "")
    if not days or days < 0 then return ctx.usage("media purge needs --before-days N (N >= 0)") end
  end
  local cfg, err = cli.load_config(opts.config)
  if not cfg then return ctx.fail(err) end
  local store, derr = require("loom.store").open(cfg.database)
  if not store then return ctx.fail("cannot open the database " .. cfg.database.path .. ": " .. tostring(derr)) end
  local media = require "loom.media"
  local repo = media.new { config = cfg, store = store, server_name = cfg.server_name }
  local list, missing = {}, 0
  if sub == "delete" then
    for i = 2, #pos do
      local server, id = pos[i]:match("^mxc://([^/]+)/([%w_%-]+)$")
      if not server then
        store:close()
        return ctx.fail(pos[i] .. " is not an mxc:// URI")
      end
      list[#list + 1] = { server_name = server, media_id = id }
    end
  else
    local before = require("loom.core").now_ms() - math_floor(days * 86400000)
    if days == 0 then before = 1 << 62 end
    if opts.user then list = store:media_of_user(opts.user, before) else list = store:media_before(before) end
  end
  local n = 0
  for _, m in ipairs(list) do
    if repo:delete(m.server_name, m.media_id) then n = n + 1 else missing = missing + 1 end
  end
  store:close()
  ctx.stdout:write(("deleted %d media%s\n"):format(n, missing > 0 and (" (" .. missing .. " not found)") or ""))
  return missing > 0 and 1 or 0
end

-- The names a lab scenario file sees: the lab, and Lua's harmless parts.
local function scenario_env(lab, out)
  local env = {
    lab = lab, assert = assert_, error = error_, ipairs = ipairs, pairs = pairs, tostring = tostring,
    tonumber = tonumber, type = type, select = select_, string = string_, table = table_, math = math_,
    print = function(...)
      local parts = table_pack(...)
      for i = 1, parts.n do parts[i] = tostring(parts[i]) end
      out:write(table_concat(parts, "\t", 1, parts.n), "\n")
    end,
  }
  return env
end

commands.lab = function(ctx, args)
  local pos, opts = parse(args, 2, { seed = "value", dot = "value", svg = "value" })
  if not pos then return ctx.usage(opts) end
  if #pos ~= 1 then return ctx.usage("lab takes one SCENARIO file") end
  local seed = tonumber(opts.seed or "1")
  if not seed or seed % 1 ~= 0 then return ctx.usage("--seed takes an integer") end
  local f, ferr = io_open(pos[1], "rb")
  if not f then return ctx.fail("cannot read " .. pos[1] .. ": " .. tostring(ferr)) end
  local text = f:read("a")
  f:close()
  local lab = require("loom.lab").new { seed = seed }
  local chunk, lerr = load_(text, "=" .. pos[1], "t", scenario_env(lab, ctx.stdout))
  if not chunk then lab:close(); return ctx.fail(lerr) end
  -- after the scenario: the queues drain and every server backfills the
  -- rooms' history, then the checks run
  local ok, rooms = pcall(function()
    return lab:run(function()
      local r = chunk()
      lab:settle(5000)
      for _, room in ipairs(type(r) == "table" and r or { r }) do
        if type(room) == "string" then lab:backfill(room) end
      end
      return r
    end, 300000)
  end)
  if not ok then
    lab:close()
    return ctx.fail("scenario failed: " .. tostring(rooms))
  end
  if type(rooms) == "string" then rooms = { rooms } end
  if type(rooms) ~= "table" or #rooms == 0 then
    lab:close()
    return ctx.fail("the scenario must return the room ID (or a list of room IDs) to check")
  end
  local all_ok = true
  for _, room in ipairs(rooms) do
    local report = lab:check(room)
    ctx.stdout:write(("room %s: %s\n"):format(room, report.ok and "converged" or "NOT converged"))
    ctx.stdout:write(lab:report(room))
    for _, p in ipairs(report.problems) do ctx.stdout:write("  problem: " .. p .. "\n") end
    if not report.ok then all_ok = false end
  end
  local dot = (opts.dot or opts.svg) and lab:dot(rooms[1])
  lab:close()
  if opts.dot then
    local out, oerr = io_open(opts.dot, "wb")
    if not out then return ctx.fail("cannot write " .. opts.dot .. ": " .. tostring(oerr)) end
    out:write(dot)
    out:close()
  end
  if opts.svg then
    local tmp = opts.svg .. ".dot"
    local out = assert_(io_open(tmp, "wb"))
    out:write(dot)
    out:close()
    local quote = function(p) return "'" .. p:gsub("'", "'\\''") .. "'" end
    -- env -u: a preloaded library of this process (a sanitizer) is not for dot
    local rc = os_execute("env -u LD_PRELOAD dot -Tsvg -o " .. quote(opts.svg) .. " " .. quote(tmp) .. " 2>/dev/null")
    os_remove(tmp)
    if rc ~= true and rc ~= 0 then return ctx.fail("--svg needs Graphviz (the dot program); use --dot FILE") end
  end
  return all_ok and 0 or 1
end

--- Run the command line args (an array of strings, like arg). io: stdout,
-- stderr, stdin (default the process's). Returns the exit code.
function cli.main(args, io_opts)
  io_opts = io_opts or {}
  local ctx = {
    stdout = io_opts.stdout or io.stdout,
    stderr = io_opts.stderr or io.stderr,
    stdin = io_opts.stdin or io.stdin,
  }
  function ctx.usage(msg)
    if msg then ctx.stderr:write("loom: " .. msg .. "\n") end
    ctx.stderr:write(cli.USAGE)
    return 2
  end
  function ctx.fail(msg)
    ctx.stderr:write("loom: " .. tostring(msg) .. "\n")
    return 1
  end
  local cmd = args[1]
  if cmd == "--help" or cmd == "-h" or cmd == "help" then
    ctx.stdout:write(cli.USAGE)
    return 0
  end
  if not cmd then return ctx.usage() end
  local fn = commands[cmd]
  if not fn then return ctx.usage("unknown command " .. cmd) end
  for _, a in ipairs(args) do
    if a == "--help" or a == "-h" then ctx.stdout:write(cli.USAGE); return 0 end
  end
  local ok, code = xpcall(fn, traceback, ctx, args)
  if not ok then return ctx.fail(code) end
  return code
end

cli.commands = commands

return cli
