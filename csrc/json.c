/* loom.core.json — canonical JSON (Matrix spec appendix "Canonical JSON")
 * encoder and a strict RFC 8259 decoder.
 *
 *   json.null, json.array_mt, json.array(t), json.is_array(t)
 *   json.encode(value [, opts])  -> string | nil, message, code
 *   json.decode(text [, opts])   -> value  | nil, message, code
 *
 * Memory: the encoder writes into a buffer owned by a per-call userdata
 * (loom.JSONEncoder, freed by __gc), so a raise mid-way (out of memory) leaks
 * nothing; the decoder keeps everything on the Lua stack and builds escaped
 * strings with a luaL_Buffer. Both recurse once per nesting level, bounded by
 * max_depth (at most DEPTH_CAP), and check the Lua stack at every level.
 * Tables are read with raw access only: metamethods never run.
 */
#include <float.h>
#include <locale.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom.h"

#define ARRAY_MT          "loom.JSONArray"
#define ENCODER_MT        "loom.JSONEncoder"
#define DEFAULT_MAX_DEPTH 100
#define DEPTH_CAP         1000
#define DEFAULT_MAX_BYTES 1048576
#define PATH_SEGS         16
#define PATH_KEY_MAX      40

#if defined(__GNUC__)
#define LOOM_NOINLINE __attribute__((noinline))
#define LOOM_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define LOOM_NOINLINE
#define LOOM_PRINTF(f, a)
#endif

/* Byte classes for string scanning: 0 = copied as is, 1 = '"', '\\' or a
 * control character, 2 = first byte of a multi-byte (or invalid) sequence. */
static const unsigned char byte_class[256] = {
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1, 1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
    0,0,1,0,0,0,0,0,0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0,0,0,0,0,1,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2, 2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,
    2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2, 2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,
    2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2, 2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,
    2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2, 2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,
};

/* Length (2..4) of the well-formed UTF-8 sequence starting with a byte >= 0x80
 * at p, or 0 when it is not well-formed (Unicode table 3-7: no overlong forms,
 * no surrogates, nothing above U+10FFFF, no truncation). */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0], c1;
    size_t n;
    if (c < 0xC2 || c > 0xF4)
        return 0;
    n = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if ((size_t)(end - p) < n)
        return 0;
    c1 = p[1];
    if ((c1 & 0xC0) != 0x80)
        return 0;
    switch (c) {
    case 0xE0: if (c1 < 0xA0) return 0; break;
    case 0xED: if (c1 > 0x9F) return 0; break;
    case 0xF0: if (c1 < 0x90) return 0; break;
    case 0xF4: if (c1 > 0x8F) return 0; break;
    default: break;
    }
    if (n >= 3 && (p[2] & 0xC0) != 0x80)
        return 0;
    if (n == 4 && (p[3] & 0xC0) != 0x80)
        return 0;
    return n;
}

/* Longest prefix of s (at most max bytes) that does not split a UTF-8
 * sequence; used to quote keys in messages. */
static size_t utf8_prefix(const char *s, size_t n, size_t max)
{
    if (n <= max)
        return n;
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}

/* Options shared by encode and decode: an optional table at index `opts`. */
static lua_Integer opt_integer(lua_State *L, int opts, const char *name,
                               lua_Integer def, lua_Integer min, lua_Integer max)
{
    lua_Integer v = def;
    int t, ok = 1;
    if (opts == 0)
        return def;
    t = lua_getfield(L, opts, name);
    if (t != LUA_TNIL) {
        v = lua_tointegerx(L, -1, &ok);
        if (t != LUA_TNUMBER || !ok || v < min || v > max)
            luaL_argerror(L, opts, lua_pushfstring(L,
                "opts.%s must be an integer in %I..%I", name, min, max));
    }
    lua_pop(L, 1);
    return v;
}

static int opt_boolean(lua_State *L, int opts, const char *name)
{
    int t, v = 0;
    if (opts == 0)
        return 0;
    t = lua_getfield(L, opts, name);
    if (t == LUA_TBOOLEAN)
        v = lua_toboolean(L, -1);
    else if (t != LUA_TNIL)
        luaL_argerror(L, opts, lua_pushfstring(L, "opts.%s must be a boolean", name));
    lua_pop(L, 1);
    return v;
}

/* 0 when there is no options table, else its index (raises on a non-table). */
static int opt_table(lua_State *L, int idx)
{
    if (lua_isnoneornil(L, idx))
        return 0;
    luaL_checktype(L, idx, LUA_TTABLE);
    return idx;
}

/* ------------------------------------------------------------------ encode */

typedef struct {
    const char *key;   /* points into a key kept on the Lua stack */
    size_t len;
    int slot;          /* stack index of the value */
} Member;

