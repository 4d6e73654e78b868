/* loom.core.stateres: the graph work of state resolution v2 and v2.1.
 *
 * A loom.StateGraph holds events as integer nodes (1..n) with their
 * auth_events edges. Event IDs are interned in C (a keyed open-addressing
 * table over the ID bytes), so the Lua driver hands over whole batches:
 *
 *   local g = core.stateres.graph()
 *   local idx = g:intern({ "$a", "$b" })        -- node indices, new nodes unloaded
 *   local frontier, ids = g:unloaded(idx)           -- unloaded nodes reachable from idx
 *   frontier, ids = g:load(frontier, events)             -- their edges; the next frontier
 *   g:difference({ set1, set2 }, common)        -- auth difference, sorted nodes
 *
 * Every query takes arrays of node indices and returns a new array; nothing
 * calls back into Lua. Results that are sets come back sorted by node index;
 * orderings (order, mainline) are total orders that do not depend on the
 * numbering: ties end on the event ID bytes.
 *
 * Expected failures return nil, message, code: "missing_event" when a query
 * needs the edges of a node that was never loaded, "bad_event" when a loaded
 * event is not the one asked for or its auth_events is not an array of
 * strings, "auth_cycle" when an ordering meets a cycle (impossible with hash
 * event IDs, possible with made-up ones). Misuse (bad node index, wrong
 * types) raises.
 *
 * Memory: the node, edge, ID and hash arrays belong to the userdata and are
 * grown with the state's allocator (freed by close/__gc); the first Lua
 * string seen for each ID is kept in the uservalue so IDs go back to Lua
 * without copies; per-call scratch is lua_newuserdatauv buffers, so a raise
 * mid-call leaks nothing. The ID hash is keyed per graph (address and clock
 * bits), so crafted IDs cannot be aimed at one probe sequence.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loom.h"

#define GRAPH_MT "loom.StateGraph"

#define F_LOADED 1u   /* auth edges known */
#define F_POWER  2u   /* the event is m.room.power_levels with state_key "" */

#define NODE_LIMIT  0x7ffffff0u
#define POS_INF     INT64_MAX
#define IN_PROGRESS INT64_MIN

typedef struct {
    uint64_t hash;
    int64_t aux;           /* per-query scratch (mainline values) */
    uint32_t id_off, id_len;
    uint32_t edge_off, edge_cnt;
    uint32_t mark, mark2;  /* per-query stamps, compared with gen / gen2 */
    uint32_t loc;          /* per-query local index */
    unsigned char flags;
} node_t;

/* A hash slot carries what a lookup compares, so that a probe touches the
 * slot and the ID bytes only, not the node. */
typedef struct {
    uint32_t node, tag;    /* tag: the high half of the ID's hash */
    uint32_t id_off, id_len;
} slot_t;

typedef struct {
    lua_Alloc alloc;
    void *aud;
    node_t *nodes;         /* nodes[1..n]; nodes[0] unused */
    uint32_t n, cap;       /* cap: allocated slots including slot 0 */
    char *arena;
    size_t arena_len, arena_cap;
    uint32_t *edges;
    size_t nedges, edges_cap;
    slot_t *table;         /* open addressing; node 0 = empty */
    size_t tcap;           /* power of two, or 0 */
    uint64_t seed;
    uint32_t gen, gen2;
    int closed;
} graph_t;

typedef struct {
    int64_t a, b;          /* ordered: a descending, then b ascending, then ID */
    uint32_t node;
} item_t;

/* ---- memory ------------------------------------------------------------ */

static void *g_resize(lua_State *L, graph_t *g, void *p, size_t old_n, size_t new_n, size_t size)
{
    void *q;
    if (new_n > ((size_t)-1) / size) luaL_error(L, "state graph too large");
    q = g->alloc(g->aud, p, p ? old_n * size : 0, new_n * size);
    if (q == NULL && new_n > 0) luaL_error(L, "not enough memory for the state graph");
    return q;
}

static void g_release(graph_t *g)
{
    if (g->nodes) g->alloc(g->aud, g->nodes, (size_t)g->cap * sizeof(node_t), 0);
    if (g->arena) g->alloc(g->aud, g->arena, g->arena_cap, 0);
    if (g->edges) g->alloc(g->aud, g->edges, g->edges_cap * sizeof(uint32_t), 0);
    if (g->table) g->alloc(g->aud, g->table, g->tcap * sizeof(slot_t), 0);
    g->nodes = NULL;
    g->arena = NULL;
    g->edges = NULL;
    g->table = NULL;
    g->n = g->cap = 0;
    g->arena_len = g->arena_cap = g->nedges = g->edges_cap = g->tcap = 0;
    g->closed = 1;
}

/* Per-call scratch: an uninitialised (or zeroed) buffer of n elements left on
 * the stack, collected with the call's other garbage. */
static void *scratch(lua_State *L, size_t n, size_t size, int zero)
{
    void *p;
    if (n == 0) n = 1;
    if (n > ((size_t)-1) / size) luaL_error(L, "state graph query too large");
    p = lua_newuserdatauv(L, n * size, 0);
    if (zero) memset(p, 0, n * size);
    return p;
}

static void ensure_nodes(lua_State *L, graph_t *g, size_t need)
{
    size_t cap;
    if (need < g->cap) return;
    if (need > NODE_LIMIT) luaL_error(L, "state graph too large");
    cap = g->cap < 64 ? 64 : (size_t)g->cap * 2;
    while (cap <= need) cap *= 2;
    if (cap > NODE_LIMIT + 1) cap = NODE_LIMIT + 1;
    g->nodes = (node_t *)g_resize(L, g, g->nodes, g->cap, cap, sizeof(node_t));
    memset(g->nodes + g->cap, 0, (cap - g->cap) * sizeof(node_t));
    g->cap = (uint32_t)cap;
}

static void ensure_arena(lua_State *L, graph_t *g, size_t more)
{
    size_t need = g->arena_len + more, cap;
    if (more > UINT32_MAX || need > UINT32_MAX) luaL_error(L, "state graph too large");
    if (need <= g->arena_cap && g->arena != NULL) return;  /* never NULL once used: memcmp */
    cap = g->arena_cap < 4096 ? 4096 : g->arena_cap * 2;
    while (cap < need) cap *= 2;
    g->arena = (char *)g_resize(L, g, g->arena, g->arena_cap, cap, 1);
    g->arena_cap = cap;
}

static void ensure_edges(lua_State *L, graph_t *g, size_t more)
{
    size_t need = g->nedges + more, cap;
    if (more > UINT32_MAX || need > UINT32_MAX) luaL_error(L, "state graph too large");
    if (need <= g->edges_cap) return;
    cap = g->edges_cap < 256 ? 256 : g->edges_cap * 2;
    while (cap < need) cap *= 2;
    g->edges = (uint32_t *)g_resize(L, g, g->edges, g->edges_cap, cap, sizeof(uint32_t));
    g->edges_cap = cap;
}

/* ---- interning --------------------------------------------------------- */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= UINT64_C(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x *= UINT64_C(0xc4ceb9fe1a85ec53);
    x ^= x >> 33;
    return x;
}

static uint64_t hash_id(uint64_t seed, const char *s, size_t len)
{
    uint64_t h = seed ^ ((uint64_t)len * UINT64_C(0x9e3779b97f4a7c15));
    uint64_t w;
    while (len >= 8) {
        memcpy(&w, s, 8);
        h = mix64(h ^ w) + UINT64_C(0x9e3779b97f4a7c15);
        s += 8;
        len -= 8;
    }
    w = 0;
    memcpy(&w, s, len);
    return mix64(h ^ w ^ ((uint64_t)len << 56));
}

