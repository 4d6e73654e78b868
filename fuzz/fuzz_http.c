/* libFuzzer target: loom.core.http.parser (csrc/http.c) through its Lua API.
 *
 * Input: byte 0 picks the limits (small ones, so every limit is reached),
 * bytes 1..4 seed the split points, the rest is the byte stream a client
 * sends. Checks, besides the sanitizers:
 *   - feeding the stream in one piece and in random pieces gives the same
 *     requests, in the same order, and fails or not alike (which error comes
 *     first may differ: a syntax error is seen at its byte, a limit when a
 *     piece of the line or header is handed over, at the latest at the end
 *     of each piece);
 *   - a failure is nil + message + "http_too_large" (with the limit's name)
 *     or "http_bad_request", and it is sticky;
 *   - every request has the documented fields and types, its body is within
 *     max_body, its path is a prefix of its target (origin-form) and
 *     header names are lowercase.
 *
 * Built and run by scripts/fuzz.sh (links -lhttp_parser).
 */
#include "fuzz_lua.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *state;

static const char *script =
    "local core = ...\n"
    "local http = core.http\n"
    "local limit_names = { request_line = true, header_line = true, headers = true,\n"
    "                      header_bytes = true, body = true }\n"
    "local function check(r, lim)\n"
    "  assert(type(r.method) == 'string' and type(r.target) == 'string')\n"
    "  assert(type(r.path) == 'string' and type(r.query) == 'string')\n"
    "  local media = r.target:sub(1, 15) == '/_matrix/media/'\n"
    "  if r.streaming then assert(r.body == nil) else\n"
    "    assert(type(r.body) == 'string' and #r.body <= (media and lim.max_media_body or lim.max_body))\n"
    "  end\n"
    "  assert(type(r.keep_alive) == 'boolean' and r.version:match('^%d+%.%d+$'))\n"
    "  if r.target:sub(1, 1) == '/' then assert(r.target:sub(1, #r.path) == r.path) end\n"
    "  for k, v in pairs(r.headers) do\n"
    "    assert(type(k) == 'string' and type(v) == 'string' and k == k:lower())\n"
    "  end\n"
    "end\n"
    "local function dump(r)\n"
    "  local h = {}\n"
    "  for k, v in pairs(r.headers) do h[#h + 1] = k .. '=' .. v end\n"
    "  table.sort(h)\n"
    "  return table.concat({ r.method, r.target, r.path, r.query, r.body, tostring(r.keep_alive),\n"
    "                        r.version, table.concat(h, '\\n') }, '\\0')\n"
    "end\n"
    "local function run(lim, chunks, prefix)\n"
    "  local p = http.parser(lim)\n"
    "  if prefix then p:stream(prefix) end\n"
    "  local eff = p:limits()\n"
    "  local msgs, out = {}, {}\n"
    "  local failed, streamed\n"
    "  for _, c in ipairs(chunks) do\n"
    "    local list, msg, code, which = p:feed(c)\n"
    "    if list then\n"
    "      assert(not failed, 'feed succeeded after a failure')\n"
    "      for _, r in ipairs(list) do\n"
    "        if r.chunk then\n"
    "          assert(streamed and #r.chunk > 0, 'a chunk outside a streamed body')\n"
    "          streamed.body = streamed.body .. r.chunk\n"
    "          assert(#streamed.body <= (streamed.target:sub(1, 15) == '/_matrix/media/'\n"
    "                 and eff.max_media_body or eff.max_body))\n"
    "        elseif r.body_end then\n"
    "          assert(streamed, 'a body end outside a streamed body')\n"
    "          streamed.body = streamed.body .. '|end'\n"
    "          streamed = nil\n"
    "        else\n"
    "          assert(not streamed, 'a request inside a streamed body')\n"
    "          check(r, eff)\n"
    "          if r.streaming then\n"
    "            assert(prefix and r.target:sub(1, #prefix) == prefix)\n"
    "            r.body = ''\n"
    "            streamed = r\n"
    "          end\n"
    "          msgs[#msgs + 1] = r\n"
    "        end\n"
    "      end\n"
    "    else\n"
    "      assert(list == nil and type(msg) == 'string')\n"
    "      assert(code == 'http_bad_request' or code == 'http_too_large', code)\n"
    "      assert((code == 'http_too_large') == (limit_names[which] == true))\n"
    "      failed = true\n"
    "    end\n"
    "  end\n"
    "  local msg, code, which = p:error()\n"
    "  -- a body cut off by a failure: how much of it came out depends on the pieces\n"
    "  if msg and streamed then streamed.body = '(cut off)' end\n"
    "  for i, r in ipairs(msgs) do out[i] = dump(r) end\n"
    "  if msg then out[#out + 1] = 'error' end\n"
    "  assert(p:state())\n"
    "  p:close()\n"
    "  return table.concat(out, '\\1')\n"
    "end\n"
    "return function(sel, seed, s)\n"
    "  local lim = {}\n"
    "  if sel & 1 ~= 0 then lim.max_request_line = 16 + (sel >> 4) * 4 end\n"
    "  if sel & 2 ~= 0 then lim.max_header_line = 8 + (sel >> 4) * 2 end\n"
    "  if sel & 4 ~= 0 then lim.max_headers = 1 + (sel >> 5); lim.max_header_bytes = 64 end\n"
    "  if sel & 8 ~= 0 then lim.max_body = 1 + (sel >> 4); lim.max_media_body = 2 + (sel >> 4) end\n"
    "  local prefix = ({ nil, '/', '/_matrix/media/' })[seed % 3 + 1]\n"
    "  local want = run(lim, { s }, prefix)\n"
    "  local chunks, i, x = {}, 1, seed\n"
    "  while i <= #s do\n"
    "    x = (x * 1103515245 + 12345) & 0x7fffffff\n"
    "    local n = 1 + (x >> 8) % 17\n"
    "    chunks[#chunks + 1] = s:sub(i, i + n - 1)\n"
    "    i = i + n\n"
    "  end\n"
    "  local got = run(lim, chunks, prefix)\n"
    "  assert(got == want, 'split feeding differs')\n"
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
