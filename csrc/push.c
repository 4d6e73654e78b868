/* loom.core.push — push-rule evaluation for a whole room in one call (the
 * Client-Server API's Push Notifications module, "Push Rules"). The Lua
 * evaluator lua/loom/push/eval.lua is the reference; this one gives the same
 * answers (spec/01-unit/push_diff_spec.lua checks it on random cases).
 *
 *   local ev = core.push.new()
 *   local rules = ev:compile(ruleset)   -- merged ruleset, once per user
 *   local actions, rule_id = ev:run(rules, event, ctx)
 *   local rows = ev:evaluate(event, { rules = {...}, names = {...},
 *       users = {...}, member_count = n, sender_power = p, notifications = t })
 *   -- rows: { { user_id, highlight, actions }, ... } for the members notified
 *
 * Conditions are interned per evaluator (a weak table of loom.PushCondition
 * by their canonical text), and so are rules (loom.PushRuleNode, by their
 * conditions and outcome): a rule every member shares (the predefined ones)
 * is tested once per event, and a member's walk reads the shared results
 * from cache. A rule of the member's own (naming the user, a keyword) is
 * first passed through a filter kept in the rule set's block (a key or word
 * the event must have), so most members never read their own conditions;
 * the display-name rule first looks up the name's first word among the
 * body's words. Globs without wildcards are matched natively (whole
 * value: case-folded equality; words of content.body: a hash set of the
 * body's words, or a bounded search when the pattern has non-word bytes);
 * globs with `*` or `?` go through loom.core.regex with the ERE that
 * loom.push.glob builds, so its limits (and refusals) are the same. The event
 * is flattened once per call into canonical dotted keys ("." and "\" escaped
 * with "\") in a hash table.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom.h"

#define EVAL_MT "loom.PushEvaluator"
#define RULES_MT "loom.PushRules"
#define COND_MT "loom.PushCondition"
#define ROW_MT "loom.PushRow"
#define CACHE_MT "loom.PushRoomCache"
#define NODE_MT "loom.PushRuleNode"

#define MAX_GLOB 1024     /* bytes, as loom.push.glob */
#define MAX_DEPTH 1000    /* event nesting flattened (core.json's DEPTH_CAP) */
#define MAX_RULES 100000  /* rules in one rule set */

enum { K_NEVER, K_MATCH, K_IS, K_CONTAINS, K_DISPLAY, K_COUNT, K_PERM };
enum { G_WHOLE, G_WORD, G_SEARCH, G_REGEX };
enum { V_NONE, V_STR, V_INT, V_BOOL, V_NULL, V_TABLE, V_OTHER };

typedef struct {
    int kind;
    char *key; /* canonical flattened key (malloc'd) */
    size_t keylen;
    uint64_t keyhash;
    int mode;  /* K_MATCH: G_* */
    char *pat; /* K_MATCH: folded literal; K_IS/K_CONTAINS: string value; K_PERM: key */
    size_t patlen;
    uint64_t pathash;
    void *re;  /* G_REGEX: loom.Regex kept in uservalue 1 */
    int vtype; /* K_IS/K_CONTAINS */
    lua_Integer ival;
    int op;    /* K_COUNT: 0 ==, 1 <, 2 >, 3 <=, 4 >= */
    lua_Integer n;
    uint64_t gen; /* memo of the last call */
    int result;
    char *tail;  /* the bytes after the struct: key, pattern */
    size_t used;
} Cond;

/* A condition's kind and hashes, copied into its rule's node: the
 * conditions that cannot hold for this event (their key is absent, their
 * word is not in the body) are passed over without reading the condition
 * itself (a member's own conditions are apart in memory). */
typedef struct {
    uint64_t keyhash, pathash;
    int kind, mode;
} Pre;

/* A rule as it is evaluated: its conditions (the Pre of each, then the
 * conditions) and its outcome. Nodes are interned per evaluator by their
 * conditions and outcome, so a rule that members share (every predefined
 * rule but the few naming the user) is one node, tested once per event
 * (gen, result); a node with a display-name condition depends on the member
 * and is tested for each. */
typedef struct {
    uint64_t gen;
    int result;
    int ncond, notify, highlight, display;
    Pre *pre;
    Cond **conds;
} Node;

/* A rule of a rule set: its node, and for a node this rule set was the
 * first to use (most often a rule of its own: naming the user, the user's
 * keywords) a test that must pass for the node to match, from the rule set's
 * own memory: a key the event must have, or a word its body must have
 * (F_KEY, F_WORD: the low 32 bits of the hash). The nodes the room shares
 * are read (from cache) instead. */
enum { F_NONE, F_KEY, F_WORD };
typedef struct {
    Node *nd;
    uint32_t hash;
    int filter;
} RuleRef;

/* A compiled rule set: its rules in evaluation order, one block. */
typedef struct {
    int nrules;
    RuleRef *rules;
    void *owner;
} Rules;

typedef struct {
    size_t koff, klen;
    uint64_t hash;
    int type;
    const char *s;
    size_t slen;
    lua_Integer i;
    size_t ifirst, icount; /* V_TABLE: its array items */
} Entry;

typedef struct {
    int type;
    const char *s;
    size_t slen;
    lua_Integer i;
} Item;

typedef struct {
    size_t off, len;
    uint64_t hash;
} Word;

typedef struct {
    uint64_t gen;
    Entry *ent;
    size_t nent, entcap;
    char *keys;
    size_t klen, kcap;
    size_t *tab; /* entry index + 1, 0 empty */
    size_t tabcap;
    Item *items;
    size_t nitems, itemcap;
    char *fold; /* the folded body */
    size_t foldcap;
    Word *words; /* hash set (len 0: empty slot) */
    size_t wordcap;
    const char *body;
    size_t bodylen;
    int has_body, words_built;
} Eval;

/* ---- helpers ---- */

static uint64_t fnv(const char *s, size_t n)
{
    uint64_t h = UINT64_C(1469598103934665603);
    size_t i;
    for (i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= UINT64_C(1099511628211);
    }
    return h;
}

