/* CPUID for each vCPU: KVM_GET_SUPPORTED_CPUID masked by the VM's
 * configuration (the EVC baseline), with the per-vCPU APIC IDs filled in.
 * The resulting table is part of the VM's state and travels with it. */
#include "vmm/vm.h"
#include "common/util.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define CPUID_MAX_ENTRIES 256

void cpuid_mask_all_ones(struct vm_config *cfg)
{
	for (size_t i = 0; i < ARRAY_SIZE(cfg->cpuid_mask); i++)
		cfg->cpuid_mask[i] = 0xffffffffu;
}

static void cpuid_apply(struct kvm_cpuid2 *c, const struct vm_config *cfg, int index, int count)
{
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		switch (e->function) {
		case 1:
			e->ecx &= cfg->cpuid_mask[CPUID_MASK_1_ECX];
			e->edx &= cfg->cpuid_mask[CPUID_MASK_1_EDX];
			e->ebx = (e->ebx & 0x0000ffffu) | ((uint32_t)index << 24) | ((uint32_t)MIN(count, 255) << 16);
			break;
		case 7:
			if (e->index == 0) {
				e->ebx &= cfg->cpuid_mask[CPUID_MASK_7_EBX];
				e->ecx &= cfg->cpuid_mask[CPUID_MASK_7_ECX];
				e->edx &= cfg->cpuid_mask[CPUID_MASK_7_EDX];
			}
			break;
		case 0xb:
		case 0x1f:
			e->edx = (uint32_t)index;
			break;
		case 0x80000001:
			e->ecx &= cfg->cpuid_mask[CPUID_MASK_81_ECX];
			e->edx &= cfg->cpuid_mask[CPUID_MASK_81_EDX];
			break;
		}
	}
}

int cpuid_build(struct vm *vm, char *err, size_t errlen)
{
	size_t sz = sizeof(struct kvm_cpuid2) + CPUID_MAX_ENTRIES * sizeof(struct kvm_cpuid_entry2);
	struct kvm_cpuid2 *supported = calloc(1, sz);

	if (!supported)
		return -ENOMEM;
	supported->nent = CPUID_MAX_ENTRIES;
	if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, supported) < 0) {
		int rc = -errno;
		errf(err, errlen, "KVM_GET_SUPPORTED_CPUID failed: %s", strerror(errno));
		free(supported);
		return rc;
	}
	for (int i = 0; i < vm->nvcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		v->cpuid = malloc(sz);
		if (!v->cpuid) {
			free(supported);
			return -ENOMEM;
		}
		memcpy(v->cpuid, supported, sz);
		cpuid_apply(v->cpuid, &vm->cfg, i, vm->nvcpus);
		if (ioctl(v->fd, KVM_SET_CPUID2, v->cpuid) < 0) {
			int rc = -errno;
			errf(err, errlen, "KVM_SET_CPUID2 on vCPU %d failed: %s", i, strerror(errno));
			free(supported);
			return rc;
		}
	}
	free(supported);
	return 0;
}
