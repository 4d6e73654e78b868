/* HTTP/1.1 request parsing: core.http.parser(limits) -> loom.HttpParser.
 *
 * A binding of Debian's libhttp-parser (http_parser.h) with loom's own hard
 * limits. Bytes go in as they arrive from the socket (parser:feed(bytes)); out
 * come the requests completed so far, in order, as Lua tables:
 *
 *   { method = "GET", target = "/a/b?c=d", path = "/a/b", query = "c=d",
 *     headers = { host = "x", ... }, body = "", keep_alive = true,
 *     version = "1.1" }
 *
 * Header names are lowercased; a repeated header's values are joined with
 * ", ". path and query are raw (not percent-decoded). Limits:
 *
 *   max_request_line   method + target + version line, in bytes
 *   max_header_line    one header's name + value, in bytes
 *   max_headers        number of header lines
 *   max_header_bytes   all header names and values together
 *   max_body           body bytes (Content-Length checked before the body)
 *   max_media_body     the same, for targets under /_matrix/media/ (uploads)
 *
 * Streaming (parser:stream(prefix)): a request whose target starts with
 * prefix and that has a body comes out as soon as its headers are in, with
 * streaming = true and no body field; its body follows as { chunk = bytes }
 * items (chunked transfer coding already removed) and one { body_end = true }
 * item, in order with the other requests. max_media_body / max_body still
 * bound the streamed bytes.
 *
 * Going past one is "http_too_large" (the 4th value names the limit);
 * malformed input is "http_bad_request". An error is sticky: the parser takes
 * no more input. Requests completed before the error in the same feed are
 * still returned; parser:error() reports the error then.
 *
 * No Lua API is called from inside http_parser_execute: callbacks fill C
 * buffers owned by the userdata (freed by close/__gc), and the Lua tables are
 * built afterwards, so a memory error while building leaks nothing.
 */
#include <stdlib.h>
#include <string.h>

#include <http_parser.h>

#include "loom.h"

#define PARSER_MT "loom.HttpParser"

/* http_parser's own compile-time cap on request line + headers (80 KiB in
 * Debian's build); past it the library reports HPE_HEADER_OVERFLOW. */
#define LIB_MAX_HEADER_BYTES (80 * 1024)

typedef struct {
    char *p;
    size_t len, cap;
} buf_t;

enum { MSG_FULL, MSG_HEAD, MSG_CHUNK, MSG_END };

typedef struct {
    int kind;        /* MSG_*: a whole message, or the parts of a streamed one */
    int method;
    int status;      /* responses */
    unsigned short major, minor;
    int keep_alive;
    buf_t url;
    buf_t hdrs;      /* repeated: size_t name_len, size_t value_len, name, value */
    size_t nhdrs;
    buf_t body;
} msg_t;

enum { PH_IDLE, PH_HEADERS, PH_BODY };
static const char *const phase_names[] = { "idle", "headers", "body" };

typedef struct {
    size_t max_request_line, max_header_line, max_headers, max_header_bytes, max_body;
    size_t max_media_body;
} limits_t;

/* targets whose bodies max_media_body bounds (media uploads) */
#define MEDIA_PREFIX "/_matrix/media/"

typedef struct {
    http_parser hp;
    limits_t lim;
    int open;          /* 0 once closed */
    int response;      /* parses responses (core.http.response_parser) */
    int phase;
    int busy;          /* building Lua tables: a raise there leaves it unusable */
    int closed_input;  /* after an upgrade or a Connection: close request */
    int expect_continue;
    /* current message */
    msg_t cur;
    buf_t field, value;
    int in_field;      /* inside a header name */
    int in_value;      /* inside a header value */
    size_t header_bytes;
    size_t body_limit; /* max_body or max_media_body, by the current target */
    char stream_prefix[64];   /* parser:stream(prefix); empty: nothing streams */
    size_t stream_prefix_len;
    int streaming;     /* the current message's body goes out in chunks */
    size_t streamed;   /* body bytes of the current streamed message */
    /* completed messages not yet handed to Lua */
    msg_t *done;
    size_t ndone, capdone;
    /* sticky error */
    int failed;
    const char *err_code;   /* static strings */
    const char *err_limit;
    char err_msg[160];
    int oom;
} parser_t;

/* ---- buffers ----------------------------------------------------------- */