static unsigned char fold_c(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

static int is_word(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c >= 0x80;
}

static void *grow(lua_State *L, void *p, size_t *cap, size_t need, size_t elem)
{
    size_t n = *cap ? *cap : 16;
    void *q;
    if (need <= *cap)
        return p;
    while (n < need)
        n *= 2;
    q = realloc(p, n * elem);
    if (q == NULL)
        luaL_error(L, "push: out of memory");
    *cap = n;
    return q;
}

static Eval *check_eval(lua_State *L, int i)
{
    return (Eval *)luaL_checkudata(L, i, EVAL_MT);
}

/* ---- compiling conditions ---- */

/* The canonical key of a condition key: split on unescaped dots ("\." a
 * literal dot, "\\" a backslash, any other "\" literal), each part escaped
 * again. Pushed as a string. */
static void push_canonical_key(lua_State *L, const char *k, size_t n)
{
    luaL_Buffer b;
    size_t i = 0;
    luaL_buffinit(L, &b);
    while (i < n) {
        char c = k[i];
        if (c == '\\' && i + 1 < n && (k[i + 1] == '.' || k[i + 1] == '\\')) {
            luaL_addchar(&b, '\\');
            luaL_addchar(&b, k[i + 1]);
            i += 2;
        } else if (c == '\\') {
            luaL_addstring(&b, "\\\\");
            i++;
        } else {
            luaL_addchar(&b, c);
            i++;
        }
    }
    luaL_pushresult(&b);
}

/* n bytes (ASCII-folded when fold) copied into the condition's own tail,
 * NUL-terminated. */
static char *put_bytes(Cond *c, const char *s, size_t n, int fold)
{
    char *p = c->tail + c->used;
    size_t i;
    for (i = 0; i < n; i++)
        p[i] = fold ? (char)fold_c((unsigned char)s[i]) : s[i];
    p[n] = '\0';
    c->used += n + 1;
    return p;
}

/* A new condition userdata on the stack, all fields empty, with `extra`
 * bytes after it for its key and pattern (one block: one cache miss). */
static Cond *new_cond(lua_State *L, int kind, size_t extra)
{
    Cond *c = (Cond *)lua_newuserdatauv(L, sizeof *c + extra, 1);
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->tail = (char *)(c + 1);
    luaL_setmetatable(L, COND_MT);
    return c;
}

/* The ERE of a glob, as loom.push.glob.to_ere builds it (literal: no
 * wildcards), pushed as a string. */
static void push_ere(lua_State *L, const char *p, size_t n, int literal)
{
    static const char special[] = "\\.[]()*+?{}|^$";
    luaL_Buffer b;
    size_t i;
    int last_star = 0;
    luaL_buffinit(L, &b);
    for (i = 0; i < n; i++) {
        char c = p[i];
        if (literal && (c == '*' || c == '?')) {
            luaL_addchar(&b, '\\');
            luaL_addchar(&b, c);
            last_star = 0;
        } else if (c == '*') {
            if (!last_star)
                luaL_addstring(&b, ".*");
            last_star = 1;
        } else if (c == '?') {
            luaL_addstring(&b, "([^\x80-\xbf][\x80-\xbf]*|[\x80-\xbf])");
            last_star = 0;
        } else if (c != '\0' && strchr(special, c) != NULL) {
            luaL_addchar(&b, '\\');
            luaL_addchar(&b, c);
            last_star = 0;
        } else {
            luaL_addchar(&b, c);
            last_star = 0;
        }
    }
    luaL_pushresult(&b);
}

#define NONWORD "[^[:alnum:]_\x80-\xff]"

/* Fill a K_MATCH condition's matcher for pattern p (on the stack top: the
 * condition). Returns 0 when the glob is refused (the condition never
 * matches). */
static int set_glob(lua_State *L, Cond *c, const char *p, size_t n, int words)
{
    size_t i;
    int wild = 0, allword = 1;
    if (n > MAX_GLOB || memchr(p, '\0', n) != NULL)
        return 0;
    for (i = 0; i < n; i++) {
        if (p[i] == '*' || p[i] == '?')
            wild = 1;
        if (!is_word((unsigned char)p[i]))
            allword = 0;
    }
    if (wild) {
        size_t elen;
        const char *ere;
        int r;
        push_ere(L, p, n, 0);
        if (words) {
            lua_pushliteral(L, "(^|" NONWORD ")(");
            lua_insert(L, -2);
            lua_pushliteral(L, ")(" NONWORD "|$)");
            lua_concat(L, 3);
        }
        ere = lua_tolstring(L, -1, &elen);
        r = loom_regex_new(L, ere, elen, !words, 1);
        if (r != 1) {
            lua_pop(L, r + 1);
            return 0;
        }
        c->re = lua_touserdata(L, -1);
        lua_setiuservalue(L, -3, 1);
        lua_pop(L, 1);
        c->mode = G_REGEX;
        return 1;
    }
    c->pat = put_bytes(c, p, n, 1);
    c->patlen = n;
    c->pathash = fnv(c->pat, n);
    c->mode = !words ? G_WHOLE : (allword && n > 0) ? G_WORD : G_SEARCH;
    return 1;
}

static int parse_is(const char *s, size_t n, int *op, lua_Integer *out)
{
    size_t i = 0, j;
    lua_Integer v = 0;
    while (i < n && (s[i] == '<' || s[i] == '>' || s[i] == '='))
        i++;
    if (i == n)
        return 0;
    for (j = i; j < n; j++) {
        if (s[j] < '0' || s[j] > '9')
            return 0;
        if (v > (LUA_MAXINTEGER - (s[j] - '0')) / 10)
            return 0; /* Lua's tonumber gives a float: refused */
        v = v * 10 + (s[j] - '0');
    }
    if (i == 0 || (i == 2 && s[0] == '=' && s[1] == '='))
        *op = 0;
    else if (i == 1 && s[0] == '<')
        *op = 1;
    else if (i == 1 && s[0] == '>')
        *op = 2;
    else if (i == 2 && s[0] == '<' && s[1] == '=')
        *op = 3;
    else if (i == 2 && s[0] == '>' && s[1] == '=')
        *op = 4;
    else
        return 0;
    *out = v;
    return 1;
}

/* Push the interned condition for the condition table at index t (or for a
 * content/room/sender rule: kind K_MATCH on key with pattern at index pidx
 * when t == 0). intern: index of the weak intern table. */
static void push_cond(lua_State *L, int intern, int t, const char *fixed_key, int pidx)
{
    int top = lua_gettop(L), kind = K_NEVER, vt = V_NONE;
    const char *kname = NULL, *key = NULL, *pat = NULL;
    size_t keylen = 0, patlen = 0, vlen = 0;
    const char *vs = NULL;
    lua_Integer iv = 0;
    Cond *c;
    luaL_checkstack(L, 12, "push");
    if (t == 0) {
        kind = K_MATCH;
        key = fixed_key;
        keylen = strlen(fixed_key);
        if (lua_type(L, pidx) == LUA_TSTRING)
            pat = lua_tolstring(L, pidx, &patlen);
        else
            kind = K_NEVER;
    } else if (lua_type(L, t) == LUA_TTABLE) {
        lua_getfield(L, t, "kind");
        kname = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
        lua_getfield(L, t, "key");
        if (lua_type(L, -1) == LUA_TSTRING)
            key = lua_tolstring(L, -1, &keylen);
        if (strcmp(kname, "event_match") == 0) {
            lua_getfield(L, t, "pattern");
            if (key && lua_type(L, -1) == LUA_TSTRING) {
                kind = K_MATCH;
                pat = lua_tolstring(L, -1, &patlen);
            }
        } else if (strcmp(kname, "event_property_is") == 0 || strcmp(kname, "event_property_contains") == 0) {
            int lt = lua_getfield(L, t, "value");
            if (key && lt != LUA_TNIL) {
                kind = kname[15] == 'i' ? K_IS : K_CONTAINS;
                if (lt == LUA_TSTRING) {
                    vt = V_STR;
                    vs = lua_tolstring(L, -1, &vlen);
                } else if (lt == LUA_TBOOLEAN) {
                    vt = V_BOOL;
                    iv = lua_toboolean(L, -1);
                } else if (lt == LUA_TNUMBER && lua_isinteger(L, -1)) {
                    vt = V_INT;
                    iv = lua_tointeger(L, -1);
                } else if (lt == LUA_TLIGHTUSERDATA && lua_touserdata(L, -1) == NULL) {
                    vt = V_NULL;
                } else {
                    kind = K_NEVER; /* a float, a table: equal to nothing */
                }
            }
        } else if (strcmp(kname, "contains_display_name") == 0) {
            kind = K_DISPLAY;
        } else if (strcmp(kname, "room_member_count") == 0) {
            lua_getfield(L, t, "is");
            if (lua_type(L, -1) == LUA_TSTRING) {
                int op;
                lua_Integer n;
                size_t islen;
                const char *is = lua_tolstring(L, -1, &islen);
                if (parse_is(is, islen, &op, &n)) {
                    kind = K_COUNT;
                    iv = n;
                    vt = op;
                }
            }
        } else if (strcmp(kname, "sender_notification_permission") == 0) {
            if (key)
                kind = K_PERM;
        }
    }
    /* the canonical text: kind, value, key, pattern */
    if (kind == K_MATCH || kind == K_IS || kind == K_CONTAINS)
        push_canonical_key(L, key, keylen);
    else if (kind == K_PERM)
        lua_pushlstring(L, key, keylen);
    else
        lua_pushliteral(L, "");
    {
        int ck = lua_gettop(L);
        luaL_Buffer b;
        char head[40];
        luaL_buffinit(L, &b);
        snprintf(head, sizeof head, "%d:%d:%lld:", kind, vt, (long long)iv);
        luaL_addstring(&b, head);
        lua_pushvalue(L, ck);
        luaL_addvalue(&b);
        luaL_addchar(&b, '\0');
        if (pat)
            luaL_addlstring(&b, pat, patlen);
        if (vs)
            luaL_addlstring(&b, vs, vlen);
        luaL_pushresult(&b);
    }
    lua_pushvalue(L, -1);
    if (lua_rawget(L, intern) == LUA_TUSERDATA) {
        lua_replace(L, top + 1);
        lua_settop(L, top + 1);
        return;
    }
    lua_pop(L, 1);
    /* stack: ... canonical key, intern text */
    c = new_cond(L, kind, lua_rawlen(L, -2) + patlen + vlen + keylen + 4);
    if (kind == K_MATCH || kind == K_IS || kind == K_CONTAINS) {
        size_t cklen;
        const char *ck = lua_tolstring(L, -3, &cklen);
        c->key = put_bytes(c, ck, cklen, 0);
        c->keylen = cklen;
        c->keyhash = fnv(ck, cklen);
    }
    if (kind == K_MATCH) {
        if (!set_glob(L, c, pat, patlen, c->keylen == 12 && memcmp(c->key, "content.body", 12) == 0))
            c->kind = K_NEVER;
    } else if (kind == K_IS || kind == K_CONTAINS) {
        c->vtype = vt;
        c->ival = iv;
        if (vt == V_STR) {
            c->pat = put_bytes(c, vs, vlen, 0);
            c->patlen = vlen;
        }
    } else if (kind == K_COUNT) {
        c->op = vt;
        c->n = iv;
    } else if (kind == K_PERM) {
        c->pat = put_bytes(c, key, keylen, 0);
        c->patlen = keylen;
    }
    lua_pushvalue(L, -2);
    lua_pushvalue(L, -2);
    lua_rawset(L, intern);
    lua_replace(L, top + 1);
    lua_settop(L, top + 1);
}

/* ---- compiling rule sets ---- */

static const char *const ORDER[] = {"override", "content", "room", "sender", "underride"};

/* Push the interned node of a rule: the n conditions in table ct (in
 * order) and the outcome. intern: index of the weak node intern table. */
static int push_node(lua_State *L, int intern, int ct, int n, int notify, int highlight)
{
    int top = lua_gettop(L), j;
    Node *nd;
    luaL_Buffer b;
    char flags[2];
    luaL_checkstack(L, 6, "push");
    flags[0] = (char)notify;
    flags[1] = (char)highlight;
    luaL_buffinit(L, &b);
    luaL_addlstring(&b, flags, 2);
    for (j = 1; j <= n; j++) {
        const void *c;
        lua_rawgeti(L, ct, j);
        c = lua_touserdata(L, -1);
        lua_pop(L, 1);
        luaL_addlstring(&b, (const char *)&c, sizeof c);
    }
    luaL_pushresult(&b);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, intern) == LUA_TUSERDATA) {
        lua_replace(L, top + 1);
        lua_settop(L, top + 1);
        return 0;
    }
    lua_pop(L, 1);
    /* the conditions' pointers are the key: the node keeps them alive
     * (uservalue 1), so a live key never names another condition */
    nd = (Node *)lua_newuserdatauv(L, sizeof *nd + (size_t)n * (sizeof(Pre) + sizeof(Cond *)), 1);
    memset(nd, 0, sizeof *nd);
    nd->pre = (Pre *)(void *)(nd + 1);
    nd->conds = (Cond **)(void *)(nd->pre + n);
    nd->ncond = n;
    nd->notify = notify;
    nd->highlight = highlight;
    for (j = 0; j < n; j++) {
        Cond *c;
        lua_rawgeti(L, ct, j + 1);
        c = (Cond *)lua_touserdata(L, -1);
        lua_pop(L, 1);
        nd->conds[j] = c;
        nd->pre[j].kind = c->kind;
        nd->pre[j].mode = c->mode;
        nd->pre[j].keyhash = c->keyhash;
        nd->pre[j].pathash = c->pathash;
        if (c->kind == K_DISPLAY)
            nd->display = 1;
    }
    luaL_setmetatable(L, NODE_MT);
    lua_pushvalue(L, ct);
    lua_setiuservalue(L, -2, 1);
    lua_pushvalue(L, -2);
    lua_pushvalue(L, -2);
    lua_rawset(L, intern);
    lua_replace(L, top + 1);
    lua_settop(L, top + 1);
    return 1;
}

