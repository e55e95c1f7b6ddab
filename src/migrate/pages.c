/* Page tracing for pre-copy.
 *
 * With KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 + INITIALLY_SET (enabled when the VM
 * is created), turning dirty logging on is cheap and stalls no vCPU: every
 * page starts dirty and write-protection is re-armed chunk by chunk with
 * KVM_CLEAR_DIRTY_LOG just before that chunk's pages are read and sent. A
 * write that lands after the clear sets the bit again for the next phase.
 * Without manual protect, KVM_GET_DIRTY_LOG clears and re-protects itself. */
#include "migrate/pages.h"
#include "common/util.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/sysinfo.h>

bool page_is_zero(const uint8_t *page)
{
	const uint64_t *q = (const uint64_t *)page;
	for (size_t i = 0; i < GUEST_PAGE_SIZE / 8; i += 8)
		if (q[i] | q[i + 1] | q[i + 2] | q[i + 3] | q[i + 4] | q[i + 5] | q[i + 6] | q[i + 7])
			return false;
	return true;
}

int dirty_start(struct dirty_tracker *t, struct vm *vm)
{
	struct sysinfo si;
	size_t words;
	int rc;

	memset(t, 0, sizeof(*t));
	t->vm = vm;
	t->npages = vm->mem.size / GUEST_PAGE_SIZE;
	words = (t->npages + 63) / 64;
	t->bitmap = calloc(words, sizeof(uint64_t));
	t->slot_bits = calloc(words, sizeof(uint64_t));
	if (!t->bitmap || !t->slot_bits)
		return -ENOMEM;
	t->manual_protect = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) > 0;
	t->skip_nonresident = sysinfo(&si) == 0 && si.totalswap == 0;
	/* Phase -1 sends everything. */
	memset(t->bitmap, 0xff, words * sizeof(uint64_t));
	if (t->npages % 64)
		t->bitmap[words - 1] = (1ULL << (t->npages % 64)) - 1;
	if (vm->user_dirty_bitmap) {
		pthread_mutex_lock(&vm->user_dirty_lock);
		memset(vm->user_dirty_bitmap, 0, words * sizeof(uint64_t));
		pthread_mutex_unlock(&vm->user_dirty_lock);
	}
	uint64_t t0 = now_ns();
	rc = vm_set_dirty_logging(vm, true);
	if (rc)
		return rc;
	glide_log("migrate", "page tracing on in %.3f ms (%s)", (now_ns() - t0) / 1e6,
		  t->manual_protect ? "manual protect, initially set" : "write-protect all");
	if (!t->manual_protect) /* reset the log so phase 0 sees only new writes */
		return dirty_harvest(t, &(uint64_t){ 0 });
	return 0;
}

int dirty_harvest(struct dirty_tracker *t, uint64_t *count)
{
	struct vm *vm = t->vm;

	for (int i = 0; i < vm->mem.nregions; i++) {
		struct guest_ram_region *r = &vm->mem.regions[i];
		uint64_t first = r->ram_offset / GUEST_PAGE_SIZE, n = r->size / GUEST_PAGE_SIZE;
		struct kvm_dirty_log log = { .slot = r->slot, .dirty_bitmap = t->slot_bits };

		memset(t->slot_bits, 0, (n + 63) / 64 * sizeof(uint64_t));
		if (ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0)
			return -errno;
		/* region starts are 64-page aligned (0 and 3 GiB) */
		for (uint64_t w = 0; w < (n + 63) / 64; w++)
			t->bitmap[first / 64 + w] |= t->slot_bits[w];
	}
	if (vm->user_dirty_bitmap) {
		pthread_mutex_lock(&vm->user_dirty_lock);
		for (uint64_t w = 0; w < (t->npages + 63) / 64; w++) {
			t->bitmap[w] |= vm->user_dirty_bitmap[w];
			vm->user_dirty_bitmap[w] = 0;
		}
		pthread_mutex_unlock(&vm->user_dirty_lock);
	}
	*count = dirty_count(t);
	return 0;
}

uint64_t dirty_count(const struct dirty_tracker *t)
{
	uint64_t c = 0;
	for (uint64_t w = 0; w < (t->npages + 63) / 64; w++)
		c += (uint64_t)__builtin_popcountll(t->bitmap[w]);
	return c;
}

int dirty_clear_chunk(struct dirty_tracker *t, uint64_t chunk)
{
	struct vm *vm = t->vm;
	uint64_t first = chunk * PAGES_PER_CHUNK;

	if (!t->manual_protect)
		return 0;
	for (int i = 0; i < vm->mem.nregions; i++) {
		struct guest_ram_region *r = &vm->mem.regions[i];
		uint64_t rfirst = r->ram_offset / GUEST_PAGE_SIZE, rn = r->size / GUEST_PAGE_SIZE;
		if (first < rfirst || first >= rfirst + rn)
			continue;
		uint64_t n = MIN(PAGES_PER_CHUNK, rfirst + rn - first);
		struct kvm_clear_dirty_log c = {
			.slot = r->slot,
			.num_pages = (uint32_t)n,
			.first_page = first - rfirst,
			.dirty_bitmap = &t->bitmap[first / 64],
		};
		if (ioctl(vm->vm_fd, KVM_CLEAR_DIRTY_LOG, &c) < 0)
			return -errno;
		return 0;
	}
	return -EINVAL;
}

void dirty_stop(struct dirty_tracker *t)
{
	if (t->vm)
		vm_set_dirty_logging(t->vm, false);
	free(t->bitmap);
	free(t->slot_bits);
	t->bitmap = t->slot_bits = NULL;
	t->vm = NULL;
}
