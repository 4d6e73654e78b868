/* libFuzzer target: loom.core.media.thumbnail and probe (csrc/media.c), the
 * libvips decoder path that every uploaded image goes through.
 *
 * Input: the bytes of a file. The first byte picks the container magic
 * prepended to the rest (none, JPEG, PNG, GIF, WebP), so most inputs reach a
 * real decoder rather than "not an image". The file is written to a
 * temporary path and thumbnailed (crop and scale) under a small pixel limit.
 * Checks, besides the sanitizers: the answer is a thumbnail of at most the
 * size asked and of a known type, or nil + message + one of the documented
 * codes; probe agrees that a file it refuses is not thumbnailed.
 *
 * Built and run by scripts/fuzz.sh.
 */
#include <unistd.h>

#include "fuzz_lua.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *state;

static const char *script =
    "local core = ...\n"
    "local m = core.media\n"
    "local codes = { media_not_image = true, media_too_large = true, media_animated = true,\n"
    "                media_io = true }\n"
    "local magic = { '', '\\255\\216\\255', '\\137PNG\\r\\n\\26\\n', 'GIF89a', 'RIFF\\0\\0\\0\\0WEBPVP8 ' }\n"
    "local dir = os.getenv('TMPDIR') or '/tmp'\n"
    "local src = dir .. '/loom-fuzz-thumb-' .. tostring(math.random(1 << 30))\n"
    "local dst = src .. '.out'\n"
    "return function(s)\n"
    "  local k = #s > 0 and s:byte(1) % #magic + 1 or 1\n"
    "  local f = assert(io.open(src, 'wb'))\n"
    "  f:write(magic[k], s:sub(2))\n"
    "  f:close()\n"
    "  for _, case in ipairs { { 32, 32, 'crop' }, { 96, 64, 'scale' } } do\n"
    "    local t, msg, code = m.thumbnail(src, dst, case[1], case[2], case[3], 1000000)\n"
    "    if t then\n"
    "      assert(t.width >= 1 and t.width <= case[1] and t.height >= 1 and t.height <= case[2])\n"
    "      assert(t.type == 'image/jpeg' or t.type == 'image/png')\n"
    "    else\n"
    "      assert(type(msg) == 'string' and codes[code], tostring(code))\n"
    "    end\n"
    "  end\n"
    "  local p, msg, code = m.probe(src)\n"
    "  if not p then assert(type(msg) == 'string' and codes[code]) end\n"
    "  os.remove(src)\n"
    "  os.remove(dst)\n"
    "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!state) state = fuzz_lua_open(script);
    lua_pushlstring(state, (const char *)data, size);
    fuzz_lua_check(state, 1);
    return 0;
}
