/* Round trip of a VM state whose every part was changed first. The test
 * sets, in a source VM, non-default values in every part of the state
 * glide migrates, through KVM and through the device models (CPUID through
 * an EVC mask; registers, segments, XCR0, XSAVE, MSRs, LAPIC, MP state,
 * events and debug registers of both vCPUs; PIC, IOAPIC, PIT, kvmclock;
 * the UART programmed through its port handler, which raises IRQ 4). It
 * captures the state, restores it into a second VM, captures that, and
 *
 *   - compares the two captures field by field (state_sections_diff: equal,
 *     except clocks that may only grow and the values KVM recomputes on
 *     restore, each named with its reason where the section lists it);
 *   - reads every changed value back from the second VM through KVM and the
 *     devices, so that a section that is silently not restored fails;
 *   - bounds the clocks: TSC, TSC deadline and kvmclock advance by the time
 *     between the captures, never backwards;
 *   - leaves each section out of a restore in turn and checks that both
 *     the comparison and the read-back catch it (the checks can fail).
 *
 * With --write-snapshot FILE it only writes the changed source VM as a
 * snapshot (tests/test_snapshot_state.sh restores it through the monitor).
 *
 * Prints PASS/FAIL/SKIP lines for tests/run.sh. */
#include "state/state.h"
#include "vmm/vm.h"
#include "devices/devices.h"
#include "migrate/snapshot.h"
#include "common/util.h"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define VCPUS 2
#define EVC_MASK_1_EDX (1u << 19)
#define EVC_MASK_7_EBX ((1u << 23) | (1u << 24))
#define WHY_LEN 512
#define PIT_SETTLE_NS 50000000ULL /* > 2 periods of PIT channel 0: its one unacknowledged tick has happened */
#define CLOCK_SLACK_NS 50000000ULL /* preemption between reading the wall clock and a KVM clock in a capture */
#define KVMCLOCK_SOURCE_NS 0x0000100000000000ULL /* about 4.9 hours: far from a fresh VM's clock */
#define TSC_DEADLINE_AHEAD 1000000000000ULL /* ticks: minutes ahead, never fires during the test */

#define MSR_IA32_TSC 0x10
#define MSR_IA32_TSC_DEADLINE 0x6e0
#define MSR_MTRR_DEF_TYPE 0x2ff
#define MSR_MTRR_PHYS_BASE0 0x200
#define MSR_MTRR_FIX_64K 0x250
#define MSR_MTRR_FIX_16K_80000 0x258
#define MSR_MTRR_FIX_4K_C0000 0x268
#define MSR_MC0_CTL 0x400

static int failures;
#define CHECK(name, cond, ...) do { \
		if (cond) printf("PASS %s\n", name); \
		else { printf("FAIL %s: ", name); printf(__VA_ARGS__); printf("\n"); failures++; } \
	} while (0)

/* Appends "what; " to a mismatch description (kept short: the first few). */
static void why_add(char *why, int *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void why_add(char *why, int *n, const char *fmt, ...)
{
	size_t used = strlen(why);
	va_list ap;
	if ((*n)++ >= 6 || used + 8 >= WHY_LEN)
		return;
	va_start(ap, fmt);
	vsnprintf(why + used, WHY_LEN - used, fmt, ap);
	va_end(ap);
	used = strlen(why);
	snprintf(why + used, WHY_LEN - used, "; ");
}

#define EXPECT(why, n, what, got, want) do { \
		unsigned long long g_ = (unsigned long long)(got), w_ = (unsigned long long)(want); \
		if (g_ != w_) why_add(why, n, "%s is 0x%llx, expected 0x%llx", what, g_, w_); \
	} while (0)

static int make_vm(struct vm *vm, const char *name, bool evc_mask)
{
	struct vm_create_args a = { 0 };
	char err[256];
	cpuid_mask_all_ones(&a.cfg);
	if (evc_mask) { /* leaf 1 EDX: CLFLUSH (every x86-64 host has it); leaf 7 EBX: CLFLUSHOPT, CLWB */
		a.cfg.cpuid_mask[1] &= ~EVC_MASK_1_EDX;
		a.cfg.cpuid_mask[2] &= ~EVC_MASK_7_EBX;
	}
	a.cfg.memory_bytes = 16 << 20;
	a.cfg.vcpus = VCPUS;
	snprintf(a.cfg.name, sizeof(a.cfg.name), "%s", name);
	if (vm_create(vm, &a, err, sizeof(err))) {
		fprintf(stderr, "vm_create: %s\n", err);
		return -1;
	}
	return devices_init(vm, -1);
}

/* ---- what the test sets: the plan, the same for every VM ---- */

struct msr_plan {
	uint32_t index;
	uint64_t value;
	bool required; /* KVM must accept it; others are tried and kept if KVM takes them */
};

static struct msr_plan msr_plan[VCPUS][512];
static int msr_plan_n[VCPUS];
static uint64_t xcr0_plan[VCPUS];
static uint8_t xsave_plan[VCPUS][16384];
static uint64_t tsc_deadline_source;
static bool have_smm; /* KVM_CAP_X86_SMM: without it KVM refuses any SMI state */

static uint32_t lapic_get(const struct kvm_lapic_state *l, unsigned reg)
{
	uint32_t v;
	memcpy(&v, l->regs + reg, 4);
	return v;
}

static void lapic_set(struct kvm_lapic_state *l, unsigned reg, uint32_t v)
{
	memcpy(l->regs + reg, &v, 4);
}

static void regs_plan(int i, struct kvm_regs *r)
{
	__u64 *g = &r->rax;
	for (int k = 0; k < 16; k++)
		g[k] = 0x0101010101010101ULL * (uint64_t)(k + 1) + (uint64_t)i;
	r->rip = 0x401000 + (uint64_t)i * 0x10;
	r->rflags = 0x246 | (i ? 0x400 : 0); /* IF, ZF, PF, bit 1; DF on vCPU 1 */
}

/* A present segment; code and data segments (s = 1) are flat with G = 1. */
static void segment(struct kvm_segment *s, uint64_t base, uint32_t limit, uint16_t sel, uint8_t type, bool code_data,
		    uint8_t l, uint8_t db)
{
	memset(s, 0, sizeof(*s));
	s->base = base;
	s->limit = limit;
	s->selector = sel;
	s->type = type;
	s->present = 1;
	s->db = db;
	s->s = code_data;
	s->l = l;
	s->g = code_data;
}

/* 64-bit mode at CPL 0 with distinctive bases; vCPU 1 in x2APIC mode. */
static void sregs_plan(int i, struct kvm_sregs2 *s)
{
	segment(&s->cs, 0, 0xffffffff, 0x10, 11, true, 1, 0);
	segment(&s->ds, 0, 0xffffffff, 0x18, 3, true, 0, 1);
	segment(&s->es, 0, 0xffffffff, 0x18, 3, true, 0, 1);
	segment(&s->ss, 0, 0xffffffff, 0x18, 3, true, 0, 1);
	segment(&s->fs, 0x7f0000001000ULL + (uint64_t)i * 0x1000, 0xffffffff, 0x18, 3, true, 0, 1);
	segment(&s->gs, 0xffff888000000000ULL + (uint64_t)i * 0x2000, 0xffffffff, 0x18, 3, true, 0, 1);
	segment(&s->tr, 0x1080 + (uint64_t)i * 0x80, 0x67, 0x20, 11, false, 0, 0);
	segment(&s->ldt, 0x3000, 0xff, 0x28, 2, false, 0, 0);
	s->gdt.base = 0x1000;
	s->gdt.limit = 0x37;
	s->idt.base = 0x5000 + (uint64_t)i * 0x1000;
	s->idt.limit = 0xfff;
	s->cr0 = 0x80050033;
	s->cr2 = 0xdead0000ULL + (uint64_t)i;
	s->cr3 = 0x2000;
	s->cr4 = 0x6a0; /* PAE PGE OSFXSR OSXMMEXCPT */
	s->cr8 = i ? 6 : 5;  /* the TPR >> 4 of the LAPIC plan */
	s->efer = 0xd01;     /* SCE LME LMA NXE */
	s->apic_base = i ? 0xfee00c00 : 0xfee00900; /* vCPU 1: x2APIC; vCPU 0: BSP, xAPIC */
	s->flags = 0;
	memset(s->pdptrs, 0, sizeof(s->pdptrs));
}

