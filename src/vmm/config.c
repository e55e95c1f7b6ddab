/* VM configuration <-> JSON. Every field is validated on the way in: the
 * JSON may come from a state file, a migration stream or an API client. */
#include "vmm/config.h"
#include "hostnet/hostnet.h"
#include "vmm/boot_priv.h"
#include <limits.h>
#include <stdbool.h>
#include <ctype.h>
#include "common/util.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct cpuid_mask_reg cpuid_mask_regs[CPUID_MASK_REGS] = {
	{ "1.ecx", 1, 'c' }, { "1.edx", 1, 'd' }, { "7.ebx", 7, 'b' }, { "7.ecx", 7, 'c' }, { "7.edx", 7, 'd' },
	{ "80000001.ecx", 0x80000001, 'c' }, { "80000001.edx", 0x80000001, 'd' },
};

const char *cpuid_mask_reg_list(void)
{
	static char list[128];
	if (!list[0])
		for (int r = 0; r < CPUID_MASK_REGS; r++)
			snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", r ? " " : "", cpuid_mask_regs[r].name);
	return list;
}

/* A register value: 0x-prefixed hex or plain decimal, at most 32 bits. */
static int parse_mask_value(const char *s, uint32_t *out)
{
	char *end;
	unsigned long long v;
	bool hex = s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
	const char *digits = hex ? s + 2 : s;

	if (!*digits || !isxdigit((unsigned char)*digits) || (!hex && !isdigit((unsigned char)*digits)))
		return -EINVAL;
	errno = 0;
	v = strtoull(digits, &end, hex ? 16 : 10);
	if (errno || *end || v > 0xffffffffULL)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

/* "LEAF.REG=MASK[,...]": every item must be valid, or nothing is changed. */
int cpuid_mask_parse_arg(const char *s, uint32_t mask[CPUID_MASK_REGS])
{
	uint32_t next[CPUID_MASK_REGS];
	char *copy = strdup(s), *p, *item;
	int rc = 0;

	if (!copy)
		return -ENOMEM;
	memcpy(next, mask, sizeof(next));
	if (!*copy)
		rc = -EINVAL;
	for (p = copy; !rc && (item = strsep(&p, ",")) != NULL;) {
		char *eq = strchr(item, '=');
		int r;
		if (!eq) {
			rc = -EINVAL;
			break;
		}
		*eq = 0;
		for (r = 0; r < CPUID_MASK_REGS; r++)
			if (!strcmp(item, cpuid_mask_regs[r].name))
				break;
		if (r == CPUID_MASK_REGS || parse_mask_value(eq + 1, &next[r]))
			rc = -EINVAL;
	}
	if (!rc)
		memcpy(mask, next, sizeof(next));
	free(copy);
	return rc;
}

json_t *vm_config_to_json(const struct vm_config *cfg)
{
	json_t *mask = json_object();
	for (size_t i = 0; i < CPUID_MASK_REGS; i++)
		json_object_set_new(mask, cpuid_mask_regs[i].name, json_integer(cfg->cpuid_mask[i]));
	json_t *j = json_pack("{s:s, s:I, s:i, s:o, s:s}", "name", cfg->name, "memory", (json_int_t)cfg->memory_bytes,
			      "vcpus", cfg->vcpus, "cpuid_mask", mask, "evc_level", cfg->evc_level);
	if (j && cfg->nnics) {
		json_t *nics = json_array();
		for (int i = 0; i < cfg->nnics; i++) {
			char mac[18];
			json_array_append_new(nics, json_pack("{s:s}", "mac", hostnet_mac_format(cfg->nic_mac[i], mac)));
		}
		json_object_set_new(j, "nics", nics);
	}
	if (j && cfg->ndisks) {
		json_t *disks = json_array();
		for (int i = 0; i < cfg->ndisks; i++)
			json_array_append_new(disks, json_pack("{s:I, s:b}", "size", (json_int_t)cfg->disk_bytes[i], "readonly",
							       cfg->disk_readonly[i]));
		json_object_set_new(j, "disks", disks);
	}
	return j;
}

/* "nics": [{"mac": MAC}, ...] and "disks": [{"size": BYTES, "readonly": B}, ...], both optional. */
static int devices_from_json(json_t *j, struct vm_config *cfg, char *err, size_t errlen)
{
	json_t *nics = json_object_get(j, "nics"), *disks = json_object_get(j, "disks"), *e;
	size_t i;

	cfg->nnics = cfg->ndisks = 0;
	if (nics) {
		if (!json_is_array(nics) || json_array_size(nics) > VM_MAX_NICS) {
			errf(err, errlen, "config: nics must be an array of at most %d NICs", VM_MAX_NICS);
			return -EINVAL;
		}
		json_array_foreach(nics, i, e) {
			const char *mac = json_string_value(json_object_get(e, "mac"));
			if (!mac || hostnet_mac_parse(mac, cfg->nic_mac[i], NULL, 0)) {
				errf(err, errlen, "config: NIC %zu needs a unicast \"mac\" like 52:54:00:12:34:56", i);
				return -EINVAL;
			}
			for (size_t k = 0; k < i; k++)
				if (!memcmp(cfg->nic_mac[k], cfg->nic_mac[i], 6)) {
					errf(err, errlen, "config: NICs %zu and %zu have the same MAC %s", k, i, mac);
					return -EINVAL;
				}
		}
		cfg->nnics = (int)json_array_size(nics);
	}
	if (disks) {
		if (!json_is_array(disks) || json_array_size(disks) > VM_MAX_DISKS) {
			errf(err, errlen, "config: disks must be an array of at most %d disks", VM_MAX_DISKS);
			return -EINVAL;
		}
		json_array_foreach(disks, i, e) {
			json_t *size = json_object_get(e, "size"), *ro = json_object_get(e, "readonly");
			if (!json_is_integer(size) || json_integer_value(size) < 512 || json_integer_value(size) % 512 ||
			    (ro && !json_is_boolean(ro))) {
				errf(err, errlen, "config: disk %zu needs a \"size\" (a positive multiple of 512) and an optional boolean \"readonly\"", i);
				return -EINVAL;
			}
			cfg->disk_bytes[i] = (uint64_t)json_integer_value(size);
			cfg->disk_readonly[i] = json_is_true(ro);
		}
		cfg->ndisks = (int)json_array_size(disks);
	}
	return 0;
}

int vm_config_from_json(json_t *j, struct vm_config *cfg, char *err, size_t errlen)
{
	json_t *v;

	memset(cfg, 0, sizeof(*cfg));
	cpuid_mask_all_ones(cfg);
	if (!json_is_object(j)) {
		errf(err, errlen, "configuration: not a JSON object");
		return -EINVAL;
	}
	v = json_object_get(j, "memory");
	if (!json_is_integer(v) || json_integer_value(v) <= 0) {
		errf(err, errlen, "configuration: 'memory' must be a positive integer (bytes)");
		return -EINVAL;
	}
	cfg->memory_bytes = (uint64_t)json_integer_value(v);
	v = json_object_get(j, "vcpus");
	if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > VM_MAX_VCPUS) {
		errf(err, errlen, "configuration: 'vcpus' must be an integer from 1 to %d", VM_MAX_VCPUS);
		return -EINVAL;
	}
	cfg->vcpus = (int)json_integer_value(v);
	v = json_object_get(j, "name");
	if (v && (!json_is_string(v) || json_string_length(v) >= sizeof(cfg->name))) {
		errf(err, errlen, "configuration: 'name' must be a string shorter than %zu", sizeof(cfg->name));
		return -EINVAL;
	}
	if (v)
		snprintf(cfg->name, sizeof(cfg->name), "%s", json_string_value(v));
	v = json_object_get(j, "evc_level");
	if (v && (!json_is_string(v) || json_string_length(v) >= sizeof(cfg->evc_level))) {
		errf(err, errlen, "configuration: 'evc_level' must be a short string");
		return -EINVAL;
	}
	if (v)
		snprintf(cfg->evc_level, sizeof(cfg->evc_level), "%s", json_string_value(v));
	v = json_object_get(j, "cpuid_mask");
	if (v) {
		if (!json_is_object(v)) {
			errf(err, errlen, "configuration: 'cpuid_mask' must be an object");
			return -EINVAL;
		}
		for (size_t i = 0; i < CPUID_MASK_REGS; i++) {
			json_t *m = json_object_get(v, cpuid_mask_regs[i].name);
			if (!m)
				continue;
			if (!json_is_integer(m) || json_integer_value(m) < 0 || json_integer_value(m) > 0xffffffffLL) {
				errf(err, errlen, "configuration: cpuid_mask.%s must be a 32-bit integer", cpuid_mask_regs[i].name);
				return -EINVAL;
			}
			cfg->cpuid_mask[i] = (uint32_t)json_integer_value(m);
		}
	}
	return devices_from_json(j, cfg, err, errlen);
}

