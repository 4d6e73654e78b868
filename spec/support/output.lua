-- busted output handler for loom: one dot per test, failures in full, then
-- a counts line that scripts/test.sh adds up ("N passed, N failed").
-- LOOM_COUNTS_FILE, when set, receives "passed failed" for the run.
return function()
  local busted = require 'busted'
  local handler = require 'busted.outputHandlers.base'()
  local io_write, io_flush = io.write, io.flush

  local function describe(element)
    return handler.getFullName(element)
  end

  local function report(kind, list)
    for _, item in ipairs(list) do
      io_write(("\n%s: %s\n"):format(kind, describe(item.element)))
      local trace = item.trace or item.element.trace
      if trace and trace.short_src then
        io_write(("  at %s:%d\n"):format(trace.short_src, trace.currentline or 0))
      end
      if item.message then
        io_write("  ", tostring(item.message):gsub("\n", "\n  "), "\n")
      end
    end
  end

  handler.testEnd = function(_, _, status)
    io_write(status == 'success' and '.' or status == 'pending' and 'p' or 'F')
    io_flush()
    return nil, true
  end

  handler.suiteEnd = function()
    report("FAILED", handler.failures)
    report("ERROR", handler.errors)
    local passed = handler.successesCount
    local failed = handler.failuresCount + handler.errorsCount
    io_write(("\nbusted: %d passed, %d failed, %d pending (%.1f s)\n"):format(
      passed, failed, handler.pendingsCount, handler.getDuration()))
    local path = os.getenv('LOOM_COUNTS_FILE')
    if path then
      local f = assert(io.open(path, 'w'))
      f:write(passed, ' ', failed + handler.pendingsCount, '\n')
      f:close()
    end
    return nil, true
  end

  busted.subscribe({ 'test', 'end' }, handler.testEnd, { predicate = handler.cancelOnPending })
  busted.subscribe({ 'suite', 'end' }, handler.suiteEnd)
  return handler
end
