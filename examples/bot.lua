-- bot: an echo bot. A local account (bot_user, default @echo:<server name>)
-- joins the rooms it is invited to and answers every text message with
-- "echo: <body>". Create its account first:
--
--   bin/loom register-user echo
--   -- loom.cfg.lua
--   scripts = { "bot.lua" }
--   bot = { bot_user = "@echo:example.org" }
local bot = module:get_option_string("bot_user", "@echo:" .. module.server_name)

if not module:user_exists(bot) then
  module:log("warn", "%s has no account yet (bin/loom register-user); the bot waits for it", bot)
end

local function joined(room_id)
  for _, user in ipairs(module:members(room_id)) do
    if user == bot then return true end
  end
  return false
end

-- room/event/persisted runs after the event is stored, in its own task.
module:hook("room/event/persisted", function(event)
  if event.sender == bot then return end     -- never answer itself
  local content = event.content
  if event.type == "m.room.member" and event.state_key == bot and type(content) == "table"
     and content.membership == "invite" then
    local ok, err = module:send(bot, event.room_id, "m.room.member", { membership = "join" }, bot)
    if not ok then module:log("warn", "cannot join %s: %s", event.room_id, tostring(err)) end
  elseif event.type == "m.room.message" and type(content) == "table" and content.msgtype == "m.text"
     and type(content.body) == "string" and joined(event.room_id) then
    local ok, err = module:send(bot, event.room_id, "m.room.message",
      { msgtype = "m.notice", body = "echo: " .. content.body })
    if not ok then module:log("warn", "cannot answer in %s: %s", event.room_id, tostring(err)) end
  end
end)
