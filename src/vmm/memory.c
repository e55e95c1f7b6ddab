/* Guest RAM allocation, guest-physical to host address translation, and
 * memsave (a range of guest RAM written raw to a file).
 * RAM is one anonymous mapping; guest-physical layout puts the first 3 GiB
 * at 0 and the rest at 4 GiB, leaving the MMIO hole for LAPIC/IOAPIC. */
#include "vmm/memory.h"
#include "common/util.h"
#include <stdio.h>
#include <unistd.h>
#include <fcntl.h>
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>

int guest_memory_init(struct guest_memory *mem, uint64_t size)
{
	void *p;

	memset(mem, 0, sizeof(*mem));
	if (!size || size % GUEST_PAGE_SIZE)
		return -EINVAL;
	/* 2 MiB aligned, so that a huge page of the host backs a 2 MiB-aligned
	 * range of guest-physical memory (which KVM can then map as one) */
	uint8_t *raw = mmap(NULL, size + GUEST_HUGE_PAGE_SIZE, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (raw == MAP_FAILED)
		return -errno;
	p = (void *)(((uintptr_t)raw + GUEST_HUGE_PAGE_SIZE - 1) & ~(uintptr_t)(GUEST_HUGE_PAGE_SIZE - 1));
	if ((uint8_t *)p > raw)
		munmap(raw, (size_t)((uint8_t *)p - raw));
	munmap((uint8_t *)p + size, (size_t)(raw + size + GUEST_HUGE_PAGE_SIZE - ((uint8_t *)p + size)));
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

/* ---- memsave: a range of guest-physical memory written raw to a file ---- */

int memsave_check_range(const struct guest_memory *mem, uint64_t addr, uint64_t size, char *err, size_t errlen)
{
	if (!size) {
		errf(err, errlen, "memsave: size must not be zero");
		return -EINVAL;
	}
	if (size - 1 > UINT64_MAX - addr) {
		errf(err, errlen, "memsave: range 0x%llx+0x%llx wraps past the end of the address space",
		     (unsigned long long)addr, (unsigned long long)size);
		return -EINVAL;
	}
	if (size > mem->size) {
		errf(err, errlen, "memsave: size 0x%llx is larger than the VM's memory (0x%llx)",
		     (unsigned long long)size, (unsigned long long)mem->size);
		return -EINVAL;
	}
	uint64_t last = addr + (size - 1); /* inclusive: addr + size may be 2^64 */
	for (uint64_t a = addr;;) {
		uint64_t step = MIN(last - a + 1, GUEST_PAGE_SIZE - (a % GUEST_PAGE_SIZE));
		if (!guest_memory_ptr(mem, a, step)) {
			errf(err, errlen, "memsave: guest-physical range 0x%llx+0x%llx is not RAM (address 0x%llx)",
			     (unsigned long long)addr, (unsigned long long)size, (unsigned long long)a);
			return -EINVAL;
		}
		if (last - a < step)
			break;
		a += step;
	}
	return 0;
}

int memsave(const struct guest_memory *mem, uint64_t addr, uint64_t size, const char *path, char *err, size_t errlen)
{
	int fd, rc;
	uint64_t done = 0;

	/* Validate the whole range before the file is touched: no partial or truncated file for a bad request. */
	if ((rc = memsave_check_range(mem, addr, size, err, errlen)))
		return rc;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = -errno;
		errf(err, errlen, "memsave: cannot create %s: %s", path, strerror(errno));
		return rc;
	}
	while (!rc && done < size) {
		uint64_t a = addr + done;
		uint64_t step = MIN(size - done, 1ULL << 20);
		void *p = guest_memory_ptr(mem, a, step);
		if (!p) /* crosses a region boundary: go page by page */
			step = MIN(step, GUEST_PAGE_SIZE - (a % GUEST_PAGE_SIZE)), p = guest_memory_ptr(mem, a, step);
		rc = write_full(fd, p, step);
		done += step;
	}
	if (close(fd) < 0 && !rc)
		rc = -errno;
	if (rc)
		errf(err, errlen, "memsave: writing %s failed: %s", path, strerror(-rc));
	return rc;
}

bool guest_memory_nonresident_is_zero(void)
{
	struct sysinfo si;
	return sysinfo(&si) == 0 && si.totalswap == 0;
}
