-- kill -9 of a process in the middle of writing loses no acknowledged event
-- and leaves a database that opens, checks clean, and keeps its invariants.
local store_mod = require "loom.store"

local tmp = require "support.tmpdb"
local tmpdb = tmp.path

describe("a writer killed with SIGKILL", function()
  it("loses no acknowledged event", function()
    local path = tmpdb()
    for round = 1, 3 do
      local lua = arg and arg[-1] or "lua5.4"
      local child = assert(io.popen(("exec %s spec/support/writer.lua %s"):format(lua, path), "r"))
      local pid = child:read("l"):match("^pid (%d+)$")
      assert.truthy(pid)
      local acked = {}
      local want = 200 + round * 150
      while #acked < want do
        local line = child:read("l")
        assert.truthy(line, "writer stopped early")
        local id, pos = line:match("^ack (%S+) (%-?%d+)$")
        acked[#acked + 1] = { id, tonumber(pos) }
      end
      assert.is_true(os.execute("kill -9 " .. pid))
      child:close()

      local s = assert(store_mod.open { path = path })
      assert.equal("ok", s.conn:value("PRAGMA integrity_check"))
      for _, a in ipairs(acked) do
        local st = s:tokens_for_event(a[1])
        assert.equal("s" .. a[2], st, a[1] .. " was acknowledged but is missing")
      end
      -- the stream continues after everything that was committed
      assert.is_true(s:current_position() >= acked[#acked][2])
      -- invariants: the room is one chain, so one forward extremity; pages cover it all
      local fwd = s:forward_extremities("!crash:test")
      assert.equal(1, #fwd)
      local n, tok = 0, nil
      repeat
        local page = assert(s:paginate("!crash:test", tok, { dir = "b", limit = 500 }))
        n = n + #page.events
        tok = page.next
      until not tok
      assert.equal(s.conn:value("SELECT count(*) FROM events"), n)
      s:close()
    end
    tmp.remove(path)
  end)
end)
