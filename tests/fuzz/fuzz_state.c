/* Fuzz target: the state format (src/state/), its section loaders and
 * snapshot files (src/migrate/snapshot.c), against a fake VM (fake_vm.c).
 *
 * Each input goes through three paths:
 *  1. state_parse_blob() on the raw bytes (header/section/CRC checks);
 *  2. the same bytes with every header and payload CRC recomputed, so the
 *     fuzzer gets past the checksums: state_parse_blob(), then, if it
 *     verifies, state_pending_apply() into a fake VM (config, cpuid, vcpu
 *     records, MSRs, irqchip, pit, clock, uart loaders);
 *  3. the CRC-fixed bytes as a snapshot file: snapshot_open() (config
 *     section) and snapshot_load() into a fake VM with a small RAM
 *     ("ram" sections through the RAM live section's decoder). */
#include "state/state.h"
#include "vmm/config.h"
#include "migrate/snapshot.h"
#include "fake_vm.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define FUZZ_RAM_PAGES_MAX 1024 /* fake RAM: 4 MiB at most */

/* Recomputes the header CRC and every section's CRCs, in place. */
static void fix_crcs(uint8_t *d, size_t len)
{
	uint32_t c;
	size_t off = STATE_HEADER_LEN;

	if (len < STATE_HEADER_LEN)
		return;
	c = fuzz_crc32(d, 20);
	memcpy(d + 20, &c, 4);
	while (len - off >= STATE_SECTION_HEADER_LEN) {
		uint8_t *h = d + off;
		uint64_t plen;
		memcpy(&plen, h + 24, 8);
		size_t avail = len - off - STATE_SECTION_HEADER_LEN;
		if (plen <= avail) {
			c = fuzz_crc32(h + STATE_SECTION_HEADER_LEN, (size_t)plen);
			memcpy(h + 32, &c, 4);
		}
		c = fuzz_crc32(h, 40);
		memcpy(h + 40, &c, 4);
		if (plen > avail)
			break;
		off += STATE_SECTION_HEADER_LEN + (size_t)plen;
	}
}

static void try_blob(const uint8_t *d, size_t len, bool apply)
{
	struct state_pending *p = state_pending_new();
	char err[512];
	static struct vm vm;

	if (!p)
		abort();
	int rc = state_parse_blob(d, len, p, err, sizeof(err));
	if (rc && getenv("FUZZ_DEBUG"))
		fprintf(stderr, "parse: %s\n", err);
	if (rc == 0 && apply) {
		/* A VM shaped like the blob's config section, if it has one. */
		struct vm_config cfg = { .memory_bytes = 2 << 20, .vcpus = 2 };
		for (int i = 0; i < p->n; i++)
			if (!strcmp(p->s[i].h.name, "config"))
				vm_config_from_text((const char *)p->s[i].data, p->s[i].h.length, &cfg, err, sizeof(err));
		if (cfg.vcpus < 1 || cfg.vcpus > VM_MAX_VCPUS)
			cfg.vcpus = 1;
		fake_vm_init(&vm, &cfg, 16, cfg.vcpus);
		if (state_pending_apply(&vm, p, err, sizeof(err)) && getenv("FUZZ_DEBUG"))
			fprintf(stderr, "apply: %s\n", err);
		fake_vm_free(&vm);
	}
	state_pending_free(p);
}

static void try_snapshot(const uint8_t *d, size_t len)
{
	static int memfd = -1;
	static struct vm vm;
	struct vm_config cfg;
	char path[64], err[512];
	int fd;

	if (memfd < 0) {
		memfd = memfd_create("fuzz-snapshot", MFD_CLOEXEC);
		if (memfd < 0)
			abort();
	}
	if (ftruncate(memfd, 0) || pwrite(memfd, d, len, 0) != (ssize_t)len)
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
	if (snapshot_open(path, &fd, &cfg, err, sizeof(err))) {
		if (getenv("FUZZ_DEBUG"))
			fprintf(stderr, "snapshot_open: %s\n", err);
		return;
	}
	/* The restore creates the VM from cfg: same checks as vm_create(), smaller RAM. */
	if (cfg.vcpus >= 1 && cfg.vcpus <= VM_MAX_VCPUS && cfg.memory_bytes % GUEST_PAGE_SIZE == 0) {
		uint64_t pages = cfg.memory_bytes / GUEST_PAGE_SIZE;
		fake_vm_init(&vm, &cfg, pages > FUZZ_RAM_PAGES_MAX ? FUZZ_RAM_PAGES_MAX : pages, cfg.vcpus);
		if (snapshot_load(&vm, fd, err, sizeof(err)) && getenv("FUZZ_DEBUG"))
			fprintf(stderr, "snapshot_load: %s\n", err);
		fake_vm_free(&vm);
	}
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy;

	try_blob(data, size, false);
	copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	fix_crcs(copy, size);
	try_blob(copy, size, true);
	try_snapshot(copy, size);
	free(copy);
	return 0;
}
