-- loom.federation.backfill: older history of a room from other servers.
--
--   local backfill = require "loom.federation.backfill"
--   local n = backfill.room(hs, room_id, { limit = 100, timeout = 5000 })   -- inside a task
--
-- The room's backward extremities (prev_events this server does not hold)
-- are asked for with /backfill from the other servers joined to the room, in
-- turn, until one answers. The events that come back are stored oldest
-- first with negative stream orderings (they never show up as new in
-- /sync): those whose prev_events are all held get their state from them;
-- the oldest, whose prev_events lie further back, get the state before them
-- from the server (/state_ids). Backfilled events are checked as any
-- received event, except against the current state (old history is not
-- soft-failed for what changed since).
local ipairs, tostring, type, table_sort, math_min = ipairs, tostring, type, table.sort, math.min
local ljson = require "loom.json"
local event_mod = require "loom.room.event"
local version_mod = require "loom.room.version"
local receive = require "loom.federation.receive"
local async = require "loom.async"
local uv = require "luv"
local inbound = require "loom.federation.inbound"
local fedclient = require "loom.federation.client"

local is_object, is_array = ljson.is_object, ljson.is_array
local E = fedclient.encode

local _ENV = nil -- luacheck: ignore 211

local backfill = {}

local DEFAULT_LIMIT = 100
local MAX_EXTREMITIES = 20

local in_graph = inbound.in_graph

--- backfill.room(hs, room_id, opts) -> number of events stored (0 when
-- there was nothing to fetch or nobody answered). opts: limit, timeout (ms
-- per /backfill request; a client waiting on /messages is not kept long).
function backfill.room(hs, room_id, opts)
  opts = opts or {}
  local store = hs.store
  local rn = store:room_nid(room_id)
  if not rn then return 0 end
  local version = version_mod.get(store:room_version(room_id))
  if not version then return 0 end
  local extremities = store:backward_extremities(room_id)
  if #extremities == 0 then return 0 end
  local v = {}
  for i = 1, math_min(#extremities, MAX_EXTREMITIES) do v[i] = extremities[i] end
  local servers = store:joined_servers(rn)
  for _, server in ipairs(servers) do
    if server ~= hs.server_name then
      local status, body = hs.federation:request(server, "GET", "/_matrix/federation/v1/backfill/" .. E(room_id),
        { query = { v = v, limit = tostring(opts.limit or DEFAULT_LIMIT) }, timeout = opts.timeout })
      if status == 200 and is_object(body) and is_array(body.pdus) then
        local list = {}
        for _, e in ipairs(body.pdus) do
          if is_object(e) and e.room_id == room_id then
            e.event_id = event_mod.compute_id(version, e)
            if e.event_id and not in_graph(store, e.event_id) then list[#list + 1] = e end
          end
        end
        table_sort(list, function(a, b)
          local da, db = type(a.depth) == "number" and a.depth or 0, type(b.depth) == "number" and b.depth or 0
          if da ~= db then return da < db end
          return a.event_id < b.event_id
        end)
        local keys = receive.prefetch_keys(hs, version, list)
        local stored = 0
        for _, e in ipairs(list) do
          local missing = false
          for _, p in ipairs(is_array(e.prev_events) and e.prev_events or {}) do
            if type(p) ~= "string" or not in_graph(store, p) then missing = true end
          end
          local state
          if missing then state = inbound.fetch_state(hs, server, version, e) end
          if (not missing or state) and inbound.fill_auth(hs, server, version, e) then
            local r, err = hs.rooms:receive(e, { keys = keys, room_version = version.id, state = state,
              backfilled = true })
            if r then stored = stored + 1
            else hs.server:log("info", "backfill %s: %s: %s", room_id, tostring(e.event_id), tostring(err)) end
          end
        end
        if #list > 0 then return stored end
      end
    end
  end
  return 0
end

--- backfill.within(hs, room_id, opts, wait_ms) -> done, stored: runs
-- backfill.room for the room in a task of its own (one per room at a time:
-- a second caller waits for the same one) and waits for it at most
-- wait_ms. done is false when it is still running then; it goes on, and
-- what it stores is there for the next request. Inside a task.
function backfill.within(hs, room_id, opts, wait_ms)
  local running = hs.backfilling
  if not running then running = {}; hs.backfilling = running end
  local job = running[room_id]
  if not job then
    job = { done = false, n = 0, waiters = {} }
    running[room_id] = job
    async.spawn(function() return backfill.room(hs, room_id, opts) end, nil, function(ok, n)
      job.done, job.n = true, ok and n or 0
      running[room_id] = nil
      for _, w in ipairs(job.waiters) do w() end
    end)
  end
  if job.done then return true, job.n end
  async.wait(function(wake)
    local fired = false
    local timer = uv.new_timer()
    local function once()
      if fired then return end
      fired = true
      timer:close()
      wake()
    end
    job.waiters[#job.waiters + 1] = once
    timer:start(wait_ms, 0, once)
  end)
  return job.done, job.n
end

return backfill
