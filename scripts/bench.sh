#!/usr/bin/env bash
# Runs loom's benchmarks (long; not part of make test). LOOM_B1_EVENTS sets
# the room size of the B1 benchmarks (default 1000000; their databases are
# built once into bench/data/ and reused). LOOM_MIXED_SECONDS sets the length
# of the mixed-load run (default 150).
set -eu
cd "$(dirname "$0")/.."
export LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/release/?.so;;'
n="${LOOM_B1_EVENTS:-1000000}"
echo "== B1-store";  lua5.4 bench/b1_store.lua "$n"
echo "== B1-http";   lua5.4 bench/b1_http.lua "$n"
echo "== B2-sync (incremental /sync, 10 of 1,000 rooms changed; wake-up)"; lua5.4 bench/b2_sync.lua
echo "== B3-initial (initial /sync of 1,000 rooms; one room of 2,200)"; lua5.4 bench/b3_initial.lua
echo "== B4-state";  lua5.4 bench/b4_state.lua
echo "== B6-stateres"; lua5.4 bench/b6_stateres.lua
echo "== B7-scripts"; lua5.4 bench/b7_scripts.lua
echo "== B8-longpoll (10,000 waiting /sync connections)"; lua5.4 bench/b8_longpoll.lua
echo "== keys-query (/keys/query, 500 users x 3 devices; target < 20 ms)"; lua5.4 bench/keys_query.lua
echo "== user-directory (/user_directory/search, 5,000 users in 100 rooms)"; lua5.4 bench/user_directory.lua
echo "== appservice (10,000 users over 500 of 5,000 rooms; 100,000 events, 10% interesting)"; lua5.4 bench/appservice.lua
echo "== push-eval (one message, 10,000-member room; target < 5 ms)"; lua5.4 bench/push_eval.lua
echo "== metrics"; lua5.4 bench/metrics.lua
echo "== relations (/relations and /threads, a room of 10,000 threads)"; lua5.4 bench/relations.lua
echo "== media (12 MP JPEG thumbnails first and cached; 100 MB upload/download, peak RSS)"; lua5.4 bench/media.lua
echo "== B7-sends (durable + group commit against NORMAL)"; lua5.4 bench/b7_sends.lua
echo "== mixed load (200 sends/s, 50 syncs/s, 20 /messages/s)"; lua5.4 bench/mixed_load.lua "${LOOM_MIXED_SECONDS:-150}"
