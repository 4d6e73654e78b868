/* Media: thumbnails through libvips, and file hashing (core.media).
 *
 *   media.thumbnail(src, dst, width, height, method, max_pixels)
 *     -> { width =, height =, type = "image/jpeg"|"image/png" }
 *      | nil, message, code
 *   media.probe(src) -> { width =, height =, pages =, type = } | nil, message, code
 *   media.sha256_file(path) -> hex digest, size | nil, message, code
 *   media.hasher() -> loom.Sha256: h:update(bytes), h:hex() (then closed),
 *                     h:close(); for bodies hashed as they stream in
 *
 * method is "scale" (fit inside width x height, keeping the aspect ratio,
 * never enlarging) or "crop" (fill width x height exactly, cropping the
 * centre). Sources of more than max_pixels pixels (decompression bombs) and
 * animated images (more than one page) are refused before decoding. The
 * thumbnail is a JPEG when the source is one, a PNG otherwise.
 *
 * Expected failures (a file that is not an image, a corrupt or hostile
 * one, too many pixels) return nil, message, code with code one of
 * "media_not_image", "media_too_large", "media_animated", "media_io".
 * Misuse (wrong argument types, a bad method) raises.
 *
 * The functions take and return only strings and numbers, so a libuv
 * worker (uv.new_work) may call them from its own Lua state. libvips is
 * initialised once per process (pthread_once: libvips keeps process-wide
 * state of its own; loom adds none), with its operation cache off so no file
 * stays open or cached between calls.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <vips/vips.h>

#include "loom.h"

static pthread_once_t vips_once = PTHREAD_ONCE_INIT;
static int vips_ready;   /* written once under vips_once, read afterwards */

/* libvips' warnings about a broken file: the caller gets the error instead */
static void quiet(const gchar *domain, GLogLevelFlags level, const gchar *msg, gpointer data)
{
    (void)domain, (void)level, (void)msg, (void)data;
}

static void start_vips(void)
{
    if (VIPS_INIT("loom") == 0) {
        g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE, quiet, NULL);
        vips_cache_set_max(0);
        vips_cache_set_max_files(0);
        vips_ready = 1;
    }
}

static int need_vips(lua_State *L)
{
    pthread_once(&vips_once, start_vips);
    if (!vips_ready) return loom_fail(L, "media_io", "libvips could not start");
    return 0;
}

/* the libvips error text (cleared), bounded */
static int vips_fail(lua_State *L, const char *code, const char *what)
{
    char msg[200];
    const char *e = vips_error_buffer();
    size_t n = strcspn(e ? e : "", "\n");
    snprintf(msg, sizeof msg, "%s: %.*s", what, (int)(n > 150 ? 150 : n), e ? e : "");
    vips_error_clear();
    return loom_fail(L, code, "%s", msg);
}

static const char *type_of_loader(const char *loader)
{
    if (!loader) return NULL;
    if (strncmp(loader, "VipsForeignLoadJpeg", 19) == 0) return "image/jpeg";
    if (strncmp(loader, "VipsForeignLoadPng", 18) == 0) return "image/png";
    if (strncmp(loader, "VipsForeignLoadGif", 18) == 0) return "image/gif";
    if (strncmp(loader, "VipsForeignLoadNsgif", 20) == 0) return "image/gif";
    if (strncmp(loader, "VipsForeignLoadWebp", 19) == 0) return "image/webp";
    return NULL;
}

/* Opens src's header only (no pixels decoded); checks it is one of the
 * image types loom thumbnails and that it is small enough and still. */
static VipsImage *open_checked(lua_State *L, const char *src, lua_Integer max_pixels,
                               const char **type, int *failed)
{
    const char *loader = vips_foreign_find_load(src);
    VipsImage *in;
    int pages;
    *failed = 0;
    *type = type_of_loader(loader);
    if (!*type) {
        vips_error_clear();
        *failed = loom_fail(L, "media_not_image", "not an image loom can thumbnail");
        return NULL;
    }
    in = vips_image_new_from_file(src, "access", VIPS_ACCESS_SEQUENTIAL, "fail", TRUE, NULL);
    if (!in) {
        *failed = vips_fail(L, "media_not_image", "cannot read the image");
        return NULL;
    }
    pages = vips_image_get_n_pages(in);
    if (pages > 1) {
        g_object_unref(in);
        *failed = loom_fail(L, "media_animated", "animated images have no thumbnails");
        return NULL;
    }
    if (max_pixels > 0 && (lua_Integer)in->Xsize * (lua_Integer)in->Ysize > max_pixels) {
        g_object_unref(in);
        *failed = loom_fail(L, "media_too_large", "image of %dx%d pixels is over the limit",
                            in->Xsize, in->Ysize);
        return NULL;
    }
    return in;
}