static int buf_add(buf_t *b, const char *s, size_t n)
{
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 64;
        char *np;
        while (cap - b->len < n) {
            if (cap > ((size_t)-1) / 2) return -1;
            cap *= 2;
        }
        np = (char *)realloc(b->p, cap);
        if (!np) return -1;
        b->p = np;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

static void buf_free(buf_t *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static void msg_free(msg_t *m)
{
    buf_free(&m->url);
    buf_free(&m->hdrs);
    buf_free(&m->body);
    m->nhdrs = 0;
}

/* ---- failure ----------------------------------------------------------- */

/* Records the error; returns -1, which stops http_parser from any callback
 * (on_headers_complete takes 1 and 2 to mean "no body" and "upgrade"). */
static int fail_at(parser_t *p, const char *code, const char *limit, const char *msg, size_t n)
{
    p->failed = 1;
    p->err_code = code;
    p->err_limit = limit;
    if (limit)
        snprintf(p->err_msg, sizeof p->err_msg, "%s (limit %lu%s)", msg, (unsigned long)n,
                 strcmp(limit, "headers") == 0 ? "" : " bytes");
    else
        snprintf(p->err_msg, sizeof p->err_msg, "%s", msg);
    return -1;
}

static int too_large(parser_t *p, const char *limit, const char *msg, size_t n)
{
    return fail_at(p, "http_too_large", limit, msg, n);
}

static int out_of_memory(parser_t *p)
{
    p->oom = 1;
    return fail_at(p, "http_bad_request", NULL, "out of memory", 0);
}

/* A fresh (zeroed) slot at the end of the completed list, or NULL. */
static msg_t *push_done(parser_t *p)
{
    if (p->ndone == p->capdone) {
        size_t cap = p->capdone ? p->capdone * 2 : 4;
        msg_t *nd = (msg_t *)realloc(p->done, cap * sizeof *nd);
        if (!nd) return NULL;
        p->done = nd;
        p->capdone = cap;
    }
    memset(&p->done[p->ndone], 0, sizeof p->done[0]);
    return &p->done[p->ndone++];
}

/* ---- http_parser callbacks ---------------------------------------------- */

static int on_message_begin(http_parser *hp)
{
    parser_t *p = (parser_t *)hp->data;
    msg_free(&p->cur);
    p->field.len = p->value.len = 0;
    p->in_field = p->in_value = 0;
    p->header_bytes = 0;
    p->expect_continue = 0;
    p->phase = PH_HEADERS;
    return 0;
}

static int on_url(http_parser *hp, const char *at, size_t n)
{
    parser_t *p = (parser_t *)hp->data;
    /* the request line is "METHOD SP target SP HTTP/x.y CRLF" */
    size_t line = strlen(http_method_str((enum http_method)hp->method)) + 11;
    if (p->cur.url.len + n + line > p->lim.max_request_line)
        return too_large(p, "request_line", "request line too long", p->lim.max_request_line);
    if (buf_add(&p->cur.url, at, n)) return out_of_memory(p);
    return 0;
}

static int ci_equal(const char *a, size_t n, const char *lower)
{
    size_t i;
    if (strlen(lower) != n) return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)a[i];
        if (c >= 'A' && c <= 'Z') c = (unsigned char)(c + 32);
        if (c != (unsigned char)lower[i]) return 0;
    }
    return 1;
}

/* Moves the header in field/value into the current message. */
static int flush_header(parser_t *p)
{
    size_t nl = p->field.len, vl = p->value.len;
    const char *v = p->value.p;
    /* http_parser drops leading whitespace of a value; drop the trailing */
    while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) vl--;
    if (buf_add(&p->cur.hdrs, (const char *)&nl, sizeof nl) ||
        buf_add(&p->cur.hdrs, (const char *)&vl, sizeof vl) ||
        buf_add(&p->cur.hdrs, p->field.p, nl) ||
        buf_add(&p->cur.hdrs, v, vl))
        return out_of_memory(p);
    if (ci_equal(p->field.p, nl, "expect") && ci_equal(v, vl, "100-continue"))
        p->expect_continue = 1;
    p->cur.nhdrs++;
    p->field.len = p->value.len = 0;
    return 0;
}

