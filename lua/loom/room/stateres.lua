-- loom.room.stateres: state resolution v2 (room versions 3 to 11) and v2.1
-- (room version 12). The graph work (auth chains, auth difference, conflicted
-- subgraph, the two orderings) runs in C over a loom.StateGraph; this module
-- loads the events, runs the iterative auth checks with loom.room.auth and
-- assembles the map. Contract, errors and an example: docs/stateres.md.
--
--   local stateres = require "loom.room.stateres"
--   local state = assert(stateres.resolve("11", { fork_a, fork_b }, fetch))
--
-- State maps are loom.room.statemap maps (key(type, state_key) -> event ID).
-- fetch(event_id) -> event table, rejected | nil. Nothing here depends on the
-- iteration order of a Lua table: sets are sorted or only tested for
-- membership, and both orderings are total orders ending on the event ID.

local type, ipairs, next, error, tostring, select = type, ipairs, next, error, tostring, select
local setmetatable = setmetatable
local string_pack, string_sub = string.pack, string.sub
local table_sort = table.sort
local math_type = math.type

local core = require "loom.core"
local auth = require "loom.room.auth"
local room_version = require "loom.room.version"
local ljson = require "loom.json"

local new_graph, assemble, is_graph = core.stateres.graph, core.stateres.assemble, core.stateres.is_graph

local _ENV = nil -- luacheck: ignore 211

local stateres = {}

local CREATE, POWER = "m.room.create", "m.room.power_levels"

-- ---- arguments -----------------------------------------------------------------

local function arg_error(n, fname, msg)
  error("bad argument #" .. n .. " to '" .. fname .. "' (" .. msg .. ")", 3)
end

-- The version table, or nil, message, code for a version loom does not speak.
local function get_version(version, fname)
  if type(version) == "string" then return room_version.get(version) end
  if room_version.is(version) then
    if not version.supported then
      return nil, "unsupported room version: " .. tostring(version.id), "unsupported_room_version"
    end
    return version
  end
  arg_error(1, fname, "room version string or table expected")
end

local function check_sets(state_sets, n, fname)
  if type(state_sets) ~= "table" then arg_error(n, fname, "array of state maps expected") end
  for i = 1, #state_sets do
    if type(state_sets[i]) ~= "table" then arg_error(n, fname, "state_sets[" .. i .. "] is not a table") end
  end
end

local function check_fetch(fetch, n, fname)
  if type(fetch) ~= "function" then arg_error(n, fname, "fetch function expected") end
end

local function check_opts(opts, n, fname)
  if opts == nil then return {} end
  if type(opts) ~= "table" then arg_error(n, fname, "options table expected") end
  local g = opts.graph
  if g ~= nil and not is_graph(g) then
    arg_error(n, fname, "opts.graph is not a loom.StateGraph")
  end
  return opts
end

-- ---- events ----------------------------------------------------------------------

-- fetch over events in loom's JSON form (loom.json.import: events another
-- JSON library decoded are converted). finish(...) passes a call's results
-- through, or nil, message, "bad_event" when some event could not be imported.
local function importing(fetch)
  local bad
  local function get(id)
    local ev, rej = fetch(id)
    if type(ev) ~= "table" then return ev, rej end
    local iev, msg = ljson.import(ev, "event")
    if not iev then
      bad = bad or ("event " .. tostring(id) .. ": " .. msg)
      return nil
    end
    return iev, rej
  end
  local function finish(...)
    if bad then return nil, bad, "bad_event" end
    return ...
  end
  return get, finish
end

-- A memo over fetch: get(id) -> event or nil; rejected[id] == true for events
-- fetch reported as rejected.
local function event_source(fetch)
  local by_id, rejected = {}, {}
  local function get(id)
    local ev = by_id[id]
    if ev == nil then
      local rej
      ev, rej = fetch(id)
      if type(ev) ~= "table" then return nil end
      by_id[id] = ev
      if rej then rejected[id] = true end
    end
    return ev
  end
  return get, rejected, by_id
