-- loom.api.federation.third_party_invite: the Server-Server API's side of
-- third-party invites.
--
--   PUT /_matrix/federation/v1/3pid/onbind                     (an identity server; unsigned)
--       { medium, address, mxid, invites = [ { medium, address, mxid, room_id, sender, signed } ] } -> {}
--   PUT /_matrix/federation/v1/exchange_third_party_invite/{roomId}   (a server, X-Matrix)
--       { type = "m.room.member", room_id, sender, state_key, content } -> {}
--
-- onbind: a user of this server bound an address that had pending invites;
-- each invite becomes an m.room.member invite carrying the identity
-- server's signed block — sent here when the room's inviter is a user of
-- this server, else asked of the inviter's server (exchange_third_party_invite).
-- exchange: the inviter is a user of this server; the invite is built with
-- the display name of the room's m.room.third_party_invite and sent as the
-- inviter (the auth rules check the signature against the identity server's
-- public keys: 403 when none matches), through the invitee's server when
-- the invitee is another server's user.
local ljson = require "loom.json"
local errors = require "loom.http.errors"
local auth = require "loom.room.auth"
local fed_membership = require "loom.federation.membership"
local fedclient = require "loom.federation.client"

local type, ipairs, tostring, pairs = type, ipairs, tostring, pairs

local _ENV = nil -- luacheck: ignore 211

local tp = {}

local MAX_INVITES = 100
local is_object, is_array = ljson.is_object, ljson.is_array

local function domain(user_id)
  return type(user_id) == "string" and user_id:match("^@[^:]*:(.+)$") or nil
end

local function bad(msg) return errors.new("M_BAD_JSON", msg) end

-- The signed block: { mxid, token, signatures } (copied), or nil and a reason.
local function check_signed(signed, mxid)
  if not is_object(signed) then return nil, "signed must be an object" end
  if type(signed.mxid) ~= "string" or type(signed.token) ~= "string" or #signed.token == 0
      or #signed.token > 1024 or not is_object(signed.signatures) then
    return nil, "signed needs mxid, token and signatures"
  end
  if mxid and signed.mxid ~= mxid then return nil, "signed.mxid is not the invited user" end
  local copy = {}
  for k, v in pairs(signed) do copy[k] = v end
  return copy
end

-- Send the invite of target into a local room as sender (a user of this
-- server), with the room's m.room.third_party_invite display name. true,
-- or nil and a Matrix error.
local function issue(hs, room_id, sender, target, signed)
  if not hs.store:room_version(room_id) then return nil, errors.new("M_NOT_FOUND", "Unknown room " .. room_id) end
  local tpi = hs.rooms:state_event(room_id, "m.room.third_party_invite", signed.token)
  if not tpi or tpi.sender ~= sender then
    return nil, errors.new("M_FORBIDDEN", "No third-party invite of " .. sender .. " with that token")
  end
  local display = is_object(tpi.content) and tpi.content.display_name
  local content = { membership = "invite",
    third_party_invite = { display_name = type(display) == "string" and display or "", signed = signed } }
  local u = hs.accounts:user(target)
  if u then content.displayname = u.displayname; content.avatar_url = u.avatar_url end
  if domain(target) ~= hs.server_name and hs.federation_on then
    local ev, err = fed_membership.invite(hs, room_id, sender, target, content)
    if not ev then return nil, err end
    return true
  end
  local ev, err, code, rule = hs.rooms:send(room_id, { type = "m.room.member", state_key = target, sender = sender,
    content = content })
  if not ev then return nil, hs:error(err, code, rule) end
  return true
end

local function onbind(hs, req)
  local body = req:json()
  local mxid = body.mxid
  if type(body.medium) ~= "string" or type(body.address) ~= "string" or not auth.valid_user_id(mxid)
      or not is_array(body.invites) then
    return bad("medium, address, mxid and invites are required")
  end
  if domain(mxid) ~= hs.server_name or not hs.accounts:user(mxid) then
    return errors.new("M_NOT_FOUND", "Unknown user " .. mxid)
  end
  if #body.invites > MAX_INVITES then return bad("too many invites") end
  for _, inv in ipairs(body.invites) do
    local signed, why
    if is_object(inv) then signed, why = check_signed(inv.signed, mxid) end
    if not signed or type(inv.room_id) ~= "string" or not auth.valid_user_id(inv.sender)
        or (inv.mxid ~= nil and inv.mxid ~= mxid) then
      return bad("bad invite: " .. tostring(why or "room_id, sender and signed are required"))
    end
  end
  -- every invite is tried; a failing one is logged (the identity server
  -- cannot act on our answer)
  for _, inv in ipairs(body.invites) do
    local signed = check_signed(inv.signed, mxid)
    local ok, err
    if domain(inv.sender) == hs.server_name then
      ok, err = issue(hs, inv.room_id, inv.sender, mxid, signed)
    elseif hs.federation_on then
      local status, answer = hs.federation:request(domain(inv.sender), "PUT",
        "/_matrix/federation/v1/exchange_third_party_invite/" .. fedclient.encode(inv.room_id),
        { body = { type = "m.room.member", room_id = inv.room_id, sender = inv.sender, state_key = mxid,
          content = { membership = "invite", third_party_invite = { display_name = "", signed = signed } } } })
      ok = status == 200
      err = not ok and ("exchange_third_party_invite: " .. tostring(status) .. " "
        .. tostring(is_object(answer) and answer.error or answer)) or nil
    else
      err = "federation is off"
    end
    if not ok then
      hs.server:log("warn", "3pid onbind for %s: invite into %s failed: %s", mxid, tostring(inv.room_id),
        tostring(type(err) == "table" and err.message or err))
    end
  end
  return {}
end

local function exchange(hs, req)
  local room_id = req.params.roomId
  local body = req:json()
  local content = body.content
  if body.type ~= "m.room.member" or body.room_id ~= room_id or not auth.valid_user_id(body.sender)
      or not auth.valid_user_id(body.state_key) or not is_object(content) or content.membership ~= "invite"
      or not is_object(content.third_party_invite) then
    return bad("a partial m.room.member invite with third_party_invite is required")
  end
  if domain(body.sender) ~= hs.server_name then
    return errors.new("M_FORBIDDEN", "The inviter is not a user of this server")
  end
  if domain(body.state_key) ~= req.origin then
    return errors.new("M_FORBIDDEN", "The invited user is not a user of the requesting server")
  end
  local signed, why = check_signed(content.third_party_invite.signed, body.state_key)
  if not signed then return bad(why) end
  local ok, err = issue(hs, room_id, body.sender, body.state_key, signed)
  if not ok then return err end
  return {}
end

tp.routes = {
  { "PUT", "/_matrix/federation/v1/3pid/onbind", onbind, auth = false },
  { "PUT", "/_matrix/federation/v1/exchange_third_party_invite/{roomId}", exchange, auth = "server" },
}

return tp
