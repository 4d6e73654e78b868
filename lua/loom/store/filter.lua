-- loom.store.filter: the Matrix event filter (RoomEventFilter) — validation,
-- in-memory matching, and compilation to SQL clauses with bound parameters.
--
--   local f = assert(filter.compile { types = { "m.room.*" }, not_senders = { "@spam:x" } })
--   local sql, params = f:sql(resolver, { type = "type_nid", sender = "sender", ... })
--
-- Event types may use `*` wildcards (any run of characters). An absent list
-- means "no restriction"; an empty `types`/`senders`/`rooms` list matches
-- nothing. not_* lists win over their include lists. Entries of
-- senders/not_senders must be user IDs and of rooms/not_rooms room IDs. A
-- limit of 0 means "no events".
local json = require("loom.core").json
local sql_mod = require "loom.store.sql"

local type, ipairs, pairs, setmetatable, math_type = type, ipairs, pairs, setmetatable, math.type
local string_format, table_concat = string.format, table.concat
local next, table = next, table

local _ENV = nil -- luacheck: ignore 211

local filter = {}
local methods = {}
local mt = { __name = "loom.store.Filter", __index = methods }

local MAX_LIST = 1000
local MAX_LIMIT = 1000
local LISTS = { "types", "not_types", "senders", "not_senders", "rooms", "not_rooms" }
-- Lists whose entries are IDs: the syntax each entry must have.
local ID_LISTS = { senders = "user", not_senders = "user", rooms = "room", not_rooms = "room" }

