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
#include <stddef.h>
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

/* Field names for `glide state dump` and the round-trip comparison. */
#define F(off, type, member, unit, ...) \
	state_field_add(fn, ctx, (off) + offsetof(type, member), sizeof(((type *)0)->member), unit, __VA_ARGS__)

static void segment_fields(state_field_fn fn, void *ctx, size_t off, const char *rec, const char *seg)
{
	F(off, struct kvm_segment, base, 8, "%s.%s.base", rec, seg);
	F(off, struct kvm_segment, limit, 4, "%s.%s.limit", rec, seg);
	F(off, struct kvm_segment, selector, 2, "%s.%s.selector", rec, seg);
	/* type, present, dpl, db, s, l, g, avl, unusable */
	state_field_add(fn, ctx, off + offsetof(struct kvm_segment, type), 9, 1, "%s.%s.type,p,dpl,db,s,l,g,avl,unusable",
			rec, seg);
}

static void dtable_fields(state_field_fn fn, void *ctx, size_t off, const char *rec, const char *name)
{
	F(off, struct kvm_dtable, base, 8, "%s.%s.base", rec, name);
	F(off, struct kvm_dtable, limit, 2, "%s.%s.limit", rec, name);
}

/* SREGS and SREGS2 share their first members. */
#define SREGS_COMMON_FIELDS(type, rec) do { \
		static const char *segs[] = { "cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt" }; \
		for (size_t k = 0; k < ARRAY_SIZE(segs); k++) \
			segment_fields(fn, ctx, off + offsetof(type, cs) + k * sizeof(struct kvm_segment), rec, segs[k]); \
		dtable_fields(fn, ctx, off + offsetof(type, gdt), rec, "gdt"); \
		dtable_fields(fn, ctx, off + offsetof(type, idt), rec, "idt"); \
		F(off, type, cr0, 8, rec ".cr0"); \
		F(off, type, cr2, 8, rec ".cr2"); \
		F(off, type, cr3, 8, rec ".cr3"); \
		F(off, type, cr4, 8, rec ".cr4"); \
		F(off, type, cr8, 8, rec ".cr8"); \
		F(off, type, efer, 8, rec ".efer"); \
		F(off, type, apic_base, 8, rec ".apic_base"); \
	} while (0)

