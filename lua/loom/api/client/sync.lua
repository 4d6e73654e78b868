-- loom.api.client.sync: (being written) registers its Client-Server endpoints.
local _M = {}

function _M.install(hs)
  return hs
end

return _M