/* The key most events lack, as a filter: not one of these. */
static int common_key(const Cond *c)
{
    static const char *const common[] = {"type", "sender", "room_id", "content.body", "content.msgtype", NULL};
    int k;
    for (k = 0; common[k]; k++)
        if (c->keylen == strlen(common[k]) && memcmp(c->key, common[k], c->keylen) == 0)
            return 1;
    return 0;
}

/* A node's filter (RuleRef): a word of a content.body glob without
 * wildcards, else the key of a condition that needs one (an uncommon key
 * first). */
static void node_filter(const Node *nd, RuleRef *ref)
{
    int j, best = 0;
    ref->filter = F_NONE;
    for (j = 0; j < nd->ncond; j++) {
        const Cond *c = nd->conds[j];
        int rank = 0;
        if (c->kind == K_MATCH && c->mode == G_WORD)
            rank = 3;
        else if (c->kind == K_MATCH || c->kind == K_IS || c->kind == K_CONTAINS)
            rank = common_key(c) ? 1 : 2;
        if (rank > best) {
            best = rank;
            ref->filter = rank == 3 ? F_WORD : F_KEY;
            ref->hash = (uint32_t)(rank == 3 ? c->pathash : c->keyhash);
        }
    }
}

/* The outcome of an actions list: notify, and highlight (a highlight tweak
 * whose value is not false). */