static void rehash(lua_State *L, graph_t *g, size_t tcap)
{
    slot_t *t = (slot_t *)g_resize(L, g, NULL, 0, tcap, sizeof(slot_t));
    uint32_t v;
    size_t mask = tcap - 1;
    memset(t, 0, tcap * sizeof(slot_t));
    for (v = 1; v <= g->n; v++) {
        const node_t *nd = &g->nodes[v];
        size_t i = (size_t)nd->hash & mask;
        while (t[i].node) i = (i + 1) & mask;
        t[i].node = v;
        t[i].tag = (uint32_t)(nd->hash >> 32);
        t[i].id_off = nd->id_off;
        t[i].id_len = nd->id_len;
    }
    if (g->table) g->alloc(g->aud, g->table, g->tcap * sizeof(slot_t), 0);
    g->table = t;
    g->tcap = tcap;
}

/* The node of an ID, or 0. */
static uint32_t find_id(const graph_t *g, const char *s, size_t len, uint64_t h)
{
    size_t i, mask;
    uint32_t tag = (uint32_t)(h >> 32);
    if (g->tcap == 0) return 0;
    mask = g->tcap - 1;
    for (i = (size_t)h & mask; g->table[i].node; i = (i + 1) & mask) {
        const slot_t *sl = &g->table[i];
        if (sl->tag == tag && sl->id_len == len && memcmp(g->arena + sl->id_off, s, len) == 0)
            return sl->node;
    }
    return 0;
}

/* The node of the ID string at stack index sidx, created (unloaded) when new.
 * Methods have the graph at index 1; a new node's string is anchored in its
 * uservalue so that IDs go back to Lua without new strings. Capacity is
 * reserved before anything changes, so a memory error leaves the graph
 * consistent. */
static uint32_t intern(lua_State *L, graph_t *g, int sidx)
{
    size_t len, i, mask;
    const char *s = lua_tolstring(L, sidx, &len);
    uint64_t h = hash_id(g->seed, s, len);
    uint32_t v = find_id(g, s, len, h);
    node_t *nd;
    if (v) return v;
    sidx = lua_absindex(L, sidx);
    ensure_nodes(L, g, (size_t)g->n + 1);
    ensure_arena(L, g, len);
    if (((size_t)g->n + 1) * 2 > g->tcap) rehash(L, g, g->tcap ? g->tcap * 2 : 1024);
    v = ++g->n;
    nd = &g->nodes[v];
    memset(nd, 0, sizeof *nd);
    nd->hash = h;
    nd->id_off = (uint32_t)g->arena_len;
    nd->id_len = (uint32_t)len;
    memcpy(g->arena + g->arena_len, s, len);
    g->arena_len += len;
    mask = g->tcap - 1;
    for (i = (size_t)h & mask; g->table[i].node; i = (i + 1) & mask) {}
    g->table[i].node = v;
    g->table[i].tag = (uint32_t)(h >> 32);
    g->table[i].id_off = nd->id_off;
    g->table[i].id_len = nd->id_len;
    lua_getiuservalue(L, 1, 1);
    lua_pushvalue(L, sidx);
    lua_rawseti(L, -2, (lua_Integer)v);
    lua_pop(L, 1);
    return v;
}

static int id_cmp(const graph_t *g, uint32_t x, uint32_t y)
{
    const node_t *a = &g->nodes[x], *b = &g->nodes[y];
    size_t la = a->id_len, lb = b->id_len;
    int c = memcmp(g->arena + a->id_off, g->arena + b->id_off, la < lb ? la : lb);
    if (c) return c;
    return la < lb ? -1 : (la > lb ? 1 : 0);
}

/* Pushes the ID of node v: the anchored string (anchors: the stack index of
 * the graph's anchor table, or 0 to look it up), else a copy of its bytes. */
static void push_id_from(lua_State *L, const graph_t *g, int anchors, uint32_t v)
{
    if (anchors == 0) {
        lua_getiuservalue(L, 1, 1);
        if (lua_rawgeti(L, -1, (lua_Integer)v) != LUA_TSTRING) {
            lua_pop(L, 1);
            lua_pushlstring(L, g->arena + g->nodes[v].id_off, g->nodes[v].id_len);
        }
        lua_remove(L, -2);
        return;
    }
    if (lua_rawgeti(L, anchors, (lua_Integer)v) != LUA_TSTRING) {
        lua_pop(L, 1);
        lua_pushlstring(L, g->arena + g->nodes[v].id_off, g->nodes[v].id_len);
    }
}

static void push_id(lua_State *L, const graph_t *g, uint32_t v)
{
    push_id_from(L, g, 0, v);
}

/* Pushes the graph's anchor table (methods: the graph is at index 1) and
 * returns its stack index. */
static int anchors_of(lua_State *L)
{
    lua_getiuservalue(L, 1, 1);
    return lua_gettop(L);
}

/* ---- stamps ------------------------------------------------------------ */

static void new_gen(graph_t *g)
{
    uint32_t v;
    if (++g->gen == 0) {
        for (v = 0; v < g->cap; v++) g->nodes[v].mark = 0;
        g->gen = 1;
    }
}

static void new_gen2(graph_t *g)
{
    uint32_t v;
    if (++g->gen2 == 0) {
        for (v = 0; v < g->cap; v++) g->nodes[v].mark2 = 0;
        g->gen2 = 1;
    }
}

/* ---- argument helpers ---------------------------------------------------- */

static graph_t *check_graph(lua_State *L, int i)
{
    graph_t *g = (graph_t *)luaL_checkudata(L, i, GRAPH_MT);
    luaL_argcheck(L, !g->closed, i, "state graph is closed");
    return g;
}

static size_t array_len(lua_State *L, int i)
{
    lua_Unsigned n;
    luaL_checktype(L, i, LUA_TTABLE);
    n = lua_rawlen(L, i);
    if (n > NODE_LIMIT) luaL_argerror(L, i, "array too long");
    return (size_t)n;
}

/* t[k] of the table at index t as a node index of g (raises otherwise). */
static uint32_t node_at(lua_State *L, const graph_t *g, int t, size_t k, int arg)
{
    int ok;
    lua_Integer v;
    lua_rawgeti(L, t, (lua_Integer)k);
    v = lua_tointegerx(L, -1, &ok);
    lua_pop(L, 1);
    if (!ok || v < 1 || (lua_Unsigned)v > g->n)
        luaL_error(L, "bad argument #%d: entry %d is not a node index of this graph", arg, (int)k);
    return (uint32_t)v;
}

/* t[k] as an int64 ordering key: an integer, or +-math.huge for the extremes. */
static int64_t key_at(lua_State *L, int t, size_t k, int arg)
{
    int64_t v;
    lua_rawgeti(L, t, (lua_Integer)k);
    if (lua_isinteger(L, -1)) {
        v = (int64_t)lua_tointeger(L, -1);
    } else if (lua_type(L, -1) == LUA_TNUMBER && isinf(lua_tonumber(L, -1))) {
        v = lua_tonumber(L, -1) > 0 ? INT64_MAX : INT64_MIN;
    } else {
        return luaL_error(L, "bad argument #%d: entry %d is not an integer", arg, (int)k);
    }
    lua_pop(L, 1);
    return v;
}

