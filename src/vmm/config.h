/* VM configuration as JSON: what the host agent stores, what snapshots and
 * migration streams carry. */
#ifndef GLIDE_VMM_CONFIG_H
#define GLIDE_VMM_CONFIG_H
#include <jansson.h>
#include "vmm/vm.h"
json_t *vm_config_to_json(const struct vm_config *cfg);
int vm_config_from_json(json_t *j, struct vm_config *cfg, char *err, size_t errlen);
int vm_config_from_text(const char *text, size_t len, struct vm_config *cfg, char *err, size_t errlen);
#endif
