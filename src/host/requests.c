/* The host agent API's requests, parsed and checked apart from acting on
 * them: URL paths (/v1/vms/NAME[/ACTION]), the ?path= of GET /v1/paths and
 * the bodies of POST /v1/vms, POST /v1/vms/NAME/config, POST /v1/incoming
 * POST /v1/vms/NAME/migrate (NICs and disks with the rules of
 * attach.c), POST /v1/vms/NAME/capture and POST /v1/netcheck/listen|run. These functions only read the request, so a
 * handler refuses a bad one with 400 before it writes a file, spawns a
 * monitor or calls one, and tests/fuzz/fuzz_host_api.c can feed them
 * hostile input. JSON members they return are borrowed from the body. */
#include "host/host.h"
#include "host/netcheck.h"
#include "api/http.h"
#include "vmm/config.h"
#include "migrate/migration.h"
#include "common/hardware.h"
#include "common/util.h"
#include <errno.h>
#include <string.h>

bool host_key_valid(const char *key)
{
	if (!key || strlen(key) != HOST_KEY_HEX_LEN)
		return false;
	for (const char *p = key; *p; p++)
		if (!strchr("0123456789abcdefABCDEF", *p))
			return false;
	return true;
}

int host_vm_path_parse(const char *path, char name[VM_NAME_MAX], char *action, size_t alen, char *err, size_t errlen)
{
	return path_split(path, "/v1/vms/", NULL, name, VM_NAME_MAX, action, alen, err, errlen);
}

/* boot and devices are optional (null counts as absent); when given they must be valid. */
static int boot_devices(json_t *body, json_t **boot, json_t **devices, char *err, size_t errlen)
{
	struct vm_boot b;
	*boot = json_object_get(body, "boot");
	*devices = json_object_get(body, "devices");
	if (json_is_null(*boot))
		*boot = NULL;
	if (json_is_null(*devices))
		*devices = NULL;
	if (*boot && vm_boot_from_json(*boot, &b, err, errlen))
		return -EINVAL;
	if (*devices && vm_devices_check(*devices, err, errlen))
		return -EINVAL;
	return 0;
}

/* "hardware": optional (null counts as absent), a list of device requests (hardware.h). */
static int hardware_opt(json_t *body, json_t **hardware, char *err, size_t errlen)
{
	*hardware = json_object_get(body, "hardware");
	if (*hardware && !json_is_null(*hardware) && hw_list_check(*hardware, false, err, errlen))
		return -EINVAL;
	if (json_array_size(*hardware) == 0)
		*hardware = NULL;
	return 0;
}

int host_vm_request_parse(json_t *body, struct host_vm_request *r, char *err, size_t errlen)
{
	json_t *start = json_object_get(body, "start");

	memset(r, 0, sizeof(*r));
	r->name = json_string_value(json_object_get(body, "name"));
	r->config = json_object_get(body, "config");
	if (!r->name || !json_is_object(r->config)) {
		errf(err, errlen, "registering a VM needs {\"name\", \"config\", \"boot\"}");
		goto bad;
	}
	if (!name_valid(r->name, err, errlen))
		goto bad;
	if (vm_config_from_json(r->config, &r->cfg, err, errlen) ||
	    boot_devices(body, &r->boot, &r->devices, err, errlen) || hardware_opt(body, &r->hardware, err, errlen))
		goto bad;
	if (attach_parse(json_object_get(body, "nics"), json_object_get(body, "disks"), false, &r->at, err, errlen))
		goto bad;
	if (start && !json_is_boolean(start)) {
		errf(err, errlen, "\"start\" must be true or false");
		goto bad;
	}
	r->start = json_is_true(start);
	json_t *sus = json_object_get(body, "suspended");
	if (sus && !json_is_null(sus)) {
		r->suspended = json_string_value(json_object_get(sus, "path"));
		if (!json_is_object(sus) || !r->suspended || !attach_path_valid(r->suspended) || r->start) {
			errf(err, errlen, "\"suspended\" must be {\"path\": an absolute path} and goes without \"start\"");
			goto bad;
		}
	}
	return 0;
bad:
	memset(r, 0, sizeof(*r));
	return -EINVAL;
}

