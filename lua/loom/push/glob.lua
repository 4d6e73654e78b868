-- loom.push.glob: push-rule glob patterns ("event_match" in the Push
-- Notifications module) compiled once through loom.core.regex, whose
-- compile-time limits bound the time and memory of every pattern.
--
--   local glob = require "loom.push.glob"
--   local m = assert(glob.compile("cake*lie"))           -- whole value
--   m:match("Cake is a LIE")                              --> true
--   local w = assert(glob.compile("alice", { words = true }))
--   w:match("hi alice!")                                  --> true
--   w:match("malice")                                     --> false
--
-- Glob syntax: `*` matches any run of characters, `?` exactly one character
-- (one UTF-8 sequence); every other byte is literal. Matching is
-- case-insensitive (ASCII). Without `words` the pattern must match the whole
-- value; with `words` (the spec's rule for content.body) it must match a run
-- of whole words: bounded by the start or end of the value or by a character
-- that is not a letter, digit or underscore (bytes >= 0x80 count as letters,
-- so "café" is one word). Returns nil, message, "bad_glob" for a pattern that
-- is not a string or that the regex compiler refuses (too long, too complex).
local regex = require("loom.core").regex

local type = type
local concat = table.concat

local _ENV = nil -- luacheck: ignore 211

local glob = {}

local MAX_GLOB = 1024 -- bytes; ample for keywords and IDs

local SPECIAL = {}
for c in ("\\.[]()*+?{}|^$"):gmatch(".") do SPECIAL[c] = true end

-- one character: a byte that is not a UTF-8 continuation byte, then any
-- continuation bytes ('.' in glibc never matches NUL, this does)
local ONE = "([^\128-\191][\128-\191]*|[\128-\191])"
local NONWORD = "[^[:alnum:]_\128-\255]"

--- The ERE text for a glob (exposed for tests and docs); literal: * and ?
-- are ordinary characters too.
function glob.to_ere(pattern, literal)
  local out = {}
  for i = 1, #pattern do
    local c = pattern:sub(i, i)
    if literal and (c == "*" or c == "?") then
      out[#out + 1] = "\\" .. c
    elseif c == "*" then
      if out[#out] ~= ".*" then out[#out + 1] = ".*" end
    elseif c == "?" then
      out[#out + 1] = ONE
    elseif SPECIAL[c] then
      out[#out + 1] = "\\" .. c
    else
      out[#out + 1] = c
    end
  end
  return concat(out)
end

--- glob.compile(pattern [, opts]) -> loom.Regex | nil, message, "bad_glob"
-- opts.words: word match (content.body) instead of whole-value match;
-- opts.literal: no wildcards (a display name looked for in a body).
function glob.compile(pattern, opts)
  if type(pattern) ~= "string" then return nil, "glob pattern must be a string", "bad_glob" end
  if #pattern > MAX_GLOB then return nil, "glob pattern longer than 1024 bytes", "bad_glob" end
  if pattern:find("\0", 1, true) then return nil, "glob pattern contains a NUL byte", "bad_glob" end
  local ere = glob.to_ere(pattern, opts and opts.literal)
  local re, msg
  if opts and opts.words then
    re, msg = regex.compile("(^|" .. NONWORD .. ")(" .. ere .. ")(" .. NONWORD .. "|$)", { icase = true })
  else
    re, msg = regex.compile(ere, { icase = true, anchored = true })
  end
  if not re then return nil, msg, "bad_glob" end
  return re
end

return glob
