-- The content repository (Client-Server API "Content repository"): uploads,
-- downloads, thumbnails, the security headers, limits and the legacy
-- unauthenticated endpoints.
local hs = require "support.hs"
local core = require "loom.core"

local function tmpdir()
  local p = os.tmpname()
  os.remove(p)
  assert(require("luv").fs_mkdir(p, 448))
  return p
end

local function count_files(dir)
  local p = io.popen("find '" .. dir .. "' -mindepth 3 -type f | wc -l")
  local n = tonumber(p:read("a"))
  p:close()
  return n
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local d = f:read("a")
  f:close()
  return d
end

local function mxc_parts(uri)
  return uri:match("^mxc://([^/]+)/([%w_%-]+)$")
end

describe("content repository", function()
  local t, alice, bob, dir
  setup(function()
    dir = tmpdir()
    t = hs.start { media = { store_path = dir, max_upload_size = 200000, quota = 300000 } }
    alice = t:register("alice")
    bob = t:register("bob")
  end)
  teardown(function()
    t:stop()
    os.execute("rm -rf '" .. dir .. "'")
  end)

  local function upload(who, body, ctype, name)
    return t:request("POST", "/_matrix/media/v3/upload" .. (name and ("?filename=" .. hs.enc(name)) or ""),
      body, who.access_token, { ["Content-Type"] = ctype or "application/octet-stream" })
  end

  it("uploads and downloads a file, with the security headers", function()
    local body = "hello media " .. string.rep("x", 1000)
    local r = upload(alice, body, "text/plain", "hello.txt")
    assert.equals(200, r.status, r.body)
    local server, id = mxc_parts(r.json.content_uri)
    assert.equals("test.local", server)
    local d = t:request("GET", "/_matrix/client/v1/media/download/" .. server .. "/" .. id, nil, bob.access_token)
    assert.equals(200, d.status)
    assert.equals(body, d.body)
    assert.equals("text/plain; charset=UTF-8", d.headers["content-type"])
    assert.equals('inline; filename="hello.txt"', d.headers["content-disposition"])
    assert.equals("nosniff", d.headers["x-content-type-options"])
    assert.equals("cross-origin", d.headers["cross-origin-resource-policy"])
    assert.matches("sandbox", d.headers["content-security-policy"], 1, true)
    -- the file name in the path names the download
    d = t:request("GET", "/_matrix/client/v1/media/download/" .. server .. "/" .. id .. "/na%C3%AFve.txt",
      nil, bob.access_token)
    assert.equals(200, d.status)
    assert.equals("inline; filename*=utf-8''na%C3%AFve.txt", d.headers["content-disposition"])
  end)

  it("serves unsafe types as attachments", function()
    local r = upload(alice, "<script>alert(1)</script>", "text/html", "x.html")
    local _, id = mxc_parts(r.json.content_uri)
    local d = t:request("GET", "/_matrix/client/v1/media/download/test.local/" .. id, nil, alice.access_token)
    assert.equals(200, d.status)
    assert.equals('attachment; filename="x.html"', d.headers["content-disposition"])
  end)

  it("needs an access token on the authenticated endpoints", function()
    local r = upload(alice, "abc", "text/plain")
    local _, id = mxc_parts(r.json.content_uri)
    local d = t:request("GET", "/_matrix/client/v1/media/download/test.local/" .. id)
    assert.equals(401, d.status)
    assert.equals("M_MISSING_TOKEN", d.json.errcode)
    assert.equals(401, t:request("POST", "/_matrix/media/v3/upload", "x").status)
  end)

  it("stores identical uploads once", function()
    local body = "same bytes " .. core.now_ms()
    local before = count_files(dir)
    local a = upload(alice, body, "text/plain")
    local b = upload(bob, body, "application/octet-stream")
    assert.equals(200, a.status)
    assert.equals(200, b.status)
    assert.are_not.equal(a.json.content_uri, b.json.content_uri)
    assert.equals(before + 1, count_files(dir))
    local _, id = mxc_parts(b.json.content_uri)
    local d = t:request("GET", "/_matrix/client/v1/media/download/test.local/" .. id, nil, bob.access_token)
    assert.equals(body, d.body)
    assert.equals("application/octet-stream", d.headers["content-type"])
    assert.equals("attachment", d.headers["content-disposition"])
  end)

  it("refuses an upload over max_upload_size with 413 M_TOO_LARGE", function()
    local r = upload(bob, string.rep("y", 200001), "text/plain")
    assert.equals(413, r.status)
    assert.equals("M_TOO_LARGE", r.json.errcode)
    -- before the body: Content-Length alone says it is too large
    r = t:run(function()
      local uv = require "luv"
      local co = coroutine.running()
      local tcp = uv.new_tcp()
      local buf = ""
      tcp:connect("127.0.0.1", t.port, function() coroutine.resume(co) end)
      coroutine.yield()
      tcp:read_start(function(_, data)
        if data then buf = buf .. data end
        if buf:find("\r\n\r\n", 1, true) or not data then
          tcp:read_stop()
          coroutine.resume(co)
        end
      end)
      tcp:write("POST /_matrix/media/v3/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " .. bob.access_token
        .. "\r\nContent-Length: 100000000\r\n\r\n")
      coroutine.yield()
      tcp:close()
      return buf
    end)
    assert.matches("^HTTP/1.1 413", r)
    assert.matches("M_TOO_LARGE", r, 1, true)
    local c = t:request("GET", "/_matrix/client/v1/media/config", nil, bob.access_token)
    assert.equals(200, c.status)
    assert.equals(200000, c.json["m.upload.size"])
  end)

  it("enforces the per-user quota with 403 M_FORBIDDEN", function()
    local u = t:register("quota")
    assert.equals(200, upload(u, string.rep("a", 150000), "text/plain").status)
    assert.equals(200, upload(u, string.rep("b", 140000), "text/plain").status)
    local r = upload(u, string.rep("c", 20000), "text/plain")
    assert.equals(403, r.status)
    assert.equals("M_FORBIDDEN", r.json.errcode)
    assert.equals(200, upload(alice, string.rep("c", 20000), "text/plain").status)
  end)

  it("answers unknown media 404 M_NOT_FOUND", function()
    for _, path in ipairs { "/_matrix/client/v1/media/download/test.local/nosuchmedia",
        "/_matrix/client/v1/media/download/test.local/bad%20id",
        "/_matrix/client/v1/media/thumbnail/test.local/nosuchmedia?width=32&height=32",
        "/_matrix/media/v3/download/test.local/nosuchmedia" } do
      local r = t:request("GET", path, nil, alice.access_token)
      assert.equals(404, r.status, path)
      assert.equals("M_NOT_FOUND", r.json.errcode, path)
    end
  end)

  it("creates a media ID, uploads to it once, and waits for a pending one", function()
    local c = t:request("POST", "/_matrix/media/v1/create", {}, alice.access_token)
    assert.equals(200, c.status, c.body)
    assert.is_true(c.json.unused_expires_at > core.now_ms())
    local server, id = mxc_parts(c.json.content_uri)
    local url = "/_matrix/client/v1/media/download/" .. server .. "/" .. id
    local r = t:request("GET", url .. "?timeout_ms=200", nil, alice.access_token)
    assert.equals(504, r.status)
    assert.equals("M_NOT_YET_UPLOADED", r.json.errcode)
    -- someone else may not upload to it
    r = t:request("PUT", "/_matrix/media/v3/upload/" .. server .. "/" .. id, "x", bob.access_token,
      { ["Content-Type"] = "text/plain" })
    assert.equals(403, r.status)
    -- a download waiting meanwhile gets the upload
    local got = t:run(function()
      local h = t:go(function() return t:call("GET", url .. "?timeout_ms=5000", nil, alice.access_token) end)
      t:sleep(150)
      local p = t:call("PUT", "/_matrix/media/v3/upload/" .. server .. "/" .. id .. "?filename=late.txt",
        "late bytes", alice.access_token, { ["Content-Type"] = "text/plain" })
      assert.equals(200, p.status, p.body)
      return t:await(h)
    end)
    assert.equals(200, got.status)
    assert.equals("late bytes", got.body)
    r = t:request("PUT", "/_matrix/media/v3/upload/" .. server .. "/" .. id, "again", alice.access_token,
      { ["Content-Type"] = "text/plain" })
    assert.equals(409, r.status)
    assert.equals("M_CANNOT_OVERWRITE_MEDIA", r.json.errcode)
  end)

  describe("thumbnails", function()
    local id
    setup(function()
      local path = dir .. "/src.jpg"
      assert(core.media.test_image(path, 400, 300))
      local r = upload(alice, read(path), "image/jpeg", "photo.jpg")
      assert.equals(200, r.status, r.body)
      id = select(2, mxc_parts(r.json.content_uri))
    end)

    it("crops and scales to the nearest larger configured size, and caches", function()
      local r = t:request("GET", "/_matrix/client/v1/media/thumbnail/test.local/" .. id
        .. "?width=50&height=50&method=crop", nil, alice.access_token)
      assert.equals(200, r.status, r.body)
      assert.equals("image/jpeg", r.headers["content-type"])
      local out = dir .. "/thumb.jpg"
      local f = assert(io.open(out, "wb")); f:write(r.body); f:close()
      local p = assert(core.media.probe(out))
      assert.same({ 96, 96 }, { p.width, p.height })
      r = t:request("GET", "/_matrix/client/v1/media/thumbnail/test.local/" .. id
        .. "?width=300&height=200&method=scale", nil, alice.access_token)
      assert.equals(200, r.status)
      f = assert(io.open(out, "wb")); f:write(r.body); f:close()
      p = assert(core.media.probe(out))
      assert.same({ 320, 240 }, { p.width, p.height })
      local again = t:request("GET", "/_matrix/client/v1/media/thumbnail/test.local/" .. id
        .. "?width=300&height=200&method=scale", nil, alice.access_token)
      assert.equals(r.body, again.body)
      assert.truthy(t.hs.store:thumbnail("test.local", id, 320, 240, "scale"))
    end)

    it("refuses bad parameters, non-images and corrupt images", function()
      local base = "/_matrix/client/v1/media/thumbnail/test.local/"
      local r = t:request("GET", base .. id .. "?width=-1&height=5", nil, alice.access_token)
      assert.equals(400, r.status)
      assert.equals("M_INVALID_PARAM", r.json.errcode)
      r = t:request("GET", base .. id .. "?width=32&height=32&method=zoom", nil, alice.access_token)
      assert.equals(400, r.status)
      r = t:request("GET", base .. id .. "?width=32&height=32&animated=maybe", nil, alice.access_token)
      assert.equals(400, r.status)
      assert.equals("M_INVALID_PARAM", r.json.errcode)
      r = t:request("GET", base .. id .. "?width=32&height=32&animated=false", nil, alice.access_token)
      assert.equals(200, r.status)
      local txt = upload(alice, "just text", "text/plain")
      r = t:request("GET", base .. select(2, mxc_parts(txt.json.content_uri)) .. "?width=32&height=32",
        nil, alice.access_token)
      assert.equals(400, r.status)
      assert.equals("M_UNKNOWN", r.json.errcode)
      local bad = upload(alice, "\255\216\255\224" .. string.rep("\0garbage", 300), "image/jpeg")
      r = t:request("GET", base .. select(2, mxc_parts(bad.json.content_uri)) .. "?width=32&height=32",
        nil, alice.access_token)
      assert.equals(400, r.status)
      assert.equals("M_UNKNOWN", r.json.errcode)
      -- the server goes on
      assert.equals(200, t:request("GET", "/_matrix/client/v1/media/config", nil, alice.access_token).status)
    end)

    it("thumbnails a still GIF but not an animated one", function()
      local frame = "\33\249\4\0\10\0\0\0" .. "\44\0\0\0\0\1\0\1\0\0" .. "\2\2\68\1\0"
      local head = "GIF89a\1\0\1\0\128\0\0" .. "\0\0\0\255\255\255"
      local still = head .. frame .. "\59"
      local anim = head .. "\33\255\11NETSCAPE2.0\3\1\0\0\0" .. frame .. frame .. "\59"
      local base = "/_matrix/client/v1/media/thumbnail/test.local/"
      local up = upload(alice, still, "image/gif")
      local r = t:request("GET", base .. select(2, mxc_parts(up.json.content_uri)) .. "?width=32&height=32&method=crop",
        nil, alice.access_token)
      assert.equals(200, r.status, r.body)
      assert.equals("image/png", r.headers["content-type"])
      up = upload(alice, anim, "image/gif")
      r = t:request("GET", base .. select(2, mxc_parts(up.json.content_uri)) .. "?width=32&height=32&method=crop",
        nil, alice.access_token)
      assert.equals(400, r.status)
      assert.equals("M_UNKNOWN", r.json.errcode)
      assert.matches("animated", r.json.error)
    end)
  end)
end)

