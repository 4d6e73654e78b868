/* loom.core.state — room state as a sorted set of (type NID, state key NID,
 * event NID) triples: the loom.State object and the BLOB formats that state
 * storage is built from (lua/loom/store/state.lua; docs/state.md).
 *
 * Formats. Integers are LEB128 varints of minimal length.
 *   block   := 0x01 count(>=1) entry{count}
 *   segment := 0x02 nblocks(0..64) ref{nblocks} ndeltas(1..64) (count entry{count}){ndeltas}
 *   ref     := the first block NID, then zigzag(nid - previous nid) (never 0)
 *   bucket  := (3 bytes big-endian: hash >> 8, varint snapshot NID)*
 *   entry   := x [k - 1] zigzag(e - prev_e)
 *     x = (k - prev_k - 1) << 1          when t is the previous entry's type
 *     x = (t - prev_t - 1) << 1 | 1      otherwise; then k - 1 follows
 * prev_t and prev_k start at 0 in every block and delta; prev_e starts at 0 in
 * every block and segment and runs on across a segment's deltas. Keys strictly
 * increase by construction, so a set of triples has exactly one encoding and
 * the decoders accept nothing else: truncated, overlong or overflowing
 * varints, keys that overflow the NID range, counts that do not match the
 * data and trailing bytes are all "bad_state_blob".
 *
 * Event NID 0 inside a block or delta marks a removal: blocks and deltas are
 * merged in order, later ones overriding earlier ones for the same
 * (type, state key). A loom.State never holds removals.
 */
#include <stdlib.h>
#include <string.h>

#include "loom.h"

#define STATE_MT "loom.State"
#define TAG_BLOCK 0x01
#define TAG_SEGMENT 0x02
#define MAX_BLOCKS 64
#define MAX_DELTAS 64
#define BAD_BLOB "bad_state_blob"

typedef struct {
    int64_t t, k, e; /* type NID, state key NID, event NID (0: removed) */
} triple_t;

typedef struct {
    size_t n;        /* entries (apply may leave room for a few more) */
    uint64_t hash;   /* sum of entry_hash over the entries (a set hash) */
    triple_t v[];    /* sorted by (t, k), no removals */
} State;

typedef struct {
    size_t off, len;
} run_t;

/* ---- keys and hashes --------------------------------------------------- */

static int key_cmp(const triple_t *a, const triple_t *b)
{
    if (a->t != b->t) return a->t < b->t ? -1 : 1;
    if (a->k != b->k) return a->k < b->k ? -1 : 1;
    return 0;
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    x ^= x >> 31;
    return x;
}

static uint64_t key_hash(const triple_t *p)
{
    return mix64((uint64_t)p->t * UINT64_C(0x9e3779b97f4a7c15) ^ mix64((uint64_t)p->k));
}

static uint64_t entry_hash(const triple_t *p)
{
    return mix64(key_hash(p) + (uint64_t)p->e * UINT64_C(0xc2b2ae3d27d4eb4f));
}

/* A uint64 as a Lua integer with the same bits, without implementation-
 * defined conversions. */
static lua_Integer u64_to_integer(uint64_t u)
{
    if (u <= (uint64_t)INT64_MAX) return (lua_Integer)u;
    return -(lua_Integer)(~u) - 1;
}

static uint64_t zigzag(int64_t d)
{
    return d >= 0 ? (uint64_t)d << 1 : ((uint64_t)(-(d + 1)) << 1) | 1u;
}

static int64_t unzigzag(uint64_t z)
{
    return (z & 1u) ? -(int64_t)(z >> 1) - 1 : (int64_t)(z >> 1);
}

/* ---- scratch memory ----------------------------------------------------- */

/* Memory for count items, owned by a userdata pushed on the stack (collected
 * with it, so a raise leaks nothing). */
static void *scratch(lua_State *L, size_t count, size_t size)
{
    if (count > ((size_t)-1 / 4) / size) luaL_error(L, "state too large");
    return lua_newuserdatauv(L, count ? count * size : 1, 0);
}

/* ---- sorting and merging ------------------------------------------------ */

/* Stable merge sort by key (equal keys keep their input order). */
static void sort_triples(triple_t *v, triple_t *tmp, size_t n)
{
    size_t w, i;
    for (i = 1; i < n && key_cmp(&v[i - 1], &v[i]) < 0; i++)
        ;
    if (i >= n) return;
    for (w = 1; w < n; w *= 2) {
        for (i = 0; i < n; i += 2 * w) {
            size_t a = i, am = i + w < n ? i + w : n, b = am, bm = i + 2 * w < n ? i + 2 * w : n;
            size_t o = i;
            while (a < am && b < bm) tmp[o++] = key_cmp(&v[b], &v[a]) < 0 ? v[b++] : v[a++];
            while (a < am) tmp[o++] = v[a++];
            while (b < bm) tmp[o++] = v[b++];
        }
        memcpy(v, tmp, n * sizeof *v);
    }
}

/* After a stable sort: keep the last entry of each key. */
static size_t keep_last(triple_t *v, size_t n)
{
    size_t i, m = 0;
    for (i = 0; i < n; i++) {
        if (m > 0 && key_cmp(&v[m - 1], &v[i]) == 0) v[m - 1] = v[i];
        else v[m++] = v[i];
    }
    return m;
}

/* Index of the first duplicate key in a sorted array, or n. */
static size_t find_duplicate(const triple_t *v, size_t n)
{
    size_t i;
    for (i = 1; i < n; i++)
        if (key_cmp(&v[i - 1], &v[i]) == 0) return i;
    return n;
}

/* Merge sorted b (newer) over sorted a (older) into dst: b wins on equal keys.
 * Removals are kept (they must still override older runs). */
