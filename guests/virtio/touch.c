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
	uint64_t touched = 0;
	uint32_t entries;

	rt_init();
	const struct pvh_memmap_entry *map = pvh_memmap(&entries);
	for (uint32_t i = 0; i < entries; i++)
		if (map[i].type == PVH_E820_RAM)
			touched += touch_range(map[i].addr, map[i].addr + map[i].size);
	con_printf("touch: %llu MiB filled, idle\n", (unsigned long long)(touched >> 20));
	hb_start(VGUEST_HB_MODE_TOUCH);
	for (;;) {
		hb_poll();
		hb_count();
	}
}
