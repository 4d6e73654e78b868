-- loom.api.client.third_party_invite: inviting by third-party identifier
-- (Client-Server API "Third-party invites"): POST /rooms/{roomId}/invite
-- with id_server, id_access_token, medium and address. See
-- docs/third-party-invites.md.
--
--   local tpi = require "loom.api.client.third_party_invite"
--   if tpi.requested(body) then
--     local mxid, err = tpi.invite(hs, req, room_id, body)
--     -- a user ID: the address is bound, invite that user as usual;
--     -- false: an m.room.third_party_invite was sent (answer {}); nil: err
--   end
--
-- The identity server is asked with its v2 API (Authorization: Bearer
-- id_access_token): GET /hash_details, then POST /lookup with the sha256
-- hash of "address medium pepper" (or "none" when that is all it offers).
-- An unbound address gets POST /store-invite, and the room gets an
-- m.room.third_party_invite state event whose state key is the token.
-- Requests go through loom.http.client and its address guard; loopback is
-- allowed only with config.identity_server_allow_loopback, plain HTTP only
-- with config.identity_server_http (both for tests).
local core = require "loom.core"
local errors = require "loom.http.errors"
local http_client = require "loom.http.client"
local ljson = require "loom.json"
local auth = require "loom.room.auth"
local version_mod = require "loom.room.version"

local json = core.json
local crypto = core.crypto
local type, tostring, ipairs, tonumber, pcall = type, tostring, ipairs, tonumber, pcall

local _ENV = nil -- luacheck: ignore 211

local tpi = {}

local MAX_ADDRESS = 512
local MAX_TOKEN = 1024
local LOOPBACK = { "127.0.0.0/8", "::1/128" }
local TIMEOUT_MS = 15000

local is_object, is_array = ljson.is_object, ljson.is_array

--- Does an /invite body ask for a third-party invite (no user_id; any of
-- id_server, medium, address)?
function tpi.requested(body)
  return body.user_id == nil and (body.id_server ~= nil or body.medium ~= nil or body.address ~= nil)
end

--- Split an identity server name (host[:port], an IPv6 literal in brackets)
-- into host, port; nil when it is not one.
function tpi.parse_server(name)
  if type(name) ~= "string" or #name == 0 or #name > 255 then return nil end
  local host, port = name:match("^(%[[%x:%.]+%])(.*)$")
  if not host then host, port = name:match("^([%w%.%-]+)(.*)$") end
  if not host or host:sub(1, 1) == "." or host:sub(1, 1) == "-" then return nil end
  if port == "" then return host, nil end
  local p = port:match("^:(%d+)$")
  p = p and #p <= 5 and tonumber(p)
  if not p or p < 1 or p > 65535 then return nil end
  return host, p
end

-- The identity servers' HTTP client (made on first use; closed with the server).
local function client_of(hs)
  if hs.identity_client then return hs.identity_client end
  local c = hs.config
  local cl = http_client.new { allow_ips = c.identity_server_allow_loopback and LOOPBACK or nil,
    verify = true, user_agent = "loom", request_timeout = TIMEOUT_MS, connect_timeout = TIMEOUT_MS,
    max_response = 1024 * 1024,
    log = function(level, message) hs.server:log(level, "%s", message) end }
  hs.identity_client = cl
  hs.server:hook("server/stopping", function()
    if hs.identity_client then hs.identity_client:close(); hs.identity_client = nil end
  end)
  return cl
end

-- One request to the identity server: the decoded JSON object of a 2xx
-- answer, or nil and the Matrix error to answer the client.
local function call(hs, server, method, path, token, body)
  local host, port = tpi.parse_server(server)
  local plain = hs.config.identity_server_http == true
  local bare = host:match("^%[(.*)%]$") or host
  local res, err = client_of(hs):fetch { method = method, host = bare, port = port or (plain and 80 or 443),
    tls = not plain, host_header = server, path = path, body = body and json.encode(body) or nil,
    headers = { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = body and "application/json" or nil } }
  if not res then
    hs.server:log("warn", "identity server %s: %s %s: %s", server, method, path, tostring(err))
    return nil, errors.new("IDENTITY_SERVER_FAILED", "The identity server could not be reached")
  end
  local ok, decoded = pcall(json.decode, res.body or "")
  if res.status == 401 or res.status == 403 then
    return nil, errors.new("M_FORBIDDEN", "The identity server refused the id_access_token")
  end
  if res.status < 200 or res.status > 299 or not ok or not is_object(decoded) then
    hs.server:log("warn", "identity server %s: %s %s answered %s %s", server, method, path, tostring(res.status),
      (res.body or ""):sub(1, 200))
    return nil, errors.new("IDENTITY_SERVER_FAILED", "The identity server gave no usable answer")
  end
  return decoded
end

-- The user ID an address is bound to (v2 lookup), false when none, or nil
-- and a Matrix error.
local function lookup(hs, server, token, medium, address)
  local d, err = call(hs, server, "GET", "/_matrix/identity/v2/hash_details", token)
  if not d then return nil, err end
  local algos, pepper = d.algorithms, d.lookup_pepper
  if not is_array(algos) or type(pepper) ~= "string" then
    return nil, errors.new("IDENTITY_SERVER_FAILED", "The identity server sent bad hash details")
  end
  local has = {}
  for _, a in ipairs(algos) do if type(a) == "string" then has[a] = true end end
  local key, body
  if has.sha256 then
    key = crypto.base64_encode(crypto.sha256(address .. " " .. medium .. " " .. pepper), true)
    body = { addresses = json.array { key }, algorithm = "sha256", pepper = pepper }
  elseif has.none then
    key = address .. " " .. medium
    body = { addresses = json.array { key }, algorithm = "none", pepper = pepper }
  else
    return nil, errors.new("IDENTITY_SERVER_FAILED", "The identity server offers no known lookup algorithm")
  end
  local r, lerr = call(hs, server, "POST", "/_matrix/identity/v2/lookup", token, body)
  if not r then return nil, lerr end
  local mxid = is_object(r.mappings) and r.mappings[key]
  if mxid == nil then return false end
  if not auth.valid_user_id(mxid) then
    return nil, errors.new("IDENTITY_SERVER_FAILED", "The identity server mapped the address to a bad user ID")
  end
  return mxid