static int check_dim(lua_State *L, int i)
{
    lua_Integer v = luaL_checkinteger(L, i);
    luaL_argcheck(L, v >= 1 && v <= 10000, i, "must be 1..10000");
    return (int)v;
}


/* { width, height, type } of an image, which it releases: 1 result. */
static int push_size(lua_State *L, VipsImage *image, const char *type)
{
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, image->Xsize);
    lua_setfield(L, -2, "width");
    lua_pushinteger(L, image->Ysize);
    lua_setfield(L, -2, "height");
    lua_pushstring(L, type);
    lua_setfield(L, -2, "type");
    g_object_unref(image);
    return 1;
}

static int l_thumbnail(lua_State *L)
{
    const char *src = luaL_checkstring(L, 1);
    const char *dst = luaL_checkstring(L, 2);
    int width = check_dim(L, 3), height = check_dim(L, 4);
    const char *method = luaL_checkstring(L, 5);
    lua_Integer max_pixels = luaL_optinteger(L, 6, 0);
    int crop = strcmp(method, "crop") == 0, failed = 0, rc;
    const char *type;
    VipsImage *in, *out = NULL;
    luaL_argcheck(L, crop || strcmp(method, "scale") == 0, 5, "\"scale\" or \"crop\" expected");
    if (need_vips(L)) return 3;
    in = open_checked(L, src, max_pixels, &type, &failed);
    if (!in) return failed;
    g_object_unref(in);
    /* vips_thumbnail decodes with shrink-on-load: the full image is never held */
    if (crop)
        rc = vips_thumbnail(src, &out, width, "height", height, "crop", VIPS_INTERESTING_CENTRE,
                            "size", VIPS_SIZE_BOTH, "fail_on", VIPS_FAIL_ON_ERROR, NULL);
    else
        rc = vips_thumbnail(src, &out, width, "height", height, "size", VIPS_SIZE_DOWN,
                            "fail_on", VIPS_FAIL_ON_ERROR, NULL);
    if (rc) return vips_fail(L, "media_not_image", "cannot decode the image");
    if (strcmp(type, "image/jpeg") == 0) {
        rc = vips_jpegsave(out, dst, "Q", 80, "strip", TRUE, NULL);
    } else {
        type = "image/png";
        rc = vips_pngsave(out, dst, "strip", TRUE, NULL);
    }
    if (rc) {
        g_object_unref(out);
        return vips_fail(L, "media_io", "cannot write the thumbnail");
    }
    return push_size(L, out, type);
}

static int l_probe(lua_State *L)
{
    const char *src = luaL_checkstring(L, 1);
    const char *type;
    int failed = 0;
    VipsImage *in;
    if (need_vips(L)) return 3;
    in = open_checked(L, src, 0, &type, &failed);
    if (!in) return failed;
    return push_size(L, in, type);
}

/* A test image for specs and benchmarks:
 * media.test_image(path, width, height) writes a noisy gradient (JPEG or PNG
 * by the extension). */
static int l_test_image(lua_State *L)
{
    const char *dst = luaL_checkstring(L, 1);
    int width = check_dim(L, 2), height = check_dim(L, 3);
    VipsImage *x = NULL, *noise = NULL, *sum = NULL, *img = NULL;
    int rc;
    if (need_vips(L)) return 3;
    rc = vips_xyz(&x, width, height, NULL);
    if (!rc) rc = vips_gaussnoise(&noise, width, height, "sigma", 20.0, NULL);
    if (!rc) {
        VipsImage *band = NULL;
        rc = vips_extract_band(x, &band, 0, NULL);
        if (!rc) rc = vips_add(band, noise, &sum, NULL);
        if (band) g_object_unref(band);
    }
    if (!rc) {
        VipsImage *three[3];
        three[0] = three[1] = three[2] = sum;
        rc = vips_bandjoin(three, &img, 3, NULL);
    }
    if (!rc) {
        VipsImage *u = NULL;
        rc = vips_cast_uchar(img, &u, NULL);
        if (!rc) rc = vips_image_write_to_file(u, dst, NULL);
        if (u) g_object_unref(u);
    }
    if (x) g_object_unref(x);
    if (noise) g_object_unref(noise);
    if (sum) g_object_unref(sum);
    if (img) g_object_unref(img);
    if (rc) return vips_fail(L, "media_io", "cannot write the test image");
    lua_pushboolean(L, 1);
    return 1;
}

