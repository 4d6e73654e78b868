/* loom.core.sqlite — loom's own SQLite 3 binding.
 *
 * Types: loom.Db (a connection), loom.Stmt (a prepared statement; keeps its
 * loom.Db alive through its uservalue), loom.Blob (a marker that binds a Lua
 * string as a BLOB). Every executing statement method binds its arguments,
 * runs, and resets the statement before returning, so no statement keeps a
 * read transaction open. Integers are int64 end to end. See docs/sqlite.md.
 */
#include <limits.h>
#include <string.h>

#include "loom.h"

#define DB_MT   "loom.Db"
#define STMT_MT "loom.Stmt"
#define BLOB_MT "loom.Blob"

#define SQL_EXCERPT 80 /* bytes of SQL quoted in a prepare error */

typedef struct {
    sqlite3 *db; /* NULL once closed */
} Db;

typedef struct {
    sqlite3_stmt *stmt; /* NULL once finalized */
    Db *owner;          /* memory kept alive by uservalue 1 */
    lua_Integer gen;    /* bumped by every execution; stale each() iterators raise */
} Stmt;

/* ---- errors ------------------------------------------------------------ */

static const char *code_name(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_BUSY: return "sqlite_busy";
    case SQLITE_LOCKED: return "sqlite_locked";
    case SQLITE_CONSTRAINT: return "sqlite_constraint";
    case SQLITE_CORRUPT: return "sqlite_corrupt";
    case SQLITE_NOTADB: return "sqlite_notadb";
    case SQLITE_FULL: return "sqlite_full";
    case SQLITE_IOERR: return "sqlite_ioerr";
    case SQLITE_CANTOPEN: return "sqlite_cantopen";
    case SQLITE_READONLY: return "sqlite_readonly";
    case SQLITE_TOOBIG: return "sqlite_toobig";
    case SQLITE_RANGE: return "sqlite_range";
    case SQLITE_MISMATCH: return "sqlite_mismatch";
    case SQLITE_MISUSE: return "sqlite_misuse";
    case SQLITE_INTERRUPT: return "sqlite_interrupt";
    case SQLITE_NOMEM: return "sqlite_nomem";
    case SQLITE_SCHEMA: return "sqlite_schema";
    case SQLITE_ABORT: return "sqlite_abort";
    case SQLITE_PERM: return "sqlite_perm";
    case SQLITE_AUTH: return "sqlite_auth";
    default: return "sqlite_error";
    }
}

/* nil, sqlite3_errmsg(db), code-for-rc */
static int db_fail(lua_State *L, sqlite3 *db, int rc)
{
    return loom_fail(L, code_name(rc), "%s", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
}

/* ---- checkers ---------------------------------------------------------- */

static Db *check_db(lua_State *L, int i)
{
    Db *d = (Db *)luaL_checkudata(L, i, DB_MT);
    luaL_argcheck(L, d->db != NULL, i, "database is closed");
    return d;
}

static Stmt *check_stmt(lua_State *L, int i)
{
    Stmt *s = (Stmt *)luaL_checkudata(L, i, STMT_MT);
    luaL_argcheck(L, s->stmt != NULL, i, "statement is finalized");
    luaL_argcheck(L, s->owner->db != NULL, i, "database is closed");
    return s;
}

sqlite3 *loom_sqlite_handle(lua_State *L, int idx)
{
    return check_db(L, idx)->db;
}

/* ---- values ------------------------------------------------------------ */

/* Bind the Lua value at idx to parameter n. Strings and blobs are bound
 * SQLITE_STATIC when the caller keeps them on the stack until the statement
 * is reset and its bindings cleared, SQLITE_TRANSIENT otherwise. */
static int bind_value(lua_State *L, sqlite3_stmt *st, int n, int idx, int copy)
{
    sqlite3_destructor_type how = copy ? SQLITE_TRANSIENT : SQLITE_STATIC;
    size_t len;
    const char *p;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return sqlite3_bind_null(st, n);
    case LUA_TBOOLEAN:
        return sqlite3_bind_int(st, n, lua_toboolean(L, idx));
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            return sqlite3_bind_int64(st, n, (sqlite3_int64)lua_tointeger(L, idx));
        return sqlite3_bind_double(st, n, (double)lua_tonumber(L, idx));
    case LUA_TSTRING:
        p = lua_tolstring(L, idx, &len);
        return sqlite3_bind_text64(st, n, p, (sqlite3_uint64)len, how, SQLITE_UTF8);
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL) /* json.null */
            return sqlite3_bind_null(st, n);
        break;
    case LUA_TUSERDATA:
        if (luaL_testudata(L, idx, BLOB_MT)) {
            int rc;
            lua_getiuservalue(L, idx, 1);
            p = lua_tolstring(L, -1, &len);
            /* the string stays referenced by the blob, which stays on the stack */
            rc = sqlite3_bind_blob64(st, n, len ? p : "", (sqlite3_uint64)len, how);
            lua_pop(L, 1);
            return rc;
        }
        break;
    default:
        break;
    }
    return luaL_argerror(L, idx, lua_pushfstring(L,
        "cannot bind a %s (expected integer, number, string, boolean, nil, "
        "json.null or sqlite.blob)", luaL_typename(L, idx)));
}

