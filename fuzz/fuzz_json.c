/* libFuzzer target for loom.core.json (csrc/json.c).
 *
 * The first input byte picks options (strict mode, max_depth); the rest is the
 * JSON text. When it decodes, it must re-encode, and decoding that encoding
 * must give the very same bytes again; failures must be one of the documented
 * codes and leave the Lua stack as it was.
 *
 * Build (json part only; -DLOOM_FUZZ_STUBS supplies the other loom_open_*):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -DLOOM_FUZZ_STUBS \
 *     -I/usr/include/lua5.4 fuzz/fuzz_json.c csrc/json.c csrc/core.c -llua5.4
 * or against the whole core:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I/usr/include/lua5.4 \
 *     fuzz/fuzz_json.c csrc/[a-z]*.c -llua5.4 -lsqlite3 -lcrypto
 * Run: ./a.out -max_total_time=60 -max_len=4096 corpus_dir/
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include "../csrc/loom.h"

#ifdef LOOM_FUZZ_STUBS
void loom_open_token(lua_State *L) { (void)L; }
void loom_open_crypto(lua_State *L) { (void)L; }
void loom_open_sqlite(lua_State *L) { (void)L; }
void loom_open_regex(lua_State *L) { (void)L; }
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *fuzz_L;

#define ENCODE 1   /* stack slots of json.encode and json.decode */
#define DECODE 2

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_json: %s: %s\n", what, detail ? detail : "");
    abort();
}

static lua_State *state(void)
{
    lua_State *L = fuzz_L;
    if (L)
        return L;
    L = luaL_newstate();
    if (!L)
        die("luaL_newstate", NULL);
    lua_newtable(L);
    loom_open_json(L);
    if (lua_gettop(L) != 1)
        die("loom_open_json", "unbalanced stack");
    lua_getfield(L, 1, "json");
    lua_getfield(L, 2, "encode");
    lua_getfield(L, 2, "decode");
    lua_remove(L, 1);
    lua_remove(L, 1);       /* ENCODE, DECODE */
    fuzz_L = L;
    return L;
}

static int known_code(const char *code)
{
    static const char *const codes[] = {
        "json_syntax", "json_utf8", "json_dup_key", "json_depth", "json_size",
        "json_float", "json_range", "json_type", NULL
    };
    int i;
    for (i = 0; codes[i]; i++)
        if (code && strcmp(code, codes[i]) == 0)
            return 1;
    return 0;
}

/* Calls f(arg at top, opts table) and checks the shape of the result: either one
 * non-nil value, or nil + string + known code. Leaves the results on the stack
 * and returns 1 on success. */
static int call(lua_State *L, int f, int strict, int max_depth, int floats)
{
    int top = lua_gettop(L), n;
    lua_pushvalue(L, f);
    lua_insert(L, top);
    lua_createtable(L, 0, 4);
    lua_pushboolean(L, strict);
    lua_setfield(L, -2, "strict");
    lua_pushboolean(L, floats);
    lua_setfield(L, -2, "floats");
    lua_pushinteger(L, max_depth);
    lua_setfield(L, -2, "max_depth");
    lua_pushinteger(L, 65536);
    lua_setfield(L, -2, "max_bytes");
    if (lua_pcall(L, 2, LUA_MULTRET, 0) != LUA_OK)
        die("raised", lua_tostring(L, -1));
    n = lua_gettop(L) - top + 1;
    if (n == 1 && !lua_isnil(L, -1))
        return 1;
    if (n != 3 || !lua_isnil(L, -3) || lua_type(L, -2) != LUA_TSTRING
            || !known_code(lua_tostring(L, -1)))
        die("bad failure shape", lua_tostring(L, -2));
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lua_State *L = state();
    int strict, max_depth;
    size_t n1, n2;
    const char *s1, *s2;
    if (size < 1)
        return 0;
    strict = data[0] & 1;
    max_depth = 1 + ((data[0] >> 1) & 63);
    lua_settop(L, 2);

    lua_pushlstring(L, (const char *)data + 1, size - 1);
    if (!call(L, DECODE, strict, max_depth, 0)) {
        lua_settop(L, 2);
        return 0;
    }
    /* decoded: the canonical form must exist (floats allowed when not strict) */
    if (!call(L, ENCODE, 0, max_depth, !strict)) {
        const char *code = lua_tostring(L, -1);
        if (strict || strcmp(code, "json_range") != 0)
            die("re-encode failed", lua_tostring(L, -2));
        lua_settop(L, 2);
        return 0;
    }
    s1 = lua_tolstring(L, -1, &n1);
    lua_pushvalue(L, -1);
    if (!call(L, DECODE, strict, max_depth, 0))
        die("canonical text does not decode", lua_tostring(L, -2));
    if (!call(L, ENCODE, 0, max_depth, !strict))
        die("second encode failed", lua_tostring(L, -2));
    s2 = lua_tolstring(L, -1, &n2);
    if (n1 != n2 || memcmp(s1, s2, n1) != 0) {
        fprintf(stderr, "first:  %.*s\nsecond: %.*s\n", (int)n1, s1, (int)n2, s2);
        die("round trip is not stable", NULL);
    }
    /* canonical text is never longer than the input (no whitespace, minimal
     * escapes) except where floats are re-spelled */
    if (strict && n1 > size - 1)
        die("canonical form longer than the input", s1);
    lua_settop(L, 2);
    if ((data[0] & 0x80) != 0)
        lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}