static const char *lapic_register_name(unsigned reg)
{
	static const struct { unsigned reg; const char *name; } names[] = {
		{ 0x20, "id" }, { 0x30, "version" }, { 0x80, "tpr" }, { 0x90, "apr" }, { 0xa0, "ppr" }, { 0xb0, "eoi" },
		{ 0xc0, "rrd" }, { 0xd0, "ldr" }, { 0xe0, "dfr" }, { 0xf0, "svr" }, { 0x280, "esr" }, { 0x2f0, "lvt_cmci" },
		{ 0x300, "icr_low" }, { 0x310, "icr_high" }, { 0x320, "lvt_timer" }, { 0x330, "lvt_thermal" },
		{ 0x340, "lvt_pmc" }, { 0x350, "lvt_lint0" }, { 0x360, "lvt_lint1" }, { 0x370, "lvt_error" },
		{ 0x380, "timer_initial_count" }, { 0x390, "timer_current_count" }, { 0x3e0, "timer_divide" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (names[i].reg == reg)
			return names[i].name;
	return NULL;
}

static void lapic_fields(state_field_fn fn, void *ctx, size_t off)
{
	/* 64 registers, each in the first 4 bytes of a 16-byte slot */
	for (unsigned reg = 0; reg < sizeof(struct kvm_lapic_state); reg += 16) {
		const char *name = lapic_register_name(reg);
		static const char *banks[] = { "isr", "tmr", "irr" };
		if (reg == 0x390)
			state_field_add_kind(fn, ctx, STATE_FIELD_DERIVED,
					     "the timer counts down; KVM computes the current count at each read", off + reg,
					     4, 4, "lapic.%s", name);
		else if (name)
			state_field_add(fn, ctx, off + reg, 4, 4, "lapic.%s", name);
		else if (reg >= 0x100 && reg < 0x280)
			state_field_add(fn, ctx, off + reg, 4, 4, "lapic.%s%u", banks[(reg - 0x100) / 0x80],
					(reg & 0x7f) / 16);
		else
			state_field_add(fn, ctx, off + reg, 4, 4, "lapic.0x%03x", reg);
	}
}

static void events_fields(state_field_fn fn, void *ctx, size_t off)
{
	typedef struct kvm_vcpu_events E;
	F(off, E, exception.injected, 1, "events.exception.injected");
	F(off, E, exception.nr, 1, "events.exception.nr");
	F(off, E, exception.has_error_code, 1, "events.exception.has_error_code");
	F(off, E, exception.pending, 1, "events.exception.pending");
	F(off, E, exception.error_code, 4, "events.exception.error_code");
	F(off, E, interrupt.injected, 1, "events.interrupt.injected");
	F(off, E, interrupt.nr, 1, "events.interrupt.nr");
	F(off, E, interrupt.soft, 1, "events.interrupt.soft");
	F(off, E, interrupt.shadow, 1, "events.interrupt.shadow");
	F(off, E, nmi.injected, 1, "events.nmi.injected");
	F(off, E, nmi.pending, 1, "events.nmi.pending");
	F(off, E, nmi.masked, 1, "events.nmi.masked");
	F(off, E, sipi_vector, 4, "events.sipi_vector");
	F(off, E, flags, 4, "events.flags");
	F(off, E, smi.smm, 1, "events.smi.smm");
	F(off, E, smi.pending, 1, "events.smi.pending");
	F(off, E, smi.smm_inside_nmi, 1, "events.smi.smm_inside_nmi");
	F(off, E, smi.latched_init, 1, "events.smi.latched_init");
	F(off, E, triple_fault.pending, 1, "events.triple_fault.pending");
	F(off, E, exception_has_payload, 1, "events.exception_has_payload");
	F(off, E, exception_payload, 8, "events.exception_payload");
}

static void xsave_fields(state_field_fn fn, void *ctx, size_t off, size_t len)
{
	static const struct { size_t offset, len; unsigned unit; const char *name; } legacy[] = {
		{ 0, 2, 2, "fcw" }, { 2, 2, 2, "fsw" }, { 4, 1, 1, "ftw" }, { 6, 2, 2, "fop" }, { 8, 8, 8, "fip" },
		{ 16, 8, 8, "fdp" }, { 24, 4, 4, "mxcsr" }, { 28, 4, 4, "mxcsr_mask" },
		{ 512, 8, 8, "xstate_bv" }, { 520, 8, 8, "xcomp_bv" },
	};
	for (size_t k = 0; k < ARRAY_SIZE(legacy); k++)
		state_field_add(fn, ctx, off + legacy[k].offset, legacy[k].len, legacy[k].unit, "xsave.%s", legacy[k].name);
	for (unsigned k = 0; k < 8; k++)
		state_field_add(fn, ctx, off + 32 + 16 * k, 16, 8, "xsave.st%u", k);
	for (unsigned k = 0; k < 16; k++)
		state_field_add(fn, ctx, off + 160 + 16 * k, 16, 8, "xsave.xmm%u", k);
	/* the extended components, in 32-byte rows at their standard-format offsets */
	for (size_t row = 576; row < len; row += 32)
		state_field_add(fn, ctx, off + row, MIN((size_t)32, len - row), 8, "xsave+0x%04zx", row);
}

static int vcpu_fields(const uint8_t *data, size_t len, state_field_fn fn, void *ctx)
{
	struct state_cursor c = { data, len, false };

	while (c.left) {
		size_t start = len - c.left;
		uint32_t tag = scur_u32(&c), n = scur_u32(&c);
		if (c.failed || n > c.left)
			return -EINVAL;
		size_t off = start + 8;
		switch (tag) {
		case VCPU_REC_TIME:
			if (n != 12)
				return -EINVAL;
			state_field_add_kind(fn, ctx, STATE_FIELD_CLOCK, "wall clock at capture", off, 8, 8,
					     "time.realtime_ns");
			state_field_add(fn, ctx, off + 8, 4, 4, "time.tsc_khz");
			break;
		case VCPU_REC_SREGS2:
			if (n != sizeof(struct kvm_sregs2))
				return -EINVAL;
			SREGS_COMMON_FIELDS(struct kvm_sregs2, "sregs2");
			F(off, struct kvm_sregs2, flags, 8, "sregs2.flags");
			for (unsigned k = 0; k < 4; k++)
				state_field_add(fn, ctx, off + offsetof(struct kvm_sregs2, pdptrs) + 8 * k, 8, 8,
						"sregs2.pdptr%u", k);
			break;
		case VCPU_REC_SREGS:
			if (n != sizeof(struct kvm_sregs))
				return -EINVAL;
			SREGS_COMMON_FIELDS(struct kvm_sregs, "sregs");
			F(off, struct kvm_sregs, interrupt_bitmap, 8, "sregs.interrupt_bitmap");
			break;
		case VCPU_REC_REGS: {
			static const char *names[] = { "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp", "r8",
						       "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags" };
			if (n != sizeof(struct kvm_regs))
				return -EINVAL;
			for (size_t k = 0; k < ARRAY_SIZE(names); k++)
				state_field_add(fn, ctx, off + 8 * k, 8, 8, "regs.%s", names[k]);
			break;
		}
		case VCPU_REC_XCRS: {
			struct kvm_xcrs x;
			if (n != sizeof(x))
				return -EINVAL;
			memcpy(&x, c.p, sizeof(x));
			F(off, struct kvm_xcrs, nr_xcrs, 4, "xcrs.count");
			F(off, struct kvm_xcrs, flags, 4, "xcrs.flags");
			for (uint32_t k = 0; k < x.nr_xcrs && k < KVM_MAX_XCRS; k++)
				state_field_add(fn, ctx, off + offsetof(struct kvm_xcrs, xcrs) + k * sizeof(struct kvm_xcr) +
							 offsetof(struct kvm_xcr, value), 8, 8, "xcrs.xcr%u", x.xcrs[k].xcr);
			break;
		}
		case VCPU_REC_XSAVE:
			if (n < sizeof(struct kvm_xsave))
				return -EINVAL;
			xsave_fields(fn, ctx, off, n);
			break;
		case VCPU_REC_MSRS: {
			struct state_cursor m = { c.p, n, false };
			uint32_t count = scur_u32(&m);
			if ((uint64_t)count * 12 != m.left)
				return -EINVAL;
			state_field_add(fn, ctx, off, 4, 4, "msrs.count");
			for (uint32_t k = 0; k < count; k++) {
				uint32_t index = scur_u32(&m);
				size_t voff = off + 4 + 12 * k + 4;
				scur_get(&m, NULL, 8);
				if (index == MSR_IA32_TSC)
					state_field_add_kind(fn, ctx, STATE_FIELD_CLOCK,
							     "the TSC advances by the time between capture and restore", voff,
							     8, 8, "msr.0x%x", index);
				else if (index == MSR_IA32_TSC_DEADLINE)
					state_field_add_kind(fn, ctx, STATE_FIELD_CLOCK, "the TSC deadline moves with the TSC",
							     voff, 8, 8, "msr.0x%x", index);
				else
					state_field_add(fn, ctx, voff, 8, 8, "msr.0x%x", index);
			}
			break;
		}
		case VCPU_REC_LAPIC:
			if (n != sizeof(struct kvm_lapic_state))
				return -EINVAL;
			lapic_fields(fn, ctx, off);
			break;
		case VCPU_REC_MP_STATE:
			if (n != sizeof(struct kvm_mp_state))
				return -EINVAL;
			state_field_add(fn, ctx, off, 4, 4, "mp_state");
			break;
		case VCPU_REC_EVENTS:
			if (n != sizeof(struct kvm_vcpu_events))
				return -EINVAL;
			events_fields(fn, ctx, off);
			break;
		case VCPU_REC_DEBUGREGS:
			if (n != sizeof(struct kvm_debugregs))
				return -EINVAL;
			for (unsigned k = 0; k < 4; k++)
				state_field_add(fn, ctx, off + 8 * k, 8, 8, "debugregs.db%u", k);
			F(off, struct kvm_debugregs, dr6, 8, "debugregs.dr6");
			F(off, struct kvm_debugregs, dr7, 8, "debugregs.dr7");
			F(off, struct kvm_debugregs, flags, 8, "debugregs.flags");
			break;
		default:
			for (size_t row = 0; row < n; row += 16)
				state_field_add(fn, ctx, off + row, MIN((size_t)16, n - row), 1, "record%u+0x%zx", tag, row);
			break;
		}
		scur_get(&c, NULL, n);
	}
	return 0;
}

static int cpuid_fields(const uint8_t *data, size_t len, state_field_fn fn, void *ctx)
{
	struct state_cursor c = { data, len, false };
	uint32_t n = scur_u32(&c);

	if (c.failed || (uint64_t)n * sizeof(struct kvm_cpuid_entry2) != c.left)
		return -EINVAL;
	state_field_add(fn, ctx, 0, 4, 4, "count");
	for (uint32_t k = 0; k < n; k++) {
		struct kvm_cpuid_entry2 e;
		size_t off = 4 + k * sizeof(e);
		memcpy(&e, data + off, sizeof(e));
		/* eax, ebx, ecx, edx */
		state_field_add(fn, ctx, off + offsetof(struct kvm_cpuid_entry2, eax), 16, 4, "0x%x.%u", e.function,
				e.index);
		F(off, struct kvm_cpuid_entry2, flags, 4, "0x%x.%u.flags", e.function, e.index);
	}
	return 0;
}
#undef F
#undef SREGS_COMMON_FIELDS

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
	.fields = cpuid_fields,
};
static const struct state_section_ops vcpu_section = {
	.name = "vcpu", .version = 1, .order = 20, .per_vcpu = true, .save = vcpu_save, .load = vcpu_load,
	.fields = vcpu_fields,
};

__attribute__((constructor)) static void vcpu_state_register(void)
{
	state_register(&cpuid_section);
	state_register(&vcpu_section);
}
