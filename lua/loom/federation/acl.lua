-- loom.federation.acl: server access control lists (m.room.server_acl).
--
--   local acl = require "loom.federation.acl"
--   acl.allows(content, "evil.example:8448")   --> false
--   local err = acl.check(hs, room_id, origin)  --> nil, or a 403 M_FORBIDDEN error
--
-- The spec's rules: the port is ignored; an IP literal is denied when
-- allow_ip_literals is false; a name matching any deny glob is denied; it
-- is allowed only when it matches an allow glob (no allow list: nobody).
-- Globs: * any run of characters, ? one character; case-insensitive. A room
-- without the event allows everyone. Non-string entries are ignored.
local type, ipairs = type, ipairs
local string_lower, string_byte = string.lower, string.byte
local errors = require "loom.http.errors"
local ljson = require "loom.json"

local is_array = ljson.is_array

local _ENV = nil -- luacheck: ignore 211

local acl = {}

local MAX_GLOB = 255

-- Whether glob matches s (both lowercased): the two-pointer wildcard match,
-- which backtracks only to the last "*" and so stays O(#glob * #s) whatever
-- a room's ACL holds.
local function glob_match(glob, s)
  local gi, si, star, mark = 1, 1, nil, 0
  local gn, sn = #glob, #s
  while si <= sn do
    local g = string_byte(glob, gi)
    if gi <= gn and (g == 63 or g == string_byte(s, si)) then   -- "?" or the same byte
      gi, si = gi + 1, si + 1
    elseif gi <= gn and g == 42 then                           -- "*"
      star, mark, gi = gi, si, gi + 1
    elseif star then
      gi, mark = star + 1, mark + 1
      si = mark
    else
      return false
    end
  end
  while gi <= gn and string_byte(glob, gi) == 42 do gi = gi + 1 end
  return gi > gn
end

local function matches(list, host)
  if not is_array(list) then return false end
  for _, g in ipairs(list) do
    if type(g) == "string" and #g <= MAX_GLOB and glob_match(string_lower(g), host) then return true end
  end
  return false
end

local function is_ip_literal(host)
  return host:sub(1, 1) == "[" or host:match("^%d+%.%d+%.%d+%.%d+$") ~= nil
end

acl.glob_match = glob_match

--- acl.allows(content, server_name) -> boolean
function acl.allows(content, server_name)
  if type(content) ~= "table" then return true end
  local host = server_name:match("^(%[.*%])") or server_name:match("^([^:]*)")
  host = string_lower(host or "")
  if content.allow_ip_literals == false and is_ip_literal(host) then return false end
  if matches(content.deny, host) then return false end
  return matches(content.allow, host)
end

--- acl.check(hs, room_id, server_name) -> nil | 403 M_FORBIDDEN error
function acl.check(hs, room_id, server_name)
  local ev = hs.rooms:state_event(room_id, "m.room.server_acl", "")
  if not ev then return nil end
  if acl.allows(ev.content, server_name) then return nil end
  return errors.new("M_FORBIDDEN", "Server is banned from this room")
end

return acl
