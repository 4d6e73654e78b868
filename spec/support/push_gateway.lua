-- A small push gateway for specs (Push Gateway API): an HTTP server on
-- 127.0.0.1 in the spec's own process that records each
-- POST /_matrix/push/v1/notify body and answers {"rejected": [...]}.
--
--   local gateway = require "support.push_gateway"
--   local gw = gateway.start()                 -- or gateway.start(port): listen on that port
--   gw.url                                     -- http://127.0.0.1:<port>/_matrix/push/v1/notify
--   gw.reject["pushkey"] = true                -- list this pushkey in `rejected`
--   -- after the loop ran: gw.received = { decoded notify body, ... }
--   gw:stop()
local http = require "loom.http.server"
local response = require "loom.http.response"
local core = require "loom.core"

local json = core.json

local _M = {}
local G = {}
G.__index = G

function _M.start(port)
  local gw = setmetatable({ received = {}, reject = {}, paths = {} }, G)
  gw.server = http.new { host = "127.0.0.1", port = port or 0, handler = function(req)
    gw.paths[#gw.paths + 1] = req.method .. " " .. req.target
    local body = json.decode(req.body or "")
    gw.received[#gw.received + 1] = body
    local rejected = json.array {}
    local n = type(body) == "table" and body.notification
    for _, d in ipairs(n and n.devices or {}) do
      if gw.reject[d.pushkey] then rejected[#rejected + 1] = d.pushkey end
    end
    return response.json(200, { rejected = rejected })
  end }
  assert(gw.server:listen())
  gw.port = gw.server:port()
  gw.url = "http://127.0.0.1:" .. gw.port .. "/_matrix/push/v1/notify"
  return gw
end

--- Stop listening (the listener closes as the loop turns: inside a run,
-- sleep a little before listening on the same port again).
function G:stop()
  self.server:stop()
end

return _M
