-- A real client and the content repository: matrix-js-sdk 36 (from npm,
-- installed into build/js-clients on first use) uploads a PNG with
-- uploadContent and fetches its 96x96 crop thumbnail and the file through
-- the authenticated URLs mxcUrlToHttp builds (useAuthentication).
local tesths = require "support.hs"
local shell = require "support.shell"
local core = require "loom.core"
local json = core.json

local DIR = "build/js-clients"

local function install()
  local out = shell.lines(("mkdir -p %s && cp spec/03-clients/js/package.json spec/03-clients/js/media.mjs %s/ && "
    .. "cd %s && (test -d node_modules/matrix-js-sdk || npm install --no-audit --no-fund --loglevel=error) "
    .. ">/dev/null 2>&1; echo rc=$?"):format(DIR, DIR, DIR))
  return out[#out] == "rc=0"
end

describe("matrix-js-sdk media against loom", function()
  it("uploads an image and downloads its thumbnail", function()
    assert(install(), "could not install matrix-js-sdk with npm into " .. DIR)
    local dir = os.tmpname()
    os.remove(dir)
    assert(require("luv").fs_mkdir(dir, 448))
    local img = dir .. "/photo.png"
    assert(core.media.test_image(img, 640, 480))
    local t = tesths.start { server_name = "localhost", media = { store_path = dir .. "/store" } }
    local code, out, err = t:spawn("node", { DIR .. "/media.mjs", "http://127.0.0.1:" .. t.port, img })
    t:stop()
    assert.equal(0, code, "js-sdk media client failed:\n" .. out .. "\n" .. err)
    local result = assert(json.decode(out:match("([^\n]+)\n?$")))
    assert.is_true(result.ok)
    assert.matches("^mxc://localhost/", result.content_uri)
    assert.equal(401, result.thumbnail_without_token)
    assert.equal("image/png", result.thumbnail_type)
    assert.equal("cross-origin", result.thumbnail_corp)
    assert.equal('inline; filename="photo.png"', result.download_disposition)
    assert.equal(50 * 1024 * 1024, result.upload_size)
    -- the thumbnail js-sdk got is 96x96, the one loom made and kept
    local path = ("%s/store/%s/%s/%s"):format(dir, result.thumbnail_sha256:sub(1, 2),
      result.thumbnail_sha256:sub(3, 4), result.thumbnail_sha256)
    local p = assert(core.media.probe(path))
    assert.same({ 96, 96 }, { p.width, p.height })
    os.execute("rm -rf '" .. dir .. "'")
  end)
end)