int host_config_request_parse(json_t *body, struct host_config_request *r, char *err, size_t errlen)
{
	json_t *devices;

	memset(r, 0, sizeof(*r));
	r->config = json_object_get(body, "config");
	r->have_nics = json_object_get(body, "nics") != NULL;
	r->have_disks = json_object_get(body, "disks") != NULL;
	r->have_hardware = json_object_get(body, "hardware") != NULL;
	if (vm_config_from_json(r->config, &r->cfg, err, errlen) || boot_devices(body, &r->boot, &devices, err, errlen) ||
	    hardware_opt(body, &r->hardware, err, errlen) ||
	    attach_parse(json_object_get(body, "nics"), json_object_get(body, "disks"), false, &r->at, err, errlen)) {
		memset(r, 0, sizeof(*r));
		return -EINVAL;
	}
	return 0;
}

/* A configuration that carries the device shape (a VM that ran with NICs
 * or disks) must agree with the NICs and disks that come with it: the
 * destination monitor would refuse the VM otherwise, after it started. */
static int attach_agrees(const struct vm_config *cfg, const struct attach *at, char *err, size_t errlen)
{
	char a[ATTACH_MAC_LEN + 1], b[ATTACH_MAC_LEN + 1];
	if (cfg->nnics && cfg->nnics != at->nnics) {
		errf(err, errlen, "the configuration has %d NIC%s but the spec names %d", cfg->nnics, cfg->nnics == 1 ? "" : "s",
		     at->nnics);
		return -EINVAL;
	}
	for (int i = 0; i < cfg->nnics; i++)
		if (memcmp(cfg->nic_mac[i], at->nics[i].mac, 6)) {
			errf(err, errlen, "NIC %d: the configuration's MAC is %s, the spec's %s", i, attach_mac_text(cfg->nic_mac[i], a),
			     attach_mac_text(at->nics[i].mac, b));
			return -EINVAL;
		}
	if (cfg->ndisks && cfg->ndisks != at->ndisks) {
		errf(err, errlen, "the configuration has %d disk%s but the spec names %d", cfg->ndisks, cfg->ndisks == 1 ? "" : "s",
		     at->ndisks);
		return -EINVAL;
	}
	for (int i = 0; i < cfg->ndisks; i++)
		if (cfg->disk_readonly[i] != at->disks[i].readonly) {
			errf(err, errlen, "disk %d: read-only in the configuration but not in the spec, or the other way round", i);
			return -EINVAL;
		}
	return 0;
}

int host_path_query_parse(const struct http_request *req, const char **path, char *err, size_t errlen)
{
	*path = http_query(req, "path");
	if (!attach_path_valid(*path)) {
		*path = NULL;
		errf(err, errlen, "give ?path=/absolute/path (shorter than %d bytes, no control characters)", ATTACH_PATH_MAX);
		return -EINVAL;
	}
	return 0;
}

int host_incoming_request_parse(json_t *spec, struct host_incoming_request *r, char *err, size_t errlen)
{
	char why[512] = "";
	json_t *cpuid;

	memset(r, 0, sizeof(*r));
	r->name = json_string_value(json_object_get(spec, "name"));
	r->key = json_string_value(json_object_get(spec, "key"));
	r->config = json_object_get(spec, "config");
	if (!r->name || !host_key_valid(r->key) || vm_config_from_json(r->config, &r->cfg, why, sizeof(why))) {
		errf(err, errlen, "an incoming migration spec needs name, config and key (64 hex digits)%s%s",
		     why[0] ? ": " : "", why);
		goto bad;
	}
	if (!name_valid(r->name, err, errlen) || boot_devices(spec, &r->boot, &r->devices, err, errlen) ||
	    hardware_opt(spec, &r->hardware, err, errlen))
		goto bad;
	if (attach_parse(json_object_get(spec, "nics"), json_object_get(spec, "disks"), true, &r->at, err, errlen) ||
	    attach_agrees(&r->cfg, &r->at, err, errlen))
		goto bad;
	cpuid = json_object_get(spec, "cpuid");
	if (cpuid && !json_is_null(cpuid)) {
		if (evc_regs_from_json(cpuid, r->cpuid)) {
			errf(err, errlen, "\"cpuid\" must map registers (%s) to 32-bit masks", cpuid_mask_reg_list());
			goto bad;
		}
		r->have_cpuid = true;
	}
	json_t *ds = json_object_get(spec, "datastore"), *need = json_object_get(spec, "copy_bytes");
	if (ds && !json_is_null(ds)) {
		if (!json_is_string(ds) || !name_valid(json_string_value(ds), err, errlen)) {
			if (!json_is_string(ds))
				errf(err, errlen, "\"datastore\" must be the name of a datastore of this host");
			goto bad;
		}
		if (!r->at.ndisks) {
			errf(err, errlen, "\"datastore\": VM %s has no disk to copy", r->name);
			goto bad;
		}
		r->datastore = json_string_value(ds);
	}
	if (need && !json_is_null(need)) {
		if (!r->datastore || !json_is_integer(need) || json_integer_value(need) < 0) {
			errf(err, errlen, "\"copy_bytes\" must be a byte count, given with \"datastore\"");
			goto bad;
		}
		r->copy_bytes = (uint64_t)json_integer_value(need);
	}
	return 0;
bad:
	memset(r, 0, sizeof(*r));
	return -EINVAL;
}

