/* Ordering tokens and bounds.
 *
 * A token names a gap in one of the two orders of a room's events:
 *   s<stream>            the gap after stream position <stream> (arrival order)
 *   t<depth>-<stream>    the gap after (depth, stream) in topological order
 * Backfilled events have negative stream orderings, so "t12--5" is valid.
 * The tokens of an event at (d, s) are: before = t<d>-<s-1>, after = t<d>-<s>.
 *
 * A bound is "positions OP token" with OP one of < <= > >=, usable as a C
 * predicate over (depth, stream) and as SQL with bound parameters, in the
 * form each engine optimises (split ranges for SQLite, row values for
 * PostgreSQL). Values never appear in SQL text.
 */
#include <string.h>

#include "loom.h"

#define TOKEN_MT "loom.Token"
#define BOUND_MT "loom.Bound"

typedef struct {
    int topological;   /* 0: stream token, 1: topological token */
    int64_t depth;     /* >= 1 for topological tokens, 0 otherwise */
    int64_t stream;
} token_t;

enum { OP_LT, OP_LE, OP_GT, OP_GE };
static const char *const op_names[] = { "<", "<=", ">", ">=", NULL };

typedef struct {
    token_t tok;
    int op;
} bound_t;

/* ---- parsing ----------------------------------------------------------- */

/* Canonical signed decimal: "0" or "-"?[1-9][0-9]*, within int64. Returns the
 * number of bytes consumed, 0 on a malformed or overflowing number. */
static size_t parse_int64(const char *s, size_t len, int64_t *out)
{
    size_t i = 0;
    int neg = 0;
    uint64_t v = 0, limit;
    if (i < len && s[i] == '-') { neg = 1; i++; }
    if (i >= len || s[i] < '0' || s[i] > '9') return 0;
    if (s[i] == '0') {
        /* a lone zero; "-0" and leading zeros are not canonical */
        if (neg) return 0;
        if (i + 1 < len && s[i + 1] >= '0' && s[i + 1] <= '9') return 0;
        *out = 0;
        return i + 1;
    }
    limit = neg ? (uint64_t)INT64_MAX + 1u : (uint64_t)INT64_MAX;
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (limit - d) / 10u) return 0;
        v = v * 10u + d;
    }
    if (neg) *out = (v == (uint64_t)INT64_MAX + 1u) ? INT64_MIN : -(int64_t)v;
    else *out = (int64_t)v;
    return i;
}

/* Returns NULL on success or a message describing the problem. */
static const char *parse_token(const char *s, size_t len, token_t *t)
{
    size_t n;
    if (len == 0) return "empty token";
    if (len > 64) return "token too long";
    if (s[0] == 's') {
        n = parse_int64(s + 1, len - 1, &t->stream);
        if (n == 0) return "stream token needs an integer after 's'";
        if (1 + n != len) return "trailing characters after stream token";
        t->topological = 0;
        t->depth = 0;
        return NULL;
    }
    if (s[0] == 't') {
        size_t pos = 1;
        n = parse_int64(s + pos, len - pos, &t->depth);
        if (n == 0) return "topological token needs an integer depth after 't'";
        pos += n;
        if (t->depth < 1) return "topological token depth must be at least 1";
        if (pos >= len || s[pos] != '-') return "topological token needs '-' after the depth";
        pos++;
        n = parse_int64(s + pos, len - pos, &t->stream);
        if (n == 0) return "topological token needs an integer stream position";
        if (pos + n != len) return "trailing characters after topological token";
        t->topological = 1;
        return NULL;
    }
    return "token must start with 's' or 't'";
}

/* ---- token userdata ---------------------------------------------------- */

static token_t *push_token(lua_State *L, const token_t *t)
{
    token_t *u = (token_t *)lua_newuserdatauv(L, sizeof *u, 0);
    *u = *t;
    luaL_setmetatable(L, TOKEN_MT);
    return u;
}

static token_t *check_token(lua_State *L, int i)
{
    return (token_t *)luaL_checkudata(L, i, TOKEN_MT);
}

/* A token argument may be a loom.Token or a token string (strings that do not
 * parse are a caller error here; client input goes through token.parse). */
static token_t arg_token(lua_State *L, int i)
{
    token_t t;
    if (lua_type(L, i) == LUA_TSTRING) {
        size_t len;
        const char *s = lua_tolstring(L, i, &len);
        const char *err = parse_token(s, len, &t);
        if (err) luaL_argerror(L, i, err);
        return t;
    }
    return *check_token(L, i);
}

/* An integer argument: Lua integers only (no strings, no floats). */
static int64_t check_int(lua_State *L, int i)
{
    if (!lua_isinteger(L, i)) luaL_typeerror(L, i, "integer");
    return (int64_t)lua_tointeger(L, i);
}

