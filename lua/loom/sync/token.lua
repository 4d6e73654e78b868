-- loom.sync.token: the composite /sync token (opaque to clients).
--
--   "s<stream>_<typing>_<receipts>_<to_device>_<account_data>_<presence>_<device_lists>"
--
-- The first part is the store's stream position (the timeline, membership
-- and state); typing is the typing position (loom.sync.typing); receipts
-- the receipts position (loom.store.receipts); to_device is reserved (0
-- until it exists); account_data is the account-data stream position;
-- presence the presence position (loom.store.presence); device_lists the
-- device-list position (loom.store.devices). The older six-, five-
-- and four-part forms and a bare store token ("s<n>") are accepted too
-- (the parts they lack are 0: everything is new). token.check refuses a
-- parsed token with a negative part or a part beyond the server's current
-- position of that stream (token.current): it was never handed out.
local core = require "loom.core"

local tonumber, math_type, tostring, ipairs = tonumber, math.type, tostring, ipairs
local store_token = core.token
local type = type

local _ENV = nil -- luacheck: ignore 211

local token = {}

local INT = "(%-?%d+)"
local FOUR = "^s" .. INT .. "_" .. INT .. "_" .. INT .. "_" .. INT .. "$"
local FIVE = "^s" .. INT .. "_" .. INT .. "_" .. INT .. "_" .. INT .. "_" .. INT .. "$"
local SIX = "^s" .. INT .. "_" .. INT .. "_" .. INT .. "_" .. INT .. "_" .. INT .. "_" .. INT .. "$"
local SEVEN = "^s" .. INT .. "_" .. INT .. "_" .. INT .. "_" .. INT .. "_" .. INT .. "_" .. INT .. "_" .. INT .. "$"

local function int(s)
  if not s or #s > 19 then return nil end
  if s:find("^%-?0%d") or s == "-0" then return nil end
  local n = tonumber(s)
  if math_type(n) ~= "integer" then return nil end
  return n
end

--- Parse a sync token: { stream, typing, receipts, to_device, account_data,
-- presence, device_lists } or nil, message.
function token.parse(text)
  if type(text) ~= "string" or #text > 160 then return nil, "invalid sync token" end
  local a, b, c, d, e, f, g = text:match(SEVEN)
  if not a then
    a, b, c, d, e, f = text:match(SIX)
    g = a and "0"
  end
  if not a then
    a, b, c, d, e = text:match(FIVE)
    f = a and "0"
    g = f
  end
  if not a then
    a, b, c, d = text:match(FOUR)
    e = a and "0"
    f, g = e, e
  end
  if a then
    local t = { stream = int(a), typing = int(b), receipts = int(c), to_device = int(d), account_data = int(e),
      presence = int(f), device_lists = int(g) }
    if t.stream and t.typing and t.receipts and t.to_device and t.account_data and t.account_data >= 0
        and t.presence and t.presence >= 0 and t.device_lists and t.device_lists >= 0 then
      return t
    end
    return nil, "invalid sync token"
  end
  local tok = store_token.parse(text)
  if tok and not tok.topological then
    return { stream = tok.stream, typing = 0, receipts = 0, to_device = 0, account_data = 0, presence = 0,
      device_lists = 0 }
  end
  return nil, "invalid sync token"
end

local MAX_DEPTH = 9007199254740991
local PARTS = { "stream", "typing", "receipts", "to_device", "account_data", "presence", "device_lists" }

--- The server's current position of every stream in the token:
-- { stream, typing, receipts, to_device, account_data, presence, device_lists }.
function token.current(hs)
  local store = hs.store
  return { stream = store:current_position(), typing = hs.typing and hs.typing.position or 0,
    receipts = store:receipts_position(), to_device = store:to_device_position(),
    account_data = store:account_data_position(), presence = store:presence_position(),
    device_lists = store:device_list_position() }
end

--- t (parsed), or nil, message when a part is negative or beyond the
-- current position `now` (token.current) of its stream.
function token.check(t, now)
  for _, k in ipairs(PARTS) do
    local v = t[k]
    if v and v < 0 then return nil, "invalid sync token: negative position" end
    if v and now[k] and v > now[k] then return nil, "invalid sync token: position not reached yet" end
  end
  return t
end

--- Format a sync token from its parts (a table with stream, typing, …).
function token.format(t)
  return ("s%d_%d_%d_%d_%d_%d_%d"):format(t.stream, t.typing or 0, t.receipts or 0, t.to_device or 0,
    t.account_data or 0, t.presence or 0, t.device_lists or 0)
end

--- A store token for /messages from a client token: a sync token becomes
-- "s<stream>"; a store token (s<n>, t<d>-<n>) is returned as is. nil,
-- message when neither parses or, given the current positions `now`
-- (token.current), when a position was not reached yet (a store token's
-- stream part may be negative: backfilled history).
function token.to_store(text, now)
  if type(text) ~= "string" then return nil, "invalid token" end
  local tok = store_token.parse(text)
  if tok then
    if now and tok.stream > now.stream then return nil, "invalid token: position not reached yet" end
    -- an event's depth is a canonical JSON integer: never above 2^53 - 1
    if tok.depth and tok.depth > MAX_DEPTH then return nil, "invalid token: depth out of range" end
    return tostring(tok)
  end
  local t, err = token.parse(text)
  if t and now then t, err = token.check(t, now) end
  if t then return "s" .. tostring(t.stream) end
  return nil, err
end

return token
