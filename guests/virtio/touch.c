/* touch: the "idle but touched" guest. It fills all RAM from 16 MiB up to
 * 3 GiB (the RAM entries of the PVH memory map; 3-4 GiB is the PCI hole)
 * once with a pattern that depends on each 8-byte word's address, then
 * idles: it only counts loop turns in its heartbeat record (mode 6), which
 * it starts once the fill is done, so a tool that sees the record knows
 * every page holds its pattern. The pattern is what nothing can skip or
 * compress: no zero pages, no repeated words. A migrated guest's memory is
 * checked word by word against it with `abcheck --touch` (docs/guests.md:
 * word at address A = touch_word(A), guest_abi.h). */
#include "rt.h"

const char vguest_name[] = "touch";

#define TOUCH_START    VGUEST_TOUCH_START
#define TOUCH_END_MAX  (3ULL << 30)
#define PVH_MAGIC      0x336ec578u
#define E820_RAM       1u

struct pvh_start_info {
	uint32_t magic, version, flags, nr_modules;
	uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
	uint32_t memmap_entries, reserved;
};

struct pvh_memmap_entry {
	uint64_t addr, size;
	uint32_t type, reserved;
};

extern uint32_t boot_start_info;

static uint64_t touch_range(uint64_t start, uint64_t end)
{
	start = start > TOUCH_START ? start : TOUCH_START;
	end = end < TOUCH_END_MAX ? end : TOUCH_END_MAX;
	if (start >= end)
		return 0;
	for (uint64_t a = start; a < end; a += 8)
		*(volatile uint64_t *)(uintptr_t)a = touch_word(a);
	return end - start;
}

void vguest_main(void) __attribute__((noreturn));
void vguest_main(void)
{
	const struct pvh_start_info *si = (const struct pvh_start_info *)(uintptr_t)boot_start_info;
	uint64_t touched = 0;

	rt_init();
	if (!si || si->magic != PVH_MAGIC || si->version < 1 || !si->memmap_paddr)
		vguest_fail(VGUEST_EXIT_CONFIG, "no PVH memory map at 0x%x", boot_start_info);
	const struct pvh_memmap_entry *map = (const struct pvh_memmap_entry *)(uintptr_t)si->memmap_paddr;
	for (uint32_t i = 0; i < si->memmap_entries; i++)
		if (map[i].type == E820_RAM)
			touched += touch_range(map[i].addr, map[i].addr + map[i].size);
	con_printf("touch: %llu MiB filled, idle\n", (unsigned long long)(touched >> 20));
	hb_start(VGUEST_HB_MODE_TOUCH);
	for (;;) {
		hb_poll();
		hb_count();
	}
}
