/* VM configuration as JSON: what the host agent stores, what snapshots and
 * migration streams carry. */
#ifndef GLIDE_VMM_CONFIG_H
#define GLIDE_VMM_CONFIG_H
#include <jansson.h>
#include "vmm/vm.h"
json_t *vm_config_to_json(const struct vm_config *cfg);
int vm_config_from_json(json_t *j, struct vm_config *cfg, char *err, size_t errlen);
int vm_config_from_text(const char *text, size_t len, struct vm_config *cfg, char *err, size_t errlen);

/* A VM's boot source as the host agent and the controller keep it:
 * {"kind": "boot"|"elf"|"kernel", "path": FILE, "initrd": FILE, "cmdline": S}
 * (initrd and cmdline optional or null; files absolute paths shorter than
 * PATH_MAX, cmdline shorter than the Linux loader's 4096 bytes). Strings
 * point into j. 0, or -EINVAL with err set. */
struct vm_boot {
	const char *kind, *path, *initrd, *cmdline;
};
int vm_boot_from_json(json_t *j, struct vm_boot *b, char *err, size_t errlen);
/* The devices a VM uses, as the controller and the agents compare them: a
 * JSON array of at most VM_DEVICES_MAX device names (1-63 characters, see
 * name_valid()). 0, or -EINVAL with err set. */
#define VM_DEVICES_MAX 32
int vm_devices_check(json_t *j, char *err, size_t errlen);

/* The CPUID registers a mask applies to, in struct vm_config order: the one
 * map of them, used by the monitor (--cpuid-mask, the CPUID a VM gets), the
 * host agent and the controller (EVC, vmm/evc.h). */
#define CPUID_MASK_REGS 7
struct cpuid_mask_reg {
	const char *name;   /* "1.ecx" ... as in --cpuid-mask and JSON */
	uint32_t leaf;      /* subleaf 0 where the leaf has subleaves (7) */
	char reg;           /* 'b', 'c' or 'd' */
};
extern const struct cpuid_mask_reg cpuid_mask_regs[CPUID_MASK_REGS];
/* "1.ecx 1.edx 7.ebx 7.ecx 7.edx 80000001.ecx 80000001.edx", for messages */
const char *cpuid_mask_reg_list(void);
/* "LEAF.REG=MASK[,...]" (MASK decimal or hex) into mask[]; -EINVAL on anything else. */
int cpuid_mask_parse_arg(const char *s, uint32_t mask[CPUID_MASK_REGS]);
#endif
