-- A request as a handler sees it: the parser's fields (method, target, path,
-- query, headers, body, keep_alive, version) plus what the server and the
-- router add (server, peer, params, route), with helpers for the body and the
-- query string. Failures the client caused raise error values
-- (loom.http.errors), which the server turns into Matrix errors.
--
--   server:route("POST", "/_matrix/client/v3/rooms/{roomId}/leave", function(req)
--     local body = req:json()              -- M_NOT_JSON / M_BAD_JSON on bad input
--     local room_id = req.params.roomId    -- percent-decoded
--     local limit = req:arg("limit")       -- first "limit" in the query, decoded
--     ...
--   end)
local setmetatable, rawget, rawset, tostring, error, require =
  setmetatable, rawget, rawset, tostring, error, require
local string_gsub, string_find, string_sub, string_char, string_lower =
  string.gsub, string.find, string.sub, string.char, string.lower
local tonumber, utf8_len = tonumber, utf8.len
local json = require("loom.core").json
local errors = require "loom.http.errors"
local ljson = require "loom.json"

local _ENV = nil -- luacheck: ignore 211

local request = {}

local function hex_byte(h) return string_char(tonumber(h, 16)) end

--- request.percent_decode(s, [plus]) -> decoded | nil, message
-- Decodes %XX escapes (and "+" as a space when plus is true, as in query
-- strings). Fails on a malformed escape or when the result is not UTF-8.
function request.percent_decode(s, plus)
  if string_find(s, "%%") then
    if string_find(s, "%%%x?[^%x]") or string_find(s, "%%%x?$") then
      return nil, "malformed percent-encoding"
    end
    if plus then s = string_gsub(s, "+", " ") end
    s = string_gsub(s, "%%(%x%x)", hex_byte)
  elseif plus then
    s = string_gsub(s, "+", " ")
  end
  if not utf8_len(s) then return nil, "percent-decoded text is not UTF-8" end
  return s
end
local percent_decode = request.percent_decode

-- query string -> { name = { value, ... } } (decoded); raises M_INVALID_PARAM
local function parse_query(q)
  local all = {}
  local pos = 1
  while pos <= #q do
    local amp = string_find(q, "&", pos, true) or #q + 1
    local pair = string_sub(q, pos, amp - 1)
    pos = amp + 1
    if pair ~= "" then
      local eq = string_find(pair, "=", 1, true)
      local k, v = pair, ""
      if eq then k, v = string_sub(pair, 1, eq - 1), string_sub(pair, eq + 1) end
      local dk, msg = percent_decode(k, true)
      local dv
      if dk then dv, msg = percent_decode(v, true) end
      if not dv then
        error(errors.new("M_INVALID_PARAM", "Bad query parameter: " .. msg), 0)
      end
      local list = all[dk]
      if not list then
        list = {}
        all[dk] = list
      end
      list[#list + 1] = dv
    end
  end
  return all
end

local methods = {}
local lazy = {}
local mt = {
  __name = "loom.Request",
  __index = function(req, k)
    local m = methods[k]
    if m ~= nil then return m end
    local f = lazy[k]
    if f then
      local v = f(req)
      rawset(req, k, v)
      return v
    end
    return nil
  end,
  __tostring = function(req) return "loom.Request: " .. req.method .. " " .. req.path end,
}
request.methods, request.mt = methods, mt

-- req.args: every query parameter, decoded: name -> array of values
function lazy.args(req)
  return parse_query(req.query or "")
end

--- request.new(raw) -> Request (raw: a table from the parser, which it
-- becomes)
function request.new(raw)
  raw.params = raw.params or {}
  return setmetatable(raw, mt)
end

--- req:header(name) -> value | nil (name in any case)
function methods.header(req, name)
  return req.headers[string_lower(name)]
end

--- req:arg(name, [default]) -> the first value of a query parameter
function methods.arg(req, name, default)
  local list = req.args[name]
  if list then return list[1] end
  return default
end

--- req:arg_integer(name, [default], [min], [max]) -> integer
-- A parameter that must be a decimal integer; M_INVALID_PARAM otherwise.
function methods.arg_integer(req, name, default, min, max)
  local s = methods.arg(req, name)
  if s == nil then return default end
  local n = string_find(s, "^%-?%d+$") and #s <= 18 and tonumber(s) or nil
  if not n or (min and n < min) or (max and n > max) then
    error(errors.new("M_INVALID_PARAM", "Query parameter " .. name .. " must be an integer" ..
                     (min and max and (" in " .. min .. ".." .. max) or "")), 0)
  end
  return n
end

--- req:json([opts]) -> the decoded body
-- Raises M_NOT_JSON when the body is not JSON (empty, syntax, UTF-8, too
-- deep), M_BAD_JSON when it is JSON loom refuses (duplicate keys, numbers out
-- of range) or not an object (unless opts.any). opts.strict: the Matrix event
-- rules (integers only).
function methods.json(req, opts)
  local cached = rawget(req, "_json")
  if cached ~= nil and not opts then return cached end
  local body = req.body
  if body == nil or body == "" then
    error(errors.new("M_NOT_JSON", "Request body is empty, JSON expected"), 0)
  end
  local v, msg, code = json.decode(body, { max_bytes = #body, strict = opts and opts.strict })
  if v == nil then
    local err = errors.from_code(code, "Invalid JSON: " .. tostring(msg))
    error(err, 0)
  end
  if not ljson.is_object(v) then
    if not (opts and opts.any) then
      error(errors.new("M_BAD_JSON", "Request body must be a JSON object"), 0)
    end
  end
  if not opts then rawset(req, "_json", v) end
  return v
end

--- req:read_body() -> the next piece of the body | nil at its end |
-- nil, error value (a streamed body that stalled or broke a limit). A
-- streamed request (loom.http.server's stream_prefix) has no req.body: its
-- body arrives through this; any other request's body comes as one piece.
function methods.read_body(req)
  local st = rawget(req, "body_stream")
  if st then return st:read() end
  if rawget(req, "_body_read") then return nil end
  rawset(req, "_body_read", true)
  local body = req.body
  if body == nil or body == "" then return nil end
  return body
end

--- req:sleep(ms): waits ms milliseconds without blocking the server (only
-- inside a handler). Same as require("loom.http.server").sleep.
function methods.sleep(_, ms)
  return require("loom.async").sleep(ms)
end

return request
