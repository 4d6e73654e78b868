-- The brute-force model of room state used by the state specs: a Lua map
-- "type:state_key" -> { type_nid, state_key_nid, event_nid }.
local _M = {}

function _M.key(t, k) return t .. ":" .. k end

--- Apply a delta of {type, state_key, event} (event 0 removes the key).
function _M.apply(m, delta)
  for _, d in ipairs(delta) do
    if d[3] == 0 then m[_M.key(d[1], d[2])] = nil else m[_M.key(d[1], d[2])] = { d[1], d[2], d[3] } end
  end
end

function _M.copy(m)
  local c = {}
  for k, v in pairs(m) do c[k] = v end
  return c
end

--- The entries in key order.
function _M.sorted(m)
  local out = {}
  for _, v in pairs(m) do out[#out + 1] = v end
  table.sort(out, function(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end)
  return out
end

return _M
