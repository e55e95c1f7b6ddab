/* Guest RAM: one host mapping, split into KVM memory slots around the
 * 3 GiB..4 GiB hole where the LAPIC/IOAPIC MMIO windows live. */
#ifndef GLIDE_VMM_MEMORY_H
#define GLIDE_VMM_MEMORY_H
#include <stdint.h>
#include <stdbool.h>
#include <stddef.h>

#define GUEST_PAGE_SIZE 4096ULL
#define GUEST_LOW_RAM_MAX 0xC0000000ULL  /* RAM below 3 GiB, the rest from 4 GiB */
#define GUEST_HIGH_RAM_BASE 0x100000000ULL
#define GUEST_MEMORY_MAX_REGIONS 2

struct guest_ram_region {
	uint64_t gpa;         /* guest-physical start */
	uint64_t size;        /* bytes */
	uint64_t ram_offset;  /* offset in the host mapping (and in "RAM page numbers") */
	uint8_t *host;        /* host address of gpa */
	uint32_t slot;        /* KVM memory slot id */
};

#define GUEST_HUGE_PAGE_SIZE (2ULL << 20) /* the host's transparent huge page on x86-64 */

struct guest_memory {
	uint8_t *host;        /* whole RAM, ram_offset 0 .. size */
	uint64_t size;
	int nregions;
	struct guest_ram_region regions[GUEST_MEMORY_MAX_REGIONS];
};

/* Maps `size` bytes of anonymous memory and lays out the regions. */
int guest_memory_init(struct guest_memory *mem, uint64_t size);
void guest_memory_free(struct guest_memory *mem);
/* True when a page of guest RAM that mincore() reports not resident can
 * only be one that was never written (reads as zeros): the host has no
 * swap. With swap it may be a written page swapped out. */
bool guest_memory_nonresident_is_zero(void);
/* Host pointer for [gpa, gpa+len) if it lies entirely inside one RAM region, else NULL. */
void *guest_memory_ptr(const struct guest_memory *mem, uint64_t gpa, uint64_t len);

/* 0 when [addr, addr+size) is all guest RAM; -EINVAL with the reason otherwise. */
int memsave_check_range(const struct guest_memory *mem, uint64_t addr, uint64_t size, char *err, size_t errlen);
/* Writes that range raw to path (validated first: no file is touched for a bad range). */
int memsave(const struct guest_memory *mem, uint64_t addr, uint64_t size, const char *path, char *err, size_t errlen);
#endif
