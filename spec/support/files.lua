-- Whole files for specs: read one, write one.
--
--   local files = require "support.files"
--   files.write(path, "port = 0\n")
--   assert.matches("port", files.read(path))
local _M = {}

--- The bytes of the file at path (raises when it cannot be read).
function _M.read(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("a")
  f:close()
  return text
end

--- Replace the file at path with text (raises when it cannot be written).
function _M.write(path, text)
  local f = assert(io.open(path, "wb"))
  assert(f:write(text))
  assert(f:close())
end

return _M
