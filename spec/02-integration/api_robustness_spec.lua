-- Untrusted input at every route: random JSON bodies of every shape, odd
-- path parameters and query values, with and without a valid token. Every
-- answer is a well-formed response; every failure is a Matrix error with a
-- 4xx status — never a 500 — and the server keeps serving.
local tesths = require "support.hs"
local core = require "loom.core"

local json = core.json

-- Random JSON values, biased towards the shapes endpoints expect.
local function random_value(rng, depth)
  local r = rng(1, depth > 2 and 6 or 9)
  if r == 1 then return rng(-5, 5) == 0 and json.null or rng(-3, 3) end
  if r == 2 then return ({ "", "x", "@u:test.local", "!r:test.local", "$e", "m.room.message", "join",
    ("a"):rep(300), "\u{1F600}", "t1-1", "s5" })[rng(1, 11)] end
  if r == 3 then return rng(1, 2) == 1 end
  if r == 4 then return 9007199254740991 end
  if r == 5 then return json.null end
  if r == 6 then return -1 end
  if r == 7 then
    local a = json.array {}
    for i = 1, rng(0, 3) do a[i] = random_value(rng, depth + 1) end
    return a
  end
  local o = {}
  local keys = { "type", "content", "body", "msgtype", "user_id", "reason", "room_version", "preset", "invite",
    "initial_state", "name", "topic", "visibility", "room_alias_name", "power_level_content_override",
    "creation_content", "displayname", "avatar_url", "identifier", "password", "username", "auth", "session",
    "device_id", "room_id", "filter", "limit", "membership", "third_party_invite", "join_authorised_via_users_server",
    "is_direct", "state_key", "event_fields", "room", "timeline", "types", "not_types", "senders", "lazy_load_members" }
  for _ = 1, rng(0, 5) do o[keys[rng(1, #keys)]] = random_value(rng, depth + 1) end
  return o
end

local PARAMS = { "!nope:test.local", "%21room", "@alice:test.local", "$event", "x", "%00", "%FF%FE", "a%2Fb",
  "m.room.message", "", "..", "%20", ("z"):rep(300) }

local QUERIES = { "", "?dir=b", "?dir=x", "?from=garbage", "?from=t0-1&dir=f", "?limit=-1", "?limit=abc",
  "?limit=99999999999999999999", "?filter=%7B", "?filter=%7B%22limit%22%3A-5%7D", "?since=bogus",
  "?timeout=abc", "?at=zz", "?membership=x", "?format=event", "?access_token=bad", "?username=%00",
  "?kind=guest", "?full_state=maybe" }

describe("every route under random input", function()
  it("answers with Matrix errors, never a 500, and keeps serving", function()
    local t = tesths.start()
    local alice, mallory = t:register("alice"), t:register("mallory")
    -- a real room, so some requests get past the first checks
    local room = t:request("POST", "/_matrix/client/v3/createRoom", { preset = "public_chat" },
      alice.access_token).json.room_id
    PARAMS[#PARAMS + 1] = tesths.enc(room)
    local seed = 20261123
    local rng_state = seed
    local function rng(a, b)
      rng_state = (rng_state * 1103515245 + 12345) % 2147483648
      return a + rng_state % (b - a + 1)
    end
    local routes = t.server.router.routes
    local failures, checked = {}, 0
    t:run(function()
      for _, route in ipairs(routes) do
        for _ = 1, 40 do
          local path = route.pattern:gsub("{[%w_]+}", function() return PARAMS[rng(1, #PARAMS)] end)
          path = path .. QUERIES[rng(1, #QUERIES)]
          -- the deprecated GET /events long-polls 30 s by default (as Synapse): not here
          if route.pattern:find("/events$") then
            path = path .. (path:find("?", 1, true) and "&" or "?") .. "timeout=0"
          end
          local body
          local pick = rng(1, 5)
          if pick == 1 then body = "{not json" elseif pick == 2 then body = "" else
            body = assert(json.encode(random_value(rng, 0), { floats = true }))
          end
          local token = rng(1, 4) > 1 and alice.access_token or nil
          if token and route.pattern:find("logout", 1, true) then   -- logouts end someone else's sessions
            token = t.hs.accounts:issue_token(mallory.user_id).access_token
          end
          local r = t:call(route.method, path, body, token)
          checked = checked + 1
          local ok = r.status and r.status < 500
          if ok and r.status >= 400 then
            ok = type(r.json) == "table" and ((type(r.json.errcode) == "string" and r.json.errcode:match("^M_"))
              -- user-interactive auth: 401 with the flows to follow
              or (r.status == 401 and type(r.json.flows) == "table" and type(r.json.session) == "string"))
          end
          if not ok then
            failures[#failures + 1] = ("%s %s -> %s %s"):format(route.method, path, tostring(r.status),
              r.body:sub(1, 200))
          end
        end
      end
    end, 120000)
    -- and the server still works
    local r = t:request("GET", "/_matrix/client/v3/account/whoami", nil, alice.access_token)
    assert.equal(200, r.status)
    t:stop()
    assert.is_true(checked > 1000)
    assert.same({}, failures)
  end)
end)