static int count_header_bytes(parser_t *p, size_t n)
{
    if (p->field.len + p->value.len + n > p->lim.max_header_line)
        return too_large(p, "header_line", "header line too long", p->lim.max_header_line);
    p->header_bytes += n;
    if (p->header_bytes > p->lim.max_header_bytes)
        return too_large(p, "header_bytes", "headers too large", p->lim.max_header_bytes);
    return 0;
}

static int on_header_field(http_parser *hp, const char *at, size_t n)
{
    parser_t *p = (parser_t *)hp->data;
    if (p->in_value) {
        /* the previous header is complete */
        if (flush_header(p)) return -1;
        p->in_value = 0;
    }
    if (!p->in_field) {
        if (p->cur.nhdrs + 1 > p->lim.max_headers)
            return too_large(p, "headers", "too many headers", p->lim.max_headers);
        p->in_field = 1;
    }
    if (count_header_bytes(p, n)) return -1;
    if (buf_add(&p->field, at, n)) return out_of_memory(p);
    return 0;
}

static int on_header_value(http_parser *hp, const char *at, size_t n)
{
    parser_t *p = (parser_t *)hp->data;
    /* an empty value still comes as one zero-length call */
    p->in_field = 0;
    p->in_value = 1;
    if (count_header_bytes(p, n)) return -1;
    if (buf_add(&p->value, at, n)) return out_of_memory(p);
    return 0;
}

static int on_headers_complete(http_parser *hp)
{
    parser_t *p = (parser_t *)hp->data;
    if (p->in_value || p->in_field) {
        if (flush_header(p)) return -1;
        p->in_value = p->in_field = 0;
    }
    p->body_limit = p->lim.max_body;
    if (!p->response && p->cur.url.len >= sizeof MEDIA_PREFIX - 1
        && memcmp(p->cur.url.p, MEDIA_PREFIX, sizeof MEDIA_PREFIX - 1) == 0)
        p->body_limit = p->lim.max_media_body;
    if ((hp->flags & F_CONTENTLENGTH) && hp->content_length > (uint64_t)p->body_limit)
        return too_large(p, "body", "request body too large", p->body_limit);
    p->phase = PH_BODY;
    if (!p->response && p->stream_prefix_len && p->cur.url.len >= p->stream_prefix_len
        && memcmp(p->cur.url.p, p->stream_prefix, p->stream_prefix_len) == 0
        && ((hp->flags & F_CONTENTLENGTH) ? hp->content_length > 0 : (hp->flags & F_CHUNKED) != 0)) {
        msg_t *m = push_done(p);
        if (!m) return out_of_memory(p);
        *m = p->cur;    /* the head moves out; cur keeps nothing */
        memset(&p->cur, 0, sizeof p->cur);
        m->kind = MSG_HEAD;
        m->method = (int)hp->method;
        m->major = hp->http_major;
        m->minor = hp->http_minor;
        m->keep_alive = http_should_keep_alive(hp) && !hp->upgrade;
        p->streaming = 1;
        p->streamed = 0;
    }
    return 0;
}

static int on_body(http_parser *hp, const char *at, size_t n)
{
    parser_t *p = (parser_t *)hp->data;
    if (p->streaming) {
        msg_t *m = p->ndone ? &p->done[p->ndone - 1] : NULL;
        if (n > p->body_limit - p->streamed)
            return too_large(p, "body", "request body too large", p->body_limit);
        if (!m || m->kind != MSG_CHUNK) {
            m = push_done(p);
            if (!m) return out_of_memory(p);
            m->kind = MSG_CHUNK;
        }
        if (buf_add(&m->body, at, n)) return out_of_memory(p);
        p->streamed += n;
        return 0;
    }
    if (n > p->body_limit - p->cur.body.len)
        return too_large(p, "body", "request body too large", p->body_limit);
    if (buf_add(&p->cur.body, at, n)) return out_of_memory(p);
    return 0;
}

