/* loom.core.regex — POSIX extended regular expressions (regcomp/regexec),
 * used for appservice namespaces.
 *
 * Anchored mode must match the whole subject. It has the meaning of compiling
 * ^(pattern)$, but is implemented by checking that the leftmost-longest match
 * spans the whole subject: textual wrapping would let a stray ')' in the
 * pattern (a literal in ERE) close our '(' and change the meaning.
 * Subjects are matched with REG_STARTEND, so embedded NULs are ordinary bytes.
 */
#include <regex.h>
#include <string.h>

#include "loom.h"

#define REGEX_MT "loom.Regex"
#define REGEX_MAX_PATTERN 4096
#define REGEX_MAX_WEIGHT 100000 /* atoms after expanding {n,m}: ~20 MB in glibc */
#define REGEX_MAX_NULLABLE 2000 /* copied nodes that can match empty: ~30 MB */
#define REGEX_MAX_DEPTH 256     /* nesting of ( ) */
#define REGEX_MAX_COUNT 1000000 /* interval bounds are clamped here while scanning */

typedef struct {
    regex_t re;
    int compiled; /* re is valid and must be regfree'd */
    int anchored;
} Regex;

static Regex *check_regex(lua_State *L, int i)
{
    Regex *r = (Regex *)luaL_checkudata(L, i, REGEX_MT);
    luaL_argcheck(L, r->compiled, i, "regex not compiled");
    return r;
}

/* Index just past the bracket expression that starts at p[i] == '[' (len when
 * unterminated; regcomp reports that). */
static size_t skip_bracket(const char *p, size_t len, size_t i)
{
    size_t j = i + 1, k;
    if (j < len && p[j] == '^')
        j++;
    if (j < len && p[j] == ']')
        j++;
    while (j < len) {
        if (p[j] == '[' && j + 1 < len && (p[j + 1] == ':' || p[j + 1] == '=' || p[j + 1] == '.')) {
            for (k = j + 2; k + 1 < len; k++)
                if (p[k] == p[j + 1] && p[k + 1] == ']')
                    break;
            j = k + 1 < len ? k + 2 : j + 1;
        } else if (p[j] == ']') {
            return j + 1;
        } else {
            j++;
        }
    }
    return len;
}

/* Parse an interval {n}, {n,}, {,m} (glibc reads it as {0,m}) or {n,m} at
 * p[i] == '{'. Returns the index past it and stores n, the number of copies
 * glibc builds ({n,} counts n + 1) and how many of them are optional, or
 * returns 0 when the text is not an interval. */
static size_t parse_interval(const char *p, size_t len, size_t i, uint64_t *lop,
                             uint64_t *copies, uint64_t *optional)
{
    uint64_t lo = 0, hi = 0;
    size_t j = i + 1;
    int have_lo = 0, have_hi = 0, comma = 0;
    for (; j < len && p[j] >= '0' && p[j] <= '9'; j++, have_lo = 1)
        if (lo < REGEX_MAX_COUNT)
            lo = lo * 10 + (uint64_t)(p[j] - '0');
    if (j < len && p[j] == ',') {
        comma = 1;
        for (j++; j < len && p[j] >= '0' && p[j] <= '9'; j++, have_hi = 1)
            if (hi < REGEX_MAX_COUNT)
                hi = hi * 10 + (uint64_t)(p[j] - '0');
    }
    if (j >= len || p[j] != '}' || (!have_lo && !have_hi))
        return 0;
    if (!comma)
        hi = lo;
    else if (!have_hi)
        hi = lo + 1;
    *lop = lo;
    *optional = hi > lo ? hi - lo : 0;
    *copies = hi > lo ? hi : lo;
    if (*copies == 0)
        *copies = 1;
    return j + 1;
}

/* glibc's regcomp copies the operand of x+ and x{n,m} (up to m times; nested
 * repetitions multiply), and the epsilon closures it computes grow with the
 * square of the number of copied *nullable* nodes (x* copied many times). A
 * short pattern could so make it allocate gigabytes. This scan estimates both
 * conservatively and rejects patterns beyond the budgets. It also rejects
 * back-references (not POSIX ERE; they make regexec exponential) and stacked
 * repetition operators like a** or a+? (undefined in POSIX ERE; PCRE reads
 * +? as lazy, glibc as (a+)?, a different language). */
typedef struct {
    uint64_t total;  /* expanded weight of this group so far */
    int branch_null; /* every atom of the current branch can match empty */
    int any_null;    /* an earlier branch can match empty */
    uint64_t nullw;  /* nullable copies built inside this group so far */
} Level;

typedef struct {
    Level lv[REGEX_MAX_DEPTH + 1];
    int depth;
    uint64_t last;   /* weight of the last atom (0: none, quantifier invalid) */
    int last_null;   /* the last atom can match empty */
    int pre_null;    /* branch_null before the last atom */
    int quantified;  /* the last atom already carries a repetition operator */
    uint64_t last_nullw; /* nullable copies inside the last atom */
} Scan;

