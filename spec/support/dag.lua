-- Random room DAGs for store tests: forks, merges, outliers, backfilled
-- history, rejected and soft-failed events, and a model of what the store
-- should hold, computed the slow, obvious way.
local _M = {}

local function event(room, i, prevs, depth, ty)
  local ev = {
    room_id = room,
    type = ty or "m.room.message",
    sender = ("@u%d:test"):format(i % 5),
    depth = depth,
    origin_server_ts = 1000 + i,
    prev_events = prevs,
    content = { body = "event " .. i },
    auth_events = {},
  }
  if i % 7 == 0 then ev.type = "m.room.member"; ev.state_key = ev.sender; ev.content = { membership = "join" } end
  if i % 11 == 0 then ev.content.url = "mxc://test/" .. i end
  return ev
end

--- A random DAG of n events: list of { id, ev } in creation order. Each event
-- names 1-3 earlier events as prev_events, usually the newest ones, sometimes
-- an older one (a fork).
function _M.generate(rng, room, n)
  local json = require("loom.core").json
  local list, tips = {}, {}
  for i = 1, n do
    local prevs, depth = {}, 1
    if i > 1 then
      local want = rng(1, 10) <= 7 and 1 or rng(2, 3)
      local seen = {}
      for _ = 1, want do
        local pick
        if #tips > 0 and rng(1, 10) <= 8 then pick = tips[rng(1, #tips)]
        else pick = list[rng(math.max(1, #list - 30), #list)] end
        if not seen[pick.id] then
          seen[pick.id] = true
          prevs[#prevs + 1] = pick.id
          if pick.ev.depth + 1 > depth then depth = pick.ev.depth + 1 end
        end
      end
      -- prev_events that are now referenced stop being tips
      local keep = {}
      for _, t in ipairs(tips) do if not seen[t.id] then keep[#keep + 1] = t end end
      tips = keep
    end
    local item = { id = ("$%s_%d"):format(room:sub(2, 3), i), ev = event(room, i, json.array(prevs), depth) }
    list[#list + 1] = item
    tips[#tips + 1] = item
    -- occasionally start a fork from an older tip
    if rng(1, 20) == 1 and #list > 3 then tips[#tips + 1] = list[rng(1, #list - 1)] end
  end
  return list
end

--- A persist plan: the newer part of the DAG arrives live (with some events
-- first seen as outliers, some rejected or soft-failed), the older part
-- arrives afterwards by backfill, newest first.
function _M.plan(rng, list)
  local n = #list
  local cut = math.max(1, n // 3)
  local steps = {}
  for i = cut + 1, n do
    local item = list[i]
    local r = rng(1, 40)
    if r == 1 then
      steps[#steps + 1] = { item, { outlier = true } }
      if rng(1, 2) == 1 then steps[#steps + 1] = { item, {} } end   -- joins the DAG later
    elseif r == 2 then
      steps[#steps + 1] = { item, { rejected = "test rejection" } }
    elseif r == 3 then
      steps[#steps + 1] = { item, { soft_failed = true } }
    else
      steps[#steps + 1] = { item, {} }
    end
  end
  for i = cut, 1, -1 do
    steps[#steps + 1] = { list[i], { backfilled = true } }
  end
  -- a few events whose prev_events we never hear of
  return steps
end

--- The model: what the store must say about the persisted events.
function _M.model()
  return { events = {}, order = {} }
end

function _M.apply(model, id, ev, opts, stream)
  local m = model.events[id]
  if m and (not m.outlier or opts.outlier) then return end
  model.events[id] = {
    id = id, ev = ev, outlier = opts.outlier or false,
    rejected = opts.rejected and true or false,
    soft_failed = opts.soft_failed or false,
    backfilled = stream < 0,
    stream = stream,
  }
end

local function valid(m) return not m.outlier and not m.rejected and not m.soft_failed end
local function live(m) return valid(m) and not m.backfilled end

--- Brute-force forward and backward extremities of a room, sorted. Forward:
-- live events no live event points at (backfill never changes them).
function _M.extremities(model, room)
  local referenced, fwd, bwd, seen = {}, {}, {}, {}
  for _, m in pairs(model.events) do
    if m.ev.room_id == room and live(m) then
      for _, p in ipairs(m.ev.prev_events) do referenced[p] = true end
    end
  end
  for id, m in pairs(model.events) do
    if m.ev.room_id == room and live(m) and not referenced[id] then fwd[#fwd + 1] = id end
  end
  for _, m in pairs(model.events) do
    if m.ev.room_id == room and not m.outlier then
      for _, p in ipairs(m.ev.prev_events) do
        local pm = model.events[p]
        if not seen[p] and not (pm and not pm.outlier and pm.ev.room_id == room) then
          seen[p] = true
          bwd[#bwd + 1] = p
        end
      end
    end
  end
  table.sort(fwd); table.sort(bwd)
  return fwd, bwd
end

--- The timeline of a room in (depth, stream) order: list of ids.
function _M.timeline(model, room, keep)
  local list = {}
  for id, m in pairs(model.events) do
    if m.ev.room_id == room and valid(m) and (not keep or keep(m)) then
      list[#list + 1] = { id = id, depth = m.ev.depth, stream = m.stream }
    end
  end
  table.sort(list, function(a, b)
    if a.depth ~= b.depth then return a.depth < b.depth end
    return a.stream < b.stream
  end)
  local ids = {}
  for i, e in ipairs(list) do ids[i] = e.id end
  return ids, list
end

return _M