typedef struct {
    char key[PATH_KEY_MAX + 4];
    size_t len;        /* key length copied; (size_t)-1 for an array index */
    lua_Integer index; /* 0-based array index */
    int cut;           /* key was truncated */
} PathSeg;

typedef struct {
    lua_State *L;
    lua_Alloc alloc;
    void *aud;
    char *buf;
    size_t len, cap;
    Member *mem;       /* stack of members of the objects being encoded */
    size_t nmem, capmem;
    int max_depth;
    int floats;
    int array_mt;      /* stack index of json.array_mt */
    const char *code;  /* failure */
    char msg[160];
    PathSeg path[PATH_SEGS];  /* where it failed, innermost first */
    int npath, path_more;
} Encoder;

static void enc_release(Encoder *e)
{
    if (e->buf)
        e->alloc(e->aud, e->buf, e->cap, 0);
    if (e->mem)
        e->alloc(e->aud, e->mem, e->capmem * sizeof(Member), 0);
    e->buf = NULL;
    e->len = e->cap = 0;
    e->mem = NULL;
    e->nmem = e->capmem = 0;
}

static int encoder_gc(lua_State *L)
{
    Encoder *e = (Encoder *)luaL_testudata(L, 1, ENCODER_MT);
    if (e)
        enc_release(e);
    return 0;
}

static int encoder_tostring(lua_State *L)
{
    lua_pushfstring(L, ENCODER_MT ": %p", lua_touserdata(L, 1));
    return 1;
}

static void enc_grow(Encoder *e, size_t n)
{
    size_t cap = e->cap ? e->cap : 1024;
    void *nb;
    while (cap - e->len < n) {
        if (cap > ((size_t)-1) / 4)
            luaL_error(e->L, "JSON output too large");
        cap *= 2;
    }
    nb = e->alloc(e->aud, e->buf, e->cap, cap);
    if (nb == NULL)
        luaL_error(e->L, "not enough memory");
    e->buf = (char *)nb;
    e->cap = cap;
}

static void put_bytes(Encoder *e, const void *p, size_t n)
{
    if (n == 0)
        return;
    if (e->cap - e->len < n)
        enc_grow(e, n);
    memcpy(e->buf + e->len, p, n);
    e->len += n;
}

static void put_char(Encoder *e, char c)
{
    if (e->cap == e->len)
        enc_grow(e, 1);
    e->buf[e->len++] = c;
}

#define put_literal(e, s) put_bytes((e), (s), sizeof(s) - 1)

static int enc_fail(Encoder *e, const char *code, const char *fmt, ...) LOOM_PRINTF(3, 4);

static int enc_fail(Encoder *e, const char *code, const char *fmt, ...)
{
    va_list ap;
    e->code = code;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

static void path_key(Encoder *e, const char *key, size_t len)
{
    PathSeg *s;
    if (e->npath == PATH_SEGS) {
        e->path_more = 1;
        return;
    }
    s = &e->path[e->npath++];
    s->len = utf8_prefix(key, len, PATH_KEY_MAX);
    s->cut = s->len < len;
    memcpy(s->key, key, s->len);
}

static void path_index(Encoder *e, lua_Integer index)
{
    if (e->npath == PATH_SEGS) {
        e->path_more = 1;
        return;
    }
    e->path[e->npath].len = (size_t)-1;
    e->path[e->npath].index = index;
    e->npath++;
}

/* Pushes the failure message: the reason, then where (a JSON pointer). */
static void push_enc_message(lua_State *L, Encoder *e)
{
    luaL_Buffer b;
    int i;
    size_t k;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, e->msg);
    if (e->npath > 0) {
        luaL_addstring(&b, " at ");
        if (e->path_more)
            luaL_addstring(&b, "/...");
        for (i = e->npath - 1; i >= 0; i--) {
            PathSeg *s = &e->path[i];
            luaL_addchar(&b, '/');
            if (s->len == (size_t)-1) {
                lua_pushfstring(L, "%I", s->index);
                luaL_addvalue(&b);
                continue;
            }
            for (k = 0; k < s->len; k++) {
                if (s->key[k] == '~')
                    luaL_addstring(&b, "~0");
                else if (s->key[k] == '/')
                    luaL_addstring(&b, "~1");
                else
                    luaL_addchar(&b, s->key[k]);
            }
            if (s->cut)
                luaL_addstring(&b, "...");
        }
    }
    luaL_pushresult(&b);
}

