/* loom.core.dns — the DNS messages of SRV lookups (RFC 1035, RFC 2782).
 *
 * libuv resolves host names (getaddrinfo) but has no SRV lookup; federation
 * needs one. Lua sends the query over UDP to the system's resolver and this
 * module builds the query and parses the answer, which comes from outside
 * and is checked byte by byte.
 *
 *   local q = assert(core.dns.srv_query("_matrix-fed._tcp.example.org", id))
 *   local r = core.dns.parse(packet, id)
 *   --> { rcode = 0, truncated = false, answers = {
 *         { type = 33, ttl = 3600, priority = 10, weight = 5, port = 8448,
 *           target = "matrix.example.org" }, ... } }
 *   --> nil, message, "bad_dns"
 *
 * Only SRV answers for the question's name are returned (others, CNAMEs
 * included, are skipped: a resolver that follows a CNAME gives the SRV
 * records too). Compressed names are followed with a bound on pointer jumps,
 * so a loop in a hostile packet ends in an error.
 */
#include <string.h>

#include "loom.h"

#define DNS_MAX_PACKET 65535
#define DNS_MAX_NAME 255
#define DNS_MAX_JUMPS 32
#define TYPE_SRV 33
#define CLASS_IN 1

/* Appends the labels of name (dots between, an optional final dot) to out;
 * returns the new length or -1 for a bad name. */
static int put_name(unsigned char *out, int len, const char *name)
{
    size_t n = strlen(name);
    if (n > 0 && name[n - 1] == '.') n--;
    if (n == 0 || n > 253) return -1;
    size_t start = 0;
    while (start <= n) {
        size_t end = start;
        while (end < n && name[end] != '.') end++;
        size_t l = end - start;
        if (l == 0 || l > 63) return -1;
        out[len++] = (unsigned char)l;
        memcpy(out + len, name + start, l);
        len += (int)l;
        start = end + 1;
        if (end == n) break;
    }
    out[len++] = 0;
    return len;
}

/* core.dns.srv_query(name, id) -> query bytes | nil, message, "bad_dns" */
static int l_srv_query(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    lua_Integer id = luaL_checkinteger(L, 2);
    luaL_argcheck(L, id >= 0 && id <= 0xffff, 2, "id out of range");
    unsigned char q[12 + 256 + 4];
    memset(q, 0, 12);
    q[0] = (unsigned char)(id >> 8);
    q[1] = (unsigned char)(id & 0xff);
    q[2] = 0x01;   /* RD: recursion desired */
    q[5] = 1;      /* QDCOUNT = 1 */
    int len = put_name(q, 12, name);
    if (len < 0) return loom_fail(L, "bad_dns", "bad name for a DNS query");
    q[len++] = 0;
    q[len++] = TYPE_SRV;
    q[len++] = 0;
    q[len++] = CLASS_IN;
    lua_pushlstring(L, (const char *)q, (size_t)len);
    return 1;
}

typedef struct {
    const unsigned char *p;
    size_t n;
} packet_t;

static unsigned get16(const unsigned char *p) { return (unsigned)p[0] << 8 | p[1]; }

static unsigned long get32(const unsigned char *p)
{
    return (unsigned long)p[0] << 24 | (unsigned long)p[1] << 16 | (unsigned long)p[2] << 8 | p[3];
}

/* Reads the (possibly compressed) name at *pos into out (lowercased, dots
 * between labels, no final dot); *pos moves past the name as written there.
 * Returns 0, or -1 for a malformed name. */
static int read_name(const packet_t *pk, size_t *pos, char *out)
{
    size_t p = *pos, olen = 0;
    int jumped = 0, jumps = 0;
    for (;;) {
        if (p >= pk->n) return -1;
        unsigned c = pk->p[p];
        if ((c & 0xc0) == 0xc0) {
            if (p + 1 >= pk->n) return -1;
            size_t target = (size_t)(c & 0x3f) << 8 | pk->p[p + 1];
            if (!jumped) *pos = p + 2;
            jumped = 1;
            if (++jumps > DNS_MAX_JUMPS || target >= pk->n) return -1;
            p = target;
            continue;
        }
        if (c & 0xc0) return -1;   /* the 0x40 and 0x80 label types are obsolete */
        if (c == 0) {
            if (!jumped) *pos = p + 1;
            break;
        }
        if (p + 1 + c > pk->n) return -1;
        if (olen + (olen ? 1 : 0) + c > DNS_MAX_NAME) return -1;
        if (olen) out[olen++] = '.';
        for (unsigned i = 0; i < c; i++) {
            unsigned char ch = pk->p[p + 1 + i];
            if (ch >= 'A' && ch <= 'Z') ch = (unsigned char)(ch + 32);
            out[olen++] = (char)ch;
        }
        p += 1 + c;
    }
    out[olen] = '\0';
    return 0;
}

