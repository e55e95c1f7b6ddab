/* Fuzz support: fake VM and fake KVM ioctls (see fake_vm.h). */
#include "fake_vm.h"
#include "devices/devices.h"
#include "devices/pci.h"
#include "vmm/memory.h"
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <zlib.h>

uint32_t fuzz_crc32(const void *p, size_t n)
{
	return (uint32_t)crc32(crc32(0L, Z_NULL, 0), p, (uInt)n);
}

/* Reads n bytes of p the way copy_from_user would: ASan reports a short buffer. */
static volatile uint8_t fake_sink;
static void touch(const void *p, size_t n)
{
	const volatile uint8_t *b = p;
	uint8_t x = 0;
	for (size_t i = 0; i < n; i++)
		x ^= b[i];
	fake_sink = x;
}

static int fake_ioctl(int fd, unsigned long req, void *arg)
{
	unsigned dir = _IOC_DIR(req);
	size_t size = _IOC_SIZE(req);

	if (req == KVM_SET_MSRS) {
		const struct kvm_msrs *m = arg;
		touch(m, sizeof(*m));
		touch(m->entries, (size_t)m->nmsrs * sizeof(m->entries[0]));
		return (int)m->nmsrs;
	}
	if (req == KVM_SET_CPUID2) {
		const struct kvm_cpuid2 *c = arg;
		touch(c, sizeof(*c));
		if (c->nent > 256)
			return -1;
		touch(c->entries, (size_t)c->nent * sizeof(c->entries[0]));
		return 0;
	}
	if (req == KVM_SET_XSAVE) {
		touch(arg, FAKE_XSAVE_SIZE > size ? FAKE_XSAVE_SIZE : size);
		return 0;
	}
	if (dir & _IOC_WRITE)
		touch(arg, size);
	if (dir & _IOC_READ)
		memset(arg, 0, size);
	(void)fd;
	return 0;
}

/* Overrides libc's (and the sanitizer's weak) ioctl for the whole binary. */
int ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (fd >= FAKE_KVM_FD_BASE && fd < FAKE_KVM_FD_BASE + 1 + VM_MAX_VCPUS)
		return fake_ioctl(fd, req, arg);
	return (int)syscall(SYS_ioctl, fd, req, arg);
}

void fake_vm_init(struct vm *vm, const struct vm_config *cfg, uint64_t pages, int vcpus)
{
	memset(vm, 0, sizeof(*vm));
	vm->cfg = *cfg;
	vm->kvm_fd = -1;
	vm->vm_fd = FAKE_KVM_FD_BASE;
	vm->serial_fd = -1;
	vm->mem.size = pages * GUEST_PAGE_SIZE;
	vm->mem.host = calloc(1, vm->mem.size ? vm->mem.size : 1);
	vm->mem.nregions = 1;
	vm->mem.regions[0] = (struct guest_ram_region){ .gpa = 0, .size = vm->mem.size, .host = vm->mem.host };
	vm->nvcpus = vcpus;
	vm->xsave_size = FAKE_XSAVE_SIZE;
	vm->have_sregs2 = true;
	vm->tsc_khz = 2000000;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	pthread_mutex_init(&vm->user_dirty_lock, NULL);
	for (int i = 0; i < vcpus; i++) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + 2 * sizeof(struct kvm_cpuid_entry2));
		c->nent = 2;
		c->entries[0] = (struct kvm_cpuid_entry2){ .function = 0, .eax = 0xd };
		c->entries[1] = (struct kvm_cpuid_entry2){ .function = 1, .ecx = 0xffffffff, .edx = 0xffffffff };
		vm->vcpus[i] = (struct vcpu){ .vm = vm, .index = i, .fd = FAKE_KVM_FD_BASE + 1 + i, .cpuid = c };
	}
	devices_init(vm, -1); /* its own COM1 UART, so the "uart" section has a device to load into */
}

void fake_vm_free(struct vm *vm)
{
	for (int i = 0; i < VM_MAX_VCPUS; i++)
		free(vm->vcpus[i].cpuid);
	free(vm->mem.host);
	free(vm->msr_indices);
	free(vm->user_dirty_bitmap);
	free(vm->uart);
	pci_bus_destroy(vm); /* devices_init made the PCI bus */
	pthread_mutex_destroy(&vm->lock);
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->user_dirty_lock);
	memset(vm, 0, sizeof(*vm));
}

