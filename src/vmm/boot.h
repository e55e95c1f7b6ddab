/* Boot loaders: put a guest image into RAM and describe how each vCPU starts.
 *
 * The monitor calls one boot_load_*() after RAM exists and before the vCPUs
 * run, then boot_setup_vcpu() for every vCPU. Loaders never touch KVM except
 * through boot_setup_vcpu(). */
#ifndef GLIDE_VMM_BOOT_H
#define GLIDE_VMM_BOOT_H
#include <stdint.h>
#include <stddef.h>
#include "vmm/memory.h"

/* Register contract for --boot and --elf guests: every vCPU starts at the
 * same entry; BOOT_MAGIC in EBX/RBX says "started by glide", ESI/RSI holds
 * the vCPU index and EDI/RDI the vCPU count (see docs/guests.md). */
#define BOOT_MAGIC 0x474C4445u /* 'GLDE' */
#define BOOT_RAW_LOAD_ADDR 0x7c00u

enum boot_mode {
	BOOT_MODE_REAL16 = 1, /* raw image at 0x7c00, real mode, no BIOS */
	BOOT_MODE_PVH32,      /* ELF with PVH note: 32-bit protected mode, paging off, EBX=start_info */
	BOOT_MODE_LONG64,     /* ELF entry in 64-bit mode with identity-mapped page tables */
	BOOT_MODE_LINUX64,    /* bzImage 64-bit boot protocol, RSI=boot_params */
};

struct boot_plan {
	enum boot_mode mode;
	uint64_t entry;       /* RIP (or CS:IP linear address for REAL16) */
	uint64_t arg;         /* boot_params / start_info guest-physical address */
	uint64_t cr3;         /* page tables built by the loader (LONG64, LINUX64) */
	uint64_t gdt_base;    /* GDT built by the loader (not REAL16) */
	uint16_t gdt_limit;
	int aps_wait_for_sipi; /* 1: secondary vCPUs stay halted until INIT/SIPI (Linux) */
};

int boot_load_raw(struct guest_memory *mem, const char *path, struct boot_plan *plan, char *err, size_t errlen);
int boot_load_elf(struct guest_memory *mem, int vcpus, const char *path, struct boot_plan *plan, char *err, size_t errlen);
int boot_load_linux(struct guest_memory *mem, int vcpus, const char *kernel, const char *initrd,
		    const char *cmdline, struct boot_plan *plan, char *err, size_t errlen);
/* Sets REGS, SREGS, FPU and (for APs) MP state of one vCPU according to the plan.
 * Returns 0 or -errno. */
int boot_setup_vcpu(int vcpu_fd, const struct boot_plan *plan, int index, int count);
#endif
