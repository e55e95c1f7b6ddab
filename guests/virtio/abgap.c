/* abgap: the A-B guest of guests/guest.asm (one byte of each page
 * incremented, page after page, over a range, again and again) as a PVH
 * ELF guest with one vCPU, plus the gap log (rt.c) that the boot sector has
 * no room for. With the gap log, a tool finds the gap a migration's stun
 * made even when the guest saw longer stalls before it (pre-copy on a busy
 * host): the boot-sector guest keeps only its largest gap, so there the
 * guest-observed stun was often only bounded (bench S2).
 *
 * The range is [16 MiB, 16 MiB + half the RAM), the RAM's size rounded up
 * to 64 MiB and the half capped at 2 GiB (guest_abi.h): 128 MiB of a
 * 256 MiB VM, 1 GiB of a 2 GiB one, under glide and QEMU alike. A dump of
 * it is checked with `abcheck --parts 1` from 16 MiB, as the boot-sector
 * guest's range with one vCPU. Heartbeat mode 7; iterations = page writes. */
#include "rt.h"

const char vguest_name[] = "abgap";

void vguest_main(void) __attribute__((noreturn));
void vguest_main(void)
{
	uint64_t ram = 0, start = VGUEST_ABGAP_START;
	uint32_t entries;
	bool inside = false;

	rt_init();
	const struct pvh_memmap_entry *map = pvh_memmap(&entries);
	for (uint32_t i = 0; i < entries; i++)
		if (map[i].type == PVH_E820_RAM)
			ram += map[i].size;
	ram = (ram + VGUEST_ABGAP_ROUND - 1) / VGUEST_ABGAP_ROUND * VGUEST_ABGAP_ROUND;
	uint64_t size = ram / 2 < VGUEST_ABGAP_MAX ? ram / 2 : VGUEST_ABGAP_MAX, end = start + size;
	for (uint32_t i = 0; i < entries; i++)
		if (map[i].type == PVH_E820_RAM && map[i].addr <= start && map[i].addr + map[i].size >= end)
			inside = true;
	if (!size || !inside)
		vguest_fail(VGUEST_EXIT_CONFIG, "the A-B range 0x%llx-0x%llx is not all RAM", (unsigned long long)start,
			    (unsigned long long)end);
	con_printf("abgap: A-B over %llu MiB from %llu MiB\n", (unsigned long long)(size >> 20),
		   (unsigned long long)(start >> 20));
	hb_start(VGUEST_HB_MODE_ABGAP);
	for (volatile uint8_t *p = (volatile uint8_t *)(uintptr_t)start;;) {
		hb_poll();
		(*p)++;
		p += 4096;
		if (p == (volatile uint8_t *)(uintptr_t)end)
			p = (volatile uint8_t *)(uintptr_t)start;
		hb_count();
	}
}