static void push_token_string(lua_State *L, const token_t *t)
{
    char buf[64];
    if (t->topological)
        snprintf(buf, sizeof buf, "t%lld-%lld", (long long)t->depth, (long long)t->stream);
    else
        snprintf(buf, sizeof buf, "s%lld", (long long)t->stream);
    lua_pushstring(L, buf);
}

/* token.parse(text) -> Token | nil, message, "bad_token" */
static int l_parse(lua_State *L)
{
    size_t len;
    const char *s;
    token_t t;
    const char *err;
    if (lua_type(L, 1) != LUA_TSTRING)
        return loom_fail(L, "bad_token", "token must be a string");
    s = lua_tolstring(L, 1, &len);
    err = parse_token(s, len, &t);
    if (err) return loom_fail(L, "bad_token", "invalid token: %s", err);
    push_token(L, &t);
    return 1;
}

/* token.stream(stream) */
static int l_stream(lua_State *L)
{
    token_t t;
    t.topological = 0;
    t.depth = 0;
    t.stream = check_int(L, 1);
    push_token(L, &t);
    return 1;
}

/* token.topological(depth, stream) */
static int l_topological(lua_State *L)
{
    token_t t;
    t.topological = 1;
    t.depth = check_int(L, 1);
    t.stream = check_int(L, 2);
    luaL_argcheck(L, t.depth >= 1, 1, "depth must be at least 1");
    push_token(L, &t);
    return 1;
}

/* token.for_event(depth|nil, stream) -> before, after
 * The tokens naming the gaps either side of an event: before = (d, s-1),
 * after = (d, s); stream tokens when depth is nil. nil, msg, code when s-1
 * would overflow. */
static int l_for_event(lua_State *L)
{
    token_t before, after;
    after.topological = !lua_isnoneornil(L, 1);
    after.depth = after.topological ? check_int(L, 1) : 0;
    after.stream = check_int(L, 2);
    if (after.topological)
        luaL_argcheck(L, after.depth >= 1, 1, "depth must be at least 1");
    if (after.stream == INT64_MIN)
        return loom_fail(L, "bad_token", "stream position has no predecessor");
    before = after;
    before.stream = after.stream - 1;
    push_token(L, &before);
    push_token(L, &after);
    return 2;
}

static int cmp_tokens(lua_State *L, const token_t *a, const token_t *b)
{
    if (a->topological != b->topological)
        luaL_error(L, "cannot compare a stream token with a topological token");
    if (a->depth != b->depth) return a->depth < b->depth ? -1 : 1;
    if (a->stream != b->stream) return a->stream < b->stream ? -1 : 1;
    return 0;
}

/* token.compare(a, b) -> -1 | 0 | 1 (tokens or token strings of one kind) */
static int l_compare(lua_State *L)
{
    token_t a = arg_token(L, 1), b = arg_token(L, 2);
    lua_pushinteger(L, cmp_tokens(L, &a, &b));
    return 1;
}

static int tok_eq(lua_State *L)
{
    token_t *a = check_token(L, 1), *b = check_token(L, 2);
    lua_pushboolean(L, a->topological == b->topological && a->depth == b->depth &&
                           a->stream == b->stream);
    return 1;
}

static int tok_lt(lua_State *L)
{
    lua_pushboolean(L, cmp_tokens(L, check_token(L, 1), check_token(L, 2)) < 0);
    return 1;
}

static int tok_le(lua_State *L)
{
    lua_pushboolean(L, cmp_tokens(L, check_token(L, 1), check_token(L, 2)) <= 0);
    return 1;
}

static int tok_tostring(lua_State *L)
{
    push_token_string(L, check_token(L, 1));
    return 1;
}

static int tok_index(lua_State *L)
{
    token_t *t = check_token(L, 1);
    const char *k = luaL_checkstring(L, 2);
    if (strcmp(k, "stream") == 0) lua_pushinteger(L, t->stream);
    else if (strcmp(k, "depth") == 0) {
        if (t->topological) lua_pushinteger(L, t->depth);
        else lua_pushnil(L);
    } else if (strcmp(k, "kind") == 0)
        lua_pushstring(L, t->topological ? "topological" : "stream");
    else if (strcmp(k, "topological") == 0) lua_pushboolean(L, t->topological);
    else lua_pushnil(L);
    return 1;
}

/* ---- bounds ------------------------------------------------------------ */