static void read_actions(lua_State *L, int at, int *notify, int *highlight)
{
    int j;
    *notify = *highlight = 0;
    if (lua_type(L, at) != LUA_TTABLE)
        return;
    for (j = 1; lua_geti(L, at, j) != LUA_TNIL; j++) {
        if (lua_type(L, -1) == LUA_TSTRING) {
            if (strcmp(lua_tostring(L, -1), "notify") == 0)
                *notify = 1;
        } else if (lua_type(L, -1) == LUA_TTABLE) {
            int a = lua_gettop(L), hl;
            lua_getfield(L, a, "set_tweak");
            hl = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "highlight") == 0;
            lua_pop(L, 1);
            if (hl) {
                lua_getfield(L, a, "value");
                if (!(lua_isboolean(L, -1) && !lua_toboolean(L, -1)))
                    *highlight = 1;
                lua_pop(L, 1);
            }
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* ev:compile(ruleset) -> loom.PushRules. The ruleset is the merged rule set
 * (loom.api.pushrules.merge); disabled rules are left out, malformed parts
 * never match, as in loom.push.eval.compile. */
static int l_compile(lua_State *L)
{
    int k, nrules = 0, ncond = 0, intern, nintern, nodet, newt, actt, idt;
    check_eval(L, 1);
    lua_settop(L, 2);
    lua_newtable(L);
    nodet = lua_gettop(L);
    lua_newtable(L);
    newt = lua_gettop(L);
    lua_newtable(L);
    actt = lua_gettop(L);
    lua_newtable(L);
    idt = lua_gettop(L);
    lua_getiuservalue(L, 1, 1);
    intern = lua_gettop(L);
    lua_getiuservalue(L, 1, 2);
    nintern = lua_gettop(L);
    if (lua_type(L, 2) == LUA_TTABLE) {
        for (k = 0; k < 5; k++) {
            int list, i;
            lua_getfield(L, 2, ORDER[k]);
            list = lua_gettop(L);
            if (lua_type(L, list) != LUA_TTABLE) {
                lua_pop(L, 1);
                continue;
            }
            for (i = 1; lua_geti(L, list, i) != LUA_TNIL; i++) {
                int rt = lua_gettop(L), n = 0, ct, notify, highlight;
                if (lua_type(L, rt) != LUA_TTABLE) {
                    lua_pop(L, 1);
                    continue;
                }
                lua_getfield(L, rt, "enabled");
                if (lua_isboolean(L, -1) && !lua_toboolean(L, -1)) {
                    lua_pop(L, 2);
                    continue;
                }
                lua_pop(L, 1);
                if (nrules >= MAX_RULES)
                    luaL_error(L, "push: more than %d rules", MAX_RULES);
                lua_newtable(L);
                ct = lua_gettop(L);
                /* conditions */
                if (k == 1 || k == 2 || k == 3) {
                    lua_getfield(L, rt, k == 1 ? "pattern" : "rule_id");
                    push_cond(L, intern, 0, k == 1 ? "content.body" : k == 2 ? "room_id" : "sender",
                              lua_gettop(L));
                    lua_rawseti(L, ct, ++n);
                    lua_pop(L, 1);
                } else {
                    int cl, j;
                    lua_getfield(L, rt, "conditions");
                    cl = lua_gettop(L);
                    if (lua_type(L, cl) == LUA_TTABLE) {
                        for (j = 1; lua_geti(L, cl, j) != LUA_TNIL; j++) {
                            push_cond(L, intern, lua_gettop(L), NULL, 0); /* not a table: never */
                            lua_rawseti(L, ct, ++n);
                            lua_pop(L, 1);
                            if (++ncond > MAX_RULES)
                                luaL_error(L, "push: more than %d conditions", MAX_RULES);
                        }
                        lua_pop(L, 1);
                    }
                    lua_pop(L, 1);
                }
                /* actions and their outcome */
                lua_getfield(L, rt, "actions");
                if (lua_type(L, -1) != LUA_TTABLE) {
                    lua_pop(L, 1);
                    lua_newtable(L);
                }
                read_actions(L, lua_gettop(L), &notify, &highlight);
                lua_rawseti(L, actt, nrules + 1);
                lua_pushboolean(L, push_node(L, nintern, ct, n, notify, highlight));
                lua_rawseti(L, newt, nrules + 1);
                lua_rawseti(L, nodet, nrules + 1);
                lua_getfield(L, rt, "rule_id");
                lua_rawseti(L, idt, nrules + 1);
                nrules++;
                lua_pop(L, 2);
            }
            lua_pop(L, 2);
        }
    }
    /* the rule set proper: one block (header, node pointers) */
    {
        Rules *f = (Rules *)lua_newuserdatauv(L, sizeof *f + (size_t)nrules * sizeof(RuleRef), 4);
        int fs = lua_gettop(L);
        memset(f, 0, sizeof *f);
        f->owner = lua_touserdata(L, 1);
        f->rules = (RuleRef *)(void *)(f + 1);
        f->nrules = nrules;
        luaL_setmetatable(L, RULES_MT);
        for (k = 0; k < nrules; k++) {
            RuleRef *ref = &f->rules[k];
            lua_rawgeti(L, nodet, k + 1);
            ref->nd = (Node *)lua_touserdata(L, -1);
            ref->filter = F_NONE;
            lua_rawgeti(L, newt, k + 1);
            if (lua_toboolean(L, -1))
                node_filter(ref->nd, ref);
            lua_pop(L, 2);
        }
        lua_pushvalue(L, 1);
        lua_setiuservalue(L, fs, 1);
        lua_pushvalue(L, nodet);
        lua_setiuservalue(L, fs, 2);
        lua_pushvalue(L, actt);
        lua_setiuservalue(L, fs, 3);
        lua_pushvalue(L, idt);
        lua_setiuservalue(L, fs, 4);
        return 1;
    }
}

/* ---- flattening an event ---- */

static void add_key_part(lua_State *L, Eval *e, size_t poff, size_t plen, const char *k, size_t kn,
                         size_t *off, size_t *len)
{
    size_t need = e->klen + plen + 1 + 2 * kn, i;
    char *d;
    e->keys = (char *)grow(L, e->keys, &e->kcap, need, 1);
    d = e->keys + e->klen;
    *off = e->klen;
    if (plen) {
        memmove(d, e->keys + poff, plen);
        d += plen;
        *d++ = '.';
    }
    for (i = 0; i < kn; i++) {
        if (k[i] == '.' || k[i] == '\\')
            *d++ = '\\';
        *d++ = k[i];
    }
    *len = (size_t)(d - (e->keys + e->klen));
    e->klen += *len;
}

static void set_scalar(lua_State *L, int idx, int *type, const char **s, size_t *slen, lua_Integer *i)
{
    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
        *type = V_STR;
        *s = lua_tolstring(L, idx, slen);
        break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            *type = V_INT;
            *i = lua_tointeger(L, idx);
        } else {
            *type = V_OTHER;
        }
        break;
    case LUA_TBOOLEAN:
        *type = V_BOOL;
        *i = lua_toboolean(L, idx);
        break;
    case LUA_TLIGHTUSERDATA:
        *type = lua_touserdata(L, idx) == NULL ? V_NULL : V_OTHER;
        break;
    default:
        *type = V_OTHER;
    }
}

