#!/usr/bin/env bash
# Run some specs against the release build: scripts/spec.sh spec/01-unit/token_spec.lua ...
cd "$(dirname "$0")/.."
make -s build/release/loom/core.so || exit 1
LUA_PATH='lua/?.lua;lua/?/init.lua;spec/?.lua;;' LUA_CPATH='build/release/?.so;;' \
  exec lua5.4 /usr/bin/busted -o spec/support/output.lua "${@:-spec}"