static size_t merge_over(triple_t *dst, const triple_t *a, size_t na, const triple_t *b, size_t nb)
{
    size_t i = 0, j = 0, n = 0;
    while (i < na && j < nb) {
        int c = key_cmp(&a[i], &b[j]);
        if (c < 0) dst[n++] = a[i++];
        else if (c > 0) dst[n++] = b[j++];
        else { dst[n++] = b[j++]; i++; }
    }
    while (i < na) dst[n++] = a[i++];
    while (j < nb) dst[n++] = b[j++];
    return n;
}

static size_t drop_removed(triple_t *v, size_t n)
{
    size_t i, m = 0;
    for (i = 0; i < n; i++)
        if (v[i].e != 0) v[m++] = v[i];
    return m;
}

/* Merge run y (newer) into run x (older, placed before y in v); the result
 * replaces x. tmp holds at least x->len + y->len entries. */
static void merge_pair(triple_t *v, triple_t *tmp, run_t *x, const run_t *y)
{
    if (y->len == 0) return;
    if (x->len == 0 || key_cmp(&v[x->off + x->len - 1], &v[y->off]) < 0) {
        if (x->off + x->len != y->off)
            memmove(v + x->off + x->len, v + y->off, y->len * sizeof *v);
        x->len += y->len;
        return;
    }
    x->len = merge_over(tmp, v + x->off, x->len, v + y->off, y->len);
    memcpy(v + x->off, tmp, x->len * sizeof *v);
}

/* Merge runs (in override order) into one, keeping sizes balanced so each
 * entry is copied O(log runs) times; disjoint ordered runs (the chunks of a
 * compacted state) are joined without copying. */
static run_t merge_runs(triple_t *v, triple_t *tmp, run_t *runs, size_t nruns)
{
    size_t k = 0, i;
    run_t none = {0, 0};
    for (i = 0; i < nruns; i++) {
        runs[k++] = runs[i];
        while (k >= 2 && runs[k - 2].len <= 2 * runs[k - 1].len) {
            merge_pair(v, tmp, &runs[k - 2], &runs[k - 1]);
            k--;
        }
    }
    while (k >= 2) {
        merge_pair(v, tmp, &runs[k - 2], &runs[k - 1]);
        k--;
    }
    return k ? runs[0] : none;
}

/* ---- the State object --------------------------------------------------- */

static State *check_state(lua_State *L, int i)
{
    return (State *)luaL_checkudata(L, i, STATE_MT);
}

static State *new_state(lua_State *L, size_t n)
{
    State *s;
    if (n > ((size_t)-1 / 4 - sizeof(State)) / sizeof(triple_t)) luaL_error(L, "state too large");
    s = (State *)lua_newuserdatauv(L, sizeof(State) + n * sizeof(triple_t), 0);
    s->n = n;
    s->hash = 0;
    luaL_setmetatable(L, STATE_MT);
    return s;
}

/* Push a State holding v[0..n) (sorted, no removals). */
static State *push_state(lua_State *L, const triple_t *v, size_t n)
{
    State *s = new_state(L, n);
    size_t i;
    if (n) memcpy(s->v, v, n * sizeof *v);
    for (i = 0; i < n; i++) s->hash += entry_hash(&v[i]);
    return s;
}

/* Index of the first entry with key >= (t, k). */
static size_t lower_bound(const State *s, int64_t t, int64_t k)
{
    size_t lo = 0, hi = s->n;
    triple_t key;
    key.t = t;
    key.k = k;
    key.e = 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (key_cmp(&s->v[mid], &key) < 0) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* ---- reading triples from Lua ------------------------------------------- */

static int64_t check_int(lua_State *L, int i)
{
    if (!lua_isinteger(L, i)) luaL_typeerror(L, i, "integer");
    return (int64_t)lua_tointeger(L, i);
}

/* Read the array at idx of {type, state_key, event} triples into v (room for
 * lua_rawlen entries). NIDs are >= 1; events >= min_e (0 allows removals).
 * Raises on misuse, naming `what`. */
static void read_triples(lua_State *L, int idx, triple_t *v, size_t n, int64_t min_e,
                         const char *what)
{
    size_t i;
    int j;
    for (i = 0; i < n; i++) {
        int64_t x[3];
        if (lua_rawgeti(L, idx, (lua_Integer)i + 1) != LUA_TTABLE)
            luaL_error(L, "%s: entry %I is not a {type, state_key, event} triple", what,
                       (lua_Integer)i + 1);
        for (j = 0; j < 3; j++) {
            lua_rawgeti(L, -1, j + 1);
            if (!lua_isinteger(L, -1))
                luaL_error(L, "%s: entry %I: field %d is not an integer", what, (lua_Integer)i + 1, j + 1);
            x[j] = (int64_t)lua_tointeger(L, -1);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        if (x[0] < 1 || x[1] < 1)
            luaL_error(L, "%s: entry %I: type and state key NIDs must be at least 1", what,
                       (lua_Integer)i + 1);
        if (x[2] < min_e)
            luaL_error(L, "%s: entry %I: event NID must be at least %I", what, (lua_Integer)i + 1,
                       (lua_Integer)min_e);
        v[i].t = x[0];
        v[i].k = x[1];
        v[i].e = x[2];
    }
}

/* Read, sort and check a set of triples (no two with one key). Pushes a
 * scratch userdata; returns the array and stores the count in *n. */
static triple_t *read_set(lua_State *L, int idx, int64_t min_e, const char *what, size_t *n)
{
    size_t cnt, dup;
    triple_t *v, *tmp;
    idx = lua_absindex(L, idx);
    luaL_checktype(L, idx, LUA_TTABLE);
    cnt = (size_t)lua_rawlen(L, idx);
    v = (triple_t *)scratch(L, cnt, sizeof *v);
    tmp = (triple_t *)scratch(L, cnt, sizeof *v);
    read_triples(L, idx, v, cnt, min_e, what);
    sort_triples(v, tmp, cnt);
    lua_pop(L, 1); /* tmp */
    dup = find_duplicate(v, cnt);
    if (dup < cnt)
        luaL_error(L, "%s: two entries for type %I, state key %I", what, (lua_Integer)v[dup].t,
                   (lua_Integer)v[dup].k);
    *n = cnt;
    return v;
}

/* ---- encoding ----------------------------------------------------------- */

static void put_varint(luaL_Buffer *b, uint64_t v)
{
    char *p = luaL_prepbuffsize(b, 10);
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (char)(unsigned char)((v & 0x7f) | 0x80);
        v >>= 7;
    }
    p[n++] = (char)(unsigned char)v;
    luaL_addsize(b, n);
}

/* Entries of one block or delta (sorted, unique keys). */
static void put_entries(luaL_Buffer *b, const triple_t *v, size_t n, int64_t *prev_e)
{
    int64_t pt = 0, pk = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        if (v[i].t == pt) {
            put_varint(b, (uint64_t)(v[i].k - pk - 1) << 1);
        } else {
            put_varint(b, ((uint64_t)(v[i].t - pt - 1) << 1) | 1u);
            put_varint(b, (uint64_t)(v[i].k - 1));
        }
        put_varint(b, zigzag(v[i].e - *prev_e));
        pt = v[i].t;
        pk = v[i].k;
        *prev_e = v[i].e;
    }
}