/* Reads the array at index t as node indices into a scratch buffer (pushed). */
static uint32_t *read_nodes(lua_State *L, const graph_t *g, int t, size_t *count)
{
    size_t n = array_len(L, t), k;
    uint32_t *out = (uint32_t *)scratch(L, n, sizeof(uint32_t), 0);
    for (k = 0; k < n; k++) out[k] = node_at(L, g, t, k + 1, t);
    *count = n;
    return out;
}

static int fail_missing(lua_State *L, const graph_t *g, uint32_t v)
{
    push_id(L, g, v);
    return loom_fail(L, "missing_event", "event %s is not loaded into the state graph",
                     lua_tostring(L, -1));
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : (x > y ? 1 : 0);
}

/* Pushes arr[0..n) sorted ascending as a Lua array (sorts arr in place). */
static void push_sorted(lua_State *L, uint32_t *arr, size_t n)
{
    size_t k;
    qsort(arr, n, sizeof *arr, cmp_u32);
    lua_createtable(L, (int)n, 0);
    for (k = 0; k < n; k++) {
        lua_pushinteger(L, (lua_Integer)arr[k]);
        lua_rawseti(L, -2, (lua_Integer)k + 1);
    }
}

/* ---- ordering ------------------------------------------------------------ */

static int item_before(const graph_t *g, const item_t *x, const item_t *y)
{
    if (x->a != y->a) return x->a > y->a;
    if (x->b != y->b) return x->b < y->b;
    return id_cmp(g, x->node, y->node) < 0;
}

static void sort_items(const graph_t *g, item_t *it, item_t *tmp, size_t n)
{
    size_t width, lo;
    item_t *src = it, *dst = tmp, *sw;
    for (width = 1; width < n; width *= 2) {
        for (lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n;
            size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) dst[k++] = item_before(g, &src[j], &src[i]) ? src[j++] : src[i++];
            while (i < mid) dst[k++] = src[i++];
            while (j < hi) dst[k++] = src[j++];
        }
        sw = src; src = dst; dst = sw;
    }
    if (src != it) memcpy(it, src, n * sizeof *it);
}

static void heap_push(const graph_t *g, item_t *h, size_t *n, item_t x)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!item_before(g, &x, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

static item_t heap_pop(const graph_t *g, item_t *h, size_t *n)
{
    item_t top = h[0], x = h[--(*n)];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && item_before(g, &h[c + 1], &h[c])) c++;
        if (!item_before(g, &h[c], &x)) break;
        h[i] = h[c];
        i = c;
    }
    if (m > 0) h[i] = x;
    return top;
}

/* ---- construction ---------------------------------------------------------- */

/* stateres.graph() -> an empty loom.StateGraph */
static int l_graph(lua_State *L)
{
    graph_t *g = (graph_t *)lua_newuserdatauv(L, sizeof *g, 1);
    uint64_t seed;
    memset(g, 0, sizeof *g);
    g->alloc = lua_getallocf(L, &g->aud);
    luaL_setmetatable(L, GRAPH_MT);
    lua_newtable(L);
    lua_setiuservalue(L, -2, 1);
    seed = (uint64_t)(uintptr_t)g ^ ((uint64_t)time(NULL) << 20) ^ (uint64_t)clock();
    seed ^= (uint64_t)(uintptr_t)&seed << 7;
    g->seed = mix64(seed + UINT64_C(0x9e3779b97f4a7c15));
    return 1;
}

/* stateres.is_graph(v) -> is v a loom.StateGraph (open or closed)? */
static int l_is_graph(lua_State *L)
{
    lua_pushboolean(L, luaL_testudata(L, 1, GRAPH_MT) != NULL);
    return 1;
}

/* g:intern(ids) -> array of node indices, one per ID (new IDs become
 * unloaded nodes). */
static int g_intern(lua_State *L)
{
    graph_t *g = check_graph(L, 1);
    size_t n = array_len(L, 2), k;
    lua_createtable(L, (int)n, 0);
    for (k = 1; k <= n; k++) {
        if (lua_rawgeti(L, 2, (lua_Integer)k) != LUA_TSTRING)
            return luaL_error(L, "bad argument #2 to 'intern' (entry %d is not a string)", (int)k);
        lua_pushinteger(L, (lua_Integer)intern(L, g, -1));
        lua_rawseti(L, -3, (lua_Integer)k);
        lua_pop(L, 1);
    }
    return 1;
}

/* g:find(id) -> node index, or nil when the graph does not know the ID. */
static int g_find(lua_State *L)
{
    graph_t *g = check_graph(L, 1);
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    uint32_t v = find_id(g, s, len, hash_id(g->seed, s, len));
    if (v) lua_pushinteger(L, (lua_Integer)v);
    else lua_pushnil(L);
    return 1;
}

/* g:id(i) -> the event ID of node i */
static int g_id(lua_State *L)
{
    graph_t *g = check_graph(L, 1);
    lua_Integer i = luaL_checkinteger(L, 2);
    luaL_argcheck(L, i >= 1 && (lua_Unsigned)i <= g->n, 2, "not a node index of this graph");
    push_id(L, g, (uint32_t)i);
    return 1;
}

/* g:ids(nodes [, sorted]) -> array of the event IDs of the nodes; with
 * sorted, in byte order of the IDs (whatever the C locale). */
static int g_ids(lua_State *L)
{
    graph_t *g = check_graph(L, 1);
    size_t n = array_len(L, 2), k;
    int sorted = lua_toboolean(L, 3), anchors;
    item_t *it = NULL;
    if (sorted) {
        it = (item_t *)scratch(L, n, sizeof(item_t), 1);
        for (k = 0; k < n; k++) it[k].node = node_at(L, g, 2, k + 1, 2);
        sort_items(g, it, (item_t *)scratch(L, n, sizeof(item_t), 0), n);
    }
    anchors = anchors_of(L);
    lua_createtable(L, (int)n, 0);
    for (k = 1; k <= n; k++) {
        push_id_from(L, g, anchors, sorted ? it[k - 1].node : node_at(L, g, 2, k, 2));
        lua_rawseti(L, -2, (lua_Integer)k);
    }
    return 1;
}

/* g:loaded(i) -> boolean */
static int g_loaded(lua_State *L)
{
    graph_t *g = check_graph(L, 1);
    lua_Integer i = luaL_checkinteger(L, 2);
    luaL_argcheck(L, i >= 1 && (lua_Unsigned)i <= g->n, 2, "not a node index of this graph");
    lua_pushboolean(L, (g->nodes[i].flags & F_LOADED) != 0);
    return 1;
}

/* g:auth(i) -> array of the auth-event nodes of node i (in auth_events order),
 * or nil when i is not loaded. */
static int g_auth(lua_State *L)
{
    graph_t *g = check_graph(L, 1);
    lua_Integer i = luaL_checkinteger(L, 2);
    const node_t *nd;
    uint32_t k;
    luaL_argcheck(L, i >= 1 && (lua_Unsigned)i <= g->n, 2, "not a node index of this graph");
    nd = &g->nodes[i];
    if (!(nd->flags & F_LOADED)) {
        lua_pushnil(L);
        return 1;
    }
    lua_createtable(L, (int)nd->edge_cnt, 0);
    for (k = 0; k < nd->edge_cnt; k++) {
        lua_pushinteger(L, (lua_Integer)g->edges[nd->edge_off + k]);
        lua_rawseti(L, -2, (lua_Integer)k + 1);
    }
    return 1;
}