static int on_message_complete(http_parser *hp)
{
    parser_t *p = (parser_t *)hp->data;
    if (p->streaming) {
        msg_t *m = push_done(p);
        if (!m) return out_of_memory(p);
        m->kind = MSG_END;
        m->keep_alive = http_should_keep_alive(hp) && !hp->upgrade;
        p->streaming = 0;
        p->phase = PH_IDLE;
        p->expect_continue = 0;
        if (!m->keep_alive) {
            p->closed_input = 1;
            http_parser_pause(hp, 1);
        }
        return 0;
    }
    if (p->ndone == p->capdone) {
        size_t cap = p->capdone ? p->capdone * 2 : 4;
        msg_t *nd = (msg_t *)realloc(p->done, cap * sizeof *nd);
        if (!nd) return out_of_memory(p);
        p->done = nd;
        p->capdone = cap;
    }
    p->cur.method = (int)hp->method;
    p->cur.status = (int)hp->status_code;
    p->cur.major = hp->http_major;
    p->cur.minor = hp->http_minor;
    p->cur.keep_alive = http_should_keep_alive(hp) && !hp->upgrade;
    p->done[p->ndone++] = p->cur;
    memset(&p->cur, 0, sizeof p->cur);
    p->phase = PH_IDLE;
    p->expect_continue = 0;
    if (!p->done[p->ndone - 1].keep_alive) {
        /* the last request on this connection (Connection: close, HTTP/1.0
         * without keep-alive, or an upgrade: loom speaks no other protocol,
         * so it answers the request and closes): what follows is ignored */
        p->closed_input = 1;
        http_parser_pause(hp, 1);
    }
    return 0;
}

/* The status text of a response counts against the request-line limit. */
static int on_status(http_parser *hp, const char *at, size_t n)
{
    parser_t *p = (parser_t *)hp->data;
    if (p->cur.url.len + n + 13 > p->lim.max_request_line)
        return too_large(p, "request_line", "status line too long", p->lim.max_request_line);
    if (buf_add(&p->cur.url, at, n)) return out_of_memory(p);
    return 0;
}

static const http_parser_settings settings = {
    on_message_begin, on_url, on_status, on_header_field, on_header_value,
    on_headers_complete, on_body, on_message_complete, NULL, NULL
};

/* ---- userdata ---------------------------------------------------------- */

static parser_t *check_parser(lua_State *L, int i)
{
    parser_t *p = (parser_t *)luaL_checkudata(L, i, PARSER_MT);
    luaL_argcheck(L, p->open, i, "parser is closed");
    return p;
}

static void parser_release(parser_t *p)
{
    size_t i;
    msg_free(&p->cur);
    buf_free(&p->field);
    buf_free(&p->value);
    for (i = 0; i < p->ndone; i++) msg_free(&p->done[i]);
    free(p->done);
    p->done = NULL;
    p->ndone = p->capdone = 0;
    p->open = 0;
}

static size_t opt_limit(lua_State *L, const char *k, size_t def, size_t max)
{
    lua_Integer v;
    if (lua_isnoneornil(L, 1)) return def;
    if (lua_getfield(L, 1, k) == LUA_TNIL) {
        lua_pop(L, 1);
        return def;
    }
    if (!lua_isinteger(L, -1))
        luaL_error(L, "bad limit '%s' (integer expected, got %s)", k, luaL_typename(L, -1));
    v = lua_tointeger(L, -1);
    if (v < 1 || (lua_Unsigned)v > (lua_Unsigned)max)
        luaL_error(L, "bad limit '%s' (must be 1..%I)", k, (lua_Integer)max);
    lua_pop(L, 1);
    return (size_t)v;
}

static const char *const limit_names[] = {
    "max_request_line", "max_header_line", "max_headers", "max_header_bytes", "max_body",
    "max_media_body", NULL
};

/* Default limits (also core.http.limits). */
#define DEF_REQUEST_LINE 8192
#define DEF_HEADER_LINE 8192
#define DEF_HEADERS 100
#define DEF_HEADER_BYTES 32768
#define DEF_BODY 1048576
#define DEF_MEDIA_BODY (50 * 1048576)

