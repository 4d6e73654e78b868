/* loom.core: the module table and the helpers every part shares. */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

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

int loom_opt_bool(lua_State *L, int t, const char *k, int def)
{
    int r = def;
    if (lua_getfield(L, t, k) != LUA_TNIL) {
        if (!lua_isboolean(L, -1))
            return luaL_error(L, "bad option '%s' (boolean expected, got %s)",
                              k, luaL_typename(L, -1));
        r = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
    return r;
}

void loom_new_type(lua_State *L, const char *name, const luaL_Reg *methods,
                   const luaL_Reg *metamethods)
{
    luaL_checkstack(L, 3, name);
    luaL_newmetatable(L, name);
    if (metamethods != NULL)
        luaL_setfuncs(L, metamethods, 0);
    if (methods != NULL) {
        lua_newtable(L);
        luaL_setfuncs(L, methods, 0);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
}

/* core.listdir(path) -> sorted array of the names in a directory (without
 * "." and ".."), or nil, message, "io_error". */
static int l_listdir(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    DIR **box = (DIR **)lua_newuserdatauv(L, sizeof(DIR *), 0);
    struct dirent *de;
    lua_Integer n = 0;
    *box = opendir(path);
    if (!*box)
        return loom_fail(L, "io_error", "cannot list %s: %s", path, strerror(errno));
    lua_newtable(L);
    while ((de = readdir(*box)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        lua_pushstring(L, de->d_name);
        lua_rawseti(L, -2, ++n);
    }
    closedir(*box);
    *box = NULL;
    /* sort with table.sort semantics (byte order) */
    lua_getglobal(L, "table");
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "sort");
        lua_pushvalue(L, -3);
        lua_call(L, 1, 0);
    }
    lua_pop(L, 1);
    return 1;
}

/* core.now_ms() -> the wall-clock time in milliseconds since the epoch, as
 * an integer (origin_server_ts). */
static int l_now_ms(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushinteger(L, (lua_Integer)ts.tv_sec * 1000 + (lua_Integer)(ts.tv_nsec / 1000000));
    return 1;
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
    loom_open_http(L);
    loom_open_tls(L);
    loom_open_dns(L);
    loom_open_media(L);
    loom_open_push(L);
    lua_pushcfunction(L, l_now_ms);
    lua_setfield(L, -2, "now_ms");
    lua_pushcfunction(L, l_listdir);
    lua_setfield(L, -2, "listdir");
    lua_pushliteral(L, "0.1.0");
    lua_setfield(L, -2, "_VERSION");
    return 1;
}