/* Pushes two parallel arrays: the nodes list[0..n) and their IDs. */
static int push_frontier(lua_State *L, const graph_t *g, const uint32_t *list, size_t n)
{
    size_t k;
    int anchors = anchors_of(L);
    lua_createtable(L, (int)n, 0);
    lua_createtable(L, (int)n, 0);
    for (k = 0; k < n; k++) {
        lua_pushinteger(L, (lua_Integer)list[k]);
        lua_rawseti(L, -3, (lua_Integer)k + 1);
        push_id_from(L, g, anchors, list[k]);
        lua_rawseti(L, -2, (lua_Integer)k + 1);
    }
    return 2;
}

/* g:unloaded(starts, ...) -> nodes, ids: the unloaded nodes reachable from
 * the nodes of the given arrays (starts included) through loaded nodes, in
 * breadth-first order. */
static int g_unloaded(lua_State *L)
{
    graph_t *g = check_graph(L, 1);
    int top = lua_gettop(L), a;
    size_t head, nq = 0, nout = 0, k, m;
    uint32_t *queue, *out;
    for (a = 2; a <= top; a++) array_len(L, a);
    queue = (uint32_t *)scratch(L, g->n, sizeof(uint32_t), 0);
    out = (uint32_t *)scratch(L, g->n, sizeof(uint32_t), 0);
    new_gen(g);
    for (a = 2; a <= top; a++) {
        m = (size_t)lua_rawlen(L, a);
        for (k = 1; k <= m; k++) {
            uint32_t v = node_at(L, g, a, k, a);
            if (g->nodes[v].mark == g->gen) continue;
            g->nodes[v].mark = g->gen;
            queue[nq++] = v;
        }
    }
    for (head = 0; head < nq; head++) {
        uint32_t v = queue[head];
        const node_t *nd = &g->nodes[v];
        if (!(nd->flags & F_LOADED)) {
            out[nout++] = v;
            continue;
        }
        for (k = 0; k < nd->edge_cnt; k++) {
            uint32_t t = g->edges[nd->edge_off + k];
            if (g->nodes[t].mark == g->gen) continue;
            g->nodes[t].mark = g->gen;
            queue[nq++] = t;
        }
    }
    return push_frontier(L, g, out, nout);
}

/* Checks the event table at index ev for node v: its event_id is v's ID and
 * its auth_events an array of strings, which is left on the stack. Returns
 * the number of auth events, or -1 with nil, message, "bad_event" pushed. */
static long check_event(lua_State *L, const graph_t *g, uint32_t v, int ev)
{
    const node_t *nd = &g->nodes[v];
    size_t len, cnt, j;
    const char *s;
    if (!lua_istable(L, ev)) {
        push_id(L, g, v);
        loom_fail(L, "bad_event", "the event fetched for %s is not a table", lua_tostring(L, -1));
        return -1;
    }
    lua_getfield(L, ev, "event_id");
    s = lua_tolstring(L, -1, &len);
    if (lua_type(L, -1) != LUA_TSTRING || len != nd->id_len || memcmp(s, g->arena + nd->id_off, len) != 0) {
        push_id(L, g, v);
        loom_fail(L, "bad_event", "the event fetched for %s has another event_id", lua_tostring(L, -1));
        return -1;
    }
    lua_pop(L, 1);
    if (lua_getfield(L, ev, "auth_events") != LUA_TTABLE) {
        push_id(L, g, v);
        loom_fail(L, "bad_event", "event %s has no auth_events array", lua_tostring(L, -1));
        return -1;
    }
    cnt = (size_t)lua_rawlen(L, -1);
    for (j = 1; j <= cnt; j++) {
        int ty = lua_rawgeti(L, -1, (lua_Integer)j);
        lua_pop(L, 1);
        if (ty != LUA_TSTRING) {
            push_id(L, g, v);
            loom_fail(L, "bad_event", "auth_events of %s: entry %d is not a string",
                      lua_tostring(L, -1), (int)j);
            return -1;
        }
    }
    if (cnt > UINT32_MAX) luaL_error(L, "state graph too large");
    return (long)cnt;
}