static int new_parser(lua_State *L, int response)
{
    parser_t *p;
    limits_t lim;
    if (!lua_isnoneornil(L, 1)) {
        luaL_checktype(L, 1, LUA_TTABLE);
        lua_pushnil(L);
        while (lua_next(L, 1)) {
            int i, known = 0;
            lua_pop(L, 1);
            if (lua_type(L, -1) == LUA_TSTRING)
                for (i = 0; limit_names[i]; i++)
                    if (strcmp(lua_tostring(L, -1), limit_names[i]) == 0) known = 1;
            if (!known) {
                lua_pushvalue(L, -1);
                return luaL_error(L, "unknown limit '%s'", luaL_tolstring(L, -1, NULL));
            }
        }
    }
    lim.max_request_line = opt_limit(L, "max_request_line", DEF_REQUEST_LINE, LIB_MAX_HEADER_BYTES);
    lim.max_header_line = opt_limit(L, "max_header_line", DEF_HEADER_LINE, LIB_MAX_HEADER_BYTES);
    lim.max_headers = opt_limit(L, "max_headers", DEF_HEADERS, 10000);
    lim.max_header_bytes = opt_limit(L, "max_header_bytes", DEF_HEADER_BYTES, LIB_MAX_HEADER_BYTES);
    lim.max_body = opt_limit(L, "max_body", DEF_BODY, (size_t)1 << 40);
    lim.max_media_body = opt_limit(L, "max_media_body", DEF_MEDIA_BODY, (size_t)1 << 40);
    p = (parser_t *)lua_newuserdatauv(L, sizeof *p, 1);
    memset(p, 0, sizeof *p);
    http_parser_init(&p->hp, response ? HTTP_RESPONSE : HTTP_REQUEST);
    p->response = response;
    p->hp.data = p;
    p->lim = lim;
    p->open = 1;
    p->phase = PH_IDLE;
    luaL_setmetatable(L, PARSER_MT);
    return 1;
}

/* http.parser([limits]) -> HttpParser (requests) */
static int l_parser(lua_State *L)
{
    return new_parser(L, 0);
}

/* http.response_parser([limits]) -> HttpParser (responses; a body without
 * Content-Length or chunking ends at parser:finish(), the connection's end) */
static int l_response_parser(lua_State *L)
{
    return new_parser(L, 1);
}

/* Sets headers[name] (name lowercased in place), joining a repeat with ", ". */
static void set_header(lua_State *L, int t, char *name, size_t nl, const char *v, size_t vl)
{
    size_t i;
    for (i = 0; i < nl; i++)
        if (name[i] >= 'A' && name[i] <= 'Z') name[i] = (char)(name[i] + 32);
    lua_pushlstring(L, name, nl);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, t) == LUA_TSTRING) {
        lua_pushliteral(L, ", ");
        lua_pushlstring(L, v, vl);
        lua_concat(L, 3);
    } else {
        lua_pop(L, 1);
        lua_pushlstring(L, v, vl);
    }
    lua_rawset(L, t);
}

/* Splits a request target into its path and query (both raw): origin-form
 * "/p?q#f"; absolute-form "scheme://authority/p?q" (an empty path is "/");
 * anything else (authority-form, "*") is all path. */
static void split_target(const char *u, size_t ul, size_t *ps, size_t *pe, size_t *qs, size_t *qe)
{
    size_t i, end = 0;
    *ps = 0;
    if (ul > 0 && u[0] != '/') {
        for (i = 0; i + 2 < ul; i++) {
            if (u[i] == '/' || u[i] == '?') break;
            if (u[i] == ':' && u[i + 1] == '/' && u[i + 2] == '/') {
                *ps = i + 3;
                while (*ps < ul && u[*ps] != '/' && u[*ps] != '?' && u[*ps] != '#') (*ps)++;
                break;
            }
        }
    }
    while (end < ul && u[end] != '#') end++;
    for (*pe = *ps; *pe < end && u[*pe] != '?'; (*pe)++) ;
    *qs = *pe < end ? *pe + 1 : end;
    *qe = end;
}

