-- Differential specs of the content repository: the same legacy media
-- requests (the ones Synapse 1.67 serves: /_matrix/media/v3) against loom and
-- Synapse 1.67, comparing status, errcode and the headers clients read.
-- Where they differ on purpose, the case says why.
local tesths = require "support.hs"
local synapse = require "support.synapse"

local NAME = "diff.test"

local loom_t, peer
local servers = {}

local function call(s, method, path, body, token, headers)
  return s.c:run(function() return s.c:call(method, path, body, token, headers) end, 60000)
end

local function register(s, user)
  local body = { username = user, password = "pw-" .. user }
  local r = call(s, "POST", "/_matrix/client/v3/register", body)
  assert(r.status == 401 and r.json and r.json.session, "register " .. user .. ": " .. r.body)
  body.auth = { type = "m.login.dummy", session = r.json.session }
  r = call(s, "POST", "/_matrix/client/v3/register", body)
  assert(r.status == 200, "register " .. user .. ": " .. r.body)
  return r.json
end

local function outcome(r, extra)
  local o = { status = r.status, errcode = r.json and r.json.errcode or nil }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

local function upload(s, body, ctype, name)
  local r = call(s, "POST", "/_matrix/media/v3/upload" .. (name and ("?filename=" .. tesths.enc(name)) or ""), body,
    s.alice.access_token, { ["Content-Type"] = ctype })
  assert(r.status == 200, "upload: " .. r.body)
  return r.json.content_uri:match("^mxc://(.+)$")
end

local cases = {}
local function case(name, fn, differs) cases[#cases + 1] = { name = name, fn = fn, differs = differs } end

case("an upload without an access token", function(s)
  return outcome(call(s, "POST", "/_matrix/media/v3/upload", "abc", nil, { ["Content-Type"] = "text/plain" }))
end)

case("an upload and its download: type, bytes, file name", function(s)
  local id = upload(s, "hello there", "text/plain", "note.txt")
  local r = call(s, "GET", "/_matrix/media/v3/download/" .. id)
  return outcome(r, { body = r.body, type = r.headers["content-type"],
    named = (r.headers["content-disposition"] or ""):find("note.txt", 1, true) ~= nil,
    mxc = id:match("^([^/]+)/[%w_%-]+$") })
end)

case("a download with a file name in the path", function(s)
  local id = upload(s, "x", "text/plain", "a.txt")
  local r = call(s, "GET", "/_matrix/media/v3/download/" .. id .. "/other.txt")
  return outcome(r, { named = (r.headers["content-disposition"] or ""):find("other.txt", 1, true) ~= nil })
end)

case("a download of unknown media", function(s)
  return outcome(call(s, "GET", "/_matrix/media/v3/download/" .. NAME .. "/nosuchmediaid"))
end)

case("the media config", function(s)
  local r = call(s, "GET", "/_matrix/media/v3/config", nil, s.alice.access_token)
  return outcome(r, { size = r.json and r.json["m.upload.size"] })
end)

case("a thumbnail of a file that is not an image", function(s)
  local id = upload(s, "plain text", "text/plain")
  return outcome(call(s, "GET", "/_matrix/media/v3/thumbnail/" .. id .. "?width=32&height=32&method=crop"))
end)

local function show(v)
  return require("loom.core").json.encode(v, { canonical = true }) or tostring(v)
end

describe("loom and Synapse 1.67 answer media requests alike", function()
  setup(function()
    loom_t = tesths.start { server_name = NAME }
    local why
    peer, why = synapse.start(NAME)
    assert(peer, "differential specs need Synapse 1.67: " .. tostring(why))
    servers.loom = { c = loom_t }
    servers.synapse = { c = loom_t:client_for(peer.port) }
    for _, s in pairs(servers) do s.alice = register(s, "alice") end
  end)

  teardown(function()
    if peer then peer.stop() end
    if loom_t then loom_t:stop() end
  end)

  for _, c in ipairs(cases) do
    it(c.name, function()
      local want = c.fn(servers.synapse)
      local got = c.fn(servers.loom)
      local message = ("%s\n  synapse: %s\n  loom:    %s"):format(c.name, show(want), show(got))
      if c.differs then
        assert.same(c.differs.synapse, want, message .. "\n  " .. c.differs.why)
        assert.same(c.differs.loom, got, message .. "\n  " .. c.differs.why)
      else
        assert.same(want, got, message)
      end
    end)
  end
end)
