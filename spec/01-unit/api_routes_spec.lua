-- One shape of endpoint module: each loom.api.client.* module exports a route
-- table that loom.api.install registers, with one auth wrapper.
--
-- The endpoint modules load luv (through the sync notifier). busted unloads
-- what a spec file loaded when the file ends, and luv must not be loaded
-- twice into one Lua state: expose keeps these modules loaded for the files
-- after this one.
local api
expose("endpoint modules are loaded", function()
  api = require "loom.api"
  for _, name in ipairs(api.modules) do require(name) end
end)

local METHODS = { GET = true, PUT = true, POST = true, DELETE = true }

describe("endpoint modules", function()
  it("export routes { method, path, handler(hs, req), auth = bool } and no install", function()
    local seen, n = {}, 0
    for _, name in ipairs(api.modules) do
      local mod = require(name)
      assert.is_nil(mod.install, name .. " still has install")
      assert.is_table(mod.routes, name)
      for i, r in ipairs(mod.routes) do
        local where = name .. " route " .. i
        assert.is_true(METHODS[r[1]] == true, where)
        assert.matches("^/_matrix/client/v[13]/", r[2], nil, false, where)
        assert.is_function(r[3], where)
        assert.is_boolean(r.auth, where)
        local key = r[1] .. " " .. r[2]
        assert.is_nil(seen[key], "twice: " .. key)
        seen[key] = name
        n = n + 1
      end
    end
    assert.is_true(n > 40)
    -- a module of the api/client folder that is not listed would never be served
    for _, name in ipairs({ "account", "directory", "rooms", "sync" }) do
      local listed = false
      for _, m in ipairs(api.modules) do listed = listed or m == "loom.api.client." .. name end
      assert.is_true(listed, name)
    end
  end)

  it("install_routes wraps auth routes with hs:authed and passes (hs, req)", function()
    local registered = {}
    local authed = 0
    local hs = {
      server = { route = function(_, method, path, fn) registered[method .. " " .. path] = fn end },
      authed = function(_, fn)
        authed = authed + 1
        return function(req)
          if not req.token then return "401" end
          req.user_id = "@u:x"
          return fn(req)
        end
      end,
    }
    api.install_routes(hs, {
      { "GET", "/open", function(h, req) return h, req end, auth = false },
      { "GET", "/closed", function(h, req) return h, req.user_id end, auth = true },
    })
    assert.equals(1, authed)
    local h, req = registered["GET /open"]({ })
    assert.equals(hs, h)
    assert.is_table(req)
    assert.equals("401", registered["GET /closed"]({}))
    local h2, user = registered["GET /closed"]({ token = "t" })
    assert.equals(hs, h2)
    assert.equals("@u:x", user)
  end)

  it("a route without auth = true|false is refused when installed", function()
    local hs = { server = { route = function() end }, authed = function(_, fn) return fn end }
    assert.has_error(function()
      api.install_routes(hs, { { "GET", "/x", function() end } })
    end, nil)
    local ok, err = pcall(api.install_routes, hs, { { "GET", "/x", "not a function", auth = true } })
    assert.is_false(ok)
    assert.matches("GET /x", err, 1, true)
  end)
end)

describe("endpoint errors", function()
  -- docs/http.md, "One way to report an error": handlers return error values,
  -- lower-level failures go through hs:error.
  local files = {}
  for _, name in ipairs({ "account", "directory", "events", "rooms", "sync" }) do
    local path = "lua/loom/api/client/" .. name .. ".lua"
    local f = assert(io.open(path, "rb"))
    files[path] = f:read("a")
    f:close()
  end

  it("no endpoint maps lower-level codes itself (hs:error does)", function()
    for path, src in pairs(files) do
      assert.is_nil(src:find("errors.from_code", 1, true), path)
    end
  end)

  it("no endpoint builds an error table by hand", function()
    for path, src in pairs(files) do
      for line in src:gmatch("[^\n]+") do
        -- the user-interactive-auth challenge is a 401 response with flows, not an error value
        if line:find("errcode%s*=") and not line:find("Unsupported authentication type", 1, true) then
          error(path .. ": " .. line)
        end
        assert.is_nil(line:match("return%s+[45]%d%d%s*,%s*{"), path .. ": " .. line)
      end
    end
  end)
end)