/* Is the event table at index ev an m.room.power_levels event with state_key ""? */
static int is_power_levels(lua_State *L, int ev)
{
    size_t len;
    const char *t;
    int yes = 0;
    lua_getfield(L, ev, "type");
    t = lua_tolstring(L, -1, &len);
    if (lua_type(L, -1) == LUA_TSTRING && len == 19 && memcmp(t, "m.room.power_levels", 19) == 0) {
        lua_getfield(L, ev, "state_key");
        t = lua_tolstring(L, -1, &len);
        yes = lua_type(L, -1) == LUA_TSTRING && len == 0;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return yes;
}

/* g:load(nodes, events) -> nodes, ids
 * Sets the auth edges of each unloaded node from events[k], the event table
 * of nodes[k] (its event_id must be the node's ID; its auth_events an array
 * of event ID strings), and notes m.room.power_levels events (state_key "")
 * for the mainline. Nodes already loaded are left as they are (events never
 * change). Returns the auth-event nodes still unloaded afterwards, each once:
 * the next batch to fetch. nil, message, "bad_event" when an event does not
 * fit (the nodes before it in the batch stay loaded). */
static int g_load(lua_State *L)
{
    graph_t *g = check_graph(L, 1);
    size_t n, k, j, nout = 0, first_edge;
    uint32_t *list = read_nodes(L, g, 2, &n);
    uint32_t *out;
    int top;
    if (lua_type(L, 3) != LUA_TTABLE || (size_t)lua_rawlen(L, 3) != n)
        return luaL_argerror(L, 3, "array of event tables, one per node, expected");
    first_edge = g->nedges;
    top = lua_gettop(L);
    for (k = 0; k < n; k++) {
        uint32_t v = list[k];
        long cnt;
        unsigned flags;
        if (g->nodes[v].flags & F_LOADED) continue;
        lua_rawgeti(L, 3, (lua_Integer)k + 1);
        cnt = check_event(L, g, v, top + 1);
        if (cnt < 0) return 3;
        flags = is_power_levels(L, top + 1) ? F_POWER : 0;
        ensure_edges(L, g, (size_t)cnt);
        for (j = 0; j < (size_t)cnt; j++) {
            uint32_t t;
            lua_rawgeti(L, top + 2, (lua_Integer)j + 1);
            t = intern(L, g, -1);
            lua_pop(L, 1);
            g->edges[g->nedges + j] = t;
        }
        lua_settop(L, top);
        g->nodes[v].edge_off = (uint32_t)g->nedges;
        g->nodes[v].edge_cnt = (uint32_t)cnt;
        g->nodes[v].flags = (unsigned char)(F_LOADED | flags);
        g->nedges += (size_t)cnt;
    }
    /* the frontier: targets of the new edges still unloaded, each once */
    out = (uint32_t *)scratch(L, g->nedges - first_edge, sizeof(uint32_t), 0);
    new_gen(g);
    for (j = first_edge; j < g->nedges; j++) {
        uint32_t t = g->edges[j];
        if ((g->nodes[t].flags & F_LOADED) || g->nodes[t].mark == g->gen) continue;
        g->nodes[t].mark = g->gen;
        out[nout++] = t;
    }
    return push_frontier(L, g, out, nout);
}

/* g:separate(state_sets [, copy]) -> conflicted, common, per_set,
 *                                    conflicted_nodes [, keys, ids]
 * Splits state maps (key -> event ID): conflicted is a table key -> true of
 * the keys not present in every map with the same ID; common the array of
 * nodes of the unconflicted IDs; per_set[i] the array of nodes of map i's
 * IDs under conflicted keys; conflicted_nodes those nodes, sorted, each once;
 * with copy, keys and ids: the unconflicted state map as two parallel arrays
 * (in the order of common). Every ID is interned. */
static int g_separate(lua_State *L)
{
    graph_t *g = check_graph(L, 1);
    size_t n = array_len(L, 2), i, ncommon = 0, nkeys = 0, ncn = 0;
    int sets, cset, common, per, first, ukeys, uvals, copy = lua_toboolean(L, 3);
    uint32_t *cn;
    luaL_argcheck(L, n >= 1, 2, "at least one state map expected");
    luaL_argcheck(L, n <= 1000, 2, "too many state maps");
    luaL_checkstack(L, (int)n + 16, "too many state maps");
    sets = lua_gettop(L) + 1;
    for (i = 1; i <= n; i++)
        if (lua_rawgeti(L, 2, (lua_Integer)i) != LUA_TTABLE)
            luaL_error(L, "bad argument #2 to 'separate' (state_sets[%d] is not a table)", (int)i);
    first = sets;
    lua_newtable(L);
    cset = lua_gettop(L);
    lua_newtable(L);
    common = lua_gettop(L);
    lua_newtable(L);
    ukeys = lua_gettop(L);
    lua_newtable(L);
    uvals = lua_gettop(L);
    /* keys of the first map */
    lua_pushnil(L);
    while (lua_next(L, first)) {
        int same = 1;
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "bad argument #2 to 'separate' (state map values must be event ID strings)");
        for (i = 1; i < n && same; i++) {
            lua_pushvalue(L, -2);
            lua_rawget(L, sets + (int)i);
            same = lua_rawequal(L, -1, -2);
            lua_pop(L, 1);
        }
        if (same) {
            lua_pushinteger(L, (lua_Integer)intern(L, g, -1));
            lua_rawseti(L, common, (lua_Integer)++ncommon);
            if (copy) {
                lua_pushvalue(L, -2);
                lua_rawseti(L, ukeys, (lua_Integer)ncommon);
                lua_pushvalue(L, -1);
                lua_rawseti(L, uvals, (lua_Integer)ncommon);
            }
        } else {
            lua_pushvalue(L, -2);
            lua_pushboolean(L, 1);
            lua_rawset(L, cset);
            nkeys++;
        }
        lua_pop(L, 1);
    }
    /* keys missing from the first map */
    for (i = 1; i < n; i++) {
        lua_pushnil(L);
        while (lua_next(L, sets + (int)i)) {
            if (lua_type(L, -1) != LUA_TSTRING)
                luaL_error(L, "bad argument #2 to 'separate' (state map values must be event ID strings)");
            lua_pushvalue(L, -2);
            if (lua_rawget(L, first) == LUA_TNIL) {
                lua_pushvalue(L, -3);
                if (lua_rawget(L, cset) == LUA_TNIL) {
                    lua_pushvalue(L, -4);
                    lua_pushboolean(L, 1);
                    lua_rawset(L, cset);
                    nkeys++;
                }
                lua_pop(L, 1);
            }
            lua_pop(L, 2);
        }
    }
    /* the conflicted IDs per map */
    lua_createtable(L, (int)n, 0);
    per = lua_gettop(L);
    for (i = 1; i <= n; i++) {
        lua_newtable(L);
        lua_rawseti(L, per, (lua_Integer)i);
    }
    if (nkeys > ((size_t)-1) / n) luaL_error(L, "state maps too large");
    cn = (uint32_t *)scratch(L, nkeys * n, sizeof(uint32_t), 0);
    new_gen(g);
    lua_pushnil(L);
    while (lua_next(L, cset)) {
        lua_pop(L, 1);
        for (i = 0; i < n; i++) {
            lua_pushvalue(L, -1);
            if (lua_rawget(L, sets + (int)i) == LUA_TSTRING) {
                uint32_t v = intern(L, g, -1);
                lua_rawgeti(L, per, (lua_Integer)i + 1);
                lua_pushinteger(L, (lua_Integer)v);
                lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
                lua_pop(L, 1);
                if (g->nodes[v].mark != g->gen) {
                    g->nodes[v].mark = g->gen;
                    cn[ncn++] = v;
                }
            }
            lua_pop(L, 1);
        }
    }
    lua_pushvalue(L, cset);
    lua_pushvalue(L, common);
    lua_pushvalue(L, per);
    push_sorted(L, cn, ncn);
    if (!copy) return 4;
    lua_pushvalue(L, ukeys);
    lua_pushvalue(L, uvals);
    return 6;
}

/* stateres.assemble(keys, ids, partial, first, conflicted) -> a new state
 * map: keys[i] -> ids[i] (the unconflicted state map, from g:separate), then
 * the entries of partial under keys that are not in it (conflicted keys, or
 * keys absent from first). */
static int l_assemble(lua_State *L)
{
    size_t n, k, extra = 0;
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TTABLE);
    luaL_checktype(L, 4, LUA_TTABLE);
    luaL_checktype(L, 5, LUA_TTABLE);
    n = (size_t)lua_rawlen(L, 1);
    luaL_argcheck(L, (size_t)lua_rawlen(L, 2) == n, 2, "as many IDs as keys expected");
    luaL_argcheck(L, n <= NODE_LIMIT, 1, "too many keys");
    lua_settop(L, 5);
    lua_pushnil(L);
    while (lua_next(L, 3)) {
        lua_pop(L, 1);
        if (++extra > NODE_LIMIT) luaL_argerror(L, 3, "too many keys");
    }
    lua_createtable(L, 0, (int)(n + extra < (1u << 26) ? n + extra : (1u << 26)));
    for (k = 1; k <= n; k++) {
        lua_rawgeti(L, 1, (lua_Integer)k);
        lua_rawgeti(L, 2, (lua_Integer)k);
        lua_rawset(L, 6);
    }
    lua_pushnil(L);
    while (lua_next(L, 3)) {
        int keep;
        lua_pushvalue(L, -2);
        keep = lua_rawget(L, 5) != LUA_TNIL;
        lua_pop(L, 1);
        if (!keep) {
            lua_pushvalue(L, -2);
            keep = lua_rawget(L, 4) == LUA_TNIL;
            lua_pop(L, 1);
        }
        if (keep) {
            lua_pushvalue(L, -2);
            lua_pushvalue(L, -2);
            lua_rawset(L, 6);
        }
        lua_pop(L, 1);
    }
    return 1;
}

/* ---- reachability ------------------------------------------------------------ */

/* Breadth-first over auth edges from queue[0..*nq) (already marked with gen),
 * appending every node reached and giving each its local index. Returns 0, or
 * the node whose edges were needed but never loaded. */
static uint32_t walk(graph_t *g, uint32_t *queue, size_t *nq)
{
    size_t head, k;
    for (head = 0; head < *nq; head++) {
        uint32_t v = queue[head];
        const node_t *nd = &g->nodes[v];
        if (!(nd->flags & F_LOADED)) return v;
        for (k = 0; k < nd->edge_cnt; k++) {
            uint32_t t = g->edges[nd->edge_off + k];
            if (g->nodes[t].mark == g->gen) continue;
            g->nodes[t].mark = g->gen;
            g->nodes[t].loc = (uint32_t)*nq;
            queue[(*nq)++] = t;
        }
    }
    return 0;
}

/* g:chain(starts) -> sorted nodes of the union of the auth chains of starts:
 * every node reachable by one or more auth_events links (a start is in it
 * only when another start reaches it). */
