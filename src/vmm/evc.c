/* EVC baselines. A level is a mask over the seven CPUID feature registers
 * the VM monitor can narrow (`--cpuid-mask`); the named levels follow the
 * x86-64 psABI micro-architecture levels (v1 = baseline x86-64, v2 adds
 * SSE3..SSE4.2/POPCNT/CX16, v3 adds AVX/AVX2/BMI/FMA, v4 adds AVX-512).
 * Bits that KVM emulates on every host (x2APIC, TSC deadline, OSXSAVE,
 * hypervisor) stay visible at every level. Only features with a name in
 * cpuid.c's table take part in compatibility decisions, the same rule the
 * destination monitor applies when it checks an incoming VM. */
#include "vmm/evc.h"
#include "vmm/config.h"
#include "vmm/vm.h"
#include "common/util.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#define B(n) (1u << (n))
/* leaf 1 ECX bits every level keeps: x2apic, tsc_deadline, osxsave, hypervisor */
#define L1C_VIRT (B(21) | B(24) | B(27) | B(31))
#define L1C_V2 (L1C_VIRT | B(0) | B(9) | B(13) | B(19) | B(20) | B(23)) /* sse3 ssse3 cx16 sse4_1 sse4_2 popcnt */
#define L1C_V3 (L1C_V2 | B(12) | B(22) | B(26) | B(28) | B(29))        /* fma movbe xsave avx f16c */
#define L7B_V3 (B(3) | B(5) | B(8))                                    /* bmi1 avx2 bmi2 */
#define L7B_V4 (L7B_V3 | B(16) | B(17) | B(28) | B(30) | B(31))         /* avx512 f dq cd bw vl */
#define X1D_V1 (0xffffffffu & ~(B(26) | B(27)))                        /* no pdpe1gb, rdtscp */
#define X1D_V3 (X1D_V1 | B(27))                                        /* + rdtscp */

static const struct evc_level levels[] = {
	{ "x86-64-v1", { L1C_VIRT, 0xffffffffu, 0, 0, 0, 0, X1D_V1 }, "baseline x86-64: SSE2, CMOV, CX8, NX, SYSCALL" },
	{ "x86-64-v2", { L1C_V2, 0xffffffffu, 0, 0, 0, B(0), X1D_V1 }, "v1 + SSE3, SSSE3, SSE4.1, SSE4.2, POPCNT, CX16, LAHF" },
	{ "x86-64-v3", { L1C_V3, 0xffffffffu, L7B_V3, 0, 0, B(0) | B(5), X1D_V3 }, "v2 + AVX, AVX2, BMI1, BMI2, FMA, F16C, MOVBE, LZCNT, XSAVE" },
	{ "x86-64-v4", { L1C_V3, 0xffffffffu, L7B_V4, 0, 0, B(0) | B(5), X1D_V3 }, "v3 + AVX-512 F/DQ/CD/BW/VL" },
};

const struct evc_level *evc_level_at(int i)
{
	return i >= 0 && (size_t)i < ARRAY_SIZE(levels) ? &levels[i] : NULL;
}

const struct evc_level *evc_level_find(const char *name)
{
	for (size_t i = 0; name && i < ARRAY_SIZE(levels); i++)
		if (!strcmp(levels[i].name, name))
			return &levels[i];
	return NULL;
}

/* Walks the named features set in want and clear in have. */
static int walk_missing(const uint32_t want[EVC_REGS], const uint32_t have[EVC_REGS], char *out, size_t len)
{
	int missing = 0;
	size_t used = 0;

	if (out && len)
		out[0] = 0;
	for (int r = 0; r < EVC_REGS; r++)
		for (int bit = 0; bit < 32; bit++) {
			const char *name = cpuid_feature_name(cpuid_mask_regs[r].leaf, cpuid_mask_regs[r].reg, bit);
			if (!name || !(want[r] & B(bit)) || (have[r] & B(bit)))
				continue;
			if (out) {
				int n = snprintf(out + used, used < len ? len - used : 0, "%s%s", missing ? ", " : "", name);
				if (n > 0)
					used += (size_t)n;
			}
			missing++;
		}
	return missing;
}

bool evc_host_meets(const uint32_t regs[EVC_REGS], const uint32_t mask[EVC_REGS])
{
	return walk_missing(mask, regs, NULL, 0) == 0;
}

int evc_missing(const uint32_t want[EVC_REGS], const uint32_t have[EVC_REGS], char *out, size_t len)
{
	return walk_missing(want, have, out, len);
}

const struct evc_level *evc_host_max_level(const uint32_t regs[EVC_REGS])
{
	const struct evc_level *best = NULL;
	for (size_t i = 0; i < ARRAY_SIZE(levels); i++)
		if (evc_host_meets(regs, levels[i].mask))
			best = &levels[i];
	return best;
}

void evc_intersection(json_t *facts, uint32_t mask[EVC_REGS])
{
	size_t i;
	json_t *f;

	for (int r = 0; r < EVC_REGS; r++)
		mask[r] = 0xffffffffu;
	json_array_foreach(facts, i, f) {
		uint32_t regs[EVC_REGS];
		if (evc_regs_from_json(json_object_get(json_object_get(f, "cpu"), "cpuid"), regs) == 0)
			for (int k = 0; k < EVC_REGS; k++)
				mask[k] &= regs[k];
	}
}

json_t *evc_regs_to_json(const uint32_t regs[EVC_REGS])
{
	json_t *j = json_object();
	for (int r = 0; r < EVC_REGS; r++)
		json_object_set_new(j, cpuid_mask_regs[r].name, json_integer(regs[r]));
	return j;
}

int evc_regs_from_json(json_t *j, uint32_t regs[EVC_REGS])
{
	for (int r = 0; r < EVC_REGS; r++)
		regs[r] = 0xffffffffu;
	if (!json_is_object(j))
		return -EINVAL;
	for (int r = 0; r < EVC_REGS; r++) {
		json_t *v = json_object_get(j, cpuid_mask_regs[r].name);
		if (!v)
			continue;
		if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 0xffffffffLL)
			return -EINVAL;
		regs[r] = (uint32_t)json_integer_value(v);
	}
	return 0;
}

void evc_regs_to_arg(const uint32_t regs[EVC_REGS], char *out, size_t len)
{
	size_t used = 0;
	out[0] = 0;
	for (int r = 0; r < EVC_REGS && used < len; r++) {
		int n = snprintf(out + used, len - used, "%s%s=0x%x", r ? "," : "", cpuid_mask_regs[r].name, regs[r]);
		if (n > 0)
			used += (size_t)n;
	}
}

int evc_regs_parse_arg(const char *s, uint32_t regs[EVC_REGS])
{
	return cpuid_mask_parse_arg(s, regs);
}

json_t *evc_feature_list(const uint32_t regs[EVC_REGS])
{
	json_t *a = json_array();
	for (int r = 0; r < EVC_REGS; r++)
		for (int bit = 0; bit < 32; bit++) {
			const char *name = cpuid_feature_name(cpuid_mask_regs[r].leaf, cpuid_mask_regs[r].reg, bit);
			if (name && (regs[r] & B(bit)))
				json_array_append_new(a, json_string(name));
		}
	return a;
}
