/* libFuzzer target: loom.core.token.parse and bounds built from its tokens.
 *
 * Checks, through the real Lua entry points:
 *   - parse either fails with code "bad_token" or returns a token whose
 *     string form is exactly the input (tokens are canonical);
 *   - a parsed token's bound gives the same answer as a reference comparison
 *     for a few (depth, stream) pairs.
 *
 * Built and run by scripts/fuzz.sh.
 */
#include "fuzz_lua.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *state;

static const char *script =
    "local core = ...\n"
    "local token, bound = core.token, core.bound\n"
    "return function(s)\n"
    "  local t, msg, code = token.parse(s)\n"
    "  if not t then\n"
    "    assert(code == 'bad_token' and type(msg) == 'string')\n"
    "    return\n"
    "  end\n"
    "  assert(tostring(t) == s, 'not canonical: ' .. s)\n"
    "  for _, op in ipairs { '<', '<=', '>', '>=' } do\n"
    "    local b = bound.new(t, op)\n"
    "    for _, p in ipairs { {1, 0}, {1, -1}, {t.depth or 1, t.stream}, {(t.depth or 1), math.mininteger},\n"
    "                         {math.maxinteger, math.maxinteger} } do\n"
    "      local d, st = p[1], p[2]\n"
    "      local c\n"
    "      if t.depth and d ~= t.depth then c = d < t.depth and -1 or 1\n"
    "      else c = st < t.stream and -1 or (st > t.stream and 1 or 0) end\n"
    "      local want = (op == '<' and c < 0) or (op == '<=' and c <= 0) or (op == '>' and c > 0)\n"
    "        or (op == '>=' and c >= 0)\n"
    "      assert(b:test(d, st) == want)\n"
    "    end\n"
    "  end\n"
    "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!state) state = fuzz_lua_open(script);
    lua_pushlstring(state, (const char *)data, size);
    fuzz_lua_check(state, 1);
    return 0;
}