static int l_sha256_file(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    static const char hexd[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE], buf[65536];
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    unsigned int mdlen = 0, i;
    lua_Integer size = 0;
    size_t n;
    int ok = 1;
    FILE *f = fopen(path, "rb");
    EVP_MD_CTX *ctx;
    if (!f) return loom_fail(L, "media_io", "cannot open %s: %s", path, strerror(errno));
    ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) ok = 0;
    while (ok && (n = fread(buf, 1, sizeof buf, f)) > 0) {
        if (EVP_DigestUpdate(ctx, buf, n) != 1) ok = 0;
        size += (lua_Integer)n;
    }
    if (ok && ferror(f)) ok = 0;
    if (ok && EVP_DigestFinal_ex(ctx, md, &mdlen) != 1) ok = 0;
    EVP_MD_CTX_free(ctx);
    fclose(f);
    if (!ok) return loom_fail(L, "media_io", "cannot hash %s", path);
    for (i = 0; i < mdlen; i++) {
        hex[2 * i] = hexd[md[i] >> 4];
        hex[2 * i + 1] = hexd[md[i] & 15];
    }
    lua_pushlstring(L, hex, 2 * mdlen);
    lua_pushinteger(L, size);
    return 2;
}

#define HASHER_MT "loom.Sha256"

typedef struct {
    EVP_MD_CTX *ctx;   /* NULL once finished or closed */
} hasher_t;

static hasher_t *check_hasher(lua_State *L, int i)
{
    hasher_t *h = (hasher_t *)luaL_checkudata(L, i, HASHER_MT);
    luaL_argcheck(L, h->ctx != NULL, i, "hasher is finished");
    return h;
}

static int l_hasher(lua_State *L)
{
    hasher_t *h = (hasher_t *)lua_newuserdatauv(L, sizeof *h, 0);
    h->ctx = NULL;
    luaL_setmetatable(L, HASHER_MT);
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx) return luaL_error(L, "not enough memory");
    if (EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) return luaL_error(L, "sha256 init failed");
    return 1;
}

static int l_hasher_update(lua_State *L)
{
    hasher_t *h = check_hasher(L, 1);
    size_t n;
    const char *data = luaL_checklstring(L, 2, &n);
    if (EVP_DigestUpdate(h->ctx, data, n) != 1) return luaL_error(L, "sha256 update failed");
    lua_settop(L, 1);
    return 1;
}

static int l_hasher_hex(lua_State *L)
{
    hasher_t *h = check_hasher(L, 1);
    static const char hexd[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    char hex[2 * EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0, i;
    int ok = EVP_DigestFinal_ex(h->ctx, md, &mdlen) == 1;
    EVP_MD_CTX_free(h->ctx);
    h->ctx = NULL;
    if (!ok) return luaL_error(L, "sha256 failed");
    for (i = 0; i < mdlen; i++) {
        hex[2 * i] = hexd[md[i] >> 4];
        hex[2 * i + 1] = hexd[md[i] & 15];
    }
    lua_pushlstring(L, hex, 2 * mdlen);
    return 1;
}

static int l_hasher_close(lua_State *L)
{
    hasher_t *h = (hasher_t *)luaL_checkudata(L, 1, HASHER_MT);
    if (h->ctx) EVP_MD_CTX_free(h->ctx);
    h->ctx = NULL;
    return 0;
}

static int l_hasher_tostring(lua_State *L)
{
    hasher_t *h = (hasher_t *)luaL_checkudata(L, 1, HASHER_MT);
    lua_pushfstring(L, "%s%s", HASHER_MT, h->ctx ? "" : " (finished)");
    return 1;
}

void loom_open_media(lua_State *L)
{
    static const luaL_Reg hasher_methods[] = {
        {"update", l_hasher_update},
        {"hex", l_hasher_hex},
        {"close", l_hasher_close},
        {NULL, NULL},
    };
    static const luaL_Reg hasher_meta[] = {
        {"__gc", l_hasher_close},
        {"__close", l_hasher_close},
        {"__tostring", l_hasher_tostring},
        {NULL, NULL},
    };
    static const luaL_Reg fns[] = {
        {"thumbnail", l_thumbnail},
        {"probe", l_probe},
        {"test_image", l_test_image},
        {"sha256_file", l_sha256_file},
        {"hasher", l_hasher},
        {NULL, NULL},
    };
    loom_new_type(L, HASHER_MT, hasher_methods, hasher_meta);
    luaL_newlib(L, fns);
    lua_setfield(L, -2, "media");
}
