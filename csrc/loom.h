/* loom.core — shared declarations for the C modules.
 *
 * Each csrc/<part>.c adds its functions to the module table with one
 * loom_open_<part>(L) call; luaopen_loom_core (core.c) creates that table.
 * Failure convention (STYLE.md): caller misuse raises with luaL_argerror;
 * expected failures return  nil, message, code  through loom_fail().
 */
#ifndef LOOM_H
#define LOOM_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>
#include <lauxlib.h>
#include <sqlite3.h>

/* Largest integer a Matrix value may hold: 2^53 - 1. */
#define LOOM_MAX_SAFE_INT INT64_C(9007199254740991)

/* Push nil, a formatted message and a stable lowercase code; returns 3. */
int loom_fail(lua_State *L, const char *code, const char *fmt, ...);

/* The boolean option k of the options table at index t (def when absent);
 * raises when it is present and not a boolean. */
int loom_opt_bool(lua_State *L, int t, const char *k, int def);

/* Registers the C type `name` once for every type: a registry metatable
 * named `name` (luaL_newmetatable sets __name) with the metamethods, and
 * __index = a new table of the methods (no __index when methods is NULL).
 * The stack is left as it was. */
void loom_new_type(lua_State *L, const char *name, const luaL_Reg *methods,
                   const luaL_Reg *metamethods);

/* Sub-modules: each sets a field (a table) into the table at the top of the
 * stack and leaves the stack as it found it. */
void loom_open_token(lua_State *L);   /* core.token, core.bound */
void loom_open_json(lua_State *L);    /* core.json   */
void loom_open_crypto(lua_State *L);  /* core.crypto */
void loom_open_sqlite(lua_State *L);  /* core.sqlite */
void loom_open_checkpoint(lua_State *L); /* core.sqlite.checkpointer: WAL checkpoints on a thread */
void loom_open_regex(lua_State *L);   /* core.regex  */
void loom_open_state(lua_State *L);   /* core.state: state blocks and snapshots */
void loom_open_stateres(lua_State *L); /* core.stateres: graph work of state resolution */
void loom_open_http(lua_State *L);    /* core.http: HTTP/1.1 request parser */
void loom_open_tls(lua_State *L);     /* core.tls: TLS over memory BIOs (OpenSSL 3) */
void loom_open_dns(lua_State *L);     /* core.dns: SRV queries and answers */
void loom_open_media(lua_State *L);   /* core.media: libvips thumbnails, file hashes */
void loom_open_push(lua_State *L);    /* core.push: push-rule evaluation for whole rooms */

/* Compile an ERE as core.regex.compile does (same limits): pushes a loom.Regex
 * and returns 1, or returns loom_fail()'s 3 values ("bad_regex"). */
int loom_regex_new(lua_State *L, const char *pat, size_t len, int anchored, int icase);

/* Match a subject with a loom.Regex (the userdata's address, kept alive by
 * the caller): 1 match, 0 no match, -1 regexec failure. */
int loom_regex_test(void *regex, const char *s, size_t len);

/* JSON encoding shared with crypto (signing hashes canonical bytes). Pushes the
 * canonical JSON string of the value at index idx and returns 1, or returns
 * loom_fail()'s 3 values. */
int loom_json_encode_value(lua_State *L, int idx);

/* The sqlite3 handle of an open loom.Db userdata at index idx (raises when idx
 * is not an open loom.Db), so C hot paths can run on the caller's connection. */
sqlite3 *loom_sqlite_handle(lua_State *L, int idx);

#endif
