/* Unit test of page tracing bookkeeping: pages written by the monitor
 * itself (device emulation, through vm_mark_dirty) show up in the next
 * harvest exactly once, alongside KVM's own dirty log; phase -1 starts with
 * every page set. Prints PASS/FAIL/SKIP lines for tests/run.sh. */
#include "migrate/ram.h"
#include "vmm/vm.h"
#include "devices/devices.h"
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int failures;
#define CHECK(name, cond, ...) do { \
		if (cond) printf("PASS %s\n", name); \
		else { printf("FAIL %s: ", name); printf(__VA_ARGS__); printf("\n"); failures++; } \
	} while (0)

static bool bit(const struct dirty_tracker *t, uint64_t pfn)
{
	return t->bitmap[pfn / 64] & (1ULL << (pfn % 64));
}

int main(void)
{
	static struct vm vm;
	struct vm_create_args a = { 0 };
	struct dirty_tracker t;
	char err[256];
	uint64_t n;

	if (access("/dev/kvm", R_OK | W_OK)) {
		printf("SKIP page tracing: /dev/kvm not accessible\n");
		return 0;
	}
	cpuid_mask_all_ones(&a.cfg);
	a.cfg.memory_bytes = 16 << 20;
	a.cfg.vcpus = 1;
	if (vm_create(&vm, &a, err, sizeof(err))) {
		printf("FAIL page tracing: %s\n", err);
		return 1;
	}
	CHECK("tracing starts", dirty_start(&t, &vm, true) == 0, "dirty_start failed");
	CHECK("phase -1 sends every page", dirty_count(&t) == vm.mem.size / GUEST_PAGE_SIZE, "%llu of %llu set",
	      (unsigned long long)dirty_count(&t), (unsigned long long)(vm.mem.size / GUEST_PAGE_SIZE));
	/* consume phase -1 as the senders would: clear every chunk and the bitmap */
	for (uint64_t c = 0; c < vm.mem.size / GUEST_PAGE_SIZE / PAGES_PER_CHUNK; c++)
		dirty_clear_chunk(&t, c);
	memset(t.bitmap, 0, (t.npages + 63) / 64 * 8);
	CHECK("a quiet VM has nothing dirty", dirty_harvest(&t, &n) == 0 && n == 0, "%llu pages dirty",
	      (unsigned long long)n);
	/* the monitor writes 3 bytes across pages 10 and 11, and page 300 */
	memcpy(vm.mem.host + 11 * 4096 - 1, "abc", 3);
	vm_mark_dirty(&vm, 11 * 4096 - 1, 3);
	vm_mark_dirty(&vm, 300 * 4096 + 17, 1);
	CHECK("pages written by device emulation are harvested", dirty_harvest(&t, &n) == 0 && n == 3 &&
	      bit(&t, 10) && bit(&t, 11) && bit(&t, 300), "%llu pages dirty", (unsigned long long)n);
	memset(t.bitmap, 0, (t.npages + 63) / 64 * 8);
	CHECK("and only once", dirty_harvest(&t, &n) == 0 && n == 0, "%llu pages dirty", (unsigned long long)n);
	dirty_stop(&t);
	vm_destroy(&vm);
	return failures ? 1 : 0;
}
