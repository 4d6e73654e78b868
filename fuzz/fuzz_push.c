/* libFuzzer target: loom.core.push (csrc/push.c) — users' push rules are
 * outside input: JSON in, compile, evaluate against an event.
 *
 * Input: the rule set's JSON, a 0xFF byte, the event's JSON, a 0xFF byte, a
 * display name. A part that is not JSON (or not an object) is used raw
 * instead: as a content-rule pattern, an event_match key and pattern and a
 * room_member_count `is` (rules), or as content.body and a content key
 * (event), so the glob and key compilers see arbitrary bytes. Checks:
 *   - compile never raises; run gives nil or actions and a rule_id;
 *   - evaluate over a room of two members with that rule set gives 0 or 2
 *     rows, as run's actions say;
 *   - when lua/loom/push/eval.lua is found (scripts/fuzz.sh runs in
 *     build/fuzz), the Lua reference evaluator gives the same rule.
 *
 * Built and run by scripts/fuzz.sh.
 */
#include <string.h>

#include "fuzz_lua.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *state;

static const char *script =
    "local core = ...\n"
    "package.path = '../../lua/?.lua;lua/?.lua;' .. package.path\n"
    "local ok, eval = pcall(require, 'loom.push.eval')\n"
    "if not ok then eval = nil end\n"
    "local json = core.json\n"
    "local ev = core.push.new()\n"
    "local function object(text, raw)\n"
    "  local v = json.decode(text)\n"
    "  if type(v) == 'table' then return v end\n"
    "  return raw(text)\n"
    "end\n"
    "return function(rtext, etext, name)\n"
    "  local rules = object(rtext, function(s) return { content = { { rule_id = 'c', pattern = s,\n"
    "    actions = { 'notify' } } }, override = { { rule_id = 'o', actions = { 'notify',\n"
    "    { set_tweak = 'highlight' } }, conditions = { { kind = 'event_match', key = s, pattern = s },\n"
    "    { kind = 'room_member_count', is = s } } } } } end)\n"
    "  local event = object(etext, function(s) return { type = 'm.room.message', sender = '@a:x',\n"
    "    content = { body = s, [s] = s } } end)\n"
    "  local ctx = { display_name = name, member_count = #name % 5, sender_power = 50,\n"
    "    notifications = { room = 50 } }\n"
    "  local compiled = ev:compile(rules)\n"
    "  local actions, rule_id = ev:run(compiled, event, ctx)\n"
    "  if eval then\n"
    "    local la, lid = eval.run(eval.compile(rules), event, ctx)\n"
    "    assert(lid == rule_id, 'C and Lua evaluators disagree')\n"
    "    assert((la == nil) == (actions == nil), 'C and Lua evaluators disagree on actions')\n"
    "  end\n"
    "  local rows = ev:evaluate(event, { rules = { compiled, compiled }, names = { name, name },\n"
    "    users = { '@a:x', '@b:x' }, member_count = ctx.member_count, sender_power = 50,\n"
    "    notifications = ctx.notifications })\n"
    "  local notifies = false\n"
    "  if type(actions) == 'table' then\n"
    "    for _, a in ipairs(actions) do if a == 'notify' then notifies = true end end\n"
    "  end\n"
    "  assert(#rows == (notifies and 2 or 0), 'evaluate and run disagree')\n"
    "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *sep1, *sep2 = NULL;
    size_t rlen, elen = 0, nlen = 0;
    const char *ev = "", *name = "";
    if (!state)
        state = fuzz_lua_open(script);
    sep1 = memchr(data, 0xFF, size);
    rlen = sep1 ? (size_t)(sep1 - data) : size;
    if (sep1) {
        ev = (const char *)sep1 + 1;
        sep2 = memchr(sep1 + 1, 0xFF, size - rlen - 1);
        elen = sep2 ? (size_t)(sep2 - (sep1 + 1)) : size - rlen - 1;
        if (sep2) {
            name = (const char *)sep2 + 1;
            nlen = size - (size_t)(sep2 + 1 - data);
        }
    }
    lua_pushlstring(state, (const char *)data, rlen);
    lua_pushlstring(state, ev, elen);
    lua_pushlstring(state, name, nlen);
    fuzz_lua_check(state, 3);
    return 0;
}