static void put_block(luaL_Buffer *b, const triple_t *v, size_t n)
{
    int64_t prev_e = 0;
    luaL_addchar(b, (char)TAG_BLOCK);
    put_varint(b, (uint64_t)n);
    put_entries(b, v, n, &prev_e);
}

/* A segment: block NIDs and deltas (delta i = v[off[i] .. off[i + 1])). */
static void put_segment(luaL_Buffer *b, const int64_t *blocks, size_t nblocks,
                        const triple_t *v, const size_t *off, size_t ndeltas)
{
    size_t i;
    int64_t prev_e = 0;
    luaL_addchar(b, (char)TAG_SEGMENT);
    put_varint(b, (uint64_t)nblocks);
    for (i = 0; i < nblocks; i++)
        put_varint(b, i == 0 ? (uint64_t)blocks[0] : zigzag(blocks[i] - blocks[i - 1]));
    put_varint(b, (uint64_t)ndeltas);
    for (i = 0; i < ndeltas; i++) {
        put_varint(b, (uint64_t)(off[i + 1] - off[i]));
        put_entries(b, v + off[i], off[i + 1] - off[i], &prev_e);
    }
}

/* ---- decoding ----------------------------------------------------------- */

typedef struct {
    const unsigned char *p, *end;
    const char *err; /* first problem found; NULL while all is well */
} reader_t;

static void rd_fail(reader_t *r, const char *msg)
{
    if (!r->err) r->err = msg;
}

static size_t rd_left(const reader_t *r)
{
    return (size_t)(r->end - r->p);
}

static uint64_t rd_varint(reader_t *r)
{
    uint64_t v = 0;
    int shift = 0;
    if (r->err) return 0;
    for (;;) {
        unsigned c;
        if (r->p >= r->end) { rd_fail(r, "truncated varint"); return 0; }
        c = *r->p++;
        if (shift == 63 && c > 1) { rd_fail(r, "varint overflows 64 bits"); return 0; }
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            if (c == 0 && shift > 0) { rd_fail(r, "overlong varint"); return 0; }
            return v;
        }
        shift += 7;
    }
}

/* A count of entries that must fit in the bytes left (each takes >= 2). */
static uint64_t rd_count(reader_t *r)
{
    uint64_t n = rd_varint(r);
    if (!r->err && n > rd_left(r) / 2) rd_fail(r, "entry count exceeds the data");
    return r->err ? 0 : n;
}

static int rd_entries(reader_t *r, triple_t *out, uint64_t n, int64_t *prev_e)
{
    int64_t pt = 0, pk = 0;
    uint64_t i;
    for (i = 0; i < n && !r->err; i++) {
        uint64_t x = rd_varint(r), z;
        int64_t t, k, d;
        if (r->err) break;
        if (x & 1u) {
            uint64_t dt = x >> 1, kk;
            if (dt >= (uint64_t)(INT64_MAX - pt)) { rd_fail(r, "type NID out of range"); break; }
            t = pt + (int64_t)dt + 1;
            kk = rd_varint(r);
            if (r->err) break;
            if (kk >= (uint64_t)INT64_MAX) { rd_fail(r, "state key NID out of range"); break; }
            k = (int64_t)kk + 1;
        } else {
            uint64_t dk = x >> 1;
            if (i == 0) { rd_fail(r, "key out of order (first entry names no type)"); break; }
            if (dk >= (uint64_t)(INT64_MAX - pk)) { rd_fail(r, "key out of order (state key overflows)"); break; }
            t = pt;
            k = pk + (int64_t)dk + 1;
        }
        z = rd_varint(r);
        if (r->err) break;
        d = unzigzag(z);
        if ((d > 0 && *prev_e > INT64_MAX - d) || (d < 0 && *prev_e + d < 0)) {
            rd_fail(r, "event NID out of range");
            break;
        }
        out[i].t = t;
        out[i].k = k;
        out[i].e = *prev_e + d;
        *prev_e = out[i].e;
        pt = t;
        pk = k;
    }
    return r->err == NULL;
}

/* A block's header; returns its entry count (0 with r->err set on error). */
static uint64_t rd_block_header(reader_t *r)
{
    uint64_t n;
    if (r->p >= r->end) { rd_fail(r, "empty blob"); return 0; }
    if (*r->p != TAG_BLOCK) { rd_fail(r, "not a state block"); return 0; }
    r->p++;
    n = rd_count(r);
    if (!r->err && n == 0) rd_fail(r, "block has no entries");
    return r->err ? 0 : n;
}

static void rd_end(reader_t *r)
{
    if (!r->err && r->p != r->end) rd_fail(r, "trailing bytes");
}

typedef struct {
    size_t nblocks, ndeltas;
    int64_t blocks[MAX_BLOCKS];
    size_t off[MAX_DELTAS + 1]; /* delta i = entries off[i] .. off[i + 1] */
} segment_t;

