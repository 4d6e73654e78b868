-- loom.api.client.user_directory: the Client-Server API "User directory",
-- POST /user_directory/search { search_term, limit = 10 } ->
-- { results = [ { user_id, display_name?, avatar_url? } ], limited }.
-- A searcher finds the users they share a joined room with and the users
-- joined to a public (join rule public) or world-readable room; with
-- config user_directory = { search_all_users = true } every local account
-- too. Matching is by word prefix over the localpart and the display name,
-- case- and accent-insensitive (SQLite FTS5's unicode61 tokenizer). Users
-- the searcher ignores and deactivated accounts are never listed. Remote
-- users are found by the display name of their member event. The directory
-- is kept by the store (loom.store.user_directory); see
-- docs/api-client-directory.md.
local errors = require "loom.http.errors"
local ljson = require "loom.json"
local core = require "loom.core"

local type, math_type, pairs, ipairs = type, math.type, pairs, ipairs
local string_gsub = string.gsub

local _ENV = nil -- luacheck: ignore 211

local user_directory_api = {}

local V3 = "/_matrix/client/v3"
user_directory_api.DEFAULT_LIMIT = 10
user_directory_api.MAX_LIMIT = 50      -- as Synapse

local function search(hs, req)
  local body = req:json()    -- M_NOT_JSON / M_BAD_JSON unless an object
  local term, limit = body.search_term, body.limit
  if term == nil or ljson.is_null(term) then return errors.new("M_MISSING_PARAM", "search_term is required") end
  if type(term) ~= "string" then return errors.new("M_INVALID_PARAM", "search_term must be a string") end
  if limit == nil or ljson.is_null(limit) then limit = user_directory_api.DEFAULT_LIMIT end
  if math_type(limit) ~= "integer" or limit < 0 then
    return errors.new("M_INVALID_PARAM", "limit must be a non-negative integer")
  end
  if limit > user_directory_api.MAX_LIMIT then limit = user_directory_api.MAX_LIMIT end
  -- a full user ID is searched by its localpart: the server part is no word of the index
  term = string_gsub(term, "@([^%s:]*):%S*", "%1")
  local store = hs.store
  local words = store:search_words(term)
  local ignored = store:ignored_users(req.user_id)
  local n_ignored = 0
  for _ in pairs(ignored) do n_ignored = n_ignored + 1 end
  local conf = hs.config.user_directory
  local rows = store:search_user_directory(req.user_id, { words = words, limit = limit + 1 + n_ignored,
    all_local = type(conf) == "table" and conf.search_all_users == true })
  local results = core.json.array {}
  local limited = false
  for _, r in ipairs(rows) do
    if not ignored[r.user_id] then
      if #results >= limit then limited = true; break end
      results[#results + 1] = { user_id = r.user_id, display_name = r.display_name, avatar_url = r.avatar_url }
    end
  end
  return { results = results, limited = limited }
end

user_directory_api.routes = {
  { "POST", V3 .. "/user_directory/search", search, auth = true },
}

return user_directory_api
