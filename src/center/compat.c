/* Compatibility check before a migration, seed 002 step 1: everything that
 * would make the destination unable to run the VM, each reason named, so a
 * refused migration is refused before anything moves.
 *   - CPU: the features the VM sees (its CPUID mask, fixed at power-on,
 *     applied to the source host's CPU) must all exist on the destination;
 *   - memory: the destination must have the VM's memory free (live only);
 *   - devices the VM uses must exist on the destination, and a free one
 *     of every assignable device it asks for (by attributes), a network of the
 *     same name for each of its NICs, and the destination's agent must see
 *     each of its disks (GET /v1/paths: shared storage, the same size as on
 *     the source);
 *     (or, when the disks are copied with the VM, the source must see each
 *     of them and the destination have a datastore with the space for
 *     their allocated bytes);
 *   - the migration protocol and host API versions must match;
 *   - the destination must have a migration address (live only). */
#include "center/center.h"
#include "common/hardware.h"
#include "common/util.h"
#include <stdlib.h>
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

/* A network of the host's facts: {"name", ...} (or a bare name, as older agents would list it). */
static bool has_network(json_t *facts, const char *name)
{
	size_t i;
	json_t *n;
	json_array_foreach(json_object_get(facts, "networks"), i, n) {
		const char *have = json_is_string(n) ? json_string_value(n) : json_string_value(json_object_get(n, "name"));
		if (have && !strcmp(have, name))
			return true;
	}
	return false;
}

int compat_attachments(json_t *nics, json_t *disks, json_t *dst_facts, json_t *dst_paths, json_t *src_paths,
		       const char *dname, const char *sname, json_t *reasons)
{
	size_t i, before = json_array_size(reasons);
	json_t *e;

	json_array_foreach(nics, i, e) {
		const char *net = json_string_value(json_object_get(e, "network"));
		if (net && !has_network(dst_facts, net))
			json_array_append_new(reasons, json_sprintf("network: host %s lacks network '%s' used by NIC %zu", dname, net, i));
	}
	json_array_foreach(disks, i, e) {
		const char *path = json_string_value(json_object_get(e, "path"));
		json_t *d = path ? json_object_get(dst_paths, path) : NULL, *sp = path ? json_object_get(src_paths, path) : NULL;
		const char *kind = json_string_value(json_object_get(d, "kind"));
		if (!path)
			continue;
		if (!json_is_boolean(json_object_get(d, "exists"))) {
			const char *why = json_string_value(json_object_get(d, "error"));
			json_array_append_new(reasons, json_sprintf("disk %zu: host %s cannot say whether it sees %s%s%s", i, dname, path,
								    why ? ": " : "", why ? why : ""));
		} else if (!json_is_true(json_object_get(d, "exists"))) {
			const char *why = json_string_value(json_object_get(d, "error"));
			json_array_append_new(reasons, json_sprintf("disk %zu: host %s cannot see %s (%s); the VM's disks must be on "
								    "storage its hosts share", i, dname, path, why ? why : "absent"));
		} else if (!kind || (strcmp(kind, "file") && strcmp(kind, "block"))) {
			json_array_append_new(reasons, json_sprintf("disk %zu: %s on host %s is a %s, not a file or block device", i, path,
								    dname, kind ? kind : "thing of unknown kind"));
		} else if (json_is_integer(json_object_get(d, "size")) && json_is_integer(json_object_get(sp, "size")) &&
			   !json_equal(json_object_get(d, "size"), json_object_get(sp, "size"))) {
			json_array_append_new(reasons, json_sprintf("disk %zu: %s has %lld bytes on host %s but %lld on %s (not the same "
								    "shared file)", i, path,
								    (long long)json_integer_value(json_object_get(d, "size")), dname,
								    (long long)json_integer_value(json_object_get(sp, "size")),
								    sname ? sname : "the source"));
		}
	}
	return (int)(json_array_size(reasons) - before);
}

int compat_hardware(json_t *requests, const char *vm, json_t *facts, const char *hname, json_t *reasons)
{
	struct hw_holder *holders;
	size_t i, n = 0;
	json_t *v;
	char why[512];
	int rc;

	if (!json_array_size(requests))
		return 0;
	holders = calloc(json_array_size(json_object_get(facts, "vms")) + 1, sizeof(*holders));
	if (!holders) {
		json_array_append_new(reasons, json_sprintf("hardware: out of memory checking host %s", hname));
		return 1;
	}
	/* the VMs with a monitor there hold theirs (what the agent itself checks) */
	json_array_foreach(json_object_get(facts, "vms"), i, v)
		if (json_is_integer(json_object_get(v, "pid")) && json_array_size(json_object_get(v, "hardware")) &&
		    strcmp(json_string_value(json_object_get(v, "name")) ?: "", vm))
			holders[n++] = (struct hw_holder){ json_string_value(json_object_get(v, "name")),
							   json_object_get(v, "hardware") };
	holders[n++] = (struct hw_holder){ vm, requests };
	json_t *have = json_object_get(facts, "hardware");
	rc = hw_fit(json_is_array(have) ? have : NULL, holders, n, NULL, why, sizeof(why));
	free(holders);
	if (!rc)
		return 0;
	json_array_append_new(reasons, json_sprintf("hardware: host %s: %s", hname, why));
	return 1;
}