static void level_init(Level *lv)
{
    lv->total = 0;
    lv->branch_null = 1;
    lv->any_null = 0;
    lv->nullw = 0;
}

/* w: expanded weight; nul: the atom can match empty; nw: nullable copies
 * built inside it (a group's tally). */
static void scan_atom(Scan *sc, uint64_t w, int nul, uint64_t nw)
{
    Level *lv = &sc->lv[sc->depth];
    sc->last = w;
    sc->last_null = nul;
    sc->last_nullw = nw;
    sc->pre_null = lv->branch_null;
    lv->branch_null = sc->pre_null && nul;
    lv->total += w;
    lv->nullw += nw;
    sc->quantified = 0;
}

/* copies: how many times glibc copies the operand; optional: how many of
 * those copies are optional (x? nodes: m - n for {n,m}, one for {n,}, x+,
 * x* and x?); nul: whether the result can match empty.
 *
 * glibc builds x{n,m} as n copies of x followed by m - n left-nested
 * optional copies ((x?x)?x)?..., and every one of those is a node that can
 * match empty whose epsilon closure reaches all the others. So the nullable
 * tally of a repetition is every copy when x itself can match empty, else
 * the nullable nodes inside x times the copies plus the optional copies. */
static const char *scan_repeat(Scan *sc, uint64_t copies, uint64_t optional, int nul)
{
    Level *lv = &sc->lv[sc->depth];
    uint64_t nw;
    if (sc->last == 0)
        return NULL; /* nothing to repeat: regcomp reports it */
    if (sc->quantified)
        return "stacked repetition operators (like a** or a+?) are not supported";
    nw = sc->last_null ? sc->last * copies : sc->last_nullw * copies + optional;
    lv->nullw += nw - sc->last_nullw;
    sc->last_nullw = nw;
    if (lv->nullw > REGEX_MAX_NULLABLE)
        return "pattern too complex (repeats an operand that can match empty too often)";
    lv->total += sc->last * (copies - 1);
    sc->last *= copies;
    sc->last_null = nul;
    lv->branch_null = sc->pre_null && nul;
    sc->quantified = 1;
    return NULL;
}

static const char *check_complexity(const char *p, size_t len)
{
    Scan sc;
    const char *why = NULL;
    uint64_t copies = 0, lo = 0, optional = 0;
    size_t i = 0, next;
    sc.depth = 0;
    level_init(&sc.lv[0]);
    sc.last = 0;
    sc.last_null = sc.pre_null = 1;
    sc.quantified = 0;
    sc.last_nullw = 0;
    while (i < len && why == NULL) {
        switch (p[i]) {
        case '\\':
            if (i + 1 < len && p[i + 1] >= '1' && p[i + 1] <= '9')
                return "back-references are not supported";
            /* \b \B \< \> \` \' are zero-width */
            scan_atom(&sc, 1, i + 1 < len && strchr("bB<>`'", p[i + 1]) != NULL, 0);
            i += 2;
            break;
        case '[':
            i = skip_bracket(p, len, i);
            scan_atom(&sc, 1, 0, 0);
            break;
        case '^':
        case '$':
            scan_atom(&sc, 1, 1, 0);
            i++;
            break;
        case '(':
            if (sc.depth == REGEX_MAX_DEPTH)
                return "pattern nests groups too deeply";
            sc.depth++;
            level_init(&sc.lv[sc.depth]);
            sc.last = 0;
            sc.quantified = 0;
            i++;
            break;
        case ')':
            if (sc.depth == 0) { /* a literal in ERE */
                scan_atom(&sc, 1, 0, 0);
            } else {
                Level *in = &sc.lv[sc.depth--];
                scan_atom(&sc, in->total ? in->total : 1, in->any_null || in->branch_null, in->nullw);
            }
            i++;
            break;
        case '|':
            sc.lv[sc.depth].any_null |= sc.lv[sc.depth].branch_null;
            sc.lv[sc.depth].branch_null = 1;
            sc.last = 0;
            sc.quantified = 0;
            i++;
            break;
        case '*':
        case '?':
            why = scan_repeat(&sc, 1, 1, 1);
            i++;
            break;
        case '+': /* glibc builds x+ as x x* */
            why = scan_repeat(&sc, 2, 1, sc.last_null);
            i++;
            break;
        case '{':
            next = parse_interval(p, len, i, &lo, &copies, &optional);
            if (next) {
                why = scan_repeat(&sc, copies, optional, lo == 0 || sc.last_null);
                i = next;
            } else {
                scan_atom(&sc, 1, 0, 0);
                i++;
            }
            break;
        default:
            scan_atom(&sc, 1, 0, 0);
            i++;
            break;
        }
        if (why == NULL && sc.lv[sc.depth].total > REGEX_MAX_WEIGHT)
            why = "pattern too complex (repetition expands too far)";
    }
    return why;
}