/* Record the children of the table at idx under the key [poff, poff+plen). */
static void flatten(lua_State *L, Eval *e, int idx, size_t poff, size_t plen, int depth)
{
    if (depth > MAX_DEPTH)
        return;
    luaL_checkstack(L, 4, "push: event too deep");
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        if (lua_type(L, -2) == LUA_TSTRING) {
            size_t kn, off, len, ei;
            const char *k = lua_tolstring(L, -2, &kn);
            Entry *en;
            add_key_part(L, e, poff, plen, k, kn, &off, &len);
            e->ent = (Entry *)grow(L, e->ent, &e->entcap, e->nent + 1, sizeof(Entry));
            ei = e->nent++;
            en = &e->ent[ei];
            en->koff = off;
            en->klen = len;
            en->icount = 0;
            if (lua_type(L, -1) == LUA_TTABLE) {
                int t = lua_gettop(L);
                lua_Integer j;
                en->type = V_TABLE;
                en->ifirst = e->nitems;
                for (j = 1; lua_geti(L, t, j) != LUA_TNIL; j++) {
                    Item *it;
                    e->items = (Item *)grow(L, e->items, &e->itemcap, e->nitems + 1, sizeof(Item));
                    it = &e->items[e->nitems++];
                    set_scalar(L, -1, &it->type, &it->s, &it->slen, &it->i);
                    lua_pop(L, 1);
                }
                lua_pop(L, 1);
                e->ent[ei].icount = e->nitems - e->ent[ei].ifirst;
                flatten(L, e, t, off, len, depth + 1);
            } else {
                set_scalar(L, -1, &en->type, &en->s, &en->slen, &en->i);
            }
        }
        lua_pop(L, 1);
    }
}

static void index_event(lua_State *L, Eval *e, int idx)
{
    size_t i, cap = 16;
    e->nent = e->klen = e->nitems = 0;
    e->has_body = e->words_built = 0;
    if (lua_type(L, idx) == LUA_TTABLE)
        flatten(L, e, idx, 0, 0, 1);
    while (cap < 2 * e->nent)
        cap *= 2;
    e->tab = (size_t *)grow(L, e->tab, &e->tabcap, cap, sizeof(size_t));
    memset(e->tab, 0, cap * sizeof(size_t));
    for (i = 0; i < e->nent; i++) {
        Entry *en = &e->ent[i];
        size_t h;
        en->hash = fnv(e->keys + en->koff, en->klen);
        for (h = (size_t)en->hash & (cap - 1); e->tab[h]; h = (h + 1) & (cap - 1))
            ;
        e->tab[h] = i + 1;
    }
    e->tabcap = cap; /* the table in use is exactly cap slots */
    for (i = 0; i < e->nent; i++) {
        Entry *en = &e->ent[i];
        if (en->klen == 12 && memcmp(e->keys + en->koff, "content.body", 12) == 0 && en->type == V_STR) {
            e->has_body = 1;
            e->body = en->s;
            e->bodylen = en->slen;
        }
    }
}

static Entry *find(Eval *e, const char *k, size_t n, uint64_t hash)
{
    size_t h, mask = e->tabcap - 1;
    for (h = (size_t)hash & mask; e->tab[h]; h = (h + 1) & mask) {
        Entry *en = &e->ent[e->tab[h] - 1];
        if (en->hash == hash && en->klen == n && memcmp(e->keys + en->koff, k, n) == 0)
            return en;
    }
    return NULL;
}

/* ---- matching ---- */

static void build_words(lua_State *L, Eval *e)
{
    size_t i, n = e->bodylen, nw = 0, cap = 16;
    const char *b = e->body;
    e->fold = (char *)grow(L, e->fold, &e->foldcap, n + 1, 1);
    for (i = 0; i < n; i++) {
        e->fold[i] = (char)fold_c((unsigned char)b[i]);
        if (is_word((unsigned char)b[i]) && (i == 0 || !is_word((unsigned char)b[i - 1])))
            nw++;
    }
    while (cap < 2 * nw + 2)
        cap *= 2;
    e->words = (Word *)grow(L, e->words, &e->wordcap, cap, sizeof(Word));
    memset(e->words, 0, cap * sizeof(Word));
    for (i = 0; i < n;) {
        size_t s, h;
        uint64_t hash;
        if (!is_word((unsigned char)e->fold[i])) {
            i++;
            continue;
        }
        for (s = i; i < n && is_word((unsigned char)e->fold[i]); i++)
            ;
        hash = fnv(e->fold + s, i - s);
        for (h = (size_t)hash & (cap - 1); e->words[h].len; h = (h + 1) & (cap - 1))
            if (e->words[h].hash == hash && e->words[h].len == i - s
                && memcmp(e->fold + e->words[h].off, e->fold + s, i - s) == 0)
                break;
        e->words[h].off = s;
        e->words[h].len = i - s;
        e->words[h].hash = hash;
    }
    e->wordcap = cap;
    e->words_built = 1;
}

static int has_word(lua_State *L, Eval *e, const char *p, size_t n, uint64_t hash)
{
    size_t h, mask;
    if (!e->words_built)
        build_words(L, e);
    mask = e->wordcap - 1;
    for (h = (size_t)hash & mask; e->words[h].len; h = (h + 1) & mask)
        if (e->words[h].hash == hash && e->words[h].len == n && memcmp(e->fold + e->words[h].off, p, n) == 0)
            return 1;
    return 0;
}

/* The first occurrence of p[0..m) (m > 0) in h[0..n), or NULL. */
static const char *find_bytes(const char *h, size_t n, const char *p, size_t m)
{
    const char *end = h + n;
    while ((size_t)(end - h) >= m) {
        const char *q = (const char *)memchr(h, p[0], (size_t)(end - h) - m + 1);
        if (q == NULL)
            return NULL;
        if (memcmp(q, p, m) == 0)
            return q;
        h = q + 1;
    }
    return NULL;
}

/* The folded literal p occurs in the body bounded by non-word bytes or the
 * ends. */
static int body_search(lua_State *L, Eval *e, const char *p, size_t m)
{
    const char *b;
    size_t n = e->bodylen, i = 0;
    if (!e->words_built)
        build_words(L, e);
    b = e->fold;
    if (m > n)
        return 0;
    while (i + m <= n) {
        const char *q;
        size_t at;
        if (m == 0) {
            q = b + i;
        } else {
            q = find_bytes(b + i, n - i, p, m);
            if (q == NULL)
                return 0;
        }
        at = (size_t)(q - b);
        if ((at == 0 || !is_word((unsigned char)b[at - 1])) && (at + m == n || !is_word((unsigned char)b[at + m])))
            return 1;
        i = at + 1;
    }
    return 0;
}

static int body_literal(lua_State *L, Eval *e, const char *p, size_t n, uint64_t hash, int allword)
{
    if (!e->has_body)
        return 0;
    return allword ? has_word(L, e, p, n, hash) : body_search(L, e, p, n);
}

static int same_item(int type, const char *s, size_t slen, lua_Integer i, const Cond *c)
{
    if (type != c->vtype)
        return 0;
    switch (type) {
    case V_NULL:
        return 1;
    case V_STR:
        return slen == c->patlen && memcmp(s, c->pat, slen) == 0;
    case V_INT:
    case V_BOOL:
        return i == c->ival;
    default:
        return 0;
    }
}

/* The stack of an evaluating call: ctx fields read through these indexes. */
typedef struct {
    int member_count, sender_power, notifications;
} Ctx;

