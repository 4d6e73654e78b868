/* loom.core.crypto: the primitives Matrix signing needs.
 *
 *   sha256(bytes)                        -> 32 raw bytes
 *   random_bytes(n)                      -> n raw bytes (1 <= n <= 1024)
 *   base64_encode(bytes [, urlsafe])     -> unpadded base64
 *   base64_decode(text [, urlsafe])      -> bytes | nil, msg, "bad_base64"
 *   ed25519_public_key(seed)             -> 32-byte public key
 *   ed25519_sign(seed, message)          -> 64-byte signature
 *   ed25519_verify(pk, message, sig)     -> boolean
 *   constant_time_equal(a, b)            -> boolean
 *   hmac_sha1(key, message)              -> 20 raw bytes (TURN REST credentials)
 *
 * JSON signing, content hashes and event IDs are built on these in
 * lua/loom/room/crypto.lua. Every OpenSSL object is freed before anything is pushed
 * onto the Lua stack, so a memory error raised by Lua never leaks one.
 */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "loom.h"

#define SEED_LEN 32
#define PUBLIC_KEY_LEN 32
#define SIGNATURE_LEN 64
#define SHA256_LEN 32
#define RANDOM_MAX 1024

/* ---- base64 (pure C, no Lua: fuzz/fuzz_base64.c drives it through Lua) -- */

static const char b64_standard[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_urlsafe[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Unpadded encoded length of n bytes; n must be below SIZE_MAX / 4. */
static size_t b64_encoded_len(size_t n)
{
    return n / 3 * 4 + (n % 3 == 0 ? 0 : n % 3 + 1);
}

static void b64_encode(const unsigned char *in, size_t n, int urlsafe, char *out)
{
    const char *a = urlsafe ? b64_urlsafe : b64_standard;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *out++ = a[v >> 18 & 63];
        *out++ = a[v >> 12 & 63];
        *out++ = a[v >> 6 & 63];
        *out++ = a[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        *out++ = a[v >> 18 & 63];
        *out++ = a[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        *out++ = a[v >> 18 & 63];
        *out++ = a[v >> 12 & 63];
        *out++ = a[v >> 6 & 63];
    }
}

/* The 6-bit value of c in the chosen alphabet, or -1. */
static int b64_value(unsigned char c, int urlsafe)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == (urlsafe ? '-' : '+')) return 62;
    if (c == (urlsafe ? '_' : '/')) return 63;
    return -1;
}

/* Checks text[0..len) and strips correct '=' padding. On success stores the
 * unpadded length in *unpadded and the decoded length in *outlen and returns
 * NULL; otherwise returns a message (with the bad offset in *where). */
static const char *b64_check(const char *text, size_t len, int urlsafe,
                             size_t *unpadded, size_t *outlen, size_t *where)
{
    size_t i, n = len;
    *where = 0;
    if (n > 0 && text[n - 1] == '=') {
        /* padded form: a multiple of 4 ending in "x=" or "xx==" groups */
        if (n % 4 != 0) { *where = n - 1; return "unexpected '=' padding"; }
        n--;
        if (text[n - 1] == '=') n--;
    }
    for (i = 0; i < n; i++) {
        if (b64_value((unsigned char)text[i], urlsafe) < 0) {
            *where = i;
            return text[i] == '=' ? "unexpected '=' padding"
                                  : "invalid base64 character";
        }
    }
    if (n % 4 == 1) { *where = n; return "invalid base64 length"; }
    *unpadded = n;
    *outlen = n / 4 * 3 + (n % 4 == 0 ? 0 : n % 4 - 1);
    return NULL;
}

/* Decodes n already-checked characters; non-zero trailing bits are ignored
 * (Matrix's own example seed has them). */
static void b64_decode(const char *text, size_t n, int urlsafe, unsigned char *out)
{
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        uint32_t v = (uint32_t)b64_value((unsigned char)text[i], urlsafe) << 18
                   | (uint32_t)b64_value((unsigned char)text[i + 1], urlsafe) << 12
                   | (uint32_t)b64_value((unsigned char)text[i + 2], urlsafe) << 6
                   | (uint32_t)b64_value((unsigned char)text[i + 3], urlsafe);
        *out++ = (unsigned char)(v >> 16);
        *out++ = (unsigned char)(v >> 8);
        *out++ = (unsigned char)v;
    }
    if (n - i >= 2) {
        uint32_t v = (uint32_t)b64_value((unsigned char)text[i], urlsafe) << 18
                   | (uint32_t)b64_value((unsigned char)text[i + 1], urlsafe) << 12;
        if (n - i == 3)
            v |= (uint32_t)b64_value((unsigned char)text[i + 2], urlsafe) << 6;
        *out++ = (unsigned char)(v >> 16);
        if (n - i == 3) *out = (unsigned char)(v >> 8);
    }
}