static int bound_test(const bound_t *b, int64_t depth, int64_t stream)
{
    int c;
    if (b->tok.topological && depth != b->tok.depth) c = depth < b->tok.depth ? -1 : 1;
    else c = stream < b->tok.stream ? -1 : (stream > b->tok.stream ? 1 : 0);
    switch (b->op) {
    case OP_LT: return c < 0;
    case OP_LE: return c <= 0;
    case OP_GT: return c > 0;
    default:    return c >= 0;
    }
}

static bound_t *check_bound(lua_State *L, int i)
{
    return (bound_t *)luaL_checkudata(L, i, BOUND_MT);
}

/* bound.new(token, op) with op one of "<", "<=", ">", ">=" */
static int l_bound_new(lua_State *L)
{
    bound_t b;
    b.tok = arg_token(L, 1);
    b.op = luaL_checkoption(L, 2, NULL, op_names);
    *(bound_t *)lua_newuserdatauv(L, sizeof b, 0) = b;
    luaL_setmetatable(L, BOUND_MT);
    return 1;
}

/* bound:test(depth, stream) -> boolean; depth is ignored by stream bounds */
static int b_test(lua_State *L)
{
    bound_t *b = check_bound(L, 1);
    int64_t depth = lua_isnoneornil(L, 2) ? 0 : check_int(L, 2);
    int64_t stream = check_int(L, 3);
    lua_pushboolean(L, bound_test(b, depth, stream));
    return 1;
}

/* bound:select(rows, depth_index, stream_index) -> new array of the rows
 * (arrays) whose row[depth_index], row[stream_index] satisfy the bound.
 * One call per batch; no per-row crossing. */
static int b_select(lua_State *L)
{
    bound_t *b = check_bound(L, 1);
    lua_Integer di, si, i, n, out = 0;
    luaL_checktype(L, 2, LUA_TTABLE);
    di = luaL_checkinteger(L, 3);
    si = luaL_checkinteger(L, 4);
    n = (lua_Integer)lua_rawlen(L, 2);
    lua_createtable(L, (int)(n < 64 ? n : 64), 0);
    for (i = 1; i <= n; i++) {
        int64_t d = 0, s;
        int ok;
        if (lua_rawgeti(L, 2, i) != LUA_TTABLE) luaL_error(L, "row %d is not a table", (int)i);
        lua_rawgeti(L, -1, di);
        d = lua_tointegerx(L, -1, &ok);
        if (!ok && b->tok.topological) luaL_error(L, "row %d: depth is not an integer", (int)i);
        lua_rawgeti(L, -2, si);
        s = lua_tointegerx(L, -1, &ok);
        if (!ok) luaL_error(L, "row %d: stream is not an integer", (int)i);
        lua_pop(L, 2);
        if (bound_test(b, d, s)) lua_rawseti(L, -2, ++out);
        else lua_pop(L, 1);
    }
    return 1;
}

static const char *check_ident(lua_State *L, int i)
{
    size_t len, k;
    const char *s = luaL_checklstring(L, i, &len);
    int start = 1;
    luaL_argcheck(L, len > 0 && len <= 64, i, "column name length");
    for (k = 0; k < len; k++) {
        char c = s[k];
        int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        int digit = c >= '0' && c <= '9';
        if (c == '.' && !start && k + 1 < len) { start = 1; continue; }
        if (!(alpha || (digit && !start))) luaL_argerror(L, i, "not a plain column name");
        start = 0;
    }
    return s;
}

static int check_engine(lua_State *L, int i)
{
    static const char *const engines[] = { "sqlite", "postgres", NULL };
    return luaL_checkoption(L, i, NULL, engines);
}

static void push_params(lua_State *L, int n, int64_t a, int64_t b, int64_t c)
{
    lua_createtable(L, n, 0);
    lua_pushinteger(L, a); lua_rawseti(L, -2, 1);
    if (n > 1) { lua_pushinteger(L, b); lua_rawseti(L, -2, 2); }
    if (n > 2) { lua_pushinteger(L, c); lua_rawseti(L, -2, 3); }
}

/* bound:sql(engine, depth_col, stream_col) -> sql, params
 * One boolean expression: the OR form on SQLite, row values on PostgreSQL.
 * Placeholders are "?"; params is an array of integers in order. */
static int b_sql(lua_State *L)
{
    bound_t *b = check_bound(L, 1);
    int engine = check_engine(L, 2);
    const char *dc = check_ident(L, 3), *sc = check_ident(L, 4);
    const char *op = op_names[b->op];
    const char *strict = (b->op == OP_LT || b->op == OP_LE) ? "<" : ">";
    if (!b->tok.topological) {
        lua_pushfstring(L, "(%s %s ?)", sc, op);
        push_params(L, 1, b->tok.stream, 0, 0);
    } else if (engine == 1) {
        lua_pushfstring(L, "((%s, %s) %s (?, ?))", dc, sc, op);
        push_params(L, 2, b->tok.depth, b->tok.stream, 0);
    } else {
        lua_pushfstring(L, "(%s %s ? OR (%s = ? AND %s %s ?))", dc, strict, dc, sc, op);
        push_params(L, 3, b->tok.depth, b->tok.depth, b->tok.stream);
    }
    return 2;
}

