-- loom.api.client.sync: GET /sync, GET /rooms/{roomId}/messages,
-- GET /rooms/{roomId}/context/{eventId}, POST /user/{userId}/filter,
-- GET /user/{userId}/filter/{filterId}. See docs/sync.md.
local core = require "loom.core"
local errors = require "loom.http.errors"
local response = require "loom.http.response"
local store_filter = require "loom.store.filter"
local visibility = require "loom.room.visibility"
local fed_backfill = require "loom.federation.backfill"
-- how long a backfill waits for each server asked for older history, and
-- how long /messages waits for the backfill before answering with what is
-- here (ms)
local BACKFILL_TIMEOUT, BACKFILL_WAIT = 5000, 1500
local filters = require "loom.sync.filters"
local sync_events = require "loom.api.client.events"
local sync_token = require "loom.sync.token"
local engine = require "loom.sync.engine"
local ljson = require "loom.json"
local presence = require "loom.sync.presence"

local json = core.json
local ipairs, pairs, tostring, select = ipairs, pairs, tostring, select
local assert, table, math_type, setmetatable = assert, table, math.type, setmetatable

local _ENV = nil -- luacheck: ignore 211

local sync_api = {}

local V3 = "/_matrix/client/v3"
local MAX_LIMIT = 1000
local MAX_TIMEOUT = 600000

local function invalid(msg) return errors.new("M_INVALID_PARAM", msg) end

-- May the user read this room's history at all? A user who never had a
-- membership there reads only world_readable rooms.
local function check_room_access(hs, user_id, room_id)
  if not hs.store:room_nid(room_id) then
    return errors.new("M_FORBIDDEN", "You are not a member of this room")
  end
  if visibility.ever_member(hs, user_id, room_id) then return nil end
  if visibility.current_setting(hs, room_id) == "world_readable" then return nil end
  return errors.new("M_FORBIDDEN", "You are not a member of this room")
end

-- A RoomEventFilter from the `filter` query parameter (inline JSON).
local function room_event_filter(req)
  local param = req:arg("filter")
  if param == nil or param == "" then return {} end
  local def = json.decode(param)
  if not ljson.is_object(def) then return nil, invalid("filter must be a JSON object") end
  local ok, err = store_filter.compile(def)
  if not ok then return nil, invalid(err) end
  return def
end

