-- HTTP responses: a status, ordered headers and a body (bytes), written as
-- HTTP/1.1 with Content-Length, the CORS headers every Matrix response
-- carries, and Connection.
--
--   local response = require "loom.http.response"
--   local r = response.json(200, { versions = json.array { "v1.11" } })
--   r:set_header("Cache-Control", "no-cache")
--   local bytes = response.serialize(r, { close = false })
--
-- JSON bodies are encoded with loom.core's json.encode(v, { floats = true }):
-- canonical (sorted keys, exact integers); [] needs json.array.
local setmetatable, getmetatable, type, ipairs, pairs, tostring =
  setmetatable, getmetatable, type, ipairs, pairs, tostring
local error, os_date, os_time, math_type = error, os.date, os.time, math.type
local string_format = string.format
local string_find, string_lower, table_concat = string.find, string.lower, table.concat
local json = require("loom.core").json
local errors = require "loom.http.errors"

local _ENV = nil -- luacheck: ignore 211

local response = {}

--- The CORS headers on every response (Matrix client-server API, "Web
-- Browser Clients"): any origin, the methods loom serves, the headers
-- clients send.
response.cors = {
  { "Access-Control-Allow-Origin", "*" },
  { "Access-Control-Allow-Methods", "GET, HEAD, POST, PUT, DELETE, OPTIONS" },
  { "Access-Control-Allow-Headers", "X-Requested-With, Content-Type, Authorization" },
}

local reasons = {
  [100] = "Continue", [200] = "OK", [201] = "Created", [202] = "Accepted", [204] = "No Content",
  [301] = "Moved Permanently", [302] = "Found", [304] = "Not Modified",
  [307] = "Temporary Redirect", [308] = "Permanent Redirect",
  [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found",
  [405] = "Method Not Allowed", [408] = "Request Timeout", [409] = "Conflict", [410] = "Gone",
  [411] = "Length Required", [413] = "Content Too Large", [415] = "Unsupported Media Type",
  [429] = "Too Many Requests", [500] = "Internal Server Error", [501] = "Not Implemented",
  [502] = "Bad Gateway", [503] = "Service Unavailable", [504] = "Gateway Timeout",
}
response.reasons = reasons

-- headers the server writes itself
local managed = { ["content-length"] = true, ["connection"] = true, ["transfer-encoding"] = true,
                  ["date"] = true }

-- The Date header (RFC 9110 IMF-fixdate), without the C locale's names.
local days = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" }
local months = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" }
local function http_date()
  local t = os_date("!*t", os_time())
  return string_format("%s, %02d %s %04d %02d:%02d:%02d GMT", days[t.wday], t.day,
                       months[t.month], t.year, t.hour, t.min, t.sec)
end
response.http_date = http_date

local methods = {}
local mt = { __name = "loom.Response", __index = methods }
response.methods, response.mt = methods, mt

local function check_header(name, value)
  if type(name) ~= "string" or not string_find(name, "^[!#$%%&'*+%-.^_`|~%w]+$") then
    error("bad header name " .. tostring(name), 3)
  end
  if type(value) ~= "string" or string_find(value, "[%z\r\n]") then
    error("bad value for header " .. name, 3)
  end
  if managed[string_lower(name)] then
    error("header " .. name .. " is written by the server", 3)
  end
end

--- r:set_header(name, value): sets a header, replacing one of the same name
-- (any case). Raises on a malformed name or a value with CR, LF or NUL, and
-- for Content-Length, Connection, Transfer-Encoding and Date (the server
-- writes those).
function methods.set_header(r, name, value)
  check_header(name, value)
  local lname = string_lower(name)
  for _, h in ipairs(r.headers) do
    if string_lower(h[1]) == lname then
      h[2] = value
      return r
    end
  end
  r.headers[#r.headers + 1] = { name, value }
  return r
end

--- r:header(name) -> value | nil (any case)
function methods.header(r, name)
  local lname = string_lower(name)
  for _, h in ipairs(r.headers) do
    if string_lower(h[1]) == lname then return h[2] end
  end
  return nil
end

--- response.new(status, [body], [headers]) -> Response
-- body is the raw bytes (default ""); headers maps names to values;
-- Content-Type defaults to application/json.
function response.new(status, body, headers)
  if type(status) ~= "number" or status % 1 ~= 0 or status < 100 or status > 599 then
    error("bad HTTP status " .. tostring(status), 2)
  end
  if body ~= nil and type(body) ~= "string" then
    error("response body must be a string", 2)
  end
  local r = setmetatable({ status = status, body = body or "", headers = {} }, mt)
  if headers then
    for name, value in pairs(headers) do methods.set_header(r, name, value) end
  end
  if not r:header("Content-Type") then r:set_header("Content-Type", "application/json") end
  return r
end

--- response.file(status, path, size, [headers]) -> Response whose body is
-- the file at path, size bytes long (Content-Length), sent in chunks by the
-- server (loom.http.server) without reading it into memory.
function response.file(status, path, size, headers)
  if type(path) ~= "string" or math_type(size) ~= "integer" or size < 0 then
    error("response.file: a path and a size (integer) are required", 2)
  end
  local r = response.new(status, "", headers)
  r.file, r.file_size = path, size
  return r
end

--- response.json(status, value, [headers]) -> Response | nil, message, code
-- Encodes value with json.encode(value, { floats = true }).
function response.json(status, value, headers)
  local body, msg, code = json.encode(value, { floats = true })
  if not body then return nil, msg, code end
  return response.new(status, body, headers)
end

--- response.error(err) -> Response for an error value (loom.http.errors).
function response.error(err)
  local r = response.json(err.status, err:body(), err.headers)
  if not r then
    -- extra fields that do not encode: send the error without them
    r = response.json(err.status, { errcode = err.errcode, error = err.message })
  end
  return r
end

--- response.is(v) -> true for a Response
function response.is(v)
  return getmetatable(v) == mt
end

--- response.serialize(r, [opts]) -> the bytes of the response.
-- opts.close: send "Connection: close" (else keep-alive); opts.head: leave
-- the body out (HEAD), keeping its Content-Length.
function response.serialize(r, opts)
  local close = opts and opts.close
  local out = {
    "HTTP/1.1 ", tostring(r.status), " ", reasons[r.status] or "Unknown", "\r\n",
    "Date: ", http_date(), "\r\n",
    "Content-Length: ", tostring(r.file and r.file_size or #r.body), "\r\n",
    "Connection: ", close and "close" or "keep-alive", "\r\n",
  }
  local n = #out
  for _, h in ipairs(response.cors) do
    if not r:header(h[1]) then
      out[n + 1], out[n + 2], out[n + 3], out[n + 4] = h[1], ": ", h[2], "\r\n"
      n = n + 4
    end
  end
  for _, h in ipairs(r.headers) do
    out[n + 1], out[n + 2], out[n + 3], out[n + 4] = h[1], ": ", h[2], "\r\n"
    n = n + 4
  end
  out[n + 1] = "\r\n"
  if not (opts and opts.head) then out[n + 2] = r.body end
  return table_concat(out)
end

--- response.for_error(name, [message]) -> Response (shorthand)
function response.for_error(name, message)
  return response.error(errors.new(name, message))
end

return response
