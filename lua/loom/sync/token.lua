-- loom.sync.token: the composite /sync token (opaque to clients).
--
--   "s<stream>_<typing>_<receipts>_<to_device>_<account_data>_<presence>"
--
-- The first part is the store's stream position (the timeline, membership
-- and state); typing is the typing position (loom.sync.typing); receipts
-- the receipts position (loom.store.receipts); to_device is reserved (0
-- until it exists); account_data is the account-data stream position;
-- presence the presence position (loom.store.presence). The older five-
-- and four-part forms and a bare store token ("s<n>") are accepted too
-- (the parts they lack are 0: everything is new).
local core = require "loom.core"

local tonumber, math_type, tostring = tonumber, math.type, tostring
local store_token = core.token
local type = type

local _ENV = nil -- luacheck: ignore 211

local token = {}

local INT = "(%-?%d+)"
local FOUR = "^s" .. INT .. "_" .. INT .. "_" .. INT .. "_" .. INT .. "$"
local FIVE = "^s" .. INT .. "_" .. INT .. "_" .. INT .. "_" .. INT .. "_" .. INT .. "$"
local SIX = "^s" .. INT .. "_" .. INT .. "_" .. INT .. "_" .. INT .. "_" .. INT .. "_" .. INT .. "$"

local function int(s)
  if not s or #s > 19 then return nil end
  if s:find("^%-?0%d") or s == "-0" then return nil end
  local n = tonumber(s)
  if math_type(n) ~= "integer" then return nil end
  return n
end

--- Parse a sync token: { stream, typing, receipts, to_device, account_data,
-- presence } or nil, message.
function token.parse(text)
  if type(text) ~= "string" or #text > 128 then return nil, "invalid sync token" end
  local a, b, c, d, e, f = text:match(SIX)
  if not a then
    a, b, c, d, e = text:match(FIVE)
    f = a and "0"
  end
  if not a then
    a, b, c, d = text:match(FOUR)
    e = a and "0"
    f = e
  end
  if a then
    local t = { stream = int(a), typing = int(b), receipts = int(c), to_device = int(d), account_data = int(e),
      presence = int(f) }
    if t.stream and t.typing and t.receipts and t.to_device and t.account_data and t.account_data >= 0
        and t.presence and t.presence >= 0 then
      return t
    end
    return nil, "invalid sync token"
  end
  local tok = store_token.parse(text)
  if tok and not tok.topological then
    return { stream = tok.stream, typing = 0, receipts = 0, to_device = 0, account_data = 0, presence = 0 }
  end
  return nil, "invalid sync token"
end

--- Format a sync token from its parts (a table with stream, typing, …).
function token.format(t)
  return ("s%d_%d_%d_%d_%d_%d"):format(t.stream, t.typing or 0, t.receipts or 0, t.to_device or 0,
    t.account_data or 0, t.presence or 0)
end

--- A store token for /messages from a client token: a sync token becomes
-- "s<stream>"; a store token (s<n>, t<d>-<n>) is returned as is. nil when
-- neither parses.
function token.to_store(text)
  if type(text) ~= "string" then return nil end
  local tok = store_token.parse(text)
  if tok then return tostring(tok) end
  local t = token.parse(text)
  if t then return "s" .. tostring(t.stream) end
  return nil
end

return token
