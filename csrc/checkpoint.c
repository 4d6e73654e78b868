/* loom.core.sqlite.checkpointer — WAL checkpoints on a thread of their own.
 *
 * A serving homeserver turns SQLite's automatic checkpoints off and runs
 * PASSIVE checkpoints instead. With durable commits (synchronous = FULL) a
 * checkpoint ends with an fsync of the database file that takes tens of
 * milliseconds; run on the event loop, every request in flight waits for it.
 * Here a POSIX thread opens its own connection to the same file (WAL mode lets
 * a checkpoint run beside readers and the writer) and checkpoints every
 * interval until stopped. PASSIVE never waits for a lock and never invokes a
 * busy handler, so the thread never holds up the loop's connection.
 *
 *   local cp = assert(core.sqlite.checkpointer("var/loom.db", 1000))
 *   cp:stats()   --> { runs =, checkpoints =, failures =, max_ms =, last_error = }
 *   cp:stop()    -- joins the thread (also on __gc / __close)
 *
 * Ownership: the userdata owns the thread, its mutex and condition variable and
 * a copy of the path; the thread owns its sqlite3 handle and closes it before
 * it ends. Only the mutex-guarded fields are shared between the two.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loom.h"

#define CHECKPOINTER_MT "loom.Checkpointer"
#define ERR_MAX 200

typedef struct {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int running;          /* thread started and not yet joined */
    int stop;             /* guarded by mu */
    long interval_ms;
    char *path;
    /* statistics, guarded by mu */
    lua_Integer runs, checkpoints, failures;
    double max_ms;
    char last_error[ERR_MAX];
} Checkpointer;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void record(Checkpointer *cp, int rc, const char *msg, double ms)
{
    pthread_mutex_lock(&cp->mu);
    cp->runs++;
    if (rc == SQLITE_OK) {
        cp->checkpoints++;
    } else {
        cp->failures++;
        snprintf(cp->last_error, ERR_MAX, "%s", msg ? msg : sqlite3_errstr(rc));
    }
    if (ms > cp->max_ms)
        cp->max_ms = ms;
    pthread_mutex_unlock(&cp->mu);
}

static void *run(void *arg)
{
    Checkpointer *cp = (Checkpointer *)arg;
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(cp->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    /* A connection finds the database in WAL mode (and opens the WAL) on its
     * first read; until then a checkpoint would do nothing. */
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        record(cp, rc, db ? sqlite3_errmsg(db) : NULL, 0);
        sqlite3_close(db);
        return NULL;
    }
    pthread_mutex_lock(&cp->mu);
    while (!cp->stop) {
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += cp->interval_ms / 1000;
        deadline.tv_nsec += (cp->interval_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        int w = 0;
        while (!cp->stop && w != ETIMEDOUT)
            w = pthread_cond_timedwait(&cp->cv, &cp->mu, &deadline);
        if (cp->stop)
            break;
        pthread_mutex_unlock(&cp->mu);
        double t0 = now_ms();
        rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        /* BUSY: another checkpoint (or a recovery) was running; not a failure */
        record(cp, rc == SQLITE_BUSY ? SQLITE_OK : rc, rc == SQLITE_OK ? NULL : sqlite3_errmsg(db),
               now_ms() - t0);
        pthread_mutex_lock(&cp->mu);
    }
    pthread_mutex_unlock(&cp->mu);
    sqlite3_close(db);
    return NULL;
}

static Checkpointer *check_checkpointer(lua_State *L, int idx)
{
    return (Checkpointer *)luaL_checkudata(L, idx, CHECKPOINTER_MT);
}

/* Stops and joins the thread; safe to call more than once. */
static void stop_thread(Checkpointer *cp)
{
    if (!cp->running)
        return;
    pthread_mutex_lock(&cp->mu);
    cp->stop = 1;
    pthread_cond_signal(&cp->cv);
    pthread_mutex_unlock(&cp->mu);
    pthread_join(cp->thread, NULL);
    cp->running = 0;
}

static int cp_stop(lua_State *L)
{
    Checkpointer *cp = check_checkpointer(L, 1);
    stop_thread(cp);
    return 0;
}

static int cp_gc(lua_State *L)
{
    Checkpointer *cp = check_checkpointer(L, 1);
    stop_thread(cp);
    if (cp->path) {
        pthread_cond_destroy(&cp->cv);
        pthread_mutex_destroy(&cp->mu);
        free(cp->path);
        cp->path = NULL;
    }
    return 0;
}

/* cp:stats() -> { runs, checkpoints, failures, max_ms, last_error, running } */
static int cp_stats(lua_State *L)
{
    Checkpointer *cp = check_checkpointer(L, 1);
    lua_createtable(L, 0, 6);
    if (!cp->path) {
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "running");
        return 1;
    }
    pthread_mutex_lock(&cp->mu);
    lua_Integer runs = cp->runs, checkpoints = cp->checkpoints, failures = cp->failures;
    double max_ms = cp->max_ms;
    char err[ERR_MAX];
    memcpy(err, cp->last_error, ERR_MAX);
    pthread_mutex_unlock(&cp->mu);
    lua_pushinteger(L, runs);
    lua_setfield(L, -2, "runs");
    lua_pushinteger(L, checkpoints);
    lua_setfield(L, -2, "checkpoints");
    lua_pushinteger(L, failures);
    lua_setfield(L, -2, "failures");
    lua_pushnumber(L, max_ms);
    lua_setfield(L, -2, "max_ms");
    if (err[0]) {
        lua_pushstring(L, err);
        lua_setfield(L, -2, "last_error");
    }
    lua_pushboolean(L, cp->running);
    lua_setfield(L, -2, "running");
    return 1;
}

