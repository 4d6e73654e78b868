-- anti_spam: two rules for messages sent by local users.
--   * accounts younger than min_account_age_minutes may not send links;
--   * nobody may send more than flood_messages messages in flood_seconds.
-- Vetoes become 403 M_FORBIDDEN with the reason below.
--
--   -- loom.cfg.lua
--   scripts = { "policy/anti_spam.lua" }
--   anti_spam = { min_account_age_minutes = 60, flood_messages = 10, flood_seconds = 10 }
local min_age_ms = module:get_option_integer("min_account_age_minutes", 60, 0, 525600) * 60000
local flood_messages = module:get_option_integer("flood_messages", 10, 1, 10000)
local flood_seconds = module:get_option_number("flood_seconds", 10, 0.001, 86400)

local now_ms = require("loom.core").now_ms

-- user ID -> the times (ms) of their recent messages, oldest first
local recent = {}

local function prune(list, now)
  local keep, cutoff = {}, now - flood_seconds * 1000
  for _, ts in ipairs(list) do
    if ts > cutoff then keep[#keep + 1] = ts end
  end
  return keep
end

local function has_link(content)
  local body = type(content) == "table" and content.body
  if type(body) ~= "string" then return false end
  body = body:lower()
  return body:find("https?://") ~= nil or body:find("www%.[%w-]+%.%a") ~= nil
end

module:hook("room/event/check", function(event, context)
  if context.origin ~= "local" or context.initial or event.type ~= "m.room.message" then return nil end
  local sender, now = event.sender, now_ms()
  if has_link(event.content) then
    local user = module:user(sender)
    if user and user.created_ts and now - user.created_ts < min_age_ms then
      return false, "New accounts may not send links yet"
    end
  end
  local list = prune(recent[sender] or {}, now)
  if #list >= flood_messages then
    recent[sender] = list
    module:log("warn", "%s is sending too fast", sender)
    return false, "You are sending messages too fast; slow down"
  end
  list[#list + 1] = now
  recent[sender] = list
  return nil
end)

-- Forget users who went quiet, so the table does not grow for ever.
module:timer(flood_seconds, function()
  local now = now_ms()
  for user, list in pairs(recent) do
    list = prune(list, now)
    recent[user] = list[1] and list or nil
  end
  return flood_seconds
end)
