/* VM-wide state sections: "config" (the VM configuration as JSON, checked
 * against the receiving VM), "irqchip" (PIC master, PIC slave, IOAPIC),
 * "pit" and "clock" (kvmclock). Restored after every vCPU. */
#include "state/state.h"
#include "vmm/vm.h"
#include "vmm/config.h"
#include "common/util.h"
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

static int config_save(struct vm *vm, int i, struct state_buf *b)
{
	json_t *j = vm_config_to_json(&vm->cfg);
	char *s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (!s)
		return -ENOMEM;
	sbuf_put(b, s, strlen(s));
	free(s);
	return 0;
}

static int config_load(struct vm *vm, int i, uint32_t version, const uint8_t *data, size_t len, char *err,
		       size_t errlen)
{
	struct vm_config cfg;
	int rc = vm_config_from_text((const char *)data, len, &cfg, err, errlen);
	if (rc)
		return rc;
	if (cfg.memory_bytes != vm->cfg.memory_bytes || cfg.vcpus != vm->cfg.vcpus) {
		errf(err, errlen, "state is for a VM with %llu bytes and %d vCPUs, this VM has %llu bytes and %d vCPUs",
		     (unsigned long long)cfg.memory_bytes, cfg.vcpus, (unsigned long long)vm->cfg.memory_bytes,
		     vm->cfg.vcpus);
		return -EINVAL;
	}
	vm->cfg = cfg;
	return 0;
}

static int irqchip_save(struct vm *vm, int i, struct state_buf *b)
{
	for (uint32_t chip = 0; chip < 3; chip++) {
		struct kvm_irqchip c = { .chip_id = chip };
		if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &c) < 0)
			return -errno;
		sbuf_put(b, &c, sizeof(c));
	}
	return 0;
}

static int irqchip_load(struct vm *vm, int i, uint32_t version, const uint8_t *data, size_t len, char *err,
			size_t errlen)
{
	if (len != 3 * sizeof(struct kvm_irqchip)) {
		errf(err, errlen, "irqchip section: wrong size %zu", len);
		return -EINVAL;
	}
	for (uint32_t chip = 0; chip < 3; chip++) {
		struct kvm_irqchip c;
		memcpy(&c, data + chip * sizeof(c), sizeof(c));
		if (c.chip_id != chip) {
			errf(err, errlen, "irqchip section: chip %u has id %u", chip, c.chip_id);
			return -EINVAL;
		}
		if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &c) < 0) {
			int rc = -errno;
			errf(err, errlen, "restoring irqchip %u failed: %s", chip, strerror(errno));
			return rc;
		}
	}
	return 0;
}

static int pit_save(struct vm *vm, int i, struct state_buf *b)
{
	struct kvm_pit_state2 p;
	if (ioctl(vm->vm_fd, KVM_GET_PIT2, &p) < 0)
		return -errno;
	sbuf_put(b, &p, sizeof(p));
	return 0;
}

static int pit_load(struct vm *vm, int i, uint32_t version, const uint8_t *data, size_t len, char *err,
		    size_t errlen)
{
	struct kvm_pit_state2 p;
	if (len != sizeof(p)) {
		errf(err, errlen, "pit section: wrong size %zu", len);
		return -EINVAL;
	}
	memcpy(&p, data, sizeof(p));
	if (ioctl(vm->vm_fd, KVM_SET_PIT2, &p) < 0) {
		int rc = -errno;
		errf(err, errlen, "restoring PIT failed: %s", strerror(errno));
		return rc;
	}
	return 0;
}

/* kvmclock: saved with the wall-clock time of capture; restored advanced by
 * the real time that passed, so guest time keeps pace with the world. */
static int clock_save(struct vm *vm, int i, struct state_buf *b)
{
	struct kvm_clock_data c;
	memset(&c, 0, sizeof(c));
	if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &c) < 0)
		return -errno;
	sbuf_u64(b, c.clock);
	sbuf_u64(b, realtime_ns());
	return 0;
}

static int clock_load(struct vm *vm, int i, uint32_t version, const uint8_t *data, size_t len, char *err,
		      size_t errlen)
{
	struct state_cursor c = { data, len, false };
	struct kvm_clock_data d;
	uint64_t clock = scur_u64(&c), rt = scur_u64(&c), now = realtime_ns();

	if (c.failed || c.left) {
		errf(err, errlen, "clock section: wrong size %zu", len);
		return -EINVAL;
	}
	memset(&d, 0, sizeof(d));
	d.clock = clock + (now > rt ? now - rt : 0);
	if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &d) < 0) {
		int rc = -errno;
		errf(err, errlen, "restoring kvmclock failed: %s", strerror(errno));
		return rc;
	}
	return 0;
}

static const struct state_section_ops sections[] = {
	{ .name = "config", .version = 1, .order = 0, .save = config_save, .load = config_load },
	{ .name = "irqchip", .version = 1, .order = 30, .save = irqchip_save, .load = irqchip_load },
	{ .name = "pit", .version = 1, .order = 31, .save = pit_save, .load = pit_load },
	{ .name = "clock", .version = 1, .order = 32, .save = clock_save, .load = clock_load },
};

__attribute__((constructor)) static void vm_state_register(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(sections); i++)
		state_register(&sections[i]);
}
