-- loom.api.client.events: stored events in the Client-Server format.
--
-- A client event has event_id, type, sender, content, origin_server_ts,
-- room_id, state_key (state events), redacts (redactions; for room v11+,
-- where it lives in content, copied to the top level too) and unsigned
-- (age; transaction_id for the device that sent it; what the stored event's
-- unsigned already carried, such as redacted_because or prev_content).
local core = require "loom.core"
local filters = require "loom.sync.filters"
local redact = require "loom.room.redact"

local json = core.json
local ipairs, pairs, type, next = ipairs, pairs, type, next

local _ENV = nil -- luacheck: ignore 211

local client_events = {}

-- The fields a client event takes from the stored event: event_id, type,
-- sender, content, origin_server_ts, room_id, state_key, redacts.

--- Transaction IDs of events sent by this user's device: { [event_id] = txn_id }.
function client_events.txn_ids(store, user_id, device_id, events)
  if not device_id then return {} end
  local ids = {}
  for _, ev in ipairs(events) do if ev.sender == user_id then ids[#ids + 1] = ev.event_id end end
  return store:txn_ids(user_id, device_id, ids)
end

--- A client event from a decoded stored event (never modifies `ev`).
-- opts: now (ms), room_id (for events without one), txn (transaction ID),
-- fields (event_fields).
function client_events.client(ev, opts)
  -- (the fields written out: this runs for every event of every answer)
  local out = { event_id = ev.event_id, type = ev.type, sender = ev.sender, content = ev.content,
    origin_server_ts = ev.origin_server_ts, room_id = ev.room_id or opts.room_id, state_key = ev.state_key,
    redacts = ev.redacts }
  -- Room v11 moved `redacts` into content; clients still read the top level.
  if out.redacts == nil and ev.type == "m.room.redaction" and type(ev.content) == "table"
     and type(ev.content.redacts) == "string" then
    out.redacts = ev.content.redacts
  end
  local unsigned = {}
  if type(ev.unsigned) == "table" then
    for k, v in pairs(ev.unsigned) do unsigned[k] = v end
  end
  local now = opts.now or core.now_ms()
  if type(ev.origin_server_ts) == "number" then unsigned.age = now - ev.origin_server_ts end
  if opts.txn then unsigned.transaction_id = opts.txn end
  out.unsigned = unsigned
  if opts.fields then out = filters.apply_event_fields(out, opts.fields) end
  return out
end

-- The redactions that apply to some events: { [event_id] = redaction event }.
-- known: what prefetch_redactions found for some of them already.
local function redactions_for(store, events, known)
  local ids = {}
  local out = {}
  for _, ev in ipairs(events) do
    local id = ev.event_id
    if known and known.checked[id] then out[id] = known.found[id] else ids[#ids + 1] = id end
  end
  if #ids == 0 then return out end
  local found = store:redactions_of(ids)
  if #found == 0 then return out end
  local want = {}
  for i, r in ipairs(found) do want[i] = r[2] end
  local loaded = store:events(want)
  for _, r in ipairs(found) do
    local red = loaded[r[2]]
    if red and not out[r[1]] then out[r[1]] = red[1] end
  end
  return out
end

--- The redactions of many events (of many rooms) in one go, for
-- clients' ctx.redactions: { checked = { [event_id] = true },
-- found = { [event_id] = redaction event } }.
function client_events.prefetch_redactions(store, event_ids)
  local checked, events = {}, {}
  for i, id in ipairs(event_ids) do checked[id] = true; events[i] = { event_id = id } end
  return { checked = checked, found = redactions_for(store, events) }
end

--- The transaction IDs of many events (of many rooms) in one go, for
-- clients' ctx.txns: events = { { event_id, sender }, ... }; returns
-- { checked = { [event_id] = true }, found = { [event_id] = txn_id } }.
function client_events.prefetch_txn_ids(store, user_id, device_id, events)
  local checked = {}
  for _, ev in ipairs(events) do checked[ev.event_id] = true end
  return { checked = checked, found = client_events.txn_ids(store, user_id, device_id, events) }
end

-- Server-side aggregations (Client-Server API, "Aggregations of child
-- events"): unsigned["m.relations"] of events that are neither state events
-- nor redacted, computed for a whole page at once:
--   m.thread    { latest_event (client format, with its own aggregations),
--                 count, current_user_participated }
--   m.replace   the most recent valid replacement (same sender and type as
--               the original, neither a state event, the original not itself
--               a replacement; m.new_content an object unless encrypted):
--               the original's content is served unchanged
--   m.reference { chunk = [ { event_id }, ... ] }
-- Ignored users' children are left out. Annotations are not aggregated.
local function replaces_something(ev)
  local c = ev.content
  local r = type(c) == "table" and c["m.relates_to"]
  return type(r) == "table" and r.rel_type == "m.replace"
end

local function valid_replacement(orig, rep)
  if rep.sender ~= orig.sender or rep.type ~= orig.type or rep.state_key ~= nil then return false end
  if rep.type == "m.room.encrypted" then return true end
  local c = rep.content
  return type(c) == "table" and type(c["m.new_content"]) == "table"
end

--- What the aggregations of some events need, read for many events (of
-- many rooms) in one go, for clients' ctx.relations: { checked = { [id] =
-- true }, rows = store:relations_of_parents, threads = store:thread_summaries }.
function client_events.prefetch_relations(store, user_id, events, ignored)
  local ids, checked = {}, {}
  for _, ev in ipairs(events) do
    if ev.state_key == nil and not checked[ev.event_id] then
      checked[ev.event_id] = true; ids[#ids + 1] = ev.event_id
    end
  end
  ids = store:relations_unknown(ids)
  if #ids == 0 then return { checked = checked, rows = {}, threads = {} } end
  ignored = ignored or store:ignored_users(user_id)
  local rows, threads = store:relations_of_parents(ids, ignored), store:thread_summaries(ids, user_id, ignored)
  if next(ignored) == nil then
    -- nothing was left out: what has no rows has no relations that
    -- aggregate (until its next relation is stored)
    local found = {}
    for _, r in ipairs(rows) do found[r[1]] = true end
    for id in pairs(threads) do found[id] = true end
    store:note_relationless(ids, found)
  end
  return { checked = checked, rows = rows, threads = threads }
end

-- { [event_id] = m.relations } for the events of a page (ctx as clients).
local function aggregations(ctx, events, redactions)
  local want = {}
  local known = ctx.relations
  for _, ev in ipairs(events) do
    if ev.state_key == nil and not redactions[ev.event_id] and not (known and known.checked[ev.event_id]) then
      want[#want + 1] = ev
    end
  end
  local facts = #want > 0 and client_events.prefetch_relations(ctx.store, ctx.user_id, want, ctx.ignored) or nil
  local by_parent, threads = {}, {}
  for _, f in ipairs { known or false, facts or false } do
    if f then
      for _, r in ipairs(f.rows) do
        local list = by_parent[r[1]]
        if not list then list = {}; by_parent[r[1]] = list end
        list[#list + 1] = r
      end
      for id, t in pairs(f.threads) do threads[id] = t end
    end
  end
  -- the events the aggregations name, loaded together
  local load, picked = {}, {}
  for _, ev in ipairs(events) do
    local id = ev.event_id
    if ev.state_key == nil and not redactions[id] then
      local t = threads[id]
      if t and t.latest_id and not ctx.nested then load[#load + 1] = t.latest_id end
      if by_parent[id] then
        for _, r in ipairs(by_parent[id]) do
          if r[2] == "m.replace" and r[4] == ev.sender and r[5] == ev.type and r[6] == 0 then load[#load + 1] = r[3] end
        end
      end
    end
  end
  if #load == 0 and next(by_parent) == nil then return picked end
  local loaded = {}
  if #load > 0 then loaded = ctx.store:events(load) end
  local latest_events, latest_of = {}, {}
  for _, ev in ipairs(events) do
    local id = ev.event_id
    if ev.state_key == nil and not redactions[id] then
      local rel = {}
      local t = threads[id]
      if t and not ctx.nested then
        local l = t.latest_id and loaded[t.latest_id]
        if l then
          rel["m.thread"] = { count = t.count, current_user_participated = t.participated or ev.sender == ctx.user_id }
          latest_events[#latest_events + 1] = l[1]; latest_of[#latest_events] = id
        end
      end
      local refs, replacement = nil, nil
      for _, r in ipairs(by_parent[id] or {}) do
        if r[2] == "m.reference" then
          refs = refs or json.array {}
          refs[#refs + 1] = { event_id = r[3] }
        elseif loaded[r[3]] and not replaces_something(ev) and valid_replacement(ev, loaded[r[3]][1]) then
          replacement = loaded[r[3]][1]   -- rows come oldest first: the last valid one wins
        end
      end
      if refs then rel["m.reference"] = { chunk = refs } end
      if replacement then rel["m.replace"] = replacement end
      if next(rel) ~= nil then picked[id] = rel end
    end
  end
  local replaced = {}
  for _, rel in pairs(picked) do
    if rel["m.replace"] then replaced[#replaced + 1] = rel["m.replace"] end
  end
  if #replaced > 0 then
    local shown = client_events.clients({ store = ctx.store, user_id = ctx.user_id, room_id = ctx.room_id,
      nested = true, no_relations = true }, replaced)
    for _, rel in pairs(picked) do
      local rep = rel["m.replace"]
      if rep then
        for i, r in ipairs(replaced) do if r == rep then rel["m.replace"] = shown[i] end end
      end
    end
  end
  if #latest_events > 0 then
    -- the latest replies in the client format, with their own aggregations
    local shown = client_events.clients({ store = ctx.store, user_id = ctx.user_id, device_id = ctx.device_id,
      room_id = ctx.room_id, nested = true, ignored = ctx.ignored }, latest_events)
    for i, l in ipairs(shown) do picked[latest_of[i]]["m.thread"].latest_event = l end
  end
  return picked
end

--- Many client events (an array, json.array) for one room and user, with
-- redactions applied (the redacted form, unsigned.redacted_because) and
-- the server-side aggregations in unsigned["m.relations"] (not with
-- ctx.no_relations; ctx.relations: from prefetch_relations).
-- ctx: { store, user_id, device_id, room_id, fields, redactions (optional:
-- from prefetch_redactions), txns (optional: from prefetch_txn_ids) }.
function client_events.clients(ctx, events)
  local store = ctx.store
  local txns
  local known = ctx.txns
  if known then
    -- prefetched (prefetch_txn_ids): ask only about the events it did not cover
    local rest = {}
    for _, ev in ipairs(events) do if not known.checked[ev.event_id] then rest[#rest + 1] = ev end end
    txns = #rest > 0 and client_events.txn_ids(store, ctx.user_id, ctx.device_id, rest) or {}
    for _, ev in ipairs(events) do
      local id = known.found[ev.event_id]
      if id then txns[ev.event_id] = id end
    end
  else
    txns = client_events.txn_ids(store, ctx.user_id, ctx.device_id, events)
  end
  local redactions = redactions_for(store, events, ctx.redactions)
  local now = core.now_ms()
  local rels = not ctx.no_relations and aggregations(ctx, events, redactions) or {}
  local out = json.array {}
  for i, ev in ipairs(events) do
    local redaction = redactions[ev.event_id]
    if redaction then
      local room_id = ev.room_id or ctx.room_id
      ev = redact.event(ev, store:room_version(room_id) or "11")
      ev.unsigned = { redacted_because = client_events.client(redaction, { now = now, room_id = room_id }) }
    end
    local c = client_events.client(ev, { now = now, room_id = ctx.room_id, txn = txns[ev.event_id],
                                         fields = ctx.fields })
    local rel = rels[ev.event_id]
    if rel and type(c.unsigned) == "table" then c.unsigned["m.relations"] = rel end
    out[i] = c
  end
  return out
end

--- Decoded events for store records (event_nid fields), in order.
function client_events.decode_records(store, records)
  local nids = {}
  for i, r in ipairs(records) do nids[i] = r.event_nid end
  local loaded = store:events_by_nid(nids)
  local out = {}
  for _, r in ipairs(records) do
    local hit = loaded[r.event_nid]
    if hit then out[#out + 1] = hit[1] end
  end
  return out
end

--- A stripped state event (invite_state).
function client_events.stripped(ev)
  return { type = ev.type, state_key = ev.state_key, sender = ev.sender, content = ev.content }
end

return client_events
