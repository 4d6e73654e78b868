/* libFuzzer target: loom.core.crypto.base64_decode / base64_encode.
 *
 * Drives the real Lua entry points (so the argument handling is fuzzed too)
 * and checks them against a slow reference decoder written from RFC 4648:
 *   - both alphabets: decode(input) succeeds exactly when the reference
 *     accepts it, and then yields the same bytes;
 *   - encode(decode(input)) decodes to the same bytes again;
 *   - decode(encode(input)) == input for the raw input bytes.
 *
 * Build and run (from the repository root):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icsrc \
 *     $(pkg-config --cflags lua5.4) fuzz/fuzz_base64.c $(find csrc -name '*.c') \
 *     $(pkg-config --libs lua5.4 sqlite3 libcrypto) -o build/fuzz_base64
 *   build/fuzz_base64 -max_total_time=60 -max_len=4096
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "loom.h"

int luaopen_loom_core(lua_State *L);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *state;

/* Reference decoder: -1 when invalid, else the decoded length in out. */
static long ref_decode(const uint8_t *in, size_t n, int urlsafe, uint8_t *out)
{
    const char *alpha = urlsafe
        ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i, pad = 0, o = 0, bits = 0;
    unsigned long acc = 0;
    if (n % 4 == 0 && n >= 1 && in[n - 1] == '=') {
        pad = (n >= 2 && in[n - 2] == '=') ? 2 : 1;
    }
    n -= pad;
    if (n % 4 == 1) return -1;
    for (i = 0; i < n; i++) {
        const char *p = in[i] == 0 ? NULL : strchr(alpha, in[i]);
        if (p == NULL) return -1;
        acc = (acc << 6) | (unsigned long)(p - alpha);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
            acc &= (1ul << bits) - 1;
        }
    }
    return (long)o;
}

static void die(const char *what)
{
    fprintf(stderr, "fuzz_base64: %s\n", what != NULL ? what : "?");
    abort();
}

/* crypto[fname](s, urlsafe) leaving its results (1 or 3 values) on the stack;
 * returns the number of results. */
static int call(const char *fname, const char *s, size_t n, int urlsafe)
{
    int top = lua_gettop(state);
    lua_getfield(state, 1, fname);
    lua_pushlstring(state, s, n);
    lua_pushboolean(state, urlsafe);
    if (lua_pcall(state, 2, LUA_MULTRET, 0) != LUA_OK) die(lua_tostring(state, -1));
    return lua_gettop(state) - top;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int urlsafe;
    uint8_t *ref = malloc(size + 1);
    if (ref == NULL) return 0;
    if (state == NULL) {
        state = luaL_newstate();
        luaL_openlibs(state);
        luaL_requiref(state, "loom.core", luaopen_loom_core, 0);
        lua_getfield(state, -1, "crypto");
        lua_replace(state, 1);
        lua_settop(state, 1);
    }
    for (urlsafe = 0; urlsafe <= 1; urlsafe++) {
        long rlen = ref_decode(data, size, urlsafe, ref);
        int nres = call("base64_decode", (const char *)data, size, urlsafe);
        if (lua_isstring(state, -nres) && nres == 1) {
            size_t dlen, elen, d2len;
            const char *dec = lua_tolstring(state, -1, &dlen);
            const char *enc, *dec2;
            if (rlen < 0 || (size_t)rlen != dlen || memcmp(dec, ref, dlen) != 0)
                die("decoder accepted what the reference rejects, or differs");
            call("base64_encode", dec, dlen, urlsafe);
            enc = lua_tolstring(state, -1, &elen);
            if (elen % 4 == 1) die("encoder produced an impossible length");
            call("base64_decode", enc, elen, urlsafe);
            dec2 = lua_tolstring(state, -1, &d2len);
            if (dec2 == NULL || d2len != dlen || memcmp(dec, dec2, dlen) != 0)
                die("decode(encode(x)) != x");
        } else {
            if (nres != 3 || !lua_isnil(state, -3)
                || strcmp(lua_tostring(state, -1), "bad_base64") != 0)
                die("decoder failed without nil, message, \"bad_base64\"");
            if (rlen >= 0) die("decoder rejected what the reference accepts");
        }
        lua_settop(state, 1);

        /* the raw input as bytes: encode then decode round trip */
        {
            size_t elen, dlen;
            const char *enc, *dec;
            call("base64_encode", (const char *)data, size, urlsafe);
            enc = lua_tolstring(state, -1, &elen);
            if (elen != size / 3 * 4 + (size % 3 ? size % 3 + 1 : 0))
                die("encoded length");
            call("base64_decode", enc, elen, urlsafe);
            dec = lua_tolstring(state, -1, &dlen);
            if (dec == NULL || dlen != size || memcmp(dec, data, size) != 0)
                die("decode(encode(bytes)) != bytes");
            lua_settop(state, 1);
        }
    }
    lua_gc(state, LUA_GCSTEP, 0);
    free(ref);
    return 0;
}
