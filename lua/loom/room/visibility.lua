-- loom.room.visibility: history visibility (m.room.history_visibility),
-- judged by the room state before each event.
--
--   local visibility = require "loom.room.visibility"
--   if visibility.can_see(hs, user_id, room_id, event) then ... end
--   local shown = visibility.filter(hs, user_id, room_id, events)
--   local shown = visibility.filter(hs, user_id, room_id, events, hs.store:ignored_users(user_id))
--
-- The rules (Client-Server API, "History visibility"), in order:
--   * a user always sees their own membership events;
--   * world_readable: everyone sees the event;
--   * the user was joined at the event: visible;
--   * shared: visible if the user joined the room at any point after it
--     (which includes being joined now);
--   * invited: visible if the user was invited at the event;
--   * otherwise (joined, or none of the above) hidden.
-- For an m.room.history_visibility event the more permissive of the states
-- before and after it applies. The default setting is "shared".
local ipairs, type, assert = ipairs, type, assert
local redact = require "loom.room.redact"

local _ENV = nil -- luacheck: ignore 211

local visibility = {}

local RANK = { world_readable = 4, shared = 3, invited = 2, joined = 1 }

--- The user's membership history in a room (as seen by this server):
-- whether the user ever had a membership event there.
function visibility.ever_member(hs, user_id, room_id)
  local store = hs.store
  local rn = store:room_nid(room_id)
  if not rn then return false end
  return store:ever_member(user_id, rn)
end

-- history_visibility and the user's membership in a snapshot (cached per
-- snapshot NID in `cache`).
local function snapshot_info(store, snap, user_id, cache)
  local hit = cache[snap]
  if hit then return hit[1], hit[2] end
  local hv, membership = "shared", "leave"
  -- the snapshot was recorded with the event: failing to load it is an
  -- error, not a reason to guess the defaults
  local st = assert(store:load_state(snap))
  local hvt, mtn = store:type_nid("m.room.history_visibility"), store:type_nid("m.room.member")
  local ek, uk = store:state_key_nid(""), store:state_key_nid(user_id)
  local hv_nid = hvt and ek and st:get(hvt, ek)
  local m_nid = mtn and uk and st:get(mtn, uk)
  if hv_nid then
    local ev = store:event_by_nid(hv_nid)
    local v = ev and type(ev.content) == "table" and ev.content.history_visibility
    if type(v) == "string" and RANK[v] then hv = v end
  end
  if m_nid then
    local ev = store:event_by_nid(m_nid)
    local v = ev and type(ev.content) == "table" and ev.content.membership
    if type(v) == "string" then membership = v end
  end
  cache[snap] = { hv, membership }
  return hv, membership
end

local function allowed(hv, membership, stream, joins)
  if hv == "world_readable" or membership == "join" then return true end
  if hv == "shared" then
    for _, j in ipairs(joins) do if j > stream then return true end end
  end
  if hv == "invited" and membership == "invite" then return true end
  return false
end

--- The events of a room that a user may see, in the given order. `events`
-- are decoded events (tables with event_id, as hs.store:event returns).
-- Events the store has no state for (outliers) are left out, except the
-- user's own membership events. ignored (optional): { [user_id] = true },
-- the users the user ignores — their events are left out too, except state
-- events (Client-Server API "Ignoring Users"). metas (optional):
-- { [event_id] = { event_nid, stream_ordering } } the caller has already
-- (store records), so the store is not asked for them one by one.
function visibility.filter(hs, user_id, room_id, events, ignored, metas)
  local store = hs.store
  local out = {}
  if #events == 0 then return out end
  local rn = store:room_nid(room_id)
  if not rn then return out end
  local joins = store:join_positions(user_id, rn)
  local cache = {}
  for _, ev in ipairs(events) do
    local ok = false
    if ignored and ignored[ev.sender] and ev.state_key == nil then
      ok = false
    elseif ev.type == "m.room.member" and ev.state_key == user_id then
      ok = true
    else
      local meta = metas and metas[ev.event_id]
      if not meta then _, meta = store:event(ev.event_id) end
      local before, after
      if meta then before, after = store:event_state(meta.event_nid) end
      if before then
        local hv, membership = snapshot_info(store, before, user_id, cache)
        if ev.type == "m.room.history_visibility" and ev.state_key == "" and after then
          local hv2, m2 = snapshot_info(store, after, user_id, cache)
          ok = allowed(hv, membership, meta.stream_ordering, joins)
            or allowed(hv2, m2, meta.stream_ordering, joins)
        else
          ok = allowed(hv, membership, meta.stream_ordering, joins)
        end
      end
    end
    if ok then out[#out + 1] = ev end
  end
  return out
end

--- May the user see this event of the room? `event` is a decoded event
-- (with event_id) or an event ID; ignored as in visibility.filter.
function visibility.can_see(hs, user_id, room_id, event, ignored)
  if type(event) == "string" then
    event = hs.store:event(event)
    if not event then return false end
  end
  return #visibility.filter(hs, user_id, room_id, { event }, ignored) == 1
end

-- history_visibility in a snapshot, and whether any of `users` is joined
-- (or, for "invited", invited) in it.
local function server_allowed(store, snap, users, cache)
  local hit = cache[snap]
  if hit ~= nil then return hit end
  local st = assert(store:load_state(snap))
  local hvt, mtn = store:type_nid("m.room.history_visibility"), store:type_nid("m.room.member")
  local ek = store:state_key_nid("")
  local hv = "shared"
  local hv_nid = hvt and ek and st:get(hvt, ek)
  if hv_nid then
    local ev = store:event_by_nid(hv_nid)
    local v = ev and type(ev.content) == "table" and ev.content.history_visibility
    if type(v) == "string" and RANK[v] then hv = v end
  end
  local ok = hv == "world_readable" or hv == "shared"
  if not ok and mtn then
    for _, u in ipairs(users) do
      local uk = store:state_key_nid(u)
      local n = uk and st:get(mtn, uk)
      local ev = n and store:event_by_nid(n)
      local m = ev and type(ev.content) == "table" and ev.content.membership
      if m == "join" or (m == "invite" and hv == "invited") then ok = true; break end
    end
  end
  cache[snap] = ok
  return ok
end

--- What another server may be sent of a room's events (the Server-Server
-- API's history visibility: a server sees what its users could): each event
-- as is when the room's history was shared or world_readable before it, or a
-- user of the server was joined (invited, for "invited") then; otherwise
-- redacted (the spec's algorithm for the room version), so that the graph
-- stays whole. Outliers the store has no state for are redacted too.
function visibility.for_server(hs, server_name, room_id, events, room_version)
  local store = hs.store
  local out = {}
  local rn = store:room_nid(room_id)
  if not rn or #events == 0 then return out end
  local users = store:server_users(rn, server_name)
  local cache = {}
  for _, ev in ipairs(events) do
    local _, meta = store:event(ev.event_id)
    local before = meta and store:event_state(meta.event_nid)
    if before and server_allowed(store, before, users, cache) then
      out[#out + 1] = ev
    else
      local pruned = redact.event(ev, room_version)
      pruned.event_id = ev.event_id
      out[#out + 1] = pruned
    end
  end
  return out
end

--- The room's current history_visibility setting.
function visibility.current_setting(hs, room_id)
  local ev = hs.rooms:state_event(room_id, "m.room.history_visibility", "")
  local v = ev and type(ev.content) == "table" and ev.content.history_visibility
  if type(v) == "string" and RANK[v] then return v end
  return "shared"
end

return visibility