static int cp_tostring(lua_State *L)
{
    Checkpointer *cp = check_checkpointer(L, 1);
    lua_pushfstring(L, "%s (%s, every %d ms)", CHECKPOINTER_MT, cp->running ? "running" : "stopped",
                    (int)cp->interval_ms);
    return 1;
}

/* core.sqlite.checkpointer(path, interval_ms) -> Checkpointer | nil, message, code */
static int l_checkpointer(lua_State *L)
{
    size_t len;
    const char *path = luaL_checklstring(L, 1, &len);
    lua_Integer interval = luaL_checkinteger(L, 2);
    luaL_argcheck(L, interval >= 1 && interval <= 86400000, 2, "interval must be 1..86400000 ms");
    luaL_argcheck(L, len > 0 && strlen(path) == len, 1, "path must be a file name");
    Checkpointer *cp = (Checkpointer *)lua_newuserdatauv(L, sizeof(Checkpointer), 0);
    memset(cp, 0, sizeof(*cp));
    luaL_setmetatable(L, CHECKPOINTER_MT);
    cp->interval_ms = (long)interval;
    cp->path = (char *)malloc(len + 1);
    if (!cp->path)
        return luaL_error(L, "out of memory");
    memcpy(cp->path, path, len + 1);
    if (pthread_mutex_init(&cp->mu, NULL) != 0) {
        free(cp->path);
        cp->path = NULL;
        return loom_fail(L, "io_error", "cannot create a mutex");
    }
    if (pthread_cond_init(&cp->cv, NULL) != 0) {
        pthread_mutex_destroy(&cp->mu);
        free(cp->path);
        cp->path = NULL;
        return loom_fail(L, "io_error", "cannot create a condition variable");
    }
    int rc = pthread_create(&cp->thread, NULL, run, cp);
    if (rc != 0) {
        pthread_cond_destroy(&cp->cv);
        pthread_mutex_destroy(&cp->mu);
        free(cp->path);
        cp->path = NULL;
        return loom_fail(L, "io_error", "cannot start the checkpoint thread: %s", strerror(rc));
    }
    cp->running = 1;
    return 1;
}

static const luaL_Reg cp_methods[] = {
    {"stop", cp_stop},
    {"stats", cp_stats},
    {NULL, NULL}
};

static const luaL_Reg cp_meta[] = {
    {"__gc", cp_gc},
    {"__close", cp_stop},
    {"__tostring", cp_tostring},
    {NULL, NULL}
};

/* Adds checkpointer() to the core.sqlite table at the top of the stack. */
void loom_open_checkpoint(lua_State *L)
{
    loom_new_type(L, CHECKPOINTER_MT, cp_methods, cp_meta);
    lua_pushcfunction(L, l_checkpointer);
    lua_setfield(L, -2, "checkpointer");
}
