# loom — build, run and test without luarocks.
#   make          build the C core (build/release/loom/core.so)
#   make run      build, then serve with var/loom.cfg.lua (made from loom.cfg.lua.example)
#   make test     C build (-Werror), luacheck, busted specs, then the specs again
#                 against an AddressSanitizer/UBSan build; ends with "N passed, N failed"
#   make bench    benchmarks (long; not part of make test)
#   make fuzz     libFuzzer targets for every parser (FUZZ_SECONDS each)

LUA        ?= lua5.4
CC         ?= gcc
PKGS       := lua5.4 sqlite3 libssl libcrypto
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null || echo -I/usr/include/lua5.4)
PKG_LIBS   := $(shell pkg-config --libs sqlite3 libssl libcrypto 2>/dev/null || echo -lsqlite3 -lssl -lcrypto) -lhttp_parser -pthread
# libvips for the thumbnail binding (csrc/media.c) only; its headers are system headers
VIPS_CFLAGS := $(patsubst -I%,-isystem %,$(shell pkg-config --cflags vips))
VIPS_LIBS  := $(shell pkg-config --libs vips)
WARN       := -std=c99 -Wall -Wextra -pedantic -Wshadow -Wmissing-prototypes \
              -Wstrict-prototypes -Werror
DEFS       := -D_POSIX_C_SOURCE=200809L
CSRC       := $(sort $(wildcard csrc/*.c))
HDRS       := $(wildcard csrc/*.h)

RELEASE_SO := build/release/loom/core.so
ASAN_SO    := build/asan/loom/core.so

.PHONY: all deps run test test-fast lint bench fuzz clean

all: $(RELEASE_SO)

deps:
	@scripts/deps.sh

$(RELEASE_SO): $(CSRC) $(HDRS) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(DEFS) -O2 -g -fPIC -shared $(PKG_CFLAGS) $(VIPS_CFLAGS) -o $@ $(CSRC) $(PKG_LIBS) $(VIPS_LIBS)

$(ASAN_SO): $(CSRC) $(HDRS) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(DEFS) -O1 -g -fPIC -shared -fno-omit-frame-pointer \
	  -fsanitize=address,undefined -fno-sanitize-recover=undefined \
	  $(PKG_CFLAGS) $(VIPS_CFLAGS) -o $@ $(CSRC) $(PKG_LIBS) $(VIPS_LIBS)

run: deps $(RELEASE_SO)
	@mkdir -p var
	@[ -f var/loom.cfg.lua ] || sed -e 's|^server_name = .*|server_name = "localhost"|' \
	  -e 's|^host = .*|host = "127.0.0.1"|' -e 's|^port = .*|port = 8008|' \
	  -e 's|^database = .*|database = { path = "var/loom.db" }|' \
	  loom.cfg.lua.example > var/loom.cfg.lua
	@echo "config: var/loom.cfg.lua (edit it, then make run again)"
	@$(LUA) bin/loom serve --config var/loom.cfg.lua

test: deps
	@scripts/test.sh

test-fast: $(RELEASE_SO)
	@scripts/test.sh --fast

lint:
	luacheck -q lua spec bench examples bin

bench: deps $(RELEASE_SO)
	@scripts/bench.sh

fuzz: deps
	@scripts/fuzz.sh

clean:
	rm -rf build
