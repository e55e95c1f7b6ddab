# glide: build everything with `make`; `make test` runs every test.
CC      ?= gcc
CFLAGS  ?= -O2 -g
override CFLAGS += -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter -D_GNU_SOURCE -Isrc -pthread
LIBS    := -lmicrohttpd -ljansson -lcurl -lcrypto -lz -llz4 -lsqlite3 -lpthread -lm

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

asan:
	$(MAKE) BUILD=build-asan CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -Wno-error=format-truncation"

clean:
	rm -rf $(BUILD) build-asan

.PHONY: all test asan clean guest-extras
-include $(OBJS:.o=.d)