end

-- Loads into g every event reachable from the node arrays given, through
-- fetch: one C call per breadth-first batch.
local function load_closure(g, fetch, ...)
  while true do
    local frontier, ids = g:unloaded(...)
    if #frontier == 0 then return true end
    repeat
      local evs = {}
      for i = 1, #frontier do
        local ev = fetch(ids[i])
        if ev == nil then return nil, "unknown event " .. ids[i], "missing_event" end
        evs[i] = ev
      end
      local msg, code
      frontier, msg, code = g:load(frontier, evs)
      if frontier == nil then return nil, msg, code end
      ids = msg
    until #frontier == 0
  end
end

-- The graph to work in and its closer: opts.graph (kept), or a new one
-- closed when the call ends.
local function graph_for(opts)
  if opts.graph then return opts.graph, nil end
  local g = new_graph()
  return g, g
end

-- Splits the state sets and loads their events with their auth chains.
-- Returns conflicted (key -> true), common (nodes of the unconflicted IDs),
-- set_nodes (per set, its nodes under conflicted keys) and conflicted_nodes
-- (sorted, each once); or nil, message, code.
local function prepare(g, fetch, state_sets, copy)
  local conflicted, common, set_nodes, conflicted_nodes, keys, ids = g:separate(state_sets, copy)
  if next(conflicted) ~= nil then
    local ok, msg, code = load_closure(g, fetch, common, conflicted_nodes)
    if not ok then return nil, msg, code end
  end
  return conflicted, common, set_nodes, conflicted_nodes, keys, ids
end

-- ---- the algorithm ---------------------------------------------------------------------

