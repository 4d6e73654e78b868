/* libFuzzer target: the state BLOB decoders of loom.core.state.
 *
 * Every input goes through each decoder, through the real Lua entry points:
 *   - decode_block / decode_segment / bucket_find either fail with
 *     nil, message, "bad_state_blob" or succeed;
 *   - a block or segment that decodes is canonical: encoding what was decoded
 *     gives the input bytes back, and decoding those gives the same triples;
 *   - assemble over a decoded block (twice, the second overriding the first)
 *     and a decoded segment agrees with a reference merge written in Lua;
 *   - a bucket that decodes splits on every bit into two buckets that decode
 *     and together hold all its entries.
 *
 * Built and run by scripts/fuzz.sh.
 */
#include "fuzz_lua.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *state;

static const char *script =
    "local core = ...\n"
    "local st = core.state\n"
    "local function same(a, b)\n"
    "  if #a ~= #b then return false end\n"
    "  for i = 1, #a do\n"
    "    if a[i][1] ~= b[i][1] or a[i][2] ~= b[i][2] or a[i][3] ~= b[i][3] then return false end\n"
    "  end\n"
    "  return true\n"
    "end\n"
    "local function failed(res, msg, code)\n"
    "  assert(res == nil and type(msg) == 'string' and code == 'bad_state_blob', 'bad failure values')\n"
    "end\n"
    "local function merge(m, list)\n"
    "  for _, t in ipairs(list) do m[t[1] .. ':' .. t[2]] = t[3] ~= 0 and t or nil end\n"
    "end\n"
    "local function check(m, s)\n"
    "  local n = 0\n"
    "  for _, t in pairs(m) do n = n + 1; assert(s:get(t[1], t[2]) == t[3], 'assemble differs') end\n"
    "  assert(n == #s, 'assemble size differs')\n"
    "end\n"
    "return function(b)\n"
    "  local t, msg, code = st.decode_block(b)\n"
    "  if t then\n"
    "    local again = st.encode_block(t)\n"
    "    assert(again == b, 'block not canonical')\n"
    "    assert(same(st.decode_block(again), t), 'block round trip')\n"
    "    local s, base, decoded = st.assemble({ b, b }, {}, {})\n"
    "    assert(s == base and decoded == 2 * #t)\n"
    "    local m = {}\n"
    "    merge(m, t)\n"
    "    check(m, s)\n"
    "  else failed(t, msg, code) end\n"
    "  local blocks, deltas, scode = st.decode_segment(b)\n"
    "  if blocks then\n"
    "    local again = st.encode_segment(blocks, deltas)\n"
    "    assert(again == b, 'segment not canonical')\n"
    "    local b2, d2 = st.decode_segment(again)\n"
    "    assert(#b2 == #blocks and #d2 == #deltas)\n"
    "    for i = 1, #deltas do assert(same(d2[i], deltas[i]), 'segment round trip') end\n"
    "    local info, n = st.segment_info(b)\n"
    "    assert(#info == #blocks and n == #deltas)\n"
    "    local slot = #b % #deltas\n"
    "    local s = st.assemble({}, { b }, { slot })\n"
    "    local m = {}\n"
    "    for i = 1, slot + 1 do merge(m, deltas[i]) end\n"
    "    check(m, s)\n"
    "    if n < 64 then assert(st.segment_append(b, { { 1, 1, 0 } })) end\n"
    "  else failed(blocks, deltas, scode) end\n"
    "  local found, fmsg, fcode = st.bucket_find(b, 0x12345678)\n"
    "  if found then\n"
    "    for bit = 8, 31 do\n"
    "      local lo, hi = st.bucket_split(b, bit)\n"
    "      assert(lo and hi and #lo + #hi == #b, 'split lost entries')\n"
    "      assert(st.bucket_find(lo, 0) and st.bucket_find(hi, 0))\n"
    "    end\n"
    "    assert(st.bucket_add(b, 0xffffffff, 1))\n"
    "  else failed(found, fmsg, fcode) end\n"
    "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!state) state = fuzz_lua_open(script);
    lua_pushlstring(state, (const char *)data, size);
    fuzz_lua_check(state, 1);
    return 0;
}