int vm_config_from_text(const char *text, size_t len, struct vm_config *cfg, char *err, size_t errlen)
{
	json_error_t je;
	json_t *j = json_loadb(text, len, 0, &je);
	int rc;

	if (!j) {
		errf(err, errlen, "configuration: invalid JSON: %s", je.text);
		return -EINVAL;
	}
	rc = vm_config_from_json(j, cfg, err, errlen);
	json_decref(j);
	return rc;
}

/* An optional string member: absent or null gives NULL; else a string
 * shorter than max bytes (an absolute path when is_path). */
static int boot_string(json_t *j, const char *key, size_t max, bool is_path, const char **out)
{
	json_t *v = json_object_get(j, key);
	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v) || json_string_length(v) >= max || (is_path && json_string_value(v)[0] != '/'))
		return -EINVAL;
	*out = json_string_value(v);
	return 0;
}

int vm_boot_from_json(json_t *j, struct vm_boot *b, char *err, size_t errlen)
{
	memset(b, 0, sizeof(*b));
	if (!json_is_object(j)) {
		errf(err, errlen, "boot: not a JSON object (give {\"kind\": boot|elf|kernel, \"path\": FILE})");
		return -EINVAL;
	}
	b->kind = json_string_value(json_object_get(j, "kind"));
	if (!b->kind || (strcmp(b->kind, "boot") && strcmp(b->kind, "elf") && strcmp(b->kind, "kernel"))) {
		memset(b, 0, sizeof(*b));
		errf(err, errlen, "boot: 'kind' must be boot, elf or kernel");
		return -EINVAL;
	}
	if (boot_string(j, "path", PATH_MAX, true, &b->path) || !b->path) {
		memset(b, 0, sizeof(*b));
		errf(err, errlen, "boot: 'path' must be an absolute file path shorter than %d bytes", PATH_MAX);
		return -EINVAL;
	}
	if (boot_string(j, "initrd", PATH_MAX, true, &b->initrd)) {
		memset(b, 0, sizeof(*b));
		errf(err, errlen, "boot: 'initrd' must be an absolute file path shorter than %d bytes", PATH_MAX);
		return -EINVAL;
	}
	if (boot_string(j, "cmdline", BOOT_CMDLINE_MAX, false, &b->cmdline)) {
		memset(b, 0, sizeof(*b));
		errf(err, errlen, "boot: 'cmdline' must be a string shorter than %u bytes", BOOT_CMDLINE_MAX);
		return -EINVAL;
	}
	return 0;
}

int vm_devices_check(json_t *j, char *err, size_t errlen)
{
	size_t i;
	json_t *d;
	if (!json_is_array(j) || json_array_size(j) > VM_DEVICES_MAX) {
		errf(err, errlen, "devices: must be an array of at most %d device names", VM_DEVICES_MAX);
		return -EINVAL;
	}
	json_array_foreach(j, i, d) {
		if (!json_is_string(d) || !name_valid(json_string_value(d), NULL, 0)) {
			errf(err, errlen, "devices: entry %zu is not a device name (%s)", i, NAME_RULE);
			return -EINVAL;
		}
	}
	return 0;
}
