/* loom.core.tls — TLS on OpenSSL 3 over memory BIOs.
 *
 * The event loop owns the sockets; this module only turns ciphertext into
 * plaintext and back. A session has two memory BIOs: what arrives from the
 * network is put into the read BIO, what must go out is taken from the write
 * BIO. Nothing here blocks or touches a file descriptor.
 *
 *   local ctx = assert(core.tls.context { server = true,
 *     certificate = "var/tls.crt", private_key = "var/tls.key" })
 *   local ctx = assert(core.tls.context { verify = true })     -- a client
 *   local s = ctx:session("example.org")   -- client: SNI + host name check
 *   s:put(bytes_from_network)
 *   s:handshake()   --> true (done) | false (needs more input) | nil, msg, code
 *   s:read()        --> plaintext ("" when none yet) | nil, "closed", "closed" | nil, msg, "tls"
 *   s:write(text)   --> true | nil, msg, "tls"
 *   s:take()        --> ciphertext to send, or nil when there is none
 *   s:shutdown()    -- queues close_notify (then take() it)
 *   s:info()        --> { version =, cipher =, verified =, peer = }
 *   core.tls.self_signed(cert_path, key_path, name [, days])
 *       --> true | nil, msg, code: an EC P-256 key and a self-signed
 *           certificate for `name` (subjectAltName DNS or IP).
 *
 * Ownership: a context userdata owns its SSL_CTX; a session userdata owns
 * its SSL (which owns both BIOs) and keeps its context alive through a
 * uservalue, so the SSL_CTX outlives every SSL made from it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "loom.h"

#define CTX_MT "loom.TlsContext"
#define SESSION_MT "loom.TlsSession"
#define READ_CHUNK 16384

typedef struct {
    SSL_CTX *ctx;
    int server;
    int verify;
} TlsContext;

typedef struct {
    SSL *ssl;         /* NULL once closed */
    BIO *in, *out;    /* owned by ssl */
    int server;
    int closed;       /* close_notify received */
} TlsSession;

/* The first queued OpenSSL error as text (clearing the queue), or fallback. */
static const char *ssl_error_text(char *buf, size_t n, const char *fallback)
{
    unsigned long e = ERR_get_error();
    if (e == 0) {
        snprintf(buf, n, "%s", fallback);
    } else {
        ERR_error_string_n(e, buf, n);
    }
    ERR_clear_error();
    return buf;
}

static int fail_ssl(lua_State *L, const char *what)
{
    char buf[256];
    return loom_fail(L, "tls", "%s: %s", what, ssl_error_text(buf, sizeof buf, "failed"));
}

/* Whether name is an IPv4 or IPv6 literal. */
static int is_ip_literal(const char *name)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
}

static const char *opt_string(lua_State *L, int t, const char *k)
{
    const char *s = NULL;
    lua_getfield(L, t, k);
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING) {
            luaL_error(L, "tls option '%s' must be a string", k);
        }
        s = lua_tostring(L, -1);
    }
    lua_pop(L, 1);   /* the string stays alive: the options table holds it */
    return s;
}

/* core.tls.context(opts) */
static int l_context(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int server = loom_opt_bool(L, 1, "server", 0);
    int verify = loom_opt_bool(L, 1, "verify", 1);
    const char *cert = opt_string(L, 1, "certificate");
    const char *key = opt_string(L, 1, "private_key");
    const char *ca = opt_string(L, 1, "ca_file");
    if (server && (!cert || !key)) {
        return luaL_error(L, "a server context needs certificate and private_key");
    }

    TlsContext *c = lua_newuserdatauv(L, sizeof *c, 0);
    c->ctx = NULL;
    c->server = server;
    c->verify = verify;
    luaL_setmetatable(L, CTX_MT);

    ERR_clear_error();
    c->ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (!c->ctx) return fail_ssl(L, "SSL_CTX_new");
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(c->ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_ENABLE_PARTIAL_WRITE);
    SSL_CTX_set_options(c->ctx, SSL_OP_NO_RENEGOTIATION);
    if (cert && SSL_CTX_use_certificate_chain_file(c->ctx, cert) != 1) {
        return fail_ssl(L, "certificate");
    }
    if (key) {
        if (SSL_CTX_use_PrivateKey_file(c->ctx, key, SSL_FILETYPE_PEM) != 1) {
            return fail_ssl(L, "private key");
        }
        if (SSL_CTX_check_private_key(c->ctx) != 1) return fail_ssl(L, "private key");
    }
    if (!server) {
        if (verify) {
            int ok = ca ? SSL_CTX_load_verify_locations(c->ctx, ca, NULL)
                        : SSL_CTX_set_default_verify_paths(c->ctx);
            if (ok != 1) return fail_ssl(L, "trust store");
            SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
        } else {
            SSL_CTX_set_verify(c->ctx, SSL_VERIFY_NONE, NULL);
        }
    }
    return 1;
}

