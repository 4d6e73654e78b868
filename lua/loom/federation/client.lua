-- loom.federation.client: requests to other servers, signed with X-Matrix.
--
--   local fc = fedclient.new(hs, { transport = ... })     -- hs.federation
--   local status, body = fc:request("other.example", "GET",
--     "/_matrix/federation/v1/query/profile", { query = { user_id = "@a:other.example" } })
--   -- status: the HTTP status, body: the decoded JSON (or the error text);
--   -- nil, message when no answer came (unreachable, timeout, bad TLS …)
--
-- A transport carries one request: transport(destination, method, target,
-- headers, body_text) -> status, headers, body_text | nil, message (inside a
-- task). The network transport (the default) finds the destination with
-- loom.federation.discovery and sends over loom.http.client (TLS, the
-- address guard, keep-alive pools); the lab's in-memory transport speaks to
-- servers in the same process. Answers are decoded with loom's JSON decoder
-- (bounded); a body that is not JSON comes back as text with its status.
local type, tostring, pairs, ipairs, setmetatable, next = type, tostring, pairs, ipairs, setmetatable, next
local table_concat, table_sort = table.concat, table.sort
local string_format, string_gsub, string_byte = string.format, string.gsub, string.byte
local core = require "loom.core"
local xmatrix = require "loom.federation.xmatrix"
local discovery = require "loom.federation.discovery"

local json = core.json

local _ENV = nil -- luacheck: ignore 211

local fedclient = {}

local MAX_RESPONSE_JSON = 64 * 1024 * 1024

local function pct(c) return string_format("%%%02X", string_byte(c)) end

--- fedclient.encode(s) -> s percent-encoded for a path segment or a query
-- value (everything but unreserved characters).
function fedclient.encode(s)
  return (string_gsub(tostring(s), "[^%w%-%._~]", pct))
end
local encode = fedclient.encode

-- The query string of { name = value | { values } } (sorted by name).
local function query_string(q)
  local names = {}
  for k in pairs(q) do names[#names + 1] = k end
  table_sort(names)
  local parts = {}
  for _, k in ipairs(names) do
    local v = q[k]
    if type(v) == "table" then
      for _, x in ipairs(v) do parts[#parts + 1] = encode(k) .. "=" .. encode(x) end
    else
      parts[#parts + 1] = encode(k) .. "=" .. encode(v)
    end
  end
  return table_concat(parts, "&")
end

local FedClient = {}
FedClient.__index = FedClient
FedClient.__name = "loom.federation.Client"

--- fedclient.network_transport(http_client, discovery) -> transport
function fedclient.network_transport(http, disc)
  return function(destination, method, target, headers, body, timeout)
    local where, err = disc:resolve(destination)
    if not where then return nil, err end
    local hdrs = {}
    for k, v in pairs(headers) do hdrs[k] = v end
    local res, ferr = http:fetch { method = method, host = where.host, port = where.port, tls = true,
      servername = where.servername, host_header = where.host_header, path = target, headers = hdrs,
      body = body, timeout = timeout }
    if not res then return nil, ferr end
    return res.status, res.headers, res.body
  end
end

--- fedclient.new(hs, { transport, http, srv }) -> FedClient. Without a
-- transport, the network one over opts.http (a loom.http.client) and
-- discovery (opts.srv: the SRV resolver).
function fedclient.new(hs, opts)
  opts = opts or {}
  local transport = opts.transport
  if not transport then
    transport = fedclient.network_transport(opts.http, discovery.new { http = opts.http, srv = opts.srv })
  end
  return setmetatable({ hs = hs, transport = transport }, FedClient)
end

--- fc:request(destination, method, path, opts) -> status, body | nil, message
-- opts: query (table), body (a JSON value, sent as the content), unsigned
-- (no Authorization: key fetches), timeout, raw (answer status, body text,
-- headers: for bodies that are not JSON, such as media). path is sent as given (encode
-- its parameters with fedclient.encode).
function FedClient.request(self, destination, method, path, opts)
  opts = opts or {}
  local ok, err = discovery.split(destination)
  if not ok then return nil, err end
  local target = path
  if opts.query and next(opts.query) then target = target .. "?" .. query_string(opts.query) end
  local headers = {}
  local body_text
  if opts.body ~= nil then
    local text, msg = json.encode(opts.body)
    if not text then return nil, "request body: " .. tostring(msg) end
    body_text = text
    headers["Content-Type"] = "application/json"
  end
  if not opts.unsigned then
    local h, msg = xmatrix.header(self.hs.key, destination, method, target, opts.body)
    if not h then return nil, "signing: " .. tostring(msg) end
    headers.Authorization = h
  end
  local status, rheaders, body = self.transport(destination, method, target, headers, body_text, opts.timeout)
  if not status then return nil, tostring(rheaders) end
  if opts.raw then return status, body, rheaders end   -- not JSON (media): the bytes and the headers
  if type(body) == "string" and #body <= MAX_RESPONSE_JSON then
    local v = json.decode(body, { max_bytes = #body })
    if v ~= nil then return status, v end
  end
  return status, body
end

return fedclient