/* Pushes the request (or response) table for m. */
static void push_message(lua_State *L, msg_t *m, int response)
{
    const char *u = m->url.p ? m->url.p : "";
    size_t ul = m->url.len, ps, pe, qs, qe, off = 0, i;
    char ver[16];
    if (m->kind == MSG_CHUNK) {
        lua_createtable(L, 0, 1);
        lua_pushlstring(L, m->body.p ? m->body.p : "", m->body.len);
        lua_setfield(L, -2, "chunk");
        return;
    }
    if (m->kind == MSG_END) {
        lua_createtable(L, 0, 1);
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "body_end");
        return;
    }
    lua_createtable(L, 0, 9);
    if (response) {
        lua_pushinteger(L, m->status);
        lua_setfield(L, -2, "status");
        lua_pushlstring(L, u, ul);
        lua_setfield(L, -2, "reason");
    } else {
        lua_pushstring(L, http_method_str((enum http_method)m->method));
        lua_setfield(L, -2, "method");
        lua_pushlstring(L, u, ul);
        lua_setfield(L, -2, "target");
        split_target(u, ul, &ps, &pe, &qs, &qe);
        if (pe == ps && ps > 0) lua_pushliteral(L, "/");
        else lua_pushlstring(L, u + ps, pe - ps);
        lua_setfield(L, -2, "path");
        lua_pushlstring(L, u + qs, qe - qs);
        lua_setfield(L, -2, "query");
    }
    lua_createtable(L, 0, (int)(m->nhdrs < 64 ? m->nhdrs : 64));
    for (i = 0; i < m->nhdrs; i++) {
        size_t nl, vl;
        memcpy(&nl, m->hdrs.p + off, sizeof nl);
        memcpy(&vl, m->hdrs.p + off + sizeof nl, sizeof vl);
        off += 2 * sizeof(size_t);
        set_header(L, lua_gettop(L), m->hdrs.p + off, nl, m->hdrs.p + off + nl, vl);
        off += nl + vl;
    }
    lua_setfield(L, -2, "headers");
    if (m->kind == MSG_HEAD) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "streaming");
    } else {
        lua_pushlstring(L, m->body.p ? m->body.p : "", m->body.len);
        lua_setfield(L, -2, "body");
    }
    lua_pushboolean(L, m->keep_alive);
    lua_setfield(L, -2, "keep_alive");
    snprintf(ver, sizeof ver, "%u.%u", (unsigned)m->major, (unsigned)m->minor);
    lua_pushstring(L, ver);
    lua_setfield(L, -2, "version");
}

/* Pushes message, code, limit (nil unless too large); returns 3. */
static int push_error_info(lua_State *L, parser_t *p)
{
    lua_pushstring(L, p->err_msg);
    lua_pushstring(L, p->err_code);
    if (p->err_limit) lua_pushstring(L, p->err_limit);
    else lua_pushnil(L);
    return 3;
}

static int push_error(lua_State *L, parser_t *p)
{
    luaL_pushfail(L);
    return 1 + push_error_info(L, p);
}

/* parser:feed(bytes) -> array of requests | nil, message, code, limit;
 * parser:finish() (no bytes) tells the parser the input ended. */
static int feed(lua_State *L, parser_t *p, const char *data, size_t len, int eof)
{
    size_t i;
    if (p->busy)
        return loom_fail(L, "http_bad_request", "parser failed during an earlier feed");
    if (p->failed && !p->oom) return push_error(L, p);
    if (p->oom) return luaL_error(L, "not enough memory");
    if ((len > 0 || eof) && !p->closed_input) {
        http_parser_execute(&p->hp, &settings, data, len);
        if (p->closed_input || HTTP_PARSER_ERRNO(&p->hp) == HPE_CLOSED_CONNECTION) {
            /* paused after a last request (Connection: close, HTTP/1.0,
             * upgrade): the rest is ignored */
            p->closed_input = 1;
        } else if (HTTP_PARSER_ERRNO(&p->hp) != HPE_OK) {
            if (!p->failed) {
                enum http_errno e = HTTP_PARSER_ERRNO(&p->hp);
                if (e == HPE_HEADER_OVERFLOW)
                    too_large(p, "header_bytes", "request line and headers too large",
                              LIB_MAX_HEADER_BYTES);
                else
                    fail_at(p, "http_bad_request", NULL, http_errno_description(e), 0);
            }
        }
    }
    if (p->oom) {
        for (i = 0; i < p->ndone; i++) msg_free(&p->done[i]);
        p->ndone = 0;
        return luaL_error(L, "not enough memory");
    }
    if (p->failed && p->ndone == 0) return push_error(L, p);
    p->busy = 1;
    lua_createtable(L, (int)(p->ndone < 64 ? p->ndone : 64), 0);
    for (i = 0; i < p->ndone; i++) {
        push_message(L, &p->done[i], p->response);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    for (i = 0; i < p->ndone; i++) msg_free(&p->done[i]);
    p->ndone = 0;
    p->busy = 0;
    return 1;
}

static int l_feed(lua_State *L)
{
    parser_t *p = check_parser(L, 1);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    return feed(L, p, data, len, 0);
}

static int l_finish(lua_State *L)
{
    parser_t *p = check_parser(L, 1);
    return feed(L, p, "", 0, 1);
}

/* parser:error() -> message, code, limit | nil */
static int l_error(lua_State *L)
{
    parser_t *p = check_parser(L, 1);
    if (!p->failed) {
        lua_pushnil(L);
        return 1;
    }
    return push_error_info(L, p);
}

/* parser:state() -> "idle" | "headers" | "body", expect_continue */
static int l_state(lua_State *L)
{
    parser_t *p = check_parser(L, 1);
    lua_pushstring(L, phase_names[p->phase]);
    lua_pushboolean(L, p->phase == PH_BODY && p->expect_continue);
    return 2;
}

/* parser:stream(prefix): requests whose target starts with prefix stream
 * their bodies (see the top of this file); "" turns streaming off. */
static int l_stream(lua_State *L)
{
    parser_t *p = check_parser(L, 1);
    size_t n;
    const char *prefix = luaL_checklstring(L, 2, &n);
    luaL_argcheck(L, n < sizeof p->stream_prefix, 2, "prefix too long");
    memcpy(p->stream_prefix, prefix, n);
    p->stream_prefix[n] = '\0';
    p->stream_prefix_len = n;
    return 0;
}

/* parser:limits() -> table of the limits in force */
static int l_limits(lua_State *L)
{
    parser_t *p = check_parser(L, 1);
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, (lua_Integer)p->lim.max_request_line);
    lua_setfield(L, -2, "max_request_line");
    lua_pushinteger(L, (lua_Integer)p->lim.max_header_line);
    lua_setfield(L, -2, "max_header_line");
    lua_pushinteger(L, (lua_Integer)p->lim.max_headers);
    lua_setfield(L, -2, "max_headers");
    lua_pushinteger(L, (lua_Integer)p->lim.max_header_bytes);
    lua_setfield(L, -2, "max_header_bytes");
    lua_pushinteger(L, (lua_Integer)p->lim.max_body);
    lua_setfield(L, -2, "max_body");
    lua_pushinteger(L, (lua_Integer)p->lim.max_media_body);
    lua_setfield(L, -2, "max_media_body");
    return 1;
}