/* ---- Lua functions ----------------------------------------------------- */

static int l_sha256(lua_State *L)
{
    size_t len;
    const char *data = luaL_checklstring(L, 1, &len);
    unsigned char md[SHA256_LEN];
    unsigned int mdlen = 0;
    if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1
        || mdlen != SHA256_LEN) {
        ERR_clear_error();
        return loom_fail(L, "crypto_error", "sha256 failed");
    }
    lua_pushlstring(L, (const char *)md, SHA256_LEN);
    return 1;
}

static int l_random_bytes(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    unsigned char buf[RANDOM_MAX];
    luaL_argcheck(L, n >= 1 && n <= RANDOM_MAX, 1, "must be between 1 and 1024");
    if (RAND_bytes(buf, (int)n) != 1) {
        ERR_clear_error();
        return loom_fail(L, "crypto_error", "RAND_bytes failed");
    }
    lua_pushlstring(L, (const char *)buf, (size_t)n);
    OPENSSL_cleanse(buf, (size_t)n);
    return 1;
}

static int l_base64_encode(lua_State *L)
{
    size_t len, outlen;
    const char *data = luaL_checklstring(L, 1, &len);
    int urlsafe = lua_toboolean(L, 2);
    luaL_Buffer b;
    char *out;
    luaL_argcheck(L, len < (((size_t)-1) / 4 - 4), 1, "too long");
    outlen = b64_encoded_len(len);
    out = luaL_buffinitsize(L, &b, outlen);
    b64_encode((const unsigned char *)data, len, urlsafe, out);
    luaL_pushresultsize(&b, outlen);
    return 1;
}

static int l_base64_decode(lua_State *L)
{
    size_t len, n, outlen, where;
    const char *text = luaL_checklstring(L, 1, &len);
    int urlsafe = lua_toboolean(L, 2);
    const char *msg = b64_check(text, len, urlsafe, &n, &outlen, &where);
    luaL_Buffer b;
    char *out;
    if (msg != NULL)
        return loom_fail(L, "bad_base64", "%s at offset %I", msg, (lua_Integer)where);
    out = luaL_buffinitsize(L, &b, outlen);
    b64_decode(text, n, urlsafe, (unsigned char *)out);
    luaL_pushresultsize(&b, outlen);
    return 1;
}

/* A raw Ed25519 seed argument: a string of exactly 32 bytes (else raises). */
static const unsigned char *check_seed(lua_State *L, int idx)
{
    size_t len;
    const char *s = luaL_checklstring(L, idx, &len);
    luaL_argcheck(L, len == SEED_LEN, idx, "seed must be 32 bytes");
    return (const unsigned char *)s;
}

static int l_ed25519_public_key(lua_State *L)
{
    const unsigned char *seed = check_seed(L, 1);
    unsigned char pk[PUBLIC_KEY_LEN];
    size_t pklen = sizeof pk;
    int ok;
    EVP_PKEY *pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, SEED_LEN);
    ok = pkey != NULL && EVP_PKEY_get_raw_public_key(pkey, pk, &pklen) == 1
         && pklen == PUBLIC_KEY_LEN;
    EVP_PKEY_free(pkey);
    if (!ok) {
        ERR_clear_error();
        return loom_fail(L, "crypto_error", "cannot derive the Ed25519 public key");
    }
    lua_pushlstring(L, (const char *)pk, PUBLIC_KEY_LEN);
    return 1;
}

