-- loom.api.client.legacy: the deprecated Client-Server API endpoints that
-- older clients and tools still call, built on the sync engine and on
-- /messages (nothing of their own is computed here):
--
--   GET /events?from&timeout        -> { chunk, start, end }: the events of
--       every room the user is joined to since `from` (a sync token; none:
--       from now), waiting up to `timeout` ms for some (long-polling). chunk
--       holds timeline events, ephemeral events (typing, receipts) and
--       presence, each with room_id where it has one.
--   GET /initialSync?limit&archived -> { end, rooms, presence, account_data }:
--       per room { room_id, membership, messages { chunk, start, end },
--       state, visibility, account_data, invite }; archived=true adds the
--       rooms the user left.
--   GET /rooms/{roomId}/initialSync -> { room_id, membership, messages,
--       state, presence, visibility, account_data } for a room the user is
--       or was in, or a world_readable one (else 403).
--
-- The tokens are sync tokens (/events' `end` goes to the next `from`, and to
-- /sync's since). See docs/api-client-legacy.md.
local core = require "loom.core"
local errors = require "loom.http.errors"
local request = require "loom.http.request"
local ljson = require "loom.json"
local sync_api = require "loom.api.client.sync"
local sync_token = require "loom.sync.token"
local engine = require "loom.sync.engine"
local visibility = require "loom.room.visibility"
local client_events = require "loom.api.client.events"
local presence_mod = require "loom.sync.presence"

local json = core.json
local ipairs, pairs, type, tostring, table_sort = ipairs, pairs, type, tostring, table.sort

local _ENV = nil -- luacheck: ignore 211

local legacy = {}

local V3 = "/_matrix/client/v3"
legacy.DEFAULT_LIMIT = 10
legacy.MAX_LIMIT = 1000
legacy.EVENTS_LIMIT = 100          -- timeline events per room in one /events answer
legacy.MAX_TIMEOUT = 600000

local function invalid(msg) return errors.new("M_INVALID_PARAM", msg) end

local function list(t) return (type(t) == "table" and t.events) or json.array {} end

local function with_room(events, room_id)
  for _, ev in ipairs(events) do
    if type(ev) == "table" and ev.room_id == nil then ev.room_id = room_id end
  end
  return events
end

-- The state at the end of a sync room section: its state events, then the
-- state events of its timeline (later ones replace earlier ones).
local function end_state(sec, room_id)
  local by_key, order = {}, {}
  local function add(ev)
    if type(ev) ~= "table" or type(ev.state_key) ~= "string" then return end
    local k = ev.type .. "\0" .. ev.state_key
    if not by_key[k] then order[#order + 1] = k end
    by_key[k] = ev
  end
  for _, ev in ipairs(list(sec.state)) do add(ev) end
  for _, ev in ipairs(list(sec.timeline)) do add(ev) end
  local out = json.array {}
  for i, k in ipairs(order) do out[i] = by_key[k] end
  return with_room(out, room_id)
end

local function room_visibility(hs, room_id)
  return hs.store:room_visibility(room_id) or "private"
end

local function limit_arg(req)
  local limit = req:arg_integer("limit", legacy.DEFAULT_LIMIT, 0)
  if limit > legacy.MAX_LIMIT then limit = legacy.MAX_LIMIT end
  return limit
end

local function archived_arg(req)
  local a = req:arg("archived")
  if a == nil or a == "false" then return false end
  if a == "true" then return true end
  return nil
end

local function initial_sync(hs, req)
  local limit = limit_arg(req)
  local archived = archived_arg(req)
  if archived == nil then return invalid("archived must be true or false") end
  local filter = { room = { timeline = { limit = limit }, include_leave = archived } }
  local body = engine.sync(hs, { user_id = req.user_id, device_id = req.device_id, full_state = true,
    filter = filter, skip_to_device = true })
  local rooms = json.array {}
  local function add(room_id, membership, sec)
    local tl = sec.timeline or {}
    local entry = { room_id = room_id, membership = membership, visibility = room_visibility(hs, room_id),
      messages = { chunk = with_room(list(tl), room_id), start = tl.prev_batch or body.next_batch,
        ["end"] = body.next_batch },
      state = end_state(sec, room_id), account_data = list(sec.account_data) }
    rooms[#rooms + 1] = entry
    return entry
  end
  local rs = body.rooms or {}
  local ids = {}
  for room_id in pairs(rs.join or {}) do ids[#ids + 1] = room_id end
  table_sort(ids)
  for _, room_id in ipairs(ids) do add(room_id, "join", rs.join[room_id]) end
  ids = {}
  for room_id in pairs(rs.invite or {}) do ids[#ids + 1] = room_id end
  table_sort(ids)
  for _, room_id in ipairs(ids) do
    local st = with_room(list(rs.invite[room_id].invite_state), room_id)
    local inv
    for _, ev in ipairs(st) do
      if ev.type == "m.room.member" and ev.state_key == req.user_id then inv = ev end
    end
    rooms[#rooms + 1] = { room_id = room_id, membership = "invite", visibility = room_visibility(hs, room_id),
      invite = inv, state = st, messages = { chunk = json.array {}, start = body.next_batch,
        ["end"] = body.next_batch }, account_data = json.array {} }
  end
  if archived then
    ids = {}
    for room_id in pairs(rs.leave or {}) do ids[#ids + 1] = room_id end
    table_sort(ids)
    for _, room_id in ipairs(ids) do
      local m = hs.rooms:state_event(room_id, "m.room.member", req.user_id)
      local ms = m and ljson.is_object(m.content) and m.content.membership
      add(room_id, ms == "ban" and "ban" or "leave", rs.leave[room_id])
    end
  end
  return { ["end"] = body.next_batch, rooms = rooms, presence = list(body.presence),
    account_data = list(body.account_data) }
end

local function events(hs, req)
  local timeout = req:arg_integer("timeout", 30000, 0)
  if timeout > legacy.MAX_TIMEOUT then timeout = legacy.MAX_TIMEOUT end
  local from = req:arg("from")
  local since, err
  local now = sync_token.current(hs)
  if from == nil or from == "" then
    -- from now on; the to-device part stays at 0 (this API neither sends
    -- nor acknowledges to-device messages, so a /sync from this token
    -- still gets them all)
    since = {}
    for k, v in pairs(now) do since[k] = v end
    since.to_device = 0
    from = sync_token.format(since)
  else
    since, err = sync_token.parse(from)
    if since then since, err = sync_token.check(since, now) end
    if not since then return invalid(err) end
  end
  local filter = { room = { timeline = { limit = legacy.EVENTS_LIMIT } } }
  local body = sync_api.wait(hs, { user_id = req.user_id, device_id = req.device_id, since = since,
    filter = filter, skip_to_device = true }, timeout, "online")
  local chunk = json.array {}
  local function add_all(evs, room_id)
    for _, ev in ipairs(evs) do
      if room_id and type(ev) == "table" and ev.room_id == nil then ev.room_id = room_id end
      chunk[#chunk + 1] = ev
    end
  end
  local rs = body.rooms or {}
  local ids = {}
  for room_id in pairs(rs.join or {}) do ids[#ids + 1] = room_id end
  table_sort(ids)
  for _, room_id in ipairs(ids) do
    local sec = rs.join[room_id]
    add_all(list(sec.timeline), room_id)
    add_all(list(sec.ephemeral), room_id)
  end
  for room_id, sec in pairs(rs.leave or {}) do add_all(list(sec.timeline), room_id) end
  add_all(list(body.presence))
  return { chunk = chunk, start = from, ["end"] = body.next_batch }
end

-- GET /rooms/{roomId}/initialSync: /messages backwards from now, flipped
-- into time order, and the room's current state (the state the user may
-- see: at their leave when they left).
local function room_initial_sync(hs, req)
  local room_id = req.params.roomId
  local limit = limit_arg(req)
  local now = sync_token.format(sync_token.current(hs))
  local page = sync_api.messages(hs, request.new { method = "GET", path = req.path, headers = {},
    params = { roomId = room_id }, args = { dir = { "b" }, limit = { tostring(limit) }, from = { now } },
    user_id = req.user_id, device_id = req.device_id })
  if errors.is(page) then return page end
  local chunk = json.array {}
  local newest_first = page.chunk
  for i = #newest_first, 1, -1 do chunk[#chunk + 1] = newest_first[i] end
  with_room(chunk, room_id)
  local m = hs.rooms:state_event(room_id, "m.room.member", req.user_id)
  local membership = m and ljson.is_object(m.content) and m.content.membership or nil
  local state_map
  if (membership == "leave" or membership == "ban") and visibility.current_setting(hs, room_id) ~= "world_readable" then
    state_map = hs.rooms:state_at(m.event_id)
  else
    state_map = hs.rooms:current_state(room_id)
  end
  local ids = {}
  for _, id in pairs(state_map or {}) do ids[#ids + 1] = id end
  table_sort(ids)
  local loaded = hs.store:events(ids)
  local state = {}
  for _, id in ipairs(ids) do if loaded[id] then state[#state + 1] = loaded[id][1] end end
  local clients = client_events.clients({ store = hs.store, user_id = req.user_id, device_id = req.device_id,
    room_id = room_id }, state)
  -- the room's account data of the user
  local ad = json.array {}
  local store = hs.store
  for _, c in ipairs(store:account_data_changes(req.user_id, 0, store:account_data_position())) do
    if c[1] == room_id then
      local content = json.decode(c[3])
      if ljson.is_object(content) then ad[#ad + 1] = { type = c[2], content = content } end
    end
  end
  -- the presence of the joined members (those who have one)
  local pres = json.array {}
  if hs.config.presence ~= false then
    local t = core.now_ms()
    for _, user_id in ipairs(store:current_members(room_id, "join")) do
      local p = store:presence_of(user_id)
      if p then
        local content = presence_mod.format(p, t)
        content.user_id = user_id
        pres[#pres + 1] = { type = "m.presence", sender = user_id, content = content }
      end
    end
  end
  return { room_id = room_id, membership = membership, visibility = room_visibility(hs, room_id),
    messages = { chunk = chunk, start = page["end"] or now, ["end"] = now },
    state = with_room(clients, room_id), presence = pres, account_data = ad }
end

legacy.routes = {
  { "GET", V3 .. "/events", events, auth = true, guest = true },
  { "GET", V3 .. "/initialSync", initial_sync, auth = true },
  { "GET", V3 .. "/rooms/{roomId}/initialSync", room_initial_sync, auth = true, guest = true },
}

return legacy
