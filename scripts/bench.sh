#!/usr/bin/env bash
# Runs loom's benchmarks (long; not part of make test). LOOM_B1_EVENTS sets
# the room size of B1 (default 1000000; the database is built once into
# bench/data/ and reused).
set -eu
cd "$(dirname "$0")/.."
export LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/release/?.so;;'
lua5.4 bench/b1_store.lua "${LOOM_B1_EVENTS:-1000000}"