static int put_string(Encoder *e, const char *str, size_t n, int is_key)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    const unsigned char *p = s, *end = s + n, *run = s;
    char esc[6];
    size_t k;
    if (e->cap - e->len < n + 2)
        enc_grow(e, n + 2);
    e->buf[e->len++] = '"';
    while (p < end) {
        unsigned c = *p;
        switch (byte_class[c]) {
        case 0:
            p++;
            continue;
        case 2:
            k = utf8_len(p, end);
            if (k == 0)
                return enc_fail(e, "json_utf8", "invalid UTF-8 at byte %lu of %s",
                                (unsigned long)(p - s), is_key ? "a key" : "a string");
            p += k;
            continue;
        default:
            break;
        }
        put_bytes(e, run, (size_t)(p - run));
        esc[0] = '\\';
        switch (c) {
        case '"': esc[1] = '"'; k = 2; break;
        case '\\': esc[1] = '\\'; k = 2; break;
        case '\b': esc[1] = 'b'; k = 2; break;
        case '\f': esc[1] = 'f'; k = 2; break;
        case '\n': esc[1] = 'n'; k = 2; break;
        case '\r': esc[1] = 'r'; k = 2; break;
        case '\t': esc[1] = 't'; k = 2; break;
        default:
            esc[1] = 'u'; esc[2] = '0'; esc[3] = '0';
            esc[4] = hex[c >> 4]; esc[5] = hex[c & 15];
            k = 6;
            break;
        }
        put_bytes(e, esc, k);
        run = ++p;
    }
    put_bytes(e, run, (size_t)(p - run));
    put_char(e, '"');
    return 0;
}

static int put_integer(Encoder *e, lua_Integer v)
{
    char tmp[24];
    char *q = tmp + sizeof tmp;
    lua_Unsigned u;
    if (v > LOOM_MAX_SAFE_INT || v < -LOOM_MAX_SAFE_INT)
        return enc_fail(e, "json_range",
                        "integer " LUA_INTEGER_FMT " is outside -(2^53-1)..2^53-1",
                        (LUAI_UACINT)v);
    u = v < 0 ? (lua_Unsigned)0 - (lua_Unsigned)v : (lua_Unsigned)v;
    do {
        *--q = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u);
    if (v < 0)
        *--q = '-';
    put_bytes(e, q, (size_t)(tmp + sizeof tmp - q));
    return 0;
}

static int put_float(Encoder *e, lua_Number v)
{
    char tmp[48];
    char point = lua_getlocaledecpoint();
    int prec, n, i, has_mark = 0;
    if (!isfinite(v))
        return enc_fail(e, "json_float", "cannot encode non-finite number %s",
                        isnan(v) ? "nan" : v > 0 ? "inf" : "-inf");
    if (!e->floats)
        return enc_fail(e, "json_float",
                        "cannot encode float %.17g (canonical JSON has integers only)",
                        (double)v);
    /* For normal doubles the shortest round-tripping form has at most 15
     * digits exactly when %.15g round-trips; subnormals need the full search. */
    n = 0;
    for (prec = fabs(v) < DBL_MIN ? 1 : 15; prec <= 17; prec++) {
        n = snprintf(tmp, sizeof tmp, "%.*g", prec, (double)v);
        if (strtod(tmp, NULL) == (double)v)
            break;
    }
    for (i = 0; i < n; i++) {
        if (tmp[i] == point)
            tmp[i] = '.';
        if (tmp[i] == '.' || tmp[i] == 'e')
            has_mark = 1;
    }
    put_bytes(e, tmp, (size_t)n);
    if (!has_mark)
        put_literal(e, ".0");
    return 0;
}

static int member_cmp(const void *a, const void *b)
{
    const Member *x = (const Member *)a, *y = (const Member *)b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = n ? memcmp(x->key, y->key, n) : 0;
    if (c)
        return c;
    return (x->len > y->len) - (x->len < y->len);
}

static void sort_members(Member *m, size_t n)
{
    size_t i, j;
    if (n > 12) {
        qsort(m, n, sizeof *m, member_cmp);
        return;
    }
    for (i = 1; i < n; i++) {
        Member t = m[i];
        for (j = i; j > 0 && member_cmp(&m[j - 1], &t) > 0; j--)
            m[j] = m[j - 1];
        m[j] = t;
    }
}

static void push_member(Encoder *e, const char *key, size_t len, int slot)
{
    if (e->nmem == e->capmem) {
        size_t cap = e->capmem ? e->capmem * 2 : 64;
        void *nm;
        if (cap > ((size_t)-1) / sizeof(Member))
            luaL_error(e->L, "not enough memory");
        nm = e->alloc(e->aud, e->mem, e->capmem * sizeof(Member), cap * sizeof(Member));
        if (nm == NULL)
            luaL_error(e->L, "not enough memory");
        e->mem = (Member *)nm;
        e->capmem = cap;
    }
    e->mem[e->nmem].key = key;
    e->mem[e->nmem].len = len;
    e->mem[e->nmem].slot = slot;
    e->nmem++;
}

static int encode_value(Encoder *e, int idx, int depth);

static const char not_json_table[] =
    "cannot encode a table that is neither an array (keys 1..n) "
    "nor an object (string keys)";