#define IRR_VECTOR 0x45
#define ISR_VECTOR 0x31
#define TIMER_VECTOR_DEADLINE 0xef
#define TIMER_VECTOR_PERIODIC 0x40

static void lapic_plan(int i, struct kvm_lapic_state *l)
{
	lapic_set(l, 0x80, i ? 0x60 : 0x50);              /* TPR */
	lapic_set(l, 0xf0, 0x1ff);                        /* SVR: enabled, spurious vector 0xff */
	lapic_set(l, 0x330, 0x100fa);                     /* LVT thermal: masked, vector 0xfa */
	lapic_set(l, 0x340, 0x400);                       /* LVT PMC: NMI */
	lapic_set(l, 0x350, 0x700);                       /* LVT LINT0: ExtINT */
	lapic_set(l, 0x360, 0x400);                       /* LVT LINT1: NMI */
	lapic_set(l, 0x370, 0xfe);                        /* LVT error: vector 0xfe */
	lapic_set(l, 0x310, i ? 0 : 0x01000000);          /* ICR high: destination 1 (xAPIC only) */
	lapic_set(l, 0x300, 0x000040fd);                  /* ICR low: fixed, vector 0xfd, idle */
	lapic_set(l, 0x200 + (IRR_VECTOR / 32) * 16, 1u << (IRR_VECTOR % 32));
	lapic_set(l, 0x100 + (ISR_VECTOR / 32) * 16, 1u << (ISR_VECTOR % 32));
	if (!i) {
		lapic_set(l, 0xd0, 0x02000000);           /* LDR: logical ID 2 */
		lapic_set(l, 0xe0, 0x0fffffff);           /* DFR: cluster model */
		lapic_set(l, 0x320, 0x40000 | TIMER_VECTOR_DEADLINE); /* LVT timer: TSC deadline */
		lapic_set(l, 0x3e0, 0xb);                 /* divide by 1 */
	} else {
		lapic_set(l, 0x320, 0x20000 | TIMER_VECTOR_PERIODIC); /* LVT timer: periodic */
		lapic_set(l, 0x3e0, 0x3);                 /* divide by 16 */
		lapic_set(l, 0x380, 0x12345678);          /* initial count */
		/* the periodic timer's vector is pending already: a tick changes nothing */
		uint32_t irr = lapic_get(l, 0x200 + (TIMER_VECTOR_PERIODIC / 32) * 16);
		lapic_set(l, 0x200 + (TIMER_VECTOR_PERIODIC / 32) * 16, irr | 1u << (TIMER_VECTOR_PERIODIC % 32));
	}
}

static void events_plan(int i, struct kvm_vcpu_events *e)
{
	memset(e, 0, sizeof(*e));
	e->flags = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM;
	if (!i) {
		e->exception.injected = 1; /* #GP(0x18) being delivered */
		e->exception.nr = 13;
		e->exception.has_error_code = 1;
		e->exception.error_code = 0x18;
		e->nmi.pending = 1;
		e->nmi.masked = 1;
	} else {
		e->interrupt.injected = 1; /* vector 0x45 being delivered, after a MOV SS */
		e->interrupt.nr = IRR_VECTOR;
		e->interrupt.shadow = KVM_X86_SHADOW_INT_MOV_SS;
		e->nmi.masked = 1;
		e->smi.pending = have_smm;
	}
}

static void debugregs_plan(int i, struct kvm_debugregs *d)
{
	memset(d, 0, sizeof(*d));
	for (int k = 0; k < 4; k++)
		d->db[k] = 0x401000 + (uint64_t)i * 0x100 + (uint64_t)k * 8;
	d->dr6 = i ? 0xffff4ff2 : 0xffff4ff1;  /* BS and B0 or B1 */
	d->dr7 = i ? 0x00f10602 : 0x000d0601; /* GE, G0/L0 with RW/LEN */
}

static void pic_plan(int slave, struct kvm_pic_state *p)
{
	/* Line 4 (the UART) is raised later by the UART itself; line 0 (PIT
	 * channel 0) has ticked: its IRR bit is set and its line low again. */
	if (!slave) {
		p->irr = 0x01;
		p->last_irr = 0x00;
		p->imr = 0xb8;
		p->isr = 0x02;
		p->priority_add = 3;
		p->irq_base = 0x20;
		p->read_reg_select = 1;
		p->special_mask = 1;
		p->rotate_on_auto_eoi = 1;
		p->special_fully_nested_mode = 1;
		p->init4 = 1;
		p->elcr = 0x20;
	} else {
		p->irr = 0;
		p->last_irr = 0;
		p->imr = 0x5a;
		p->isr = 0x10;
		p->priority_add = 5;
		p->irq_base = 0x28;
		p->auto_eoi = 1;
		p->init4 = 1;
		p->elcr = 0x0c;
	}
}

static void ioapic_plan(struct kvm_ioapic_state *io)
{
	io->id = 7;
	io->ioregsel = 0x13;
	io->irr = 0; /* line 4 is raised later by the UART */
	for (unsigned pin = 0; pin < KVM_IOAPIC_NUM_PINS; pin++) {
		__typeof__(io->redirtbl[0]) *e = &io->redirtbl[pin];
		e->bits = 0;
		e->fields.vector = (uint8_t)(0x30 + pin);
		e->fields.delivery_mode = pin % 2 & 1;  /* fixed, lowest priority */
		e->fields.dest_mode = pin % 3 == 0;     /* logical every third */
		e->fields.polarity = pin % 5 == 0;
		e->fields.trig_mode = pin >= 16;        /* PCI pins level-triggered */
		e->fields.mask = pin == 0 || pin == 2 || pin == 4 || pin >= 20;
		e->fields.remote_irr = pin == 21;       /* masked, level: waiting for an EOI */
		e->fields.dest_id = (uint8_t)(pin % 2);
	}
}

static void pit_plan(struct kvm_pit_state2 *p)
{
	memset(p, 0, sizeof(*p));
	/* channel 0: rate generator at 100 Hz, low byte then high byte */
	p->channels[0] = (struct kvm_pit_channel_state){ .count = 0x2e9c, .rw_mode = 3, .read_state = 3,
							 .write_state = 3, .mode = 2, .gate = 1 };
	/* channel 1: square wave, low byte only, a latched count and a latched status waiting to be read */
	p->channels[1] = (struct kvm_pit_channel_state){ .count = 0x12, .latched_count = 0x10, .count_latched = 1,
							 .status_latched = 1, .status = 0x16, .read_state = 1,
							 .write_state = 1, .rw_mode = 1, .mode = 3, .gate = 1 };
	/* channel 2 (speaker): one-shot in BCD, half-way through writing a new count */
	p->channels[2] = (struct kvm_pit_channel_state){ .count = 0x4a9, .write_state = 4, .write_latch = 0xa9,
							 .read_state = 3, .rw_mode = 3, .mode = 0, .bcd = 1, .gate = 1 };
	p->flags = 0;
}

/* The UART, programmed through its port handler as a guest would. */
static struct device *port_device(struct vm *vm, uint16_t port)
{
	for (int i = 0; i < vm->ndevices; i++)
		if (port >= vm->devices[i]->port_base && port < vm->devices[i]->port_base + vm->devices[i]->port_count)
			return vm->devices[i];
	return NULL;
}