static int test_cond(lua_State *L, Eval *e, Cond *c, const Ctx *x)
{
    Entry *en;
    switch (c->kind) {
    case K_MATCH:
        en = find(e, c->key, c->keylen, c->keyhash);
        if (en == NULL || en->type != V_STR)
            return 0;
        if (c->mode == G_REGEX)
            return loom_regex_test(c->re, en->s, en->slen) == 1;
        if (c->mode == G_WHOLE) {
            size_t i;
            if (en->slen != c->patlen)
                return 0;
            for (i = 0; i < en->slen; i++)
                if (fold_c((unsigned char)en->s[i]) != (unsigned char)c->pat[i])
                    return 0;
            return 1;
        }
        return body_literal(L, e, c->pat, c->patlen, c->pathash, c->mode == G_WORD);
    case K_IS:
        en = find(e, c->key, c->keylen, c->keyhash);
        return en != NULL && same_item(en->type, en->s, en->slen, en->i, c);
    case K_CONTAINS: {
        size_t j;
        en = find(e, c->key, c->keylen, c->keyhash);
        if (en == NULL || en->type != V_TABLE)
            return 0;
        for (j = 0; j < en->icount; j++) {
            Item *it = &e->items[en->ifirst + j];
            if (same_item(it->type, it->s, it->slen, it->i, c))
                return 1;
        }
        return 0;
    }
    case K_COUNT: {
        int r;
        static const int ops[] = {LUA_OPEQ, LUA_OPLT, LUA_OPLT, LUA_OPLE, LUA_OPLE};
        if (lua_type(L, x->member_count) != LUA_TNUMBER)
            return 0;
        lua_pushinteger(L, c->n);
        if (c->op == 2 || c->op == 4) /* m > n is n < m */
            r = lua_compare(L, -1, x->member_count, ops[c->op]);
        else
            r = lua_compare(L, x->member_count, -1, ops[c->op]);
        lua_pop(L, 1);
        return r;
    }
    case K_PERM: {
        int r;
        if (lua_type(L, x->notifications) == LUA_TTABLE) {
            lua_pushlstring(L, c->pat, c->patlen);
            lua_gettable(L, x->notifications);
        } else {
            lua_pushnil(L);
        }
        if (lua_type(L, -1) != LUA_TNUMBER) {
            lua_pop(L, 1);
            lua_pushinteger(L, 50);
        }
        r = lua_type(L, x->sender_power) == LUA_TNUMBER && lua_compare(L, -1, x->sender_power, LUA_OPLE);
        lua_pop(L, 1);
        return r;
    }
    default:
        return 0;
    }
}

/* The display name (a string, or NULL) as words of content.body. */
static int test_display(lua_State *L, Eval *e, const char *name, size_t n)
{
    char buf[MAX_GLOB];
    size_t i;
    int allword = 1;
    if (name == NULL || n == 0 || n > MAX_GLOB || !e->has_body || memchr(name, '\0', n) != NULL)
        return 0;
    for (i = 0; i < n; i++) {
        buf[i] = (char)fold_c((unsigned char)name[i]);
        if (!is_word((unsigned char)name[i]))
            allword = 0;
    }
    return body_literal(L, e, buf, n, allword ? fnv(buf, n) : 0, allword);
}

/* A member's slot in ev:evaluate's room cache (see there). */
typedef struct {
    const void *rules;
    const void *user;
    int hit;
    int nfilter;       /* the name's first word is known: nhash */
    const void *name;  /* the display name's string, kept in room._rows[5][i] */
    uint64_t nhash;
} Slot;

/* A member's display name, read from the names table only when a rule
 * needs it, and its bytes only when its first word is in the body. */
typedef struct {
    const char *name;
    size_t len;
    int fetched; /* the names table was read: has */
    int has;     /* the member has a name (a string) */
    int bytes;   /* name and len are set */
    int names;   /* stack index of the names table, 0: none */
    lua_Integer i;
    Slot *slot; /* ev:evaluate: the member's slot, and the table keeping */
    int keep;   /* names alive (stack index) */
    int filter; /* the name's first word has hash nm->hash */
    uint64_t hash;
} Name;

/* A name found as words of the body (test_display) starts, when its first
 * byte is a word byte, with a whole word of the body: the name's leading
 * run of word bytes (bounded by the name's next, non-word, byte or its
 * end). Its folded hash lets most members be answered without the name's
 * bytes. */
static void name_filter(const char *name, size_t n, int *filter, uint64_t *hash)
{
    char buf[MAX_GLOB];
    size_t i;
    *filter = 0;
    if (name == NULL || n == 0 || n > MAX_GLOB || !is_word((unsigned char)name[0]))
        return;
    for (i = 0; i < n && is_word((unsigned char)name[i]); i++)
        buf[i] = (char)fold_c((unsigned char)name[i]);
    *filter = 1;
    *hash = fnv(buf, i);
}

static void fetch_name(lua_State *L, Name *nm)
{
    nm->fetched = 1;
    if (nm->names == 0)
        return;
    if (lua_rawgeti(L, nm->names, nm->i) == LUA_TSTRING) {
        nm->has = 1;
        if (nm->slot != NULL) {
            const void *ptr = lua_topointer(L, -1);
            if (ptr != nm->slot->name) {
                size_t len;
                const char *name = lua_tolstring(L, -1, &len);
                name_filter(name, len, &nm->slot->nfilter, &nm->slot->nhash);
                nm->slot->name = ptr;
                lua_pushvalue(L, -1);
                lua_rawseti(L, nm->keep, nm->i);
            }
            nm->filter = nm->slot->nfilter;
            nm->hash = nm->slot->nhash;
        } else {
            nm->name = lua_tolstring(L, -1, &nm->len); /* the names table keeps it alive */
            nm->bytes = 1;
        }
    }
    lua_pop(L, 1);
}

static void fetch_bytes(lua_State *L, Name *nm)
{
    nm->bytes = 1;
    lua_rawgeti(L, nm->names, nm->i);
    nm->name = lua_tolstring(L, -1, &nm->len); /* the names table keeps it alive */
    lua_pop(L, 1);
}

/* Some key of the event has this hash (find's probe, hashes only), compared
 * on the bits of `bits` (all 64, or the low 32 that a rule reference keeps). */
static int key_hash_seen(const Eval *e, uint64_t hash, uint64_t bits)
{
    size_t h, mask = e->tabcap - 1;
    if (bits != UINT64_MAX && mask > bits)
        return 1; /* the probe would start elsewhere */
    for (h = (size_t)hash & mask; e->tab[h]; h = (h + 1) & mask)
        if ((e->ent[e->tab[h] - 1].hash & bits) == hash)
            return 1;
    return 0;
}

/* Some word of the body has this hash (has_word's probe, hashes only),
 * compared as in key_hash_seen. */
static int word_hash_seen(lua_State *L, Eval *e, uint64_t hash, uint64_t bits)
{
    size_t h, mask;
    if (!e->has_body)
        return 0;
    if (!e->words_built)
        build_words(L, e);
    mask = e->wordcap - 1;
    if (bits != UINT64_MAX && mask > bits)
        return 1;
    for (h = (size_t)hash & mask; e->words[h].len; h = (h + 1) & mask)
        if ((e->words[h].hash & bits) == hash)
            return 1;
    return 0;
}

/* False when the condition cannot hold, from its Pre alone (K_MATCH,
 * K_IS, K_CONTAINS: no such key; a G_WORD glob: no such word). */
static int may_hold(lua_State *L, Eval *e, const Pre *p)
{
    switch (p->kind) {
    case K_MATCH:
        if (!key_hash_seen(e, p->keyhash, UINT64_MAX))
            return 0;
        return p->mode != G_WORD || word_hash_seen(L, e, p->pathash, UINT64_MAX);
    case K_IS:
    case K_CONTAINS:
        return key_hash_seen(e, p->keyhash, UINT64_MAX);
    default:
        return 1;
    }
}

/* The member's display name is found in the body. */
static int display_holds(lua_State *L, Eval *e, Name *nm)
{
    if (!e->has_body)
        return 0;
    if (!nm->fetched)
        fetch_name(L, nm);
    if (!nm->has || (nm->filter && !word_hash_seen(L, e, nm->hash, UINT64_MAX)))
        return 0;
    if (!nm->bytes)
        fetch_bytes(L, nm);
    return test_display(L, e, nm->name, nm->len);
}

