rockspec_format = "3.0"
package = "loom"
version = "scm-1"
source = {
   url = "git+https://example.invalid/loom.git",
}
description = {
   summary = "A Matrix homeserver core for Lua 5.4 with its hot paths in C",
   detailed = [[
loom stores a Matrix room's DAG of signed events, orders it by arrival and by
topology, hands clients opaque tokens and serves it over the Matrix APIs.
Its C core (loom.core) does ordering tokens, bounds, canonical JSON,
hashing and signing (OpenSSL 3) and SQLite access.
]],
   license = "Apache-2.0",
}
dependencies = {
   "lua >= 5.4",
   "luv",
}
external_dependencies = {
   SQLITE = { header = "sqlite3.h", library = "sqlite3" },
   OPENSSL = { header = "openssl/evp.h", library = "crypto" },
   HTTP_PARSER = { header = "http_parser.h", library = "http_parser" },
}
build = {
   type = "builtin",
   modules = {
      ["loom.core"] = {
         sources = {
            "csrc/checkpoint.c",
            "csrc/core.c",
            "csrc/crypto.c",
            "csrc/http.c",
            "csrc/json.c",
            "csrc/regex.c",
            "csrc/sqlite.c",
            "csrc/state.c",
            "csrc/stateres.c",
            "csrc/token.c",
         },
         defines = { "_POSIX_C_SOURCE=200809L" },
         libraries = { "sqlite3", "crypto", "http_parser", "pthread" },
         incdirs = { "$(SQLITE_INCDIR)", "$(OPENSSL_INCDIR)", "$(HTTP_PARSER_INCDIR)" },
         libdirs = { "$(SQLITE_LIBDIR)", "$(OPENSSL_LIBDIR)", "$(HTTP_PARSER_LIBDIR)" },
      },
      ["loom.api.client.account"] = "lua/loom/api/client/account.lua",
      ["loom.api.client.directory"] = "lua/loom/api/client/directory.lua",
      ["loom.api.client.events"] = "lua/loom/api/client/events.lua",
      ["loom.api.client.rooms"] = "lua/loom/api/client/rooms.lua",
      ["loom.api.client.sync"] = "lua/loom/api/client/sync.lua",
      ["loom.api.client.account_data"] = "lua/loom/api/client/account_data.lua",
      ["loom.api.homeserver"] = "lua/loom/api/homeserver.lua",
      ["loom.api"] = "lua/loom/api/init.lua",
      ["loom.api.pushrules"] = "lua/loom/api/pushrules.lua",
      ["loom.async"] = "lua/loom/async.lua",
      ["loom.cli.config"] = "lua/loom/cli/config.lua",
      ["loom.cli"] = "lua/loom/cli/init.lua",
      ["loom.db.housekeeping"] = "lua/loom/db/housekeeping.lua",
      ["loom.db"] = "lua/loom/db/init.lua",
      ["loom.db.migrate"] = "lua/loom/db/migrate.lua",
      ["loom.http.app"] = "lua/loom/http/app.lua",
      ["loom.http.errors"] = "lua/loom/http/errors.lua",
      ["loom.http.metrics"] = "lua/loom/http/metrics.lua",
      ["loom.http.request"] = "lua/loom/http/request.lua",
      ["loom.http.response"] = "lua/loom/http/response.lua",
      ["loom.http.router"] = "lua/loom/http/router.lua",
      ["loom.http.server"] = "lua/loom/http/server.lua",
      ["loom"] = "lua/loom/init.lua",
      ["loom.json"] = "lua/loom/json.lua",
      ["loom.modules"] = "lua/loom/modules.lua",
      ["loom.room.auth"] = "lua/loom/room/auth.lua",
      ["loom.room.crypto"] = "lua/loom/room/crypto.lua",
      ["loom.room.event"] = "lua/loom/room/event.lua",
      ["loom.room"] = "lua/loom/room/init.lua",
      ["loom.room.redact"] = "lua/loom/room/redact.lua",
      ["loom.room.statemap"] = "lua/loom/room/statemap.lua",
      ["loom.room.stateres"] = "lua/loom/room/stateres.lua",
      ["loom.room.version"] = "lua/loom/room/version.lua",
      ["loom.room.visibility"] = "lua/loom/room/visibility.lua",
      ["loom.store.accounts"] = "lua/loom/store/accounts.lua",
      ["loom.store.changecache"] = "lua/loom/store/changecache.lua",
      ["loom.store.directory"] = "lua/loom/store/directory.lua",
      ["loom.store.events"] = "lua/loom/store/events.lua",
      ["loom.store.filter"] = "lua/loom/store/filter.lua",
      ["loom.store"] = "lua/loom/store/init.lua",
      ["loom.store.keys"] = "lua/loom/store/keys.lua",
      ["loom.store.lazy_members"] = "lua/loom/store/lazy_members.lua",
      ["loom.store.account_data"] = "lua/loom/store/account_data.lua",
      ["loom.store.persist"] = "lua/loom/store/persist.lua",
      ["loom.store.rooms"] = "lua/loom/store/rooms.lua",
      ["loom.store.sql"] = "lua/loom/store/sql.lua",
      ["loom.store.state"] = "lua/loom/store/state.lua",
      ["loom.store.stream"] = "lua/loom/store/stream.lua",
      ["loom.store.txns"] = "lua/loom/store/txns.lua",
      ["loom.store.user_filters"] = "lua/loom/store/user_filters.lua",
      ["loom.sync.engine"] = "lua/loom/sync/engine.lua",
      ["loom.sync.filters"] = "lua/loom/sync/filters.lua",
      ["loom.sync.notifier"] = "lua/loom/sync/notifier.lua",
      ["loom.sync.token"] = "lua/loom/sync/token.lua",
   },
   install = {
      bin = { loom = "bin/loom" },
      -- the migrations land beside the modules, where loom.db.migrate looks
      lua = {
         ["loom.migrations.sqlite.001_events"] = "migrations/sqlite/001_events.sql",
         ["loom.migrations.sqlite.002_state"] = "migrations/sqlite/002_state.sql",
         ["loom.migrations.sqlite.003_accounts"] = "migrations/sqlite/003_accounts.sql",
         ["loom.migrations.sqlite.005_sync"] = "migrations/sqlite/005_sync.sql",
         ["loom.migrations.sqlite.006_redactions"] = "migrations/sqlite/006_redactions.sql",
         ["loom.migrations.sqlite.007_current_after"] = "migrations/sqlite/007_current_after.sql",
         ["loom.migrations.sqlite.008_lazy_members"] = "migrations/sqlite/008_lazy_members.sql",
         ["loom.migrations.sqlite.009_account_data"] = "migrations/sqlite/009_account_data.sql",
         ["loom.migrations.sqlite.004_rooms_api"] = "migrations/sqlite/004_rooms_api.sql",
      },
   },
   copy_directories = { "docs", "examples" },
}