static void port_out(struct vm *vm, uint16_t port, uint8_t v)
{
	struct device *d = port_device(vm, port);
	if (d)
		d->io(vm, d, port, true, &v, 1);
}

static uint8_t port_in(struct vm *vm, uint16_t port)
{
	struct device *d = port_device(vm, port);
	uint8_t v = 0xff;
	if (d)
		d->io(vm, d, port, false, &v, 1);
	return v;
}

#define COM1 UART_COM1_PORT
#define UART_PLAN_DLL 0x03
#define UART_PLAN_DLM 0x01
#define UART_PLAN_LCR 0x1b /* 8 bits, even parity, 1 stop bit */
#define UART_PLAN_IER 0x03 /* receive and THR-empty interrupts */
#define UART_PLAN_MCR 0x0b /* DTR, RTS, OUT2 */
#define UART_PLAN_SCR 0x5a
#define UART_PLAN_FCR 0xc7 /* FIFOs on, cleared, trigger at 14 */

static void uart_apply(struct vm *vm)
{
	port_out(vm, COM1 + 3, 0x80); /* DLAB */
	port_out(vm, COM1 + 0, UART_PLAN_DLL);
	port_out(vm, COM1 + 1, UART_PLAN_DLM);
	port_out(vm, COM1 + 3, UART_PLAN_LCR);
	port_out(vm, COM1 + 2, UART_PLAN_FCR);
	port_out(vm, COM1 + 4, UART_PLAN_MCR);
	port_out(vm, COM1 + 7, UART_PLAN_SCR);
	port_out(vm, COM1 + 1, UART_PLAN_IER); /* THR empty: IRQ 4 goes up */
}

/* ---- applying the plan to the source VM ---- */

static int msr_set(struct vm *vm, int i, uint32_t index, uint64_t value)
{
	struct { struct kvm_msrs h; struct kvm_msr_entry e; } one = { .h.nmsrs = 1 };
	one.e.index = index;
	one.e.data = value;
	return ioctl(vm->vcpus[i].fd, KVM_SET_MSRS, &one) == 1 ? 0 : -EINVAL;
}

static int msr_get(struct vm *vm, int i, uint32_t index, uint64_t *value)
{
	struct { struct kvm_msrs h; struct kvm_msr_entry e; } one = { .h.nmsrs = 1 };
	one.e.index = index;
	if (ioctl(vm->vcpus[i].fd, KVM_GET_MSRS, &one) != 1)
		return -EINVAL;
	*value = one.e.data;
	return 0;
}

/* Values that are valid for the MSRs glide migrates (what any host's KVM
 * lists, and the MTRRs and MCE banks); `required`: KVM must take it. */
static const struct msr_plan msr_known[] = {
	{ 0x174, 0x10, true },                       /* SYSENTER_CS */
	{ 0x175, 0xffffc90000001000ULL, true },      /* SYSENTER_ESP */
	{ 0x176, 0xffffffff81a00000ULL, true },      /* SYSENTER_EIP */
	{ 0xc0000081, 0x0023001000000000ULL, true }, /* STAR */
	{ 0xc0000082, 0xffffffff81c00000ULL, true }, /* LSTAR */
	{ 0xc0000083, 0xffffffff81c00100ULL, true }, /* CSTAR */
	{ 0xc0000084, 0x47700, true },               /* SFMASK */
	{ 0xc0000102, 0xffff88803fc00000ULL, true }, /* KERNEL_GS_BASE */
	{ 0xc0000103, 0x1, false },                  /* TSC_AUX */
	{ 0x277, 0x0407050600070106ULL, true },      /* PAT */
	{ 0x3b, 0x1000, true },                      /* TSC_ADJUST */
	{ 0x1a0, 0x1801, true },                     /* MISC_ENABLE: fast strings, BTS and PEBS unavailable */
	{ 0x4b564d00, 0x6000, true },                /* KVM wall clock (new) */
	{ 0x11, 0x6000, false },                     /* KVM wall clock (old): the same register */
	{ 0x4b564d01, 0x6101, true },                /* KVM system time (new): kvmclock page, enabled */
	{ 0x12, 0x6101, false },                     /* KVM system time (old): the same register */
	{ 0x4b564d02, 0x7009, false },               /* async PF: enabled, delivered as an interrupt */
	{ 0x4b564d03, 0x7101, false },               /* steal time */
	{ 0x4b564d04, 0x7201, true },                /* PV EOI */
	{ 0x4b564d05, 0, false },                    /* poll control */
	{ 0x4b564d06, 0xec, false },                 /* async PF interrupt vector */
	{ 0x17a, 0x5, false },                       /* MCG_STATUS */
	{ 0x34, 7, false },                          /* SMI_COUNT */
	{ 0xce, 0x80001000ULL, false },              /* PLATFORM_INFO */
	{ 0x140, 1, false },                         /* MISC_FEATURES_ENABLES: CPUID faulting */
	{ 0x1fc, 2, false },                         /* POWER_CTL */
	{ 0x8b, 0x0a0011d100000000ULL, false },      /* microcode revision */
	{ 0xc0010015, 1ULL << 18, false },           /* HWCR: McStatusWrEn */
	{ 0x48, 1, false },                          /* SPEC_CTRL: IBRS */
	{ 0xc0010117, 0x9000, false },               /* VM_HSAVE_PA */
	{ MSR_MTRR_DEF_TYPE, 0xc06, true },          /* MTRRs on, fixed ranges on, default WB */
	{ MSR_MTRR_FIX_64K, 0x0606060606060606ULL, true },
	{ MSR_MTRR_FIX_16K_80000, 0x0606060606060600ULL, true },
	{ MSR_MTRR_FIX_4K_C0000, 0x0505050505050505ULL, true },
	{ MSR_MTRR_PHYS_BASE0, 0xc0000000ULL, true }, /* 3-4 GiB uncached */
	{ MSR_MTRR_PHYS_BASE0 + 1, 0x0000ffffc0000800ULL, true },
	{ MSR_MTRR_PHYS_BASE0 + 2, 0x80000006ULL, true },
	{ MSR_MTRR_PHYS_BASE0 + 3, 0x0000ffffe0000800ULL, true },
	{ MSR_MC0_CTL, ~0ULL, true },                /* MCE bank 0 reporting on, as a guest kernel does */
	{ MSR_MC0_CTL + 1, 0xb200000000000135ULL, true }, /* a logged error in bank 0 */
	{ MSR_MC0_CTL + 6, 0x12345000, true },       /* bank 1 address */
};

static bool msr_known_value(int i, uint32_t index, uint64_t *v, bool *required)
{
	for (size_t k = 0; k < ARRAY_SIZE(msr_known); k++) {
		if (msr_known[k].index == index) {
			*v = msr_known[k].value;
			if (index == 0xc0000082 || index == 0xc0000102 || index == 0x3b)
				*v += (uint64_t)i * 0x1000; /* differ between the vCPUs */
			*required = msr_known[k].required;
			return true;
		}
	}
	return false;
}

/* The MSRs a guest programs and a migration must carry: every MSR glide
 * lists, and the MTRRs and MCE banks (which KVM_GET_MSR_INDEX_LIST leaves
 * out: user space is expected to know them). */
