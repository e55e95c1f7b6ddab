/* The "vcpu" and "cpuid" state sections: everything KVM holds for one vCPU.
 *
 * Payload of "vcpu" is a list of records (u32 tag, u32 length, data). Restore
 * order matters and follows what works on KVM: SREGS(2), REGS, XCRS, XSAVE,
 * MSRs (TSC first, all but TSC_DEADLINE), LAPIC, then TSC_DEADLINE (before
 * the LAPIC it reads back 0), MP_STATE, VCPU_EVENTS (after REGS), DEBUGREGS.
 * Guest time: the TSC and the TSC deadline are advanced by the wall-clock
 * time between capture and restore, so guest time stays continuous with the
 * real world and never runs backwards. */
#include "state/state.h"
#include "vmm/vm.h"
#include "common/util.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define MSR_IA32_TSC 0x10
#define MSR_IA32_TSC_DEADLINE 0x6e0

enum vcpu_record_tag {
	VCPU_REC_REGS = 1,
	VCPU_REC_SREGS = 2,
	VCPU_REC_SREGS2 = 3,
	VCPU_REC_XSAVE = 4,
	VCPU_REC_XCRS = 5,
	VCPU_REC_MSRS = 6,
	VCPU_REC_LAPIC = 7,
	VCPU_REC_EVENTS = 8,
	VCPU_REC_MP_STATE = 9,
	VCPU_REC_DEBUGREGS = 10,
	VCPU_REC_TIME = 11, /* u64 realtime_ns at capture, u32 tsc_khz */
};

static void rec(struct state_buf *b, uint32_t tag, const void *p, size_t n)
{
	sbuf_u32(b, tag);
	sbuf_u32(b, (uint32_t)n);
	sbuf_put(b, p, n);
}

static int vcpu_save(struct vm *vm, int i, struct state_buf *b)
{
	struct vcpu *v = &vm->vcpus[i];
	struct kvm_regs regs;
	struct kvm_xcrs xcrs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp;
	struct kvm_debugregs dbg;
	struct kvm_msrs *msrs;
	struct kvm_xsave *xsave;
	int rc = 0;

	uint64_t rt = realtime_ns();
	uint32_t khz = vm->tsc_khz;
	uint8_t t[12];
	memcpy(t, &rt, 8);
	memcpy(t + 8, &khz, 4);
	rec(b, VCPU_REC_TIME, t, sizeof(t));

	if (vm->have_sregs2) {
		struct kvm_sregs2 s2;
		if (ioctl(v->fd, KVM_GET_SREGS2, &s2) < 0)
			return -errno;
		rec(b, VCPU_REC_SREGS2, &s2, sizeof(s2));
	} else {
		struct kvm_sregs s;
		if (ioctl(v->fd, KVM_GET_SREGS, &s) < 0)
			return -errno;
		rec(b, VCPU_REC_SREGS, &s, sizeof(s));
	}
	if (ioctl(v->fd, KVM_GET_REGS, &regs) < 0)
		return -errno;
	rec(b, VCPU_REC_REGS, &regs, sizeof(regs));
	if (ioctl(v->fd, KVM_GET_XCRS, &xcrs) == 0)
		rec(b, VCPU_REC_XCRS, &xcrs, sizeof(xcrs));

	xsave = calloc(1, vm->xsave_size);
	if (!xsave)
		return -ENOMEM;
	if (ioctl(v->fd, vm->xsave_size > sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2 : KVM_GET_XSAVE, xsave) < 0) {
		free(xsave);
		return -errno;
	}
	rec(b, VCPU_REC_XSAVE, xsave, vm->xsave_size);
	free(xsave);

	msrs = calloc(1, sizeof(*msrs) + vm->nmsrs * sizeof(struct kvm_msr_entry));
	if (!msrs)
		return -ENOMEM;
	msrs->nmsrs = (uint32_t)vm->nmsrs;
	for (int m = 0; m < vm->nmsrs; m++)
		msrs->entries[m].index = vm->msr_indices[m];
	rc = ioctl(v->fd, KVM_GET_MSRS, msrs);
	if (rc != vm->nmsrs) {
		free(msrs);
		return rc < 0 ? -errno : -EIO;
	}
	sbuf_u32(b, VCPU_REC_MSRS);
	sbuf_u32(b, 4 + (uint32_t)vm->nmsrs * 12);
	sbuf_u32(b, (uint32_t)vm->nmsrs);
	for (int m = 0; m < vm->nmsrs; m++) {
		sbuf_u32(b, msrs->entries[m].index);
		sbuf_u64(b, msrs->entries[m].data);
	}
	free(msrs);

	if (ioctl(v->fd, KVM_GET_LAPIC, &lapic) < 0)
		return -errno;
	rec(b, VCPU_REC_LAPIC, &lapic, sizeof(lapic));
	if (ioctl(v->fd, KVM_GET_MP_STATE, &mp) < 0)
		return -errno;
	rec(b, VCPU_REC_MP_STATE, &mp, sizeof(mp));
	if (ioctl(v->fd, KVM_GET_VCPU_EVENTS, &events) < 0)
		return -errno;
	rec(b, VCPU_REC_EVENTS, &events, sizeof(events));
	if (ioctl(v->fd, KVM_GET_DEBUGREGS, &dbg) < 0)
		return -errno;
	rec(b, VCPU_REC_DEBUGREGS, &dbg, sizeof(dbg));
	return 0;
}

