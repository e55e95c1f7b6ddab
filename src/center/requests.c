/* The controller API's requests, parsed and checked apart from acting on
 * them: URL paths (/v1/clusters/NAME, /v1/hosts/NAME, /v1/vms/NAME with an
 * action, /v1/tasks/ID), the ?limit= of GET /v1/tasks and the bodies of
 * every POST. These functions only read the request, so a handler refuses
 * a bad one with 400 before it touches the inventory, creates a task or
 * calls a host, and tests/fuzz/fuzz_center_api.c checks that nothing they
 * refuse reaches the inventory. Strings and JSON members they return are
 * borrowed from the request. */
#include "center/center.h"
#include "center/drs.h"
#include "api/http.h"
#include "migrate/migration.h"
#include "vmm/config.h"
#include "common/hardware.h"
#include "common/util.h"
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool center_address_valid(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (!n || n > CENTER_ADDRESS_MAX || !strchr(s, ':'))
		return false;
	for (const char *p = s; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr(".-:[]", *p))
			return false;
	return true;
}

bool center_level_valid(const char *level)
{
	return level && (!strcmp(level, EVC_NONE) || !strcmp(level, EVC_INTERSECTION) || evc_level_find(level));
}

/* A name (or with or_address, a host address): 0, or -EINVAL with err set. */
static int check_name(const char *name, bool or_address, char *err, size_t errlen)
{
	if (name_valid(name, err, errlen) || (or_address && center_address_valid(name)))
		return 0;
	return -EINVAL;
}

/* An optional string member: absent or null is NULL; anything else must be a string. */
static int opt_string(json_t *body, const char *key, const char **out, char *err, size_t errlen)
{
	json_t *v = json_object_get(body, key);
	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v)) {
		errf(err, errlen, "\"%s\" must be a string", key);
		return -EINVAL;
	}
	*out = json_string_value(v);
	return 0;
}

static int check_level(const char *level, char *err, size_t errlen)
{
	if (center_level_valid(level))
		return 0;
	errf(err, errlen, "unknown EVC level '%.40s' (levels: none, intersection, x86-64-v1, x86-64-v2, x86-64-v3, x86-64-v4)",
	     level);
	return -EINVAL;
}

/* A host may be named by its address too. */
static bool name_or_address(const char *name, char *err, size_t errlen)
{
	return name_valid(name, err, errlen) || center_address_valid(name);
}

int center_path_parse(const char *path, const char *prefix, bool or_address, char *name, size_t nlen, char *action,
		      size_t alen, char *err, size_t errlen)
{
	return path_split(path, prefix, or_address ? name_or_address : NULL, name, nlen, action, alen, err, errlen);
}

int center_task_id_parse(const char *path, int64_t *id)
{
	static const char prefix[] = "/v1/tasks/";
	uint64_t v;
	if (strncmp(path, prefix, strlen(prefix)) || http_parse_uint(path + strlen(prefix), 1, INT64_MAX, &v))
		return -EINVAL;
	*id = (int64_t)v;
	return 0;
}

int center_tasks_limit_parse(const struct http_request *req, int *limit, char *err, size_t errlen)
{
	uint64_t v = CENTER_TASKS_LIMIT_DEFAULT;
	if (http_query_uint(req, "limit", 1, CENTER_TASKS_LIMIT_MAX, &v) == -EINVAL) {
		errf(err, errlen, "?limit= must be a number of tasks, 1..%d", CENTER_TASKS_LIMIT_MAX);
		return -EINVAL;
	}
	*limit = (int)v;
	return 0;
}

int center_cluster_request_parse(json_t *body, struct center_cluster_request *r, char *err, size_t errlen)
{
	json_t *mm = json_object_get(body, "max_migrations_per_host");

	memset(r, 0, sizeof(*r));
	if (opt_string(body, "name", &r->name, err, errlen) || opt_string(body, "evc", &r->evc, err, errlen))
		goto bad;
	if (!r->name) {
		errf(err, errlen, "a cluster needs {\"name\"}");
		goto bad;
	}
	if (check_name(r->name, false, err, errlen))
		goto bad;
	if (!r->evc)
		r->evc = EVC_NONE;
	if (check_level(r->evc, err, errlen))
		goto bad;
	if (center_limit_parse(mm, &r->have_max_migrations, &r->max_migrations, err, errlen))
		goto bad;
	return 0;
bad:
	memset(r, 0, sizeof(*r));
	return -EINVAL;
}

