-- benchlib: what loom's benchmarks share — a clock, percentiles, URL
-- escaping, a coroutine runner over the luv loop and a keep-alive HTTP/1.1
-- client that lives on the server's own loop.
--
--   package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
--   local bl = require "benchlib"
--   bl.run(function()
--     local c = bl.client(port, access_token)
--     local t0 = bl.now()
--     local status, body = c.call("GET", "/_matrix/client/v3/sync")
--     samples[#samples + 1] = bl.now() - t0
--   end)
--   local p50, p99 = bl.stats(samples)      -- milliseconds
local uv = require "luv"
local core = require "loom.core"

local json = core.json

local benchlib = {}

--- Nanoseconds from an arbitrary origin.
function benchlib.now() return uv.hrtime() end

--- The p-quantile (0 < p <= 1) of an already sorted list.
function benchlib.percentile(sorted, p) return sorted[math.max(1, math.ceil(#sorted * p))] end

--- Sorts samples (nanoseconds) and gives their median and p99 in milliseconds.
function benchlib.stats(samples)
  table.sort(samples)
  --- A room made through the room service (rooms = hs.rooms) by owner: its
-- join, power levels, public join rule, shared history and a name. Inside
-- run. Returns the room ID and a send(proto) for more events.
function benchlib.public_room(rooms, owner, name)
  local room_id = assert(rooms:create_room(owner))
  local function send(proto) return assert(rooms:send(room_id, proto)) end
  send { type = "m.room.member", state_key = owner, sender = owner, content = { membership = "join" } }
  send { type = "m.room.power_levels", state_key = "", sender = owner, content = { users = { [owner] = 100 } } }
  send { type = "m.room.join_rules", state_key = "", sender = owner, content = { join_rule = "public" } }
  send { type = "m.room.history_visibility", state_key = "", sender = owner,
    content = { history_visibility = "shared" } }
  send { type = "m.room.name", state_key = "", sender = owner, content = { name = name } }
  return room_id, send
end

return benchlib.percentile(samples, 0.5) / 1e6, benchlib.percentile(samples, 0.99) / 1e6
end

--- Percent-encodes everything but unreserved characters (a path segment or
-- query value).
function benchlib.enc(s)
  return (s:gsub("[^%w%-%._~]", function(ch) return ("%%%02X"):format(ch:byte()) end))
end

--- Runs fn in a plain coroutine, turning the loop until it returns (the
-- client yields on its reads; the room service commits each send at once,
-- outside loom.async's tasks). An error inside fn ends the process.
function benchlib.run(fn)
  local done = false
  local co = coroutine.create(function() fn(); done = true end)
  local ok, err = coroutine.resume(co)
  if not ok then print(debug.traceback(co, err)); os.exit(1) end
  while not done do
    uv.run("once")
    if coroutine.status(co) == "dead" and not done then error("the bench coroutine died") end
  end
end

--- A keep-alive client to 127.0.0.1:port sending access_token; call it from
-- a coroutine. c.call(method, path, body) → status, body text. Answers may be
-- megabytes: the chunks read are kept and joined once the whole answer is in.
function benchlib.client(port, access_token)
  local c = { tcp = uv.new_tcp(), parts = {}, have = 0 }
  local co = coroutine.running()
  c.tcp:connect("127.0.0.1", port, function(err) assert(not err, err); coroutine.resume(co) end)
  coroutine.yield()
  c.tcp:read_start(function(err, data)
    assert(not err, err)
    if data then c.parts[#c.parts + 1] = data; c.have = c.have + #data end
    local w = c.waiting
    c.waiting = nil
    if w then
      local ok, rerr = coroutine.resume(w)
      if not ok then print(debug.traceback(w, rerr)); os.exit(1) end
    end
  end)
  function c.call(method, p, body)
    local text = body and assert(json.encode(body)) or ""
    c.tcp:write(("%s %s HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s")
      :format(method, p, access_token, #text, text))
    local head_end, len
    while true do
      if not head_end and c.parts[1] then
        local head = table.concat(c.parts)
        c.parts = { head }
        head_end = head:find("\r\n\r\n", 1, true)
        if head_end then len = tonumber(head:sub(1, head_end):match("[Cc]ontent%-[Ll]ength: (%d+)")) end
      end
      if head_end and c.have >= head_end + 3 + len then
        local buf = table.concat(c.parts)
        local status = tonumber(buf:match("^HTTP/1%.1 (%d+)"))
        local resp = buf:sub(head_end + 4, head_end + 3 + len)
        local rest = buf:sub(head_end + 4 + len)
        c.parts, c.have = { rest }, #rest
        return status, resp
      end
      c.waiting = coroutine.running()
      coroutine.yield()
    end
  end
  return c
end

--- A room made through the room service (rooms = hs.rooms) by owner: its
-- join, power levels, public join rule, shared history and a name. Inside
-- run. Returns the room ID and a send(proto) for more events.
function benchlib.public_room(rooms, owner, name)
  local room_id = assert(rooms:create_room(owner))
  local function send(proto) return assert(rooms:send(room_id, proto)) end
  send { type = "m.room.member", state_key = owner, sender = owner, content = { membership = "join" } }
  send { type = "m.room.power_levels", state_key = "", sender = owner, content = { users = { [owner] = 100 } } }
  send { type = "m.room.join_rules", state_key = "", sender = owner, content = { join_rule = "public" } }
  send { type = "m.room.history_visibility", state_key = "", sender = owner,
    content = { history_visibility = "shared" } }
  send { type = "m.room.name", state_key = "", sender = owner, content = { name = name } }
  return room_id, send
end

return benchlib
