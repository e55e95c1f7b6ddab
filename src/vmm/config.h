/* VM configuration as JSON: what the host agent stores, what snapshots and
 * migration streams carry. */
#ifndef GLIDE_VMM_CONFIG_H
#define GLIDE_VMM_CONFIG_H
#include <jansson.h>
#include "vmm/vm.h"
json_t *vm_config_to_json(const struct vm_config *cfg);
int vm_config_from_json(json_t *j, struct vm_config *cfg, char *err, size_t errlen);
int vm_config_from_text(const char *text, size_t len, struct vm_config *cfg, char *err, size_t errlen);

/* The CPUID registers a mask applies to, in struct vm_config order:
 * "1.ecx" "1.edx" "7.ebx" "7.ecx" "7.edx" "80000001.ecx" "80000001.edx". */
#define CPUID_MASK_REGS 7
extern const char *const cpuid_mask_names[CPUID_MASK_REGS];
/* "LEAF.REG=MASK[,...]" (MASK decimal or hex) into mask[]; -EINVAL on anything else. */
int cpuid_mask_parse_arg(const char *s, uint32_t mask[CPUID_MASK_REGS]);
#endif
