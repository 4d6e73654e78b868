-- Driving the luv loop from a spec that is not inside a task.
--
--   local loop = require "support.loop"
--   assert(loop.turn_until(function() return done end, 5000))
local uv = require "luv"

local _M = {}

--- Turn the loop until pred() holds or limit ms (default 2000) pass;
-- returns pred().
function _M.turn_until(pred, limit)
  local expired = false
  local guard = uv.new_timer()
  guard:start(limit or 2000, 0, function() expired = true end)
  while not pred() and not expired do uv.run("once") end
  guard:close()
  uv.run("nowait")
  return pred()
end

return _M
