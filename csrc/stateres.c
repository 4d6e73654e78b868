/* placeholder until the stateres part lands */
#include "loom.h"
void loom_open_stateres(lua_State *L) { (void)L; }