/* bound:sql_parts(engine, depth_col, stream_col) -> { {sql, params}, ... }
 * Disjoint range conditions whose union is the bound, listed in scan order
 * away from the token (for < and <=: descending; for > and >=: ascending),
 * each a plain index range. Running them in turn, each ordered the same way,
 * and concatenating gives the rows in order. PostgreSQL gets one part. */
static int b_sql_parts(lua_State *L)
{
    bound_t *b = check_bound(L, 1);
    int engine = check_engine(L, 2);
    const char *dc = check_ident(L, 3), *sc = check_ident(L, 4);
    const char *op = op_names[b->op];
    const char *strict = (b->op == OP_LT || b->op == OP_LE) ? "<" : ">";
    if (!b->tok.topological || engine == 1) {
        lua_createtable(L, 1, 0);
        lua_pushcfunction(L, b_sql);
        lua_pushvalue(L, 1);
        lua_pushvalue(L, 2);
        lua_pushvalue(L, 3);
        lua_pushvalue(L, 4);
        lua_call(L, 4, 2);
        lua_createtable(L, 0, 2);
        lua_insert(L, -3);
        lua_setfield(L, -3, "params");
        lua_setfield(L, -2, "sql");
        lua_rawseti(L, -2, 1);
        return 1;
    }
    lua_createtable(L, 2, 0);
    lua_createtable(L, 0, 2);
    lua_pushfstring(L, "%s = ? AND %s %s ?", dc, sc, op);
    lua_setfield(L, -2, "sql");
    push_params(L, 2, b->tok.depth, b->tok.stream, 0);
    lua_setfield(L, -2, "params");
    lua_rawseti(L, -2, 1);
    lua_createtable(L, 0, 2);
    lua_pushfstring(L, "%s %s ?", dc, strict);
    lua_setfield(L, -2, "sql");
    push_params(L, 1, b->tok.depth, 0, 0);
    lua_setfield(L, -2, "params");
    lua_rawseti(L, -2, 2);
    return 1;
}

static int b_index(lua_State *L)
{
    bound_t *b = check_bound(L, 1);
    const char *k = luaL_checkstring(L, 2);
    if (strcmp(k, "token") == 0) push_token(L, &b->tok);
    else if (strcmp(k, "op") == 0) lua_pushstring(L, op_names[b->op]);
    else {
        luaL_getmetafield(L, 1, "methods");
        lua_getfield(L, -1, k);
    }
    return 1;
}

static int b_tostring(lua_State *L)
{
    bound_t *b = check_bound(L, 1);
    lua_pushfstring(L, "loom.Bound(%s ", op_names[b->op]);
    push_token_string(L, &b->tok);
    lua_pushliteral(L, ")");
    lua_concat(L, 3);
    return 1;
}

static const luaL_Reg token_funcs[] = {
    { "parse", l_parse },
    { "stream", l_stream },
    { "topological", l_topological },
    { "for_event", l_for_event },
    { "compare", l_compare },
    { NULL, NULL }
};

static const luaL_Reg token_meta[] = {
    { "__eq", tok_eq },
    { "__lt", tok_lt },
    { "__le", tok_le },
    { "__tostring", tok_tostring },
    { "__index", tok_index },
    { NULL, NULL }
};

static const luaL_Reg bound_methods[] = {
    { "test", b_test },
    { "select", b_select },
    { "sql", b_sql },
    { "sql_parts", b_sql_parts },
    { NULL, NULL }
};

static const luaL_Reg bound_meta[] = {
    { "__index", b_index },
    { "__tostring", b_tostring },
    { NULL, NULL }
};

void loom_open_token(lua_State *L)
{
    loom_new_type(L, TOKEN_MT, NULL, token_meta);

    /* a Bound's __index (in bound_meta) reads fields first, then mt.methods */
    loom_new_type(L, BOUND_MT, NULL, bound_meta);
    luaL_getmetatable(L, BOUND_MT);
    luaL_newlib(L, bound_methods);
    lua_setfield(L, -2, "methods");
    lua_pop(L, 1);

    luaL_newlib(L, token_funcs);
    lua_setfield(L, -2, "token");

    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, l_bound_new);
    lua_setfield(L, -2, "new");
    lua_setfield(L, -2, "bound");
}
