
# elf-hello: 64-bit ELF guest (--elf), and the same guest with a PVH note.
ELF_GUEST_LDFLAGS := -nostdlib -static -z max-page-size=4096 -z noexecstack --no-warn-rwx-segments -T guests/elf-hello.ld

$(BUILD)/guests/elf-hello.o: guests/elf-hello.S
	@mkdir -p $(dir $@)
	$(CC) -c -o $@ $<

$(BUILD)/guests/elf-hello-pvh.o: guests/elf-hello.S
	@mkdir -p $(dir $@)
	$(CC) -DPVH -c -o $@ $<

$(BUILD)/guests/elf-hello.elf $(BUILD)/guests/elf-hello-pvh.elf: $(BUILD)/guests/%.elf: $(BUILD)/guests/%.o guests/elf-hello.ld
	ld $(ELF_GUEST_LDFLAGS) -o $@ $<

guest-extras:: $(BUILD)/guests/elf-hello.elf $(BUILD)/guests/elf-hello-pvh.elf

# elf-stop: ELF guests that triple-fault, run SSE at CPL 0, or hang.
$(BUILD)/guests/elf-triple-fault.o: guests/elf-stop.S
	@mkdir -p $(dir $@)
	$(CC) -c -o $@ $<

$(BUILD)/guests/elf-sse-cpl0.o: guests/elf-stop.S
	@mkdir -p $(dir $@)
	$(CC) -DSSE -c -o $@ $<

$(BUILD)/guests/elf-hang.o: guests/elf-stop.S
	@mkdir -p $(dir $@)
	$(CC) -DHANG -c -o $@ $<

ELF_STOP_GUESTS := $(BUILD)/guests/elf-triple-fault.elf $(BUILD)/guests/elf-sse-cpl0.elf $(BUILD)/guests/elf-hang.elf
$(ELF_STOP_GUESTS): $(BUILD)/guests/%.elf: $(BUILD)/guests/%.o guests/elf-hello.ld
	ld $(ELF_GUEST_LDFLAGS) -o $@ $<

guest-extras:: $(ELF_STOP_GUESTS)

# Test guests (docs/guests.md): build/guests/guest.img comes from guests/guest.asm
# through the generic rule; ab, heartbeat and workload are the same image with
# its config block patched by guestcfg.
GUESTCFG := $(BUILD)/tools/guestcfg
GUEST_RANGE := --range-start 1M --range-size 128M

$(BUILD)/guests/ab.img: $(BUILD)/guests/guest.img $(GUESTCFG)
	$(GUESTCFG) $< $@ --mode ab $(GUEST_RANGE) >/dev/null

$(BUILD)/guests/heartbeat.img: $(BUILD)/guests/guest.img $(GUESTCFG)
	$(GUESTCFG) $< $@ --mode heartbeat $(GUEST_RANGE) >/dev/null

# 10000 page writes/s per vCPU, converted with this host's TSC rate
$(BUILD)/guests/workload.img: $(BUILD)/guests/guest.img $(GUESTCFG)
	$(GUESTCFG) $< $@ --mode workload $(GUEST_RANGE) --write-rate 10000 >/dev/null

guest-extras:: $(BUILD)/guests/ab.img $(BUILD)/guests/heartbeat.img $(BUILD)/guests/workload.img

# netecho, diskab, pio, touch, abgap: ring-3 C guests that drive virtio 1.x PCI devices by
# polling (guests/virtio/, docs/guests.md). PVH ELF files linked at 1 MiB.
VGUEST_DIR := guests/virtio
VGUEST_CFLAGS := -std=gnu11 -O2 -Wall -Wextra -Werror -ffreestanding -fno-pic -fno-pie -fno-stack-protector \
	-mno-red-zone -mgeneral-regs-only -fno-asynchronous-unwind-tables -fno-tree-loop-distribute-patterns \
	-nostdlib -I$(VGUEST_DIR)
VGUEST_COMMON := $(addprefix $(BUILD)/guests/virtio/,entry.o rt.o pci.o virtio.o)
VGUEST_LDFLAGS := -nostdlib -static -z max-page-size=4096 -z noexecstack --no-warn-rwx-segments -T $(VGUEST_DIR)/guest.ld

$(BUILD)/guests/virtio/%.o: $(VGUEST_DIR)/%.c
	@mkdir -p $(dir $@)
	$(CC) $(VGUEST_CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/guests/virtio/entry.o: $(VGUEST_DIR)/entry.S
	@mkdir -p $(dir $@)
	$(CC) -I$(VGUEST_DIR) -MMD -MP -c -o $@ $<

$(BUILD)/guests/netecho.elf $(BUILD)/guests/diskab.elf $(BUILD)/guests/pio.elf $(BUILD)/guests/touch.elf $(BUILD)/guests/abgap.elf: $(BUILD)/guests/%.elf: $(VGUEST_COMMON) $(BUILD)/guests/virtio/%.o $(VGUEST_DIR)/guest.ld
	ld $(VGUEST_LDFLAGS) -o $@ $(filter %.o,$^)

guest-extras:: $(BUILD)/guests/netecho.elf $(BUILD)/guests/diskab.elf $(BUILD)/guests/pio.elf $(BUILD)/guests/touch.elf $(BUILD)/guests/abgap.elf

# guestcfg patches the config block these guests share with it
$(BUILD)/tools/guestcfg: $(VGUEST_DIR)/guest_abi.h

-include $(wildcard $(BUILD)/guests/virtio/*.d)