-- Is s a user ID (@localpart:server) or a room ID (!opaque:server; from room
-- v12, ! and the create event's URL-safe hash without a server)?
local function is_id(kind, s)
  if #s > 255 then return false end
  if kind == "user" then return s:find("^@[^:]+:.") ~= nil end
  return s:find("^![^:]+:.") ~= nil or s:find("^![%w_%-]+$") ~= nil
end

filter.is_id = is_id

local function glob_to_pattern(glob)
  local parts = {}
  for i = 1, #glob do
    local c = glob:sub(i, i)
    if c == "*" then parts[i] = ".*"
    elseif c:match("%W") then parts[i] = "%" .. c
    else parts[i] = c end
  end
  return "^" .. table_concat(parts) .. "$"
end

local function compile_types(list)
  local exact, globs = {}, {}
  for _, t in ipairs(list) do
    if t:find("*", 1, true) then globs[#globs + 1] = glob_to_pattern(t) else exact[t] = true end
  end
  return { exact = exact, globs = globs, list = list }
end

local function type_matches(set, t)
  if set.exact[t] then return true end
  for _, p in ipairs(set.globs) do if t:match(p) then return true end end
  return false
end

local function string_set(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

--- Validate a filter definition (a decoded JSON object, or nil for "match
-- everything"). Unknown keys are ignored (the spec leaves room for
-- extensions). Returns a Filter or nil, message, "bad_filter".
function filter.compile(def)
  if def == nil or def == json.null then def = {} end
  if type(def) ~= "table" or json.is_array(def) then
    return nil, "filter must be a JSON object", "bad_filter"
  end
  local self = { def = def }
  for _, name in ipairs(LISTS) do
    local list = def[name]
    if list ~= nil and list ~= json.null then
      if type(list) ~= "table" or (next(list) ~= nil and not json.is_array(list) and #list == 0) then
        return nil, ("filter field '%s' must be an array of strings"):format(name), "bad_filter"
      end
      local n = 0
      for k, v in pairs(list) do
        n = n + 1
        if math_type(k) ~= "integer" or type(v) ~= "string" then
          return nil, ("filter field '%s' must be an array of strings"):format(name), "bad_filter"
        end
      end
      if n ~= #list then
        return nil, ("filter field '%s' must be an array of strings"):format(name), "bad_filter"
      end
      local kind = ID_LISTS[name]
      if kind then
        for _, v in ipairs(list) do
          if not is_id(kind, v) then
            return nil, ("filter field '%s' holds %s, not a %s ID"):format(name, json.encode(v), kind), "bad_filter"
          end
        end
      end
      if n > MAX_LIST then
        return nil, ("filter field '%s' has more than %d entries"):format(name, MAX_LIST), "bad_filter"
      end
      self[name] = list
    end
  end
  local limit = def.limit
  if limit ~= nil and limit ~= json.null then
    if math_type(limit) ~= "integer" or limit < 0 then
      return nil, "filter limit must be a non-negative integer", "bad_filter"
    end
    self.limit = limit > MAX_LIMIT and MAX_LIMIT or limit
  end
  local cu = def.contains_url
  if cu ~= nil and cu ~= json.null then
    if type(cu) ~= "boolean" then return nil, "filter contains_url must be a boolean", "bad_filter" end
    self.contains_url = cu
  end
  self.types_set = self.types and compile_types(self.types)
  self.not_types_set = self.not_types and compile_types(self.not_types)
  self.senders_set = self.senders and string_set(self.senders)
  self.not_senders_set = self.not_senders and string_set(self.not_senders)
  self.rooms_set = self.rooms and string_set(self.rooms)
  self.not_rooms_set = self.not_rooms and string_set(self.not_rooms)
  return setmetatable(self, mt)
end

--- Does the filter let through an event? ev: {type, sender, room_id, contains_url}.
function methods:match(ev)
  if self.not_rooms_set and self.not_rooms_set[ev.room_id] then return false end
  if self.rooms_set and not self.rooms_set[ev.room_id] then return false end
  if self.not_senders_set and self.not_senders_set[ev.sender] then return false end
  if self.senders_set and not self.senders_set[ev.sender] then return false end
  if self.not_types_set and type_matches(self.not_types_set, ev.type) then return false end
  if self.types_set and not type_matches(self.types_set, ev.type) then return false end
  if self.contains_url ~= nil and (ev.contains_url and true or false) ~= self.contains_url then
    return false
  end
  return true
end

--- Does the room pass rooms/not_rooms?
function methods:allows_room(room_id)
  if self.not_rooms_set and self.not_rooms_set[room_id] then return false end
  if self.rooms_set and not self.rooms_set[room_id] then return false end
  return true
end

--- Is this filter a no-op?
function methods:is_empty()
  return not (self.types or self.not_types or self.senders or self.not_senders
    or self.rooms or self.not_rooms or self.contains_url ~= nil)
end

--- The type NIDs (from all_types: { [type] = nid }) matching a compiled set.
local function nids_for(set, all_types)
  local out = {}
  for t, nid in pairs(all_types) do
    if type_matches(set, t) then out[#out + 1] = nid end
  end
  table.sort(out)
  return out
end

local function in_list(col, values, params, negate)
  if #values == 0 then
    if negate then return nil end   -- excludes nothing
    return false                     -- includes nothing
  end
  -- one clause of a query: not chunked (a filter's lists are bounded)
  for _, v in ipairs(values) do params[#params + 1] = v end
  return string_format("%s %sIN (%s)", col, negate and "NOT " or "", sql_mod.marks(#values))
end

--- SQL clauses for the filter. resolver: { types = function() -> {[type]=nid},
-- room_nid = function(room_id) -> nid|nil, version = function() -> value
-- that changes whenever either answer may (optional) }. cols: column names for type,
-- sender, room and url (any may be nil when the query has no such column,
-- then that part is not emitted). Returns sql (or nil when no clause is
-- needed, or false when no event can match) and an array of parameters.
function methods:sql(resolver, cols)
  -- The answer only changes when new event types or rooms appear; callers
  -- passing resolver.version get it cached per column set.
  local version = resolver.version and resolver.version()
  local cache = self._sql_cache
  if version and cache and cache.resolver == resolver and cache.version == version and cache.cols == cols then
    return cache.sql, cache.params
  end
  local sql, params = self:build_sql(resolver, cols)
  if version then
    self._sql_cache = { resolver = resolver, version = version, cols = cols, sql = sql, params = params }
  end
  return sql, params
end

function methods:build_sql(resolver, cols)
  local clauses, params = {}, {}
  local never = false
  local function add(c)
    if c then clauses[#clauses + 1] = c elseif c == false then never = true end
  end
  if cols.type then
    if self.types_set then add(in_list(cols.type, nids_for(self.types_set, resolver.types()), params)) end
    if self.not_types_set then
      add(in_list(cols.type, nids_for(self.not_types_set, resolver.types()), params, true))
    end
  end
  if cols.sender then
    if self.senders then add(in_list(cols.sender, self.senders, params)) end
    if self.not_senders then add(in_list(cols.sender, self.not_senders, params, true)) end
  end
  if cols.room then
    local function nids(list)
      local out = {}
      for _, r in ipairs(list) do
        local nid = resolver.room_nid(r)
        if nid then out[#out + 1] = nid end
      end
      return out
    end
    if self.rooms then add(in_list(cols.room, nids(self.rooms), params)) end
    if self.not_rooms then add(in_list(cols.room, nids(self.not_rooms), params, true)) end
  end
  if cols.url and self.contains_url ~= nil then
    add(cols.url .. " = ?")
    params[#params + 1] = self.contains_url and 1 or 0
  end
  if never then return false, params end
  if #clauses == 0 then return nil, params end
  return table_concat(clauses, " AND "), params
end

filter.methods = methods
filter.mt = mt
filter.glob_to_pattern = glob_to_pattern
filter.is_id = is_id
return filter