static int g_chain(lua_State *L)
{
    graph_t *g = check_graph(L, 1);
    size_t ns, nq = 0, head, k, nout = 0;
    uint32_t *starts = read_nodes(L, g, 2, &ns);
    uint32_t *queue = (uint32_t *)scratch(L, g->n, sizeof(uint32_t), 0);
    new_gen(g);
    /* mark holds "queued"; mark2 holds "reached by an edge" */
    new_gen2(g);
    for (k = 0; k < ns; k++) {
        uint32_t v = starts[k];
        if (g->nodes[v].mark == g->gen) continue;
        g->nodes[v].mark = g->gen;
        queue[nq++] = v;
    }
    for (head = 0; head < nq; head++) {
        uint32_t v = queue[head];
        const node_t *nd = &g->nodes[v];
        if (!(nd->flags & F_LOADED)) return fail_missing(L, g, v);
        for (k = 0; k < nd->edge_cnt; k++) {
            uint32_t t = g->edges[nd->edge_off + k];
            g->nodes[t].mark2 = g->gen2;
            if (g->nodes[t].mark == g->gen) continue;
            g->nodes[t].mark = g->gen;
            queue[nq++] = t;
        }
    }
    for (k = 0; k < nq; k++)
        if (g->nodes[queue[k]].mark2 == g->gen2) queue[nout++] = queue[k];
    push_sorted(L, queue, nout);
    return 1;
}

/* g:difference(sets [, common]) -> sorted nodes of the auth difference
 * U C_i - n C_i, where C_i is the union of the auth chains of the nodes of
 * sets[i] and of common (nodes that are in every set). An event is in C_i
 * when an auth_events path of one or more links leads to it from the set. */
static int g_difference(lua_State *L)
{
    graph_t *g = check_graph(L, 1);
    size_t k = array_len(L, 2), s, j, m, nq = 0, nc = 0, words, w, head, done, nout = 0;
    int has_common = !lua_isnoneornil(L, 3);
    uint32_t *queue, *indeg, *work, bad;
    uint64_t *S, *R, *M, last;
    unsigned char *inq;
    if (has_common) nc = array_len(L, 3);
    queue = (uint32_t *)scratch(L, g->n, sizeof(uint32_t), 0);
    new_gen(g);
    /* 1. the start nodes, each once, with local indices */
    for (s = 1; s <= k; s++) {
        if (lua_rawgeti(L, 2, (lua_Integer)s) != LUA_TTABLE)
            return luaL_error(L, "bad argument #2 to 'difference' (sets[%d] is not an array)", (int)s);
        m = (size_t)lua_rawlen(L, -1);
        for (j = 1; j <= m; j++) {
            uint32_t v = node_at(L, g, lua_gettop(L), j, 2);
            if (g->nodes[v].mark == g->gen) continue;
            g->nodes[v].mark = g->gen;
            g->nodes[v].loc = (uint32_t)nq;
            queue[nq++] = v;
        }
        lua_pop(L, 1);
    }
    for (j = 1; j <= nc; j++) {
        uint32_t v = node_at(L, g, 3, j, 3);
        if (g->nodes[v].mark == g->gen) continue;
        g->nodes[v].mark = g->gen;
        g->nodes[v].loc = (uint32_t)nq;
        queue[nq++] = v;
    }
    if (k < 2) {
        lua_newtable(L);
        return 1;
    }
    /* 2. everything they reach */
    bad = walk(g, queue, &nq);
    if (bad) return fail_missing(L, g, bad);
    /* 3. membership masks S; reach masks R (what reaches a node by an edge) */
    words = (k + 63) / 64;
    if (nq > ((size_t)-1) / words / 3) return luaL_error(L, "state graph query too large");
    S = (uint64_t *)scratch(L, nq * words * 2 + words, sizeof(uint64_t), 1);
    R = S + nq * words;
    M = R + nq * words;
    for (s = 1; s <= k; s++) {
        lua_rawgeti(L, 2, (lua_Integer)s);
        m = (size_t)lua_rawlen(L, -1);
        for (j = 1; j <= m; j++) {
            uint32_t v = node_at(L, g, lua_gettop(L), j, 2);
            S[(size_t)g->nodes[v].loc * words + (s - 1) / 64] |= (uint64_t)1 << ((s - 1) % 64);
        }
        lua_pop(L, 1);
    }
    last = (k % 64) ? (((uint64_t)1 << (k % 64)) - 1) : ~(uint64_t)0;
    for (j = 1; j <= nc; j++) {
        uint32_t v = node_at(L, g, 3, j, 3);
        for (w = 0; w < words; w++)
            S[(size_t)g->nodes[v].loc * words + w] = (w + 1 == words) ? last : ~(uint64_t)0;
    }
    /* 4. propagate in topological order (Kahn: referencing events first) */
    indeg = (uint32_t *)scratch(L, nq, sizeof(uint32_t), 1);
    work = (uint32_t *)scratch(L, nq, sizeof(uint32_t), 0);
    for (j = 0; j < nq; j++) {
        const node_t *nd = &g->nodes[queue[j]];
        for (m = 0; m < nd->edge_cnt; m++) indeg[g->nodes[g->edges[nd->edge_off + m]].loc]++;
    }
    for (j = 0, m = 0; j < nq; j++)
        if (indeg[j] == 0) work[m++] = (uint32_t)j;
    for (head = 0; head < m; head++) {
        uint32_t a = work[head];
        const node_t *nd = &g->nodes[queue[a]];
        for (w = 0; w < words; w++) M[w] = S[(size_t)a * words + w] | R[(size_t)a * words + w];
        for (j = 0; j < nd->edge_cnt; j++) {
            uint32_t b = g->nodes[g->edges[nd->edge_off + j]].loc;
            for (w = 0; w < words; w++) R[(size_t)b * words + w] |= M[w];
            if (--indeg[b] == 0) work[m++] = b;
        }
    }
    done = m;
    if (done < nq) {
        /* cycles: a worklist to the fixpoint over what Kahn left */
        size_t qh = 0, qn = 0;
        inq = (unsigned char *)scratch(L, nq, 1, 1);
        for (j = 0; j < nq; j++)
            if (indeg[j] > 0) { work[qn++] = (uint32_t)j; inq[j] = 1; }
        while (qn > 0) {
            uint32_t a = work[qh];
            const node_t *nd = &g->nodes[queue[a]];
            qh = (qh + 1) % nq;
            qn--;
            inq[a] = 0;
            for (w = 0; w < words; w++) M[w] = S[(size_t)a * words + w] | R[(size_t)a * words + w];
            for (j = 0; j < nd->edge_cnt; j++) {
                uint32_t b = g->nodes[g->edges[nd->edge_off + j]].loc;
                int changed = 0;
                for (w = 0; w < words; w++) {
                    uint64_t x = R[(size_t)b * words + w] | M[w];
                    if (x != R[(size_t)b * words + w]) { R[(size_t)b * words + w] = x; changed = 1; }
                }
                if (changed && !inq[b]) {
                    work[(qh + qn) % nq] = b;
                    qn++;
                    inq[b] = 1;
                }
            }
        }
    }
    /* 5. reached by some sets but not all */
    for (j = 0; j < nq; j++) {
        const uint64_t *r = R + j * words;
        int any = 0, all = 1;
        for (w = 0; w < words; w++) {
            uint64_t full = (w + 1 == words) ? last : ~(uint64_t)0;
            if (r[w]) any = 1;
            if (r[w] != full) all = 0;
        }
        if (any && !all) work[nout++] = queue[j];
    }
    push_sorted(L, work, nout);
    return 1;
}

