/* placeholder until the sqlite part lands */
#include "loom.h"
void loom_open_sqlite(lua_State *L) { (void)L; }
sqlite3 *loom_sqlite_handle(lua_State *L, int idx) { (void)idx; luaL_error(L, "no sqlite"); return NULL; }