/* Capacity a segment of len bytes may need, in entries. */
static size_t segment_capacity(size_t len)
{
    return len / 2 + 1;
}

/* Decode a segment; v has room for segment_capacity(len) entries. */
static int rd_segment(reader_t *r, segment_t *g, triple_t *v)
{
    uint64_t nb, nd, i, j;
    int64_t prev_e = 0;
    size_t pos = 0;
    if (r->p >= r->end) { rd_fail(r, "empty blob"); return 0; }
    if (*r->p != TAG_SEGMENT) { rd_fail(r, "not a state segment"); return 0; }
    r->p++;
    nb = rd_varint(r);
    if (!r->err && nb > MAX_BLOCKS) rd_fail(r, "more than 64 blocks");
    for (i = 0; i < nb && !r->err; i++) {
        uint64_t x = rd_varint(r);
        int64_t nid;
        if (r->err) break;
        if (i == 0) {
            if (x < 1 || x > (uint64_t)INT64_MAX) { rd_fail(r, "block NID out of range"); break; }
            nid = (int64_t)x;
        } else {
            int64_t d = unzigzag(x), prev = g->blocks[i - 1];
            if (d == 0) { rd_fail(r, "block listed twice"); break; }
            if ((d > 0 && prev > INT64_MAX - d) || (d < 0 && prev + d < 1)) {
                rd_fail(r, "block NID out of range");
                break;
            }
            nid = prev + d;
            for (j = 0; j + 1 < i; j++)
                if (g->blocks[j] == nid) { rd_fail(r, "block listed twice"); break; }
        }
        g->blocks[i] = nid;
    }
    nd = rd_varint(r);
    if (!r->err && (nd < 1 || nd > MAX_DELTAS)) rd_fail(r, "delta count must be 1 to 64");
    if (r->err) return 0;
    g->nblocks = (size_t)nb;
    g->ndeltas = (size_t)nd;
    for (i = 0; i < nd; i++) {
        uint64_t c = rd_count(r);
        if (r->err) return 0;
        g->off[i] = pos;
        if (!rd_entries(r, v + pos, c, &prev_e)) return 0;
        pos += (size_t)c;
    }
    g->off[nd] = pos;
    rd_end(r);
    return r->err == NULL;
}

static void reader_init(reader_t *r, const char *s, size_t len)
{
    r->p = (const unsigned char *)s;
    r->end = r->p + len;
    r->err = NULL;
}

/* ---- pushing results ---------------------------------------------------- */

static void push_triple(lua_State *L, const triple_t *p)
{
    lua_createtable(L, 3, 0);
    lua_pushinteger(L, p->t);
    lua_rawseti(L, -2, 1);
    lua_pushinteger(L, p->k);
    lua_rawseti(L, -2, 2);
    lua_pushinteger(L, p->e);
    lua_rawseti(L, -2, 3);
}

