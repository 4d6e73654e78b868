-- loom.http.metrics: a metrics registry (counters, gauges, histograms with
-- fixed buckets, all with labels) rendered in the Prometheus text exposition
-- format 0.0.4, and the small HTTP listener that serves it on GET /metrics.
-- Each server has its own registry (server.metrics); nothing is kept at module
-- level, so several servers in one process count apart.
--
--   local metrics = require "loom.http.metrics"
--   local reg = metrics.new()
--   local hits = reg:counter("app_hits_total", "Hits by page.", { "page" })
--   hits:inc(1, "/home")
--   local lat = reg:histogram("app_seconds", "Time per page.", { "page" }, { 0.01, 0.1, 1 })
--   lat:observe(0.042, "/home")
--   reg:on_collect(function() queue_len:set(#queue) end)   -- runs before each render
--   print(reg:render())
--
--   local srv = metrics.listener(reg, { host = "127.0.0.1", port = 9108 })
--   assert(srv:listen())                                    -- then run the luv loop
--
-- Misuse (a bad name, the wrong number of label values, a counter going down)
-- raises; the values themselves come from loom, never from a client. See
-- docs/metrics.md for the metrics a server defines.
local setmetatable, ipairs, type, tostring, error, select, require =
  setmetatable, ipairs, type, tostring, error, select, require
local string_format, string_find, string_gsub = string.format, string.find, string.gsub
local table_concat, table_sort = table.concat, table.sort
local math_type, tonumber = math.type, tonumber
local huge = math.huge

local _ENV = nil -- luacheck: ignore 211

local metrics = {}

--- The Content-Type of the text exposition format.
metrics.CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

--- Default histogram buckets (seconds), as Prometheus client libraries use.
metrics.default_buckets = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 }

-- ---- text format helpers ------------------------------------------------------

--- metrics.format_value(v) -> v as the text format writes it: integers
-- exactly, floats with the fewest digits that read back the same, NaN, +Inf
-- and -Inf by name.
function metrics.format_value(v)
  if math_type(v) == "integer" then return string_format("%d", v) end
  if v ~= v then return "NaN" end
  if v == huge then return "+Inf" end
  if v == -huge then return "-Inf" end
  local s = string_format("%.15g", v)
  if tonumber(s) ~= v then s = string_format("%.17g", v) end
  return s
end
local format_value = metrics.format_value

local label_escapes = { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }
local help_escapes = { ["\\"] = "\\\\", ["\n"] = "\\n" }

--- metrics.escape_label(s) -> s with \, " and newline escaped (label values).
function metrics.escape_label(s)
  return (string_gsub(s, '[\\"\n]', label_escapes))
end
local escape_label = metrics.escape_label

local function escape_help(s)
  return (string_gsub(s, "[\\\n]", help_escapes))
end

local function valid_name(s)
  return type(s) == "string" and string_find(s, "^[%a_:][%w_:]*$") ~= nil
end

local function valid_label_name(s)
  return type(s) == "string" and string_find(s, "^[%a_][%w_]*$") ~= nil and not string_find(s, "^__")
end

-- ---- metrics ------------------------------------------------------------------

local metric_methods = {}
local metric_mt = { __name = "loom.Metric", __index = metric_methods }

-- The series for label values that are new to m's lookup tree: found or
-- made by their text (200 and "200" are the same series).
local function new_series(m, level, ...)
  local n = select("#", ...)
  local labels = m.labels
  if n ~= #labels then
    error(string_format("metric %s takes %d label values, got %d", m.name, #labels, n), level + 1)
  end
  local values = { ... }
  for i = 1, n do
    local v = values[i]
    if type(v) ~= "string" then
      if type(v) ~= "number" or v ~= v then
        error(string_format("metric %s: label %s must be a string or number", m.name, labels[i]), level + 1)
      end
      values[i] = format_value(v)     -- 200 and 200.0 are one table key, and one label
    end
  end
  local key = table_concat(values, "\0")
  local s = m.series[key]
  if not s then
    local parts = {}
    for i = 1, n do parts[i] = labels[i] .. '="' .. escape_label(values[i]) .. '"' end
    s = m.new_series()
    s.labels = table_concat(parts, ",")
    m.series[key] = s
    m.order[#m.order + 1] = key
  end
  -- remember it in the tree under the values as given
  local node = m.tree
  for i = 1, n - 1 do
    local v = (select(i, ...))
    local child = node[v]
    if not child then child = {}; node[v] = child end
    node = child
  end
  node[(select(n, ...))] = s
  return s
end

-- The series for the label values ... (a walk down m.tree: no allocation
-- once a series exists).
local function series(m, level, ...)
  local n = select("#", ...)
  if n ~= m.nlabels then return new_series(m, level + 1, ...) end   -- raises
  if n == 0 then return m.only end
  local node = m.tree
  for i = 1, n do
    local v = (select(i, ...))
    node = v ~= nil and node[v]
    if not node then return new_series(m, level + 1, ...) end
  end
  return node
end

local function check_number(m, v, level)
  if type(v) ~= "number" then error("metric " .. m.name .. ": value must be a number", level + 1) end
end

--- counter:inc([n], ...label values): adds n (default 1, never negative).
-- gauge:inc([n], ...): adds n (default 1).
function metric_methods.inc(m, n, ...)
  if m.kind == "histogram" then error("histogram " .. m.name .. " has no inc; use observe", 2) end
  if n == nil then n = 1 end
  check_number(m, n, 2)
  if m.kind == "counter" and (n < 0 or n ~= n) then error("counter " .. m.name .. " cannot go down", 2) end
  local s = series(m, 2, ...)
  s.value = s.value + n
end

--- gauge:dec([n], ...label values): subtracts n (default 1).
function metric_methods.dec(m, n, ...)
  if m.kind ~= "gauge" then error(m.kind .. " " .. m.name .. " has no dec", 2) end
  if n == nil then n = 1 end
  check_number(m, n, 2)
  local s = series(m, 2, ...)
  s.value = s.value - n
end

--- gauge:set(v, ...label values). Counters accept set only for totals
-- counted elsewhere and copied in by a collector (never lower than before).
function metric_methods.set(m, v, ...)
  if m.kind == "histogram" then error("histogram " .. m.name .. " has no set; use observe", 2) end
  check_number(m, v, 2)
  local s = series(m, 2, ...)
  if m.kind == "counter" and (v < s.value or v ~= v) then error("counter " .. m.name .. " cannot go down", 2) end
  s.value = v
end

--- histogram:observe(v, ...label values): counts v in its bucket, adds it
-- to the sum.
function metric_methods.observe(m, v, ...)
  if m.kind ~= "histogram" then error(m.kind .. " " .. m.name .. " has no observe", 2) end
  check_number(m, v, 2)
  local s = series(m, 2, ...)
  local bounds, counts = m.buckets, s.counts
  local i, nb = 1, #bounds
  while i <= nb and v > bounds[i] do i = i + 1 end
  counts[i] = counts[i] + 1      -- counts[nb + 1]: above every bound (+Inf)
  s.count = s.count + 1
  s.sum = s.sum + v
end

--- metric:value(...label values) -> the current value (a counter or gauge),
-- or the count and sum (a histogram); nil for a series never touched.
function metric_methods.value(m, ...)
  local s
  if #m.labels == 0 then s = m.only else
    local values = { ... }
    for i = 1, select("#", ...) do
      local v = values[i]
      values[i] = type(v) == "number" and format_value(v) or tostring(v)
    end
    s = m.series[table_concat(values, "\0")]
  end
  if not s then return nil end
  if m.kind == "histogram" then return s.count, s.sum end
  return s.value
end

-- Appends the text of one metric to out.
local function render_metric(m, out)
  out[#out + 1] = "# HELP " .. m.name .. " " .. escape_help(m.help)
  out[#out + 1] = "# TYPE " .. m.name .. " " .. m.kind
  local list = m.order
  if #m.labels == 0 then list = { false } end
  for _, key in ipairs(list) do
    local s = key and m.series[key] or m.only
    local labels = s.labels
    if m.kind ~= "histogram" then
      out[#out + 1] = m.name .. (labels ~= "" and "{" .. labels .. "}" or "") .. " " .. format_value(s.value)
    else
      local sep = labels ~= "" and labels .. "," or ""
      local total = 0
      for i, bound in ipairs(m.buckets) do
        total = total + s.counts[i]
        out[#out + 1] = m.name .. "_bucket{" .. sep .. 'le="' .. format_value(bound) .. '"} ' .. format_value(total)
      end
      out[#out + 1] = m.name .. "_bucket{" .. sep .. 'le="+Inf"} ' .. format_value(s.count)
      local braces = labels ~= "" and "{" .. labels .. "}" or ""
      out[#out + 1] = m.name .. "_sum" .. braces .. " " .. format_value(s.sum)
      out[#out + 1] = m.name .. "_count" .. braces .. " " .. format_value(s.count)
    end
  end
end

-- ---- registry -----------------------------------------------------------------

local methods = {}
local mt = { __name = "loom.MetricsRegistry", __index = methods }
metrics.methods, metrics.mt = methods, mt
metrics.metric_methods, metrics.metric_mt = metric_methods, metric_mt

--- metrics.new() -> Registry
function metrics.new()
  return setmetatable({ list = {}, by_name = {}, collectors = {} }, mt)
end

local function define(self, kind, name, help, labels, buckets)
  if not valid_name(name) then error("bad metric name " .. tostring(name), 3) end
  if self.by_name[name] then error("metric " .. name .. " is already defined", 3) end
  if type(help) ~= "string" then error("metric " .. name .. ": help must be a string", 3) end
  labels = labels or {}
  if type(labels) ~= "table" then error("metric " .. name .. ": labels must be a list", 3) end
  local seen = {}
  for i, l in ipairs(labels) do
    if not valid_label_name(l) or seen[l] or (kind == "histogram" and l == "le") then
      error("metric " .. name .. ": bad label name " .. tostring(l), 3)
    end
    seen[l] = true
    labels[i] = l
  end
  local m = setmetatable({ kind = kind, name = name, help = help, labels = labels,
    series = {}, order = {}, tree = {}, nlabels = #labels }, metric_mt)
  if kind == "histogram" then
    local b = {}
    for i, v in ipairs(buckets or metrics.default_buckets) do
      if type(v) ~= "number" or v ~= v or v == huge or (i > 1 and v <= b[i - 1]) then
        error("histogram " .. name .. ": buckets must be increasing finite numbers", 3)
      end
      b[i] = v
    end
    m.buckets = b
    local nb = #b
    m.new_series = function()
      local counts = {}
      for i = 1, nb + 1 do counts[i] = 0 end
      return { counts = counts, count = 0, sum = 0 }
    end
  else
    m.new_series = function() return { value = 0 } end
  end
  if #labels == 0 then
    m.only = m.new_series()
    m.only.labels = ""
  end
  self.list[#self.list + 1] = m
  self.by_name[name] = m
  return m
end

--- registry:counter(name, help, [label names]) -> Counter
function methods.counter(self, name, help, labels) return define(self, "counter", name, help, labels) end
--- registry:gauge(name, help, [label names]) -> Gauge
function methods.gauge(self, name, help, labels) return define(self, "gauge", name, help, labels) end
--- registry:histogram(name, help, [label names], [bucket upper bounds]) -> Histogram
function methods.histogram(self, name, help, labels, buckets)
  return define(self, "histogram", name, help, labels, buckets)
end

--- registry:get(name) -> the metric named name, or nil
function methods.get(self, name) return self.by_name[name] end

--- registry:on_collect(fn): fn(registry) runs before every render, to set
-- values read at scrape time (memory, open connections).
function methods.on_collect(self, fn)
  if type(fn) ~= "function" then error("on_collect takes a function", 2) end
  self.collectors[#self.collectors + 1] = fn
end

--- registry:render() -> the text exposition of every metric (metrics in
-- name order, series in order of first use).
function methods.render(self)
  for _, fn in ipairs(self.collectors) do fn(self) end
  local list = {}
  for i, m in ipairs(self.list) do list[i] = m end
  table_sort(list, function(a, b) return a.name < b.name end)
  local out = {}
  for _, m in ipairs(list) do render_metric(m, out) end
  out[#out + 1] = ""
  return table_concat(out, "\n")
end

-- ---- listener -----------------------------------------------------------------

--- metrics.listener(registry, opts) -> HttpServer (loom.http.server, not
-- yet listening). opts: host (default "127.0.0.1"), port (required; 0
-- picks one), log (function(level, message)). It answers GET or HEAD
-- /metrics with the registry's text, anything else with 404 M_UNRECOGNIZED.
function metrics.listener(registry, opts)
  local http = require "loom.http.server"
  local response = require "loom.http.response"
  return http.new {
    host = opts.host or "127.0.0.1",
    port = opts.port,
    log = opts.log,
    limits = { max_connections = 64, max_pipeline = 4 },
    handler = function(req)
      if req.path == "/metrics" and (req.method == "GET" or req.method == "HEAD") then
        return response.new(200, registry:render(), { ["Content-Type"] = metrics.CONTENT_TYPE })
      end
      return response.for_error("M_UNRECOGNIZED")
    end,
  }
end

return metrics
