-- Concurrent PUT /send traffic over keep-alive connections, for the send
-- benchmark (bench/b7_sends.lua) and the send-crash spec. Each client sends
-- its next message as soon as the previous response is in.
--
--   local load = dofile "bench/send_load.lua"
--   local stats = load.run { port = p, token = t, room = room_id, clients = 8, each = 500,
--     on_response = function(status, body, ns) end,   -- optional
--     stop = function() return false end }             -- optional: true ends the run
--   -- stats: { sent, ok, failed, seconds, latencies (ns, sorted) }
-- A client stops at its first response other than 200.
local uv = require "luv"

local _M = {}

local function enc(s) return (s:gsub("[^%w%-%._~]", function(ch) return ("%%%02X"):format(ch:byte()) end)) end

--- The p-quantile (0..1) of a sorted list of nanoseconds, in milliseconds.
function _M.pct(sorted, p)
  if #sorted == 0 then return 0 end
  return sorted[math.max(1, math.ceil(#sorted * p))] / 1e6
end

function _M.run(o)
  local room = enc(o.room)
  local stamp = tostring(uv.hrtime())
  local stats = { sent = 0, ok = 0, failed = 0, latencies = {} }
  local open = o.clients
  local t0 = uv.hrtime()
  for k = 1, o.clients do
    local tcp = uv.new_tcp()
    local buf, sent, started = "", 0, 0
    local function close()
      if not tcp:is_closing() then
        tcp:close()
        open = open - 1
      end
    end
    local function send_next()
      if (o.each and sent >= o.each) or (o.stop and o.stop()) then return close() end
      sent = sent + 1
      stats.sent = stats.sent + 1
      local body = ('{"msgtype":"m.text","body":"send %d from %d"}'):format(sent, k)
      started = uv.hrtime()
      tcp:write(("PUT /_matrix/client/v3/rooms/%s/send/m.room.message/c%s_%d_%d HTTP/1.1\r\nHost: b\r\n" ..
        "Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s"):format(room, stamp, k, sent, o.token, #body, body))
    end
    tcp:connect("127.0.0.1", o.port, function(err)
      if err then stats.failed = stats.failed + 1; return close() end
      tcp:read_start(function(rerr, data)
        if rerr or not data then return close() end
        buf = buf .. data
        while true do
          local head_end = buf:find("\r\n\r\n", 1, true)
          if not head_end then break end
          local len = tonumber(buf:sub(1, head_end):match("[Cc]ontent%-[Ll]ength: (%d+)")) or 0
          if #buf < head_end + 3 + len then break end
          local status = tonumber(buf:match("^HTTP/1%.1 (%d+)"))
          local resp = buf:sub(head_end + 4, head_end + 3 + len)
          buf = buf:sub(head_end + 4 + len)
          local ns = uv.hrtime() - started
          if status == 200 then
            stats.ok = stats.ok + 1
            stats.latencies[#stats.latencies + 1] = ns
          else
            stats.failed = stats.failed + 1
          end
          if o.on_response then o.on_response(status, resp, ns) end
          -- a refused send ends this client: the run must not spin on errors
          if status ~= 200 then return close() end
          send_next()
        end
      end)
      send_next()
    end)
  end
  while open > 0 do uv.run("once") end
  stats.seconds = (uv.hrtime() - t0) / 1e9
  table.sort(stats.latencies)
  return stats
end

return _M