static void push_triples(lua_State *L, const triple_t *v, size_t n)
{
    size_t i;
    lua_createtable(L, n > INT32_MAX ? INT32_MAX : (int)n, 0);
    for (i = 0; i < n; i++) {
        push_triple(L, &v[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

static void push_nids(lua_State *L, const int64_t *v, size_t n)
{
    size_t i;
    lua_createtable(L, (int)n, 0);
    for (i = 0; i < n; i++) {
        lua_pushinteger(L, v[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

/* ---- module functions: State ------------------------------------------- */

/* state.new(triples) -> State. Event NIDs >= 1, one entry per key. */
static int l_new(lua_State *L)
{
    size_t n;
    triple_t *v = read_set(L, 1, 1, "state.new", &n);
    push_state(L, v, n);
    return 1;
}

/* st:apply(delta) -> State, changes: the entries of delta replace or add
 * (event 0 removes); for a key given twice in delta the later entry wins.
 * changes = the entries of delta that changed something, in key order (the
 * effective delta: st:delta(result)). */
static int st_apply(lua_State *L)
{
    State *s = check_state(L, 1), *r;
    size_t m, n = 0, i = 0, j = 0, nc = 0;
    triple_t *d, *tmp, *out;
    uint64_t h;
    luaL_checktype(L, 2, LUA_TTABLE);
    m = (size_t)lua_rawlen(L, 2);
    d = (triple_t *)scratch(L, m, sizeof *d);
    tmp = (triple_t *)scratch(L, m, sizeof *d);
    read_triples(L, 2, d, m, 0, "apply");
    sort_triples(d, tmp, m);
    m = keep_last(d, m);
    /* written straight into the result, sized for the most it can hold */
    r = new_state(L, s->n + m);
    out = r->v;
    h = s->hash;
    while (i < s->n || j < m) {
        int c = i >= s->n ? 1 : j >= m ? -1 : key_cmp(&s->v[i], &d[j]);
        int changed;
        if (c < 0) { out[n++] = s->v[i++]; continue; }
        changed = d[j].e != 0;
        if (c == 0) {
            changed = s->v[i].e != d[j].e;
            h -= entry_hash(&s->v[i]);
            i++;
        }
        if (d[j].e != 0) { h += entry_hash(&d[j]); out[n++] = d[j]; }
        if (changed) d[nc++] = d[j]; /* nc <= j: d doubles as the list of changes */
        j++;
    }
    r->n = n;
    r->hash = h;
    push_triples(L, d, nc);
    return 2;
}

/* st:get(type, state_key) -> event NID | nil */
static int st_get(lua_State *L)
{
    State *s = check_state(L, 1);
    int64_t t = check_int(L, 2), k = check_int(L, 3);
    size_t i = lower_bound(s, t, k);
    if (i < s->n && s->v[i].t == t && s->v[i].k == k) lua_pushinteger(L, s->v[i].e);
    else lua_pushnil(L);
    return 1;
}

/* st:entries() -> types, state_keys, events (parallel arrays, key order) */
static int st_entries(lua_State *L)
{
    State *s = check_state(L, 1);
    size_t i;
    int n = s->n > INT32_MAX ? INT32_MAX : (int)s->n;
    lua_createtable(L, n, 0);
    lua_createtable(L, n, 0);
    lua_createtable(L, n, 0);
    for (i = 0; i < s->n; i++) {
        lua_pushinteger(L, s->v[i].t);
        lua_rawseti(L, -4, (lua_Integer)i + 1);
        lua_pushinteger(L, s->v[i].k);
        lua_rawseti(L, -3, (lua_Integer)i + 1);
        lua_pushinteger(L, s->v[i].e);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 3;
}

/* st:triples() -> array of {type, state_key, event} in key order */
static int st_triples(lua_State *L)
{
    State *s = check_state(L, 1);
    push_triples(L, s->v, s->n);
    return 1;
}

/* st:by_type(type) -> state_keys, events (parallel arrays) */
static int st_by_type(lua_State *L)
{
    State *s = check_state(L, 1);
    int64_t t = check_int(L, 2);
    size_t i = lower_bound(s, t, INT64_MIN), j;
    lua_Integer n = 0;
    for (j = i; j < s->n && s->v[j].t == t; j++)
        ;
    lua_createtable(L, (int)(j - i > INT32_MAX ? INT32_MAX : j - i), 0);
    lua_createtable(L, (int)(j - i > INT32_MAX ? INT32_MAX : j - i), 0);
    for (; i < j; i++) {
        n++;
        lua_pushinteger(L, s->v[i].k);
        lua_rawseti(L, -3, n);
        lua_pushinteger(L, s->v[i].e);
        lua_rawseti(L, -2, n);
    }
    return 2;
}

/* a:diff(b) -> removed, added: the triples of a that b lacks, and the
 * triples of b that a lacks (a changed key appears in both). */
static int st_diff(lua_State *L)
{
    State *a = check_state(L, 1), *b = check_state(L, 2);
    size_t i = 0, j = 0;
    lua_Integer nr = 0, na = 0;
    lua_newtable(L); /* removed */
    lua_newtable(L); /* added */
    while (i < a->n || j < b->n) {
        int c = i >= a->n ? 1 : j >= b->n ? -1 : key_cmp(&a->v[i], &b->v[j]);
        const triple_t *rem = NULL, *add = NULL;
        if (c < 0) rem = &a->v[i++];
        else if (c > 0) add = &b->v[j++];
        else {
            if (a->v[i].e != b->v[j].e) { rem = &a->v[i]; add = &b->v[j]; }
            i++;
            j++;
        }
        if (rem) { push_triple(L, rem); lua_rawseti(L, -3, ++nr); }
        if (add) { push_triple(L, add); lua_rawseti(L, -2, ++na); }
    }
    return 2;
}

/* a:delta(b) -> the delta that turns a into b: b's new or changed entries and
 * {type, state_key, 0} for every key b lacks, in key order. */
static int st_delta(lua_State *L)
{
    State *a = check_state(L, 1), *b = check_state(L, 2);
    size_t i = 0, j = 0;
    lua_Integer n = 0;
    lua_newtable(L);
    while (i < a->n || j < b->n) {
        int c = i >= a->n ? 1 : j >= b->n ? -1 : key_cmp(&a->v[i], &b->v[j]);
        triple_t x;
        if (c < 0) { x = a->v[i++]; x.e = 0; }
        else if (c > 0) x = b->v[j++];
        else {
            x = b->v[j];
            i++;
            j++;
            if (x.e == a->v[i - 1].e) continue;
        }
        push_triple(L, &x);
        lua_rawseti(L, -2, ++n);
    }
    return 1;
}

/* st:hash() -> 64-bit set hash (an integer; equal states, equal hashes) */
static int st_hash(lua_State *L)
{
    lua_pushinteger(L, u64_to_integer(check_state(L, 1)->hash));
    return 1;
}

/* Chunk boundaries of a state for compaction: content-defined, so that a
 * change moves only the boundaries next to it. Returns the number of chunks,
 * or max + 1 when there would be more than max. */
static size_t chunk_ends(const State *s, uint64_t m, size_t *ends, size_t max)
{
    size_t i, start = 0, cnt = 0;
    for (i = 0; i < s->n; i++) {
        int cut = i + 1 == s->n || (uint64_t)(i + 1 - start) >= 4 * m ||
                  ((key_hash(&s->v[i]) >> 40) & (m - 1)) == m - 1;
        if (!cut) continue;
        if (cnt == max) return max + 1;
        ends[cnt++] = i + 1;
        start = i + 1;
    }
    return cnt;
}

#define MAX_CHUNKS 32

/* st:chunks() -> array of block blobs covering the state (key ranges, at most
 * 32). A function of the state alone: equal states give equal chunks. */
static int st_chunks(lua_State *L)
{
    State *s = check_state(L, 1);
    size_t ends[MAX_CHUNKS], cnt, i, start = 0;
    uint64_t m = 64;
    while (m < (uint64_t)s->n / 16) m *= 2;
    while ((cnt = chunk_ends(s, m, ends, MAX_CHUNKS)) > MAX_CHUNKS) m *= 2;
    lua_createtable(L, (int)cnt, 0);
    for (i = 0; i < cnt; i++) {
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        put_block(&b, s->v + start, ends[i] - start);
        luaL_pushresult(&b);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
        start = ends[i];
    }
    return 1;
}

static int st_len(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)check_state(L, 1)->n);
    return 1;
}

static int st_eq(lua_State *L)
{
    State *a = check_state(L, 1), *b = check_state(L, 2);
    lua_pushboolean(L, a->n == b->n && a->hash == b->hash &&
                           (a->n == 0 || memcmp(a->v, b->v, a->n * sizeof *a->v) == 0));
    return 1;
}

static int st_tostring(lua_State *L)
{
    State *s = check_state(L, 1);
    lua_pushfstring(L, STATE_MT " (%I entries)", (lua_Integer)s->n);
    return 1;
}

/* ---- module functions: blocks ------------------------------------------- */

/* state.encode_block(triples) -> blob. At least one entry, one per key;
 * event 0 marks a removal. */
static int l_encode_block(lua_State *L)
{
    size_t n;
    triple_t *v = read_set(L, 1, 0, "encode_block", &n);
    luaL_Buffer b;
    luaL_argcheck(L, n > 0, 1, "a block needs at least one entry");
    luaL_buffinit(L, &b);
    put_block(&b, v, n);
    luaL_pushresult(&b);
    return 1;
}

/* state.decode_block(blob) -> triples | nil, message, "bad_state_blob" */
static int l_decode_block(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    reader_t r;
    uint64_t n;
    int64_t prev_e = 0;
    triple_t *v;
    reader_init(&r, s, len);
    n = rd_block_header(&r);
    if (r.err) return loom_fail(L, BAD_BLOB, "bad state block: %s", r.err);
    v = (triple_t *)scratch(L, (size_t)n, sizeof *v);
    rd_entries(&r, v, n, &prev_e);
    rd_end(&r);
    if (r.err) return loom_fail(L, BAD_BLOB, "bad state block: %s", r.err);
    push_triples(L, v, (size_t)n);
    return 1;
}

/* state.blob_hash(blob) -> 32-bit content hash (for finding equal blocks) */
static int l_blob_hash(lua_State *L)
{
    size_t len, i;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (i = 0; i < len; i++) h = (h ^ s[i]) * UINT64_C(0x100000001b3);
    lua_pushinteger(L, (lua_Integer)(mix64(h + len) >> 32));
    return 1;
}

/* ---- module functions: segments ----------------------------------------- */

static void read_block_nids(lua_State *L, int idx, int64_t *out, size_t *n)
{
    size_t i, j, cnt;
    luaL_checktype(L, idx, LUA_TTABLE);
    cnt = (size_t)lua_rawlen(L, idx);
    luaL_argcheck(L, cnt <= MAX_BLOCKS, idx, "more than 64 blocks");
    for (i = 0; i < cnt; i++) {
        lua_rawgeti(L, idx, (lua_Integer)i + 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1)
            luaL_argerror(L, idx, "block NIDs are integers >= 1");
        out[i] = (int64_t)lua_tointeger(L, -1);
        lua_pop(L, 1);
        for (j = 0; j < i; j++)
            if (out[j] == out[i]) luaL_argerror(L, idx, "a block is listed twice");
    }
    *n = cnt;
}

/* state.encode_segment(block_nids, deltas) -> blob. deltas: 1 to 64 arrays
 * of triples (event 0 removes), each with one entry per key. */
static int l_encode_segment(lua_State *L)
{
    int64_t blocks[MAX_BLOCKS];
    size_t nblocks, nd, i, total = 0, off[MAX_DELTAS + 1];
    triple_t *v;
    luaL_Buffer b;
    read_block_nids(L, 1, blocks, &nblocks);
    luaL_checktype(L, 2, LUA_TTABLE);
    nd = (size_t)lua_rawlen(L, 2);
    luaL_argcheck(L, nd >= 1 && nd <= MAX_DELTAS, 2, "a segment holds 1 to 64 deltas");
    for (i = 0; i < nd; i++) {
        if (lua_rawgeti(L, 2, (lua_Integer)i + 1) != LUA_TTABLE)
            luaL_argerror(L, 2, "each delta is an array of triples");
        total += (size_t)lua_rawlen(L, -1);
        lua_pop(L, 1);
    }
    v = (triple_t *)scratch(L, total, sizeof *v);
    off[0] = 0;
    for (i = 0; i < nd; i++) {
        size_t n;
        triple_t *d;
        lua_rawgeti(L, 2, (lua_Integer)i + 1);
        d = read_set(L, -1, 0, "encode_segment", &n);
        if (n) memcpy(v + off[i], d, n * sizeof *d);
        off[i + 1] = off[i] + n;
        lua_pop(L, 2);
    }
    luaL_buffinit(L, &b);
    put_segment(&b, blocks, nblocks, v, off, nd);
    luaL_pushresult(&b);
    return 1;
}

/* Decode the segment at idx into a new scratch buffer (pushed). Returns the
 * entries, or NULL with *err set. */
static triple_t *decode_segment_arg(lua_State *L, int idx, segment_t *g, const char **err)
{
    size_t len;
    const char *s = luaL_checklstring(L, idx, &len);
    triple_t *v = (triple_t *)scratch(L, segment_capacity(len), sizeof *v);
    reader_t r;
    reader_init(&r, s, len);
    rd_segment(&r, g, v);
    *err = r.err;
    return r.err ? NULL : v;
}

/* state.decode_segment(blob) -> block_nids, deltas | nil, message, code */
static int l_decode_segment(lua_State *L)
{
    segment_t g;
    const char *err;
    size_t i;
    triple_t *v = decode_segment_arg(L, 1, &g, &err);
    if (!v) return loom_fail(L, BAD_BLOB, "bad state segment: %s", err);
    push_nids(L, g.blocks, g.nblocks);
    lua_createtable(L, (int)g.ndeltas, 0);
    for (i = 0; i < g.ndeltas; i++) {
        push_triples(L, v + g.off[i], g.off[i + 1] - g.off[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 2;
}

/* state.segment_info(blob) -> block_nids, number of deltas | nil, msg, code */
static int l_segment_info(lua_State *L)
{
    segment_t g;
    const char *err;
    if (!decode_segment_arg(L, 1, &g, &err))
        return loom_fail(L, BAD_BLOB, "bad state segment: %s", err);
    push_nids(L, g.blocks, g.nblocks);
    lua_pushinteger(L, (lua_Integer)g.ndeltas);
    return 2;
}

/* state.segment_append(blob, delta) -> blob, slot (0-based index of the new
 * delta) | nil, message, "bad_state_blob" | nil, message, "segment_full". */
static int l_segment_append(lua_State *L)
{
    segment_t g;
    const char *err;
    size_t n, total;
    triple_t *v = decode_segment_arg(L, 1, &g, &err), *d, *all;
    luaL_Buffer b;
    if (!v) return loom_fail(L, BAD_BLOB, "bad state segment: %s", err);
    if (g.ndeltas >= MAX_DELTAS) return loom_fail(L, "segment_full", "segment already holds 64 deltas");
    d = read_set(L, 2, 0, "segment_append", &n);
    total = g.off[g.ndeltas] + n;
    all = (triple_t *)scratch(L, total, sizeof *all);
    if (g.off[g.ndeltas]) memcpy(all, v, g.off[g.ndeltas] * sizeof *v);
    if (n) memcpy(all + g.off[g.ndeltas], d, n * sizeof *d);
    g.off[g.ndeltas + 1] = total;
    g.ndeltas++;
    luaL_buffinit(L, &b);
    put_segment(&b, g.blocks, g.nblocks, all, g.off, g.ndeltas);
    luaL_pushresult(&b);
    lua_pushinteger(L, (lua_Integer)g.ndeltas - 1);
    return 2;
}

/* state.assemble(block_blobs, segment_blobs, slots) -> state, base, decoded
 *   | nil, message, "bad_state_blob"
 * base = the blocks merged in order (later override earlier, removals
 * dropped); state = base with the deltas 0..slots[i] of every segment applied
 * in order. Only the first segment may list blocks (the caller fetched them). decoded = entries decoded from the blocks (the overhead of
 * overridden entries is decoded - #base). */
static int l_assemble(lua_State *L)
{
    size_t nb, ns, i, j, total = 0, pos = 0, nruns = 0, decoded;
    triple_t *v, *tmp;
    run_t *runs, base, d;
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TTABLE);
    nb = (size_t)lua_rawlen(L, 1);
    ns = (size_t)lua_rawlen(L, 2);
    luaL_argcheck(L, (size_t)lua_rawlen(L, 3) == ns, 3, "one slot per segment");
    /* sizes first: block headers, segment capacities */
    for (i = 0; i < nb; i++) {
        size_t len;
        const char *s;
        reader_t r;
        if (lua_rawgeti(L, 1, (lua_Integer)i + 1) != LUA_TSTRING)
            luaL_argerror(L, 1, "block blobs are strings");
        s = lua_tolstring(L, -1, &len);
        reader_init(&r, s, len);
        total += (size_t)rd_block_header(&r);
        lua_pop(L, 1);
        if (r.err) return loom_fail(L, BAD_BLOB, "bad state block %I: %s", (lua_Integer)i + 1, r.err);
    }
    for (i = 0; i < ns; i++) {
        size_t len;
        if (lua_rawgeti(L, 2, (lua_Integer)i + 1) != LUA_TSTRING)
            luaL_argerror(L, 2, "segment blobs are strings");
        lua_tolstring(L, -1, &len);
        total += segment_capacity(len);
        lua_pop(L, 1);
        lua_rawgeti(L, 3, (lua_Integer)i + 1);
        if (!lua_isinteger(L, -1)) luaL_argerror(L, 3, "slots are integers");
        lua_pop(L, 1);
    }
    v = (triple_t *)scratch(L, total, sizeof *v);
    tmp = (triple_t *)scratch(L, total, sizeof *v);
    runs = (run_t *)scratch(L, nb + ns * MAX_DELTAS, sizeof *runs);
    /* the blocks, one run each */
    for (i = 0; i < nb; i++) {
        size_t len;
        const char *s;
        reader_t r;
        uint64_t n;
        int64_t prev_e = 0;
        lua_rawgeti(L, 1, (lua_Integer)i + 1);
        s = lua_tolstring(L, -1, &len);
        reader_init(&r, s, len);
        n = rd_block_header(&r);
        rd_entries(&r, v + pos, n, &prev_e);
        rd_end(&r);
        lua_pop(L, 1);
        if (r.err) return loom_fail(L, BAD_BLOB, "bad state block %I: %s", (lua_Integer)i + 1, r.err);
        runs[nruns].off = pos;
        runs[nruns].len = (size_t)n;
        nruns++;
        pos += (size_t)n;
    }
    base = merge_runs(v, tmp, runs, nruns);
    base.len = drop_removed(v + base.off, base.len);
    /* the deltas, one run each */
    decoded = pos;
    nruns = 0;
    for (i = 0; i < ns; i++) {
        size_t len;
        const char *s;
        reader_t r;
        segment_t g;
        lua_Integer slot;
        lua_rawgeti(L, 2, (lua_Integer)i + 1);
        s = lua_tolstring(L, -1, &len);
        reader_init(&r, s, len);
        rd_segment(&r, &g, v + pos);
        lua_pop(L, 1);
        if (r.err) return loom_fail(L, BAD_BLOB, "bad state segment %I: %s", (lua_Integer)i + 1, r.err);
        if (i > 0 && g.nblocks > 0)
            return loom_fail(L, BAD_BLOB, "bad state segment %I: only the first segment lists blocks",
                             (lua_Integer)i + 1);
        lua_rawgeti(L, 3, (lua_Integer)i + 1);
        slot = lua_tointeger(L, -1);
        lua_pop(L, 1);
        if (slot < 0 || (size_t)slot >= g.ndeltas)
            return loom_fail(L, BAD_BLOB, "bad state segment %I: slot %I out of range",
                             (lua_Integer)i + 1, slot);
        for (j = 0; j <= (size_t)slot; j++) {
            runs[nruns].off = pos + g.off[j];
            runs[nruns].len = g.off[j + 1] - g.off[j];
            nruns++;
        }
        pos += g.off[g.ndeltas];
    }
    d = merge_runs(v, tmp, runs, nruns);
    /* state = base overridden by the deltas */
    j = merge_over(tmp, v + base.off, base.len, v + d.off, d.len);
    j = drop_removed(tmp, j);
    push_state(L, tmp, j);
    push_state(L, v + base.off, base.len);
    lua_pushinteger(L, (lua_Integer)decoded);
    return 3;
}

/* ---- module functions: hash buckets ------------------------------------- */

static int rd_bucket_entry(reader_t *r, uint32_t *hi, int64_t *nid)
{
    uint64_t x;
    if (rd_left(r) < 3) { rd_fail(r, "truncated bucket entry"); return 0; }
    *hi = ((uint32_t)r->p[0] << 16) | ((uint32_t)r->p[1] << 8) | r->p[2];
    r->p += 3;
    x = rd_varint(r);
    if (!r->err && (x < 1 || x > (uint64_t)INT64_MAX)) rd_fail(r, "snapshot NID out of range");
    *nid = (int64_t)x;
    return r->err == NULL;
}

static void put_bucket_entry(luaL_Buffer *b, uint32_t h, int64_t nid)
{
    luaL_addchar(b, (char)(unsigned char)(h >> 24));
    luaL_addchar(b, (char)(unsigned char)(h >> 16));
    luaL_addchar(b, (char)(unsigned char)(h >> 8));
    put_varint(b, (uint64_t)nid);
}

static uint32_t check_hash32(lua_State *L, int i)
{
    int64_t h = check_int(L, i);
    luaL_argcheck(L, h >= 0 && h <= INT64_C(0xffffffff), i, "hash must be 0 to 2^32-1");
    return (uint32_t)h;
}

/* state.bucket_add(blob|nil, hash32, nid) -> blob, entries | nil, msg, code */
static int l_bucket_add(lua_State *L)
{
    size_t len = 0;
    const char *s = lua_isnil(L, 1) ? "" : luaL_checklstring(L, 1, &len);
    uint32_t h = check_hash32(L, 2);
    int64_t nid = check_int(L, 3);
    lua_Integer n = 0;
    reader_t r;
    luaL_Buffer b;
    luaL_argcheck(L, nid >= 1, 3, "snapshot NID must be at least 1");
    reader_init(&r, s, len);
    while (r.p < r.end) {
        uint32_t hi;
        int64_t x;
        if (!rd_bucket_entry(&r, &hi, &x)) return loom_fail(L, BAD_BLOB, "bad hash bucket: %s", r.err);
        n++;
    }
    luaL_buffinit(L, &b);
    luaL_addlstring(&b, s, len);
    put_bucket_entry(&b, h, nid);
    luaL_pushresult(&b);
    lua_pushinteger(L, n + 1);
    return 2;
}

/* state.bucket_find(blob, hash32) -> array of snapshot NIDs | nil, msg, code */
static int l_bucket_find(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    uint32_t h = check_hash32(L, 2) >> 8;
    lua_Integer n = 0;
    reader_t r;
    lua_newtable(L);
    reader_init(&r, s, len);
    while (r.p < r.end) {
        uint32_t hi;
        int64_t nid;
        if (!rd_bucket_entry(&r, &hi, &nid)) return loom_fail(L, BAD_BLOB, "bad hash bucket: %s", r.err);
        if (hi == h) {
            lua_pushinteger(L, nid);
            lua_rawseti(L, -2, ++n);
        }
    }
    return 1;
}

/* state.bucket_split(blob, bit) -> entries whose hash has bit clear, entries
 * with it set | nil, msg, code. 8 <= bit <= 31. */
static int l_bucket_split(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    int64_t bit = check_int(L, 2);
    reader_t r;
    luaL_Buffer b;
    int pass;
    luaL_argcheck(L, bit >= 8 && bit <= 31, 2, "bit must be 8 to 31");
    for (pass = 0; pass < 2; pass++) {
        reader_init(&r, s, len);
        luaL_buffinit(L, &b);
        while (r.p < r.end) {
            uint32_t hi;
            int64_t nid;
            if (!rd_bucket_entry(&r, &hi, &nid)) {
                luaL_pushresult(&b);
                return loom_fail(L, BAD_BLOB, "bad hash bucket: %s", r.err);
            }
            if ((int)((hi >> (bit - 8)) & 1u) == pass) put_bucket_entry(&b, hi << 8, nid);
        }
        luaL_pushresult(&b);
    }
    return 2;
}

/* ---- registration ------------------------------------------------------- */

static const luaL_Reg state_methods[] = {
    {"get", st_get},
    {"entries", st_entries},
    {"triples", st_triples},
    {"by_type", st_by_type},
    {"diff", st_diff},
    {"delta", st_delta},
    {"apply", st_apply},
    {"hash", st_hash},
    {"chunks", st_chunks},
    {NULL, NULL}
};

static const luaL_Reg state_meta[] = {
    {"__len", st_len},
    {"__eq", st_eq},
    {"__tostring", st_tostring},
    {NULL, NULL}
};

static const luaL_Reg funcs[] = {
    {"new", l_new},
    {"encode_block", l_encode_block},
    {"decode_block", l_decode_block},
    {"blob_hash", l_blob_hash},
    {"encode_segment", l_encode_segment},
    {"decode_segment", l_decode_segment},
    {"segment_info", l_segment_info},
    {"segment_append", l_segment_append},
    {"assemble", l_assemble},
    {"bucket_add", l_bucket_add},
    {"bucket_find", l_bucket_find},
    {"bucket_split", l_bucket_split},
    {NULL, NULL}
};

void loom_open_state(lua_State *L)
{
    loom_new_type(L, STATE_MT, state_methods, state_meta);
    luaL_newlib(L, funcs);
    lua_pushinteger(L, MAX_BLOCKS);
    lua_setfield(L, -2, "MAX_BLOCKS");
    lua_pushinteger(L, MAX_DELTAS);
    lua_setfield(L, -2, "MAX_DELTAS");
    lua_setfield(L, -2, "state");
}
