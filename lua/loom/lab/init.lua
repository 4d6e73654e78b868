-- loom.lab: several loom servers in one process and one luv loop, joined by
-- an in-memory transport that carries the same federation requests as the
-- network, with links that can be slowed, made lossy, duplicating or
-- reordering, partitioned and healed. Scenarios run against it and end with
-- the lab's convergence checks.
--
--   local lab = require("loom.lab").new { seed = 7 }
--   local a, b = lab:server("a.lab"), lab:server("b.lab")
--   lab:run(function()
--     local alice = a:register("alice")
--     local room = a:create_room(alice, { preset = "public_chat" })
--     local bob = b:register("bob")
--     b:join(bob, room, { "a.lab" })
--     lab:partition({ "a.lab" }, { "b.lab" })
--     a:say(alice, room, "during the split")
--     lab:heal()
--     lab:settle()
--     local report = lab:check(room)      -- { ok = bool, problems = { ... } }
--   end)
--   lab:close()
--
-- Each server has its own SQLite store (in lab.dir, a temporary directory
-- unless given) and signing key; it listens on no socket. Client requests go
-- through the server's own dispatcher (server:client(...)), federation
-- requests through lab:deliver. Randomness (loss, duplication, delays) comes
-- from the lab's seeded generator, so a run can be repeated.
local setmetatable, ipairs, pairs, type, tostring, error, assert =
  setmetatable, ipairs, pairs, type, tostring, error, assert
local table_concat, table_sort, table_unpack = table.concat, table.sort, table.unpack
local require_ = require
local string_format = string.format
local uv = require "luv"
local core = require "loom.core"
local async = require "loom.async"
local statemap = require "loom.room.statemap"
local fedclient = require "loom.federation.client"

local json = core.json
local E = fedclient.encode

local io_open = io.open

local _ENV = nil -- luacheck: ignore 211

local lab = {}

-- A response's body: its bytes, or the file of a file response (media).
local function body_of(resp)
  if not resp.file then return resp.body end
  local f = io_open(resp.file, "rb")
  if not f then return "" end
  local data = f:read("a")
  f:close()
  return data
end

-- The files under dir, deepest first (media stores have subdirectories).
local function remove_tree(dir)
  for _, f in ipairs(core.listdir(dir) or {}) do
    local path = dir .. "/" .. f
    local st = uv.fs_lstat(path)
    if st and st.type == "directory" then remove_tree(path) else uv.fs_unlink(path) end
  end
  uv.fs_rmdir(dir)
end

local Lab = {}
Lab.__index = Lab
Lab.__name = "loom.lab.Lab"

local Server = {}
Server.__index = Server
Server.__name = "loom.lab.Server"

-- splitmix64: a small seeded generator, independent of math.random.
local function rng(seed)
  local state = seed
  return function()
    state = state + 0x9E3779B97F4A7C15
    local z = state
    z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ~ (z >> 27)) * 0x94D049BB133111EB
    z = z ~ (z >> 31)
    return ((z >> 11) & 0x1FFFFFFFFFFFFF) / 9007199254740992.0   -- [0, 1)
  end
end

--- lab.new { seed, dir, log, room_version } -> Lab
function lab.new(opts)
  opts = opts or {}
  local dir = opts.dir
  local owns_dir = false
  if not dir then
    dir = assert(uv.fs_mkdtemp((uv.os_tmpdir() or "/tmp") .. "/loom-lab-XXXXXX"))
    owns_dir = true
  end
  return setmetatable({
    dir = dir, owns_dir = owns_dir, servers = {}, order = {},
    random = rng(opts.seed or 1), seed = opts.seed or 1,
    links = {},          -- "a|b" -> { delay, jitter, drop, duplicate }
    cut = {},            -- "a|b" -> true while partitioned
    inflight = 0,        -- requests being carried
    stats = { requests = 0, dropped = 0, duplicated = 0, refused = 0 },
    log = opts.log,
    room_version = opts.room_version,
  }, Lab)
end

local function link_key(a, b) return a .. "|" .. b end

