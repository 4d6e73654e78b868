-- loom.federation.inbound: one PDU pushed by another server (a transaction),
-- stored with whatever it needs first.
--
--   local event_id, err = inbound.pdu(hs, origin, pdu)   -- inside a task
--   -- event_id nil: the PDU could not be identified (no result for it)
--   -- err: why it was not stored (the transaction's per-PDU error)
--
-- In order: the room must be known here (a room this server is in) and the
-- origin allowed by its ACL; an event stored already is done. Missing auth
-- events are fetched (/event_auth) and stored as outliers. Missing
-- prev_events are asked for with /get_missing_events (at most 10, above the
-- depth of the room's current extremities) and stored oldest first; when a
-- gap remains, the state before the event is fetched (/state_ids, then the
-- events not held, by /state or one by one) and the event is stored with it.
-- The prev_events still missing stay as backward extremities, where
-- /messages backfills. Checks on each event (format, signatures, hash,
-- auth, soft failure) are the room service's.
local type, ipairs, pairs, tostring, table_sort = type, ipairs, pairs, tostring, table.sort
local ljson = require "loom.json"
local event_mod = require "loom.room.event"
local version_mod = require "loom.room.version"
local acl = require "loom.federation.acl"
local receive = require "loom.federation.receive"
local fedclient = require "loom.federation.client"
local statemap = require "loom.room.statemap"
local stateres = require "loom.room.stateres"
local core = require "loom.core"

local is_object, is_array = ljson.is_object, ljson.is_array
local E = fedclient.encode
local json_array = core.json.array

local _ENV = nil -- luacheck: ignore 211

local inbound = {}

local MISSING_LIMIT = 10
local MAX_FETCH_ONE_BY_ONE = 20

--- inbound.in_graph(store, event_id): is the event stored as part of the
-- room's graph (not an outlier)?
local function in_graph(store, event_id)
  local ev, meta = store:event(event_id)
  return ev ~= nil and not meta.outlier
end

local function held(store, event_id) return store:event(event_id) ~= nil end

local function missing_prevs(store, ev)
  local out = {}
  for _, p in ipairs(is_array(ev.prev_events) and ev.prev_events or {}) do
    if type(p) == "string" and not in_graph(store, p) then out[#out + 1] = p end
  end
  return out
end

-- Stores the auth chain of ev (fetched from origin) as outliers when some of
-- ev's auth events are not held.
function inbound.fill_auth(hs, origin, version, ev)
  local store = hs.store
  local lacking = false
  for _, a in ipairs(is_array(ev.auth_events) and ev.auth_events or {}) do
    if type(a) == "string" and not held(store, a) then lacking = true end
  end
  if not lacking then return true end
  local status, body = hs.federation:request(origin, "GET",
    "/_matrix/federation/v1/event_auth/" .. E(ev.room_id) .. "/" .. E(ev.event_id))
  if status ~= 200 or not is_object(body) or not is_array(body.auth_chain) then
    return nil, "cannot fetch the auth chain: " .. tostring(status or body), status == nil
  end
  local keys = receive.prefetch_keys(hs, version, body.auth_chain)
  local n, err = hs.rooms:receive_outliers(body.auth_chain, { keys = keys, room_version = version.id })
  if not n then return nil, err end
  return true
end

-- Stores one event whose prev_events are all in the graph (or, with
-- state_ids, with that state before it).
local function store_event(hs, origin, version, ev, state_ids)
  local ok, err, transient = inbound.fill_auth(hs, origin, version, ev)
  if not ok then return nil, err, transient end
  local keys = receive.prefetch_keys(hs, version, { ev })
  local r, rerr = hs.rooms:receive(ev, { keys = keys, room_version = version.id, state = state_ids })
  if not r then return nil, tostring(rerr) end
  if r.rejected then return nil, "rejected: " .. tostring(r.rejected) end
  return true
end

--- inbound.fetch_state(hs, origin, version, ev) -> the event IDs of the
-- state before ev as origin has it (the events not held are fetched and
-- stored as outliers) | nil, message, transient.
local function fetch_state(hs, origin, version, ev)
  local store = hs.store
  local room_id = ev.room_id
  local status, body = hs.federation:request(origin, "GET", "/_matrix/federation/v1/state_ids/" .. E(room_id),
    { query = { event_id = ev.event_id } })
  if status ~= 200 or not is_object(body) or not is_array(body.pdu_ids) then
    return nil, "cannot fetch the state at " .. ev.event_id .. ": " .. tostring(status or body), status == nil
  end
  local want = {}
  for _, list in ipairs { body.pdu_ids, is_array(body.auth_chain_ids) and body.auth_chain_ids or {} } do
    for _, id in ipairs(list) do
      if type(id) == "string" and not held(store, id) then want[#want + 1] = id end
    end
  end
  local events = {}
  if #want > MAX_FETCH_ONE_BY_ONE then
    local s2, all = hs.federation:request(origin, "GET", "/_matrix/federation/v1/state/" .. E(room_id),
      { query = { event_id = ev.event_id } })
    if s2 ~= 200 or not is_object(all) then
      return nil, "cannot fetch the state events: " .. tostring(s2 or all), s2 == nil
    end
    for _, list in ipairs { all.auth_chain, all.pdus } do
      for _, e in ipairs(is_array(list) and list or {}) do events[#events + 1] = e end
    end
  else
    for _, id in ipairs(want) do
      local s3, one = hs.federation:request(origin, "GET", "/_matrix/federation/v1/event/" .. E(id))
      if s3 == 200 and is_object(one) and is_array(one.pdus) and is_object(one.pdus[1]) then
        events[#events + 1] = one.pdus[1]
      elseif s3 == nil then
        return nil, "cannot fetch " .. id .. ": " .. tostring(one), true
      end
    end
  end
  if #events > 0 then
    local keys = receive.prefetch_keys(hs, version, events)
    local n, err = hs.rooms:receive_outliers(events, { keys = keys, room_version = version.id })
    if not n then return nil, err end
  end
  local ids = {}
  for _, id in ipairs(body.pdu_ids) do if type(id) == "string" then ids[#ids + 1] = id end end
  return ids
end

local state_at_gap   -- below

-- Asks origin for the events between the room's extremities and ev; stores
-- those it can, oldest first.
local function fill_gap(hs, origin, version, ev)
  local store = hs.store
  local room_id = ev.room_id
  local earliest = store:forward_extremities(room_id)
  local min_depth
  local loaded = store:events(earliest)
  for _, id in ipairs(earliest) do
    local e = loaded[id]
    if e and (not min_depth or e[2].depth < min_depth) then min_depth = e[2].depth end
  end
  local status, body = hs.federation:request(origin, "POST",
    "/_matrix/federation/v1/get_missing_events/" .. E(room_id), { body = {
      earliest_events = json_array(earliest), latest_events = json_array { ev.event_id },
      limit = MISSING_LIMIT, min_depth = min_depth or 0 } })
  if status ~= 200 or not is_object(body) or not is_array(body.events) then return end
  local list = {}
  for _, e in ipairs(body.events) do
    if is_object(e) and e.room_id == room_id then
      e.event_id = event_mod.compute_id(version, e)
      list[#list + 1] = e
    end
  end
  table_sort(list, function(a, b) return (a.depth or 0) < (b.depth or 0) end)
  for _, e in ipairs(list) do
    if e.event_id and not in_graph(store, e.event_id) then
      local state
      if #missing_prevs(store, e) > 0 then state = state_at_gap(hs, origin, version, e) end
      local ok, err = store_event(hs, origin, version, e, state)
      if not ok then hs.server:log("info", "missing event %s from %s: %s", e.event_id, origin, tostring(err)) end
    end
  end
end

inbound.in_graph, inbound.fetch_state = in_graph, fetch_state

-- The state before ev when some of its prev_events are not in the graph:
-- for each prev held, the state after it (this server's view); for each
-- missing one, the state before it as origin answers /state_ids plus the
-- prev itself (fetched and stored as an outlier); these resolved together
-- (state resolution of the room's version) when they differ. Returns the
-- state's event IDs, or nil, message, transient.
function state_at_gap(hs, origin, version, ev)
  local store = hs.store
  local sets = {}
  for _, p in ipairs(is_array(ev.prev_events) and ev.prev_events or {}) do
    if type(p) == "string" then
      if in_graph(store, p) then
        local m = hs.rooms:state_at(p)
        if m then sets[#sets + 1] = m end
      else
        local ids, err, transient = fetch_state(hs, origin, version, { room_id = ev.room_id, event_id = p })
        if not ids then return nil, err, transient end
        if not store:event(p) then
          local s3, one = hs.federation:request(origin, "GET", "/_matrix/federation/v1/event/" .. E(p))
          if s3 == nil then return nil, "cannot fetch " .. p .. ": " .. tostring(one), true end
          if s3 == 200 and is_object(one) and is_array(one.pdus) and is_object(one.pdus[1]) then
            local keys = receive.prefetch_keys(hs, version, { one.pdus[1] })
            hs.rooms:receive_outliers({ one.pdus[1] }, { keys = keys, room_version = version.id })
          end
        end
        local evs = {}
        for _, id in ipairs(ids) do evs[#evs + 1] = store:event(id) end
        local m = statemap.from_events(evs)
        local pev, pmeta = store:event(p)
        if pev and type(pev.state_key) == "string" and not pmeta.rejected then
          m[statemap.key(pev.type, pev.state_key)] = p
        end
        sets[#sets + 1] = m
      end
    end
  end
  if #sets == 0 then return nil, "no state for any prev_event of " .. tostring(ev.event_id) end
  local result = sets[1]
  local same = true
  for i = 2, #sets do if not statemap.equal(sets[i], result) then same = false end end
  if not same then
    local err
    result, err = stateres.resolve(version, sets, function(id) return (store:event(id)) end)
    if not result then return nil, "resolving the state at a gap: " .. tostring(err) end
  end
  local out = {}
  for _, id in pairs(result) do out[#out + 1] = id end
  table_sort(out)
  return out
end

--- inbound.pdu(hs, origin, pdu) -> event_id, err, transient (true when
-- the failure was the origin not answering a request made for the PDU: the
-- transaction should be tried again rather than acknowledged)
function inbound.pdu(hs, origin, pdu)
  if not is_object(pdu) or type(pdu.room_id) ~= "string" then return nil end
  local store = hs.store
  local vid = store:room_version(pdu.room_id)
  if not vid then return nil end   -- a room this server is not in: ignored, as the spec allows
  local version = version_mod.get(vid)
  if not version then return nil end
  local id = event_mod.compute_id(version, pdu)
  if not id then return nil end
  pdu.event_id = id
  if acl.check(hs, pdu.room_id, origin) then return id, "server ACL forbids the origin" end
  if in_graph(store, id) then return id end
  if #missing_prevs(store, pdu) > 0 then fill_gap(hs, origin, version, pdu) end
  local state
  if #missing_prevs(store, pdu) > 0 then
    local err, transient
    state, err, transient = state_at_gap(hs, origin, version, pdu)
    if not state then return id, err, transient end
  end
  local ok, err, transient = store_event(hs, origin, version, pdu, state)
  if not ok then return id, err, transient end
  return id
end

return inbound
