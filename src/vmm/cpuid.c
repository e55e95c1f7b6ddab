/* CPUID for each vCPU: KVM_GET_SUPPORTED_CPUID masked by the VM's
 * configuration (the EVC baseline), with the per-vCPU APIC IDs filled in.
 * The resulting table is part of the VM's state and travels with it. */
#include "vmm/vm.h"
#include "vmm/config.h"
#include "common/util.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define CPUID_MAX_ENTRIES 256

void cpuid_mask_all_ones(struct vm_config *cfg)
{
	for (size_t i = 0; i < ARRAY_SIZE(cfg->cpuid_mask); i++)
		cfg->cpuid_mask[i] = 0xffffffffu;
}

static uint32_t *cpuid_entry_reg(struct kvm_cpuid_entry2 *e, char reg)
{
	return reg == 'b' ? &e->ebx : reg == 'c' ? &e->ecx : &e->edx;
}

void cpuid_apply(struct kvm_cpuid2 *c, const uint32_t mask[CPUID_MASK_REGS], int index, int count)
{
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		/* the feature masks: the registers of cpuid_mask_regs (subleaf 0 of leaf 7) */
		for (int r = 0; r < CPUID_MASK_REGS; r++)
			if (e->function == cpuid_mask_regs[r].leaf && (e->function != 7 || e->index == 0))
				*cpuid_entry_reg(e, cpuid_mask_regs[r].reg) &= mask[r];
		/* this vCPU's APIC ID and the logical processor count */
		if (e->function == 1)
			e->ebx = (e->ebx & 0x0000ffffu) | ((uint32_t)index << 24) | ((uint32_t)MIN(count, 255) << 16);
		else if (e->function == 0xb || e->function == 0x1f)
			e->edx = (uint32_t)index;
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
		cpuid_apply(v->cpuid, vm->cfg.cpuid_mask, i, vm->nvcpus);
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

/* Feature bits that matter for compatibility checks, with their names. */
struct cpuid_feature {
	uint32_t leaf, subleaf;
	char reg; /* 'b', 'c', 'd' */
	uint8_t bit;
	const char *name;
};

static const struct cpuid_feature features[] = {
	{ 1, 0, 'c', 0, "sse3" }, { 1, 0, 'c', 1, "pclmulqdq" }, { 1, 0, 'c', 9, "ssse3" },
	{ 1, 0, 'c', 12, "fma" }, { 1, 0, 'c', 13, "cx16" }, { 1, 0, 'c', 19, "sse4_1" },
	{ 1, 0, 'c', 20, "sse4_2" }, { 1, 0, 'c', 21, "x2apic" }, { 1, 0, 'c', 22, "movbe" },
	{ 1, 0, 'c', 23, "popcnt" }, { 1, 0, 'c', 24, "tsc_deadline" }, { 1, 0, 'c', 25, "aes" },
	{ 1, 0, 'c', 26, "xsave" }, { 1, 0, 'c', 28, "avx" }, { 1, 0, 'c', 29, "f16c" },
	{ 1, 0, 'c', 30, "rdrand" }, { 1, 0, 'd', 0, "fpu" }, { 1, 0, 'd', 4, "tsc" },
	{ 1, 0, 'd', 5, "msr" }, { 1, 0, 'd', 6, "pae" }, { 1, 0, 'd', 8, "cx8" }, { 1, 0, 'd', 9, "apic" },
	{ 1, 0, 'd', 15, "cmov" }, { 1, 0, 'd', 19, "clflush" }, { 1, 0, 'd', 23, "mmx" },
	{ 1, 0, 'd', 24, "fxsr" }, { 1, 0, 'd', 25, "sse" }, { 1, 0, 'd', 26, "sse2" },
	{ 7, 0, 'b', 0, "fsgsbase" }, { 7, 0, 'b', 3, "bmi1" }, { 7, 0, 'b', 5, "avx2" },
	{ 7, 0, 'b', 7, "smep" }, { 7, 0, 'b', 8, "bmi2" }, { 7, 0, 'b', 9, "erms" },
	{ 7, 0, 'b', 10, "invpcid" }, { 7, 0, 'b', 16, "avx512f" }, { 7, 0, 'b', 17, "avx512dq" },
	{ 7, 0, 'b', 18, "rdseed" }, { 7, 0, 'b', 19, "adx" }, { 7, 0, 'b', 20, "smap" },
	{ 7, 0, 'b', 23, "clflushopt" }, { 7, 0, 'b', 24, "clwb" }, { 7, 0, 'b', 28, "avx512cd" },
	{ 7, 0, 'b', 29, "sha_ni" }, { 7, 0, 'b', 30, "avx512bw" }, { 7, 0, 'b', 31, "avx512vl" },
	{ 7, 0, 'c', 1, "avx512vbmi" }, { 7, 0, 'c', 2, "umip" }, { 7, 0, 'c', 5, "waitpkg" },
	{ 7, 0, 'c', 6, "avx512_vbmi2" }, { 7, 0, 'c', 8, "gfni" }, { 7, 0, 'c', 9, "vaes" },
	{ 7, 0, 'c', 10, "vpclmulqdq" }, { 7, 0, 'c', 11, "avx512_vnni" }, { 7, 0, 'c', 12, "avx512_bitalg" },
	{ 7, 0, 'c', 14, "avx512_vpopcntdq" }, { 7, 0, 'c', 22, "rdpid" }, { 7, 0, 'd', 4, "fsrm" },
	{ 7, 0, 'd', 8, "avx512_vp2intersect" }, { 7, 0, 'd', 14, "serialize" }, { 7, 0, 'd', 24, "amx_tile" },
	{ 0x80000001, 0, 'c', 0, "lahf_lm" }, { 0x80000001, 0, 'c', 5, "abm" },
	{ 0x80000001, 0, 'c', 6, "sse4a" }, { 0x80000001, 0, 'c', 8, "3dnowprefetch" },
	{ 0x80000001, 0, 'd', 11, "syscall" }, { 0x80000001, 0, 'd', 20, "nx" },
	{ 0x80000001, 0, 'd', 26, "pdpe1gb" }, { 0x80000001, 0, 'd', 27, "rdtscp" },
	{ 0x80000001, 0, 'd', 29, "lm" },
};

static const struct kvm_cpuid_entry2 *cpuid_find(const struct kvm_cpuid2 *c, uint32_t leaf, uint32_t subleaf)
{
	for (uint32_t i = 0; i < c->nent; i++)
		if (c->entries[i].function == leaf && (leaf != 7 || c->entries[i].index == subleaf))
			return &c->entries[i];
	return NULL;
}

static uint32_t cpuid_reg(const struct kvm_cpuid_entry2 *e, char reg)
{
	return !e ? 0 : reg == 'b' ? e->ebx : reg == 'c' ? e->ecx : e->edx;
}

int cpuid_missing_features(const struct kvm_cpuid2 *want, const struct kvm_cpuid2 *have, char *out, size_t len)
{
	int missing = 0;
	size_t used = 0;

	if (len)
		out[0] = 0;
	for (size_t i = 0; i < ARRAY_SIZE(features); i++) {
		const struct cpuid_feature *f = &features[i];
		bool w = cpuid_reg(cpuid_find(want, f->leaf, f->subleaf), f->reg) & (1u << f->bit);
		bool h = cpuid_reg(cpuid_find(have, f->leaf, f->subleaf), f->reg) & (1u << f->bit);
		if (w && !h) {
			int n = used < len ? snprintf(out + used, len - used, "%s%s", missing ? ", " : "", f->name) : 0;
			if (n > 0)
				used += (size_t)n;
			missing++;
		}
	}
	return missing;
}

const char *cpuid_feature_name(uint32_t leaf, char reg, int bit)
{
	for (size_t i = 0; i < ARRAY_SIZE(features); i++)
		if (features[i].leaf == leaf && features[i].reg == reg && features[i].bit == bit)
			return features[i].name;
	return NULL;
}