static int msrs_to_change(struct vm *vm, uint32_t *out, int max)
{
	static const uint32_t architectural[] = {
		MSR_MTRR_DEF_TYPE, MSR_MTRR_FIX_64K, MSR_MTRR_FIX_16K_80000, MSR_MTRR_FIX_4K_C0000,
		MSR_MTRR_PHYS_BASE0, MSR_MTRR_PHYS_BASE0 + 1, MSR_MTRR_PHYS_BASE0 + 2, MSR_MTRR_PHYS_BASE0 + 3,
		MSR_MC0_CTL, MSR_MC0_CTL + 1, MSR_MC0_CTL + 6,
	};
	int n = 0;
	for (int m = 0; m < vm->nmsrs && n < max; m++)
		out[n++] = vm->msr_indices[m];
	for (size_t k = 0; k < ARRAY_SIZE(architectural) && n < max; k++) {
		bool listed = false;
		for (int m = 0; m < n; m++)
			listed |= out[m] == architectural[k];
		if (!listed)
			out[n++] = architectural[k];
	}
	return n;
}

/* Changes every MSR of msrs_to_change() that KVM lets change; names in
 * `refused` the ones it does not, and in `missing` the required ones that
 * glide does not migrate or KVM refused. */
static void msrs_apply(struct vm *vm, int i, char *refused, size_t refused_len, char *missing, size_t missing_len)
{
	uint32_t idx[512];
	int n = msrs_to_change(vm, idx, (int)ARRAY_SIZE(idx));

	msr_plan_n[i] = 0;
	for (size_t k = 0; k < ARRAY_SIZE(msr_known); k++) {
		bool migrated = false; /* in the list glide saves and restores */
		for (int m = 0; m < vm->nmsrs; m++)
			migrated |= vm->msr_indices[m] == msr_known[k].index;
		if (msr_known[k].required && !migrated && i == 0 && strlen(missing) + 32 < missing_len)
			snprintf(missing + strlen(missing), missing_len - strlen(missing), " 0x%x (not migrated)",
				 msr_known[k].index);
	}
	for (int m = 0; m < n; m++) {
		uint64_t old = 0, v = 0, back;
		bool required = false;
		if (idx[m] == MSR_IA32_TSC || idx[m] == MSR_IA32_TSC_DEADLINE)
			continue; /* clocks: checked by how far they move */
		if (msr_get(vm, i, idx[m], &old) && !msr_known_value(i, idx[m], &v, &required))
			continue; /* neither readable nor known: nothing to change */
		bool known = msr_known_value(i, idx[m], &v, &required), taken = false;
		/* an MSR without a known value (another host's list, a further MTRR or
		 * MCE bank): try a one-bit change, all bits flipped, the MTRR valid bit */
		uint64_t tries[] = { v, old ^ 1, ~old, old ^ 0x800 };
		for (size_t t = known ? 0 : 1; t < (known ? 1 : ARRAY_SIZE(tries)) && !taken; t++) {
			v = tries[t];
			/* a known value may already be there: 0x11/0x12 are the old names of 0x4b564d00/01 */
			taken = (known || v != old) && !msr_set(vm, i, idx[m], v) && !msr_get(vm, i, idx[m], &back) &&
				back == v;
		}
		if (!taken) {
			if (required && strlen(missing) + 40 < missing_len)
				snprintf(missing + strlen(missing), missing_len - strlen(missing),
					 " 0x%x on vCPU %d (KVM refused 0x%llx)", idx[m], i, (unsigned long long)v);
			else if (!required && i == 0 && strlen(refused) + 16 < refused_len)
				snprintf(refused + strlen(refused), refused_len - strlen(refused), " 0x%x", idx[m]);
			continue;
		}
		msr_plan[i][msr_plan_n[i]++] = (struct msr_plan){ idx[m], v, required };
	}
}

static void xsave_apply(struct vm *vm, int i)
{
	uint8_t *x = xsave_plan[i];
	struct kvm_xcrs xcrs = { .nr_xcrs = 1 };
	uint64_t want = i ? 0x7 : 0x207, xstate_bv;
	uint16_t fcw = (uint16_t)(0x027f - i), fop = 0x7d8;
	uint32_t mxcsr = 0x3f80 | (i ? 0x8000 : 0);

	/* XCR0: x87, SSE, AVX (and PKRU on vCPU 0), as far as the CPUID allows */
	xcr0_plan[i] = 0;
	for (uint64_t try = want; try; try = try == 0x207 ? 0x7 : try == 0x7 ? 0x3 : 0) {
		xcrs.xcrs[0].xcr = 0;
		xcrs.xcrs[0].value = try;
		if (ioctl(vm->vcpus[i].fd, KVM_SET_XCRS, &xcrs) == 0) {
			xcr0_plan[i] = try;
			break;
		}
	}
	memset(x, 0, sizeof(xsave_plan[i]));
	if (vm->xsave_size > sizeof(xsave_plan[i]))
		return; /* larger than this test knows: the source check reports no AVX state */
	ioctl(vm->vcpus[i].fd, vm->xsave_size > sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2 : KVM_GET_XSAVE, x);
	memcpy(x + 0, &fcw, 2);
	x[4] = 0x81;                 /* abridged tag word: st0 and st7 in use */
	memcpy(x + 6, &fop, 2);
	uint64_t fip = 0x401234 + (uint64_t)i, fdp = 0x602468 + (uint64_t)i;
	memcpy(x + 8, &fip, 8);
	memcpy(x + 16, &fdp, 8);
	memcpy(x + 24, &mxcsr, 4);
	for (int k = 0; k < 8; k++)  /* st0-st7: 80-bit values */
		for (int b = 0; b < 10; b++)
			x[32 + 16 * k + b] = (uint8_t)(0x10 * k + b + i);
	for (int b = 0; b < 256; b++) /* xmm0-xmm15 */
		x[160 + b] = (uint8_t)(b * 7 + i);
	xstate_bv = 0x3;
	if (xcr0_plan[i] & 0x4) {    /* AVX: the upper halves of ymm0-15 at 576 */
		for (int b = 0; b < 256; b++)
			x[576 + b] = (uint8_t)(b * 13 + 1 + i);
		xstate_bv |= 0x4;
	}
	if ((xcr0_plan[i] & 0x200) && vm->xsave_size >= 0x988) { /* PKRU at 0x980 */
		uint32_t pkru = 0x55555554;
		memcpy(x + 0x980, &pkru, 4);
		xstate_bv |= 0x200;
	}
	memcpy(x + 512, &xstate_bv, 8);
	ioctl(vm->vcpus[i].fd, KVM_SET_XSAVE, x);
}

static void source_apply(struct vm *vm, char *msrs_refused, size_t refused_len, char *msrs_missing, size_t missing_len)
{
	for (int i = 0; i < VCPUS; i++) {
		int fd = vm->vcpus[i].fd;
		struct kvm_sregs2 s;
		struct kvm_regs r;
		struct kvm_lapic_state l;
		struct kvm_mp_state mp = { .mp_state = i ? KVM_MP_STATE_RUNNABLE : KVM_MP_STATE_HALTED };
		struct kvm_vcpu_events e;
		struct kvm_debugregs d;

		/* the order of a restore: SREGS2, REGS, XCRS, XSAVE, MSRs, LAPIC, TSC deadline, MP state, events, DRs */
		ioctl(fd, KVM_GET_SREGS2, &s);
		sregs_plan(i, &s);
		ioctl(fd, KVM_SET_SREGS2, &s);
		regs_plan(i, &r);
		ioctl(fd, KVM_SET_REGS, &r);
		xsave_apply(vm, i);
		msrs_apply(vm, i, msrs_refused, refused_len, msrs_missing, missing_len);
		ioctl(fd, KVM_GET_LAPIC, &l);
		lapic_plan(i, &l);
		ioctl(fd, KVM_SET_LAPIC, &l);
		if (!i) {
			uint64_t tsc = 0;
			msr_get(vm, i, MSR_IA32_TSC, &tsc);
			tsc_deadline_source = tsc + TSC_DEADLINE_AHEAD;
			msr_set(vm, i, MSR_IA32_TSC_DEADLINE, tsc_deadline_source);
		}
		ioctl(fd, KVM_SET_MP_STATE, &mp);
		events_plan(i, &e);
		ioctl(fd, KVM_SET_VCPU_EVENTS, &e);
		debugregs_plan(i, &d);
		ioctl(fd, KVM_SET_DEBUGREGS, &d);
	}
	for (uint32_t chip = 0; chip < 3; chip++) {
		struct kvm_irqchip c = { .chip_id = chip };
		ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &c);
		if (chip < 2)
			pic_plan(chip == 1, &c.chip.pic);
		else
			ioapic_plan(&c.chip.ioapic);
		ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &c);
	}
	struct kvm_pit_state2 pit;
	pit_plan(&pit);
	ioctl(vm->vm_fd, KVM_SET_PIT2, &pit);
	struct kvm_clock_data clock = { .clock = KVMCLOCK_SOURCE_NS };
	ioctl(vm->vm_fd, KVM_SET_CLOCK, &clock);
	uart_apply(vm);
}