/* Object: the first key/value pair from lua_next is on the stack above base.
 * Keys and values stay on the stack (k1 v1 k2 v2 ...) while the sorted
 * members are written, so the key pointers stay valid. */
static int encode_object(Encoder *e, int t, int depth, int base)
{
    lua_State *L = e->L;
    size_t first = e->nmem, n = 0, i;
    int rc = 0;
    for (;;) {
        size_t len;
        const char *key;
        if (lua_type(L, -2) != LUA_TSTRING) {
            rc = enc_fail(e, "json_type", "%s", not_json_table);
            goto done;
        }
        key = lua_tolstring(L, -2, &len);
        push_member(e, key, len, lua_gettop(L));
        n++;
        if (!lua_checkstack(L, 8)) {
            rc = enc_fail(e, "json_depth", "object too large for the Lua stack");
            goto done;
        }
        lua_pushvalue(L, -2);
        if (!lua_next(L, t))
            break;
    }
    sort_members(e->mem + first, n);
    put_char(e, '{');
    for (i = 0; i < n; i++) {
        Member m = e->mem[first + i];   /* copy: e->mem may move below */
        if (i)
            put_char(e, ',');
        if (put_string(e, m.key, m.len, 1)) {  /* the key itself is bad */
            rc = -1;
            goto done;
        }
        put_char(e, ':');
        if (encode_value(e, m.slot, depth)) {
            path_key(e, m.key, m.len);
            rc = -1;
            goto done;
        }
    }
    put_char(e, '}');
done:
    e->nmem = first;
    lua_settop(L, base);
    return rc;
}

/* Array: the first key/value pair from lua_next is on the stack above base.
 * One pass checks the keys are exactly 1..n, then values are read in order. */
static int encode_array(Encoder *e, int t, int depth, int base, int marked)
{
    lua_State *L = e->L;
    lua_Integer n = 0, max = 0, i;
    do {
        lua_Integer k;
        if (!lua_isinteger(L, -2) || (k = lua_tointeger(L, -2)) < 1) {
            lua_settop(L, base);
            return enc_fail(e, "json_type", "%s", marked
                ? "cannot encode a json.array table with a key outside 1..n"
                : not_json_table);
        }
        if (k > max)
            max = k;
        n++;
        lua_pop(L, 1);
    } while (lua_next(L, t));
    if (max != n)
        return enc_fail(e, "json_type", "%s", marked
            ? "cannot encode a json.array table with holes"
            : not_json_table);
    put_char(e, '[');
    for (i = 1; i <= n; i++) {
        if (i > 1)
            put_char(e, ',');
        lua_rawgeti(L, t, i);
        if (encode_value(e, base + 1, depth)) {
            path_index(e, i - 1);
            lua_settop(L, base);
            return -1;
        }
        lua_settop(L, base);
    }
    put_char(e, ']');
    return 0;
}

static int encode_table(Encoder *e, int t, int depth)
{
    lua_State *L = e->L;
    int base, marked = 0;
    if (depth > e->max_depth)
        return enc_fail(e, "json_depth",
                        "nesting deeper than max_depth %d (is the table cyclic?)",
                        e->max_depth);
    if (!lua_checkstack(L, 8))
        return enc_fail(e, "json_depth", "nesting too deep for the Lua stack");
    if (lua_getmetatable(L, t)) {
        marked = lua_rawequal(L, -1, e->array_mt);
        lua_pop(L, 1);
    }
    base = lua_gettop(L);
    lua_pushnil(L);
    if (!lua_next(L, t)) {
        if (marked)
            put_literal(e, "[]");
        else
            put_literal(e, "{}");
        return 0;
    }
    if (!marked && lua_type(L, -2) == LUA_TSTRING)
        return encode_object(e, t, depth, base);
    return encode_array(e, t, depth, base, marked);
}

static int encode_value(Encoder *e, int idx, int depth)
{
    lua_State *L = e->L;
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        return put_string(e, s, n, 0);
    }
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            return put_integer(e, lua_tointeger(L, idx));
        return put_float(e, lua_tonumber(L, idx));
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx))
            put_literal(e, "true");
        else
            put_literal(e, "false");
        return 0;
    case LUA_TTABLE:
        return encode_table(e, idx, depth + 1);
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL) {
            put_literal(e, "null");
            return 0;
        }
        break;
    default:
        break;
    }
    return enc_fail(e, "json_type", "cannot encode a value of type %s",
                    luaL_typename(L, idx));
}

/* Encodes the value at idx; pushes the string (returns 1) or nil, message,
 * code (returns 3). Nothing else is left on the stack. */