static int l_ed25519_sign(lua_State *L)
{
    const unsigned char *seed = check_seed(L, 1);
    size_t mlen;
    const char *msg = luaL_checklstring(L, 2, &mlen);
    unsigned char sig[SIGNATURE_LEN];
    size_t siglen = sizeof sig;
    int ok = 0;
    EVP_MD_CTX *ctx = NULL;
    EVP_PKEY *pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, SEED_LEN);
    if (pkey != NULL) ctx = EVP_MD_CTX_new();
    if (ctx != NULL)
        ok = EVP_DigestSignInit(ctx, NULL, NULL, NULL, pkey) == 1
             && EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)msg, mlen) == 1
             && siglen == SIGNATURE_LEN;
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(pkey);
    if (!ok) {
        ERR_clear_error();
        return loom_fail(L, "crypto_error", "Ed25519 signing failed");
    }
    lua_pushlstring(L, (const char *)sig, SIGNATURE_LEN);
    return 1;
}

/* ---- loom.Ed25519Signer: a private key kept ready for signing ------------
 * Building the key from its seed costs a scalar multiplication, as much as
 * a signature; a signer builds it once. */
#define SIGNER_MT "loom.Ed25519Signer"

typedef struct {
    EVP_PKEY *pkey;
} signer_t;

/* crypto.ed25519_signer(seed) -> signer with signer:sign(message) */
static int l_ed25519_signer(lua_State *L)
{
    const unsigned char *seed = check_seed(L, 1);
    signer_t *sg = (signer_t *)lua_newuserdatauv(L, sizeof *sg, 0);
    sg->pkey = NULL;
    luaL_setmetatable(L, SIGNER_MT);
    sg->pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, SEED_LEN);
    if (sg->pkey == NULL) {
        ERR_clear_error();
        return loom_fail(L, "crypto_error", "Ed25519 key setup failed");
    }
    return 1;
}

static int signer_sign(lua_State *L)
{
    signer_t *sg = (signer_t *)luaL_checkudata(L, 1, SIGNER_MT);
    size_t mlen;
    const char *msg = luaL_checklstring(L, 2, &mlen);
    unsigned char sig[SIGNATURE_LEN];
    size_t siglen = sizeof sig;
    int ok = 0;
    EVP_MD_CTX *ctx;
    luaL_argcheck(L, sg->pkey != NULL, 1, "signer has no key");
    ctx = EVP_MD_CTX_new();
    if (ctx != NULL)
        ok = EVP_DigestSignInit(ctx, NULL, NULL, NULL, sg->pkey) == 1
             && EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)msg, mlen) == 1
             && siglen == SIGNATURE_LEN;
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        ERR_clear_error();
        return loom_fail(L, "crypto_error", "Ed25519 signing failed");
    }
    lua_pushlstring(L, (const char *)sig, SIGNATURE_LEN);
    return 1;
}

static int signer_gc(lua_State *L)
{
    signer_t *sg = (signer_t *)luaL_checkudata(L, 1, SIGNER_MT);
    EVP_PKEY_free(sg->pkey);
    sg->pkey = NULL;
    return 0;
}

static int signer_tostring(lua_State *L)
{
    lua_pushliteral(L, "loom.Ed25519Signer");
    return 1;
}

static const luaL_Reg signer_methods[] = {
    { "sign", signer_sign },
    { NULL, NULL }
};

static const luaL_Reg signer_meta[] = {
    { "__gc", signer_gc },
    { "__close", signer_gc },
    { "__tostring", signer_tostring },
    { NULL, NULL }
};

