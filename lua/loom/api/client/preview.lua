-- loom.api.client.preview: GET /_matrix/client/v1/media/preview_url?url=&ts=
-- (and the legacy /_matrix/media/v3/preview_url): a minimal OpenGraph preview
-- of an http(s) page, fetched through the outbound HTTP client and its
-- address guard (loopback, private and link-local addresses are refused
-- unless federation.allow_ips lists them). Off unless config.media.url_preview
-- is true (as in Synapse: a preview fetches any URL a user names); off, it
-- answers 404 M_UNRECOGNIZED.
--
-- The answer: the page's og:* meta tags (og:title, og:description,
-- og:site_name, og:url, og:type, og:image as given), with <title> and
-- <meta name="description"> standing in for a missing og:title and
-- og:description; {} for anything that is not HTML. At most 5 redirects;
-- 1 MiB of the page is read. A refused address is 403 M_FORBIDDEN, a page
-- that cannot be fetched 502 M_UNKNOWN. Answers are kept for an hour per URL.
-- See docs/media.md.
local errors = require "loom.http.errors"
local core = require "loom.core"

local type, tonumber, pairs = type, tonumber, pairs
local string_find, string_match, string_gmatch, string_lower, string_gsub, string_sub =
  string.find, string.match, string.gmatch, string.lower, string.gsub, string.sub
local utf8_char, utf8_len = utf8.char, utf8.len

local _ENV = nil -- luacheck: ignore 211

local preview = {}

local MAX_PAGE = 1024 * 1024
local MAX_REDIRECTS = 5
local CACHE_MS = 3600 * 1000
local MAX_CACHE = 1000
local KEYS = { ["og:title"] = true, ["og:description"] = true, ["og:site_name"] = true, ["og:url"] = true,
  ["og:type"] = true, ["og:image"] = true, ["og:image:width"] = true, ["og:image:height"] = true }

--- preview.parse_url(url) -> { tls, host, port, path } | nil, message
function preview.parse_url(url)
  if type(url) ~= "string" or #url > 2048 then return nil, "bad URL" end
  local scheme, rest = string_match(url, "^([%a][%w+.-]*)://(.*)$")
  scheme = scheme and string_lower(scheme)
  if scheme ~= "http" and scheme ~= "https" then return nil, "only http and https URLs have previews" end
  local authority, path = string_match(rest, "^([^/?#]*)(.*)$")
  if string_find(authority, "@", 1, true) then return nil, "URLs with user information have no previews" end
  local host, port = string_match(authority, "^%[([%x:.]+)%]:?(%d*)$")
  if not host then host, port = string_match(authority, "^([%w.-]+):?(%d*)$") end
  if not host or host == "" then return nil, "bad host in URL" end
  port = port ~= "" and tonumber(port) or (scheme == "https" and 443 or 80)
  if port < 1 or port > 65535 then return nil, "bad port in URL" end
  path = string_gsub(path, "#.*$", "")
  if path == "" or string_sub(path, 1, 1) == "?" then path = "/" .. path end
  if string_find(path, "[%s%c]") then return nil, "bad path in URL" end
  return { tls = scheme == "https", host = host, port = port, path = path, scheme = scheme }
end

local ENTITIES = { amp = "&", lt = "<", gt = ">", quot = '"', apos = "'", nbsp = "\u{a0}" }

local function unescape(s)
  return (string_gsub(s, "&(#?[%w]+);", function(e)
    if string_sub(e, 1, 2) == "#x" or string_sub(e, 1, 2) == "#X" then
      local n = tonumber(string_sub(e, 3), 16)
      return n and n < 0x110000 and utf8_char(n) or nil
    elseif string_sub(e, 1, 1) == "#" then
      local n = tonumber(string_sub(e, 2))
      return n and n < 0x110000 and utf8_char(n) or nil
    end
    return ENTITIES[string_lower(e)]
  end))
end

local function attr(tag, name)
  return string_match(tag, "[%s]" .. name .. '%s*=%s*"([^"]*)"')
    or string_match(tag, "[%s]" .. name .. "%s*=%s*'([^']*)'")
