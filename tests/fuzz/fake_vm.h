/* Fuzz support: a fake `struct vm` (small malloc'd RAM, no KVM) and a fake
 * ioctl() for it. The fuzz binaries define ioctl() (fake_vm.c); calls on
 * FAKE_KVM_FD_BASE.. fds succeed like KVM would, after reading the bytes
 * the kernel would read (so ASan sees an undersized buffer), and every
 * other fd goes to the real system call. */
#ifndef GLIDE_FUZZ_FAKE_VM_H
#define GLIDE_FUZZ_FAKE_VM_H
#include "vmm/vm.h"
#include <stddef.h>
#include <stdint.h>

#define FAKE_KVM_FD_BASE 100000   /* vm_fd; vCPU i has FAKE_KVM_FD_BASE + 1 + i */
#define FAKE_XSAVE_SIZE 4096      /* what KVM_SET_XSAVE reads (uabi size) */

/* Sets up vm with `pages` pages of zeroed RAM, `vcpus` fake vCPUs, cfg and its devices. */
void fake_vm_init(struct vm *vm, const struct vm_config *cfg, uint64_t pages, int vcpus);
void fake_vm_free(struct vm *vm);
/* Fuzz helper: CRC32 like the state format and wire use. */
uint32_t fuzz_crc32(const void *p, size_t n);
#endif
