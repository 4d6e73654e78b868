-- A real client's uploads and downloads: matrix-nio (Debian's
-- python3-matrix-nio 0.20, which speaks /_matrix/media/r0) uploads a file
-- with a non-ASCII name and downloads it back, uploads a PNG and fetches its
-- 96x96 crop thumbnail, and gets an error for unknown media.
local tesths = require "support.hs"
local core = require "loom.core"
local json = core.json

local PYTHON = "/usr/bin/python3"

local function have_nio()
  local p = io.popen("env -u LD_PRELOAD " .. PYTHON .. " -c 'import nio' 2>&1; echo rc=$?")
  local out = p:read("a")
  p:close()
  return out:match("rc=0") ~= nil, out
end

describe("matrix-nio media against loom", function()
  it("uploads, downloads and thumbnails", function()
    local ok, why = have_nio()
    assert(ok, "matrix-nio is needed (apt-get install python3-matrix-nio): " .. why)
    local dir = os.tmpname()
    os.remove(dir)
    assert(require("luv").fs_mkdir(dir, 448))
    local img = dir .. "/pic.png"
    assert(core.media.test_image(img, 300, 200))
    local t = tesths.start { server_name = "localhost", enable_registration = true,
      media = { store_path = dir .. "/store" } }
    local base = "http://127.0.0.1:" .. t.port
    local code, out, err = t:spawn(PYTHON, { "spec/03-clients/nio_media.py", base, img })
    t:stop()
    assert.equal(0, code, "nio client failed:\n" .. out .. "\n" .. err)
    local result = assert(json.decode(out:match("([^\n]+)\n?$")))
    assert.is_true(result.ok)
    assert.matches("^mxc://localhost/[%w_%-]+$", result.content_uri)
    assert.equal("application/pdf", result.download_type)
    assert.equal("report \u{e9}t\u{e9}.pdf", result.download_filename)
    assert.equal("image/png", result.thumbnail_type)
    assert.equal("M_NOT_FOUND", result.unknown_status)   -- nio reports the errcode
    -- the thumbnail nio got is the one loom made and kept
    local path = ("%s/store/%s/%s/%s"):format(dir, result.thumbnail_sha256:sub(1, 2),
      result.thumbnail_sha256:sub(3, 4), result.thumbnail_sha256)
    local p = assert(core.media.probe(path))
    assert.same({ 96, 96 }, { p.width, p.height })
    os.execute("rm -rf '" .. dir .. "'")
  end)
end)