/* ---- reading the plan back from a VM: one area at a time ---- */

enum area {
	AREA_CONFIG, AREA_CPUID, AREA_REGS, AREA_SREGS, AREA_XCR0, AREA_XSAVE, AREA_MSRS, AREA_LAPIC,
	AREA_MP_STATE, AREA_EVENTS, AREA_DEBUGREGS, AREA_PIC, AREA_IOAPIC, AREA_PIT, AREA_KVMCLOCK, AREA_UART,
	AREA_COUNT
};
static const char *area_names[AREA_COUNT] = {
	"config (name, EVC CPUID mask)", "CPUID (EVC-masked leaves 1 and 7)", "vCPU registers", "segment and control registers",
	"XCR0", "XSAVE (x87, SSE, AVX, PKRU)", "MSRs", "LAPIC (timer mode/count/divide, TPR, LVTs, IRR/ISR, x2APIC)",
	"MP state", "vCPU events (exception, interrupt, NMI, SMI, interrupt shadow)", "debug registers",
	"PIC (both chips)", "IOAPIC redirection entries", "PIT channels", "kvmclock",
	"UART (divisor, LCR, IER, FCR, MCR, scratch, IRQ 4)",
};
/* The areas each section carries. */
static const struct { const char *section; enum area areas[10]; int n; } section_areas[] = {
	{ "config", { AREA_CONFIG }, 1 },
	{ "cpuid", { AREA_CPUID }, 1 },
	{ "vcpu", { AREA_REGS, AREA_SREGS, AREA_XCR0, AREA_XSAVE, AREA_MSRS, AREA_LAPIC, AREA_MP_STATE, AREA_EVENTS,
		    AREA_DEBUGREGS }, 9 },
	{ "irqchip", { AREA_PIC, AREA_IOAPIC }, 2 },
	{ "pit", { AREA_PIT }, 1 },
	{ "clock", { AREA_KVMCLOCK }, 1 },
	{ "uart", { AREA_UART }, 1 },
};

static int check_config(struct vm *vm, char *why)
{
	int n = 0;
	if (strcmp(vm->cfg.name, "roundtrip-source"))
		why_add(why, &n, "name is '%s'", vm->cfg.name);
	EXPECT(why, &n, "cpuid mask 1.edx", vm->cfg.cpuid_mask[1], ~EVC_MASK_1_EDX);
	EXPECT(why, &n, "cpuid mask 7.ebx", vm->cfg.cpuid_mask[2], ~EVC_MASK_7_EBX);
	return n;
}

/* The CPUID glide gave each vCPU (KVM_SET_CPUID2). It is read from glide's
 * copy: KVM_GET_CPUID2 of the nested KVM on the test machines reports the
 * host's CPUID whatever was set. */
static int check_cpuid(struct vm *vm, char *why)
{
	int n = 0, found = 0;
	for (int i = 0; i < VCPUS; i++) {
		const struct kvm_cpuid2 *c = vm->vcpus[i].cpuid;
		for (uint32_t k = 0; k < c->nent; k++) {
			const struct kvm_cpuid_entry2 *e = &c->entries[k];
			if (e->function == 1) {
				found++;
				if (e->edx & EVC_MASK_1_EDX)
					why_add(why, &n, "vCPU %d: leaf 1 EDX 0x%x has CLFLUSH", i, e->edx);
			}
			if (e->function == 7 && e->index == 0 && (e->ebx & EVC_MASK_7_EBX))
				why_add(why, &n, "vCPU %d: leaf 7 EBX 0x%x has CLFLUSHOPT/CLWB", i, e->ebx);
		}
	}
	if (found != VCPUS)
		why_add(why, &n, "leaf 1 missing");
	return n;
}

static int check_regs(struct vm *vm, char *why)
{
	int n = 0;
	for (int i = 0; i < VCPUS; i++) {
		struct kvm_regs want, got;
		regs_plan(i, &want);
		ioctl(vm->vcpus[i].fd, KVM_GET_REGS, &got);
		__u64 *w = &want.rax, *g = &got.rax;
		for (int k = 0; k < 18; k++)
			if (w[k] != g[k])
				why_add(why, &n, "vCPU %d register %d is 0x%llx, expected 0x%llx", i, k, (unsigned long long)g[k],
					(unsigned long long)w[k]);
	}
	return n;
}

static void expect_segment(char *why, int *n, int i, const char *name, const struct kvm_segment *g,
			   const struct kvm_segment *w)
{
	char what[48];
	snprintf(what, sizeof(what), "vCPU %d %s.base", i, name);
	EXPECT(why, n, what, g->base, w->base);
	snprintf(what, sizeof(what), "vCPU %d %s.limit", i, name);
	EXPECT(why, n, what, g->limit, w->limit);
	snprintf(what, sizeof(what), "vCPU %d %s.selector", i, name);
	EXPECT(why, n, what, g->selector, w->selector);
	snprintf(what, sizeof(what), "vCPU %d %s.type", i, name);
	EXPECT(why, n, what, g->type, w->type);
	snprintf(what, sizeof(what), "vCPU %d %s.l", i, name);
	EXPECT(why, n, what, g->l, w->l);
	snprintf(what, sizeof(what), "vCPU %d %s.dpl", i, name);
	EXPECT(why, n, what, g->dpl, w->dpl);
}

static int check_sregs(struct vm *vm, char *why)
{
	int n = 0;
	for (int i = 0; i < VCPUS; i++) {
		struct kvm_sregs2 w, g;
		char what[48];
		ioctl(vm->vcpus[i].fd, KVM_GET_SREGS2, &g);
		w = g;
		sregs_plan(i, &w);
		expect_segment(why, &n, i, "cs", &g.cs, &w.cs);
		expect_segment(why, &n, i, "ss", &g.ss, &w.ss);
		expect_segment(why, &n, i, "fs", &g.fs, &w.fs);
		expect_segment(why, &n, i, "gs", &g.gs, &w.gs);
		expect_segment(why, &n, i, "tr", &g.tr, &w.tr);
		expect_segment(why, &n, i, "ldt", &g.ldt, &w.ldt);
#define SR(f) do { snprintf(what, sizeof(what), "vCPU %d " #f, i); EXPECT(why, &n, what, g.f, w.f); } while (0)
		SR(gdt.base); SR(gdt.limit); SR(idt.base); SR(idt.limit); SR(cr0); SR(cr2); SR(cr3); SR(cr4); SR(cr8);
		SR(efer); SR(apic_base);
#undef SR
	}
	return n;
}

static int check_xcr0(struct vm *vm, char *why)
{
	int n = 0;
	for (int i = 0; i < VCPUS; i++) {
		struct kvm_xcrs x;
		char what[32];
		if (!xcr0_plan[i]) {
			why_add(why, &n, "vCPU %d: KVM took no XCR0 value beyond x87", i);
			continue;
		}
		memset(&x, 0, sizeof(x));
		ioctl(vm->vcpus[i].fd, KVM_GET_XCRS, &x);
		snprintf(what, sizeof(what), "vCPU %d XCR0", i);
		EXPECT(why, &n, what, x.nr_xcrs ? x.xcrs[0].value : 0, xcr0_plan[i]);
	}
	return n;
}

