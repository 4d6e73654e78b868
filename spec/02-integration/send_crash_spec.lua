-- kill -9 of a serving homeserver in the middle of a burst of concurrent
-- PUT /send requests loses no event whose send was acknowledged: with
-- durable commits and group commit, a 200 is sent only after the COMMIT
-- that holds the event.
local load = dofile "bench/send_load.lua"
local store_mod = require "loom.store"
local json = require("loom.core").json
local tmp = require "support.tmpdb"

describe("a homeserver killed with SIGKILL during concurrent sends", function()
  it("loses no acknowledged event", function()
    local path = tmp.path()
    local lua = arg and arg[-1] or "lua5.4"
    local child = assert(io.popen(("exec %s spec/support/send_server.lua %s"):format(lua, path), "r"))
    local line = child:read("l")
    assert.truthy(line, "server did not start")
    local port, pid, token, room = line:match("^ready (%d+) (%d+) (%S+) (%S+)$")
    assert.truthy(port, line)
    local acked, killed = {}, false
    local want = 400
    local stats = load.run { port = tonumber(port), token = token, room = room, clients = 8,
      on_response = function(status, body)
        if status == 200 and not killed then
          local r = json.decode(body)
          acked[#acked + 1] = r.event_id
          if #acked >= want then
            killed = true
            assert.is_true(os.execute("kill -9 " .. pid))
          end
        end
      end }
    child:close()
    assert.is_true(killed)
    -- sends were in flight when it died
    assert.is_true(stats.sent > #acked)

    local s = assert(store_mod.open { path = path })
    assert.equal("ok", s.conn:value("PRAGMA integrity_check"))
    local missing = {}
    for _, id in ipairs(acked) do
      if not s:event(id) then missing[#missing + 1] = id end
    end
    assert.same({}, missing)
    assert.is_true(s.conn:value("SELECT count(*) FROM events WHERE type_nid IS NOT NULL") >= #acked)
    s:close()
    tmp.remove(path)
  end)
end)
