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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "loom.h"

int luaopen_loom_core(lua_State *L);
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

static void setup(void)
{
    state = luaL_newstate();
    luaL_openlibs(state);
    if (luaL_loadstring(state, script) != LUA_OK) abort();
    luaL_requiref(state, "loom.core", luaopen_loom_core, 0);
    if (lua_pcall(state, 1, 1, 0) != LUA_OK) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!state) setup();
    lua_pushvalue(state, -1);
    lua_pushlstring(state, (const char *)data, size);
    if (lua_pcall(state, 1, 0, 0) != LUA_OK) {
        fprintf(stderr, "%s\n", lua_tostring(state, -1));
        abort();
    }
    return 0;
}
