
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
