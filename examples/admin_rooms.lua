-- admin_rooms: GET /_loom/admin/v1/rooms lists every room of this server with
-- its name and member counts. It needs the access token of an admin account
-- (bin/loom register-user NAME --admin).
--
--   curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8008/_loom/admin/v1/rooms
--   {"rooms": [{"room_id": "!a:example.org", "name": "Lobby", "joined_members": 3, "invited_members": 1}],
--    "total": 1}
local errors = require "loom.http.errors"
local json = require("loom.core").json

module:route("GET", "/_loom/admin/v1/rooms", function(req)
  local user = module:user(req.user_id)
  if not (user and user.admin) then
    return errors.new("M_FORBIDDEN", "You are not a server admin")
  end
  local rooms = {}
  for _, room_id in ipairs(module:rooms()) do
    local name = module:state(room_id, "m.room.name", "")
    rooms[#rooms + 1] = {
      room_id = room_id,
      name = name and type(name.content) == "table" and name.content.name or nil,
      joined_members = #module:members(room_id, "join"),
      invited_members = #module:members(room_id, "invite"),
    }
  end
  return { rooms = json.array(rooms), total = #rooms }
end)
