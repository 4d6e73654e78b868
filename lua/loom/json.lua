-- loom.json: how loom holds JSON values in Lua, the small tests on them, and
-- the import of values decoded by other JSON libraries. Contract: docs/json.md.
--
--   local ljson = require "loom.json"
--   ljson.is_object(t)                       --> plain table (loom's JSON object)
--   local ev = assert(ljson.import(cjson.decode(text), "event"))
--
-- loom's decoder (loom.core.json) gives objects as plain tables, arrays as
-- tables with json.array_mt, integers as Lua integers and null as json.null.
-- Another decoder differs: lua-cjson reads every number as a float and every
-- array as a plain table; dkjson-style decoders mark objects and arrays with
-- metatables carrying __jsontype = "object" | "array". import() turns such a
-- value into loom's form, or reports why it cannot.
local type, pairs, next, getmetatable, setmetatable, rawget, error, pcall, tostring =
  type, pairs, next, getmetatable, setmetatable, rawget, error, pcall, tostring
local math_type, math_tointeger, string_format, HUGE = math.type, math.tointeger, string.format, math.huge

local core_json = require("loom.core").json

local _ENV = nil -- luacheck: ignore 211

local ljson = {}

local array_mt, null = core_json.array_mt, core_json.null
local MAX_INT = 9007199254740991 -- 2^53 - 1, the largest integer canonical JSON carries
local MAX_DEPTH = 100

--- True when v is a JSON object in loom's form: a table without metatable.
-- (An empty plain table is {}; a non-empty sequence is not checked for, see
-- is_array for the other side.)
function ljson.is_object(v)
  return type(v) == "table" and getmetatable(v) == nil
end

--- True when v is absent or JSON null (an optional field left out).
function ljson.is_null(v)
  return v == nil or v == null
end

--- True when v is a JSON array in loom's form: a json.array_mt table, or a
-- plain non-empty sequence (loom's encoder writes both as arrays).
function ljson.is_array(v)
  if type(v) ~= "table" then return false end
  local mt = getmetatable(v)
  if mt == array_mt then return true end
  return mt == nil and rawget(v, 1) ~= nil and next(v, #v) == nil
end

-- ---- import ----------------------------------------------------------------

-- True when v carries the mark of another JSON library on its outer table:
-- a metatable other than json.array_mt (dkjson marks objects and arrays so).
-- Only the outer table is looked at, so that loom's own values (checked on
-- every auth check and fetch) cost nothing.
local function marked(v)
  if type(v) ~= "table" then return false end
  local mt = getmetatable(v)
  return mt ~= nil and mt ~= array_mt
end

local function fail(path, msg, code)
  error({ string_format("%s: %s", path, msg), code }, 0)
end

local function join(path, k)
  if type(k) == "string" then return path .. "." .. k end
  return path .. "[" .. tostring(k) .. "]"
end

local convert

local function to_array(v, n, path, depth)
  local out = setmetatable({}, array_mt)
  for i = 1, n do
    local x = rawget(v, i)
    if x == nil then fail(path, "array with a hole at " .. i, "json_type") end
    out[i] = convert(x, join(path, i), depth + 1)
  end
  return out
end

local function to_object(v, path, depth)
  local out = {}
  for k, x in next, v do
    if type(k) ~= "string" then fail(path, "object key that is not a string", "json_type") end
    out[k] = convert(x, join(path, k), depth + 1)
  end
  return out
end

-- The number of keys of t when they are exactly 1..n, else nil.
local function sequence_len(t)
  local n = 0
  for k in next, t do
    if math_type(k) ~= "integer" or k < 1 then return nil end
    n = n + 1
  end
  for i = 1, n do
    if rawget(t, i) == nil then return nil end
  end
  return n
end

function convert(v, path, depth)
  local t = type(v)
  if t == "string" or t == "boolean" then return v end
  if t == "number" then
    if math_type(v) == "integer" then
      if v > MAX_INT or v < -MAX_INT then fail(path, "integer out of range", "json_range") end
      return v
    end
    if v ~= v or v == HUGE or v == -HUGE then fail(path, "NaN or infinite number", "json_float") end
    if v % 1 ~= 0 then return v end -- as loom's decoder gives it; event checks refuse it
    if v > MAX_INT or v < -MAX_INT then fail(path, "integer out of range", "json_range") end
    return math_tointeger(v)
  end
  if v == null then return null end
  if t ~= "table" then fail(path, "a " .. t .. " is not a JSON value", "json_type") end
  if depth > MAX_DEPTH then fail(path, "nested deeper than " .. MAX_DEPTH, "json_depth") end
  local mt = getmetatable(v)
  local kind
  if mt == array_mt then
    kind = "array"
  elseif mt ~= nil then
    kind = type(mt) == "table" and rawget(mt, "__jsontype") or nil
    if kind ~= "array" and kind ~= "object" then
      fail(path, "table with a metatable that marks neither an array nor an object", "json_type")
    end
  end
  if kind == "object" then return to_object(v, path, depth) end
  local n = sequence_len(v)
  if kind == "array" then
    if n == nil then fail(path, "array with keys other than 1..n", "json_type") end
    return to_array(v, n, path, depth)
  end
  if n ~= nil and n > 0 then return to_array(v, n, path, depth) end
  return to_object(v, path, depth)
end

-- Top-level event fields that are always arrays: an empty plain table there
-- (lua-cjson's "[]") is read as an empty array.
local EVENT_ARRAYS = { prev_events = true, auth_events = true }

local function import_event(ev)
  local out = convert(ev, "event", 1)
  if type(out) ~= "table" or getmetatable(out) ~= nil then fail("event", "not a JSON object", "json_type") end
  for k in pairs(EVENT_ARRAYS) do
    local x = out[k]
    if type(x) == "table" and getmetatable(x) == nil and next(x) == nil then out[k] = setmetatable(x, array_mt) end
  end
  return out
end

-- An event from a decoder that neither marks arrays nor keeps integers
-- (lua-cjson): origin_server_ts is a float and prev_events or auth_events a
-- plain table. (loom's decoder marks arrays; events built in Lua carry
-- integer timestamps.)
local function unmarked_event(ev)
  if type(ev) ~= "table" or getmetatable(ev) ~= nil or math_type(ev.origin_server_ts) ~= "float" then
    return false
  end
  local p, a = ev.prev_events, ev.auth_events
  return type(p) == "table" and getmetatable(p) == nil or type(a) == "table" and getmetatable(a) == nil
end

-- The path of the first empty table without metatable in v (a decoder that
-- marks no arrays gives {} for both [] and {} there), or nil.
local function first_empty(v, path, depth)
  if type(v) ~= "table" or depth > MAX_DEPTH then return nil end
  if getmetatable(v) == nil and next(v) == nil then return path end
  for k, x in next, v do
    local p = first_empty(x, join(path, k), depth + 1)
    if p then return p end
  end
  return nil
end

--- ljson.ambiguous(object) -> path | nil: where an object (as another
-- library decoded it; itself known to be an object) holds an empty table that
-- may have been [] or {} in the JSON text (lua-cjson reads both as {}); nil
-- when there is none. Used to explain a content hash that does not match.
function ljson.ambiguous(object)
  if type(object) ~= "table" then return nil end
  for k, x in next, object do
    local p = first_empty(x, join("value", k), 2)
    if p then return p end
  end
  return nil
end

--- ljson.import(value [, kind]) -> value | nil, message, code
-- value in loom's form. A value without the marks of another library is
-- taken as loom's and returned as it is (nothing copied, nothing checked:
-- loom's own checks judge it). The marks, looked for in O(1): a metatable
-- other than json.array_mt on the outer table (dkjson-style __jsontype =
-- "object" | "array"); with kind "event", a float origin_server_ts with a
-- plain-table prev_events or auth_events (lua-cjson, which reads every
-- number as a float and marks no array). A marked value is converted into a
-- copy: integral floats become integers, plain sequences arrays, an empty
-- plain prev_events/auth_events []. Codes: "json_range" (beyond
-- +-(2^53-1)), "json_float" (NaN, inf), "json_type" (a metatable that marks
-- no JSON kind, mixed or non-string keys, a value JSON has not),
-- "json_depth" (over 100 levels). A non-integral float stays a float, as
-- loom's decoder gives it; event checks refuse it.
function ljson.import(value, kind)
  if not (kind == "event" and unmarked_event(value)) and not marked(value) then return value end
  local ok, res = pcall(kind == "event" and import_event or convert, value, "value", 1)
  if ok then return res end
  if type(res) == "table" then return nil, res[1], res[2] end
  error(res, 0)
end

return ljson
