/* boot_setup_vcpu(): puts one vCPU into the initial register state that a
 * boot plan describes (real mode at 0x7c00, 32-bit PVH, 64-bit ELF or the
 * Linux 64-bit entry) and makes secondary vCPUs runnable where the contract
 * says all vCPUs start at the entry. */
#include "vmm/boot_priv.h"
#include <errno.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>

#define CR0_PE   (1ULL << 0)
#define CR0_MP   (1ULL << 1)
#define CR0_ET   (1ULL << 4)
#define CR0_NE   (1ULL << 5)
#define CR0_WP   (1ULL << 16)
#define CR0_PG   (1ULL << 31)
#define CR4_PAE  (1ULL << 5)
#define CR4_OSFXSR (1ULL << 9)
#define CR4_OSXMMEXCPT (1ULL << 10)
#define EFER_LME (1ULL << 8)
#define EFER_LMA (1ULL << 10)
#define RFLAGS_RESERVED 0x2ULL
#define REAL_MODE_SEGMENT_LIMIT 0xffff
#define FLAT_LIMIT 0xffffffffu
#define SEG_TYPE_DATA_RW_ACCESSED 3
#define SEG_TYPE_CODE_RX_ACCESSED 11
#define SEG_TYPE_TSS_BUSY 11
#define FPU_DEFAULT_FCW 0x37f
#define FPU_DEFAULT_MXCSR 0x1f80
#define REAL16_BOOT_DRIVE 0x80  /* DL: first hard disk, as a BIOS would pass */

static struct kvm_segment flat_segment(uint16_t selector, uint8_t type, int code64)
{
	return (struct kvm_segment){
		.base = 0, .limit = FLAT_LIMIT, .selector = selector, .type = type,
		.present = 1, .dpl = 0, .db = code64 ? 0 : 1, .s = 1, .l = code64 ? 1 : 0, .g = 1,
	};
}

static void setup_protected_sregs(struct kvm_sregs *s, const struct boot_plan *plan, int long_mode)
{
	struct kvm_segment data = flat_segment(BOOT_SEL_DATA, SEG_TYPE_DATA_RW_ACCESSED, 0);

	s->cs = long_mode ? flat_segment(BOOT_SEL_CODE64, SEG_TYPE_CODE_RX_ACCESSED, 1)
			  : flat_segment(BOOT_SEL_CODE32, SEG_TYPE_CODE_RX_ACCESSED, 0);
	s->ds = s->es = s->fs = s->gs = s->ss = data;
	s->tr = (struct kvm_segment){
		.base = BOOT_TSS_ADDR, .limit = BOOT_TSS_LIMIT, .selector = BOOT_SEL_TSS,
		.type = SEG_TYPE_TSS_BUSY, .present = 1, .s = 0,
	};
	s->ldt = (struct kvm_segment){ .type = 2, .present = 1, .unusable = 1, .limit = 0xffff };
	s->gdt.base = plan->gdt_base;
	s->gdt.limit = plan->gdt_limit;
	s->idt.base = 0;
	s->idt.limit = 0; /* no IDT: an early exception becomes a triple fault (shutdown exit) */
	if (long_mode) {
		s->cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
		s->cr3 = plan->cr3;
		s->cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
		s->efer = EFER_LME | EFER_LMA;
	} else {
		s->cr0 = CR0_PE | CR0_ET;
		s->cr3 = 0;
		s->cr4 = 0;
		s->efer = 0;
	}
}

static void setup_real_sregs(struct kvm_sregs *s)
{
	struct kvm_segment *segs[] = { &s->cs, &s->ds, &s->es, &s->fs, &s->gs, &s->ss };

	for (unsigned i = 0; i < sizeof(segs) / sizeof(segs[0]); i++) {
		segs[i]->selector = 0;
		segs[i]->base = 0;
		segs[i]->limit = REAL_MODE_SEGMENT_LIMIT;
	}
}

int boot_setup_vcpu(int vcpu_fd, const struct boot_plan *plan, int index, int count)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rflags = RFLAGS_RESERVED };
	struct kvm_fpu fpu = { .fcw = FPU_DEFAULT_FCW, .mxcsr = FPU_DEFAULT_MXCSR };

	/* Linux starts its secondary CPUs itself with INIT/SIPI: leave them in reset. */
	if (plan->aps_wait_for_sipi && index > 0)
		return 0;
	if (ioctl(vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	switch (plan->mode) {
	case BOOT_MODE_REAL16:
		setup_real_sregs(&sregs);
		regs.rip = plan->entry;
		regs.rsp = BOOT_RAW_LOAD_ADDR;
		regs.rdx = REAL16_BOOT_DRIVE;
		regs.rbx = BOOT_MAGIC;
		regs.rsi = (uint64_t)index;
		regs.rdi = (uint64_t)count;
		break;
	case BOOT_MODE_PVH32:
		setup_protected_sregs(&sregs, plan, 0);
		regs.rip = plan->entry;
		regs.rbx = plan->arg;
		regs.rsi = (uint64_t)index;
		regs.rdi = (uint64_t)count;
		break;
	case BOOT_MODE_LONG64:
		setup_protected_sregs(&sregs, plan, 1);
		regs.rip = plan->entry;
		regs.rbx = BOOT_MAGIC;
		regs.rsi = (uint64_t)index;
		regs.rdi = (uint64_t)count;
		break;
	case BOOT_MODE_LINUX64:
		setup_protected_sregs(&sregs, plan, 1);
		regs.rip = plan->entry;
		regs.rsi = plan->arg;
		break;
	default:
		return -EINVAL;
	}
	if (ioctl(vcpu_fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;
	if (ioctl(vcpu_fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	if (ioctl(vcpu_fd, KVM_SET_FPU, &fpu) < 0)
		return -errno;
	if (index > 0) {
		/* With the in-kernel irqchip an AP waits for INIT/SIPI unless made runnable. */
		struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };
		if (ioctl(vcpu_fd, KVM_SET_MP_STATE, &mp) < 0)
			return -errno;
	}
	return 0;
}
