-- loom.accounts: users, passwords, devices and access tokens.
--
--   local accounts = require "loom.store.accounts"
--   local acc = store:accounts { server_name = "example.org" }       -- accounts.new(conn, opts) inside the store
--   assert(acc:register("alice", "secret"))
--   local login = assert(acc:login("@alice:example.org", "secret"))   -- access_token, device_id
--   local who = assert(acc:authenticate(login.access_token))         -- user_id, device_id
--
-- Passwords are stored as PBKDF2-SHA256 (OpenSSL) with a random salt;
-- access tokens are 256 random bits, stored only as their sha256.
-- Expected failures return nil, message, code with codes named after the
-- Matrix errors they become (user_in_use, invalid_username, forbidden,
-- unknown_token).
local core = require "loom.core"

local c = core.crypto
local setmetatable, type, tostring, tonumber = setmetatable, type, tostring, tonumber
local error, ipairs, table_concat, table_unpack = error, ipairs, table.concat, table.unpack

local _ENV = nil -- luacheck: ignore 211

local accounts = {}
local methods = {}
local mt = { __name = "loom.Accounts", __index = methods }

local ITERATIONS = 100000
local b64 = function(s) return c.base64_encode(s, true) end

--- An accounts object over a loom.db connection. opts: server_name,
-- iterations (PBKDF2 rounds, default 100000).
function accounts.new(conn, opts)
  opts = opts or {}
  return setmetatable({
    conn = conn,
    server_name = opts.server_name or "localhost",
    iterations = opts.iterations or ITERATIONS,
  }, mt)
end

--- Hash a password for storage.
function accounts.hash_password(password, iterations)
  iterations = iterations or ITERATIONS
  local salt = c.random_bytes(16)
  return ("pbkdf2-sha256$%d$%s$%s"):format(iterations, b64(salt),
    b64(c.pbkdf2_sha256(password, salt, iterations, 32)))
end

