-- loom.store.user_filters: the filters clients upload (POST
-- /user/{userId}/filter), kept as JSON text per user.
--
--   local id = store:save_filter(user_id, json_text)   -- 0, 1, 2, ... per user
--   local text = store:filter_json(user_id, id)        -- or nil
--
-- Mixed into the store. A database failure raises (loom.db.Error).
local user_filters = {}
local methods = {}
local _ENV = nil -- luacheck: ignore 211

--- Store a filter's JSON text: its ID (an integer, per user from 0).
function methods:save_filter(user_id, text)
  local conn = self.conn
  return conn:transaction(function()
    -- one statement: the next ID and the row together
    conn:run([[INSERT INTO filters (user_id, filter_id, json)
      SELECT ?, coalesce(max(filter_id) + 1, 0), ? FROM filters WHERE user_id = ?]], user_id, text, user_id)
    return conn:value("SELECT max(filter_id) FROM filters WHERE user_id = ?", user_id)
  end)
end

--- A stored filter's JSON text, or nil.
function methods:filter_json(user_id, filter_id)
  return self.conn:value("SELECT json FROM filters WHERE user_id = ? AND filter_id = ?", user_id, filter_id)
end

user_filters.methods = methods
return user_filters