-- Inside t:run: sends head, then n pieces from piece(i) (each written
-- once the previous one is out, so the client holds one piece at a time), as
-- chunked transfer coding when chunked; returns the raw response.
local function raw_upload(t, head, n, piece, chunked, sample)
  local uv = require "luv"
  local co = coroutine.running()
  local tcp = uv.new_tcp()
  local buf, eof = "", false
  local function resume() assert(coroutine.resume(co)) end
  tcp:connect("127.0.0.1", t.port, function() resume() end)
  coroutine.yield()
  local waiting = false
  tcp:read_start(function(_, data)
    if data then buf = buf .. data else eof = true end
    if waiting then waiting = false; resume() end
  end)
  local function write(s)
    tcp:write(s, function() resume() end)
    coroutine.yield()
  end
  write(head)
  for i = 1, n do
    local p = piece(i)
    if chunked then write(("%x\r\n"):format(#p) .. p .. "\r\n") else write(p) end
    if sample then sample() end
    if eof then break end
  end
  if chunked and not eof then write("0\r\n\r\n") end
  while not eof do
    local head_end = buf:find("\r\n\r\n", 1, true)
    local len = head_end and tonumber(buf:match("[Cc]ontent%-[Ll]ength: (%d+)"))
    if len and #buf >= head_end + 3 + len then break end
    waiting = true
    coroutine.yield()
  end
  tcp:close()
  return buf
end

describe("content repository streaming", function()
  local t, u, dir
  setup(function()
    dir = tmpdir()
    t = hs.start { media = { store_path = dir, max_upload_size = 64 * 1024 * 1024 } }
    u = t:register("big")
  end)
  teardown(function()
    t:stop()
    os.execute("rm -rf '" .. dir .. "'")
  end)

  local MB = 1024 * 1024
  -- the client's 26 distinct pieces are made once: sending makes no garbage
  -- of its own, so the heap's growth is what the server holds
  local pieces = {}
  for i = 0, 25 do pieces[i] = string.rep(string.char(65 + i), MB) end
  local function piece(i) return pieces[i % 26] end

  it("streams a 40 MB upload to disk and the download back, without holding it in memory", function()
    local n = 40
    collectgarbage()
    local base, peak = collectgarbage("count"), 0
    -- live memory (a full collection first: the server's read buffers are
    -- garbage once written to disk, whatever mode the collector runs in);
    -- once a piece on the way up, once every 4 MB on the way down
    local function sample()
      collectgarbage()
      local kb = collectgarbage("count") - base
      if kb > peak then peak = kb end
    end
    local raw = t:run(function()
      return raw_upload(t, "POST /_matrix/media/v3/upload?filename=big.bin HTTP/1.1\r\nHost: x\r\n"
        .. "Authorization: Bearer " .. u.access_token .. "\r\nContent-Type: application/octet-stream\r\n"
        .. "Content-Length: " .. n * MB .. "\r\n\r\n", n, piece, false, sample)
    end, 60000)
    assert.matches("^HTTP/1.1 200", raw)
    local uri = raw:match('"content_uri":"(mxc://[^"]+)"')
    assert.truthy(uri)
    -- the server never held the body: Lua memory grew by far less than the file
    assert.is_true(peak < n * 1024 / 4, ("peak Lua memory growth %d KiB"):format(math.floor(peak)))
    local m = t.hs.store:media("test.local", uri:match("/([%w_%-]+)$"))
    assert.equals(n * MB, m.size)
    local h = core.media.hasher()
    for i = 1, n do h:update(piece(i)) end
    assert.equals(h:hex(), m.sha256)
    -- the download comes back in pieces with the whole Content-Length
    local got = t:run(function()
      local uv = require "luv"
      local co = coroutine.running()
      local tcp = uv.new_tcp()
      tcp:connect("127.0.0.1", t.port, function() coroutine.resume(co) end)
      coroutine.yield()
      local dh, total, head, len, pending = core.media.hasher(), 0, "", nil, nil
      tcp:read_start(function(_, data)
        if not data then coroutine.resume(co) return end
        if not len then
          head = head .. data
          local e = head:find("\r\n\r\n", 1, true)
          if e then
            len = tonumber(head:match("[Cc]ontent%-[Ll]ength: (%d+)"))
            data = head:sub(e + 4)
          else
            return
          end
        end
        local before = total
        total = total + #data
        dh:update(data)
        if total // (4 * MB) ~= before // (4 * MB) then sample() end
        if total >= len and not pending then pending = true; coroutine.resume(co) end
      end)
      tcp:write("GET /_matrix/client/v1/media/download/" .. uri:sub(7) .. " HTTP/1.1\r\nHost: x\r\n"
        .. "Authorization: Bearer " .. u.access_token .. "\r\n\r\n")
      coroutine.yield()
      tcp:close()
      return { head = head, len = len, total = total, sha = dh:hex() }
    end, 60000)
    assert.matches("^HTTP/1.1 200", got.head)
    assert.equals(n * MB, got.len)
    assert.equals(n * MB, got.total)
    assert.equals(m.sha256, got.sha)
    assert.is_true(peak < n * 1024 / 4, ("peak Lua memory growth %d KiB"):format(math.floor(peak)))
  end)

  it("answers pipelined downloads in order on one connection, HEAD with the length only", function()
    local function up(body)
      local r = t:request("POST", "/_matrix/media/v3/upload", body, u.access_token, { ["Content-Type"] = "text/plain" })
      return r.json.content_uri:sub(7)
    end
    local a, b = up(string.rep("A", 3 * MB + 5)), up("small b")
    local raw = t:run(function()
      local uv = require "luv"
      local co = coroutine.running()
      local tcp = uv.new_tcp()
      local buf, want = {}, 3 * MB + 5 + #"small b" + 5 + 600
      local n = 0
      tcp:connect("127.0.0.1", t.port, function() coroutine.resume(co) end)
      coroutine.yield()
      tcp:read_start(function(_, data)
        if data then buf[#buf + 1] = data; n = n + #data end
        if not data then coroutine.resume(co) end
      end)
      local function req(method, id, last)
        return method .. " /_matrix/client/v1/media/download/" .. id .. " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
          .. u.access_token .. (last and "\r\nConnection: close" or "") .. "\r\n\r\n"
      end
      tcp:write(req("GET", a) .. req("GET", b) .. req("HEAD", a) .. req("GET", b, true))
      coroutine.yield()
      tcp:close()
      assert(n >= want - 600)
      return table.concat(buf)
    end, 30000)
    local statuses = {}
    for st in raw:gmatch("HTTP/1.1 (%d+) ") do statuses[#statuses + 1] = st end
    assert.same({ "200", "200", "200", "200" }, statuses)
    local first = raw:find("\r\n\r\n", 1, true) + 4
    assert.equals(string.rep("A", 3 * MB + 5), raw:sub(first, first + 3 * MB + 4))
    local rest = raw:sub(first + 3 * MB + 5)
    assert.matches("^HTTP/1.1 200", rest)
    assert.matches("\r\n\r\nsmall bHTTP/1.1 200", rest)
    -- the HEAD answer: the big file's length, no body, then the last GET
    assert.matches("Content%-Length: " .. (3 * MB + 5) .. "\r\n.-\r\n\r\nHTTP/1.1 200", rest)
    assert.matches("small b$", rest)
  end)

  it("takes a chunked upload, and refuses one that grows past max_upload_size with 413", function()
    local raw = t:run(function()
      return raw_upload(t, "POST /_matrix/media/v3/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        .. u.access_token .. "\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
        3, function(i) return "part" .. i .. ";" end, true)
    end)
    assert.matches("^HTTP/1.1 200", raw)
    local uri = raw:match('"content_uri":"(mxc://[^"]+)"')
    local d = t:request("GET", "/_matrix/client/v1/media/download/" .. uri:sub(7), nil, u.access_token)
    assert.equals("part1;part2;part3;", d.body)
    raw = t:run(function()
      return raw_upload(t, "POST /_matrix/media/v3/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        .. u.access_token .. "\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
        70, piece, true)
    end, 60000)
    assert.matches("^HTTP/1.1 413", raw)
    assert.matches("M_TOO_LARGE", raw, 1, true)
    -- nothing was kept of it
    assert.equals(0, #(require("loom.core").listdir(dir .. "/tmp")))
  end)
end)

describe("content repository stalled uploads", function()
  it("answers 408 when an upload's body stops coming, and keeps nothing of it", function()
    local dir = tmpdir()
    local t = hs.start { media = { store_path = dir }, timeouts = { body = 300 } }
    local u = t:register("slow")
    local raw = t:run(function()
      local uv = require "luv"
      local co = coroutine.running()
      local tcp = uv.new_tcp()
      local buf = ""
      tcp:connect("127.0.0.1", t.port, function() coroutine.resume(co) end)
      coroutine.yield()
      tcp:read_start(function(_, data)
        if data then buf = buf .. data end
        if not data or buf:find("}") then tcp:read_stop(); coroutine.resume(co) end
      end)
      tcp:write("POST /_matrix/media/v3/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " .. u.access_token
        .. "\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nonly ten b")
      coroutine.yield()
      tcp:close()
      return buf
    end)
    assert.matches("^HTTP/1.1 408", raw)
    assert.equals(0, #(require("loom.core").listdir(dir .. "/tmp")))
    assert.equals(0, count_files(dir))
    t:stop()
    os.execute("rm -rf '" .. dir .. "'")
  end)
end)

describe("content repository limits", function()
  it("answers the legacy unauthenticated endpoints 404 when they are off", function()
    local dir = tmpdir()
    local t = hs.start { media = { store_path = dir, legacy = false } }
    local u = t:register("x")
    local r = t:request("POST", "/_matrix/media/v3/upload", "abc", u.access_token, { ["Content-Type"] = "text/plain" })
    assert.equals(200, r.status)
    local id = select(2, mxc_parts(r.json.content_uri))
    for _, path in ipairs { "/_matrix/media/v3/download/test.local/" .. id,
        "/_matrix/media/v3/thumbnail/test.local/" .. id .. "?width=32&height=32" } do
      r = t:request("GET", path)
      assert.equals(404, r.status)
      assert.equals("M_NOT_FOUND", r.json.errcode)
    end
    assert.equals(200, t:request("GET", "/_matrix/client/v1/media/download/test.local/" .. id, nil,
      u.access_token).status)
    t:stop()
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("refuses thumbnails of images over max_pixels before decoding them", function()
    local dir = tmpdir()
    local t = hs.start { media = { store_path = dir, max_pixels = 10000 } }
    local u = t:register("x")
    assert(core.media.test_image(dir .. "/big.png", 400, 300))
    local r = t:request("POST", "/_matrix/media/v3/upload", read(dir .. "/big.png"), u.access_token,
      { ["Content-Type"] = "image/png" })
    local id = select(2, mxc_parts(r.json.content_uri))
    r = t:request("GET", "/_matrix/client/v1/media/thumbnail/test.local/" .. id .. "?width=32&height=32", nil,
      u.access_token)
    assert.equals(400, r.status)
    assert.equals("M_UNKNOWN", r.json.errcode)
    assert.matches("over the limit", r.json.error)
    t:stop()
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("serves the legacy download without a token when they are on", function()
    local dir = tmpdir()
    local t = hs.start { media = { store_path = dir } }
    local u = t:register("x")
    local r = t:request("POST", "/_matrix/media/v3/upload", "abc", u.access_token, { ["Content-Type"] = "text/plain" })
    local id = select(2, mxc_parts(r.json.content_uri))
    r = t:request("GET", "/_matrix/media/v3/download/test.local/" .. id)
    assert.equals(200, r.status)
    assert.equals("abc", r.body)
    t:stop()
    os.execute("rm -rf '" .. dir .. "'")
  end)
end)

describe("bin/loom media", function()
  it("deletes media, keeping a file another record still uses, and purges a user's uploads", function()
    local dir = tmpdir()
    local t = hs.start { media = { store_path = dir } }
    local u, v = t:register("x"), t:register("y")
    local function up(who, body)
      local r = t:request("POST", "/_matrix/media/v3/upload", body, who.access_token,
        { ["Content-Type"] = "text/plain" })
      assert.equals(200, r.status)
      return r.json.content_uri
    end
    local a, b, c = up(u, "shared bytes"), up(v, "shared bytes"), up(u, "own bytes")
    local cfg = dir .. "/loom.cfg.lua"
    local f = assert(io.open(cfg, "w"))
    f:write(("server_name = %q\ndatabase = { path = %q }\nmedia = { store_path = %q }\n")
      :format("test.local", t.db_path, dir))
    f:close()
    local cli = require "loom.cli"
    local function run(args)
      local out, err = io.tmpfile(), io.tmpfile()
      local code = cli.main(args, { stdout = out, stderr = err })
      out:seek("set"); err:seek("set")
      return code, out:read("a"), err:read("a")
    end
    local function get(uri)
      return t:request("GET", "/_matrix/client/v1/media/download/" .. uri:sub(7), nil, u.access_token)
    end
    assert.equals(2, count_files(dir))   -- the shared bytes once
    local code, out = run { "media", "delete", a, "--config", cfg }
    assert.equals(0, code)
    assert.matches("deleted 1 media", out, 1, true)
    assert.equals(404, get(a).status)
    assert.equals("shared bytes", get(b).body)   -- the file stays: b still points at it
    assert.equals(2, count_files(dir))
    code = run { "media", "delete", a, "--config", cfg }
    assert.equals(1, code)
    assert.equals(1, (run { "media", "delete", "https://x", "--config", cfg }))
    code, out = run { "media", "purge", "--user", u.user_id, "--before-days", "0", "--config", cfg }
    assert.equals(0, code, out)
    assert.equals(404, get(c).status)
    assert.equals(1, count_files(dir))
    code, out = run { "media", "purge", "--before-days", "0", "--config", cfg }
    assert.equals(0, code, out)
    assert.equals(404, get(b).status)
    assert.equals(0, count_files(dir))
    assert.equals(2, (run { "media", "purge", "--config", cfg }))
    t:stop()
    os.execute("rm -rf '" .. dir .. "'")
  end)
end)
