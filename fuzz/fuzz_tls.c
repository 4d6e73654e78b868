/* libFuzzer target: loom.core.tls (csrc/tls.c) as a server sees a client.
 *
 * Input: the bytes a client sends, in pieces split by byte 0. A server
 * session takes them (put), tries the handshake and reads; a client session
 * gets whatever the server answers. Checks, besides the sanitizers: every
 * call returns its documented shape (true/false, a string, or nil + message
 * + "tls"/"closed"), a failed session keeps failing, and nothing raises.
 * The key pair is made once, in a fresh temporary directory.
 *
 * Built and run by scripts/fuzz.sh.
 */
#include <stdlib.h>
#include <unistd.h>

#include "fuzz_lua.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *state;

static const char *script =
    "local core = ...\n"
    "local tls = core.tls\n"
    "local dir = os.getenv('LOOM_FUZZ_TLS_DIR')\n"
    "assert(tls.self_signed(dir .. '/c.pem', dir .. '/k.pem', 'localhost'))\n"
    "local sctx = assert(tls.context { server = true, certificate = dir .. '/c.pem',\n"
    "                                  private_key = dir .. '/k.pem' })\n"
    "local cctx = assert(tls.context { verify = false })\n"
    "local function shape(ok, msg, code)\n"
    "  if ok == nil then assert(type(msg) == 'string' and (code == 'tls' or code == 'closed'), code) end\n"
    "  return ok\n"
    "end\n"
    "return function(split, s)\n"
    "  local srv, cli = sctx:session(), cctx:session('localhost')\n"
    "  cli:handshake()\n"
    "  local hello = cli:take() or ''\n"
    "  -- half the inputs start from a real ClientHello, so later states are reached\n"
    "  if split & 1 == 1 then s = hello .. s end\n"
    "  local step = 1 + (split >> 1)\n"
    "  local failed = false\n"
    "  for i = 1, #s, step do\n"
    "    srv:put(s:sub(i, i + step - 1))\n"
    "    local ok = shape(srv:handshake())\n"
    "    if ok == nil then failed = true; break end\n"
    "    if ok then\n"
    "      local text = shape(srv:read())\n"
    "      assert(text == nil or type(text) == 'string')\n"
    "      if text == nil then failed = true; break end\n"
    "    end\n"
    "    local out = srv:take()\n"
    "    assert(out == nil or (type(out) == 'string' and #out > 0))\n"
    "    if out then cli:put(out); shape(cli:handshake()) end\n"
    "  end\n"
    "  if failed then assert(shape(srv:handshake()) ~= true, 'handshake done after a failure') end\n"
    "  assert(type(srv:info()) == 'table')\n"
    "  srv:close(); cli:close()\n"
    "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    if (!state) {
        static char dir[] = "/tmp/loom-fuzz-tls-XXXXXX";
        if (!mkdtemp(dir)) abort();
        setenv("LOOM_FUZZ_TLS_DIR", dir, 1);
        state = fuzz_lua_open(script);
    }
    lua_pushinteger(state, data[0]);
    lua_pushlstring(state, (const char *)data + 1, size - 1);
    fuzz_lua_check(state, 2);
    return 0;
}