/* Reset the statement, then bind arguments first..top. Raises on misuse;
 * returns SQLITE_OK or the failing bind's result code. */
static int bind_from(lua_State *L, Stmt *s, int first, int copy)
{
    sqlite3_stmt *st = s->stmt;
    int top = lua_gettop(L);
    int nparams = sqlite3_bind_parameter_count(st);
    int i, rc;
    s->gen++;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (top - first + 1 > nparams)
        return luaL_argerror(L, nparams + first, lua_pushfstring(L,
            "too many parameters (%d given, statement takes %d)", top - first + 1, nparams));
    for (i = first; i <= top; i++) {
        rc = bind_value(L, st, i - first + 1, i, copy);
        if (rc != SQLITE_OK)
            return rc;
    }
    return SQLITE_OK;
}

/* Bind arguments 2..top (the parameters after self). */
static int bind_args(lua_State *L, Stmt *s, int copy)
{
    return bind_from(L, s, 2, copy);
}

/* The statement is done with (success or failure): drop the transaction and
 * the (possibly SQLITE_STATIC) bindings. */
static void finish(Stmt *s)
{
    sqlite3_reset(s->stmt);
    sqlite3_clear_bindings(s->stmt);
}

/* Push failure values for rc, then finish the statement. */
static int stmt_fail(lua_State *L, Stmt *s, int rc)
{
    db_fail(L, s->owner->db, rc);
    finish(s);
    return 3;
}

static void push_column(lua_State *L, sqlite3_stmt *st, int c, int type)
{
    const void *p;
    switch (type) {
    case SQLITE_INTEGER:
        lua_pushinteger(L, (lua_Integer)sqlite3_column_int64(st, c));
        break;
    case SQLITE_FLOAT:
        lua_pushnumber(L, (lua_Number)sqlite3_column_double(st, c));
        break;
    case SQLITE_TEXT:
        p = sqlite3_column_text(st, c);
        lua_pushlstring(L, (const char *)p, (size_t)sqlite3_column_bytes(st, c));
        break;
    default: /* SQLITE_BLOB */
        p = sqlite3_column_blob(st, c);
        lua_pushlstring(L, p ? (const char *)p : "", (size_t)sqlite3_column_bytes(st, c));
        break;
    }
}

/* Push the current row as an array; NULL columns are holes. */
static void push_row(lua_State *L, sqlite3_stmt *st, int ncol)
{
    int c;
    lua_createtable(L, ncol, 0);
    for (c = 0; c < ncol; c++) {
        int type = sqlite3_column_type(st, c);
        if (type == SQLITE_NULL)
            continue;
        push_column(L, st, c, type);
        lua_rawseti(L, -2, c + 1);
    }
}

/* ---- loom.Blob --------------------------------------------------------- */

