# glide: build everything with `make`; `make test` runs every test.
CC      ?= gcc
CFLAGS  ?= -O2 -g
override CFLAGS += -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter -D_GNU_SOURCE -Isrc -pthread
LIBS    := -lmicrohttpd -ljansson -lcurl -lcrypto -lz -llz4 -lsqlite3 -lxxhash -lpcap -lpthread -lm -lnl-route-3 -lnl-3 -luring
# libnl-3's headers live in their own directory (src/hostnet/)
override CFLAGS += $(shell pkg-config --cflags libnl-route-3.0)

BUILD   := build
SRCS    := $(sort $(wildcard src/*/*.c))
OBJS    := $(SRCS:%.c=$(BUILD)/%.o)
TOOLS   := $(patsubst tools/%.c,$(BUILD)/tools/%,$(wildcard tools/*.c))
GUESTS_ASM := $(wildcard guests/*.asm)
GUESTS  := $(patsubst guests/%.asm,$(BUILD)/guests/%.img,$(GUESTS_ASM))

UNIT_TESTS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(wildcard tests/unit/*.c))
LIB_OBJS := $(filter-out $(BUILD)/src/cli/main.o,$(OBJS))

all: $(BUILD)/glide $(TOOLS) $(GUESTS) guest-extras $(UNIT_TESTS)

$(BUILD)/tests/%: tests/unit/%.c $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIB_OBJS) $(LIBS)

$(BUILD)/glide: $(OBJS)
	$(CC) $(CFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tools/%: tools/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIBS)

$(BUILD)/guests/%.img: guests/%.asm
	@mkdir -p $(dir $@)
	nasm -f bin -o $@ $<

# Extra guest targets (ELF guests etc.) are added by guests/guests.mk if present.
-include guests/guests.mk
guest-extras::

test: all
	tests/run.sh

# AddressSanitizer + LeakSanitizer + UBSan build in build-asan (every
# target: glide, tools, guests, unit tests). UB is fatal like a memory
# error. The runtimes are linked statically: with gcc's shared libasan and
# libubsan, UBSan reports ignore log_path (two copies of the runtime).
# A change of these flags rebuilds build-asan from scratch.
ASAN_CFLAGS := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined \
	-fno-omit-frame-pointer -static-libasan -static-libubsan -Wno-error=format-truncation
asan:
	@mkdir -p build-asan
	@echo '$(ASAN_CFLAGS)' | cmp -s - build-asan/.cflags || \
		{ rm -rf build-asan; mkdir -p build-asan; echo '$(ASAN_CFLAGS)' >build-asan/.cflags; }
	$(MAKE) BUILD=build-asan CFLAGS="$(ASAN_CFLAGS)"

# The sanitizer pass alone (tests/test_sanitizers.sh; `make test` runs it too).
test-asan: asan
	tests/run.sh sanitizers

clean:
	rm -rf $(BUILD) build-asan

.PHONY: all test asan test-asan clean guest-extras
-include $(OBJS:.o=.d)