static int bad(lua_State *L, const char *why)
{
    return loom_fail(L, "bad_dns", "malformed DNS answer: %s", why);
}

/* core.dns.parse(packet, id) -> answer table | nil, message, "bad_dns" */
static int l_parse(lua_State *L)
{
    size_t n;
    const char *data = luaL_checklstring(L, 1, &n);
    lua_Integer id = luaL_checkinteger(L, 2);
    packet_t pk = { (const unsigned char *)data, n };
    char qname[DNS_MAX_NAME + 1], name[DNS_MAX_NAME + 1];
    if (n < 12) return bad(L, "too short");
    if (n > DNS_MAX_PACKET) return bad(L, "too long");
    if ((lua_Integer)get16(pk.p) != id) return bad(L, "id does not match the query");
    if (!(pk.p[2] & 0x80)) return bad(L, "not a response");
    unsigned qd = get16(pk.p + 4), an = get16(pk.p + 6);
    if (qd != 1) return bad(L, "not one question");
    size_t pos = 12;
    if (read_name(&pk, &pos, qname) < 0) return bad(L, "question name");
    if (pos + 4 > n) return bad(L, "question truncated");
    if (get16(pk.p + pos) != TYPE_SRV || get16(pk.p + pos + 2) != CLASS_IN) return bad(L, "not an SRV question");
    pos += 4;

    lua_createtable(L, 0, 3);
    lua_pushinteger(L, pk.p[3] & 0x0f);
    lua_setfield(L, -2, "rcode");
    lua_pushboolean(L, (pk.p[2] & 0x02) != 0);
    lua_setfield(L, -2, "truncated");
    lua_pushstring(L, qname);
    lua_setfield(L, -2, "name");
    lua_createtable(L, an < 64 ? (int)an : 64, 0);
    int k = 0;
    for (unsigned i = 0; i < an; i++) {
        if (read_name(&pk, &pos, name) < 0) return bad(L, "answer name");
        if (pos + 10 > n) return bad(L, "answer truncated");
        unsigned type = get16(pk.p + pos), cls = get16(pk.p + pos + 2);
        unsigned long ttl = get32(pk.p + pos + 4);
        unsigned rdlen = get16(pk.p + pos + 8);
        pos += 10;
        if (pos + rdlen > n) return bad(L, "record data truncated");
        size_t end = pos + rdlen;
        if (type == TYPE_SRV && cls == CLASS_IN && strcmp(name, qname) == 0) {
            char target[DNS_MAX_NAME + 1];
            if (rdlen < 7) return bad(L, "short SRV record");
            size_t tpos = pos + 6;
            if (read_name(&pk, &tpos, target) < 0) return bad(L, "SRV target");
            if (tpos > end) return bad(L, "SRV target overruns its record");
            lua_createtable(L, 0, 6);
            lua_pushinteger(L, type);
            lua_setfield(L, -2, "type");
            lua_pushinteger(L, (lua_Integer)(ttl & 0x7fffffffUL));
            lua_setfield(L, -2, "ttl");
            lua_pushinteger(L, get16(pk.p + pos));
            lua_setfield(L, -2, "priority");
            lua_pushinteger(L, get16(pk.p + pos + 2));
            lua_setfield(L, -2, "weight");
            lua_pushinteger(L, get16(pk.p + pos + 4));
            lua_setfield(L, -2, "port");
            lua_pushstring(L, target);
            lua_setfield(L, -2, "target");
            lua_rawseti(L, -2, ++k);
        }
        pos = end;
    }
    lua_setfield(L, -2, "answers");
    return 1;
}

void loom_open_dns(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"srv_query", l_srv_query},
        {"parse", l_parse},
        {NULL, NULL},
    };
    luaL_newlib(L, fns);
    lua_setfield(L, -2, "dns");
}
