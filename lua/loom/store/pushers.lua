-- loom.store.pushers: users' pushers (schema 35; Client-Server API
-- "Push Notifications", POST /pushers/set).
--
--   store:set_pusher({ user_id, device_id, kind, app_id, pushkey, app_display_name, device_display_name,
--                      profile_tag, lang, data (JSON text), pushkey_ts }, exclusive)
--   local n = store:delete_pusher(user_id, app_id, pushkey)
--   local list = store:user_pushers(user_id)            -- rows as given to set_pusher
--   local by_user = store:pushers_of_users { user_id, ... }  -- { [user_id] = { row, ... } }
--   local row = store:pusher(user_id, app_id, pushkey)
--   store:pusher_delivered(user_id, app_id, pushkey, stream_ordering)
--   local list = store:pushers_to_resume()      -- http pushers with a position
--
-- Each row also has last_stream_ordering (schema 52): the notifications up
-- to it went out (a pusher set anew starts at the stream's current end).
-- A pusher is keyed by user, app_id and pushkey; setting it again replaces
-- it. Deleting its device deletes it (a trigger of schema 35). Mixed into
-- the store. A database failure raises.
local sql = require "loom.store.sql"

local ipairs, table_unpack = ipairs, table.unpack

local pushers = {}
local methods = {}
local _ENV = nil -- luacheck: ignore 211

local COLS = [[user_id, device_id, kind, app_id, pushkey, app_display_name, device_display_name, profile_tag,
  lang, data, pushkey_ts, last_stream_ordering]]

local function decode(r)
  return { user_id = r[1], device_id = r[2], kind = r[3], app_id = r[4], pushkey = r[5], app_display_name = r[6],
    device_display_name = r[7], profile_tag = r[8], lang = r[9], data = r[10], pushkey_ts = r[11],
    last_stream_ordering = r[12] }
end

--- Add or replace the pusher p (keyed by user_id, app_id, pushkey); with
-- exclusive, other users' pushers of the same app_id and pushkey go (POST
-- /pushers/set without append). One transaction.
function methods:set_pusher(p, exclusive)
  local conn = self.conn
  conn:transaction(function()
    if exclusive then
      conn:run("DELETE FROM pushers WHERE app_id = ? AND pushkey = ? AND user_id <> ?", p.app_id, p.pushkey, p.user_id)
    end
    conn:run("INSERT OR REPLACE INTO pushers (" .. COLS .. ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
      p.user_id, p.device_id, p.kind, p.app_id, p.pushkey, p.app_display_name, p.device_display_name,
      p.profile_tag, p.lang, p.data, p.pushkey_ts, self.current_stream or 0)
  end)
end

--- Delete one pusher of a user. Returns how many (0 or 1).
function methods:delete_pusher(user_id, app_id, pushkey)
  return self.conn:run("DELETE FROM pushers WHERE user_id = ? AND app_id = ? AND pushkey = ?",
    user_id, app_id, pushkey)
end

--- A user's pushers, oldest first.
function methods:user_pushers(user_id)
  local out = {}
  for _, r in ipairs(self.conn:all("SELECT " .. COLS .. " FROM pushers WHERE user_id = ? ORDER BY pushkey_ts, app_id",
      user_id)) do
    out[#out + 1] = decode(r)
  end
  return out
end

--- One pusher, or nil.
function methods:pusher(user_id, app_id, pushkey)
  local r = self.conn:first("SELECT " .. COLS .. " FROM pushers WHERE user_id = ? AND app_id = ? AND pushkey = ?",
    user_id, app_id, pushkey)
  return r and decode(r) or nil
end

--- The pushers of the given users: { [user_id] = { row, ... } } (users
-- without any are absent). One query per 500 users.
function methods:pushers_of_users(user_ids)
  local out = {}
  for marks, chunk in sql.chunks(user_ids) do
    for _, r in ipairs(self.conn:all("SELECT " .. COLS .. " FROM pushers WHERE user_id IN (" .. marks .. ")",
        table_unpack(chunk))) do
      local list = out[r[1]]
      if not list then list = {}; out[r[1]] = list end
      list[#list + 1] = decode(r)
    end
  end
  return out
end

--- The pusher's notifications up to stream_ordering went out (delivered or
-- given up): its position moves there (never back).
function methods:pusher_delivered(user_id, app_id, pushkey, stream_ordering)
  self.conn:run([[UPDATE pushers SET last_stream_ordering = ?4 WHERE user_id = ?1 AND app_id = ?2 AND pushkey = ?3
    AND coalesce(last_stream_ordering, 0) < ?4]], user_id, app_id, pushkey, stream_ordering)
end

--- The http pushers with a position (to send what came after it).
function methods:pushers_to_resume()
  local out = {}
  for _, r in ipairs(self.conn:all("SELECT " .. COLS .. [[ FROM pushers
      WHERE kind = 'http' AND last_stream_ordering IS NOT NULL ORDER BY user_id, app_id, pushkey]])) do
    out[#out + 1] = decode(r)
  end
  return out
end

pushers.methods = methods
return pushers
