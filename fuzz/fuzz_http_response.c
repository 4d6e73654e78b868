/* libFuzzer target: loom.core.http.response_parser (csrc/http.c), the
 * parser of what other servers answer the outbound client.
 *
 * Input: byte 0 picks small limits, bytes 1..4 seed the split points, the
 * rest is the byte stream a server sends, followed by the end of the
 * connection (parser:finish()). Checks, besides the sanitizers: one piece or
 * random pieces give the same responses and fail alike; every response has
 * an integer status in 100..999, a string body within max_body and lowercase
 * header names; a failure is nil + message + a known code.
 *
 * Built and run by scripts/fuzz.sh.
 */
#include "fuzz_lua.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *state;

static const char *script =
    "local core = ...\n"
    "local function check(r, lim)\n"
    "  assert(math.type(r.status) == 'integer' and r.status >= 100 and r.status <= 999)\n"
    "  assert(type(r.reason) == 'string' and type(r.body) == 'string' and #r.body <= lim.max_body)\n"
    "  for k, v in pairs(r.headers) do assert(type(v) == 'string' and k == k:lower()) end\n"
    "end\n"
    "local function run(lim, chunks)\n"
    "  local p = core.http.response_parser(lim)\n"
    "  local eff, out, failed = p:limits(), {}, false\n"
    "  chunks[#chunks + 1] = false\n"
    "  for _, c in ipairs(chunks) do\n"
    "    local list, msg, code\n"
    "    if c then list, msg, code = p:feed(c) else list, msg, code = p:finish() end\n"
    "    if list then\n"
    "      assert(not failed, 'feed succeeded after a failure')\n"
    "      for _, r in ipairs(list) do check(r, eff); out[#out + 1] = r.status .. '\\0' .. r.body end\n"
    "    else\n"
    "      assert(type(msg) == 'string')\n"
    "      assert(code == 'http_bad_request' or code == 'http_too_large', code)\n"
    "      failed = true\n"
    "    end\n"
    "  end\n"
    "  if p:error() then out[#out + 1] = 'error' end\n"
    "  p:close()\n"
    "  return table.concat(out, '\\1')\n"
    "end\n"
    "return function(sel, seed, s)\n"
    "  local lim = {}\n"
    "  if sel & 1 ~= 0 then lim.max_header_line = 8 + (sel >> 4) * 2 end\n"
    "  if sel & 2 ~= 0 then lim.max_headers = 1 + (sel >> 5) end\n"
    "  if sel & 4 ~= 0 then lim.max_body = 1 + (sel >> 4) end\n"
    "  local want = run(lim, { s })\n"
    "  local chunks, i, x = {}, 1, seed\n"
    "  while i <= #s do\n"
    "    x = (x * 1103515245 + 12345) & 0x7fffffff\n"
    "    local n = 1 + (x >> 8) % 17\n"
    "    chunks[#chunks + 1] = s:sub(i, i + n - 1)\n"
    "    i = i + n\n"
    "  end\n"
    "  assert(run(lim, chunks) == want, 'split feeding differs')\n"
    "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint32_t seed;
    if (size < 5) return 0;
    if (!state) state = fuzz_lua_open(script);
    seed = (uint32_t)data[1] | (uint32_t)data[2] << 8 | (uint32_t)data[3] << 16 |
           (uint32_t)data[4] << 24;
    lua_pushinteger(state, data[0]);
    lua_pushinteger(state, (lua_Integer)seed);
    lua_pushlstring(state, (const char *)data + 5, size - 5);
    fuzz_lua_check(state, 3);
    return 0;
}
