/* Shared set-up of loom's Lua-driven fuzz targets: a lua_State with the
 * standard libraries, and the target's check script loaded and called with
 * loom.core, leaving the function it returns on top of the stack. */
#ifndef LOOM_FUZZ_LUA_H
#define LOOM_FUZZ_LUA_H

#include <stdio.h>
#include <stdlib.h>

#include <lualib.h>

#include "loom.h"

int luaopen_loom_core(lua_State *L);

static inline lua_State *fuzz_lua_open(const char *script)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    if (luaL_loadstring(L, script) != LUA_OK) abort();
    luaL_requiref(L, "loom.core", luaopen_loom_core, 0);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) abort();
    return L;
}

/* Call the check function (a copy of it is pushed below the nargs arguments
 * the caller pushed); abort with the message when it raises. */
static inline void fuzz_lua_check(lua_State *L, int nargs)
{
    lua_pushvalue(L, -(nargs + 1));
    lua_insert(L, -(nargs + 1));
    if (lua_pcall(L, nargs, 0, 0) != LUA_OK) {
        fprintf(stderr, "%s\n", lua_tostring(L, -1));
        abort();
    }
    lua_gc(L, LUA_GCSTEP, 0);
}

#endif
