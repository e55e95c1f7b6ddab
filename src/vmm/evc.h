/* EVC (Enhanced vMotion Compatibility): named CPU baselines expressed as
 * CPUID feature masks, the same seven registers `glide vm run --cpuid-mask`
 * takes, and the checks built on them. Shared by the host agent (which
 * reports the highest level its CPU meets) and the controller. */
#ifndef GLIDE_VMM_EVC_H
#define GLIDE_VMM_EVC_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/config.h"

#define EVC_REGS CPUID_MASK_REGS /* the registers of cpuid_mask_regs (vmm/config.h) */
#define EVC_NONE "none"
#define EVC_INTERSECTION "intersection"


struct evc_level {
	const char *name;
	uint32_t mask[EVC_REGS];     /* the bits a VM at this level may see */
	const char *summary;
};

/* Levels from lowest to highest; NULL-terminated walk with evc_level_at(i). */
const struct evc_level *evc_level_at(int i);
const struct evc_level *evc_level_find(const char *name);
/* Highest named level whose features all appear in `regs`, or NULL. */
const struct evc_level *evc_host_max_level(const uint32_t regs[EVC_REGS]);
/* True when every named feature the level allows is present in `regs`. */
bool evc_host_meets(const uint32_t regs[EVC_REGS], const uint32_t mask[EVC_REGS]);
/* Names the named features set in `want` and clear in `have` ("avx2, bmi2"); returns the count. */
int evc_missing(const uint32_t want[EVC_REGS], const uint32_t have[EVC_REGS], char *out, size_t len);
/* The "intersection" baseline of a cluster: the AND of the cpu.cpuid
 * registers of every host facts object in the JSON array `facts` (objects
 * without a valid cpu.cpuid, and non-objects, are skipped; a register
 * missing from a host's cpu.cpuid counts as all ones); all ones when no host
 * has one. */
void evc_intersection(json_t *facts, uint32_t mask[EVC_REGS]);
/* The 7 registers as {"1.ecx": n, ...} and back (missing keys: all ones). */
json_t *evc_regs_to_json(const uint32_t regs[EVC_REGS]);
int evc_regs_from_json(json_t *j, uint32_t regs[EVC_REGS]);
/* "1.ecx=0x..,1.edx=0x..,..." for --cpuid-mask. */
void evc_regs_to_arg(const uint32_t regs[EVC_REGS], char *out, size_t len);
int evc_regs_parse_arg(const char *s, uint32_t regs[EVC_REGS]);
/* The named features present in regs, as a JSON array of strings. */
json_t *evc_feature_list(const uint32_t regs[EVC_REGS]);
#endif