static TlsContext *check_ctx(lua_State *L, int idx)
{
    TlsContext *c = luaL_checkudata(L, idx, CTX_MT);
    if (!c->ctx) luaL_argerror(L, idx, "TLS context not open");
    return c;
}

static int ctx_gc(lua_State *L)
{
    TlsContext *c = luaL_checkudata(L, 1, CTX_MT);
    if (c->ctx) {
        SSL_CTX_free(c->ctx);
        c->ctx = NULL;
    }
    return 0;
}

/* ctx:session([servername]) */
static int ctx_session(lua_State *L)
{
    TlsContext *c = check_ctx(L, 1);
    const char *name = luaL_optstring(L, 2, NULL);
    TlsSession *s = lua_newuserdatauv(L, sizeof *s, 1);
    memset(s, 0, sizeof *s);
    s->server = c->server;
    luaL_setmetatable(L, SESSION_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);   /* the context lives as long as the session */

    ERR_clear_error();
    s->ssl = SSL_new(c->ctx);
    if (!s->ssl) return fail_ssl(L, "SSL_new");
    s->in = BIO_new(BIO_s_mem());
    s->out = BIO_new(BIO_s_mem());
    if (!s->in || !s->out) {
        BIO_free(s->in);
        BIO_free(s->out);
        s->in = s->out = NULL;
        return fail_ssl(L, "BIO_new");
    }
    BIO_set_mem_eof_return(s->in, -1);   /* empty means "more to come", not EOF */
    SSL_set_bio(s->ssl, s->in, s->out);
    if (c->server) {
        SSL_set_accept_state(s->ssl);
    } else {
        SSL_set_connect_state(s->ssl);
        if (name && *name) {
            /* SNI only for names, never for IP literals (RFC 6066) */
            int is_ip = is_ip_literal(name);
            if (!is_ip && SSL_set_tlsext_host_name(s->ssl, name) != 1) return fail_ssl(L, "SNI");
            if (c->verify) {
                int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s->ssl), name)
                               : SSL_set1_host(s->ssl, name);
                if (ok != 1) return fail_ssl(L, "host name check");
            }
        }
    }
    return 1;
}

static TlsSession *check_session(lua_State *L)
{
    TlsSession *s = luaL_checkudata(L, 1, SESSION_MT);
    if (!s->ssl) luaL_argerror(L, 1, "TLS session closed");
    return s;
}

static int session_free(lua_State *L)
{
    TlsSession *s = luaL_checkudata(L, 1, SESSION_MT);
    if (s->ssl) {
        SSL_free(s->ssl);   /* frees both BIOs */
        s->ssl = NULL;
    }
    return 0;
}