int center_limit_parse(json_t *mm, bool *have, int64_t *limit, char *err, size_t errlen)
{
	*have = false;
	*limit = 0;
	if (!mm || json_is_null(mm))
		return 0;
	if (!json_is_integer(mm) || json_integer_value(mm) < 1 || json_integer_value(mm) > CENTER_MAX_MIGRATIONS_PER_HOST_MAX) {
		errf(err, errlen, "\"max_migrations_per_host\" (a host's budget of migration cost) must be 1..%d, or null for the "
		     "controller's", CENTER_MAX_MIGRATIONS_PER_HOST_MAX);
		return -EINVAL;
	}
	*have = true;
	*limit = json_integer_value(mm);
	return 0;
}

int center_evc_request_parse(json_t *body, const char **level, char *err, size_t errlen)
{
	*level = json_string_value(json_object_get(body, "level"));
	if (!center_level_valid(*level)) {
		*level = NULL;
		errf(err, errlen, "give {\"level\": none|intersection|x86-64-v1..v4}");
		return -EINVAL;
	}
	return 0;
}

/* Without a name a host is named after its address: 10.0.0.11:7001 -> 10.0.0.11-7001. */
static void host_default_name(const char *addr, char *out, size_t len)
{
	size_t o = 0;
	for (const char *p = addr; *p && o + 1 < len && o < NAME_LEN_MAX; p++) {
		if (*p == '[' || *p == ']')
			continue;
		out[o++] = isalnum((unsigned char)*p) || *p == '.' || *p == '_' ? *p : '-';
	}
	out[o] = 0;
	if (!isalnum((unsigned char)out[0]) && o + 2 < len) { /* an IPv6 address such as ::1 */
		memmove(out + 1, out, o + 1);
		out[0] = 'h';
		out[NAME_LEN_MAX] = 0;
	}
}

/* A bearer token as it goes into an Authorization header: printable
 * ASCII (a token file's first line), so that it can never add a header
 * line to the controller's requests to the host. */
static bool token_valid(const char *t)
{
	size_t n = t ? strlen(t) : 0;
	if (!n || n > CENTER_TOKEN_MAX || t[0] == ' ' || t[n - 1] == ' ')
		return false;
	for (const char *p = t; *p; p++)
		if (*p < ' ' || *p > '~')
			return false;
	return true;
}

int center_host_request_parse(json_t *body, struct center_host_request *r, char *err, size_t errlen)
{
	memset(r, 0, sizeof(*r));
	r->address = json_string_value(json_object_get(body, "address"));
	r->token = json_string_value(json_object_get(body, "token"));
	if (!r->address || !r->token) {
		errf(err, errlen, "adding a host needs {\"address\": HOST:PORT, \"token\": ...}");
		goto bad;
	}
	if (!center_address_valid(r->address)) {
		errf(err, errlen, "invalid host address '%.100s': give HOST:PORT", r->address);
		goto bad;
	}
	if (!token_valid(r->token)) {
		errf(err, errlen, "invalid host token: give the first line of the host's token file (1-%d printable ASCII "
			     "characters)", CENTER_TOKEN_MAX);
		goto bad;
	}
	if (opt_string(body, "name", &r->name, err, errlen) || opt_string(body, "cluster", &r->cluster, err, errlen))
		goto bad;
	if (!r->name) {
		host_default_name(r->address, r->default_name, sizeof(r->default_name));
		r->name = r->default_name;
	}
	if (check_name(r->name, false, err, errlen) || (r->cluster && check_name(r->cluster, false, err, errlen)))
		goto bad;
	return 0;
bad:
	memset(r, 0, sizeof(*r));
	return -EINVAL;
}

