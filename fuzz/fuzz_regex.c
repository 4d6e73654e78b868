/* libFuzzer target for loom.core.regex (csrc/regex.c), driven through the Lua
 * API the server uses.
 *
 * Input: byte 0 = flags (bit 0 anchored, bit 1 icase), then the pattern, a
 * 0xFF byte, then the subject (may contain NULs). Checks, besides the
 * sanitizers: compile either gives a loom.Regex or nil + message + "bad_regex";
 * match gives a boolean; an anchored match implies an unanchored one.
 *
 * Build (from the repository root):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_POSIX_C_SOURCE=200809L \
 *     $(pkg-config --cflags lua5.4) -Icsrc -o build/fuzz_regex fuzz/fuzz_regex.c \
 *     csrc/[a-z]*.c $(pkg-config --libs lua5.4 sqlite3 libcrypto)
 *   build/fuzz_regex -max_len=512 -rss_limit_mb=512
 */
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "loom.h"

int luaopen_loom_core(lua_State *L);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* compile(pattern, {anchored=, icase=}) and match(subject): -1 on compile
 * failure, else 0/1. Runs under lua_pcall, so a raise is a bug. */
static int run(lua_State *L)
{
    size_t plen, slen;
    const char *pat = lua_tolstring(L, 1, &plen);
    int anchored = lua_toboolean(L, 3), icase = lua_toboolean(L, 4);
    (void)lua_tolstring(L, 2, &slen);
    (void)pat;
    lua_getfield(L, 5, "compile");
    lua_pushvalue(L, 1);
    lua_createtable(L, 0, 2);
    lua_pushboolean(L, anchored);
    lua_setfield(L, -2, "anchored");
    lua_pushboolean(L, icase);
    lua_setfield(L, -2, "icase");
    lua_call(L, 2, 3);
    if (lua_isnil(L, -3)) {
        if (!lua_isstring(L, -2) || strcmp(lua_tostring(L, -1), "bad_regex") != 0)
            abort();
        lua_pushinteger(L, -1);
        return 1;
    }
    lua_pop(L, 2);
    lua_getfield(L, -1, "match");
    lua_insert(L, -2);
    lua_pushvalue(L, 2);
    lua_call(L, 2, 1);
    if (!lua_isboolean(L, -1))
        abort();
    lua_pushinteger(L, lua_toboolean(L, -1));
    return 1;
}

static int try(lua_State *L, const char *pat, size_t plen, const char *subj,
               size_t slen, int anchored, int icase)
{
    int r;
    lua_pushcfunction(L, run);
    lua_pushlstring(L, pat, plen);
    lua_pushlstring(L, subj, slen);
    lua_pushboolean(L, anchored);
    lua_pushboolean(L, icase);
    lua_getfield(L, -6, "regex");
    if (lua_pcall(L, 5, 1, 0) != LUA_OK)
        abort();
    r = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lua_State *L;
    const char *pat, *subj, *sep;
    size_t plen, slen;
    int flags, a, u;
    if (size < 1)
        return 0;
    flags = data[0];
    pat = (const char *)data + 1;
    sep = memchr(pat, 0xFF, size - 1);
    plen = sep ? (size_t)(sep - pat) : size - 1;
    subj = sep ? sep + 1 : "";
    slen = sep ? size - 1 - plen - 1 : 0;

    L = luaL_newstate();
    if (L == NULL)
        return 0;
    luaL_openlibs(L);
    luaL_requiref(L, "loom.core", luaopen_loom_core, 0); /* module at index 1 */
    a = try(L, pat, plen, subj, slen, (flags & 1) != 0, (flags & 2) != 0);
    if (flags & 1) {
        u = try(L, pat, plen, subj, slen, 0, (flags & 2) != 0);
        if (a != u && !(a == 0 && u == 1)) /* compile must agree; anchored => unanchored */
            abort();
    }
    lua_close(L);
    return 0;
}