/* s:put(ciphertext) */
static int session_put(lua_State *L)
{
    TlsSession *s = check_session(L);
    size_t n;
    const char *p = luaL_checklstring(L, 2, &n);
    while (n > 0) {
        int chunk = n > INT32_MAX ? INT32_MAX : (int)n;
        int w = BIO_write(s->in, p, chunk);
        if (w <= 0) return luaL_error(L, "TLS input buffer: out of memory");
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Classifies the result r of an SSL_* call: 0 wants more, 1 closed by
 * peer, or pushes the failure (3 values) and returns -3. */
static int classify(lua_State *L, TlsSession *s, int r, const char *what)
{
    int e = SSL_get_error(s->ssl, r);
    switch (e) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        ERR_clear_error();
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        s->closed = 1;
        ERR_clear_error();
        return 1;
    default: {
        char buf[256];
        long vr = SSL_get_verify_result(s->ssl);
        if (vr != X509_V_OK) {
            ERR_clear_error();
            loom_fail(L, "tls", "%s: certificate verification failed: %s", what,
                      X509_verify_cert_error_string(vr));
        } else {
            loom_fail(L, "tls", "%s: %s", what, ssl_error_text(buf, sizeof buf, "protocol error"));
        }
        return -3;
    }
    }
}

/* s:handshake() */
static int session_handshake(lua_State *L)
{
    TlsSession *s = check_session(L);
    if (SSL_is_init_finished(s->ssl)) {
        lua_pushboolean(L, 1);
        return 1;
    }
    ERR_clear_error();
    int r = SSL_do_handshake(s->ssl);
    if (r == 1) {
        lua_pushboolean(L, 1);
        return 1;
    }
    int k = classify(L, s, r, "handshake");
    if (k < 0) return 3;
    if (k == 1) return loom_fail(L, "closed", "connection closed during handshake");
    lua_pushboolean(L, 0);
    return 1;
}

/* s:read() */
static int session_read(lua_State *L)
{
    TlsSession *s = check_session(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (;;) {
        char *dst = luaL_prepbuffsize(&b, READ_CHUNK);
        size_t got = 0;
        ERR_clear_error();
        int r = SSL_read_ex(s->ssl, dst, READ_CHUNK, &got);
        if (r == 1) {
            luaL_addsize(&b, got);
            continue;
        }
        int k = classify(L, s, 0, "read");
        if (k < 0) return 3;
        if (k == 1 && luaL_bufflen(&b) == 0) return loom_fail(L, "closed", "closed");
        break;
    }
    luaL_pushresult(&b);
    return 1;
}

/* s:write(plaintext) */
static int session_write(lua_State *L)
{
    TlsSession *s = check_session(L);
    size_t n;
    const char *p = luaL_checklstring(L, 2, &n);
    while (n > 0) {
        size_t done = 0;
        ERR_clear_error();
        if (SSL_write_ex(s->ssl, p, n, &done) != 1) {
            int k = classify(L, s, 0, "write");
            if (k < 0) return 3;
            /* memory BIOs never fill up; a want here means no handshake yet */
            return loom_fail(L, "tls", "write before the handshake finished");
        }
        p += done;
        n -= done;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* s:take() */
static int session_take(lua_State *L)
{
    TlsSession *s = check_session(L);
    char *data;
    long n = BIO_get_mem_data(s->out, &data);
    if (n <= 0) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushlstring(L, data, (size_t)n);
    (void)BIO_reset(s->out);
    return 1;
}

/* s:shutdown() */
static int session_shutdown(lua_State *L)
{
    TlsSession *s = check_session(L);
    ERR_clear_error();
    if (SSL_is_init_finished(s->ssl)) (void)SSL_shutdown(s->ssl);
    ERR_clear_error();
    return 0;
}

/* s:info() */
static int session_info(lua_State *L)
{
    TlsSession *s = check_session(L);
    lua_createtable(L, 0, 5);
    lua_pushstring(L, SSL_get_version(s->ssl));
    lua_setfield(L, -2, "version");
    const char *cipher = SSL_get_cipher_name(s->ssl);
    lua_pushstring(L, cipher ? cipher : "");
    lua_setfield(L, -2, "cipher");
    X509 *peer = SSL_get1_peer_certificate(s->ssl);
    lua_pushboolean(L, peer != NULL && SSL_get_verify_result(s->ssl) == X509_V_OK);
    lua_setfield(L, -2, "verified");
    if (peer) {
        char buf[256];
        X509_NAME_oneline(X509_get_subject_name(peer), buf, sizeof buf);
        lua_pushstring(L, buf);
        lua_setfield(L, -2, "peer");
        X509_free(peer);
    }
    lua_pushboolean(L, s->closed);
    lua_setfield(L, -2, "closed");
    return 1;
}

/* Writes PEM through a file created with mode (never following a link to
 * an existing file's permissions). */
static FILE *create_file(const char *path, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) return NULL;
    (void)fchmod(fd, mode);
    FILE *f = fdopen(fd, "w");
    if (!f) close(fd);
    return f;
}

/* A random positive 127-bit serial number. */
static int random_serial(X509 *x)
{
    int ok = 0;
    BIGNUM *bn = BN_new();
    if (bn && BN_rand(bn, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) == 1) {
        ok = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    }
    BN_free(bn);
    return ok;
}

/* core.tls.self_signed(cert_path, key_path, name [, days]) */
static int l_self_signed(lua_State *L)
{
    const char *cert_path = luaL_checkstring(L, 1);
    const char *key_path = luaL_checkstring(L, 2);
    const char *name = luaL_checkstring(L, 3);
    lua_Integer days = luaL_optinteger(L, 4, 3650);
    luaL_argcheck(L, days > 0 && days <= 36500, 4, "days out of range");
    luaL_argcheck(L, *name && strlen(name) < 200, 3, "bad name");

    int ok = 0;
    const char *what = "key";
    EVP_PKEY *pkey = NULL;
    X509 *x = NULL;
    X509_EXTENSION *ext = NULL;
    FILE *f = NULL;
    errno = 0;
    char san[256];

    ERR_clear_error();
    pkey = EVP_EC_gen("P-256");
    if (!pkey) goto done;
    what = "certificate";
    x = X509_new();
    if (!x || X509_set_version(x, 2) != 1) goto done;
    if (!random_serial(x)) goto done;
    if (!X509_gmtime_adj(X509_getm_notBefore(x), -3600)) goto done;
    if (!X509_time_adj_ex(X509_getm_notAfter(x), (int)days, 0, NULL)) goto done;
    if (X509_set_pubkey(x, pkey) != 1) goto done;
    X509_NAME *subj = X509_get_subject_name(x);
    if (X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_UTF8, (const unsigned char *)name, -1, -1, 0) != 1) {
        goto done;
    }
    if (X509_set_issuer_name(x, subj) != 1) goto done;
    snprintf(san, sizeof san, "%s:%s", is_ip_literal(name) ? "IP" : "DNS", name);
    ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san);
    if (!ext || X509_add_ext(x, ext, -1) != 1) goto done;
    if (X509_sign(x, pkey, EVP_sha256()) <= 0) goto done;

    what = "writing the private key";
    f = create_file(key_path, 0600);
    if (!f || PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL) != 1) goto done;
    if (fclose(f) != 0) { f = NULL; goto done; }
    what = "writing the certificate";
    f = create_file(cert_path, 0644);
    if (!f || PEM_write_X509(f, x) != 1) goto done;
    if (fclose(f) != 0) { f = NULL; goto done; }
    f = NULL;
    ok = 1;
done:
    if (f) fclose(f);
    X509_EXTENSION_free(ext);
    X509_free(x);
    EVP_PKEY_free(pkey);
    if (ok) {
        lua_pushboolean(L, 1);
        return 1;
    }
    if (ERR_peek_error() == 0) return loom_fail(L, "io_error", "%s: %s", what, strerror(errno));
    return fail_ssl(L, what);
}

void loom_open_tls(lua_State *L)
{
    static const luaL_Reg ctx_methods[] = {
        {"session", ctx_session},
        {NULL, NULL},
    };
    static const luaL_Reg ctx_meta[] = {
        {"__gc", ctx_gc},
        {NULL, NULL},
    };
    static const luaL_Reg session_methods[] = {
        {"put", session_put},
        {"handshake", session_handshake},
        {"read", session_read},
        {"write", session_write},
        {"take", session_take},
        {"shutdown", session_shutdown},
        {"info", session_info},
        {"close", session_free},
        {NULL, NULL},
    };
    static const luaL_Reg session_meta[] = {
        {"__gc", session_free},
        {"__close", session_free},
        {NULL, NULL},
    };
    static const luaL_Reg fns[] = {
        {"context", l_context},
        {"self_signed", l_self_signed},
        {NULL, NULL},
    };
    loom_new_type(L, CTX_MT, ctx_methods, ctx_meta);
    loom_new_type(L, SESSION_MT, session_methods, session_meta);
    luaL_newlib(L, fns);
    lua_setfield(L, -2, "tls");
}