int host_receive_request_parse(json_t *body, struct host_receive_request *r, char *err, size_t errlen)
{
	json_t *files = json_object_get(body, "files"), *f, *need = json_object_get(body, "copy_bytes");
	size_t i;

	memset(r, 0, sizeof(*r));
	r->name = json_string_value(json_object_get(body, "name"));
	r->key = json_string_value(json_object_get(body, "key"));
	r->datastore = json_string_value(json_object_get(body, "datastore"));
	if (!r->name || !host_key_valid(r->key) || !r->datastore || !json_is_array(files) || !json_array_size(files) ||
	    json_array_size(files) > HOST_COPY_FILES_MAX || !json_is_integer(need) || json_integer_value(need) < 0) {
		errf(err, errlen, "a receipt needs name, key (64 hex digits), datastore, copy_bytes and files (1 to %d "
				  "{kind: disk|suspend, size})", HOST_COPY_FILES_MAX);
		goto bad;
	}
	if (!name_valid(r->name, err, errlen) || !name_valid(r->datastore, err, errlen))
		goto bad;
	r->copy_bytes = (uint64_t)json_integer_value(need);
	json_array_foreach(files, i, f) {
		const char *kind = json_string_value(json_object_get(f, "kind"));
		json_t *size = json_object_get(f, "size");
		if (!kind || (strcmp(kind, "disk") && strcmp(kind, "suspend")) || !json_is_integer(size) ||
		    json_integer_value(size) < 0 || json_integer_value(size) > (json_int_t)1 << 50 || json_object_size(f) != 2) {
			errf(err, errlen, "files %zu: expected {\"kind\": \"disk\" or \"suspend\", \"size\": bytes (at most 1 PiB)}", i);
			goto bad;
		}
		r->files[i].suspend = !strcmp(kind, "suspend");
		r->files[i].size = (uint64_t)json_integer_value(size);
		if (r->files[i].suspend && i + 1 != json_array_size(files)) {
			errf(err, errlen, "files %zu: the suspended state comes last, once", i);
			goto bad;
		}
		if (!r->files[i].suspend && (r->files[i].disk = (int)i) >= VM_MAX_DISKS) {
			errf(err, errlen, "files: at most %d disks", VM_MAX_DISKS);
			goto bad;
		}
	}
	r->nfiles = (int)json_array_size(files);
	return 0;
bad:
	memset(r, 0, sizeof(*r));
	return -EINVAL;
}

int host_migrate_request_parse(json_t *spec, struct host_migrate_request *r, char *err, size_t errlen)
{
	struct migration_params p;

	memset(r, 0, sizeof(*r));
	r->to = json_string_value(json_object_get(spec, "to"));
	r->key = json_string_value(json_object_get(spec, "key"));
	if (!host_key_valid(r->key) || !r->to) {
		errf(err, errlen, "a migration needs \"to\" (HOST:PORT[,...]) and \"key\" (64 hex digits)");
		goto bad;
	}
	if ((r->naddrs = wire_parse_addrs(r->to, p.addrs, WIRE_MAX_STREAMS)) < 0) {
		errf(err, errlen, "\"to\" must be HOST:PORT[,HOST:PORT...] (at most %d)", WIRE_MAX_STREAMS);
		goto bad;
	}
	/* the monitor applies the same rules; checked here before a key file is written */
	if (migration_options_parse(spec, &p, err, errlen))
		goto bad;
	explicit_bzero(&p, sizeof(p));
	return 0;
bad:
	explicit_bzero(&p, sizeof(p));
	memset(r, 0, sizeof(*r));
	return -EINVAL;
}

