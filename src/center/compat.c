/* Compatibility check before a migration, seed 002 step 1: everything that
 * would make the destination unable to run the VM, each reason named, so a
 * refused migration is refused before anything moves.
 *   - CPU: the features the VM sees (its CPUID mask, fixed at power-on,
 *     applied to the source host's CPU) must all exist on the destination;
 *   - memory: the destination must have the VM's memory free (live only);
 *   - devices and networks the VM uses must exist on the destination;
 *   - the migration protocol and host API versions must match;
 *   - the destination must have a migration address (live only). */
#include "center/center.h"
#include "common/util.h"
#include <stdio.h>
#include <string.h>

static bool contains(json_t *arr, const char *s)
{
	size_t i;
	json_t *v;
	json_array_foreach(arr, i, v)
		if (json_is_string(v) && !strcmp(json_string_value(v), s))
			return true;
	return false;
}

json_t *compat_check(json_t *vm, json_t *src, json_t *dst, json_t *dst_row, bool live)
{
	json_t *reasons = json_array();
	const char *dname = json_string_value(json_object_get(dst_row, "name"));
	char buf[768];

	json_t *config = json_loads(json_string_value(json_object_get(vm, "config")), 0, NULL);
	json_t *devices = json_loads(json_string_value(json_object_get(vm, "devices")), 0, NULL);
	uint64_t need = (uint64_t)json_integer_value(json_object_get(config, "memory"));

	/* CPU */
	uint32_t mask[EVC_REGS], src_regs[EVC_REGS], dst_regs[EVC_REGS], sees[EVC_REGS];
	evc_regs_from_json(json_object_get(config, "cpuid_mask"), mask);
	if (!host_facts_regs(dst, dst_regs)) {
		json_array_append_new(reasons, json_sprintf("host %s did not report its CPU features", dname));
	} else {
		if (src && host_facts_regs(src, src_regs)) {
			for (int r = 0; r < EVC_REGS; r++)
				sees[r] = mask[r] & src_regs[r];
		} else {
			memcpy(sees, mask, sizeof(sees));
		}
		char missing[512];
		int n = evc_missing(sees, dst_regs, missing, sizeof(missing));
		if (n) {
			const char *lvl = json_string_value(json_object_get(config, "evc_level"));
			snprintf(buf, sizeof(buf), "CPU: host %s lacks %d feature%s the VM sees: %s (VM EVC level %s; power the VM "
				 "on with a lower EVC level or pick a host that has them)", dname, n, n > 1 ? "s" : "", missing,
				 lvl && *lvl ? lvl : "none");
			json_array_append_new(reasons, json_string(buf));
		}
	}
	/* memory */
	json_t *mem = json_object_get(dst, "memory");
	uint64_t free_b = (uint64_t)json_integer_value(json_object_get(mem, "free"));
	if (live && free_b < need) {
		char a[32], b[32];
		snprintf(buf, sizeof(buf), "memory: host %s has %s free for VMs, the VM needs %s", dname,
			 format_size(free_b, a, sizeof(a)), format_size(need, b, sizeof(b)));
		json_array_append_new(reasons, json_string(buf));
	}
	/* devices and networks */
	size_t i;
	json_t *d;
	json_array_foreach(devices, i, d)
		if (json_is_string(d) && !contains(json_object_get(dst, "devices"), json_string_value(d)))
			json_array_append_new(reasons, json_sprintf("device: host %s has no '%s' device for the VM", dname,
								    json_string_value(d)));
	json_t *nets = json_object_get(config, "networks");
	json_array_foreach(nets, i, d)
		if (json_is_string(d) && !contains(json_object_get(dst, "networks"), json_string_value(d)))
			json_array_append_new(reasons, json_sprintf("network: host %s has no network '%s'", dname,
								    json_string_value(d)));
	/* versions */
	if (src && json_integer_value(json_object_get(src, "migration_protocol")) !=
			   json_integer_value(json_object_get(dst, "migration_protocol")))
		json_array_append_new(reasons, json_sprintf("protocol: host %s speaks migration protocol %lld, the source %lld; "
							    "upgrade glide on both hosts", dname,
							    json_integer_value(json_object_get(dst, "migration_protocol")),
							    json_integer_value(json_object_get(src, "migration_protocol"))));
	if (json_integer_value(json_object_get(dst, "api_version")) != 1)
		json_array_append_new(reasons, json_sprintf("protocol: host %s has host API version %lld, expected 1", dname,
							    json_integer_value(json_object_get(dst, "api_version"))));
	if (live && json_array_size(json_object_get(dst, "migration_addresses")) == 0)
		json_array_append_new(reasons, json_sprintf("network: host %s has no migration address (start its agent "
							    "with --migration-address)", dname));
	json_decref(config);
	json_decref(devices);
	return reasons;
}