-- Member events (current state) of the senders of events, plus the user's.
local function lazy_members(hs, req, room_id, events)
  local seen, out = {}, {}
  local function add(user)
    if seen[user] then return end
    seen[user] = true
    local ev = hs.rooms:state_event(room_id, "m.room.member", user)
    if ev then out[#out + 1] = ev end
  end
  for _, ev in ipairs(events) do add(ev.sender) end
  add(req.user_id)
  return out
end

local function ectx(hs, req, room_id)
  return { store = hs.store, user_id = req.user_id, device_id = req.device_id, room_id = room_id }
end

-- What /messages and /context read a room's timeline with: the limit
-- (capped at MAX_LIMIT) and the room event filter, once the user may read
-- the room; or nil and the error response.
local function timeline_args(hs, req, room_id)
  local limit = req:arg_integer("limit", 10, 0)
  if limit > MAX_LIMIT then limit = MAX_LIMIT end
  local def, ferr = room_event_filter(req)
  if not def then return nil, ferr end
  local denied = check_room_access(hs, req.user_id, room_id)
  if denied then return nil, denied end
  return limit, def
end

-- The event a departed user's view of the room ends at: their current
-- leave or ban (nil while they are in the room, invited or knocking, and in
-- a world_readable room, whose history anyone may read).
local function departed_at(hs, user_id, room_id)
  local ev = hs.rooms:state_event(room_id, "m.room.member", user_id)
  local m = ev and ljson.is_object(ev.content) and ev.content.membership
  if m ~= "leave" and m ~= "ban" then return nil end
  if visibility.current_setting(hs, room_id) == "world_readable" then return nil end
  return ev.event_id
end

-- At most this many events are read for one /messages page while history
-- visibility hides them; the page then ends early with an `end` token.
local SCAN_MAX = 2000
-- Events read per round beyond what the page still needs.
local SCAN_BATCH = 50

local function record_of(records, event_id)
  for _, rec in ipairs(records) do
    if rec.event_id == event_id then return rec end
  end
  return nil
end

-- One /messages page of `limit` events the user may see: pages are read
-- and filtered until enough are visible (or the room, or the scan budget,
-- runs out), so hidden events never make a page come back short or empty
-- while visible ones remain. Returns the events, the store's first page
-- (for `start`) and the `end` token (nil when nothing is left), or nil,
-- message, code from the store.
local function visible_page(hs, req, room_id, from, opts, limit)
  local shown, first, scanned = {}, nil, 0
  local ignored = hs.store:ignored_users(req.user_id)
  while true do
    local want = limit - #shown
    local page, err, code = hs.store:paginate(room_id, from, { dir = opts.dir, to = opts.to, filter = opts.filter,
      until_event = opts.until_event, limit = want > 0 and want + SCAN_BATCH or 0 })
    if not page then return nil, err, code end
    first = first or page
    local decoded = assert(sync_events.decode_records(hs.store, page.events))
    local seen = visibility.filter(hs, req.user_id, room_id, decoded, ignored)
    if #seen > want then
      -- more than the page needs: end at the last event kept
      for i = 1, want do shown[#shown + 1] = seen[i] end
      local rec = assert(record_of(page.events, seen[want].event_id))
      local before, after = core.token.for_event(rec.depth, rec.stream_ordering)
      return shown, first, tostring(opts.dir == "b" and before or after)
    end
    for _, e in ipairs(seen) do shown[#shown + 1] = e end
    scanned = scanned + #page.events
    if #shown >= limit or not page.next or scanned >= SCAN_MAX then
      return shown, first, page.next or page.resume
    end
    from = page.next
  end
end

local function messages(hs, req)
  local room_id = req.params.roomId
  local dir = req:arg("dir")
  if dir ~= "b" and dir ~= "f" then return invalid("dir must be 'b' or 'f'") end
  local from_param, to_param = req:arg("from"), req:arg("to")
  local from, to, terr
  local now = sync_token.current(hs)
  if from_param ~= nil and from_param ~= "" then
    from, terr = sync_token.to_store(from_param, now)
    if not from then return invalid("from: " .. terr) end
  end
  if to_param ~= nil and to_param ~= "" then
    to, terr = sync_token.to_store(to_param, now)
    if not to then return invalid("to: " .. terr) end
  end
  local limit, def = timeline_args(hs, req, room_id)
  if not limit then return def end
  if math_type(def.limit) == "integer" and def.limit >= 0 and def.limit < limit then limit = def.limit end
  local popts = { dir = dir, to = to, filter = def, until_event = departed_at(hs, req.user_id, room_id) }
  local shown, page, stop = visible_page(hs, req, room_id, from, popts, limit)
  if shown and dir == "b" and #shown < limit and hs.federation_on
      and #hs.store:backward_extremities(room_id) > 0 then
    -- the start of what this server holds: older history from the room's
    -- other servers (waited for a short while), then the page again
    local done, stored = fed_backfill.within(hs, room_id, { limit = limit, timeout = BACKFILL_TIMEOUT },
      BACKFILL_WAIT)
    if done and stored > 0 then
      shown, page, stop = visible_page(hs, req, room_id, from, popts, limit)
    elseif not done and not stop then
      -- still fetching: what is here now, and an end token that asks again
      -- from the oldest event shown once the backfill has landed
      local oldest, meta = shown[#shown], nil
      if oldest then meta = select(2, hs.store:event(oldest.event_id)) end
      if meta then
        local before = core.token.for_event(meta.depth, meta.stream_ordering)
        stop = tostring(before)
      else
        stop = (from_param ~= nil and from_param ~= "") and from_param or (page and page.start)
      end
    end
  end
  if not shown then
    local err, code = page, stop
    if code == "bad_token" or code == "bad_param" or code == "bad_filter" then return invalid(err) end
    return hs:error(err, code)
  end
  local body = {
    chunk = sync_events.clients(ectx(hs, req, room_id), shown),
    start = from_param ~= nil and from_param ~= "" and from_param or page.start,
    -- a forward page at the live end still names where the next one starts
    ["end"] = stop,
  }
  if def.lazy_load_members == true then
    body.state = sync_events.clients(ectx(hs, req, room_id), lazy_members(hs, req, room_id, shown))
  end
  return body
end

local function context(hs, req)
  local room_id, event_id = req.params.roomId, req.params.eventId
  local limit, def = timeline_args(hs, req, room_id)
  if not limit then return def end
  local ev, meta = hs.store:event(event_id)
  local ignored = hs.store:ignored_users(req.user_id)
  if not ev or meta.room_id ~= room_id or not visibility.can_see(hs, req.user_id, room_id, ev, ignored) then
    return errors.new("M_NOT_FOUND", "Event not found")
  end
  local before_n = limit // 2
  local after_n = limit - before_n
  local ctx, err, code = hs.store:context(room_id, event_id, before_n, after_n, def,
    departed_at(hs, req.user_id, room_id))
  if not ctx then
    if code == "not_found" then return errors.new("M_NOT_FOUND", "Event not found") end
    if code == "bad_filter" or code == "bad_param" then return invalid(err) end
    return hs:error(err, code)
  end
  local before = visibility.filter(hs, req.user_id, room_id, assert(sync_events.decode_records(hs.store, ctx.before)),
    ignored)
  local after = visibility.filter(hs, req.user_id, room_id, assert(sync_events.decode_records(hs.store, ctx.after)),
    ignored)
  local last = after[#after] or ev
  local state = {}
  local map = hs.rooms:state_at(last.event_id)
  if map then
    local ids = {}
    for _, id in pairs(map) do ids[#ids + 1] = id end
    table.sort(ids)
    local loaded = hs.store:events(ids)
    for _, id in ipairs(ids) do if loaded[id] then state[#state + 1] = loaded[id][1] end end
    if def.lazy_load_members == true then
      local senders = { [req.user_id] = true, [ev.sender] = true }
      for _, e in ipairs(before) do senders[e.sender] = true end
      for _, e in ipairs(after) do senders[e.sender] = true end
      local kept = {}
      for _, s in ipairs(state) do
        if s.type ~= "m.room.member" or senders[s.state_key] then kept[#kept + 1] = s end
      end
      state = kept
    end
  end
  local c = ectx(hs, req, room_id)
  return {
    event = sync_events.clients(c, { ev })[1],
    events_before = sync_events.clients(c, before),
    events_after = sync_events.clients(c, after),
    start = ctx.start,
    ["end"] = ctx["end"],
    state = sync_events.clients(c, state),
  }
end

-- A to-be-closed value that calls its first element on close.
local CALL_ON_CLOSE = { __close = function(t) t[1]() end }

local function sync(hs, req)
  local since
  local since_param = req:arg("since")
  if since_param ~= nil and since_param ~= "" then
    local err
    since, err = sync_token.parse(since_param)
    if since then since, err = sync_token.check(since, sync_token.current(hs)) end
    if not since then return invalid(err) end
  end
  local timeout = req:arg_integer("timeout", 0, 0)
  if timeout > MAX_TIMEOUT then timeout = MAX_TIMEOUT end
  local full_state = req:arg("full_state") == "true"
  local fdef, ferr = filters.from_param(hs.store, req.user_id, req:arg("filter"))
  if not fdef then return invalid(ferr) end
  local set_presence = req:arg("set_presence")
  if set_presence == nil or set_presence == "" then set_presence = "online" end
  if not presence.STATES[set_presence] then
    return invalid("set_presence must be one of online, unavailable, offline")
  end
  local opts = { user_id = req.user_id, device_id = req.device_id, since = since, full_state = full_state,
    filter = fdef }
  return sync_api.wait(hs, opts, timeout, set_presence)
end

--- The sync engine's answer for opts (loom.sync.engine.sync), waiting up to
-- timeout ms for news when opts.since is set (and not full_state); the user
-- counts as syncing with presence set_presence meanwhile. Also behind the
-- deprecated GET /events (loom.api.client.legacy).
function sync_api.wait(hs, opts, timeout, set_presence)
  -- luacheck: push ignore 211
  local syncing <close> = setmetatable({ hs.presence:syncing(opts.user_id, set_presence) }, CALL_ON_CLOSE)
  -- luacheck: pop
  local deadline = core.now_ms() + timeout
  while true do
    local body, has_data = engine.sync(hs, opts)
    local left = deadline - core.now_ms()
    if has_data or not opts.since or opts.full_state or left <= 0 then return body end
    body = nil -- luacheck: ignore 311 (not kept while waiting: 10,000 waiting syncs hold none)
    local woken = hs.notifier:wait(opts.user_id, engine.watch_rooms(hs, opts.user_id), left)
    if not woken then
      return (engine.sync(hs, opts))
    end
  end
end

-- GET /sync: the answer is encoded first, then sync/response observers see
-- it (what they might change is no longer what is sent).
local function sync_route(hs, req)
  local body = sync(hs, req)
  if errors.is(body) then return body end
  local resp = response.json(200, body)
  if not resp then return body end     -- the dispatcher reports what does not encode
  local since = req:arg("since")
  hs.server:observe("sync/response", body, { user_id = req.user_id, device_id = req.device_id,
    since = since ~= "" and since or nil, next_batch = body.next_batch, full_state = req:arg("full_state") == "true" })
  return resp
end

local function post_filter(hs, req)
  if req.params.userId ~= req.user_id then
    return errors.new("M_FORBIDDEN", "Cannot create filters for other users")
  end
  local def = req:json()
  local ok, err = filters.validate(def)
  if not ok then return errors.new("M_BAD_JSON", err) end
  local id, ierr, code = filters.create(hs.store, req.user_id, def)
  if not id then return hs:error(ierr, code) end
  return { filter_id = id }
end

local function get_filter(hs, req)
  if req.params.userId ~= req.user_id then
    return errors.new("M_FORBIDDEN", "Cannot get filters for other users")   -- as Synapse does
  end
  local def = filters.get(hs.store, req.user_id, req.params.filterId)
  if not def then return errors.new("M_NOT_FOUND", "Unknown filter") end
  return def
end

--- The sync endpoints: { method, path, handler(hs, req), auth = bool },
-- installed by loom.api.install.
--- GET /rooms/{roomId}/messages as a function of a request (also behind the
-- deprecated GET /rooms/{roomId}/initialSync).
sync_api.messages = messages

sync_api.routes = {
  { "GET", V3 .. "/sync", sync_route, auth = true },
  { "GET", V3 .. "/rooms/{roomId}/messages", messages, auth = true },
  { "GET", V3 .. "/rooms/{roomId}/context/{eventId}", context, auth = true },
  { "POST", V3 .. "/user/{userId}/filter", post_filter, auth = true },
  { "GET", V3 .. "/user/{userId}/filter/{filterId}", get_filter, auth = true },
}

return sync_api
