#!/usr/bin/env bash
# Builds every libFuzzer target in fuzz/ with clang (ASan + UBSan) and runs
# each for FUZZ_SECONDS (default 60). A crash stops the run with its input
# saved as build/fuzz/crash-*. Corpora live in build/fuzz/<target>-corpus.
# Every target runs with an RSS limit (FUZZ_RSS_MB, default 512) and a per-input
# time limit (FUZZ_INPUT_SECONDS, default 10): an input that makes a parser or
# compiler allocate without bound or hang is a finding and fails the run.
set -eu
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-60}
rss=${FUZZ_RSS_MB:-512}
input_secs=${FUZZ_INPUT_SECONDS:-10}
command -v clang >/dev/null || { echo "clang is needed for fuzzing (apt-get install clang)"; exit 1; }
mkdir -p build/fuzz
cflags="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Icsrc \
  -D_POSIX_C_SOURCE=200809L $(pkg-config --cflags lua5.4) $(pkg-config --cflags vips)"
libs="$(pkg-config --libs lua5.4 sqlite3 libssl libcrypto vips) -lhttp_parser -pthread"
status=0
for src in fuzz/fuzz_*.c; do
  name=$(basename "$src" .c)
  echo "== $name: build"
  clang $cflags "$src" csrc/*.c $libs -o "build/fuzz/$name"
  mkdir -p "build/fuzz/$name-corpus"
  echo "== $name: ${secs}s"
  if ! (cd build/fuzz && "./$name" -max_total_time="$secs" -max_len=4096 -print_final_stats=1 \
        -rss_limit_mb="$rss" -malloc_limit_mb="$rss" -timeout="$input_secs" -artifact_prefix="$name-" "$name-corpus" 2>&1 | tail -n 12); then
    echo "!! $name found a failure (see build/fuzz/$name-crash-*)"; status=1
  fi
done
exit $status