struct vcpu_records {
	const uint8_t *rec[16];
	uint32_t len[16];
};

static int vcpu_find_records(const uint8_t *data, size_t len, struct vcpu_records *r, char *err, size_t errlen)
{
	struct state_cursor c = { data, len, false };
	memset(r, 0, sizeof(*r));
	while (c.left) {
		uint32_t tag = scur_u32(&c), n = scur_u32(&c);
		if (c.failed || n > c.left) {
			errf(err, errlen, "vcpu section: record truncated");
			return -EINVAL;
		}
		if (tag < 16) {
			r->rec[tag] = c.p;
			r->len[tag] = n;
		}
		scur_get(&c, NULL, n);
	}
	return 0;
}

static int need(struct vcpu_records *r, int tag, size_t size, const char *what, char *err, size_t errlen)
{
	if (!r->rec[tag] || r->len[tag] != size) {
		errf(err, errlen, "vcpu section: %s record missing or wrong size (%u, expected %zu)", what,
		     r->len[tag], size);
		return -EINVAL;
	}
	return 0;
}

static int vcpu_load(struct vm *vm, int i, uint32_t version, const uint8_t *data, size_t len, char *err,
		     size_t errlen)
{
	struct vcpu *v = &vm->vcpus[i];
	struct vcpu_records r;
	int64_t tsc_delta = 0;
	uint64_t deadline = 0;
	bool have_deadline = false;
	int rc;

#define CHECK(tag, type, what) do { if ((rc = need(&r, tag, sizeof(type), what, err, errlen))) return rc; } while (0)
#define SET(req, ptr, what) do { \
		if (ioctl(v->fd, req, ptr) < 0) { \
			rc = -errno; \
			errf(err, errlen, "vCPU %d: restoring %s failed: %s", i, what, strerror(errno)); \
			return rc; \
		} } while (0)

	if ((rc = vcpu_find_records(data, len, &r, err, errlen)))
		return rc;
	CHECK(VCPU_REC_REGS, struct kvm_regs, "REGS");
	CHECK(VCPU_REC_LAPIC, struct kvm_lapic_state, "LAPIC");
	CHECK(VCPU_REC_MP_STATE, struct kvm_mp_state, "MP_STATE");
	CHECK(VCPU_REC_EVENTS, struct kvm_vcpu_events, "VCPU_EVENTS");
	CHECK(VCPU_REC_DEBUGREGS, struct kvm_debugregs, "DEBUGREGS");
	if (!r.rec[VCPU_REC_XSAVE] || r.len[VCPU_REC_XSAVE] < sizeof(struct kvm_xsave)) {
		errf(err, errlen, "vcpu section: XSAVE record missing or too short");
		return -EINVAL;
	}
	if (!r.rec[VCPU_REC_MSRS] || r.len[VCPU_REC_MSRS] < 4) {
		errf(err, errlen, "vcpu section: MSRS record missing");
		return -EINVAL;
	}
	if (r.rec[VCPU_REC_TIME] && r.len[VCPU_REC_TIME] == 12) {
		uint64_t rt;
		uint32_t khz;
		memcpy(&rt, r.rec[VCPU_REC_TIME], 8);
		memcpy(&khz, r.rec[VCPU_REC_TIME] + 8, 4);
		uint64_t now = realtime_ns();
		if (now > rt && khz)
			tsc_delta = (int64_t)((now - rt) / 1000 * khz / 1000);
	}

	if (r.rec[VCPU_REC_SREGS2] && vm->have_sregs2) {
		CHECK(VCPU_REC_SREGS2, struct kvm_sregs2, "SREGS2");
		struct kvm_sregs2 s2;
		memcpy(&s2, r.rec[VCPU_REC_SREGS2], sizeof(s2));
		SET(KVM_SET_SREGS2, &s2, "SREGS2");
	} else if (r.rec[VCPU_REC_SREGS]) {
		CHECK(VCPU_REC_SREGS, struct kvm_sregs, "SREGS");
		struct kvm_sregs s;
		memcpy(&s, r.rec[VCPU_REC_SREGS], sizeof(s));
		SET(KVM_SET_SREGS, &s, "SREGS");
	} else {
		errf(err, errlen, "vcpu section: no SREGS/SREGS2 record this host can restore");
		return -EINVAL;
	}
	struct kvm_regs regs;
	memcpy(&regs, r.rec[VCPU_REC_REGS], sizeof(regs));
	SET(KVM_SET_REGS, &regs, "REGS");
	if (r.rec[VCPU_REC_XCRS] && r.len[VCPU_REC_XCRS] == sizeof(struct kvm_xcrs)) {
		struct kvm_xcrs x;
		memcpy(&x, r.rec[VCPU_REC_XCRS], sizeof(x));
		SET(KVM_SET_XCRS, &x, "XCRS");
	}
	{
		size_t n = MAX((size_t)r.len[VCPU_REC_XSAVE], (size_t)vm->xsave_size);
		struct kvm_xsave *x = calloc(1, n);
		if (!x)
			return -ENOMEM;
		memcpy(x, r.rec[VCPU_REC_XSAVE], r.len[VCPU_REC_XSAVE]);
		if (ioctl(v->fd, KVM_SET_XSAVE, x) < 0) {
			rc = -errno;
			free(x);
			errf(err, errlen, "vCPU %d: restoring XSAVE failed: %s", i, strerror(-rc));
			return rc;
		}
		free(x);
	}
	{
		struct state_cursor c = { r.rec[VCPU_REC_MSRS], r.len[VCPU_REC_MSRS], false };
		uint32_t n = scur_u32(&c);
		if ((uint64_t)n * 12 != c.left || n > 4096) {
			errf(err, errlen, "vcpu section: MSR record has a bad count (%u)", n);
			return -EINVAL;
		}
		struct kvm_msrs *msrs = calloc(1, sizeof(*msrs) + n * sizeof(struct kvm_msr_entry));
		if (!msrs)
			return -ENOMEM;
		uint32_t k = 0;
		for (uint32_t m = 0; m < n; m++) {
			uint32_t index = scur_u32(&c);
			uint64_t val = scur_u64(&c);
			if (index == MSR_IA32_TSC_DEADLINE) {
				deadline = val;
				have_deadline = true;
				continue;
			}
			if (index == MSR_IA32_TSC)
				val += (uint64_t)tsc_delta;
			msrs->entries[k].index = index;
			msrs->entries[k].data = val;
			k++;
		}
		msrs->nmsrs = k;
		rc = ioctl(v->fd, KVM_SET_MSRS, msrs);
		if (rc != (int)k) {
			uint32_t bad = rc >= 0 && (uint32_t)rc < k ? msrs->entries[rc].index : 0;
			free(msrs);
			errf(err, errlen, "vCPU %d: restoring MSRs failed at MSR 0x%x", i, bad);
			return -EINVAL;
		}
		free(msrs);
	}
	struct kvm_lapic_state lapic;
	memcpy(&lapic, r.rec[VCPU_REC_LAPIC], sizeof(lapic));
	SET(KVM_SET_LAPIC, &lapic, "LAPIC");
	if (have_deadline) {
		struct { struct kvm_msrs h; struct kvm_msr_entry e; } one = { .h.nmsrs = 1 };
		one.e.index = MSR_IA32_TSC_DEADLINE;
		one.e.data = deadline ? deadline + (uint64_t)tsc_delta : 0;
		ioctl(v->fd, KVM_SET_MSRS, &one);
	}
	struct kvm_mp_state mp;
	memcpy(&mp, r.rec[VCPU_REC_MP_STATE], sizeof(mp));
	SET(KVM_SET_MP_STATE, &mp, "MP_STATE");
	struct kvm_vcpu_events ev;
	memcpy(&ev, r.rec[VCPU_REC_EVENTS], sizeof(ev));
	ev.flags &= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR | KVM_VCPUEVENT_VALID_SHADOW |
		    KVM_VCPUEVENT_VALID_SMM | KVM_VCPUEVENT_VALID_PAYLOAD;
	SET(KVM_SET_VCPU_EVENTS, &ev, "VCPU_EVENTS");
	struct kvm_debugregs dbg;
	memcpy(&dbg, r.rec[VCPU_REC_DEBUGREGS], sizeof(dbg));
	SET(KVM_SET_DEBUGREGS, &dbg, "DEBUGREGS");
	return 0;
