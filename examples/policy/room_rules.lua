-- room_rules: rooms may only be created with, and invites only sent to,
-- users of the listed server names.
--
--   -- loom.cfg.lua
--   scripts = { "policy/room_rules.lua" }
--   room_rules = { allowed_domains = { "example.org", "partner.example" } }
local allowed = {}
for _, d in ipairs(module:get_option_array("allowed_domains", { module.server_name }, 1, 1000)) do
  if type(d) ~= "string" then error("room_rules: allowed_domains must hold server names", 0) end
  allowed[d:lower()] = true
end

local function domain_of(user_id)
  return type(user_id) == "string" and user_id:match("^@[^:]+:(.+)$")
end

local function allowed_user(user_id)
  local d = domain_of(user_id)
  return d ~= nil and allowed[d:lower()] == true
end

module:hook("room/create/check", function(info)
  if not allowed_user(info.user_id) then
    return false, "Rooms may only be created by users of an allowed server"
  end
  for _, invitee in ipairs(info.invite or {}) do
    if not allowed_user(invitee) then
      return false, "Cannot invite " .. tostring(invitee) .. ": their server is not allowed here"
    end
  end
end)

module:hook("room/invite/check", function(info)
  if not allowed_user(info.invitee) then
    return false, "Cannot invite " .. tostring(info.invitee) .. ": their server is not allowed here"
  end
end)