local function union_sorted(...)
  local seen, out = {}, {}
  for a = 1, select("#", ...) do
    local list = (select(a, ...))
    for i = 1, #list do
      local v = list[i]
      if not seen[v] then
        seen[v] = true
        out[#out + 1] = v
      end
    end
  end
  table_sort(out)
  return out
end

local NONE = setmetatable({}, { __newindex = function() error("read-only") end })

local function copy(map)
  local out = {}
  for k, id in next, map do out[k] = id end
  return out
end

--- Resolves state_sets (an array of state maps) for a room of `version` (a
-- version string or loom.room.version table). fetch(event_id) returns the
-- event (a table with event_id) and true when it was rejected, or nil when it
-- is unknown. opts.graph: a loom.StateGraph to load into and keep (a room's
-- graph reused across resolutions); without it a graph lives for the call.
-- Returns the resolved state map, or nil, message, code with code one of
-- "missing_event", "bad_event", "auth_cycle", "unsupported_room_version".
function stateres.resolve(version, state_sets, fetch, opts)
  local v, verr, vcode = get_version(version, "resolve")
  check_sets(state_sets, 2, "resolve")
  check_fetch(fetch, 3, "resolve")
  opts = check_opts(opts, 4, "resolve")
  if not v then return nil, verr, vcode end
  local n = #state_sets
  if n == 0 then return {} end
  local first = state_sets[1]
  if n == 1 then return copy(first) end

  local g, own <close> = graph_for(opts) -- luacheck: ignore 211/own
  local conflicted, common_nodes, set_nodes, conflicted_nodes, ukeys, uids = prepare(g, fetch, state_sets, true)
  if not conflicted then return nil, common_nodes, set_nodes end
  if next(conflicted) == nil then return assemble(ukeys, uids, NONE, first, conflicted) end

  -- the full conflicted set
  local diff, msg, code = g:difference(set_nodes, common_nodes)
  if not diff then return nil, msg, code end
  local full
  if v.state_res == "v2.1" then
    local sub
    sub, msg, code = g:subgraph(conflicted_nodes)
    if not sub then return nil, msg, code end
    full = union_sorted(conflicted_nodes, diff, sub)
  else
    full = union_sorted(conflicted_nodes, diff)
  end

  local get, rejected, by_id = event_source(fetch)
  local full_ids = g:ids(full)
  local events = {}
  for i = 1, #full do
    local ev = get(full_ids[i])
    if ev == nil then return nil, "unknown event " .. full_ids[i], "missing_event" end
    events[i] = ev
  end

  -- keys: statemap.key, each built once per call
  local keys = {}
  local function key(t, sk)
    local by_type = keys[t]
    if by_type == nil then
      by_type = {}
      keys[t] = by_type
    end
    local k = by_type[sk]
    if k == nil then
      k = string_pack(">s2", t) .. sk
      by_type[sk] = k
    end
    return k
  end

  -- v12: the create event is the one the room ID names
  local creates = {}
  local function create_of(ev)
    local rid = ev.room_id
    if type(rid) ~= "string" then return nil end
    local c = creates[rid]
    if c == nil then
      c = get("$" .. string_sub(rid, 2)) or false
      creates[rid] = c
    end
    return c or nil
  end
  local v12_create = v.room_id_is_create_hash

  local function ts_of(ev)
    local ts = ev.origin_server_ts
    if math_type(ts) == "integer" then return ts end
    return 0
  end

  -- 1. power events of the full conflicted set and their auth chains within it
  local in_full = {}
  for i = 1, #full do in_full[full[i]] = i end
  local power_nodes = {}
  for i = 1, #full do
    if auth.is_power_event(events[i]) then power_nodes[#power_nodes + 1] = full[i] end
  end
  local chain
  chain, msg, code = g:chain(power_nodes)
  if not chain then return nil, msg, code end
  local x_nodes, in_x = {}, {}
  for _, list in ipairs { power_nodes, chain } do
    for i = 1, #list do
      local node = list[i]
      if in_full[node] and not in_x[node] then
        in_x[node] = true
        x_nodes[#x_nodes + 1] = node
      end
    end
  end
  local power, ts = {}, {}
  for i = 1, #x_nodes do
    local ev = events[in_full[x_nodes[i]]]
    local function auth_state(t, sk)
      if v12_create and t == CREATE and sk == "" then return create_of(ev) end
      local ae = ev.auth_events
      for j = 1, #ae do
        local a = get(ae[j])
        if a and a.type == t and a.state_key == sk then return a end
      end
      return nil
    end
    power[i] = auth.power_level(v, auth_state, ev.sender)
    ts[i] = ts_of(ev)
  end
  local ordered
  ordered, msg, code = g:order(x_nodes, power, ts)
  if not ordered then return nil, msg, code end

  -- the iterative auth checks
  local partial = {}
  local from_unconflicted = v.state_res ~= "v2.1"
  local current
  local known = {} -- key -> the event partial (or the unconflicted map under it) names
  local function state(t, sk)
    local k = key(t, sk)
    local ev = known[k]
    if ev then return ev end
    local id = partial[k]
    if id == nil and from_unconflicted and not conflicted[k] then id = first[k] end
    if id ~= nil then
      ev = by_id[id] or get(id)
      if ev then
        known[k] = ev
        return ev
      end
    end
    if v12_create and t == CREATE and sk == "" then return create_of(current) end
    local ae = current.auth_events
    for j = 1, #ae do
      local aid = ae[j]
      local a = get(aid)
      if a and a.type == t and a.state_key == sk and not rejected[aid] then return a end
    end
    return nil
  end
  local check_opts_ = { rejected = function(id) return rejected[id] == true end }
  local function iterate(nodes)
    for i = 1, #nodes do
      local ev = events[in_full[nodes[i]]]
      local sk = ev.state_key
      if type(sk) == "string" and type(ev.type) == "string" then
        current = ev
        if auth.check(v, ev, state, check_opts_) then
          local k = key(ev.type, sk)
          partial[k] = ev.event_id
          known[k] = ev
        end
      end
    end
  end
  iterate(ordered)

  -- 3. the rest, in mainline order of the partially resolved power levels
  local rest, rest_ts = {}, {}
  for i = 1, #full do
    if not in_x[full[i]] then
      rest[#rest + 1] = full[i]
      rest_ts[#rest_ts + 1] = ts_of(events[i])
    end
  end
  local pl_key = key(POWER, "")
  local pl_id = partial[pl_key]
  if pl_id == nil and from_unconflicted and not conflicted[pl_key] then pl_id = first[pl_key] end
  local pl_node = pl_id and g:find(pl_id) or nil
  if pl_id and not pl_node then return nil, "unknown event " .. pl_id, "missing_event" end
  local sorted
  sorted, msg, code = g:mainline(pl_node, rest, rest_ts)
  if not sorted then return nil, msg, code end
  iterate(sorted)

  -- 5. the unconflicted state map over the result
  return assemble(ukeys, uids, partial, first, conflicted)
end

--- The auth difference of state_sets (arrays of state maps) as a sorted array
-- of event IDs: the events in the auth chain of some but not all of the sets
-- (the auth chain of a set: the union of its events' auth chains). nil,
-- message, code as for resolve.
function stateres.auth_difference(state_sets, fetch, opts)
  check_sets(state_sets, 1, "auth_difference")
  check_fetch(fetch, 2, "auth_difference")
  opts = check_opts(opts, 3, "auth_difference")
  if #state_sets < 2 then return {} end
  local g, own <close> = graph_for(opts) -- luacheck: ignore 211/own
  local conflicted, common_nodes, set_nodes = prepare(g, fetch, state_sets)
  if not conflicted then return nil, common_nodes, set_nodes end
  if next(conflicted) == nil then return {} end
  local diff, msg, code = g:difference(set_nodes, common_nodes)
  if not diff then return nil, msg, code end
  return g:ids(diff, true)
end

--- The union of the auth chains of event_ids (everything reachable by
-- auth_events links) as a sorted array of event IDs.
function stateres.auth_chain(event_ids, fetch, opts)
  if type(event_ids) ~= "table" then arg_error(1, "auth_chain", "array of event IDs expected") end
  check_fetch(fetch, 2, "auth_chain")
  opts = check_opts(opts, 3, "auth_chain")
  local g, own <close> = graph_for(opts) -- luacheck: ignore 211/own
  local nodes = g:intern(event_ids)
  local ok, msg, code = load_closure(g, fetch, nodes)
  if not ok then return nil, msg, code end
  local chain
  chain, msg, code = g:chain(nodes)
  if not chain then return nil, msg, code end
  return g:ids(chain, true)
end

-- The public entry points read the events fetch returns through
-- loom.json.import; the argument checks run here first so that their errors
-- name the caller's line.
local resolve, auth_difference, auth_chain = stateres.resolve, stateres.auth_difference, stateres.auth_chain

function stateres.resolve(version, state_sets, fetch, opts)
  get_version(version, "resolve")
  check_sets(state_sets, 2, "resolve")
  check_fetch(fetch, 3, "resolve")
  check_opts(opts, 4, "resolve")
  local get, finish = importing(fetch)
  return finish(resolve(version, state_sets, get, opts))
end

function stateres.auth_difference(state_sets, fetch, opts)
  check_sets(state_sets, 1, "auth_difference")
  check_fetch(fetch, 2, "auth_difference")
  check_opts(opts, 3, "auth_difference")
  local get, finish = importing(fetch)
  return finish(auth_difference(state_sets, get, opts))
end

function stateres.auth_chain(event_ids, fetch, opts)
  if type(event_ids) ~= "table" then arg_error(1, "auth_chain", "array of event IDs expected") end
  check_fetch(fetch, 2, "auth_chain")
  check_opts(opts, 3, "auth_chain")
  local get, finish = importing(fetch)
  return finish(auth_chain(event_ids, get, opts))
end

--- A new, empty loom.StateGraph for opts.graph (one per room).
stateres.graph = new_graph

setmetatable(stateres, { __name = "loom.room.stateres" })
return stateres