--- Does the password match the stored hash? (constant-time compare)
function accounts.check_password(password, stored)
  if type(stored) ~= "string" then return false end
  local iter, salt, key = stored:match("^pbkdf2%-sha256%$(%d+)%$([%w%-_]+)%$([%w%-_]+)$")
  iter = tonumber(iter)
  if not iter or iter < 1 or iter > 10000000 then return false end
  salt, key = c.base64_decode(salt, true), c.base64_decode(key, true)
  if not salt or not key or #key < 16 or #key > 64 then return false end
  return c.constant_time_equal(c.pbkdf2_sha256(password, salt, iter, #key), key)
end

--- Is this a valid localpart for a new user? (the spec's user ID grammar
-- for new users: lowercase a-z, digits, ._=-/+)
function accounts.valid_localpart(localpart)
  return type(localpart) == "string" and #localpart > 0 and localpart:match("^[a-z0-9._=%-/+]+$") ~= nil
end

--- The full user ID for a localpart or user ID on this server.
function methods:user_id(name)
  if type(name) ~= "string" then return nil end
  if name:sub(1, 1) == "@" then return name end
  return "@" .. name .. ":" .. self.server_name
end

local function now_ms() return core.now_ms() end

--- Is the user ID (or localpart) free to register?
function methods:available(name)
  local localpart = name:sub(1, 1) == "@" and name:match("^@([^:]+):") or name
  if not accounts.valid_localpart(localpart) then
    return nil, "user ID may only contain a-z, 0-9, . _ = - / +", "invalid_username"
  end
  local user_id = self:user_id(localpart)
  if #user_id > 255 then return nil, "user ID is longer than 255 bytes", "invalid_username" end
  if self.conn:value("SELECT 1 FROM users WHERE user_id = ?", user_id) then
    return nil, "user ID already taken", "user_in_use"
  end
  return user_id
end

--- Create a user. password may be nil (no password login). opts.admin,
-- opts.guest (a guest account). Returns the user ID.
function methods:register(localpart, password, opts)
  local user_id, err, code = self:available(localpart)
  if not user_id then return nil, err, code end
  local hash = password and accounts.hash_password(password, self.iterations) or nil
  -- a database failure raises; a user ID taken meanwhile changes no row
  local n = self.conn:run("INSERT INTO users (user_id, password_hash, admin, created_ts, is_guest)"
    .. " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id) DO NOTHING", user_id, hash, opts and opts.admin and 1 or 0,
    now_ms(), opts and opts.guest and 1 or 0)
  if n == 0 then return nil, "user ID already taken", "user_in_use" end
  return user_id
end

--- Turn a guest account into a full one with a password (nil: none).
-- true, or nil, message, "forbidden" when the user is not a guest (any more).
function methods:upgrade_guest(user_id, password)
  local hash = password and accounts.hash_password(password, self.iterations) or nil
  local n = self.conn:run("UPDATE users SET is_guest = 0, password_hash = ? WHERE user_id = ? AND is_guest = 1",
    hash, user_id)
  if n == 0 then return nil, "not a guest account", "forbidden" end
  return true
end

--- The user's row: { user_id, admin, deactivated, displayname, avatar_url,
-- created_ts, is_guest } or nil when there is no such user.
function methods:user(user_id)
  local row = self.conn:first("SELECT user_id, admin, deactivated, displayname, avatar_url, created_ts, is_guest"
    .. " FROM users WHERE user_id = ?", user_id)
  if not row then return nil end
  return { user_id = row[1], admin = row[2] == 1, deactivated = row[3] == 1, displayname = row[4],
    avatar_url = row[5], created_ts = row[6], is_guest = row[7] == 1 }
end

--- Set profile fields (displayname, avatar_url; json.null or nil clears).
function methods:set_profile(user_id, field, value)
  if field ~= "displayname" and field ~= "avatar_url" then error("unknown profile field " .. tostring(field), 2) end
  if type(value) ~= "string" then value = nil end
  return self.conn:run("UPDATE users SET " .. field .. " = ? WHERE user_id = ?", value, user_id)
end

local function new_token() return "loom_" .. b64(c.random_bytes(32)) end
local function token_hash(token) return core.sqlite.blob(c.sha256(token)) end

--- A new access token for a device (created if new; an existing device_id
-- is reused). Returns { user_id, device_id, access_token }.
function methods:issue_token(user_id, device_id, display_name)
  device_id = device_id or b64(c.random_bytes(9)):upper():gsub("[^A-Z0-9]", "X")
  local token = new_token()
  local ok, err, code = self.conn:transaction(function()
    local r, e, cd = self.conn:run([[INSERT INTO devices (user_id, device_id, display_name, last_seen_ts)
      VALUES (?, ?, ?, ?) ON CONFLICT (user_id, device_id) DO UPDATE SET last_seen_ts = excluded.last_seen_ts]],
      user_id, device_id, display_name, now_ms())
    if not r then return nil, e, cd end
    return self.conn:run("INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts) VALUES (?, ?, ?, ?)",
      token_hash(token), user_id, device_id, now_ms())
  end)
  if not ok then return nil, err, code end
  return { user_id = user_id, device_id = device_id, access_token = token }
end

--- Does the password open this (active) account? true, or nil, message,
-- "forbidden" (the same answer for an unknown user and a wrong password).
-- A deactivated account whose password matches answers "user_deactivated"
-- (Synapse's order: the account's state is told only to who knows the
-- password).
function methods:verify_password(user_id, password)
  local row = self.conn:first("SELECT password_hash, deactivated FROM users WHERE user_id = ?", user_id)
  if not row or type(password) ~= "string" or not accounts.check_password(password, row[1]) then
    return nil, "Invalid username or password", "forbidden"
  end
  if row[2] == 1 then return nil, "This account has been deactivated", "user_deactivated" end
  return true
end

--- Set a new password (the account's hash replaced).
function methods:set_password(user_id, password)
  return self.conn:run("UPDATE users SET password_hash = ? WHERE user_id = ?",
    accounts.hash_password(password, self.iterations), user_id)
end

--- Log out every device of the user but keep_device, and every other access
-- token of keep_device but keep_token (their to-device queues go with them).
function methods:logout_others(user_id, keep_device, keep_token)
  return self.conn:transaction(function()
    self.conn:run("DELETE FROM access_tokens WHERE user_id = ? AND token_hash <> ?", user_id,
      keep_token and token_hash(keep_token) or core.sqlite.blob(""))
    self.conn:run("DELETE FROM devices WHERE user_id = ? AND device_id IS NOT ?", user_id, keep_device)
    self.conn:run("DELETE FROM to_device_inbox WHERE user_id = ? AND device_id IS NOT ?", user_id, keep_device)
    return true
  end)
end

--- Deactivate an account for good: marked deactivated (the row stays, so
-- the user ID is never registered again), profile erased, every device,
-- access token and to-device message deleted. The password hash stays, so
-- that a login with the right password is told the account is deactivated.
function methods:deactivate(user_id)
  return self.conn:transaction(function()
    self.conn:run("UPDATE users SET deactivated = 1, displayname = NULL, avatar_url = NULL WHERE user_id = ?", user_id)
    self.conn:run("DELETE FROM access_tokens WHERE user_id = ?", user_id)
    self.conn:run("DELETE FROM devices WHERE user_id = ?", user_id)
    self.conn:run("DELETE FROM to_device_inbox WHERE user_id = ?", user_id)
    return true
  end)
end

--- Make a deactivated account active again (the admin API): nothing else
-- comes back (devices and profile were erased by deactivate).
function methods:reactivate(user_id)
  return self.conn:run("UPDATE users SET deactivated = 0 WHERE user_id = ?", user_id)
end

--- Grant or revoke the server admin flag.
function methods:set_admin(user_id, admin)
  return self.conn:run("UPDATE users SET admin = ? WHERE user_id = ?", admin and 1 or 0, user_id)
end

-- The admin API's orderings of the user list (column, then user_id).
local USER_ORDER = {
  name = "user_id", is_guest = "is_guest", admin = "admin", deactivated = "deactivated",
  displayname = "displayname", avatar_url = "avatar_url", creation_ts = "created_ts",
}
accounts.USER_ORDER = USER_ORDER

--- A page of the users (the admin API's list). opts: from (offset), limit,
-- name (a substring of the user ID or display name), guests (false: no
-- guests), deactivated (true: deactivated accounts too), order_by (a key of
-- accounts.USER_ORDER), dir ("f" or "b"). Returns the rows (as methods:user
-- returns them) and the number of users matching, whatever the page.
function methods:list_users(opts)
  local where, args = { "1 = 1" }, {}
  if opts.name then
    -- LIKE with the pattern characters escaped: the name is matched as text
    local pat = "%" .. opts.name:gsub("[\\%%_]", "\\%0") .. "%"
    where[#where + 1] = "(user_id LIKE ? ESCAPE '\\' OR displayname LIKE ? ESCAPE '\\')"
    args[#args + 1] = pat; args[#args + 1] = pat
  end
  if opts.guests == false then where[#where + 1] = "is_guest = 0" end
  if not opts.deactivated then where[#where + 1] = "deactivated = 0" end
  local cond = table_concat(where, " AND ")
  local total = self.conn:value("SELECT count(*) FROM users WHERE " .. cond, table_unpack(args))
  local col = USER_ORDER[opts.order_by or "name"] or error("unknown order " .. tostring(opts.order_by), 2)
  local dir = opts.dir == "b" and "DESC" or "ASC"
  local n = #args
  args[n + 1], args[n + 2] = opts.limit, opts.from
  local out = {}
  for _, row in ipairs(self.conn:all("SELECT user_id, admin, deactivated, displayname, avatar_url, created_ts,"
      .. " is_guest FROM users WHERE " .. cond .. " ORDER BY " .. col .. " " .. dir .. ", user_id " .. dir
      .. " LIMIT ? OFFSET ?", table_unpack(args, 1, n + 2))) do
    out[#out + 1] = { user_id = row[1], admin = row[2] == 1, deactivated = row[3] == 1, displayname = row[4],
      avatar_url = row[5], created_ts = row[6], is_guest = row[7] == 1 }
  end
  return out, total
end

--- Password login. Returns what issue_token returns, or what
-- verify_password returns when the password does not open the account.
function methods:login(user_id, password, device_id, display_name)
  local ok, err, code = self:verify_password(user_id, password)
  if not ok then return nil, err, code end
  return self:issue_token(user_id, device_id, display_name)
end

--- The user and device an access token belongs to: user_id, device_id,
-- is_guest, or nil, message, "unknown_token".
function methods:authenticate(token)
  if type(token) ~= "string" or #token == 0 or #token > 512 then
    return nil, "Unknown access token", "unknown_token"
  end
  local row = self.conn:first("SELECT t.user_id, t.device_id, u.is_guest FROM access_tokens t"
    .. " LEFT JOIN users u ON u.user_id = t.user_id WHERE t.token_hash = ?", token_hash(token))
  if not row then return nil, "Unknown access token", "unknown_token" end
  return row[1], row[2], row[3] == 1
end

--- Log out one access token (and delete its device, with the to-device
-- messages waiting for it), or every device of the user (all = true).
function methods:logout(token, all)
  local user_id, device_id = self:authenticate(token)
  if not user_id then return nil, device_id, "unknown_token" end
  return self.conn:transaction(function()
    if all then
      self.conn:run("DELETE FROM access_tokens WHERE user_id = ?", user_id)
      self.conn:run("DELETE FROM devices WHERE user_id = ?", user_id)
      self.conn:run("DELETE FROM to_device_inbox WHERE user_id = ?", user_id)
    else
      self.conn:run("DELETE FROM access_tokens WHERE user_id = ? AND device_id = ?", user_id, device_id)
      self.conn:run("DELETE FROM devices WHERE user_id = ? AND device_id = ?", user_id, device_id)
      self.conn:run("DELETE FROM to_device_inbox WHERE user_id = ? AND device_id = ?", user_id, device_id)
    end
    return true
  end)
end

accounts.methods = methods
accounts.mt = mt
return accounts
