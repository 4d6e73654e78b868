-- Routes: method + path pattern -> handler, with path parameters.
--
--   local router = require("loom.http.router").new()
--   router:add("PUT", "/_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}", handler)
--   local route, params, allow = router:match("PUT", "/_matrix/client/r0/rooms/%21a%3Ab/send/m.x/1")
--   --> route (pattern, handler), { roomId = "!a:b", eventType = "m.x", txnId = "1" }
--
-- Patterns are split at "/"; a segment "{name}" is a parameter, anything
-- else a literal. The raw path is split at "/" too, before decoding, so an
-- encoded "%2F" stays inside its segment; every segment is then
-- percent-decoded (a parameter may so contain "/"). Literal segments win over
-- parameters. "/_matrix/client/r0/..." reaches the "/_matrix/client/v3/..."
-- route when no r0 route of its own matches (older clients use r0).
-- HEAD is served by the GET route when there is no HEAD route.
local setmetatable, type, error, pairs, ipairs, tostring = setmetatable, type, error, pairs, ipairs, tostring
local string_find, string_sub, string_match = string.find, string.sub, string.match
local table_sort, table_concat = table.sort, table.concat
local table_remove, next = table.remove, next
local errors = require "loom.http.errors"
local percent_decode = require("loom.http.request").percent_decode

local _ENV = nil -- luacheck: ignore 211

local router = {}

local methods = {}
local mt = { __name = "loom.Router", __index = methods }
router.methods, router.mt = methods, mt

local R0, V3 = "/_matrix/client/r0", "/_matrix/client/v3"

--- router.new() -> Router
function router.new()
  return setmetatable({ root = { lit = {} }, routes = {} }, mt)
end

-- "/a/{b}/c" -> { "", "a", "{b}", "c" } (empty segments kept: "/a/" has two)
local function split(path)
  local segs, pos = {}, 1
  while true do
    local slash = string_find(path, "/", pos, true)
    if not slash then
      segs[#segs + 1] = string_sub(path, pos)
      return segs
    end
    segs[#segs + 1] = string_sub(path, pos, slash - 1)
    pos = slash + 1
  end
end

--- router:add(method, pattern, handler) -> route
-- method is an upper-case HTTP method; pattern starts with "/". Adding the
-- same method and pattern again replaces the handler.
function methods.add(self, method, pattern, handler)
  if type(method) ~= "string" or not string_find(method, "^[A-Z]+$") then
    error("route method must be an upper-case HTTP method, got " .. tostring(method), 2)
  end
  if type(pattern) ~= "string" or string_sub(pattern, 1, 1) ~= "/" then
    error("route pattern must start with '/', got " .. tostring(pattern), 2)
  end
  if type(handler) ~= "function" then error("route handler must be a function", 2) end
  local node, names = self.root, {}
  local segs = split(pattern)
  for i = 2, #segs do
    local seg = segs[i]
    local name = string_match(seg, "^{([%w_]+)}$")
    if name then
      names[#names + 1] = name
      node.param = node.param or { lit = {} }
      node = node.param
    else
      if string_find(seg, "[{}]") then error("bad route segment '" .. seg .. "' in " .. pattern, 2) end
      node.lit[seg] = node.lit[seg] or { lit = {} }
      node = node.lit[seg]
    end
  end
  node.methods = node.methods or {}
  local route = { method = method, pattern = pattern, handler = handler, names = names }
  node.methods[method] = route
  self.routes[#self.routes + 1] = route
  return route
end

--- router:remove(route) -> true when route (from router:add) was still
-- routed; its path then no longer answers that method.
function methods.remove(self, route)
  local found = false
  for i, r in ipairs(self.routes) do
    if r == route then
      table_remove(self.routes, i)
      found = true
      break
    end
  end
  if not found then return false end
  local node = self.root
  local segs = split(route.pattern)
  for i = 2, #segs do
    if string_match(segs[i], "^{([%w_]+)}$") then node = node.param else node = node.lit[segs[i]] end
    if not node then return true end
  end
  if node.methods and node.methods[route.method] == route then
    node.methods[route.method] = nil
    if next(node.methods) == nil then node.methods = nil end
  end
  return true
end

-- depth-first: literal before parameter; values collects parameter values
local function walk(node, segs, i, values)
  if i > #segs then
    if node.methods then return node end
    return nil
  end
  local seg = segs[i]
  local child = node.lit[seg]
  if child then
    local found = walk(child, segs, i + 1, values)
    if found then return found end
  end
  if node.param and seg ~= "" then
    values[#values + 1] = seg
    local found = walk(node.param, segs, i + 1, values)
    if found then return found end
    values[#values] = nil
  end
  return nil
end

local function allow_list(node)
  local list = {}
  for m in pairs(node.methods) do list[#list + 1] = m end
  if node.methods.GET and not node.methods.HEAD then list[#list + 1] = "HEAD" end
  list[#list + 1] = "OPTIONS"
  table_sort(list)
  return table_concat(list, ", ")
end

local function lookup(self, segs)
  local values = {}
  local node = walk(self.root, segs, 2, values)
  return node, values
end

--- router:match(method, raw_path) -> route, params
--                                  | nil, error value, allow
-- Errors: M_UNRECOGNIZED (404) for an unknown path, METHOD_NOT_ALLOWED
-- (405, M_UNRECOGNIZED) with allow = "GET, OPTIONS"-style list for a known
-- path and another method, M_INVALID_PARAM for bad percent-encoding.
function methods.match(self, method, raw_path)
  local segs = split(raw_path)
  if segs[1] ~= "" then return nil, errors.new("M_UNRECOGNIZED", "Unrecognized request") end
  for i = 2, #segs do
    local d, msg = percent_decode(segs[i])
    if not d then return nil, errors.new("M_INVALID_PARAM", "Bad path: " .. msg) end
    segs[i] = d
  end
  local node, values = lookup(self, segs)
  if not node and string_sub(raw_path, 1, #R0 + 1) == R0 .. "/" then
    segs[4] = "v3"
    node, values = lookup(self, segs)
  end
  if not node then return nil, errors.new("M_UNRECOGNIZED", "Unrecognized request") end
  local route = node.methods[method]
  if not route and method == "HEAD" then route = node.methods.GET end
  if not route then
    return nil, errors.new("METHOD_NOT_ALLOWED", "Method " .. method .. " not allowed here"),
           allow_list(node)
  end
  local params = {}
  for i, name in ipairs(route.names) do params[name] = values[i] end
  return route, params
end

router.split = split
router.prefixes = { r0 = R0, v3 = V3 }

return router