#undef CHECK
#undef SET
}

/* CPUID travels with the VM: the destination applies exactly what the guest saw. */
static int cpuid_save(struct vm *vm, int i, struct state_buf *b)
{
	struct kvm_cpuid2 *c = vm->vcpus[i].cpuid;
	sbuf_u32(b, c->nent);
	sbuf_put(b, c->entries, c->nent * sizeof(struct kvm_cpuid_entry2));
	return 0;
}

static int cpuid_load(struct vm *vm, int i, uint32_t version, const uint8_t *data, size_t len, char *err,
		      size_t errlen)
{
	struct state_cursor c = { data, len, false };
	uint32_t n = scur_u32(&c);
	struct kvm_cpuid2 *cp;

	if (n > 256 || (uint64_t)n * sizeof(struct kvm_cpuid_entry2) != c.left) {
		errf(err, errlen, "cpuid section: bad entry count %u", n);
		return -EINVAL;
	}
	cp = calloc(1, sizeof(*cp) + n * sizeof(struct kvm_cpuid_entry2));
	if (!cp)
		return -ENOMEM;
	cp->nent = n;
	memcpy(cp->entries, c.p, c.left);
	if (ioctl(vm->vcpus[i].fd, KVM_SET_CPUID2, cp) < 0) {
		int rc = -errno;
		errf(err, errlen, "vCPU %d: KVM_SET_CPUID2 failed: %s (CPU features not supported on this host?)", i,
		     strerror(errno));
		free(cp);
		return rc;
	}
	free(vm->vcpus[i].cpuid);
	vm->vcpus[i].cpuid = cp;
	return 0;
}

static const struct state_section_ops cpuid_section = {
	.name = "cpuid", .version = 1, .order = 10, .per_vcpu = true, .save = cpuid_save, .load = cpuid_load,
};
static const struct state_section_ops vcpu_section = {
	.name = "vcpu", .version = 1, .order = 20, .per_vcpu = true, .save = vcpu_save, .load = vcpu_load,
};

__attribute__((constructor)) static void vcpu_state_register(void)
{
	state_register(&cpuid_section);
	state_register(&vcpu_section);
}