static int check_xsave(struct vm *vm, char *why)
{
	int n = 0;
	static uint8_t x[sizeof(xsave_plan[0])];
	if (vm->xsave_size > sizeof(x)) {
		why_add(why, &n, "XSAVE area of %u bytes is larger than this test knows", vm->xsave_size);
		return n;
	}
	for (int i = 0; i < VCPUS; i++) {
		const uint8_t *w = xsave_plan[i];
		memset(x, 0, sizeof(x));
		ioctl(vm->vcpus[i].fd, vm->xsave_size > sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2 : KVM_GET_XSAVE, x);
		static const struct { size_t off, len; const char *name; } parts[] = {
			{ 0, 2, "fcw" }, { 4, 1, "ftw" }, { 6, 2, "fop" }, { 8, 8, "fip" }, { 16, 8, "fdp" },
			{ 24, 4, "mxcsr" }, { 32, 128, "st0-7" }, { 160, 256, "xmm0-15" }, { 512, 8, "xstate_bv" },
			{ 576, 256, "ymm0-15 upper halves" }, { 0x980, 4, "pkru" },
		};
		for (size_t k = 0; k < ARRAY_SIZE(parts); k++)
			if (parts[k].off + parts[k].len <= vm->xsave_size && memcmp(x + parts[k].off, w + parts[k].off, parts[k].len))
				why_add(why, &n, "vCPU %d %s differs", i, parts[k].name);
		uint64_t bv;
		memcpy(&bv, w + 512, 8);
		if (bv < 0x7)
			why_add(why, &n, "vCPU %d: no AVX state could be set (xstate_bv 0x%llx)", i, (unsigned long long)bv);
	}
	return n;
}

static int check_msrs(struct vm *vm, char *why)
{
	int n = 0;
	for (int i = 0; i < VCPUS; i++) {
		for (int m = 0; m < msr_plan_n[i]; m++) {
			uint64_t v = 0;
			char what[40];
			snprintf(what, sizeof(what), "vCPU %d MSR 0x%x", i, msr_plan[i][m].index);
			if (msr_get(vm, i, msr_plan[i][m].index, &v))
				why_add(why, &n, "%s cannot be read", what);
			else
				EXPECT(why, &n, what, v, msr_plan[i][m].value);
		}
	}
	return n;
}

static int check_lapic(struct vm *vm, char *why)
{
	int n = 0;
	for (int i = 0; i < VCPUS; i++) {
		struct kvm_lapic_state g, w;
		char what[48];
		ioctl(vm->vcpus[i].fd, KVM_GET_LAPIC, &g);
		memset(&w, 0, sizeof(w));
		lapic_plan(i, &w);
		for (unsigned reg = 0; reg < sizeof(w.regs); reg += 16) {
			uint32_t want = lapic_get(&w, reg);
			if (!want)
				continue;
			snprintf(what, sizeof(what), "vCPU %d LAPIC 0x%03x", i, reg);
			if (reg >= 0x100 && reg < 0x280) /* ISR, TMR, IRR: the planned bits are set */
				EXPECT(why, &n, what, lapic_get(&g, reg) & want, want);
			else if (reg == 0x310 && i == 1)
				continue; /* x2APIC mode keeps ICR high as written */
			else
				EXPECT(why, &n, what, lapic_get(&g, reg), want);
		}
		if (i == 1 && lapic_get(&g, 0x390) == 0)
			why_add(why, &n, "vCPU 1: the periodic timer is not running (current count 0)");
	}
	uint64_t deadline = 0;
	msr_get(vm, 0, MSR_IA32_TSC_DEADLINE, &deadline);
	if (deadline < tsc_deadline_source)
		why_add(why, &n, "vCPU 0 TSC deadline 0x%llx is before the source's 0x%llx", (unsigned long long)deadline,
			(unsigned long long)tsc_deadline_source);
	return n;
}

static int check_mp_state(struct vm *vm, char *why)
{
	int n = 0;
	for (int i = 0; i < VCPUS; i++) {
		struct kvm_mp_state mp = { 0 };
		char what[32];
		ioctl(vm->vcpus[i].fd, KVM_GET_MP_STATE, &mp);
		snprintf(what, sizeof(what), "vCPU %d MP state", i);
		EXPECT(why, &n, what, mp.mp_state, i ? KVM_MP_STATE_RUNNABLE : KVM_MP_STATE_HALTED);
	}
	return n;
}

static int check_events(struct vm *vm, char *why)
{
	int n = 0;
	for (int i = 0; i < VCPUS; i++) {
		struct kvm_vcpu_events g, w;
		char what[48];
		ioctl(vm->vcpus[i].fd, KVM_GET_VCPU_EVENTS, &g);
		events_plan(i, &w);
#define EV(f) do { snprintf(what, sizeof(what), "vCPU %d " #f, i); EXPECT(why, &n, what, g.f, w.f); } while (0)
		EV(exception.injected); EV(exception.nr); EV(exception.has_error_code); EV(exception.error_code);
		EV(interrupt.injected); EV(interrupt.nr); EV(interrupt.shadow); EV(nmi.pending); EV(nmi.masked);
		EV(smi.pending);
#undef EV
	}
	return n;
}

static int check_debugregs(struct vm *vm, char *why)
{
	int n = 0;
	for (int i = 0; i < VCPUS; i++) {
		struct kvm_debugregs g, w;
		char what[32];
		ioctl(vm->vcpus[i].fd, KVM_GET_DEBUGREGS, &g);
		debugregs_plan(i, &w);
		for (int k = 0; k < 4; k++) {
			snprintf(what, sizeof(what), "vCPU %d DR%d", i, k);
			EXPECT(why, &n, what, g.db[k], w.db[k]);
		}
		snprintf(what, sizeof(what), "vCPU %d DR6", i);
		EXPECT(why, &n, what, g.dr6, w.dr6);
		snprintf(what, sizeof(what), "vCPU %d DR7", i);
		EXPECT(why, &n, what, g.dr7, w.dr7);
	}
	return n;
}

static int check_pic(struct vm *vm, char *why)
{
	int n = 0;
	for (int chip = 0; chip < 2; chip++) {
		struct kvm_irqchip c = { .chip_id = (uint32_t)chip };
		struct kvm_pic_state w;
		const struct kvm_pic_state *g = &c.chip.pic;
		const char *name = chip ? "slave" : "master";
		char what[48];
		ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &c);
		memset(&w, 0, sizeof(w));
		pic_plan(chip, &w);
		if (!chip) { /* the UART's raised line 4 */
			w.irr |= 1 << UART_COM1_IRQ;
			w.last_irr |= 1 << UART_COM1_IRQ;
		}
#define PIC(f) do { snprintf(what, sizeof(what), "PIC %s " #f, name); EXPECT(why, &n, what, g->f, w.f); } while (0)
		PIC(irr); PIC(last_irr); PIC(imr); PIC(isr); PIC(priority_add); PIC(irq_base); PIC(read_reg_select);
		PIC(special_mask); PIC(auto_eoi); PIC(rotate_on_auto_eoi); PIC(special_fully_nested_mode); PIC(init4);
		PIC(elcr);
#undef PIC
	}
	return n;
}