end

--- preview.og(html) -> { ["og:title"] = ..., ... } from a page's <meta> tags
function preview.og(html)
  local out = {}
  for tag in string_gmatch(html, "<[Mm][Ee][Tt][Aa](%s[^>]*)>") do
    local key = attr(tag, "property") or attr(tag, "name")
    local content = attr(tag, "content")
    if key and content then
      key = string_lower(key)
      if KEYS[key] and out[key] == nil then out[key] = unescape(content)
      elseif key == "description" and out["og:description"] == nil then out["og:description"] = unescape(content)
      end
    end
  end
  if out["og:title"] == nil then
    local title = string_match(html, "<[Tt][Ii][Tt][Ll][Ee][^>]*>([^<]*)</[Tt][Ii][Tt][Ll][Ee]>")
    if title then out["og:title"] = unescape((string_gsub(string_gsub(title, "%s+", " "), "^ ", ""))) end
  end
  for k, v in pairs(out) do
    if #v > 4096 or not utf8_len(v) then out[k] = nil end
  end
  return out
end

local function resolve(base, location)
  if string_find(location, "^[%a][%w+.-]*://") then return location end
  if string_sub(location, 1, 2) == "//" then return base.scheme .. ":" .. location end
  local origin = base.scheme .. "://" .. base.host .. ":" .. base.port
  if string_sub(location, 1, 1) == "/" then return origin .. location end
  return origin .. (string_match(base.path, "^(.*/)") or "/") .. location
end

local function fetch(hs, url)
  local client = hs.http_client
  for _ = 0, MAX_REDIRECTS do
    local u, uerr = preview.parse_url(url)
    if not u then return nil, errors.new("M_INVALID_PARAM", uerr) end
    local res, err = client:fetch { method = "GET", host = u.host, port = u.port, tls = u.tls, path = u.path,
      headers = { ["User-Agent"] = "loom (URL preview)", Accept = "text/html, */*;q=0.1" }, timeout = 10000 }
    if not res then
      if string_find(err, "^refused address") then
        return nil, errors.new("M_FORBIDDEN", "This address is blocked")
      end
      return nil, errors.new("PREVIEW_FAILED", "Cannot fetch the URL")
    end
    local loc = res.headers and res.headers.location
    if res.status >= 300 and res.status < 400 and loc then
      url = resolve(u, loc)
    else
      if res.status ~= 200 then return nil, errors.new("PREVIEW_FAILED", "The URL answered " .. res.status) end
      return res
    end
  end
  return nil, errors.new("PREVIEW_FAILED", "Too many redirects")
end

local function preview_url(hs, req)
  local cfg = hs.config.media
  if not (type(cfg) == "table" and cfg.url_preview == true) or not hs.http_client then
    return errors.new("M_UNRECOGNIZED", "URL previews are off")
  end
  local url = req:arg("url")
  if not url then return errors.new("M_MISSING_PARAM", "url is required") end
  local ok, uerr = preview.parse_url(url)
  if not ok then return errors.new("M_INVALID_PARAM", uerr) end
  local cache = hs.preview_cache
  if not cache then
    cache = { n = 0, map = {} }
    hs.preview_cache = cache
  end
  local now = core.now_ms()
  local hit = cache.map[url]
  if hit and hit.until_ts > now then return hit.value end
  local res, err = fetch(hs, url)
  if not res then return err end
  local ctype = string_lower(res.headers["content-type"] or "")
  local value = {}
  if string_find(ctype, "^text/html") or string_find(ctype, "^application/xhtml") then
    value = preview.og(string_sub(res.body or "", 1, MAX_PAGE))
  end
  if cache.n >= MAX_CACHE then cache.map, cache.n = {}, 0 end
  if not cache.map[url] then cache.n = cache.n + 1 end
  cache.map[url] = { value = value, until_ts = now + CACHE_MS }
  return value
end

preview.routes = {
  { "GET", "/_matrix/client/v1/media/preview_url", preview_url, auth = true },
  { "GET", "/_matrix/media/v3/preview_url", preview_url, auth = true },
}

return preview
