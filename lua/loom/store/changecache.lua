-- loom.store.changecache: which entities (rooms, users) changed after a
-- stream position, answered from memory so unchanged entities cost no query.
--
-- The cache knows every change after `earliest`; asked about an older
-- position it answers "maybe" (true / nil list), and the caller queries.
local setmetatable, math_max = setmetatable, math.max
local pairs = pairs

local _ENV = nil -- luacheck: ignore 211

local changecache = {}
local methods = {}
local mt = { __name = "loom.store.ChangeCache", __index = methods }

--- A cache that knows all changes after position `current`, keeping at most
-- max_size entities (default 100000).
function changecache.new(current, max_size)
  return setmetatable({
    earliest = current,
    latest = current,
    last = {},          -- entity -> position of its last change
    log_e = {},         -- the change log in position order: entities ...
    log_p = {},         -- ... and their positions (parallel arrays: no table per entry)
    head = 1,
    tail = 0,
    size = 0,
    max_size = max_size or 100000,
  }, mt)
end

--- Record that entity changed at position pos (positions never go back).
function methods:entity_changed(entity, pos)
  if pos <= self.earliest then return end
  local last = self.last
  if last[entity] == nil then self.size = self.size + 1 end
  last[entity] = pos
  local tail = self.tail + 1
  local log_e, log_p = self.log_e, self.log_p
  self.tail = tail
  log_e[tail], log_p[tail] = entity, pos
  if pos > self.latest then self.latest = pos end
  -- Evict the oldest entities; their positions become the new horizon.
  while self.size > self.max_size do
    local head = self.head
    local e, p = log_e[head], log_p[head]
    log_e[head], log_p[head] = nil, nil
    self.head = head + 1
    if last[e] == p then
      last[e] = nil
      self.size = self.size - 1
      self.earliest = math_max(self.earliest, p)
    end
  end
  -- Compact the log once stale entries outnumber live ones (plus slack), so
  -- its length stays proportional to the entities it tracks.
  if tail - self.head + 1 > 2 * self.size + 1024 then
    local fe, fp, n = {}, {}, 0
    for i = self.head, tail do
      local e, p = log_e[i], log_p[i]
      if last[e] == p then n = n + 1; fe[n], fp[n] = e, p end
    end
    self.log_e, self.log_p, self.head, self.tail = fe, fp, 1, n
  end
end

--- Did entity (maybe) change after position since?
function methods:has_changed(entity, since)
  if since < self.earliest then return true end
  local pos = self.last[entity]
  return pos ~= nil and pos > since
end

--- The entities of the list that (maybe) changed after since.
function methods:changed_among(entities, since)
  if since < self.earliest then return entities end
  local out, n, last = {}, 0, self.last
  for i = 1, #entities do
    local pos = last[entities[i]]
    if pos ~= nil and pos > since then n = n + 1; out[n] = entities[i] end
  end
  return out
end

--- The entities that changed after since, found in the change log (so the
-- cost follows the changes, not the size of the cache), at most `max`
-- (default unlimited); nil when the cache cannot tell or more changed.
function methods:changed_after(since, max)
  if since < self.earliest then return nil end
  local log_e, log_p, last = self.log_e, self.log_p, self.last
  -- the first log entry after since (positions in the log never go back)
  local lo, hi = self.head, self.tail + 1
  while lo < hi do
    local mid = (lo + hi) // 2
    if log_p[mid] > since then hi = mid else lo = mid + 1 end
  end
  local out, n = {}, 0
  for i = lo, self.tail do
    local e, p = log_e[i], log_p[i]
    if last[e] == p then
      n = n + 1
      if max and n > max then return nil end
      out[n] = e
    end
  end
  return out
end

--- Every entity that changed after since, or nil when the cache cannot tell.
function methods:all_changed(since)
  if since < self.earliest then return nil end
  local out, n = {}, 0
  for entity, pos in pairs(self.last) do
    if pos > since then n = n + 1; out[n] = entity end
  end
  return out
end

changecache.methods = methods
changecache.mt = mt
return changecache
