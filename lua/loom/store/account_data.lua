-- loom.store.account_data: the account data each user keeps on the server
-- (Client-Server API "Client Config"), global or per room, one JSON object
-- per type, and its stream: every change takes the next account-data
-- position, so /sync sends only what changed since its token. Room tags are
-- the m.tag room account data.
--
--   local pos = store:set_account_data(user_id, room_id_or_nil, type, json_text)
--   local text = store:account_data(user_id, room_id_or_nil, type)       -- or nil
--   local changes = store:account_data_changes(user_id, since, to)       -- { {room_id|nil, type, text}, ... }
--   local now = store:account_data_position()
--   local ignored = store:ignored_users(user_id)                          -- { [user_id] = true }
--
-- The position seen by readers moves only when the change commits; then the
-- store's subscribers get a note for the user (wakes a waiting /sync).
-- Mixed into the store. A database failure raises (loom.db.Error).
local core = require "loom.core"

local ipairs, pairs, lua_type = ipairs, pairs, type
local json = core.json

local account_data = {}
local methods = {}
local _ENV = nil -- luacheck: ignore 211

-- '' in the database is global account data
local function key(room_id) return room_id or "" end

--- The highest committed account-data position (0 when there is none).
function methods:account_data_position()
  local pos = self.account_data_pos
  if not pos then
    pos = self.conn:value([[SELECT max(coalesce(max(stream_id), 0),
      coalesce((SELECT pos FROM stream_floors WHERE stream = 'account_data'), 0)) FROM account_data]])
    self.account_data_pos = pos
  end
  return pos
end

--- Set (replace) one type of a user's account data, global (room_id nil)
-- or for a room, to a JSON object's text. Returns its new position.
function methods:set_account_data(user_id, room_id, type, text)
  local conn = self.conn
  return conn:transaction(function()
    local pos = conn:value([[SELECT max(coalesce(max(stream_id), 0),
      coalesce((SELECT pos FROM stream_floors WHERE stream = 'account_data'), 0)) + 1 FROM account_data]])
    conn:run([[INSERT INTO account_data (user_id, room_id, type, content, stream_id)
      VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, room_id, type)
      DO UPDATE SET content = excluded.content, stream_id = excluded.stream_id]],
      user_id, key(room_id), type, text, pos)
    conn:after_commit(function()
      if pos > self:account_data_position() then self.account_data_pos = pos end
      self:notify_subscribers { position = self.current_stream, rooms = {}, users = { [user_id] = pos },
        events = 0, account_data = true }
    end)
    return pos
  end)
end

--- One type of a user's account data (room_id nil: global): its JSON text, or nil.
function methods:account_data(user_id, room_id, type)
  return self.conn:value("SELECT content FROM account_data WHERE user_id = ? AND room_id = ? AND type = ?",
    user_id, key(room_id), type)
end

--- A user's account data changed in (since, to] (since nil: all of it up
-- to `to`), in stream order: { { room_id (nil: global), type, json text }, ... }.
function methods:account_data_changes(user_id, since, to)
  local out = {}
  for _, row in ipairs(self.conn:all([[SELECT room_id, type, content FROM account_data
      WHERE user_id = ? AND stream_id > ? AND stream_id <= ? ORDER BY stream_id]], user_id, since or 0, to)) do
    out[#out + 1] = { row[1] ~= "" and row[1] or nil, row[2], row[3] }
  end
  return out
end

--- The users a user ignores (Client-Server API "Ignoring Users"): the keys
-- of `ignored_users` in their global m.ignored_user_list account data, as
-- { [user_id] = true } (empty when there is none). The user never ignores
-- themselves here, whatever an old list says.
function methods:ignored_users(user_id)
  local out = {}
  local text = self:account_data(user_id, nil, "m.ignored_user_list")
  local content = text and json.decode(text)
  local list = lua_type(content) == "table" and content.ignored_users
  if lua_type(list) == "table" then
    for who in pairs(list) do
      if lua_type(who) == "string" and who ~= user_id then out[who] = true end
    end
  end
  return out
end

account_data.methods = methods
return account_data