static int l_blob(lua_State *L)
{
    luaL_checkstring(L, 1);
    lua_settop(L, 1);
    lua_newuserdatauv(L, 0, 1);
    luaL_setmetatable(L, BLOB_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    return 1;
}

static int blob_value(lua_State *L)
{
    luaL_checkudata(L, 1, BLOB_MT);
    lua_getiuservalue(L, 1, 1);
    return 1;
}

static int blob_len(lua_State *L)
{
    luaL_checkudata(L, 1, BLOB_MT);
    lua_getiuservalue(L, 1, 1);
    lua_pushinteger(L, (lua_Integer)luaL_len(L, -1));
    return 1;
}

static int blob_tostring(lua_State *L)
{
    size_t len;
    luaL_checkudata(L, 1, BLOB_MT);
    lua_getiuservalue(L, 1, 1);
    lua_tolstring(L, -1, &len);
    lua_pushfstring(L, BLOB_MT " (%I bytes)", (lua_Integer)len);
    return 1;
}

static const luaL_Reg blob_methods[] = {
    {"value", blob_value},
    {NULL, NULL}
};

static const luaL_Reg blob_meta[] = {
    {"__len", blob_len},
    {"__tostring", blob_tostring},
    {NULL, NULL}
};

/* ---- loom.Db ----------------------------------------------------------- */


static int check_ms(lua_State *L, int idx, const char *what)
{
    lua_Integer ms;
    int isint;
    ms = lua_tointegerx(L, idx, &isint);
    if (!isint || ms < 0 || ms > INT_MAX)
        return luaL_error(L, "bad %s (integer milliseconds 0..%d expected)", what, INT_MAX);
    return (int)ms;
}

static int l_open(lua_State *L)
{
    size_t len;
    const char *path = luaL_checklstring(L, 1, &len);
    int readonly = 0, create = 1, busy = 5000, flags, rc;
    Db *d;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        readonly = loom_opt_bool(L, 2, "readonly", 0);
        create = loom_opt_bool(L, 2, "create", 1);
        if (lua_getfield(L, 2, "busy_timeout") != LUA_TNIL)
            busy = check_ms(L, -1, "option 'busy_timeout'");
        lua_pop(L, 1);
    }
    if (strlen(path) != len)
        return loom_fail(L, "sqlite_cantopen", "database path contains a NUL byte");

    d = (Db *)lua_newuserdatauv(L, sizeof *d, 0);
    d->db = NULL;
    luaL_setmetatable(L, DB_MT);

    flags = (readonly ? SQLITE_OPEN_READONLY
                      : SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0))
          | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
    rc = sqlite3_open_v2(path, &d->db, flags, NULL);
    if (rc != SQLITE_OK) {
        db_fail(L, d->db, rc);
        sqlite3_close_v2(d->db);
        d->db = NULL;
        return 3;
    }
    sqlite3_extended_result_codes(d->db, 1);
    sqlite3_busy_timeout(d->db, busy);
    return 1;
}