end

local function state_content(hs, room_id, etype, field)
  local ev = hs.rooms:state_event(room_id, etype, "")
  local v = ev and is_object(ev.content) and ev.content[field]
  if type(v) == "string" then return v end
  return nil
end

-- Store the invite on the identity server, then send the room's
-- m.room.third_party_invite. nil and a Matrix error, or true.
local function store_invite(hs, req, room_id, server, token, medium, address)
  local inviter = hs.accounts:user(req.user_id) or {}
  local create = hs.rooms:state_event(room_id, "m.room.create", "")
  local room_type = create and is_object(create.content) and create.content.type
  local r, err = call(hs, server, "POST", "/_matrix/identity/v2/store-invite", token, {
    medium = medium, address = address, room_id = room_id, sender = req.user_id,
    room_alias = state_content(hs, room_id, "m.room.canonical_alias", "alias"),
    room_avatar_url = state_content(hs, room_id, "m.room.avatar", "url"),
    room_join_rules = state_content(hs, room_id, "m.room.join_rules", "join_rule"),
    room_name = state_content(hs, room_id, "m.room.name", "name"),
    room_type = type(room_type) == "string" and room_type or nil,
    sender_display_name = inviter.displayname, sender_avatar_url = inviter.avatar_url })
  if not r then return nil, err end
  local itoken, keys, display = r.token, r.public_keys, r.display_name
  if type(itoken) ~= "string" or #itoken == 0 or #itoken > MAX_TOKEN or not is_array(keys) or #keys == 0 then
    return nil, errors.new("IDENTITY_SERVER_FAILED", "The identity server's store-invite answer is incomplete")
  end
  local public_keys = json.array()
  for _, k in ipairs(keys) do
    if not is_object(k) or type(k.public_key) ~= "string" then
      return nil, errors.new("IDENTITY_SERVER_FAILED", "The identity server sent a bad public key")
    end
    public_keys[#public_keys + 1] = { public_key = k.public_key,
      key_validity_url = type(k.key_validity_url) == "string" and k.key_validity_url or nil }
  end
  local first = public_keys[1]
  local ev, serr, code, rule = hs.rooms:send(room_id, { type = "m.room.third_party_invite", state_key = itoken,
    sender = req.user_id, content = {
      display_name = type(display) == "string" and display or "",
      key_validity_url = first.key_validity_url or ("https://" .. server .. "/_matrix/identity/v2/pubkey/isvalid"),
      public_key = first.public_key, public_keys = public_keys } },
    { user_id = req.user_id, device_id = req.device_id })
  if not ev then return nil, hs:error(serr, code, rule) end
  return true
end

local function string_field(body, key, max)
  local v = body[key]
  if v == nil or v == json.null then return nil, errors.new("M_MISSING_PARAM", key .. " is required") end
  if type(v) ~= "string" or v == "" then return nil, errors.new("M_INVALID_PARAM", key .. " must be a string") end
  if #v > max then return nil, errors.new("M_INVALID_PARAM", key .. " is longer than " .. max .. " bytes") end
  return v
end

--- A third-party invite into a local room (the caller checked the room
-- exists): the user ID to invite when the identity server knows the
-- address; false when the invite was stored with the identity server and
-- the m.room.third_party_invite sent; nil and a Matrix error otherwise.
-- Nothing is asked of the identity server before the body is checked and
-- the inviter is seen to be a joined member.
function tpi.invite(hs, req, room_id, body)
  local server, e1 = string_field(body, "id_server", 255)
  if not server then return nil, e1 end
  if not tpi.parse_server(server) then return nil, errors.new("M_INVALID_PARAM", "id_server is not a server name") end
  local token, e2 = string_field(body, "id_access_token", MAX_TOKEN)
  if not token then return nil, e2 end
  if token:find("[%c%s]") then return nil, errors.new("M_INVALID_PARAM", "id_access_token is not a token") end
  local medium, e3 = string_field(body, "medium", 64)
  if not medium then return nil, e3 end
  local address, e4 = string_field(body, "address", MAX_ADDRESS)
  if not address then return nil, e4 end
  if medium == "email" then address = address:lower() end
  local m = hs.rooms:state_event(room_id, "m.room.member", req.user_id)
  if not (m and is_object(m.content) and m.content.membership == "join") then
    return nil, errors.new("M_FORBIDDEN", "You are not joined to this room")
  end
  local version = version_mod.get(hs.store:room_version(room_id))
  local state = function(t, sk) return hs.rooms:state_event(room_id, t, sk) end
  if version and auth.power_level(version, state, req.user_id) < auth.levels(version, state).invite then
    return nil, errors.new("M_FORBIDDEN", "You do not have the power to invite")
  end
  local denied = hs:check("room/invite/check", { user_id = req.user_id, room_id = room_id, medium = medium,
    address = address })
  if denied then return nil, denied end
  local mxid, lerr = lookup(hs, server, token, medium, address)
  if mxid == nil then return nil, lerr end
  if mxid then return mxid end
  local ok, serr = store_invite(hs, req, room_id, server, token, medium, address)
  if not ok then return nil, serr end
  return false
end

return tpi
