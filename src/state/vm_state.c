/* VM-wide state sections: "config" (the VM configuration as JSON, checked
 * against the receiving VM), "irqchip" (PIC master, PIC slave, IOAPIC),
 * "pit" and "clock" (kvmclock). Restored after every vCPU. */
#include "state/state.h"
#include "vmm/vm.h"
#include "vmm/config.h"
#include "common/util.h"
#include <errno.h>
#include <jansson.h>
#include <stddef.h>
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

/* Field names for `glide state dump` and the round-trip comparison. */
#define F(off, type, member, unit, ...) \
	state_field_add(fn, ctx, (off) + offsetof(type, member), sizeof(((type *)0)->member), unit, __VA_ARGS__)

static int config_fields(const uint8_t *data, size_t len, state_field_fn fn, void *ctx)
{
	state_field_add(fn, ctx, 0, len, 0, "json");
	return 0;
}

static void pic_fields(state_field_fn fn, void *ctx, size_t off, const char *chip)
{
	typedef struct kvm_pic_state P;
	F(off, P, last_irr, 1, "%s.last_irr", chip);
	F(off, P, irr, 1, "%s.irr", chip);
	F(off, P, imr, 1, "%s.imr", chip);
	F(off, P, isr, 1, "%s.isr", chip);
	F(off, P, priority_add, 1, "%s.priority_add", chip);
	F(off, P, irq_base, 1, "%s.irq_base", chip);
	F(off, P, read_reg_select, 1, "%s.read_reg_select", chip);
	F(off, P, poll, 1, "%s.poll", chip);
	F(off, P, special_mask, 1, "%s.special_mask", chip);
	F(off, P, init_state, 1, "%s.init_state", chip);
	F(off, P, auto_eoi, 1, "%s.auto_eoi", chip);
	F(off, P, rotate_on_auto_eoi, 1, "%s.rotate_on_auto_eoi", chip);
	F(off, P, special_fully_nested_mode, 1, "%s.special_fully_nested_mode", chip);
	F(off, P, init4, 1, "%s.init4", chip);
	F(off, P, elcr, 1, "%s.elcr", chip);
	F(off, P, elcr_mask, 1, "%s.elcr_mask", chip);
}

static int irqchip_fields(const uint8_t *data, size_t len, state_field_fn fn, void *ctx)
{
	static const char *chips[] = { "pic_master", "pic_slave" };
	const size_t size = sizeof(struct kvm_irqchip), chip = offsetof(struct kvm_irqchip, chip);

	if (len != 3 * size)
		return -EINVAL;
	for (size_t k = 0; k < 3; k++)
		state_field_add(fn, ctx, k * size, 4, 4, "chip%zu.id", k);
	pic_fields(fn, ctx, chip, chips[0]);
	pic_fields(fn, ctx, size + chip, chips[1]);
	size_t off = 2 * size + chip;
	typedef struct kvm_ioapic_state I;
	F(off, I, base_address, 8, "ioapic.base_address");
	F(off, I, ioregsel, 4, "ioapic.ioregsel");
	F(off, I, id, 4, "ioapic.id");
	F(off, I, irr, 4, "ioapic.irr");
	for (unsigned pin = 0; pin < KVM_IOAPIC_NUM_PINS; pin++)
		state_field_add(fn, ctx, off + offsetof(I, redirtbl) + 8 * pin, 8, 8, "ioapic.redir%u", pin);
	return 0;
}

static int pit_fields(const uint8_t *data, size_t len, state_field_fn fn, void *ctx)
{
	typedef struct kvm_pit_channel_state C;
	if (len != sizeof(struct kvm_pit_state2))
		return -EINVAL;
	for (unsigned k = 0; k < 3; k++) {
		size_t off = offsetof(struct kvm_pit_state2, channels) + k * sizeof(C);
		F(off, C, count, 4, "channel%u.count", k);
		F(off, C, latched_count, 2, "channel%u.latched_count", k);
		F(off, C, count_latched, 1, "channel%u.count_latched", k);
		F(off, C, status_latched, 1, "channel%u.status_latched", k);
		F(off, C, status, 1, "channel%u.status", k);
		F(off, C, read_state, 1, "channel%u.read_state", k);
		F(off, C, write_state, 1, "channel%u.write_state", k);
		F(off, C, write_latch, 1, "channel%u.write_latch", k);
		F(off, C, rw_mode, 1, "channel%u.rw_mode", k);
		F(off, C, mode, 1, "channel%u.mode", k);
		F(off, C, bcd, 1, "channel%u.bcd", k);
		F(off, C, gate, 1, "channel%u.gate", k);
		state_field_add_kind(fn, ctx, STATE_FIELD_DERIVED,
				     "host time of the last count load; KVM_SET_PIT2 reloads every count at restore",
				     off + offsetof(C, count_load_time), 8, 8, "channel%u.count_load_time", k);
	}
	F(0, struct kvm_pit_state2, flags, 4, "flags");
	return 0;
}

static int clock_fields(const uint8_t *data, size_t len, state_field_fn fn, void *ctx)
{
	if (len != 16)
		return -EINVAL;
	state_field_add_kind(fn, ctx, STATE_FIELD_CLOCK, "kvmclock advances by the time between capture and restore", 0,
			     8, 8, "kvmclock_ns");
	state_field_add_kind(fn, ctx, STATE_FIELD_CLOCK, "wall clock at capture", 8, 8, 8, "realtime_ns");
	return 0;
}
#undef F

static const struct state_section_ops sections[] = {
	{ .name = "config", .version = 1, .order = 0, .save = config_save, .load = config_load, .fields = config_fields },
	{ .name = "irqchip", .version = 1, .order = 30, .save = irqchip_save, .load = irqchip_load,
	  .fields = irqchip_fields },
	{ .name = "pit", .version = 1, .order = 31, .save = pit_save, .load = pit_load, .fields = pit_fields },
	{ .name = "clock", .version = 1, .order = 32, .save = clock_save, .load = clock_load, .fields = clock_fields },
};

__attribute__((constructor)) static void vm_state_register(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(sections); i++)
		state_register(&sections[i]);
}