static int db_exec(lua_State *L)
{
    Db *d = check_db(L, 1);
    size_t len;
    const char *sql = luaL_checklstring(L, 2, &len);
    char *err = NULL;
    int rc;
    if (strlen(sql) != len)
        return loom_fail(L, "sqlite_error", "SQL contains a NUL byte");
    rc = sqlite3_exec(d->db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK) {
        loom_fail(L, code_name(rc), "%s", err ? err : sqlite3_errmsg(d->db));
        sqlite3_free(err);
        return 3;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* Does text hold anything besides whitespace, comments and semicolons? */
static int has_more_sql(sqlite3 *db, const char *tail, int nbytes)
{
    sqlite3_stmt *extra = NULL;
    int rc;
    if (nbytes <= 0)
        return 0;
    rc = sqlite3_prepare_v2(db, tail, nbytes, &extra, NULL);
    if (extra)
        sqlite3_finalize(extra);
    return rc != SQLITE_OK || extra != NULL;
}

static int prepare_fail(lua_State *L, const char *msg, const char *code,
                        const char *sql, size_t len)
{
    lua_pushlstring(L, sql, len > SQL_EXCERPT ? SQL_EXCERPT : len);
    return loom_fail(L, code, "%s (in SQL: %s%s)", msg, lua_tostring(L, -1),
                     len > SQL_EXCERPT ? "..." : "");
}

static int db_prepare(lua_State *L)
{
    Db *d = check_db(L, 1);
    size_t len;
    const char *sql = luaL_checklstring(L, 2, &len);
    const char *tail = NULL;
    Stmt *s;
    int rc;
    luaL_argcheck(L, len < INT_MAX, 2, "SQL too long");
    if (memchr(sql, '\0', len) != NULL)
        return prepare_fail(L, "SQL contains a NUL byte", "sqlite_error", sql, strlen(sql));

    s = (Stmt *)lua_newuserdatauv(L, sizeof *s, 1);
    s->stmt = NULL;
    s->owner = d;
    s->gen = 0;
    luaL_setmetatable(L, STMT_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);

    rc = sqlite3_prepare_v3(d->db, sql, (int)len, SQLITE_PREPARE_PERSISTENT,
                            &s->stmt, &tail);
    if (rc != SQLITE_OK)
        return prepare_fail(L, sqlite3_errmsg(d->db), code_name(rc), sql, len);
    if (s->stmt == NULL)
        return prepare_fail(L, "no SQL statement", "sqlite_error", sql, len);
    if (has_more_sql(d->db, tail, (int)(sql + len - tail))) {
        sqlite3_finalize(s->stmt);
        s->stmt = NULL;
        return prepare_fail(L, "text after the first statement (prepare takes one statement)",
                            "sqlite_error", sql, len);
    }
    return 1;
}

static int db_changes(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)sqlite3_changes64(check_db(L, 1)->db));
    return 1;
}

static int db_total_changes(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)sqlite3_total_changes64(check_db(L, 1)->db));
    return 1;
}

static int db_last_insert_rowid(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)sqlite3_last_insert_rowid(check_db(L, 1)->db));
    return 1;
}

static int db_autocommit(lua_State *L)
{
    lua_pushboolean(L, sqlite3_get_autocommit(check_db(L, 1)->db) != 0);
    return 1;
}

static int db_busy_timeout(lua_State *L)
{
    Db *d = check_db(L, 1);
    luaL_checkinteger(L, 2);
    sqlite3_busy_timeout(d->db, check_ms(L, 2, "busy timeout"));
    lua_pushboolean(L, 1);
    return 1;
}

static int db_errmsg(lua_State *L)
{
    lua_pushstring(L, sqlite3_errmsg(check_db(L, 1)->db));
    return 1;
}

static int db_filename(lua_State *L)
{
    const char *f = sqlite3_db_filename(check_db(L, 1)->db, "main");
    lua_pushstring(L, f ? f : "");
    return 1;
}

static int db_interrupt(lua_State *L)
{
    sqlite3_interrupt(check_db(L, 1)->db);
    return 0;
}

static int db_is_open(lua_State *L)
{
    Db *d = (Db *)luaL_checkudata(L, 1, DB_MT);
    lua_pushboolean(L, d->db != NULL);
    return 1;
}

/* close, __close and __gc: idempotent, never raise beyond the type check.
 * sqlite3_close_v2 leaves the connection a zombie until the statements still
 * open are finalized (by :finalize() or their own __gc). */
