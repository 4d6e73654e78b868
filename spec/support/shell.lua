-- Shell commands from specs. The sanitizer pass preloads ASan into the test
-- process; helper programs (ls, find, sort, python) are not under test and
-- run without it, so their own leaks are not reported.
local _M = {}

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
_M.quote = quote

--- The lines a shell command prints, as an array.
function _M.lines(cmd)
  local p = assert(io.popen("env -u LD_PRELOAD sh -c " .. quote(cmd)))
  local out = {}
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  return out
end

return _M
