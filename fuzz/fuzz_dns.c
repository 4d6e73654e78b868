/* libFuzzer target: loom.core.dns.parse (csrc/dns.c), the parser of DNS
 * answers from the network.
 *
 * Input: the bytes of an answer packet. It is parsed as the answer to the
 * query whose ID its first two bytes hold (so most inputs get past the ID
 * check). Checks, besides the sanitizers: the result is a table of the
 * documented shape (every SRV record's fields in range, target a string of
 * at most 255 bytes) or nil + message + "bad_dns"; parsing twice gives the
 * same result.
 *
 * Built and run by scripts/fuzz.sh.
 */
#include "fuzz_lua.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *state;

static const char *script =
    "local core = ...\n"
    "local function dump(r)\n"
    "  if not r then return 'nil' end\n"
    "  local out = { r.rcode, tostring(r.truncated), r.name }\n"
    "  for _, a in ipairs(r.answers) do\n"
    "    assert(a.type == 33 and a.ttl >= 0 and a.priority >= 0 and a.priority <= 65535)\n"
    "    assert(a.port >= 0 and a.port <= 65535 and a.weight >= 0 and a.weight <= 65535)\n"
    "    assert(type(a.target) == 'string' and #a.target <= 255)\n"
    "    out[#out + 1] = a.target .. ':' .. a.port\n"
    "  end\n"
    "  return table.concat(out, ' ')\n"
    "end\n"
    "return function(s)\n"
    "  local id = #s >= 2 and (s:byte(1) * 256 + s:byte(2)) or 0\n"
    "  local r, msg, code = core.dns.parse(s, id)\n"
    "  if not r then assert(type(msg) == 'string' and code == 'bad_dns') end\n"
    "  assert(dump(r) == dump((core.dns.parse(s, id))))\n"
    "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!state) state = fuzz_lua_open(script);
    lua_pushlstring(state, (const char *)data, size);
    fuzz_lua_check(state, 1);
    return 0;
}