static int db_close(lua_State *L)
{
    Db *d = (Db *)luaL_checkudata(L, 1, DB_MT);
    if (d->db) {
        sqlite3_close_v2(d->db);
        d->db = NULL;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int db_gc(lua_State *L)
{
    Db *d = (Db *)lua_touserdata(L, 1);
    if (d && d->db) {
        sqlite3_close_v2(d->db);
        d->db = NULL;
    }
    return 0;
}

static int db_tostring(lua_State *L)
{
    Db *d = (Db *)luaL_checkudata(L, 1, DB_MT);
    if (d->db) {
        const char *f = sqlite3_db_filename(d->db, "main");
        lua_pushfstring(L, DB_MT " (%s)", f && *f ? f : ":memory:");
    } else {
        lua_pushliteral(L, DB_MT " (closed)");
    }
    return 1;
}

static const luaL_Reg db_methods[] = {
    {"exec", db_exec},
    {"prepare", db_prepare},
    {"changes", db_changes},
    {"total_changes", db_total_changes},
    {"last_insert_rowid", db_last_insert_rowid},
    {"autocommit", db_autocommit},
    {"busy_timeout", db_busy_timeout},
    {"errmsg", db_errmsg},
    {"filename", db_filename},
    {"interrupt", db_interrupt},
    {"is_open", db_is_open},
    {"close", db_close},
    {NULL, NULL}
};

static const luaL_Reg db_meta[] = {
    {"__gc", db_gc},
    {"__close", db_close},
    {"__tostring", db_tostring},
    {NULL, NULL}
};

/* ---- loom.Stmt --------------------------------------------------------- */

static int stmt_run(lua_State *L)
{
    Stmt *s = check_stmt(L, 1);
    int rc = bind_args(L, s, 0);
    if (rc != SQLITE_OK)
        return stmt_fail(L, s, rc);
    while ((rc = sqlite3_step(s->stmt)) == SQLITE_ROW)
        ;
    if (rc != SQLITE_DONE)
        return stmt_fail(L, s, rc);
    finish(s);
    lua_pushinteger(L, (lua_Integer)sqlite3_changes64(s->owner->db));
    return 1;
}

static int stmt_first(lua_State *L)
{
    Stmt *s = check_stmt(L, 1);
    int rc = bind_args(L, s, 0);
    if (rc != SQLITE_OK)
        return stmt_fail(L, s, rc);
    rc = sqlite3_step(s->stmt);
    if (rc == SQLITE_ROW)
        push_row(L, s->stmt, sqlite3_column_count(s->stmt));
    else if (rc == SQLITE_DONE)
        lua_pushboolean(L, 0);
    else
        return stmt_fail(L, s, rc);
    finish(s);
    return 1;
}

static int stmt_all(lua_State *L)
{
    Stmt *s = check_stmt(L, 1);
    sqlite3_stmt *st = s->stmt;
    int rc = bind_args(L, s, 0), ncol;
    lua_Integer n = 0;
    if (rc != SQLITE_OK)
        return stmt_fail(L, s, rc);
    ncol = sqlite3_column_count(st);
    lua_createtable(L, 16, 0);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        push_row(L, st, ncol);
        lua_rawseti(L, -2, ++n);
    }
    if (rc != SQLITE_DONE)
        return stmt_fail(L, s, rc);
    finish(s);
    return 1;
}

/* stmt:records(shape, ...) -> array of tables keyed by field name.
 * shape[i] describes result column i: a field name, false (skip the
 * column), or {name, map} to store map[value] instead of the value (a NID
 * translated to its name, say). One C call per batch: the field names are
 * pushed once and rows are built with rawset; no Lua code runs per row. */
#define MAX_SHAPE 64
static int stmt_records(lua_State *L)
{
    Stmt *s = check_stmt(L, 1);
    sqlite3_stmt *st = s->stmt;
    int nshape, ncol, c, rc, top, nfields = 0;
    int name_idx[MAX_SHAPE], map_idx[MAX_SHAPE];
    lua_Integer n = 0;
    luaL_checktype(L, 2, LUA_TTABLE);
    nshape = (int)lua_rawlen(L, 2);
    luaL_argcheck(L, nshape <= MAX_SHAPE, 2, "too many columns in shape");
    rc = bind_from(L, s, 3, 0);
    if (rc != SQLITE_OK)
        return stmt_fail(L, s, rc);
    ncol = sqlite3_column_count(st);
    if (nshape > ncol) nshape = ncol;
    top = lua_gettop(L);
    /* each {name, map} entry leaves three values: the entry, its name, its map */
    luaL_checkstack(L, 3 * nshape + 8, "records");
    for (c = 0; c < nshape; c++) {
        int t = lua_rawgeti(L, 2, c + 1);
        name_idx[c] = map_idx[c] = 0;
        if (t == LUA_TSTRING) {
            name_idx[c] = lua_gettop(L);
            nfields++;
        } else if (t == LUA_TTABLE) {
            int entry = lua_gettop(L);
            lua_rawgeti(L, entry, 1);
            lua_rawgeti(L, entry, 2);
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TTABLE) {
                finish(s);
                return luaL_argerror(L, 2, "shape entries are names, false or {name, map}");
            }
            map_idx[c] = lua_gettop(L);
            name_idx[c] = map_idx[c] - 1;
            nfields++;
        } else if (t != LUA_TBOOLEAN || lua_toboolean(L, -1)) {
            finish(s);
            return luaL_argerror(L, 2, "shape entries are names, false or {name, map}");
        }
    }
    lua_createtable(L, 16, 0);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        lua_createtable(L, 0, nfields);
        for (c = 0; c < nshape; c++) {
            int type;
            if (!name_idx[c]) continue;
            type = sqlite3_column_type(st, c);
            if (type == SQLITE_NULL) continue;
            lua_pushvalue(L, name_idx[c]);
            push_column(L, st, c, type);
            if (map_idx[c]) {
                lua_rawget(L, map_idx[c]);
                if (lua_isnil(L, -1)) { lua_pop(L, 2); continue; }
            }
            lua_rawset(L, -3);
        }
        lua_rawseti(L, -2, ++n);
    }
    if (rc != SQLITE_DONE)
        return stmt_fail(L, s, rc);
    finish(s);
    lua_replace(L, top + 1);
    lua_settop(L, top + 1);
    return 1;
}

