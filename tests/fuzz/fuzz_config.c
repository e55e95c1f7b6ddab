/* Fuzz target: the VM configuration JSON parser (vm_config_from_text() in
 * src/vmm/config.c), which reads state files, migration CONFIG frames and
 * API bodies. A configuration it accepts must survive a round trip through
 * vm_config_to_json() unchanged. Also fuzzes the size/rate parsers the
 * API and CLI use on the same bytes (as a NUL-terminated string). */
#include "vmm/config.h"
#include "common/util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vm_config cfg, back;
	char err[512];
	char *text = malloc(size + 1);
	uint64_t v;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = 0;
	parse_size(text, &v);
	parse_rate(text, &v);
	if (vm_config_from_text((const char *)data, size, &cfg, err, sizeof(err)) == 0) {
		json_t *j = vm_config_to_json(&cfg);
		char *out = j ? json_dumps(j, JSON_COMPACT) : NULL;
		if (!out) {
			fprintf(stderr, "accepted configuration does not serialize\n");
			abort();
		}
		if (vm_config_from_text(out, strlen(out), &back, err, sizeof(err)) || memcmp(&cfg, &back, sizeof(cfg))) {
			fprintf(stderr, "configuration does not round-trip: %s -> %s (%s)\n", text, out, err);
			abort();
		}
		free(out);
		json_decref(j);
	}
	free(text);
	return 0;
}
