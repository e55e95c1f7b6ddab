/* Guest RAM allocation and guest-physical to host address translation.
 * RAM is one anonymous mapping; guest-physical layout puts the first 3 GiB
 * at 0 and the rest at 4 GiB, leaving the MMIO hole for LAPIC/IOAPIC. */
#include "vmm/memory.h"
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

int guest_memory_init(struct guest_memory *mem, uint64_t size)
{
	void *p;

	memset(mem, 0, sizeof(*mem));
	if (!size || size % GUEST_PAGE_SIZE)
		return -EINVAL;
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	madvise(p, size, MADV_HUGEPAGE);
	mem->host = p;
	mem->size = size;
	mem->regions[0] = (struct guest_ram_region){
		.gpa = 0, .size = size < GUEST_LOW_RAM_MAX ? size : GUEST_LOW_RAM_MAX,
		.ram_offset = 0, .host = p, .slot = 0,
	};
	mem->nregions = 1;
	if (size > GUEST_LOW_RAM_MAX) {
		mem->regions[1] = (struct guest_ram_region){
			.gpa = GUEST_HIGH_RAM_BASE, .size = size - GUEST_LOW_RAM_MAX,
			.ram_offset = GUEST_LOW_RAM_MAX, .host = (uint8_t *)p + GUEST_LOW_RAM_MAX, .slot = 1,
		};
		mem->nregions = 2;
	}
	return 0;
}

void guest_memory_free(struct guest_memory *mem)
{
	if (mem->host)
		munmap(mem->host, mem->size);
	memset(mem, 0, sizeof(*mem));
}

void *guest_memory_ptr(const struct guest_memory *mem, uint64_t gpa, uint64_t len)
{
	for (int i = 0; i < mem->nregions; i++) {
		const struct guest_ram_region *r = &mem->regions[i];
		if (gpa >= r->gpa && gpa - r->gpa <= r->size && len <= r->size - (gpa - r->gpa))
			return r->host + (gpa - r->gpa);
	}
	return NULL;
}