static int stmt_column(lua_State *L)
{
    Stmt *s = check_stmt(L, 1);
    sqlite3_stmt *st = s->stmt;
    int rc;
    lua_Integer n = 0;
    luaL_argcheck(L, sqlite3_column_count(st) > 0, 1, "statement returns no columns");
    rc = bind_args(L, s, 0);
    if (rc != SQLITE_OK)
        return stmt_fail(L, s, rc);
    lua_createtable(L, 16, 0);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int type = sqlite3_column_type(st, 0);
        n++;
        if (type == SQLITE_NULL)
            continue;
        push_column(L, st, 0, type);
        lua_rawseti(L, -2, n);
    }
    if (rc != SQLITE_DONE)
        return stmt_fail(L, s, rc);
    finish(s);
    return 1;
}

/* each() iterator: upvalue 1 = the stmt, 2 = its generation when each() was
 * called, or false once the iteration has ended. */
static int each_next(lua_State *L)
{
    Stmt *s;
    lua_Integer gen;
    int rc, isint;
    gen = lua_tointegerx(L, lua_upvalueindex(2), &isint);
    if (!isint)
        return 0; /* already ended */
    s = (Stmt *)lua_touserdata(L, lua_upvalueindex(1));
    if (s->stmt == NULL || s->owner->db == NULL)
        return luaL_error(L, "each: statement finalized or database closed during iteration");
    if (s->gen != gen)
        return luaL_error(L, "each: statement was executed again during iteration");
    rc = sqlite3_step(s->stmt);
    if (rc == SQLITE_ROW) {
        push_row(L, s->stmt, sqlite3_column_count(s->stmt));
        return 1;
    }
    lua_pushboolean(L, 0);
    lua_replace(L, lua_upvalueindex(2));
    if (rc == SQLITE_DONE) {
        finish(s);
        return 0;
    }
    lua_pushfstring(L, "%s: %s", code_name(rc), sqlite3_errmsg(s->owner->db));
    finish(s);
    return lua_error(L);
}

static int stmt_each(lua_State *L)
{
    Stmt *s = check_stmt(L, 1);
    int rc = bind_args(L, s, 1);
    if (rc != SQLITE_OK)
        return stmt_fail(L, s, rc);
    lua_pushvalue(L, 1);
    lua_pushinteger(L, s->gen);
    lua_pushcclosure(L, each_next, 2);
    return 1;
}