static int l_close(lua_State *L)
{
    parser_t *p = (parser_t *)luaL_checkudata(L, 1, PARSER_MT);
    if (p->open) parser_release(p);
    return 0;
}

static int l_tostring(lua_State *L)
{
    parser_t *p = (parser_t *)luaL_checkudata(L, 1, PARSER_MT);
    if (!p->open) lua_pushfstring(L, "%s (closed)", PARSER_MT);
    else lua_pushfstring(L, "%s (%s): %p", PARSER_MT, phase_names[p->phase], (void *)p);
    return 1;
}

static const luaL_Reg parser_methods[] = {
    {"feed", l_feed},
    {"finish", l_finish},
    {"error", l_error},
    {"state", l_state},
    {"limits", l_limits},
    {"stream", l_stream},
    {"close", l_close},
    {NULL, NULL}
};

static const luaL_Reg parser_meta[] = {
    {"__gc", l_close},
    {"__close", l_close},
    {"__tostring", l_tostring},
    {NULL, NULL}
};

static const luaL_Reg funcs[] = {
    {"parser", l_parser},
    {"response_parser", l_response_parser},
    {NULL, NULL}
};

void loom_open_http(lua_State *L)
{
    unsigned long v = http_parser_version();
    loom_new_type(L, PARSER_MT, parser_methods, parser_meta);
    luaL_newlib(L, funcs);
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, DEF_REQUEST_LINE);
    lua_setfield(L, -2, "max_request_line");
    lua_pushinteger(L, DEF_HEADER_LINE);
    lua_setfield(L, -2, "max_header_line");
    lua_pushinteger(L, DEF_HEADERS);
    lua_setfield(L, -2, "max_headers");
    lua_pushinteger(L, DEF_HEADER_BYTES);
    lua_setfield(L, -2, "max_header_bytes");
    lua_pushinteger(L, DEF_BODY);
    lua_setfield(L, -2, "max_body");
    lua_pushinteger(L, DEF_MEDIA_BODY);
    lua_setfield(L, -2, "max_media_body");
    lua_setfield(L, -2, "limits");
    lua_pushfstring(L, "http_parser %d.%d.%d", (int)((v >> 16) & 255), (int)((v >> 8) & 255),
                    (int)(v & 255));
    lua_setfield(L, -2, "backend");
    lua_setfield(L, -2, "http");
}