int host_capture_request_parse(json_t *body, struct host_capture_request *r, char *err, size_t errlen)
{
	json_t *nic = json_object_get(body, "nic"), *count = json_object_get(body, "count"),
	       *seconds = json_object_get(body, "seconds");

	*r = (struct host_capture_request){ .nic = 0, .count = 1000, .seconds = 10 };
	if (body && !json_is_object(body)) {
		errf(err, errlen, "the body must be a JSON object {nic, count, seconds}");
		return -EINVAL;
	}
	if (nic && (!json_is_integer(nic) || json_integer_value(nic) < 0 || json_integer_value(nic) >= VM_MAX_NICS)) {
		errf(err, errlen, "nic must be an integer from 0 to %d", VM_MAX_NICS - 1);
		return -EINVAL;
	}
	if (count && (!json_is_integer(count) || json_integer_value(count) < 1 ||
		      json_integer_value(count) > HOST_CAPTURE_FRAMES_MAX)) {
		errf(err, errlen, "count must be an integer from 1 to %d frames", HOST_CAPTURE_FRAMES_MAX);
		return -EINVAL;
	}
	if (seconds && (!json_is_number(seconds) || !(json_number_value(seconds) >= 0.1) ||
			json_number_value(seconds) > HOST_CAPTURE_SECONDS_MAX)) {
		errf(err, errlen, "seconds must be a number from 0.1 to %d", HOST_CAPTURE_SECONDS_MAX);
		return -EINVAL;
	}
	if (nic)
		r->nic = (int)json_integer_value(nic);
	if (count)
		r->count = (long)json_integer_value(count);
	if (seconds)
		r->seconds = json_number_value(seconds);
	return 0;
}

int host_netcheck_request_parse(json_t *body, bool run, struct host_netcheck_request *r, char *err, size_t errlen)
{
	json_t *token = json_object_get(body, "token"), *service = json_object_get(body, "service"),
	       *to = json_object_get(body, "to"), *seconds = json_object_get(body, "seconds"), *e;
	size_t i;

	memset(r, 0, sizeof(*r));
	r->service = "migration";
	r->seconds = NETCHECK_SECONDS_DEFAULT;
	if (!json_is_object(body)) {
		errf(err, errlen, "the body must be a JSON object {token, service%s}", run ? ", to, seconds" : "");
		return -EINVAL;
	}
	if (!netcheck_token_parse(json_string_value(token), r->token)) {
		errf(err, errlen, "token must be %d hex digits", 2 * NETCHECK_TOKEN_LEN);
		return -EINVAL;
	}
	if (service && (!json_is_string(service) || (strcmp(json_string_value(service), "management") &&
						     strcmp(json_string_value(service), "migration") &&
						     strcmp(json_string_value(service), "provisioning")))) {
		errf(err, errlen, "service must be %s", HOST_SERVICES);
		return -EINVAL;
	}
	if (service)
		r->service = json_string_value(service);
	if (!run)
		return 0;
	if (!json_is_array(to) || !json_array_size(to) || json_array_size(to) > HOST_NETCHECK_ENDPOINTS_MAX) {
		errf(err, errlen, "to must be a list of 1 to %d \"HOST:PORT\" endpoints", HOST_NETCHECK_ENDPOINTS_MAX);
		return -EINVAL;
	}
	json_array_foreach(to, i, e) {
		if (!netcheck_endpoint_parse(json_string_value(e), r->to_host[i], sizeof(r->to_host[i]), &r->to_port[i])) {
			errf(err, errlen, "to[%zu] is not a numeric HOST:PORT", i);
			return -EINVAL;
		}
	}
	r->nto = (int)json_array_size(to);
	if (seconds && (!json_is_number(seconds) || !(json_number_value(seconds) >= 0.1) ||
			json_number_value(seconds) > NETCHECK_SECONDS_MAX)) {
		errf(err, errlen, "seconds must be a number from 0.1 to %g", NETCHECK_SECONDS_MAX);
		return -EINVAL;
	}
	if (seconds)
		r->seconds = json_number_value(seconds);
	return 0;
}