static int check_ioapic(struct vm *vm, char *why)
{
	struct kvm_irqchip c = { .chip_id = 2 };
	struct kvm_ioapic_state w;
	int n = 0;
	char what[48];

	ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &c);
	memset(&w, 0, sizeof(w));
	ioapic_plan(&w);
	EXPECT(why, &n, "IOAPIC id", c.chip.ioapic.id, w.id);
	EXPECT(why, &n, "IOAPIC ioregsel", c.chip.ioapic.ioregsel, w.ioregsel);
	EXPECT(why, &n, "IOAPIC irr (the UART's line 4, masked)", c.chip.ioapic.irr, 1u << UART_COM1_IRQ);
	for (unsigned pin = 0; pin < KVM_IOAPIC_NUM_PINS; pin++) {
		snprintf(what, sizeof(what), "IOAPIC pin %u", pin);
		EXPECT(why, &n, what, c.chip.ioapic.redirtbl[pin].bits, w.redirtbl[pin].bits);
	}
	return n;
}

static int check_pit(struct vm *vm, char *why)
{
	struct kvm_pit_state2 g, w;
	int n = 0;
	char what[48];

	ioctl(vm->vm_fd, KVM_GET_PIT2, &g);
	pit_plan(&w);
	for (int k = 0; k < 3; k++) {
#define CH(f) do { snprintf(what, sizeof(what), "PIT channel %d " #f, k); \
		EXPECT(why, &n, what, g.channels[k].f, w.channels[k].f); } while (0)
		CH(count); CH(latched_count); CH(count_latched); CH(status_latched); CH(status); CH(read_state);
		CH(write_state); CH(write_latch); CH(rw_mode); CH(mode); CH(bcd); CH(gate);
#undef CH
	}
	EXPECT(why, &n, "PIT flags", g.flags, w.flags);
	return n;
}

static int check_kvmclock(struct vm *vm, char *why)
{
	struct kvm_clock_data c = { 0 };
	int n = 0;
	ioctl(vm->vm_fd, KVM_GET_CLOCK, &c);
	if (c.clock < KVMCLOCK_SOURCE_NS)
		why_add(why, &n, "kvmclock %llu ns is before the source's %llu ns", (unsigned long long)c.clock,
			(unsigned long long)KVMCLOCK_SOURCE_NS);
	return n;
}

static int check_uart(struct vm *vm, char *why)
{
	int n = 0;
	uint8_t lcr = port_in(vm, COM1 + 3);
	EXPECT(why, &n, "UART LCR", lcr, UART_PLAN_LCR);
	EXPECT(why, &n, "UART IER", port_in(vm, COM1 + 1), UART_PLAN_IER);
	EXPECT(why, &n, "UART MCR", port_in(vm, COM1 + 4), UART_PLAN_MCR);
	EXPECT(why, &n, "UART scratch", port_in(vm, COM1 + 7), UART_PLAN_SCR);
	port_out(vm, COM1 + 3, lcr | 0x80); /* the divisor, behind DLAB; LCR is put back as it was */
	EXPECT(why, &n, "UART DLL", port_in(vm, COM1 + 0), UART_PLAN_DLL);
	EXPECT(why, &n, "UART DLM", port_in(vm, COM1 + 1), UART_PLAN_DLM);
	port_out(vm, COM1 + 3, lcr);
	/* The THR-empty interrupt is raised at the PIC, and IIR shows it with the FIFO bits of FCR. */
	struct kvm_irqchip c = { .chip_id = 0 };
	ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &c);
	if (!(c.chip.pic.last_irr & (1 << UART_COM1_IRQ)))
		why_add(why, &n, "IRQ 4 (THR empty) is not raised at the PIC");
	EXPECT(why, &n, "UART IIR (FIFOs on, THR empty)", port_in(vm, COM1 + 2), 0xc2);
	/* reading IIR acknowledged the interrupt: turning THRI off and on raises it again, as it was */
	port_out(vm, COM1 + 1, UART_PLAN_IER & ~0x02);
	port_out(vm, COM1 + 1, UART_PLAN_IER);
	return n;
}

static int (*const area_check[AREA_COUNT])(struct vm *, char *) = {
	check_config, check_cpuid, check_regs, check_sregs, check_xcr0, check_xsave, check_msrs, check_lapic,
	check_mp_state, check_events, check_debugregs, check_pic, check_ioapic, check_pit, check_kvmclock, check_uart,
};

/* ---- captures ---- */

static int capture(struct vm *vm, struct state_buf *blob)
{
	struct state_writer w = { state_writer_buf, blob };
	memset(blob, 0, sizeof(*blob));
	int rc = state_save_all(vm, &w, true);
	if (!rc && blob->failed)
		rc = -ENOMEM;
	if (rc)
		sbuf_free(blob);
	return rc;
}

/* Restores blob into vm, leaving out the section named skip (NULL: none). */
static int restore(struct vm *vm, const struct state_buf *blob, const char *skip, char *err, size_t errlen)
{
	struct state_pending *p = state_pending_new();
	int rc = state_parse_blob(blob->data, blob->len, p, err, errlen);
	if (!rc && skip) {
		int k = 0;
		for (int s = 0; s < p->n; s++) {
			if (!strcmp(p->s[s].h.name, skip)) {
				free(p->s[s].data);
				continue;
			}
			p->s[k++] = p->s[s];
		}
		p->n = k;
	}
	if (!rc)
		rc = state_pending_apply(vm, p, err, errlen);
	state_pending_free(p);
	return rc;
}

/* Compares two captures; the differences' lines go to diff_out (malloc'd). */
static int compare(const struct state_buf *a, const struct state_buf *b, bool verbose, char **diff_out)
{
	char err[256];
	size_t len = 0;
	FILE *out = open_memstream(diff_out, &len);
	struct state_sections *sa = state_sections_read_blob(a->data, a->len, err, sizeof(err));
	struct state_sections *sb = state_sections_read_blob(b->data, b->len, err, sizeof(err));
	int diffs = -1;
	if (sa && sb)
		diffs = state_sections_diff(sa, sb, verbose, out);
	else
		fprintf(out, "%s", err);
	fclose(out);
	state_sections_free(sa);
	state_sections_free(sb);
	return diffs;
}

/* A CLOCK field of a capture, by its dump name ("vcpu[0].msr.0x10"). */
static bool capture_value(const struct state_buf *blob, const char *name, uint64_t *v)
{
	char err[256], *text = NULL;
	size_t len = 0;
	struct state_sections *s = state_sections_read_blob(blob->data, blob->len, err, sizeof(err));
	FILE *out = open_memstream(&text, &len);
	bool found = false;

	if (s)
		state_sections_print(s, out);
	fclose(out);
	state_sections_free(s);
	for (char *line = text; line && *line;) {
		char *end = strchr(line, '\n');
		if (end)
			*end = 0;
		size_t n = strlen(name);
		if (!strncmp(line, name, n) && !strncmp(line + n, " = ", 3)) {
			*v = strtoull(line + n + 3, NULL, 16);
			found = true;
			break;
		}
		line = end ? end + 1 : NULL;
	}
	free(text);
	return found;
}

static void check_clock_advance(const char *name, const struct state_buf *a, const struct state_buf *b,
				const char *field, const char *wall, uint64_t khz)
{
	uint64_t va, vb, wa, wb;
	char label[160];
	snprintf(label, sizeof(label), "round trip: %s advances by the time between the captures", name);
	if (!capture_value(a, field, &va) || !capture_value(b, field, &vb) || !capture_value(a, wall, &wa) ||
	    !capture_value(b, wall, &wb)) {
		CHECK(label, false, "%s or %s missing from a capture", field, wall);
		return;
	}
	/* khz 0: the field counts nanoseconds */
	double gap = (double)(wb - wa), advance = khz ? (double)(vb - va) * 1e6 / (double)khz : (double)(vb - va);
	CHECK(label, vb >= va && advance <= gap + CLOCK_SLACK_NS && advance + CLOCK_SLACK_NS >= gap,
	      "%s went from 0x%llx to 0x%llx: %.3f ms for %.3f ms between the captures", field,
	      (unsigned long long)va, (unsigned long long)vb, advance / 1e6, gap / 1e6);
}

