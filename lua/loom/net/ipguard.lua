-- loom.net.ipguard: which addresses an outbound request may reach.
--
--   local ipguard = require "loom.net.ipguard"
--   local g = assert(ipguard.new { allow = { "127.0.0.1/32" } })
--   g:permits("10.1.2.3")   --> false, "private address"
--   g:permits("127.0.0.1")  --> true (listed in allow)
--
-- Outbound requests (federation, push gateways, media) go where other
-- servers' names point. Without a guard, a room's server list or a pusher URL
-- would let anyone make the homeserver probe the operator's own network. So
-- loopback, private, link-local, shared (carrier NAT), multicast, reserved
-- and documentation ranges are refused — in IPv4, in IPv6 and in IPv6 forms
-- that carry an IPv4 address (mapped, NAT64) — unless a range in `allow`
-- contains the address. `deny` adds ranges to refuse.
local setmetatable, ipairs, type, tonumber, tostring = setmetatable, ipairs, type, tonumber, tostring
local string_format = string.format

local _ENV = nil -- luacheck: ignore 211

local ipguard = {}

-- An address as 16 bytes (a table of numbers 0..255; IPv4 as ::ffff:a.b.c.d),
-- or nil.
local function parse4(s)
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return nil end
  local out = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255 }
  for _, p in ipairs { a, b, c, d } do
    if #p > 3 or (#p > 1 and p:sub(1, 1) == "0") then return nil end
    local n = tonumber(p)
    if n > 255 then return nil end
    out[#out + 1] = n
  end
  return out
end

local function parse6(s)
  s = s:gsub("%%.*$", "")   -- zone index
  local head, tail = s, nil
  local dbl = s:find("::", 1, true)
  if dbl then
    head, tail = s:sub(1, dbl - 1), s:sub(dbl + 2)
    if tail:find("::", 1, true) then return nil end
  end
  local function groups(part)
    local out = {}
    if part == "" then return out end
    local items = {}
    for g in (part .. ":"):gmatch("([^:]*):") do items[#items + 1] = g end
    for i, g in ipairs(items) do
      if i == #items and g:find(".", 1, true) then
        local v4 = parse4(g)
        if not v4 then return nil end
        out[#out + 1] = v4[13] * 256 + v4[14]
        out[#out + 1] = v4[15] * 256 + v4[16]
      else
        if not g:match("^%x%x?%x?%x?$") then return nil end
        out[#out + 1] = tonumber(g, 16)
      end
    end
    return out
  end
  local h, t = groups(head), tail and groups(tail) or {}
  if not h or not t then return nil end
  local fill = 8 - #h - #t
  if (dbl and fill < 1) or (not dbl and fill ~= 0) then return nil end
  local words = {}
  for _, w in ipairs(h) do words[#words + 1] = w end
  for _ = 1, fill do words[#words + 1] = 0 end
  for _, w in ipairs(t) do words[#words + 1] = w end
  local out = {}
  for _, w in ipairs(words) do out[#out + 1] = w >> 8; out[#out + 1] = w & 255 end
  return out
end

--- ipguard.parse(text) -> 16-byte table (IPv4 mapped into IPv6) | nil
function ipguard.parse(s)
  if type(s) ~= "string" or #s > 64 then return nil end
  if s:find(":", 1, true) then return parse6((s:gsub("^%[(.*)%]$", "%1"))) end
  return parse4(s)
end

local function is_v4(a)
  for i = 1, 10 do if a[i] ~= 0 then return false end end
  return a[11] == 255 and a[12] == 255
end

-- A range "addr/len" as { bytes, bits } (IPv4 lengths counted from the
-- mapped prefix), or nil, message.
local function parse_range(text)
  if type(text) ~= "string" then return nil, "not a string" end
  local addr, len = text:match("^(.-)/(%d+)$")
  addr = addr or text
  local a = ipguard.parse(addr)
  if not a then return nil, "not an IP address: " .. tostring(addr) end
  local bits = len and tonumber(len) or (is_v4(a) and 32 or 128)
  if is_v4(a) and not addr:find(":", 1, true) then
    if bits > 32 then return nil, "prefix length over 32" end
    bits = bits + 96
  elseif bits > 128 then
    return nil, "prefix length over 128"
  end
  return { a, bits }
end

local function contains(range, a)
  local r, bits = range[1], range[2]
  local i = 1
  while bits >= 8 do
    if r[i] ~= a[i] then return false end
    i, bits = i + 1, bits - 8
  end
  if bits == 0 then return true end
  local mask = (0xff << (8 - bits)) & 0xff
  return (r[i] & mask) == (a[i] & mask)
end

local REFUSED = {
  { "0.0.0.0/8", "unspecified address" },
  { "10.0.0.0/8", "private address" },
  { "100.64.0.0/10", "shared address (carrier NAT)" },
  { "127.0.0.0/8", "loopback address" },
  { "169.254.0.0/16", "link-local address" },
  { "172.16.0.0/12", "private address" },
  { "192.0.0.0/24", "reserved address" },
  { "192.0.2.0/24", "documentation address" },
  { "192.88.99.0/24", "reserved address" },
  { "192.168.0.0/16", "private address" },
  { "198.18.0.0/15", "benchmarking address" },
  { "198.51.100.0/24", "documentation address" },
  { "203.0.113.0/24", "documentation address" },
  { "224.0.0.0/4", "multicast address" },
  { "240.0.0.0/4", "reserved address" },
  { "::/128", "unspecified address" },
  { "::1/128", "loopback address" },
  { "64:ff9b::/96", "NAT64 address" },
  { "64:ff9b:1::/48", "NAT64 address" },
  { "100::/64", "discard address" },
  { "2001::/23", "reserved address" },
  { "2001:db8::/32", "documentation address" },
  { "2002::/16", "6to4 address" },
  { "fc00::/7", "private address" },
  { "fe80::/10", "link-local address" },
  { "fec0::/10", "site-local address" },
  { "ff00::/8", "multicast address" },
}

local refused_ranges = {}
for i, r in ipairs(REFUSED) do refused_ranges[i] = { (parse_range(r[1])), r[2] } end

local Guard = {}
Guard.__index = Guard
Guard.__name = "loom.net.ipguard.Guard"

--- ipguard.new { allow = {cidr...}, deny = {cidr...} } -> guard | nil, message
function ipguard.new(opts)
  opts = opts or {}
  local self = setmetatable({ allow = {}, deny = {} }, Guard)
  for _, k in ipairs { "allow", "deny" } do
    local list = opts[k]
    if list ~= nil and type(list) ~= "table" then return nil, k .. " must be a list of CIDR ranges" end
    for _, text in ipairs(list or {}) do
      local r, err = parse_range(text)
      if not r then return nil, string_format("%s: %s", k, err) end
      self[k][#self[k] + 1] = r
    end
  end
  return self
end

local NAT64 = (parse_range("64:ff9b::/96"))
local COMPAT = (parse_range("::/96"))   -- deprecated IPv4-compatible form

local function judge(self, a)
  for _, r in ipairs(self.allow) do
    if contains(r, a) then return true end
  end
  for _, r in ipairs(self.deny) do
    if contains(r, a) then return false, "denied address" end
  end
  -- an IPv6 address that carries an IPv4 one is judged as that address
  if contains(NAT64, a) or (contains(COMPAT, a) and (a[13] | a[14]) ~= 0) then
    return judge(self, { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, a[13], a[14], a[15], a[16] })
  end
  for _, r in ipairs(refused_ranges) do
    if contains(r[1], a) then return false, r[2] end
  end
  return true
end

--- guard:permits(ip) -> true | false, reason
function Guard.permits(self, ip)
  local a = ipguard.parse(ip)
  if not a then return false, "not an IP address" end
  return judge(self, a)
end

return ipguard