int center_vm_request_parse(json_t *body, struct center_vm_request *r, char *err, size_t errlen)
{
	struct vm_boot boot;
	json_t *memory = json_object_get(body, "memory"), *vcpus = json_object_get(body, "vcpus");

	memset(r, 0, sizeof(*r));
	r->boot = json_object_get(body, "boot");
	r->name = json_string_value(json_object_get(body, "name"));
	if (!r->name || !json_is_object(r->boot) || !json_is_string(json_object_get(r->boot, "path"))) {
		errf(err, errlen, "creating a VM needs {\"name\", \"memory\", \"vcpus\", \"boot\": {\"kind\": boot|elf|kernel, \"path\"}}");
		goto bad;
	}
	if (check_name(r->name, false, err, errlen))
		goto bad;
	if (opt_string(body, "cluster", &r->cluster, err, errlen) || opt_string(body, "evc", &r->evc, err, errlen))
		goto bad;
	if ((r->cluster && check_name(r->cluster, false, err, errlen)) || (r->evc && check_level(r->evc, err, errlen)))
		goto bad;
	if (!json_is_integer(memory) || json_integer_value(memory) <= 0 ||
	    (vcpus && (!json_is_integer(vcpus) || json_integer_value(vcpus) < 1 || json_integer_value(vcpus) > VM_MAX_VCPUS))) {
		errf(err, errlen, "memory must be bytes and vcpus a count");
		goto bad;
	}
	r->memory = (uint64_t)json_integer_value(memory);
	r->vcpus = vcpus ? (int)json_integer_value(vcpus) : 1;
	if (vm_boot_from_json(r->boot, &boot, err, errlen))
		goto bad;
	r->devices = json_object_get(body, "devices");
	if (json_is_null(r->devices))
		r->devices = NULL;
	if (r->devices && vm_devices_check(r->devices, err, errlen))
		goto bad;
	r->hardware = json_object_get(body, "hardware");
	if (r->hardware && !json_is_null(r->hardware) && hw_list_check(r->hardware, false, err, errlen))
		goto bad;
	if (json_array_size(r->hardware) == 0)
		r->hardware = NULL;
	if (attach_parse(json_object_get(body, "nics"), json_object_get(body, "disks"), false, &r->at, err, errlen))
		goto bad;
	return 0;
bad:
	memset(r, 0, sizeof(*r));
	return -EINVAL;
}

int center_config_request_parse(json_t *body, struct center_config_request *r, char *err, size_t errlen)
{
	memset(r, 0, sizeof(*r));
	r->memory = json_object_get(body, "memory");
	r->vcpus = json_object_get(body, "vcpus");
	if (r->memory && (!json_is_integer(r->memory) || json_integer_value(r->memory) <= 0)) {
		errf(err, errlen, "configuration: 'memory' must be a positive integer (bytes)");
		goto bad;
	}
	if (r->vcpus && (!json_is_integer(r->vcpus) || json_integer_value(r->vcpus) < 1 ||
			 json_integer_value(r->vcpus) > VM_MAX_VCPUS)) {
		errf(err, errlen, "configuration: 'vcpus' must be an integer from 1 to %d", VM_MAX_VCPUS);
		goto bad;
	}
	if (opt_string(body, "evc", &r->evc, err, errlen))
		goto bad;
	if (r->evc && strcmp(r->evc, "cluster") && check_level(r->evc, err, errlen))
		goto bad;
	return 0;
bad:
	memset(r, 0, sizeof(*r));
	return -EINVAL;
}

int center_start_request_parse(json_t *body, const char **host, char *err, size_t errlen)
{
	if (opt_string(body, "host", host, err, errlen) || (*host && check_name(*host, true, err, errlen))) {
		*host = NULL;
		return -EINVAL;
	}
	return 0;
}

/* The tunables a migration request may carry; they go to the source's agent as given. */
static const char *const migration_keys[] = {
	"streams", "max_bandwidth", "switchover_goal_ms", "sdps", "encrypt", "compress", "verify", "timeout_s", "dscp",
	"stall_timeout_s",
};

int center_migrate_request_parse(json_t *body, struct center_migrate_request *r, char *err, size_t errlen)
{
	struct migration_params p;

	memset(r, 0, sizeof(*r));
	if (opt_string(body, "to", &r->to, err, errlen))
		goto bad;
	if (!r->to) {
		errf(err, errlen, "a migration needs {\"to\": HOST}");
		goto bad;
	}
	if (check_name(r->to, true, err, errlen))
		goto bad;
	json_t *ws = json_object_get(body, "with_storage");
	if (ws && !json_is_boolean(ws)) {
		errf(err, errlen, "\"with_storage\" must be true or false");
		goto bad;
	}
	r->with_storage = json_is_true(ws);
	if (opt_string(body, "datastore", &r->datastore, err, errlen))
		goto bad;
	if (r->datastore && (!r->with_storage || check_name(r->datastore, false, err, errlen))) {
		if (!r->with_storage)
			errf(err, errlen, "\"datastore\" goes with \"with_storage\": true");
		goto bad;
	}
	if (json_object_get(body, "disk_to")) {
		errf(err, errlen, "\"disk_to\" is not taken here: with \"with_storage\" the destination's agent names the copies");
		goto bad;
	}
	/* the monitor's own rules, before any task, lock or destination exists */
	if (migration_options_parse(body, &p, err, errlen))
		goto bad;
	return 0;
bad:
	memset(r, 0, sizeof(*r));
	return -EINVAL;
}

