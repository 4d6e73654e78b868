-- The client side of bench/b1_http.lua, run as its own process so that the
-- server has its core to itself: `lua5.4 bench/b1_http_client.lua PORT TOKEN
-- ROOM_ID_ENCODED CLIENTS EACH` sends CLIENTS*EACH messages through
-- PUT /send over CLIENTS keep-alive connections and prints the seconds taken.
local uv = require "luv"

local port, tok, room = tonumber(arg[1]), arg[2], arg[3]
local clients, each = tonumber(arg[4]), tonumber(arg[5])
local stamp = tostring(uv.hrtime())
local finished, failed = 0, nil
local t0 = uv.hrtime()

for k = 1, clients do
  local tcp = uv.new_tcp()
  local buf, sent = "", 0
  local function send_next()
    sent = sent + 1
    local body = ('{"msgtype":"m.text","body":"send %d"}'):format(sent)
    tcp:write(("PUT /_matrix/client/v3/rooms/%s/send/m.room.message/c%s_%d_%d HTTP/1.1\r\nHost: b\r\n" ..
      "Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s"):format(room, stamp, k, sent, tok, #body, body))
  end
  tcp:connect("127.0.0.1", port, function(err)
    assert(not err, err)
    tcp:read_start(function(rerr, data)
      assert(not rerr, rerr)
      if not data then return end
      buf = buf .. data
      while true do
        local head_end = buf:find("\r\n\r\n", 1, true)
        if not head_end then break end
        local len = tonumber(buf:sub(1, head_end):match("[Cc]ontent%-[Ll]ength: (%d+)"))
        if #buf < head_end + 3 + len then break end
        local status = buf:match("^HTTP/1%.1 (%d+)")
        if status ~= "200" then failed = failed or buf:sub(1, head_end + 3 + len) end
        buf = buf:sub(head_end + 4 + len)
        if sent < each then send_next()
        else
          tcp:close()
          finished = finished + 1
          break
        end
      end
    end)
    send_next()
  end)
end
uv.run()
if failed then io.stderr:write(failed, "\n"); os.exit(1) end
print(("%.4f"):format((uv.hrtime() - t0) / 1e9))
