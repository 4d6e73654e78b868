-- luacheck: std +busted
-- Issue 7, part 2: "Default to durable commits (FULL)". A server made with
-- the defaults (bin/loom serve, loom.new) must run its database with
-- PRAGMA synchronous = FULL (2), so a power loss cannot take commits that
-- clients were told succeeded. Today the default is NORMAL (1), as docs/db.md
-- and README.md still say.
local loom = require "loom"
local api = require "loom.api"
local tmp = require "support.tmpdb"

describe("acceptance: durable commits by default", function()
  it("a homeserver with the default database config runs synchronous = FULL", function()
    local path = tmp.path()
    local server = loom.new { port = 0, database = { path = path }, password_iterations = 1000 }
    local hs = api.install(server)
    local level = hs.store.conn:value("PRAGMA synchronous")
    hs.store:close()
    tmp.remove(path)
    assert.equal(2, level)
  end)
end)