json_t *center_migration_params(json_t *body)
{
	json_t *params = json_object();
	for (size_t i = 0; i < ARRAY_SIZE(migration_keys); i++) {
		json_t *v = json_object_get(body, migration_keys[i]);
		if (v)
			json_object_set(params, migration_keys[i], v);
	}
	return params;
}

int center_netcheck_request_parse(json_t *body, struct center_netcheck_request *r, char *err, size_t errlen)
{
	json_t *seconds = json_object_get(body, "seconds");

	memset(r, 0, sizeof(*r));
	r->service = "migration";
	r->seconds = 1.0;
	if (opt_string(body, "source", &r->source, err, errlen) || opt_string(body, "destination", &r->destination, err, errlen))
		goto bad;
	if (!r->source || !r->destination) {
		errf(err, errlen, "a network check needs {\"source\": HOST, \"destination\": HOST}");
		goto bad;
	}
	if (check_name(r->source, true, err, errlen) || check_name(r->destination, true, err, errlen))
		goto bad;
	const char *service = NULL;
	if (opt_string(body, "service", &service, err, errlen))
		goto bad;
	if (service && strcmp(service, "management") && strcmp(service, "migration") && strcmp(service, "provisioning")) {
		errf(err, errlen, "service must be management, migration or provisioning");
		goto bad;
	}
	if (service)
		r->service = service;
	if (seconds && (!json_is_number(seconds) || !(json_number_value(seconds) >= 0.1) || json_number_value(seconds) > 10)) {
		errf(err, errlen, "seconds must be a number from 0.1 to 10");
		goto bad;
	}
	if (seconds)
		r->seconds = json_number_value(seconds);
	return 0;
bad:
	memset(r, 0, sizeof(*r));
	return -EINVAL;
}

int center_drs_request_parse(json_t *body, const char **mode, int *threshold, bool *run, char *err, size_t errlen)
{
	json_t *t = json_object_get(body, "threshold"), *r = json_object_get(body, "run");
	*mode = NULL;
	*threshold = 0;
	*run = false;
	if (body && !json_is_object(body)) {
		errf(err, errlen, "the body must be a JSON object {mode, threshold, run}");
		return -EINVAL;
	}
	if (opt_string(body, "mode", mode, err, errlen))
		return -EINVAL;
	if (*mode && strcmp(*mode, "manual") && strcmp(*mode, "partial") && strcmp(*mode, "full")) {
		errf(err, errlen, "DRS mode '%s': give manual (recommend only), partial (recommend moves) or full (apply them)",
		     *mode);
		return -EINVAL;
	}
	if (t && (!json_is_integer(t) || json_integer_value(t) < DRS_THRESHOLD_MIN ||
		  json_integer_value(t) > DRS_THRESHOLD_MAX)) {
		errf(err, errlen, "DRS threshold: give a number from %d (mandatory moves only) to %d (aggressive)",
		     DRS_THRESHOLD_MIN, DRS_THRESHOLD_MAX);
		return -EINVAL;
	}
	if (r && !json_is_boolean(r)) {
		errf(err, errlen, "\"run\" must be true or false");
		return -EINVAL;
	}
	*threshold = t ? (int)json_integer_value(t) : 0;
	*run = json_is_true(r);
	return 0;
}

int center_drs_apply_path_parse(const char *path, int64_t *id)
{
	static const char prefix[] = "/v1/drs/", suffix[] = "/apply";
	char num[24];
	uint64_t v;
	size_t n = strlen(path), p = strlen(prefix), sfx = strlen(suffix);
	if (strncmp(path, prefix, p) || n <= p + sfx || strcmp(path + n - sfx, suffix) || n - p - sfx >= sizeof(num))
		return -EINVAL;
	memcpy(num, path + p, n - p - sfx);
	num[n - p - sfx] = 0;
	if (http_parse_uint(num, 1, INT64_MAX, &v))
		return -EINVAL;
	*id = (int64_t)v;
	return 0;
}
