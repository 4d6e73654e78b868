/* loom.core: the module table and the helpers every part shares. */
#include <stdarg.h>

#include "loom.h"

int loom_fail(lua_State *L, const char *code, const char *fmt, ...)
{
    va_list ap;
    luaL_pushfail(L);
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    lua_pushstring(L, code);
    return 3;
}

int luaopen_loom_core(lua_State *L);

int luaopen_loom_core(lua_State *L)
{
    lua_newtable(L);
    loom_open_token(L);
    loom_open_json(L);
    loom_open_crypto(L);
    loom_open_sqlite(L);
    loom_open_regex(L);
    loom_open_state(L);
    loom_open_stateres(L);
    lua_pushliteral(L, "0.1.0");
    lua_setfield(L, -2, "_VERSION");
    return 1;
}
