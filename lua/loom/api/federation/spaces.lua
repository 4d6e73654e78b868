-- loom.api.federation.spaces: the Server-Server API "Spaces",
-- GET /_matrix/federation/v1/hierarchy/{roomId}?suggested_only -> { room,
-- children, inaccessible_children }: the room (a space) with its
-- children_state, the entries of its children this server holds and the
-- asking server may see, and the IDs of those it may not. A room this
-- server does not hold, or one the asking server may not see (see
-- loom.api.client.spaces.may_server_preview), is 404 M_NOT_FOUND.
local errors = require "loom.http.errors"
local core = require "loom.core"
local store_filter = require "loom.store.filter"
local spaces = require "loom.api.client.spaces"

local ipairs = ipairs

local _ENV = nil -- luacheck: ignore 211

local fed_spaces = {}

local function hierarchy(hs, req)
  local room_id = req.params.roomId
  local suggested_only = spaces.parse_bool(req:arg("suggested_only"))
  if suggested_only == nil then return errors.new("M_INVALID_PARAM", "suggested_only must be true or false") end
  if not store_filter.is_id("room", room_id) or not hs.store:room_version(room_id)
      or not spaces.may_server_preview(hs, room_id, req.origin) then
    return errors.new("M_NOT_FOUND", "Unknown room")
  end
  local children, inaccessible = core.json.array {}, core.json.array {}
  for _, ch in ipairs(spaces.children(hs, room_id, suggested_only)) do
    local id = ch.room_id
    if hs.store:room_version(id) then
      if spaces.may_server_preview(hs, id, req.origin) then
        children[#children + 1] = spaces.federation_entry(hs, id, suggested_only)
      else
        inaccessible[#inaccessible + 1] = id
      end
    end
  end
  return { room = spaces.federation_entry(hs, room_id, suggested_only), children = children,
    inaccessible_children = inaccessible }
end

fed_spaces.routes = {
  { "GET", "/_matrix/federation/v1/hierarchy/{roomId}", hierarchy, auth = "server" },
}

return fed_spaces