/* g:subgraph(conflicted) -> sorted nodes of the conflicted state subgraph:
 * every node on an auth_events path from one conflicted node to another,
 * endpoints included (so every conflicted node is in it). */
static int g_subgraph(lua_State *L)
{
    graph_t *g = check_graph(L, 1);
    size_t nc, nq = 0, nstart, j, m, total, head, nb, nout = 0;
    uint32_t *cs = read_nodes(L, g, 2, &nc);
    uint32_t *queue = (uint32_t *)scratch(L, g->n, sizeof(uint32_t), 0);
    uint32_t *off, *rev, *fill, *back, bad;
    unsigned char *in;
    new_gen(g);
    for (j = 0; j < nc; j++) {
        uint32_t v = cs[j];
        if (g->nodes[v].mark == g->gen) continue;
        g->nodes[v].mark = g->gen;
        g->nodes[v].loc = (uint32_t)nq;
        queue[nq++] = v;
    }
    nstart = nq;
    bad = walk(g, queue, &nq);
    if (bad) return fail_missing(L, g, bad);
    /* reverse edges within what the conflicted nodes reach */
    off = (uint32_t *)scratch(L, nq + 1, sizeof(uint32_t), 1);
    for (j = 0, total = 0; j < nq; j++) {
        const node_t *nd = &g->nodes[queue[j]];
        for (m = 0; m < nd->edge_cnt; m++) off[g->nodes[g->edges[nd->edge_off + m]].loc + 1]++;
        total += nd->edge_cnt;
    }
    for (j = 0; j < nq; j++) off[j + 1] += off[j];
    rev = (uint32_t *)scratch(L, total, sizeof(uint32_t), 0);
    fill = (uint32_t *)scratch(L, nq, sizeof(uint32_t), 0);
    memcpy(fill, off, nq * sizeof(uint32_t));
    for (j = 0; j < nq; j++) {
        const node_t *nd = &g->nodes[queue[j]];
        for (m = 0; m < nd->edge_cnt; m++) rev[fill[g->nodes[g->edges[nd->edge_off + m]].loc]++] = (uint32_t)j;
    }
    /* back from the conflicted nodes along reversed edges */
    in = (unsigned char *)scratch(L, nq, 1, 1);
    back = fill;
    for (j = 0, nb = 0; j < nstart; j++) { in[j] = 1; back[nb++] = (uint32_t)j; }
    for (head = 0; head < nb; head++) {
        uint32_t a = back[head];
        for (m = off[a]; m < off[a + 1]; m++) {
            uint32_t c = rev[m];
            if (!in[c]) { in[c] = 1; back[nb++] = c; }
        }
    }
    for (j = 0; j < nq; j++)
        if (in[j]) queue[nout++] = queue[j];
    push_sorted(L, queue, nout);
    return 1;
}

/* ---- orderings ------------------------------------------------------------------- */

static void push_items(lua_State *L, const item_t *it, size_t n)
{
    size_t k;
    lua_createtable(L, (int)n, 0);
    for (k = 0; k < n; k++) {
        lua_pushinteger(L, (lua_Integer)it[k].node);
        lua_rawseti(L, -2, (lua_Integer)k + 1);
    }
}

/* Reads nodes (arg 2) and the parallel key arrays (args 3 and 4, either may be
 * 0 for "all zero") into items; marks the nodes with gen and local indices.
 * Raises on duplicates. */
static item_t *read_items(lua_State *L, graph_t *g, int karg_a, int karg_b, size_t *count)
{
    size_t n = array_len(L, 2), k;
    item_t *it;
    if (karg_a && (lua_type(L, karg_a) != LUA_TTABLE || (size_t)lua_rawlen(L, karg_a) != n))
        luaL_argerror(L, karg_a, "array of integers, one per node, expected");
    if (karg_b && (lua_type(L, karg_b) != LUA_TTABLE || (size_t)lua_rawlen(L, karg_b) != n))
        luaL_argerror(L, karg_b, "array of integers, one per node, expected");
    it = (item_t *)scratch(L, n, sizeof(item_t), 0);
    new_gen(g);
    for (k = 0; k < n; k++) {
        uint32_t v = node_at(L, g, 2, k + 1, 2);
        if (g->nodes[v].mark == g->gen)
            luaL_error(L, "bad argument #2 (node %d appears twice)", (int)v);
        g->nodes[v].mark = g->gen;
        g->nodes[v].loc = (uint32_t)k;
        it[k].node = v;
        it[k].a = karg_a ? key_at(L, karg_a, k + 1, karg_a) : 0;
        it[k].b = karg_b ? key_at(L, karg_b, k + 1, karg_b) : 0;
    }
    *count = n;
    return it;
}

/* g:order(nodes, power, ts) -> the nodes in reverse topological power order:
 * Kahn's algorithm over the auth edges among the given nodes, auth events
 * before the events citing them, choosing at each step the candidate with the
 * greatest power, then the smallest ts, then the smallest event ID.
 * power[k] may be math.huge (a v12 creator). nil, message, "auth_cycle" when
 * the edges among the nodes form a cycle. */
static int g_order(lua_State *L)
{
    graph_t *g = check_graph(L, 1);
    size_t n, k, j, total = 0, nh = 0, nout = 0;
    item_t *it = read_items(L, g, 3, 4, &n);
    item_t *heap, *out;
    uint32_t *outdeg, *off, *fill, *rev;
    outdeg = (uint32_t *)scratch(L, n, sizeof(uint32_t), 1);
    off = (uint32_t *)scratch(L, n + 1, sizeof(uint32_t), 1);
    for (k = 0; k < n; k++) {
        const node_t *nd = &g->nodes[it[k].node];
        if (!(nd->flags & F_LOADED)) return fail_missing(L, g, it[k].node);
        for (j = 0; j < nd->edge_cnt; j++) {
            uint32_t t = g->edges[nd->edge_off + j];
            if (g->nodes[t].mark != g->gen) continue;
            outdeg[k]++;
            off[g->nodes[t].loc + 1]++;
            total++;
        }
    }
    for (k = 0; k < n; k++) off[k + 1] += off[k];
    rev = (uint32_t *)scratch(L, total, sizeof(uint32_t), 0);
    fill = (uint32_t *)scratch(L, n, sizeof(uint32_t), 0);
    memcpy(fill, off, n * sizeof(uint32_t));
    for (k = 0; k < n; k++) {
        const node_t *nd = &g->nodes[it[k].node];
        for (j = 0; j < nd->edge_cnt; j++) {
            uint32_t t = g->edges[nd->edge_off + j];
            if (g->nodes[t].mark != g->gen) continue;
            rev[fill[g->nodes[t].loc]++] = (uint32_t)k;
        }
    }
    heap = (item_t *)scratch(L, n, sizeof(item_t), 0);
    out = (item_t *)scratch(L, n, sizeof(item_t), 0);
    for (k = 0; k < n; k++)
        if (outdeg[k] == 0) heap_push(g, heap, &nh, it[k]);
    while (nh > 0) {
        item_t x = heap_pop(g, heap, &nh);
        uint32_t a = g->nodes[x.node].loc;
        out[nout++] = x;
        for (j = off[a]; j < off[a + 1]; j++)
            if (--outdeg[rev[j]] == 0) heap_push(g, heap, &nh, it[rev[j]]);
    }
    if (nout < n) {
        for (k = 0; k < n; k++)
            if (outdeg[k] > 0) break;
        push_id(L, g, it[k].node);
        return loom_fail(L, "auth_cycle", "auth events form a cycle through %s", lua_tostring(L, -1));
    }
    push_items(L, out, n);
    return 1;
}