static int encode_to_string(lua_State *L, int idx, int max_depth, int floats)
{
    Encoder *e;
    int ud;
    idx = lua_absindex(L, idx);
    luaL_checkstack(L, 12, "JSON encode");
    e = (Encoder *)lua_newuserdatauv(L, sizeof *e, 0);
    memset(e, 0, sizeof *e);
    e->L = L;
    e->alloc = lua_getallocf(L, &e->aud);
    e->max_depth = max_depth;
    e->floats = floats;
    ud = lua_gettop(L);
    luaL_setmetatable(L, ENCODER_MT);
    luaL_getmetatable(L, ARRAY_MT);
    e->array_mt = ud + 1;
    if (encode_value(e, idx, 0) == 0) {
        lua_pushlstring(L, e->buf ? e->buf : "", e->len);
        enc_release(e);
        lua_replace(L, ud);
        lua_settop(L, ud);
        return 1;
    }
    enc_release(e);
    push_enc_message(L, e);
    loom_fail(L, e->code, "%s", lua_tostring(L, -1));
    lua_rotate(L, ud, 3);
    lua_settop(L, ud + 2);
    return 3;
}

int loom_json_encode_value(lua_State *L, int idx)
{
    return encode_to_string(L, idx, DEFAULT_MAX_DEPTH, 0);
}

static int json_encode(lua_State *L)
{
    int opts, max_depth, floats;
    luaL_checkany(L, 1);
    opts = opt_table(L, 2);
    max_depth = (int)opt_integer(L, opts, "max_depth", DEFAULT_MAX_DEPTH, 0, DEPTH_CAP);
    floats = opt_boolean(L, opts, "floats");
    return encode_to_string(L, 1, max_depth, floats);
}

/* ------------------------------------------------------------------ decode */

typedef struct {
    lua_State *L;
    const unsigned char *start, *p, *end;
    int max_depth;
    int strict;
    int array_mt;            /* stack index of json.array_mt */
    /* failure */
    const char *code;
    const char *what;
    const unsigned char *at;
    const unsigned char *detail;  /* quoted in the message when set */
    size_t detail_len;
    int found;               /* say what was found at `at` */
} Decoder;

static const char JSON_SYNTAX[] = "json_syntax";
static const char too_deep[] = "nesting deeper than max_depth";

static int dec_fail(Decoder *d, const unsigned char *at, const char *code, const char *what)
{
    d->at = at;
    d->code = code;
    d->what = what;
    return -1;
}

/* A syntax error where something else was expected: reports what was found,
 * or invalid UTF-8 when that is what is there. */
static int dec_expected(Decoder *d, const unsigned char *at, const char *what)
{
    if (at < d->end && *at >= 0x80 && utf8_len(at, d->end) == 0)
        return dec_fail(d, at, "json_utf8", "invalid UTF-8");
    d->found = 1;
    return dec_fail(d, at, JSON_SYNTAX, what);
}

static int dec_detail(Decoder *d, const unsigned char *at, const char *code,
                      const char *what, const unsigned char *detail, size_t len)
{
    d->detail = detail;
    d->detail_len = len;
    return dec_fail(d, at, code, what);
}

static int decode_fail(lua_State *L, Decoder *d)
{
    char msg[256], extra[96];
    extra[0] = '\0';
    if (d->detail) {
        size_t n = utf8_prefix((const char *)d->detail, d->detail_len, 60);
        snprintf(extra, sizeof extra, " %.*s%s", (int)n, (const char *)d->detail,
                 n < d->detail_len ? "..." : "");
    } else if (d->found) {
        if (d->at >= d->end)
            snprintf(extra, sizeof extra, ", found end of input");
        else if (*d->at >= 0x20 && *d->at < 0x7F)
            snprintf(extra, sizeof extra, ", found '%c'", *d->at);
        else if (*d->at < 0x80)
            snprintf(extra, sizeof extra, ", found byte 0x%02x", *d->at);
        else
            snprintf(extra, sizeof extra, ", found a non-ASCII character");
    } else if (d->what == too_deep) {
        snprintf(extra, sizeof extra, " %d", d->max_depth);
    }
    snprintf(msg, sizeof msg, "invalid JSON at byte %lu: %s%s",
             (unsigned long)(d->at - d->start), d->what, extra);
    return loom_fail(L, d->code, "%s", msg);
}

static void skip_ws(Decoder *d)
{
    const unsigned char *p = d->p, *end = d->end;
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    d->p = p;
}

static int hex4(const unsigned char *p, const unsigned char *end, unsigned *out)
{
    unsigned v = 0;
    int i;
    if (end - p < 4)
        return 0;
    for (i = 0; i < 4; i++) {
        unsigned c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return 0;
    }
    *out = v;
    return 1;
}

static char *put_utf8(char *o, unsigned long cp)
{
    if (cp < 0x80) {
        *o++ = (char)cp;
    } else if (cp < 0x800) {
        *o++ = (char)(0xC0 | (cp >> 6));
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *o++ = (char)(0xE0 | (cp >> 12));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *o++ = (char)(0xF0 | (cp >> 18));
        *o++ = (char)(0x80 | ((cp >> 12) & 0x3F));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    }
    return o;
}

