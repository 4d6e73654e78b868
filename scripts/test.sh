#!/usr/bin/env bash
# loom's test suite: C build with warnings as errors, luacheck, busted specs, then
# the same specs against an AddressSanitizer/UBSan build of the C core.
# Ends with the line "N passed, N failed". --fast skips the sanitizer pass.
set -u
cd "$(dirname "$0")/.."
LUA=${LUA:-lua5.4}
fast=0; [ "${1:-}" = "--fast" ] && fast=1
passed=0; failed=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

step() { # name, command...: a build/lint step counts as one test
  local name=$1; shift
  echo "== $name"
  if "$@"; then passed=$((passed + 1)); return 0; fi
  echo "!! $name failed"; failed=$((failed + 1)); return 1
}

specs() { # label, cpath, [env...]
  local label=$1 cpath=$2; shift 2
  echo "== busted ($label)"
  rm -f "$tmp/counts"
  env "$@" LOOM_COUNTS_FILE="$tmp/counts" LUA_CPATH="$cpath;;" \
      LUA_PATH='lua/?.lua;lua/?/init.lua;spec/?.lua;;' \
      "$LUA" /usr/bin/busted -o spec/support/output.lua spec
  if [ -s "$tmp/counts" ]; then
    read -r p f < "$tmp/counts"
    passed=$((passed + p)); failed=$((failed + f))
  else
    echo "!! busted ($label) did not finish"; failed=$((failed + 1))
  fi
}

step "C build (-Wall -Wextra -Werror)" make -s build/release/loom/core.so
step "luacheck" luacheck -q lua spec bench examples bin
specs "release" "build/release/?.so"
if [ $fast = 0 ]; then
  if step "C build (AddressSanitizer + UBSan)" make -s build/asan/loom/core.so; then
    asan=$(gcc -print-file-name=libasan.so)
    # intercept_tls_get_addr=0: with it on, the leak check at exit can read a
    # stale dynamic-TLS range and crash its own tracer (SIGSEGV, "Tracer caught
    # signal 11") depending on the process's allocation pattern; dynamic TLS
    # blocks stay reachable through the thread's DTV, which is still scanned.
    specs "asan+ubsan" "build/asan/?.so" LD_PRELOAD="$asan" \
      ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:intercept_tls_get_addr=0 \
      UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 LOOM_SANITIZED=1
  fi
fi
echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
