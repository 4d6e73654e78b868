-- Whole files for specs: read one, write one.
--
--   local files = require "support.files"
--   files.write(path, "port = 0\n")
--   assert.matches("port", files.read(path))
--   local dir = files.tmpdir("policy")     -- a fresh directory (and subdirectories)
--   files.remove_tree(dir)
local uv = require "luv"

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

--- Whether anything is at path.
function _M.exists(path)
  return uv.fs_stat(path) ~= nil
end

--- A new empty directory under the temporary folder, with the named
-- subdirectories made inside it; returns its path.
function _M.tmpdir(...)
  local dir = os.tmpname()
  os.remove(dir)
  assert(uv.fs_mkdir(dir, tonumber("755", 8)))
  for _, sub in ipairs { ... } do assert(uv.fs_mkdir(dir .. "/" .. sub, tonumber("755", 8))) end
  return dir
end

--- Remove dir and everything under it (quietly skips what is gone).
function _M.remove_tree(dir)
  local d = uv.fs_scandir(dir)
  if d then
    while true do
      local name, kind = uv.fs_scandir_next(d)
      if not name then break end
      local path = dir .. "/" .. name
      if kind == "directory" then _M.remove_tree(path) else os.remove(path) end
    end
  end
  uv.fs_rmdir(dir)
end

return _M
