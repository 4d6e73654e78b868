#include "loom.h"
void loom_open_token(lua_State *L) { (void)L; }