/* The m.room.power_levels node among v's auth events (the first one), 0 when
 * there is none; *missing is set when v or one of its auth events is not
 * loaded (so the answer is unknown). */
static uint32_t pl_parent(const graph_t *g, uint32_t v, uint32_t *missing)
{
    const node_t *nd = &g->nodes[v];
    uint32_t k;
    if (!(nd->flags & F_LOADED)) { *missing = v; return 0; }
    for (k = 0; k < nd->edge_cnt; k++) {
        uint32_t t = g->edges[nd->edge_off + k];
        if (!(g->nodes[t].flags & F_LOADED)) { *missing = t; return 0; }
        if (g->nodes[t].flags & F_POWER) return t;
    }
    return 0;
}

/* Mainline positions of it[0..n) based on the power levels node pl (0: none),
 * into it[k].a (POS_INF when no ancestor is on the mainline). Returns 0 or
 * pushes nil, message, code and returns 3. */
static int mainline_positions(lua_State *L, graph_t *g, uint32_t pl, item_t *it, size_t n)
{
    uint32_t x, missing = 0, *path;
    int64_t i = 0;
    size_t k, np;
    /* mark2 == gen2: on the mainline, aux = index; mark == gen: walked, aux =
     * the position every walk through it ends with (IN_PROGRESS while open) */
    new_gen2(g);
    for (x = pl; x; x = pl_parent(g, x, &missing)) {
        if (g->nodes[x].mark2 == g->gen2) {
            push_id(L, g, x);
            return loom_fail(L, "auth_cycle", "power levels events form a cycle through %s",
                             lua_tostring(L, -1));
        }
        g->nodes[x].mark2 = g->gen2;
        g->nodes[x].aux = i++;
    }
    if (missing) return fail_missing(L, g, missing);
    if (pl == 0) {
        /* no power levels: no mainline, every position infinite */
        for (k = 0; k < n; k++) it[k].a = POS_INF;
        return 0;
    }
    new_gen(g);
    path = (uint32_t *)scratch(L, g->n, sizeof(uint32_t), 0);
    for (k = 0; k < n; k++) {
        int64_t val = POS_INF;
        np = 0;
        for (x = pl_parent(g, it[k].node, &missing); x; x = pl_parent(g, x, &missing)) {
            node_t *nd = &g->nodes[x];
            if (nd->mark2 == g->gen2) { val = nd->aux; break; }
            if (nd->mark == g->gen) {
                if (nd->aux == IN_PROGRESS) {
                    push_id(L, g, x);
                    return loom_fail(L, "auth_cycle", "power levels events form a cycle through %s",
                                     lua_tostring(L, -1));
                }
                val = nd->aux;
                break;
            }
            nd->mark = g->gen;
            nd->aux = IN_PROGRESS;
            path[np++] = x;
        }
        if (missing) return fail_missing(L, g, missing);
        while (np > 0) g->nodes[path[--np]].aux = val;
        it[k].a = val;
    }
    lua_pop(L, 1);  /* path */
    return 0;
}

static uint32_t opt_pl(lua_State *L, const graph_t *g, int arg)
{
    lua_Integer v;
    if (lua_isnoneornil(L, arg)) return 0;
    v = luaL_checkinteger(L, arg);
    if (v == 0) return 0;
    luaL_argcheck(L, v >= 1 && (lua_Unsigned)v <= g->n, arg, "not a node index of this graph");
    return (uint32_t)v;
}

/* g:mainline(pl, nodes, ts) -> the nodes in mainline order based on the power
 * levels node pl (nil or 0: no power levels, every position infinite): the
 * greater mainline position first, then the smaller ts, then the smaller
 * event ID. The position of e is the index on pl's mainline of the first
 * power levels event met walking e's auth_events power levels chain (e
 * itself excluded). */
static int g_mainline(lua_State *L)
{
    graph_t *g = check_graph(L, 1);
    uint32_t pl = opt_pl(L, g, 2);
    size_t n;
    item_t *it;
    lua_settop(L, 4);
    lua_rotate(L, 2, -1);   /* nodes, ts, pl: read_items wants nodes at 2 */
    it = read_items(L, g, 0, 3, &n);
    if (mainline_positions(L, g, pl, it, n)) return 3;
    sort_items(g, it, (item_t *)scratch(L, n, sizeof(item_t), 0), n);
    push_items(L, it, n);
    return 1;
}

/* g:positions(pl, nodes) -> array of mainline positions (integers from 0 for
 * pl itself; math.huge when the chain never meets the mainline). */
static int g_positions(lua_State *L)
{
    graph_t *g = check_graph(L, 1);
    uint32_t pl = opt_pl(L, g, 2);
    size_t n, k;
    item_t *it;
    lua_settop(L, 3);
    lua_rotate(L, 2, -1);   /* nodes, pl */
    it = read_items(L, g, 0, 0, &n);
    if (mainline_positions(L, g, pl, it, n)) return 3;
    lua_createtable(L, (int)n, 0);
    for (k = 0; k < n; k++) {
        if (it[k].a == POS_INF) lua_pushnumber(L, HUGE_VAL);
        else lua_pushinteger(L, (lua_Integer)it[k].a);
        lua_rawseti(L, -2, (lua_Integer)k + 1);
    }
    return 1;
}

/* ---- lifecycle ------------------------------------------------------------------- */

static int g_close(lua_State *L)
{
    graph_t *g = (graph_t *)luaL_checkudata(L, 1, GRAPH_MT);
    if (!g->closed) {
        g_release(g);
        lua_pushnil(L);
        lua_setiuservalue(L, 1, 1);
    }
    return 0;
}

static int g_len(lua_State *L)
{
    graph_t *g = (graph_t *)luaL_checkudata(L, 1, GRAPH_MT);
    lua_pushinteger(L, (lua_Integer)g->n);
    return 1;
}

static int g_tostring(lua_State *L)
{
    graph_t *g = (graph_t *)luaL_checkudata(L, 1, GRAPH_MT);
    if (g->closed) lua_pushliteral(L, GRAPH_MT " (closed)");
    else lua_pushfstring(L, GRAPH_MT " (%d nodes, %d edges)", (int)g->n, (int)g->nedges);
    return 1;
}

static const luaL_Reg graph_methods[] = {
    { "intern", g_intern },
    { "find", g_find },
    { "id", g_id },
    { "ids", g_ids },
    { "loaded", g_loaded },
    { "auth", g_auth },
    { "unloaded", g_unloaded },
    { "load", g_load },
    { "separate", g_separate },
    { "chain", g_chain },
    { "difference", g_difference },
    { "subgraph", g_subgraph },
    { "order", g_order },
    { "mainline", g_mainline },
    { "positions", g_positions },
    { "close", g_close },
    { NULL, NULL }
};

static const luaL_Reg graph_meta[] = {
    { "__gc", g_close },
    { "__close", g_close },
    { "__len", g_len },
    { "__tostring", g_tostring },
    { NULL, NULL }
};

static const luaL_Reg stateres_funcs[] = {
    { "graph", l_graph },
    { "assemble", l_assemble },
    { "is_graph", l_is_graph },
    { NULL, NULL }
};

void loom_open_stateres(lua_State *L)
{
    loom_new_type(L, GRAPH_MT, graph_methods, graph_meta);

    luaL_newlib(L, stateres_funcs);
    lua_setfield(L, -2, "stateres");
}