int loom_regex_new(lua_State *L, const char *pat, size_t len, int anchored, int icase)
{
    int flags, rc;
    const char *why;
    Regex *r;
    if (len > REGEX_MAX_PATTERN)
        return loom_fail(L, "bad_regex", "pattern longer than %d bytes", REGEX_MAX_PATTERN);
    if (strlen(pat) != len)
        return loom_fail(L, "bad_regex", "pattern contains a NUL byte");
    if ((why = check_complexity(pat, len)) != NULL)
        return loom_fail(L, "bad_regex", "%s", why);

    luaL_checkstack(L, 3, "regex");
    r = (Regex *)lua_newuserdatauv(L, sizeof *r, 1);
    r->compiled = 0;
    r->anchored = anchored;
    luaL_setmetatable(L, REGEX_MT);
    lua_pushlstring(L, pat, len);
    lua_setiuservalue(L, -2, 1);

    /* anchored mode needs the match span, so it cannot use REG_NOSUB */
    flags = REG_EXTENDED | (anchored ? 0 : REG_NOSUB) | (icase ? REG_ICASE : 0);
    rc = regcomp(&r->re, pat, flags);
    if (rc != 0) {
        char msg[256];
        regerror(rc, &r->re, msg, sizeof msg);
        return loom_fail(L, "bad_regex", "%s", msg);
    }
    r->compiled = 1;
    return 1;
}

static int l_compile(lua_State *L)
{
    size_t len;
    const char *pat = luaL_checklstring(L, 1, &len);
    int anchored = 0, icase = 0;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        anchored = loom_opt_bool(L, 2, "anchored", 0);
        icase = loom_opt_bool(L, 2, "icase", 0);
    }
    return loom_regex_new(L, pat, len, anchored, icase);
}

int loom_regex_test(void *ud, const char *s, size_t len)
{
    Regex *r = (Regex *)ud;
    regmatch_t m[1];
    int rc;
    if (r == NULL || !r->compiled)
        return -1;
    m[0].rm_so = 0;
    m[0].rm_eo = (regoff_t)len;
    if ((size_t)m[0].rm_eo != len)
        return -1;
    rc = regexec(&r->re, s, r->anchored ? 1 : 0, m, REG_STARTEND);
    if (rc == 0)
        return !r->anchored || (m[0].rm_so == 0 && (size_t)m[0].rm_eo == len);
    return rc == REG_NOMATCH ? 0 : -1;
}

static int regex_match(lua_State *L)
{
    Regex *r = check_regex(L, 1);
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    regmatch_t m[1];
    int rc;
    m[0].rm_so = 0;
    m[0].rm_eo = (regoff_t)len;
    if ((size_t)m[0].rm_eo != len) /* subject beyond regoff_t */
        return loom_fail(L, "regex_error", "subject too long");
    rc = regexec(&r->re, s, r->anchored ? 1 : 0, m, REG_STARTEND);
    if (rc == 0) {
        lua_pushboolean(L, !r->anchored || (m[0].rm_so == 0 && (size_t)m[0].rm_eo == len));
        return 1;
    }
    if (rc == REG_NOMATCH) {
        lua_pushboolean(L, 0);
        return 1;
    }
    {
        char msg[256];
        regerror(rc, &r->re, msg, sizeof msg);
        return loom_fail(L, "regex_error", "%s", msg);
    }
}

static int regex_pattern(lua_State *L)
{
    luaL_checkudata(L, 1, REGEX_MT);
    lua_getiuservalue(L, 1, 1);
    return 1;
}

static int regex_gc(lua_State *L)
{
    Regex *r = (Regex *)lua_touserdata(L, 1);
    if (r && r->compiled) {
        regfree(&r->re);
        r->compiled = 0;
    }
    return 0;
}

static int regex_tostring(lua_State *L)
{
    Regex *r = (Regex *)luaL_checkudata(L, 1, REGEX_MT);
    lua_getiuservalue(L, 1, 1);
    lua_pushfstring(L, REGEX_MT " (%s%s)", lua_tostring(L, -1),
                    r->anchored ? ", anchored" : "");
    return 1;
}

static const luaL_Reg regex_methods[] = {
    {"match", regex_match},
    {"pattern", regex_pattern},
    {NULL, NULL}
};

static const luaL_Reg regex_meta[] = {
    {"__gc", regex_gc},
    {"__tostring", regex_tostring},
    {NULL, NULL}
};

static const luaL_Reg funcs[] = {
    {"compile", l_compile},
    {NULL, NULL}
};

void loom_open_regex(lua_State *L)
{
    loom_new_type(L, REGEX_MT, regex_methods, regex_meta);
    luaL_newlib(L, funcs);
    lua_setfield(L, -2, "regex");
}