/* All the node's conditions hold: the member's display name last. */
static int test_node(lua_State *L, Eval *e, const Node *nd, Name *nm, const Ctx *x)
{
    int j;
    for (j = 0; j < nd->ncond; j++) {
        const Pre *p = &nd->pre[j];
        Cond *c;
        if (p->kind == K_DISPLAY)
            continue;
        if (!may_hold(L, e, p))
            return 0;
        c = nd->conds[j];
        if (c->gen != e->gen) {
            c->gen = e->gen;
            c->result = test_cond(L, e, c, x);
        }
        if (!c->result)
            return 0;
    }
    return !nd->display || display_holds(L, e, nm);
}

/* The index (from 1) of the first rule that matches, 0 when none does. */
static int run_rules(lua_State *L, Eval *e, Rules *r, Name *nm, const Ctx *x)
{
    int i;
    uint64_t gen = e->gen;
    for (i = 0; i < r->nrules; i++) {
        const RuleRef *ref = &r->rules[i];
        Node *nd;
        int ok;
        if (ref->filter == F_KEY ? !key_hash_seen(e, ref->hash, UINT32_MAX)
            : ref->filter == F_WORD && !word_hash_seen(L, e, ref->hash, UINT32_MAX))
            continue;
        nd = ref->nd;
        if (nd->gen == gen) {
            ok = nd->result;
        } else {
            ok = test_node(L, e, nd, nm, x);
            if (!nd->display) {
                nd->gen = gen;
                nd->result = ok;
            }
        }
        if (ok)
            return i + 1;
    }
    return 0;
}

static Rules *check_rules(lua_State *L, int i, Eval *e)
{
    Rules *r = (Rules *)luaL_checkudata(L, i, RULES_MT);
    luaL_argcheck(L, r->owner == (void *)e, i, "rule set compiled by another evaluator");
    return r;
}

static void read_ctx(lua_State *L, int t, Ctx *x)
{
    luaL_checkstack(L, 4, "push");
    lua_getfield(L, t, "member_count");
    x->member_count = lua_gettop(L);
    lua_getfield(L, t, "sender_power");
    x->sender_power = lua_gettop(L);
    lua_getfield(L, t, "notifications");
    x->notifications = lua_gettop(L);
}

/* ev:run(rules, event, ctx) -> actions, rule_id | nil: as loom.push.eval.run
 * (ctx: display_name, member_count, sender_power, notifications). */
static int l_run(lua_State *L)
{
    Eval *e = check_eval(L, 1);
    Rules *r = check_rules(L, 2, e);
    Ctx x;
    Name nm;
    int hit;
    luaL_checktype(L, 4, LUA_TTABLE);
    lua_settop(L, 4);
    read_ctx(L, 4, &x);
    memset(&nm, 0, sizeof nm);
    nm.fetched = nm.bytes = 1;
    lua_getfield(L, 4, "display_name");
    if (lua_type(L, -1) == LUA_TSTRING) {
        nm.name = lua_tolstring(L, -1, &nm.len);
        nm.has = 1;
    }
    e->gen++;
    index_event(L, e, 3);
    hit = run_rules(L, e, r, &nm, &x);
    if (hit == 0) {
        lua_pushnil(L);
        return 1;
    }
    lua_getiuservalue(L, 2, 3);
    lua_rawgeti(L, -1, hit);
    lua_getiuservalue(L, 2, 4);
    lua_rawgeti(L, -1, hit);
    lua_remove(L, -2);
    return 2;
}

/* room._rows[3]: per member, what the C side knows (a loom.PushRoomCache,
 * plain memory): the rule set last checked as this evaluator's (kept alive
 * by room._rows[2][i]), and the rule and user (a string's address, kept
 * alive by the row) of the row in room._rows[1][i]. */
typedef struct {
    lua_Integer n;
    Slot slot[1];
} RoomCache;

static RoomCache *room_cache(lua_State *L, int cache_t, lua_Integer n)
{
    RoomCache *c = (RoomCache *)luaL_testudata(L, -1, CACHE_MT);
    if (c == NULL || c->n < n) {
        size_t want = (size_t)(n > 0 ? n : 1);
        if (want > ((size_t)-1 - sizeof(RoomCache)) / sizeof(Slot))
            luaL_error(L, "push: room too large");
        lua_pop(L, 1);
        c = (RoomCache *)lua_newuserdatauv(L, sizeof(RoomCache) + (want - 1) * sizeof(Slot), 0);
        memset(c, 0, sizeof(RoomCache) + (want - 1) * sizeof(Slot));
        c->n = (lua_Integer)want;
        luaL_setmetatable(L, CACHE_MT);
        lua_pushvalue(L, -1);
        lua_rawseti(L, cache_t, 3);
    }
    return c;
}

/* ev:evaluate(event, room) -> rows: room.rules[i] (loom.PushRules),
 * room.names[i] (display name or nil), room.users[i] (put in the rows) for
 * i = 1..room.count (default #room.rules) except room.skip (an index: the
 * sender); room.member_count,
 * room.sender_power, room.notifications as in run. Rows: { user, highlight,
 * actions } for every member whose matching rule notifies. A member's row is
 * kept in room._rows (made here) and given again by later calls while its
 * user, rule set and rule stay the same: rows are read-only. */