static int stmt_drain(lua_State *L)
{
    Stmt *s = check_stmt(L, 1);
    sqlite3_stmt *st = s->stmt;
    int rc = bind_args(L, s, 0), ncol, c;
    lua_Integer rows = 0, bytes = 0;
    if (rc != SQLITE_OK)
        return stmt_fail(L, s, rc);
    ncol = sqlite3_column_count(st);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        rows++;
        for (c = 0; c < ncol; c++) {
            switch (sqlite3_column_type(st, c)) {
            case SQLITE_INTEGER:
                (void)sqlite3_column_int64(st, c);
                bytes += 8;
                break;
            case SQLITE_FLOAT:
                (void)sqlite3_column_double(st, c);
                bytes += 8;
                break;
            case SQLITE_TEXT:
                (void)sqlite3_column_text(st, c);
                bytes += sqlite3_column_bytes(st, c);
                break;
            case SQLITE_BLOB:
                (void)sqlite3_column_blob(st, c);
                bytes += sqlite3_column_bytes(st, c);
                break;
            default:
                break;
            }
        }
    }
    if (rc != SQLITE_DONE)
        return stmt_fail(L, s, rc);
    finish(s);
    lua_pushinteger(L, rows);
    lua_pushinteger(L, bytes);
    return 2;
}

static int stmt_columns(lua_State *L)
{
    Stmt *s = check_stmt(L, 1);
    int n = sqlite3_column_count(s->stmt), c;
    lua_createtable(L, n, 0);
    for (c = 0; c < n; c++) {
        const char *name = sqlite3_column_name(s->stmt, c);
        if (name == NULL)
            return luaL_error(L, "out of memory");
        lua_pushstring(L, name);
        lua_rawseti(L, -2, c + 1);
    }
    return 1;
}

static int stmt_sql(lua_State *L)
{
    lua_pushstring(L, sqlite3_sql(check_stmt(L, 1)->stmt));
    return 1;
}

static int stmt_finalize(lua_State *L)
{
    Stmt *s = (Stmt *)luaL_checkudata(L, 1, STMT_MT);
    if (s->stmt) {
        sqlite3_finalize(s->stmt);
        s->stmt = NULL;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int stmt_is_finalized(lua_State *L)
{
    Stmt *s = (Stmt *)luaL_checkudata(L, 1, STMT_MT);
    lua_pushboolean(L, s->stmt == NULL);
    return 1;
}

static int stmt_gc(lua_State *L)
{
    Stmt *s = (Stmt *)lua_touserdata(L, 1);
    if (s && s->stmt) {
        sqlite3_finalize(s->stmt);
        s->stmt = NULL;
    }
    return 0;
}

static int stmt_tostring(lua_State *L)
{
    Stmt *s = (Stmt *)luaL_checkudata(L, 1, STMT_MT);
    if (s->stmt)
        lua_pushfstring(L, STMT_MT " (%p)", (void *)s->stmt);
    else
        lua_pushliteral(L, STMT_MT " (finalized)");
    return 1;
}

static const luaL_Reg stmt_methods[] = {
    {"run", stmt_run},
    {"first", stmt_first},
    {"all", stmt_all},
    {"records", stmt_records},
    {"column", stmt_column},
    {"each", stmt_each},
    {"drain", stmt_drain},
    {"columns", stmt_columns},
    {"sql", stmt_sql},
    {"finalize", stmt_finalize},
    {"is_finalized", stmt_is_finalized},
    {NULL, NULL}
};

static const luaL_Reg stmt_meta[] = {
    {"__gc", stmt_gc},
    {"__close", stmt_finalize},
    {"__tostring", stmt_tostring},
    {NULL, NULL}
};

/* ---- module ------------------------------------------------------------ */

static int l_version(lua_State *L)
{
    lua_pushstring(L, sqlite3_libversion());
    return 1;
}

static const luaL_Reg funcs[] = {
    {"open", l_open},
    {"blob", l_blob},
    {"version", l_version},
    {NULL, NULL}
};

void loom_open_sqlite(lua_State *L)
{
    loom_new_type(L, DB_MT, db_methods, db_meta);
    loom_new_type(L, STMT_MT, stmt_methods, stmt_meta);
    loom_new_type(L, BLOB_MT, blob_methods, blob_meta);
    luaL_newlib(L, funcs);
    loom_open_checkpoint(L);
    lua_setfield(L, -2, "sqlite");
}
