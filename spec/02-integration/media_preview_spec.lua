-- URL previews (Client-Server API GET /_matrix/client/v1/media/preview_url):
-- OpenGraph tags of an HTML page fetched through the outbound client, its
-- redirects, the address guard, and off by default.
local hs = require "support.hs"
local uv = require "luv"
local httpserver = require "loom.http.server"
local response = require "loom.http.response"

local PAGE = [[<!doctype html><html><head><title>
  Plain title </title>
<meta property="og:title" content="Tom &amp; Jerry">
<meta property='og:description' content="A cat &#x26; a mouse">
<meta name="og:site_name" content="Toons">
<meta property="og:secret" content="not passed on">
</head><body>hi</body></html>]]

local function enc(s) return (s:gsub("[^%w%-._~]", function(c) return ("%%%02X"):format(c:byte()) end)) end

describe("URL previews", function()
  local site, t, u, base
  setup(function()
    site = httpserver.new { host = "127.0.0.1", port = 0, handler = function(req)
      if req.path == "/page" then return response.new(200, PAGE, { ["Content-Type"] = "text/html; charset=utf-8" }) end
      if req.path == "/plain" then
        return response.new(200, "<html><head><title>Only a title</title>"
          .. "<meta name=\"description\" content=\"described\"></head></html>", { ["Content-Type"] = "text/html" })
      end
      if req.path == "/moved" then return response.new(302, "", { Location = "/page" }) end
      if req.path == "/file" then return response.new(200, "\0\1\2", { ["Content-Type"] = "application/zip" }) end
      return response.new(404, "no")
    end }
    assert(site:listen())
    base = "http://127.0.0.1:" .. site:port()
    t = hs.start { media = { url_preview = true }, federation = { port = 0, allow_ips = { "127.0.0.1/32" } } }
    u = t:register("p")
  end)
  teardown(function()
    t:stop()
    site:stop()
    for _ = 1, 5 do uv.run("nowait") end
  end)

  local function preview(url, who)
    return t:request("GET", "/_matrix/client/v1/media/preview_url?url=" .. enc(url), nil, (who or u).access_token)
  end

  it("answers a page's OpenGraph tags", function()
    local r = preview(base .. "/page")
    assert.equals(200, r.status, r.body)
    assert.same({ ["og:title"] = "Tom & Jerry", ["og:description"] = "A cat & a mouse", ["og:site_name"] = "Toons" },
      r.json)
  end)

  it("falls back on <title> and the description, follows redirects, and has {} for other types", function()
    local r = preview(base .. "/plain")
    assert.same({ ["og:title"] = "Only a title", ["og:description"] = "described" }, r.json)
    r = preview(base .. "/moved")
    assert.equals("Tom & Jerry", r.json["og:title"])
    r = preview(base .. "/file")
    assert.equals(200, r.status)
    assert.same({}, r.json)
  end)

  it("refuses bad URLs, pages that fail, and needs a token", function()
    local r = preview("ftp://example.org/x")
    assert.equals(400, r.status)
    assert.equals("M_INVALID_PARAM", r.json.errcode)
    r = t:request("GET", "/_matrix/client/v1/media/preview_url", nil, u.access_token)
    assert.equals(400, r.status)
    assert.equals("M_MISSING_PARAM", r.json.errcode)
    r = preview(base .. "/missing")
    assert.equals(502, r.status)
    r = t:request("GET", "/_matrix/client/v1/media/preview_url?url=" .. enc(base .. "/page"))
    assert.equals(401, r.status)
  end)

  it("refuses addresses the guard blocks, and is off by default", function()
    local t2 = hs.start { media = { url_preview = true } }
    local v = t2:register("q")
    local r = t2:request("GET", "/_matrix/client/v1/media/preview_url?url=" .. enc(base .. "/page"), nil,
      v.access_token)
    assert.equals(403, r.status)
    assert.equals("M_FORBIDDEN", r.json.errcode)
    t2:stop()
    local t3 = hs.start {}
    local w = t3:register("r")
    r = t3:request("GET", "/_matrix/client/v1/media/preview_url?url=" .. enc(base .. "/page"), nil, w.access_token)
    assert.equals(404, r.status)
    assert.equals("M_UNRECOGNIZED", r.json.errcode)
    t3:stop()
  end)
end)