/* Pushes the string whose (already validated) body is [s, end) with its
 * escapes decoded. Out of line: its luaL_Buffer must not sit in every
 * recursive frame. */
static LOOM_NOINLINE void push_unescaped(lua_State *L, const unsigned char *s,
                                         const unsigned char *end)
{
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, (size_t)(end - s));
    char *o = out;
    while (s < end) {
        unsigned u = 0, lo = 0xDC00;
        if (*s != '\\') {
            *o++ = (char)*s++;
            continue;
        }
        switch (s[1]) {
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u':
            hex4(s + 2, end, &u);
            if (u >= 0xD800 && u <= 0xDBFF) {
                hex4(s + 8, end, &lo);
                o = put_utf8(o, 0x10000 + (((unsigned long)u - 0xD800) << 10) + (lo - 0xDC00));
                s += 12;
            } else {
                o = put_utf8(o, u);
                s += 6;
            }
            continue;
        default: *o++ = (char)s[1]; break;   /* '"', '\\', '/' */
        }
        s += 2;
    }
    luaL_pushresultsize(&b, (size_t)(o - out));
}

/* At '"': validates the string and pushes it. */
static int dec_string(Decoder *d)
{
    const unsigned char *s = d->p + 1, *p = s, *end = d->end;
    int escaped = 0;
    for (;;) {
        unsigned c, u, lo;
        size_t k;
        if (p >= end)
            return dec_fail(d, d->p, JSON_SYNTAX, "unterminated string");
        c = *p;
        if (byte_class[c] == 0) {
            p++;
            continue;
        }
        if (c == '"')
            break;
        if (c == '\\') {
            escaped = 1;
            if (end - p < 2)
                return dec_fail(d, d->p, JSON_SYNTAX, "unterminated string");
            switch (p[1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                p += 2;
                continue;
            case 'u':
                if (!hex4(p + 2, end, &u))
                    return dec_fail(d, p, JSON_SYNTAX, "invalid \\u escape");
                if (u >= 0xD800 && u <= 0xDBFF) {
                    if (end - p >= 12 && p[6] == '\\' && p[7] == 'u'
                            && hex4(p + 8, end, &lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
                        p += 12;
                        continue;
                    }
                    return dec_fail(d, p, "json_utf8", "unpaired surrogate in \\u escape");
                }
                if (u >= 0xDC00 && u <= 0xDFFF)
                    return dec_fail(d, p, "json_utf8", "unpaired surrogate in \\u escape");
                p += 6;
                continue;
            default:
                return dec_fail(d, p, JSON_SYNTAX, "invalid escape");
            }
        }
        if (c < 0x20)
            return dec_fail(d, p, JSON_SYNTAX, "control character in string");
        k = utf8_len(p, end);
        if (k == 0)
            return dec_fail(d, p, "json_utf8", "invalid UTF-8");
        p += k;
    }
    if (escaped)
        push_unescaped(d->L, s, p);
    else
        lua_pushlstring(d->L, (const char *)s, (size_t)(p - s));
    d->p = p + 1;
    return 0;
}

#define IS_DIGIT(c) ((c) >= '0' && (c) <= '9')

/* A float literal [s, s+len): pushes it (via Lua's own locale-safe reader). */
static int push_float_literal(Decoder *d, const unsigned char *s, size_t len)
{
    lua_State *L = d->L;
    char tmp[64];
    int ok;
    if (len < sizeof tmp) {
        memcpy(tmp, s, len);
        tmp[len] = '\0';
        ok = lua_stringtonumber(L, tmp) != 0;
    } else {
        lua_pushlstring(L, (const char *)s, len);
        ok = lua_stringtonumber(L, lua_tostring(L, -1)) != 0;
        if (ok)
            lua_remove(L, -2);
    }
    if (!ok)
        return dec_detail(d, s, JSON_SYNTAX, "unreadable number", s, len);
    if (!isfinite(lua_tonumber(L, -1)))
        return dec_detail(d, s, "json_range", "number too large:", s, len);
    return 0;
}

static int dec_number(Decoder *d)
{
    const unsigned char *s = d->p, *p = s, *end = d->end, *digits;
    int neg = 0, is_float = 0;
    size_t ndigits;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    digits = p;
    if (p >= end || !IS_DIGIT(*p))
        return dec_expected(d, p, "expected a digit");
    if (*p == '0') {
        p++;
        if (p < end && IS_DIGIT(*p))
            return dec_fail(d, s, JSON_SYNTAX, "leading zeros are not allowed");
    } else {
        while (p < end && IS_DIGIT(*p))
            p++;
    }
    ndigits = (size_t)(p - digits);
    if (p < end && *p == '.') {
        is_float = 1;
        p++;
        if (p >= end || !IS_DIGIT(*p))
            return dec_expected(d, p, "expected a digit after '.'");
        while (p < end && IS_DIGIT(*p))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        is_float = 1;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || !IS_DIGIT(*p))
            return dec_expected(d, p, "expected a digit in the exponent");
        while (p < end && IS_DIGIT(*p))
            p++;
    }
    d->p = p;
    if (is_float) {
        if (d->strict)
            return dec_detail(d, s, "json_float",
                              "fractions and exponents are not allowed:", s, (size_t)(p - s));
        return push_float_literal(d, s, (size_t)(p - s));
    }
    if (neg && ndigits == 1 && *digits == '0' && d->strict)
        return dec_fail(d, s, "json_float", "negative zero is not allowed");
    if (ndigits <= 19) {
        /* 19 digits fit in an unsigned 64-bit accumulator */
        lua_Unsigned u = 0;
        const unsigned char *q;
        const lua_Unsigned lim = (lua_Unsigned)LUA_MAXINTEGER + (lua_Unsigned)neg;
        for (q = digits; q < digits + ndigits; q++)
            u = u * 10 + (lua_Unsigned)(*q - '0');
        if (d->strict && u > (lua_Unsigned)LOOM_MAX_SAFE_INT)
            return dec_detail(d, s, "json_range",
                              "integer outside -(2^53-1)..2^53-1:", s, (size_t)(p - s));
        if (u <= lim) {
            lua_pushinteger(d->L, neg ? (lua_Integer)((lua_Unsigned)0 - u) : (lua_Integer)u);
            return 0;
        }
    } else if (d->strict) {
        return dec_detail(d, s, "json_range",
                          "integer outside -(2^53-1)..2^53-1:", s, (size_t)(p - s));
    }
    return push_float_literal(d, s, (size_t)(p - s));
}

static int dec_value(Decoder *d, int depth);

static int dec_enter(Decoder *d, int depth)
{
    if (depth > d->max_depth)
        return dec_fail(d, d->p, "json_depth", too_deep);
    if (!lua_checkstack(d->L, 8))
        return dec_fail(d, d->p, "json_depth", "nesting too deep for the Lua stack");
    return 0;
}

static int dec_array(Decoder *d, int depth)
{
    lua_State *L = d->L;
    lua_Integer n = 0;
    int t;
    if (dec_enter(d, depth))
        return -1;
    lua_createtable(L, 0, 0);
    lua_pushvalue(L, d->array_mt);
    lua_setmetatable(L, -2);
    t = lua_gettop(L);
    d->p++;
    skip_ws(d);
    if (d->p < d->end && *d->p == ']') {
        d->p++;
        return 0;
    }
    for (;;) {
        if (dec_value(d, depth))
            return -1;
        lua_rawseti(L, t, ++n);
        skip_ws(d);
        if (d->p < d->end && *d->p == ',') {
            d->p++;
            skip_ws(d);
            if (d->p < d->end && *d->p == ']')
                return dec_fail(d, d->p, JSON_SYNTAX, "trailing comma");
            continue;
        }
        if (d->p < d->end && *d->p == ']') {
            d->p++;
            return 0;
        }
        return dec_expected(d, d->p, "expected ',' or ']'");
    }
}

static int dec_object(Decoder *d, int depth)
{
    lua_State *L = d->L;
    int t;
    if (dec_enter(d, depth))
        return -1;
    lua_createtable(L, 0, 0);
    t = lua_gettop(L);
    d->p++;
    skip_ws(d);
    if (d->p < d->end && *d->p == '}') {
        d->p++;
        return 0;
    }
    for (;;) {
        const unsigned char *key = d->p;
        if (d->p >= d->end || *d->p != '"')
            return dec_expected(d, d->p, "expected a string key");
        if (dec_string(d))
            return -1;
        lua_pushvalue(L, -1);
        if (lua_rawget(L, t) != LUA_TNIL)
            return dec_detail(d, key, "json_dup_key", "duplicate key",
                              key, (size_t)(d->p - key));
        lua_pop(L, 1);
        skip_ws(d);
        if (d->p >= d->end || *d->p != ':')
            return dec_expected(d, d->p, "expected ':'");
        d->p++;
        skip_ws(d);
        if (dec_value(d, depth))
            return -1;
        lua_rawset(L, t);
        skip_ws(d);
        if (d->p < d->end && *d->p == ',') {
            d->p++;
            skip_ws(d);
            if (d->p < d->end && *d->p == '}')
                return dec_fail(d, d->p, JSON_SYNTAX, "trailing comma");
            continue;
        }
        if (d->p < d->end && *d->p == '}') {
            d->p++;
            return 0;
        }
        return dec_expected(d, d->p, "expected ',' or '}'");
    }
}

static int dec_literal(Decoder *d, const char *word, size_t n)
{
    if ((size_t)(d->end - d->p) < n || memcmp(d->p, word, n) != 0)
        return dec_expected(d, d->p, "expected a value");
    d->p += n;
    return 0;
}

/* At the first byte of a value (whitespace skipped): pushes the value. */
static int dec_value(Decoder *d, int depth)
{
    if (d->p >= d->end)
        return dec_expected(d, d->p, "expected a value");
    switch (*d->p) {
    case '{':
        return dec_object(d, depth + 1);
    case '[':
        return dec_array(d, depth + 1);
    case '"':
        return dec_string(d);
    case 't':
        if (dec_literal(d, "true", 4))
            return -1;
        lua_pushboolean(d->L, 1);
        return 0;
    case 'f':
        if (dec_literal(d, "false", 5))
            return -1;
        lua_pushboolean(d->L, 0);
        return 0;
    case 'n':
        if (dec_literal(d, "null", 4))
            return -1;
        lua_pushlightuserdata(d->L, NULL);
        return 0;
    case '-': case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
        return dec_number(d);
    default:
        return dec_expected(d, d->p, "expected a value");
    }
}

static int json_decode(lua_State *L)
{
    Decoder d;
    size_t len;
    const char *text;
    int opts, base;
    lua_Integer max_bytes;
    luaL_argexpected(L, lua_type(L, 1) == LUA_TSTRING, 1, "string");
    text = lua_tolstring(L, 1, &len);
    opts = opt_table(L, 2);
    memset(&d, 0, sizeof d);
    max_bytes = opt_integer(L, opts, "max_bytes", DEFAULT_MAX_BYTES, 0, LUA_MAXINTEGER);
    d.max_depth = (int)opt_integer(L, opts, "max_depth", DEFAULT_MAX_DEPTH, 0, DEPTH_CAP);
    d.strict = opt_boolean(L, opts, "strict");
    if ((lua_Unsigned)len > (lua_Unsigned)max_bytes)
        return loom_fail(L, "json_size", "JSON text is %I bytes, more than max_bytes %I",
                         (lua_Integer)len, max_bytes);
    lua_settop(L, 2);
    luaL_checkstack(L, 12, "JSON decode");
    luaL_getmetatable(L, ARRAY_MT);
    base = lua_gettop(L);
    d.L = L;
    d.array_mt = base;
    d.start = d.p = (const unsigned char *)text;
    d.end = d.start + len;
    skip_ws(&d);
    if (dec_value(&d, 0) == 0) {
        skip_ws(&d);
        if (d.p == d.end)
            return 1;
        dec_expected(&d, d.p, "unexpected data after the value");
    }
    lua_settop(L, base);
    return decode_fail(L, &d);
}

/* ------------------------------------------------------------- the module */

static int json_array(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    } else {
        luaL_checktype(L, 1, LUA_TTABLE);
        lua_settop(L, 1);
        if (lua_getmetatable(L, 1)) {
            luaL_getmetatable(L, ARRAY_MT);
            luaL_argcheck(L, lua_rawequal(L, -1, -2), 1,
                          "table already has another metatable");
            lua_pop(L, 2);
        }
    }
    luaL_setmetatable(L, ARRAY_MT);
    return 1;
}

