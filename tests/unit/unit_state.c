/* Unit tests of the state format: every section of a real VM round-trips
 * into a second VM; every flipped byte, every truncation, a newer version
 * and an unknown section are rejected with a clear message before anything
 * is applied. Prints PASS/FAIL/SKIP lines for tests/run.sh. */
#include "state/state.h"
#include "vmm/vm.h"
#include "devices/devices.h"
#include "common/util.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <zlib.h>

static int failures;
#define CHECK(name, cond, ...) do { \
		if (cond) printf("PASS %s\n", name); \
		else { printf("FAIL %s: ", name); printf(__VA_ARGS__); printf("\n"); failures++; } \
	} while (0)

static int make_vm(struct vm *vm, int vcpus)
{
	struct vm_create_args a = { 0 };
	char err[256];
	cpuid_mask_all_ones(&a.cfg);
	a.cfg.memory_bytes = 16 << 20;
	a.cfg.vcpus = vcpus;
	snprintf(a.cfg.name, sizeof(a.cfg.name), "unit");
	if (vm_create(vm, &a, err, sizeof(err))) {
		fprintf(stderr, "vm_create: %s\n", err);
		return -1;
	}
	return devices_init(vm, -1);
}

int main(void)
{
	static struct vm a, b;
	struct state_buf blob = { 0 };
	struct state_writer w = { state_writer_buf, &blob };
	char err[512];
	int rc;

	if (access("/dev/kvm", R_OK | W_OK)) {
		printf("SKIP state format: /dev/kvm not accessible\n");
		return 0;
	}
	if (make_vm(&a, 2) || make_vm(&b, 2)) {
		printf("FAIL state format: cannot create VMs\n");
		return 1;
	}
	/* Give vCPU 1 distinctive registers. */
	struct kvm_regs regs;
	ioctl(a.vcpus[1].fd, KVM_GET_REGS, &regs);
	regs.rax = 0x1122334455667788ULL;
	regs.rip = 0x7c00;
	regs.r15 = 42;
	ioctl(a.vcpus[1].fd, KVM_SET_REGS, &regs);
	struct kvm_sregs sregs;
	ioctl(a.vcpus[1].fd, KVM_GET_SREGS, &sregs);
	sregs.cs.base = 0x10000;
	sregs.cs.selector = 0x1000;
	ioctl(a.vcpus[1].fd, KVM_SET_SREGS, &sregs);

	rc = state_save_all(&a, &w, true);
	CHECK("state save all sections", rc == 0 && !blob.failed && blob.len > 1000, "rc %d len %zu", rc, blob.len);

	/* Round trip into a second VM. */
	struct state_pending *p = state_pending_new();
	rc = state_parse_blob(blob.data, blob.len, p, err, sizeof(err));
	CHECK("state parse", rc == 0, "%s", err);
	const char *want[] = { "config", "cpuid", "vcpu", "irqchip", "pit", "clock", "uart" };
	for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
		int found = 0;
		for (int s = 0; s < p->n; s++)
			found += !strcmp(p->s[s].h.name, want[i]);
		char name[64];
		snprintf(name, sizeof(name), "state has section %s", want[i]);
		CHECK(name, found >= 1, "section missing");
	}
	rc = state_pending_apply(&b, p, err, sizeof(err));
	CHECK("state apply to a second VM", rc == 0, "%s", err);
	state_pending_free(p);
	struct kvm_regs r2;
	struct kvm_sregs s2;
	ioctl(b.vcpus[1].fd, KVM_GET_REGS, &r2);
	ioctl(b.vcpus[1].fd, KVM_GET_SREGS, &s2);
	CHECK("round trip: REGS identical", !memcmp(&regs, &r2, sizeof(regs)), "rax %llx rip %llx",
	      (unsigned long long)r2.rax, (unsigned long long)r2.rip);
	CHECK("round trip: SREGS identical", s2.cs.base == 0x10000 && s2.cs.selector == 0x1000, "cs base %llx",
	      (unsigned long long)s2.cs.base);
	struct kvm_lapic_state l1, l2;
	ioctl(a.vcpus[1].fd, KVM_GET_LAPIC, &l1);
	ioctl(b.vcpus[1].fd, KVM_GET_LAPIC, &l2);
	/* skip the current-count register (0x390), which runs */
	memset(l1.regs + 0x390, 0, 4);
	memset(l2.regs + 0x390, 0, 4);
	CHECK("round trip: LAPIC identical", !memcmp(&l1, &l2, sizeof(l1)), "LAPIC differs");
	struct kvm_irqchip c1 = { .chip_id = 2 }, c2 = { .chip_id = 2 };
	ioctl(a.vm_fd, KVM_GET_IRQCHIP, &c1);
	ioctl(b.vm_fd, KVM_GET_IRQCHIP, &c2);
	CHECK("round trip: IOAPIC identical", !memcmp(&c1, &c2, sizeof(c1)), "IOAPIC differs");

	/* Every flipped byte must be detected. */
	int undetected = -1;
	for (size_t i = 0; i < blob.len; i++) {
		blob.data[i] ^= 0x40;
		struct state_pending *q = state_pending_new();
		rc = state_parse_blob(blob.data, blob.len, q, err, sizeof(err));
		state_pending_free(q);
		blob.data[i] ^= 0x40;
		if (rc == 0) {
			undetected = (int)i;
			break;
		}
	}
	CHECK("every corrupted byte rejected", undetected < 0, "flip at offset %d not detected", undetected);
	blob.data[100] ^= 1;
	struct state_pending *q = state_pending_new();
	rc = state_parse_blob(blob.data, blob.len, q, err, sizeof(err));
	state_pending_free(q);
	blob.data[100] ^= 1;
	CHECK("corruption message is clear", rc && (strstr(err, "checksum") || strstr(err, "corrupt")), "message: %s", err);

	/* Every truncation must be detected. */
	int accepted = -1;
	for (size_t len = 0; len < blob.len; len++) {
		q = state_pending_new();
		rc = state_parse_blob(blob.data, len, q, err, sizeof(err));
		state_pending_free(q);
		if (rc == 0) {
			accepted = (int)len;
			break;
		}
	}
	CHECK("every truncation rejected", accepted < 0, "truncated to %d bytes accepted", accepted);
	q = state_pending_new();
	rc = state_parse_blob(blob.data, blob.len / 2, q, err, sizeof(err));
	state_pending_free(q);
	CHECK("truncation message is clear", rc && strstr(err, "truncated"), "message: %s", err);

	/* A newer format version (with a valid header CRC) is refused by version. */
	uint8_t *newer = malloc(blob.len);
	memcpy(newer, blob.data, blob.len);
	uint32_t v = STATE_FORMAT_VERSION + 1, c;
	memcpy(newer + 8, &v, 4);
	c = (uint32_t)crc32(crc32(0L, Z_NULL, 0), newer, 20);
	memcpy(newer + 20, &c, 4);
	q = state_pending_new();
	rc = state_parse_blob(newer, blob.len, q, err, sizeof(err));
	state_pending_free(q);
	CHECK("newer format version rejected", rc == -EPROTONOSUPPORT && strstr(err, "newer"), "rc %d: %s", rc, err);
	free(newer);

	/* An unknown section is refused, not skipped. */
	struct state_buf odd = { 0 };
	struct state_writer ow = { state_writer_buf, &odd };
	state_write_header(&ow);
	state_write_section(&ow, "gpu", 0, 1, "x", 1);
	state_write_section(&ow, "end", 0, 1, NULL, 0);
	q = state_pending_new();
	rc = state_parse_blob(odd.data, odd.len, q, err, sizeof(err));
	state_pending_free(q);
	CHECK("unknown section rejected", rc && strstr(err, "unknown"), "rc %d: %s", rc, err);
	sbuf_free(&odd);

	/* A section from a newer section version is refused. */
	state_write_header(&ow);
	state_write_section(&ow, "pit", 0, 99, "x", 1);
	state_write_section(&ow, "end", 0, 1, NULL, 0);
	q = state_pending_new();
	rc = state_parse_blob(odd.data, odd.len, q, err, sizeof(err));
	state_pending_free(q);
	CHECK("newer section version rejected", rc && strstr(err, "version"), "rc %d: %s", rc, err);
	sbuf_free(&odd);

	/* A state for a different VM shape is refused at apply time, before any vCPU is touched. */
	static struct vm c1vm;
	if (make_vm(&c1vm, 1) == 0) {
		q = state_pending_new();
		state_parse_blob(blob.data, blob.len, q, err, sizeof(err));
		rc = state_pending_apply(&c1vm, q, err, sizeof(err));
		state_pending_free(q);
		CHECK("state for another VM shape rejected", rc && strstr(err, "vCPUs"), "rc %d: %s", rc, err);
		vm_destroy(&c1vm);
	}
	sbuf_free(&blob);
	vm_destroy(&a);
	vm_destroy(&b);
	return failures ? 1 : 0;
}