/* `unit_state_roundtrip --write-snapshot FILE`: the source VM, every part
 * changed, as a snapshot file, for tests/test_snapshot_state.sh to restore
 * through the monitor. */
static int write_source_snapshot(const char *path)
{
	static struct vm a;
	char err[512], refused[512] = "", missing[512] = "";

	if (make_vm(&a, "roundtrip-source", true))
		return 2;
	have_smm = ioctl(a.vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_X86_SMM) > 0;
	source_apply(&a, refused, sizeof(refused), missing, sizeof(missing));
	sleep_ns(PIT_SETTLE_NS);
	int rc = snapshot_write(&a, path, err, sizeof(err));
	if (rc)
		fprintf(stderr, "%s\n", err);
	vm_destroy(&a);
	return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
	static struct vm a, b;
	struct state_buf blob1, blob2;
	char err[512], why[WHY_LEN], msrs_refused[512] = "", msrs_missing[512] = "";
	char *diff = NULL;
	int rc;

	if (argc == 3 && !strcmp(argv[1], "--write-snapshot"))
		return write_source_snapshot(argv[2]);
	if (access("/dev/kvm", R_OK | W_OK)) {
		printf("SKIP state round trip: /dev/kvm not accessible\n");
		return 0;
	}
	if (make_vm(&a, "roundtrip-source", true) || make_vm(&b, "roundtrip-destination", false)) {
		printf("FAIL state round trip: cannot create VMs\n");
		return 1;
	}
	have_smm = ioctl(a.vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_X86_SMM) > 0;
	if (!have_smm)
		printf("SKIP round trip: a pending SMI: this KVM has no SMM (KVM_CAP_X86_SMM)\n");
	source_apply(&a, msrs_refused, sizeof(msrs_refused), msrs_missing, sizeof(msrs_missing));
	sleep_ns(PIT_SETTLE_NS);

	/* The source holds every planned value: the test really changed the state. */
	for (int k = 0; k < AREA_COUNT; k++) {
		char name[160];
		why[0] = 0;
		snprintf(name, sizeof(name), "source: %s changed to non-default values", area_names[k]);
		CHECK(name, area_check[k](&a, why) == 0, "%s", why);
	}
	int planned = 0, required = 0;
	for (int i = 0; i < VCPUS; i++)
		for (int m = 0; m < msr_plan_n[i]; m++, planned++)
			required += msr_plan[i][m].required;
	char name[sizeof(msrs_refused) + 160];
	snprintf(name, sizeof(name), "source: every required MSR is migrated and changed (%d MSR values on %d vCPUs, "
		 "%d required)%s%s", planned, VCPUS, required, msrs_refused[0] ? "; KVM refused a change to" : "",
		 msrs_refused);
	CHECK(name, !msrs_missing[0], "missing:%s", msrs_missing);

	rc = capture(&a, &blob1);
	CHECK("round trip: capture the source", rc == 0, "%s", strerror(-rc));
	rc = restore(&b, &blob1, NULL, err, sizeof(err));
	CHECK("round trip: restore into a second VM", rc == 0, "%s", err);
	sleep_ns(PIT_SETTLE_NS);
	rc = capture(&b, &blob2);
	CHECK("round trip: capture the restored VM", rc == 0, "%s", strerror(-rc));

	/* 1. Both captures, field by field. */
	int diffs = compare(&blob1, &blob2, false, &diff);
	CHECK("round trip: every section of the restored VM equals the source's, field by field "
	      "(clocks only grow; LAPIC current count and PIT load times are recomputed by KVM)",
	      diffs == 0, "%d differences:\n%s", diffs, diff);
	free(diff);
	if (getenv("GLIDE_TEST_VERBOSE")) {
		compare(&blob1, &blob2, true, &diff);
		fputs(diff, stdout);
		free(diff);
	}

	/* 2. Every changed value is in the restored VM. */
	for (int k = 0; k < AREA_COUNT; k++) {
		char name[160];
		why[0] = 0;
		snprintf(name, sizeof(name), "round trip: %s restored", area_names[k]);
		CHECK(name, area_check[k](&b, why) == 0, "%s", why);
	}

	/* 3. Clocks move on by the time between the captures, never back. */
	uint64_t khz = a.tsc_khz;
	check_clock_advance("kvmclock", &blob1, &blob2, "clock.kvmclock_ns", "clock.realtime_ns", 0);
	check_clock_advance("the TSC of vCPU 0", &blob1, &blob2, "vcpu[0].msr.0x10", "vcpu[0].time.realtime_ns", khz);
	check_clock_advance("the TSC of vCPU 1", &blob1, &blob2, "vcpu[1].msr.0x10", "vcpu[1].time.realtime_ns", khz);
	/* the deadline moves by the time from capture to restore: at most the gap between the captures */
	uint64_t d1 = 0, d2 = 0, w1 = 0, w2 = 0;
	capture_value(&blob1, "vcpu[0].msr.0x6e0", &d1);
	capture_value(&blob2, "vcpu[0].msr.0x6e0", &d2);
	capture_value(&blob1, "vcpu[0].time.realtime_ns", &w1);
	capture_value(&blob2, "vcpu[0].time.realtime_ns", &w2);
	double moved_ns = (double)(d2 - d1) * 1e6 / (double)(khz ? khz : 1);
	CHECK("round trip: the TSC deadline moves with the TSC (armed, not earlier, at most the gap later)",
	      d1 == tsc_deadline_source && d2 >= d1 && moved_ns <= (double)(w2 - w1) + CLOCK_SLACK_NS,
	      "source armed 0x%llx, captured 0x%llx, restored 0x%llx (%.3f ms later, %.3f ms between the captures)",
	      (unsigned long long)tsc_deadline_source, (unsigned long long)d1, (unsigned long long)d2, moved_ns / 1e6,
	      (double)(w2 - w1) / 1e6);

	/* 4. The checks catch a section that is not restored. */
	char err_sections[64] = "";
	for (size_t s = 0; s < ARRAY_SIZE(section_areas); s++) {
		static struct vm c;
		struct state_buf blob3;
		char name[160], caught_by[WHY_LEN] = "";
		int read_back = 0;

		if (make_vm(&c, "roundtrip-destination", false)) {
			snprintf(err_sections + strlen(err_sections), sizeof(err_sections) - strlen(err_sections), " %s",
				 section_areas[s].section);
			continue;
		}
		rc = restore(&c, &blob1, section_areas[s].section, err, sizeof(err));
		sleep_ns(PIT_SETTLE_NS);
		if (!rc)
			rc = capture(&c, &blob3);
		diff = NULL;
		diffs = rc ? -1 : compare(&blob1, &blob3, false, &diff);
		for (int k = 0; k < section_areas[s].n; k++) {
			why[0] = 0;
			if (area_check[section_areas[s].areas[k]](&c, why))
				read_back++;
			else
				snprintf(caught_by + strlen(caught_by), sizeof(caught_by) - strlen(caught_by), " %s;",
					 area_names[section_areas[s].areas[k]]);
		}
		snprintf(name, sizeof(name), "round trip without the '%s' section: the comparison and the read-back both fail",
			 section_areas[s].section);
		CHECK(name, rc == 0 && diffs > 0 && read_back == section_areas[s].n,
		      "restore %s, %d differences, read-back missed:%s", rc ? err : "ok", diffs, caught_by);
		if (!rc)
			sbuf_free(&blob3);
		free(diff);
		vm_destroy(&c);
	}
	if (err_sections[0])
		CHECK("round trip without a section: VMs created", false, "cannot create a VM for:%s", err_sections);

	sbuf_free(&blob1);
	sbuf_free(&blob2);
	vm_destroy(&a);
	vm_destroy(&b);
	return failures ? 1 : 0;
}