static int json_is_array(lua_State *L)
{
    int yes = 0;
    luaL_checkany(L, 1);
    if (lua_type(L, 1) == LUA_TTABLE && lua_getmetatable(L, 1)) {
        luaL_getmetatable(L, ARRAY_MT);
        yes = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
    }
    lua_pushboolean(L, yes);
    return 1;
}

static int array_tostring(lua_State *L)
{
    lua_pushfstring(L, ARRAY_MT ": %p", lua_topointer(L, 1));
    return 1;
}

static const luaL_Reg json_funcs[] = {
    {"encode", json_encode},
    {"decode", json_decode},
    {"array", json_array},
    {"is_array", json_is_array},
    {NULL, NULL}
};

static const luaL_Reg array_meta[] = {
    {"__tostring", array_tostring},
    {NULL, NULL}
};

static const luaL_Reg encoder_meta[] = {
    {"__gc", encoder_gc},
    {"__tostring", encoder_tostring},
    {NULL, NULL}
};

void loom_open_json(lua_State *L)
{
    luaL_checkstack(L, 4, "loom_open_json");
    lua_newtable(L);
    luaL_setfuncs(L, json_funcs, 0);
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    loom_new_type(L, ARRAY_MT, NULL, array_meta);
    luaL_getmetatable(L, ARRAY_MT);
    lua_setfield(L, -2, "array_mt");
    loom_new_type(L, ENCODER_MT, NULL, encoder_meta);
    lua_setfield(L, -2, "json");
}
