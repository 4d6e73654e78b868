-- Remote media (Server-Server API "Content repository"; Client-Server API
-- downloads of mxc://other.server/...): a server fetches another's media over
-- GET /_matrix/federation/v1/media/download (multipart/mixed), keeps it, and
-- serves it and its thumbnails to its own users; the federation endpoints
-- serve only the server's own media, to signed requests.
local lab_mod = require "loom.lab"
local core = require "loom.core"
local media = require "loom.media"

describe("remote media", function()
  local lab, a, b, out
  setup(function()
    lab = lab_mod.new { seed = 11 }
    a, b = lab:server("a.lab"), lab:server("b.lab")
    local img = lab.dir .. "/src.png"
    assert(core.media.test_image(img, 200, 150))
    local f = assert(io.open(img, "rb"))
    local png = f:read("a")
    f:close()
    out = lab:run(function()
      local o = {}
      local alice, bob = a:register("alice"), b:register("bob")
      local r = a.server:dispatch({ method = "POST", target = "/_matrix/media/v3/upload?filename=p%C3%A9.png",
        path = "/_matrix/media/v3/upload", query = "filename=p%C3%A9.png",
        headers = { authorization = "Bearer " .. alice.access_token, ["content-type"] = "image/png" },
        body = png, keep_alive = true, version = "1.1", peer = { ip = "127.0.0.1", port = 0 } })
      assert.equal(200, r.status, r.body)
      o.uri = core.json.decode(r.body).content_uri
      local sid = o.uri:sub(7)
      o.png = png
      o.first = b:client("GET", "/_matrix/client/v1/media/download/" .. sid, nil, bob.access_token)
      o.requests_after_first = lab.stats.requests
      o.second = b:client("GET", "/_matrix/client/v1/media/download/" .. sid, nil, bob.access_token)
      o.requests_after_second = lab.stats.requests
      o.thumb = b:client("GET", "/_matrix/client/v1/media/thumbnail/" .. sid .. "?width=30&height=30&method=crop",
        nil, bob.access_token)
      o.missing = b:client("GET", "/_matrix/client/v1/media/download/a.lab/nosuchmedia", nil, bob.access_token)
      o.no_remote = b:client("GET", "/_matrix/client/v1/media/download/a.lab/othermedia?allow_remote=false", nil,
        bob.access_token)
      o.no_server = b:client("GET", "/_matrix/client/v1/media/download/nowhere.lab/abc", nil, bob.access_token)
      local fed = b.hs.federation
      local id = o.uri:match("/([%w_%-]+)$")
      o.fed = { fed:request("a.lab", "GET", "/_matrix/federation/v1/media/download/" .. id, { raw = true }) }
      o.fed_thumb = { fed:request("a.lab", "GET", "/_matrix/federation/v1/media/thumbnail/" .. id,
        { raw = true, query = { width = "96", height = "96", method = "crop" } }) }
      -- b serves only its own media: what it cached from a is not b's to serve
      o.fed_cached = { a.hs.federation:request("b.lab", "GET", "/_matrix/federation/v1/media/download/" .. id) }
      o.fed_unsigned = { fed:request("a.lab", "GET", "/_matrix/federation/v1/media/download/" .. id,
        { unsigned = true }) }
      return o
    end)
  end)
  teardown(function() lab:close() end)

  it("fetches remote media once, keeps it and serves it with its name and type", function()
    assert.equal(200, out.first.status)
    assert.equal(out.png, out.first.body)
    assert.equal("image/png", out.first.headers["content-type"])
    assert.equal("inline; filename*=utf-8''p%C3%A9.png", out.first.headers["content-disposition"])
    assert.equal(200, out.second.status)
    assert.equal(out.png, out.second.body)
    assert.equal(out.requests_after_first, out.requests_after_second)   -- the second came from the cache
    local m = b.hs.store:media("a.lab", out.uri:match("/([%w_%-]+)$"))
    assert.is_nil(m.user_id)
    assert.equal(#out.png, m.size)
  end)

  it("makes thumbnails of remote images", function()
    assert.equal(200, out.thumb.status)
    assert.equal("image/png", out.thumb.headers["content-type"])
    local path = lab.dir .. "/thumb.png"
    local f = assert(io.open(path, "wb")); f:write(out.thumb.body); f:close()
    local p = assert(core.media.probe(path))
    assert.same({ 32, 32 }, { p.width, p.height })
  end)

  it("answers unknown remote media and unreachable servers 404 M_NOT_FOUND", function()
    for _, r in ipairs { out.missing, out.no_remote, out.no_server } do
      assert.equal(404, r.status)
      assert.equal("M_NOT_FOUND", r.json.errcode)
    end
  end)

  it("serves multipart/mixed to signed requests, only for its own media", function()
    local status, body, headers = table.unpack(out.fed)
    assert.equal(200, status)
    local parts = assert(media.multipart(headers["content-type"], body))
    assert.equal(2, #parts)
    assert.equal("application/json", parts[1].headers["content-type"])
    assert.same({}, core.json.decode(parts[1].body))
    assert.equal("image/png", parts[2].headers["content-type"])
    assert.equal(out.png, parts[2].body)
    status, body, headers = table.unpack(out.fed_thumb)
    assert.equal(200, status)
    parts = assert(media.multipart(headers["content-type"], body))
    assert.equal("image/png", parts[2].headers["content-type"])
    assert.equal(404, out.fed_cached[1])
    assert.equal("M_NOT_FOUND", out.fed_cached[2].errcode)
    assert.equal(401, out.fed_unsigned[1])
  end)
end)