static int l_evaluate(lua_State *L)
{
    Eval *e = check_eval(L, 1);
    Ctx x;
    lua_Integer n, i, skip, out = 0;
    int rt, nt, ut, rows, mt, rowmt, top, names_ok, cache_t, crows, csets, keep;
    lua_Integer last;
    RoomCache *cache;
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_settop(L, 3);
    read_ctx(L, 3, &x);
    lua_getfield(L, 3, "rules");
    rt = lua_gettop(L);
    luaL_argcheck(L, lua_type(L, rt) == LUA_TTABLE, 3, "room.rules must be a table");
    lua_getfield(L, 3, "names");
    nt = lua_gettop(L);
    lua_getfield(L, 3, "users");
    ut = lua_gettop(L);
    luaL_argcheck(L, lua_type(L, ut) == LUA_TTABLE, 3, "room.users must be a table");
    lua_getfield(L, 3, "count");
    n = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : (lua_Integer)lua_rawlen(L, rt);
    lua_getfield(L, 3, "skip");
    skip = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 0;
    lua_pop(L, 2);
    e->gen++;
    index_event(L, e, 2);
    names_ok = lua_type(L, nt) == LUA_TTABLE;
    luaL_getmetatable(L, RULES_MT);
    mt = lua_gettop(L);
    /* room._rows: the rows made by earlier calls, by member */
    if (lua_getfield(L, 3, "_rows") != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_createtable(L, 5, 0);
        lua_createtable(L, n > 0 && n < (1 << 24) ? (int)n : 0, 0);
        lua_rawseti(L, -2, 5);
        for (int k = 1; k <= 2; k++) {
            lua_createtable(L, n > 0 && n < (1 << 24) ? (int)n : 0, 0);
            lua_rawseti(L, -2, k);
        }
        lua_pushvalue(L, -1);
        lua_setfield(L, 3, "_rows");
    }
    cache_t = lua_gettop(L);
    luaL_checkstack(L, 12, "push");
    lua_rawgeti(L, cache_t, 1);
    crows = lua_gettop(L);
    lua_rawgeti(L, cache_t, 2);
    csets = lua_gettop(L);
    lua_rawgeti(L, cache_t, 5);
    keep = lua_gettop(L);
    luaL_argcheck(L, lua_type(L, crows) == LUA_TTABLE && lua_type(L, csets) == LUA_TTABLE
                  && lua_type(L, keep) == LUA_TTABLE,
                  3, "room._rows is not the evaluator's");
    lua_rawgeti(L, cache_t, 3);
    cache = room_cache(L, cache_t, n);
    luaL_getmetatable(L, ROW_MT);
    rowmt = lua_gettop(L);
    /* sized as the last call's rows (room._rows[4]): one allocation */
    lua_rawgeti(L, cache_t, 4);
    last = lua_tointeger(L, -1);
    lua_pop(L, 1);
    lua_createtable(L, last > 0 && last <= n && last < (1 << 24) ? (int)last : 0, 0);
    rows = lua_gettop(L);
    top = rows;
    for (i = 1; i <= n; i++) {
        Rules *r;
        Slot *s = &cache->slot[i - 1];
        Name nm;
        int hit, same_set = 0;
        const Node *nd;
        if (i == skip)
            continue;
        lua_rawgeti(L, rt, i);
        if (s->rules != NULL) {
            /* the slot's rule set is room._rows[2][i] (kept alive there):
             * compared as values, without reading the userdata */
            lua_rawgeti(L, csets, i);
            same_set = lua_rawequal(L, -1, -2);
            lua_pop(L, 1);
        }
        if (same_set) {
            r = (Rules *)s->rules;
            lua_pop(L, 1);
        } else {
            /* checked once per member and rule set */
            r = lua_type(L, -1) == LUA_TUSERDATA ? (Rules *)lua_touserdata(L, -1) : NULL;
            if (r == NULL || !lua_getmetatable(L, -1) || !lua_rawequal(L, -1, mt) || r->owner != (void *)e)
                luaL_error(L, "room.rules[%I]: a loom.PushRules of this evaluator expected", i);
            lua_pop(L, 1);
            lua_rawseti(L, csets, i);
            s->rules = r;
            s->hit = 0;
            s->user = NULL;
        }
        memset(&nm, 0, sizeof nm);
        nm.names = names_ok ? nt : 0;
        nm.i = i;
        nm.slot = s;
        nm.keep = keep;
        hit = run_rules(L, e, r, &nm, &x);
        nd = hit ? r->rules[hit - 1].nd : NULL;
        if (nd && nd->notify) {
            /* the row of (member i, rule set, rule, user) is made once and
             * kept in room._rows for later events: read-only (its metatable
             * refuses new fields) */
            int same = 0;
            lua_rawgeti(L, ut, i);
            if (s->hit == hit) {
                if (lua_topointer(L, -1) == s->user && s->user != NULL) {
                    same = 1;
                    lua_rawgeti(L, crows, i);
                } else if (lua_rawgeti(L, crows, i) == LUA_TTABLE) {
                    lua_rawgeti(L, -1, 1);
                    same = lua_rawequal(L, -1, -3);
                    lua_pop(L, 1);
                }
            }
            if (!same) {
                lua_settop(L, top + 1);
                lua_createtable(L, 3, 0);
                lua_pushvalue(L, -2);
                lua_rawseti(L, -2, 1);
                lua_pushboolean(L, nd->highlight);
                lua_rawseti(L, -2, 2);
                lua_rawgeti(L, rt, i);
                lua_getiuservalue(L, -1, 3);
                lua_rawgeti(L, -1, hit);
                lua_rawseti(L, -4, 3);
                lua_pop(L, 2);
                lua_pushvalue(L, rowmt);
                lua_setmetatable(L, -2);
                lua_pushvalue(L, -1);
                lua_rawseti(L, crows, i);
                s->hit = hit;
                s->user = lua_type(L, top + 1) == LUA_TSTRING ? lua_topointer(L, top + 1) : NULL;
            }
            lua_rawseti(L, rows, ++out);
            lua_settop(L, top);
        }
    }
    lua_pushinteger(L, out);
    lua_rawseti(L, cache_t, 4);
    return 1;
}

/* ---- the evaluator ---- */

static int eval_gc(lua_State *L)
{
    Eval *e = (Eval *)lua_touserdata(L, 1);
    if (e) {
        free(e->ent);
        free(e->keys);
        free(e->tab);
        free(e->items);
        free(e->fold);
        free(e->words);
        memset(e, 0, sizeof *e);
    }
    return 0;
}

static int l_new(lua_State *L)
{
    Eval *e = (Eval *)lua_newuserdatauv(L, sizeof *e, 2);
    int k;
    memset(e, 0, sizeof *e);
    luaL_setmetatable(L, EVAL_MT);
    /* 1: conditions by canonical text, 2: rule nodes by conditions and
     * outcome; weak values */
    for (k = 1; k <= 2; k++) {
        lua_newtable(L);
        lua_createtable(L, 0, 1);
        lua_pushliteral(L, "v");
        lua_setfield(L, -2, "__mode");
        lua_setmetatable(L, -2);
        lua_setiuservalue(L, -2, k);
    }
    return 1;
}

static int eval_tostring(lua_State *L)
{
    check_eval(L, 1);
    lua_pushfstring(L, EVAL_MT " (%p)", lua_topointer(L, 1));
    return 1;
}

static int rules_tostring(lua_State *L)
{
    Rules *r = (Rules *)luaL_checkudata(L, 1, RULES_MT);
    lua_pushfstring(L, RULES_MT " (%d rules)", r->nrules);
    return 1;
}

static int rules_len(lua_State *L)
{
    Rules *r = (Rules *)luaL_checkudata(L, 1, RULES_MT);
    lua_pushinteger(L, r->nrules);
    return 1;
}

static int cond_tostring(lua_State *L)
{
    luaL_checkudata(L, 1, COND_MT);
    lua_pushliteral(L, COND_MT);
    return 1;
}

static const luaL_Reg eval_methods[] = {
    {"compile", l_compile},
    {"run", l_run},
    {"evaluate", l_evaluate},
    {NULL, NULL}
};

static const luaL_Reg eval_meta[] = {
    {"__gc", eval_gc},
    {"__tostring", eval_tostring},
    {NULL, NULL}
};

static const luaL_Reg rules_meta[] = {
    {"__len", rules_len},
    {"__tostring", rules_tostring},
    {NULL, NULL}
};

static const luaL_Reg cond_meta[] = {
    {"__tostring", cond_tostring},
    {NULL, NULL}
};

static int row_newindex(lua_State *L)
{
    return luaL_error(L, "push rows are shared between events and read-only");
}

static const luaL_Reg row_meta[] = {
    {"__newindex", row_newindex},
    {NULL, NULL}
};

static const luaL_Reg funcs[] = {
    {"new", l_new},
    {NULL, NULL}
};

void loom_open_push(lua_State *L)
{
    loom_new_type(L, EVAL_MT, eval_methods, eval_meta);
    loom_new_type(L, RULES_MT, NULL, rules_meta);
    loom_new_type(L, COND_MT, NULL, cond_meta);
    loom_new_type(L, NODE_MT, NULL, NULL);
    loom_new_type(L, ROW_MT, NULL, row_meta);
    loom_new_type(L, CACHE_MT, NULL, NULL);
    luaL_newlib(L, funcs);
    lua_setfield(L, -2, "push");
}
