-- The client side of bench/b8_longpoll.lua, in its own process:
--   lua5.4 bench/b8_clients.lua PORT TOKENS_FILE SINCE
-- opens one keep-alive connection per access token (a line of TOKENS_FILE),
-- each long-polling GET /sync?since=...&timeout=600000; every answer is
-- reported on stdout as "R <connection> <hrtime ns>" and the connection
-- polls again from the answer's next_batch. Connections open in batches
-- (the listen backlog is finite). Ends when stdin closes.
local uv = require "luv"

local port, file, since0 = tonumber(arg[1]), arg[2], arg[3]
local tokens = {}
for line in io.lines(file) do tokens[#tokens + 1] = line end

local out = uv.new_tty(1, false)
local function report(s) out:write(s) end

local open, failed = 0, 0
local function connect(k)
  local tcp = uv.new_tcp()
  local buf = ""
  local function poll(since)
    tcp:write(("GET /_matrix/client/v3/sync?timeout=600000&since=%s HTTP/1.1\r\nHost: b\r\n" ..
      "Authorization: Bearer %s\r\n\r\n"):format(since, tokens[k]))
  end
  tcp:connect("127.0.0.1", port, function(err)
    if err then failed = failed + 1; report(("E %d %s\n"):format(k, err)); return end
    open = open + 1
    tcp:read_start(function(rerr, data)
      if rerr or not data then report(("C %d %s\n"):format(k, tostring(rerr))); return end
      buf = buf .. data
      while true do
        local head_end = buf:find("\r\n\r\n", 1, true)
        if not head_end then return end
        local len = tonumber(buf:sub(1, head_end):match("[Cc]ontent%-[Ll]ength: (%d+)")) or 0
        if #buf < head_end + 3 + len then return end
        local t = uv.hrtime()
        local status = buf:match("^HTTP/1%.1 (%d+)")
        local body = buf:sub(head_end + 4, head_end + 3 + len)
        buf = buf:sub(head_end + 4 + len)
        local nb = body:match('"next_batch":"([^"]+)"')
        report(("R %d %d %s\n"):format(k, t, tostring(status)))
        if nb then poll(nb) end
      end
    end)
    poll(since0)
  end)
end

-- batches of 200 connections, 20 ms apart
local next_k = 1
local timer = uv.new_timer()
timer:start(0, 20, function()
  for _ = 1, 200 do
    if next_k > #tokens then timer:stop(); timer:close(); report(("O %d\n"):format(#tokens)); return end
    connect(next_k)
    next_k = next_k + 1
  end
end)

local stdin = uv.new_pipe(false)
stdin:open(0)
stdin:read_start(function(_, data)
  if not data then os.exit(0) end
end)
uv.run()