/* Shared-nothing: the source sees every disk (its allocated bytes are what
 * travels), and the destination has the datastore with that much free. */
static void compat_storage_check(json_t *disks, json_t *src_paths, json_t *dst, const char *dname, const char *sname,
				 struct compat_storage *st, json_t *reasons)
{
	size_t i;
	json_t *e, *ds = NULL, *stores = json_object_get(dst, "datastores");
	char a[32], b[32];

	st->need = st->extra;
	st->chosen[0] = 0;
	json_array_foreach(disks, i, e) {
		const char *path = json_string_value(json_object_get(e, "path"));
		json_t *sp = path ? json_object_get(src_paths, path) : NULL;
		json_t *alloc = json_object_get(sp, "allocated"), *size = json_object_get(sp, "size");
		if (!json_is_true(json_object_get(sp, "exists")) || !json_is_integer(size)) {
			const char *why = json_string_value(json_object_get(sp, "error"));
			json_array_append_new(reasons, json_sprintf("disk %zu: the source host %s cannot read %s to copy it%s%s", i,
								    sname ? sname : "(none)", path ? path : "(no path)", why ? ": " : "",
								    why ? why : ""));
			continue;
		}
		st->need += (uint64_t)json_integer_value(json_is_integer(alloc) ? alloc : size);
	}
	json_array_foreach(stores, i, e)
		if (!st->datastore || !strcmp(json_string_value(json_object_get(e, "name")) ?: "", st->datastore)) {
			ds = e;
			break;
		}
	if (!ds) {
		char names[400] = "";
		size_t used = 0;
		json_array_foreach(stores, i, e)
			if (used < sizeof(names))
				used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s", i ? ", " : "",
							 json_string_value(json_object_get(e, "name")) ?: "?");
		if (st->datastore && used)
			json_array_append_new(reasons, json_sprintf("storage: host %s has no datastore %s (it has %s)", dname, st->datastore,
								    names));
		else
			json_array_append_new(reasons, json_sprintf("storage: host %s has no datastore for the VM's disks (start its agent "
								    "with --datastore NAME=DIR)", dname));
		return;
	}
	snprintf(st->chosen, sizeof(st->chosen), "%s", json_string_value(json_object_get(ds, "name")) ?: "");
	if (!json_is_integer(json_object_get(ds, "free"))) {
		const char *why = json_string_value(json_object_get(ds, "error"));
		json_array_append_new(reasons, json_sprintf("storage: datastore %s on host %s cannot be used: %s", st->chosen, dname,
							    why ? why : "its free space is unknown"));
	} else if ((uint64_t)json_integer_value(json_object_get(ds, "free")) < st->need) {
		json_array_append_new(reasons, json_sprintf("storage: datastore %s on host %s has %s free, the VM's disks need %s",
							    st->chosen, dname,
							    format_size((uint64_t)json_integer_value(json_object_get(ds, "free")), a, sizeof(a)),
							    format_size(st->need, b, sizeof(b))));
	}
}

json_t *compat_check(json_t *vm, json_t *src, json_t *dst, json_t *dst_row, const char *sname, json_t *src_paths,
		     json_t *dst_paths, bool live, struct compat_storage *storage)
{
	json_t *reasons = json_array();
	const char *dname = json_string_value(json_object_get(dst_row, "name"));
	char buf[768];

	json_t *config = json_loads(json_string_value(json_object_get(vm, "config")), 0, NULL);
	json_t *devices = json_loads(json_string_value(json_object_get(vm, "devices")), 0, NULL);
	uint64_t need = (uint64_t)json_integer_value(json_object_get(config, "memory"));

	/* CPU */
	uint32_t mask[EVC_REGS], src_regs[EVC_REGS], dst_regs[EVC_REGS], sees[EVC_REGS];
	bool have_mask = evc_regs_from_json(json_object_get(config, "cpuid_mask"), mask) == 0;
	if (!host_facts_regs(dst, dst_regs)) {
		json_array_append_new(reasons, json_sprintf("host %s did not report its CPU features", dname));
	} else if (!live && !src && !have_mask) {
		/* never powered on and on no host: it sees no CPU yet; its power-on checks EVC */
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
	json_t *hw = inv_vm_array(vm, "hardware");
	compat_hardware(hw, json_string_value(json_object_get(vm, "name")) ?: "", dst, dname, reasons);
	json_decref(hw);
	json_t *nics = json_loads(json_string_value(json_object_get(vm, "nics")) ? json_string_value(json_object_get(vm, "nics")) : "[]", 0, NULL);
	json_t *disks = json_loads(json_string_value(json_object_get(vm, "disks")) ? json_string_value(json_object_get(vm, "disks")) : "[]", 0, NULL);
	if (storage) {
		json_t *none = json_array();
		compat_attachments(nics, none, dst, dst_paths, src_paths, dname, sname, reasons);
		json_decref(none);
		compat_storage_check(disks, src_paths, dst, dname, sname, storage, reasons);
	} else {
		compat_attachments(nics, disks, dst, dst_paths, src_paths, dname, sname, reasons);
	}
	json_decref(nics);
	json_decref(disks);
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
