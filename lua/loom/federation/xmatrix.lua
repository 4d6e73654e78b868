-- loom.federation.xmatrix: the X-Matrix request authentication of the
-- Server-Server API, both ways.
--
--   local xmatrix = require "loom.federation.xmatrix"
--   local h = xmatrix.header(key, "remote.example", "PUT", "/_matrix/federation/v1/send/1", body)
--   --> 'X-Matrix origin="a.example",destination="remote.example",key="ed25519:x",sig="..."'
--   local auth = xmatrix.parse(req_header)   -- { origin, destination, key, sig } | nil, message
--   xmatrix.verify(auth, "GET", "/_matrix/...", nil, public_key)   -- true | nil, message
--
-- What is signed is the JSON object { method, uri, origin, destination,
-- content } (content only when the request has a JSON body), with the
-- origin's key, as any signed JSON: the signature of the canonical form.
-- uri is the request target as sent: the path and query, percent-encoded.
local type, tostring, ipairs = type, tostring, ipairs
local string_format = string.format
local table_concat = table.concat
local crypto = require "loom.room.crypto"

local _ENV = nil -- luacheck: ignore 211

local xmatrix = {}

local MAX_HEADER = 4096

-- The object both sides sign and check.
local function request_object(method, uri, origin, destination, content)
  local obj = { method = method, uri = uri, origin = origin }
  if destination ~= nil then obj.destination = destination end
  if content ~= nil then obj.content = content end
  return obj
end
xmatrix.request_object = request_object

--- xmatrix.header(key, destination, method, uri, content) -> the
-- Authorization header's value, or nil, message, code when content does not
-- encode as canonical JSON. key: the origin's signing key (loom.room.crypto).
function xmatrix.header(key, destination, method, uri, content)
  local obj = request_object(method, uri, key.server_name, destination, content)
  local signed, msg, code = crypto.sign_json(obj, key)
  if not signed then return nil, msg, code end
  local sig = signed.signatures[key.server_name][key.key_id]
  -- origin, destination and key are quoted, as the spec's examples and
  -- other servers write them
  return string_format('X-Matrix origin="%s",destination="%s",key="%s",sig="%s"',
    key.server_name, destination, key.key_id, sig)
end

--- xmatrix.parse(value) -> { origin, destination, key, sig } | nil, message
-- The Authorization header's value: the X-Matrix scheme (any case), then
-- comma-separated name=value parameters, each value a token or a quoted
-- string. origin, key and sig are required; destination may be absent
-- (requests from servers older than its introduction).
function xmatrix.parse(value)
  if type(value) ~= "string" then return nil, "missing Authorization header" end
  if #value > MAX_HEADER then return nil, "Authorization header too long" end
  local rest = value:match("^[Xx]%-[Mm][Aa][Tt][Rr][Ii][Xx]%s+(.*)$")
  if not rest then return nil, "not an X-Matrix Authorization header" end
  local out, pos, n = {}, 1, #rest
  while pos <= n do
    local s, e, name = rest:find("^[%s,]*([%w_%-]+)%s*=%s*", pos)
    if not s then
      if rest:find("^[%s,]*$", pos) then break end
      return nil, "malformed X-Matrix parameters"
    end
    pos = e + 1
    local v
    if rest:sub(pos, pos) == '"' then
      local parts, i = {}, pos + 1
      while true do
        local c = rest:sub(i, i)
        if c == "" then return nil, "unterminated quoted value" end
        if c == '"' then break end
        if c == "\\" then
          i = i + 1
          c = rest:sub(i, i)
          if c == "" then return nil, "unterminated quoted value" end
        end
        parts[#parts + 1] = c
        i = i + 1
      end
      v, pos = table_concat(parts), i + 1
    else
      local ts, te = rest:find("^[^,%s]*", pos)
      v, pos = rest:sub(ts, te), te + 1
    end
    name = name:lower()
    if out[name] ~= nil then return nil, "repeated X-Matrix parameter " .. name end
    out[name] = v
  end
  for _, k in ipairs { "origin", "key", "sig" } do
    if type(out[k]) ~= "string" or out[k] == "" then return nil, "X-Matrix parameter " .. k .. " missing" end
  end
  if not out.key:match("^ed25519:[%w_%-%.]+$") then return nil, "unsupported key " .. out.key end
  return { origin = out.origin, destination = out.destination, key = out.key, sig = out.sig }
end

--- xmatrix.verify(auth, method, uri, content, public_key) -> true | nil, message
-- auth: xmatrix.parse's table; public_key: the origin's key auth.key, 32
-- raw bytes.
function xmatrix.verify(auth, method, uri, content, public_key)
  local obj = request_object(method, uri, auth.origin, auth.destination, content)
  obj.signatures = { [auth.origin] = { [auth.key] = auth.sig } }
  local ok, msg = crypto.verify_json(obj, auth.origin, auth.key, public_key)
  if not ok then return nil, tostring(msg) end
  return true
end

return xmatrix