--- lab:server(name, [config]) -> Server: a loom server named name (a server
-- name: "a.lab", "hs1:8448" …) in the lab.
function Lab.server(self, name, config)
  if self.servers[name] then error("lab: server " .. name .. " exists already", 2) end
  local loom = require_ "loom"
  local api = require_ "loom.api"
  local logs = {}
  local cfg = { server_name = name, port = 0, password_iterations = 1000, log_level = "warn",
    database = { path = self.dir .. "/" .. name:gsub("[^%w%.%-]", "_") .. ".db", synchronous = "NORMAL" },
    logger = function(level, message)
      logs[#logs + 1] = level .. ": " .. message
      if self.log then self.log(name, level, message) end
    end,
    default_room_version = self.room_version }
  for k, v in pairs(config or {}) do cfg[k] = v end
  local server = loom.new(cfg)
  local hs = api.install(server, { transport = function(dest, method, target, headers, body, timeout)
    return self:deliver(name, dest, method, target, headers, body, timeout)
  end })
  -- retries after a lost request come quickly in the lab
  hs.sender.first_retry, hs.sender.max_retry = 50, 1000
  local s = setmetatable({ lab = self, name = name, server = server, hs = hs, logs = logs, txn = 0 }, Server)
  self.servers[name] = s
  self.order[#self.order + 1] = name
  server:observe("server/started", server)
  return s
end

--- lab:link(a, b, { delay = ms, jitter = ms, drop = p, duplicate = p }) sets
-- how requests from a to b travel (both directions with both = true).
function Lab.link(self, a, b, opts)
  self.links[link_key(a, b)] = opts
  if opts.both then self.links[link_key(b, a)] = opts end
end

--- lab:partition(side1, side2): no request crosses between the sides.
function Lab.partition(self, side1, side2)
  for _, a in ipairs(side1) do
    for _, b in ipairs(side2) do
      self.cut[link_key(a, b)] = true
      self.cut[link_key(b, a)] = true
    end
  end
end

--- lab:heal(): every partition ends; servers retry at once.
function Lab.heal(self)
  self.cut = {}
  for _, name in ipairs(self.order) do
    local hs = self.servers[name].hs
    if hs.sender then
      for _, other in ipairs(self.order) do
        if other ~= name then hs.sender:wake(other) end
      end
    end
  end
end

local function sleep(ms)
  if ms > 0 then async.sleep(ms) end
end

-- Parses target into path and query, as the HTTP parser would.
local function split_target(target)
  local path, query = target:match("^([^?#]*)%??([^#]*)")
  return path, query
end

local function dispatch(server, raw)
  return async.wait(function(wake)
    async.spawn(function() return server.server:dispatch(raw, "federation") end, nil, function(ok, resp)
      if ok then wake(resp) else wake(nil, tostring(resp)) end
    end)
  end)
end

--- lab:deliver(from, dest, method, target, headers, body) -> status, headers,
-- body | nil, message: carries one federation request (the transport of
-- every lab server).
function Lab.deliver(self, from, dest, method, target, headers, body)
  local st = self.stats
  st.requests = st.requests + 1
  local to = self.servers[dest]
  if not to then st.refused = st.refused + 1; return nil, "connect: no server " .. tostring(dest) end
  local key = link_key(from, dest)
  local link = self.links[key] or {}
  self.inflight = self.inflight + 1
  local function done(...)
    self.inflight = self.inflight - 1
    return ...
  end
  local delay = (link.delay or 0) + (link.jitter and (self.random() * link.jitter) // 1 or 0)
  sleep(delay)
  if self.cut[key] then st.refused = st.refused + 1; return done(nil, "connect: partitioned") end
  if link.drop and self.random() < link.drop then
    st.dropped = st.dropped + 1
    return done(nil, "connect: dropped")
  end
  local hdrs = {}
  for k, v in pairs(headers or {}) do hdrs[k:lower()] = v end
  hdrs.host = dest
  local path, query = split_target(target)
  local function raw()
    return { method = method, target = target, path = path, query = query, headers = hdrs, body = body or "",
      keep_alive = true, version = "1.1", peer = { ip = "127.0.0.1", port = 0 } }
  end
  if link.duplicate and self.random() < link.duplicate then
    st.duplicated = st.duplicated + 1
    async.spawn(function() return dispatch(to, raw()) end, nil, function() end)
  end
  local resp, err = dispatch(to, raw())
  if not resp then return done(nil, "lab: " .. tostring(err)) end
  sleep(delay)
  -- the answer may be lost on the way back too
  if self.cut[link_key(dest, from)] then st.refused = st.refused + 1; return done(nil, "timeout: partitioned") end
  local rh = {}
  for _, h in ipairs(resp.headers or {}) do rh[h[1]:lower()] = h[2] end
  return done(resp.status, rh, body_of(resp))
end

--- lab:run(fn, [limit_ms]) -> fn's results: runs fn as a task and turns the
-- loop until it ends (raises its error; limit default 60 s).
function Lab.run(self, fn, limit)
  local done, ok, res = false, nil, nil
  async.spawn(function() return { fn(self) } end, nil, function(o, r) done, ok, res = true, o, r end)
  local timer = uv.new_timer()
  local expired = false
  timer:start(limit or 60000, 0, function() expired = true end)
  while not done and not expired do uv.run("once") end
  timer:close()
  uv.run("nowait")
  if expired then error("lab: scenario did not finish in time", 2) end
  if not ok then error(res, 0) end
  return table_unpack(res)
end

--- lab:backfill(room_id): every server fetches the room's older history
-- until nothing more comes (inside run); returns the events stored.
function Lab.backfill(self, room_id)
  local backfill = require_ "loom.federation.backfill"
  local total = 0
  for _, name in ipairs(self.order) do
    local hs = self.servers[name].hs
    local misses = 0
    for _ = 1, 200 do
      if #hs.store:backward_extremities(room_id) == 0 then break end
      local n = backfill.room(hs, room_id)
      total = total + n
      -- nothing came: a lost request, or history nobody holds
      if n == 0 then misses = misses + 1 else misses = 0 end
      if misses >= 10 then break end
    end
  end
  return total
end

--- lab:settle([limit_ms]) -> true when every server's outbound queue is
-- empty and no request is in flight (inside run); false after limit (default
-- 20 s). Partitioned destinations keep their queues: settle after heal.
function Lab.settle(self, limit)
  local waited = 0
  limit = limit or 20000
  local quiet = 0
  while waited < limit do
    local pending = self.inflight > 0
    if not pending then
      for _, name in ipairs(self.order) do
        local hs = self.servers[name].hs
        if #hs.store:pending_destinations() > 0 then pending = true; break end
      end
    end
    if pending then quiet = 0 else quiet = quiet + 1 end
    if quiet >= 3 then return true end
    async.sleep(20)
    waited = waited + 20
  end
  return false
end

-- ---- servers: client actions without sockets ------------------------------

--- server:client(method, path, body, token) -> { status, json, body }:
-- a Client-Server API request through the server's dispatcher (inside run).
function Server.client(self, method, path, body, token)
  local text = body
  if type(body) == "table" then text = assert(json.encode(body, { floats = true })) end
  local p, q = split_target(path)
  local headers = { host = self.name }
  if token then headers.authorization = "Bearer " .. token end
  if text then headers["content-type"] = "application/json" end
  local raw = { method = method, target = path, path = p, query = q, headers = headers, body = text or "",
    keep_alive = true, version = "1.1", peer = { ip = "127.0.0.1", port = 0 } }
  local resp = async.wait(function(wake)
    async.spawn(function() return self.server:dispatch(raw, "client") end, nil, function(_, r) wake(r) end)
  end)
  local rh = {}
  for _, h in ipairs(resp.headers or {}) do rh[h[1]:lower()] = h[2] end
  local rbody = body_of(resp)
  return { status = resp.status, body = rbody, json = json.decode(rbody), headers = rh }
end

local function must(r, what)
  if r.status ~= 200 then error(string_format("lab: %s: %d %s", what, r.status, r.body), 3) end
  return r.json
end

--- server:register(localpart) -> { user_id, access_token, device_id }
function Server.register(self, localpart)
  local acc = self.hs.accounts
  local user_id = assert(acc:register(localpart, "lab-password"))
  return assert(acc:issue_token(user_id))
end

--- server:create_room(user, body) -> room_id
function Server.create_room(self, user, body)
  return must(self:client("POST", "/_matrix/client/v3/createRoom", body or {}, user.access_token),
    "createRoom").room_id
end

--- server:join(user, room_id, via) -> room_id
function Server.join(self, user, room_id, via)
  local q = {}
  for _, v in ipairs(via or {}) do q[#q + 1] = "server_name=" .. E(v) end
  local path = "/_matrix/client/v3/join/" .. E(room_id) .. (#q > 0 and ("?" .. table_concat(q, "&")) or "")
  return must(self:client("POST", path, {}, user.access_token), "join").room_id
end

--- server:say(user, room_id, text) -> event_id
function Server.say(self, user, room_id, text)
  self.txn = self.txn + 1
  return must(self:client("PUT", "/_matrix/client/v3/rooms/" .. E(room_id) .. "/send/m.room.message/lab"
    .. self.txn, { msgtype = "m.text", body = text }, user.access_token), "send").event_id
end

--- server:state(user, room_id, type, state_key, content) -> event_id
function Server.state(self, user, room_id, etype, state_key, content)
  return must(self:client("PUT", "/_matrix/client/v3/rooms/" .. E(room_id) .. "/state/" .. E(etype) .. "/"
    .. E(state_key or ""), content, user.access_token), "state").event_id
end

-- ---- convergence -----------------------------------------------------------

-- What a server holds of a room: the graph's events, current state,
-- forward and backward extremities.
local function view(s, room_id)
  local store = s.hs.store
  local rn = store:room_nid(room_id)
  if not rn then return nil end
  local state = {}
  for k, id in pairs(s.hs.rooms:current_state(room_id) or {}) do
    local t, sk = statemap.split(k)
    state[t .. "|" .. sk] = id
  end
  local events = store:graph_event_ids(rn)
  return { events = events, state = state, forward = store:forward_extremities(room_id),
           backward = store:backward_extremities(room_id) }
end

local function diff_sets(a, b)
  local sa, only_a, only_b = {}, {}, {}
  local sb = {}
  for _, x in ipairs(a) do sa[x] = true end
  for _, x in ipairs(b) do sb[x] = true; if not sa[x] then only_b[#only_b + 1] = x end end
  for _, x in ipairs(a) do if not sb[x] then only_a[#only_a + 1] = x end end
  return only_a, only_b
end

--- lab:check(room_id, [names]) -> { ok, problems = { text ... }, servers }
-- The room converged: every server (of names, default all that know the
-- room) holds the same events in the room's graph, the same current state,
-- the same forward extremities, and no backward extremity that another
-- server could fill (a gap).
function Lab.check(self, room_id, names)
  local problems = {}
  local views, list = {}, {}
  for _, name in ipairs(names or self.order) do
    local v = view(self.servers[name], room_id)
    if v then views[name] = v; list[#list + 1] = name end
  end
  if #list == 0 then return { ok = false, problems = { "no server knows " .. room_id }, servers = list } end
  local first = list[1]
  local ref = views[first]
  local all_events = {}
  for _, name in ipairs(list) do for _, id in ipairs(views[name].events) do all_events[id] = true end end
  for i = 2, #list do
    local name = list[i]
    local v = views[name]
    local oa, ob = diff_sets(ref.events, v.events)
    if #oa > 0 or #ob > 0 then
      problems[#problems + 1] = string_format("events differ: %d only on %s, %d only on %s", #oa, first, #ob, name)
    end
    local fa, fb = diff_sets(ref.forward, v.forward)
    if #fa > 0 or #fb > 0 then
      problems[#problems + 1] = string_format("forward extremities differ between %s and %s", first, name)
    end
    for k, id in pairs(ref.state) do
      if v.state[k] ~= id then
        problems[#problems + 1] = string_format("state %s differs between %s and %s", k, first, name)
      end
    end
    for k in pairs(v.state) do
      if ref.state[k] == nil then
        problems[#problems + 1] = string_format("state %s only on %s", k, name)
      end
    end
  end
  for _, name in ipairs(list) do
    for _, id in ipairs(views[name].backward) do
      if all_events[id] then
        problems[#problems + 1] = string_format("%s has a gap at %s that another server could fill", name, id)
      end
    end
  end
  table_sort(problems)
  return { ok = #problems == 0, problems = problems, servers = list }
end

local PALETTE = { "#8dd3c7", "#ffffb3", "#bebada", "#fb8072", "#80b1d3", "#fdb462", "#b3de69", "#fccde5" }

local function dot_escape(s)
  return (tostring(s):gsub('[\\"]', "\\%0"):gsub("\n", "\\n"))
end

--- lab:dot(room_id) -> Graphviz DOT text of the room's graph across the
-- lab's servers: one node per event (filled with its origin server's
-- colour, labelled with type, sender and the servers holding it), edges to
-- prev_events; outliers dashed, rejected events red, soft-failed ones grey,
-- backward extremities (events some server lacks) as dotted boxes.
function Lab.dot(self, room_id)
  local nodes, order, colour, ncolours = {}, {}, {}, 0
  local backward = {}
  for _, name in ipairs(self.order) do
    local store = self.servers[name].hs.store
    local rn = store:room_nid(room_id)
    if rn then
      for _, e in ipairs(store:room_events_all(rn)) do
        local n = nodes[e.event_id]
        if not n then
          n = { id = e.event_id, ev = json.decode(e.json) or {}, held = {}, outlier = true, rejected = false,
                soft = false }
          nodes[e.event_id] = n
          order[#order + 1] = n
        end
        n.held[#n.held + 1] = name .. (e.outlier and "(o)" or "")
        if not e.outlier then n.outlier = false end
        if e.rejected then n.rejected = true end
        if e.soft_failed then n.soft = true end
      end
      for _, id in ipairs(store:backward_extremities(room_id)) do backward[id] = true end
    end
  end
  local out = { "digraph room {", "  rankdir=BT;", '  node [shape=box, style="rounded,filled", fontsize=10];',
    '  label="' .. dot_escape(room_id) .. '";' }
  for _, n in ipairs(order) do
    local ev = n.ev
    local origin = type(ev.sender) == "string" and ev.sender:match("^@[^:]*:(.+)$") or "?"
    if not colour[origin] then
      ncolours = ncolours + 1
      colour[origin] = PALETTE[(ncolours - 1) % #PALETTE + 1]
    end
    local body = type(ev.content) == "table" and (ev.content.body or ev.content.membership) or nil
    local label = string_format("%s\\n%s%s\\n%s\\n[%s]", dot_escape(n.id:sub(1, 10)), dot_escape(ev.type),
      body and (" " .. dot_escape(tostring(body):sub(1, 24))) or "", dot_escape(ev.sender),
      dot_escape(table_concat(n.held, " ")))
    local style = n.outlier and '"rounded,filled,dashed"' or '"rounded,filled"'
    local extra = n.rejected and ', color=red, penwidth=2' or (n.soft and ', fontcolor=gray40' or '')
    out[#out + 1] = string_format('  "%s" [label="%s", fillcolor="%s", style=%s%s];', dot_escape(n.id), label,
      colour[origin], style, extra)
  end
  for id in pairs(backward) do
    if not nodes[id] then
      out[#out + 1] = string_format('  "%s" [label="%s\\n(missing)", style=dotted];', dot_escape(id),
        dot_escape(id:sub(1, 10)))
    end
  end
  for _, n in ipairs(order) do
    for _, p in ipairs(type(n.ev.prev_events) == "table" and n.ev.prev_events or {}) do
      if type(p) == "string" and (nodes[p] or backward[p]) then
        out[#out + 1] = string_format('  "%s" -> "%s";', dot_escape(n.id), dot_escape(p))
      end
    end
  end
  -- the legend: one box per origin server
  local origins = {}
  for origin in pairs(colour) do origins[#origins + 1] = origin end
  table_sort(origins)
  out[#out + 1] = '  subgraph cluster_legend { label="origin"; fontsize=10;'
  for i, origin in ipairs(origins) do
    out[#out + 1] = string_format('    "legend %d" [label="%s", fillcolor="%s"];', i, dot_escape(origin),
      colour[origin])
  end
  out[#out + 1] = "  }"
  out[#out + 1] = "}"
  return table_concat(out, "\n") .. "\n"
end

--- lab:report(room_id) -> text: per server, what it holds of the room.
function Lab.report(self, room_id)
  local lines = {}
  for _, name in ipairs(self.order) do
    local v = view(self.servers[name], room_id)
    if v then
      local n = 0
      for _ in pairs(v.state) do n = n + 1 end
      lines[#lines + 1] = string_format("%-16s %5d events  %3d state  %d forward  %d backward", name, #v.events, n,
        #v.forward, #v.backward)
    else
      lines[#lines + 1] = string_format("%-16s does not know the room", name)
    end
  end
  local st = self.stats
  lines[#lines + 1] = string_format("requests %d, dropped %d, duplicated %d, refused %d", st.requests, st.dropped,
    st.duplicated, st.refused)
  return table_concat(lines, "\n") .. "\n"
end

--- lab:close(): stops every server and removes the lab's directory (when
-- the lab made it).
function Lab.close(self)
  for _, name in ipairs(self.order) do
    local s = self.servers[name]
    s.server:observe("server/stopping", s.server)
    s.hs.store:close()
  end
  async.finish_closing()
  if self.owns_dir then remove_tree(self.dir) end
end

lab.Lab, lab.Server = Lab, Server
return lab