static int l_ed25519_verify(lua_State *L)
{
    size_t pklen, mlen, siglen;
    const char *pk = luaL_checklstring(L, 1, &pklen);
    const char *msg = luaL_checklstring(L, 2, &mlen);
    const char *sig = luaL_checklstring(L, 3, &siglen);
    int ok = 0;
    EVP_MD_CTX *ctx = NULL;
    EVP_PKEY *pkey = NULL;
    if (pklen == PUBLIC_KEY_LEN && siglen == SIGNATURE_LEN) {
        pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL,
                                           (const unsigned char *)pk, pklen);
        if (pkey != NULL) ctx = EVP_MD_CTX_new();
        if (ctx != NULL)
            ok = EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pkey) == 1
                 && EVP_DigestVerify(ctx, (const unsigned char *)sig, siglen,
                                     (const unsigned char *)msg, mlen) == 1;
        EVP_MD_CTX_free(ctx);
        EVP_PKEY_free(pkey);
        ERR_clear_error();
    }
    lua_pushboolean(L, ok);
    return 1;
}

static int l_constant_time_equal(lua_State *L)
{
    size_t alen, blen;
    const char *a = luaL_checklstring(L, 1, &alen);
    const char *b = luaL_checklstring(L, 2, &blen);
    lua_pushboolean(L, alen == blen && CRYPTO_memcmp(a, b, alen) == 0);
    return 1;
}

/* crypto.pbkdf2_sha256(password, salt, iterations, length) -> derived key
 * (raw bytes). iterations 1..10,000,000; length 16..64. For stored
 * passwords. */
static int l_pbkdf2_sha256(lua_State *L)
{
    size_t plen, slen;
    const char *pass = luaL_checklstring(L, 1, &plen);
    const char *salt = luaL_checklstring(L, 2, &slen);
    lua_Integer iter = luaL_checkinteger(L, 3);
    lua_Integer len = luaL_checkinteger(L, 4);
    unsigned char out[64];
    luaL_argcheck(L, iter >= 1 && iter <= 10000000, 3, "iterations out of range");
    luaL_argcheck(L, len >= 16 && len <= 64, 4, "length out of range");
    luaL_argcheck(L, plen <= INT32_MAX && slen <= INT32_MAX, 1, "input too long");
    if (PKCS5_PBKDF2_HMAC(pass, (int)plen, (const unsigned char *)salt, (int)slen, (int)iter,
                          EVP_sha256(), (int)len, out) != 1)
        return loom_fail(L, "crypto_error", "PBKDF2 failed");
    lua_pushlstring(L, (const char *)out, (size_t)len);
    OPENSSL_cleanse(out, sizeof out);
    return 1;
}

/* crypto.hmac_sha1(key, message) -> 20 raw bytes (RFC 2104 over SHA-1).
 * For TURN REST API credentials, whose password is base64(HMAC-SHA1(secret,
 * username)); not for anything that needs collision resistance. */
static int l_hmac_sha1(lua_State *L)
{
    size_t klen, mlen;
    const char *key = luaL_checklstring(L, 1, &klen);
    const char *msg = luaL_checklstring(L, 2, &mlen);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    luaL_argcheck(L, klen <= INT32_MAX, 1, "key too long");
    if (HMAC(EVP_sha1(), key, (int)klen, (const unsigned char *)msg, mlen, md, &mdlen) == NULL) {
        ERR_clear_error();
        return loom_fail(L, "crypto_error", "HMAC-SHA1 failed");
    }
    lua_pushlstring(L, (const char *)md, mdlen);
    return 1;
}

static const luaL_Reg crypto_funcs[] = {
    { "hmac_sha1", l_hmac_sha1 },
    { "pbkdf2_sha256", l_pbkdf2_sha256 },
    { "ed25519_signer", l_ed25519_signer },
    { "sha256", l_sha256 },
    { "random_bytes", l_random_bytes },
    { "base64_encode", l_base64_encode },
    { "base64_decode", l_base64_decode },
    { "ed25519_public_key", l_ed25519_public_key },
    { "ed25519_sign", l_ed25519_sign },
    { "ed25519_verify", l_ed25519_verify },
    { "constant_time_equal", l_constant_time_equal },
    { NULL, NULL }
};

void loom_open_crypto(lua_State *L)
{
    loom_new_type(L, SIGNER_MT, signer_methods, signer_meta);
    luaL_newlib(L, crypto_funcs);
    lua_setfield(L, -2, "crypto");
}
