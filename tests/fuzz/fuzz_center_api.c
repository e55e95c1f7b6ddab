/* Fuzz target: the controller's API (src/center/server.c) on requests
 * from fuzz input (format in fuzz_api.h), each input against a fresh
 * in-memory inventory. The handlers run for real, except POST /v1/hosts,
 * which would call the new host over the network. No host is ever in the
 * inventory, so no request reaches a host agent either.
 *
 * server.c keeps its handlers static, so this file includes it.
 *
 * Checked: every answer is well-formed (fuzz_api.c); paths and migration
 * requests the parsers accept meet the rules; and after every request
 * that is not a GET, nothing invalid reached the inventory: every cluster,
 * VM and task row holds what the API documents as valid (names, EVC
 * levels, VM configuration, boot source, devices, NICs each with a MAC no
 * other VM has, disks, migration limit), no VM is left locked and no task
 * left running. */
#include "../../src/center/server.c"
#include "fuzz_api.h"
#include "migrate/migration.h"

static void check_inventory(struct center *c, const struct http_request *req)
{
	char err[512];
	size_t i;
	json_t *row;

	json_t *clusters = inv_clusters_with_counts(c);
	json_array_foreach(clusters, i, row) {
		const char *name = json_string_value(json_object_get(row, "name"));
		const char *evc = json_string_value(json_object_get(row, "evc_level"));
		json_t *mm = json_object_get(row, "max_migrations_per_host");
		if (!name_valid(name, err, sizeof(err)))
			fuzz_api_fail(req, "cluster stored with an invalid name: %s", err);
		if (!evc || !center_level_valid(evc))
			fuzz_api_fail(req, "cluster %s stored with EVC level '%s'", name, evc ? evc : "(null)");
		if (!json_is_null(mm) && (!json_is_integer(mm) || json_integer_value(mm) < 1 ||
					  json_integer_value(mm) > CENTER_MAX_MIGRATIONS_PER_HOST_MAX))
			fuzz_api_fail(req, "cluster %s stored with max_migrations_per_host %lld", name,
				      (long long)json_integer_value(mm));
	}
	json_decref(clusters);
	json_t *vms = inv_vms(c);
	json_array_foreach(vms, i, row) {
		const char *name = json_string_value(json_object_get(row, "name"));
		const char *evc = json_string_value(json_object_get(row, "evc_level"));
		struct vm_config cfg;
		struct vm_boot boot;
		json_t *j;
		if (!name_valid(name, err, sizeof(err)))
			fuzz_api_fail(req, "VM stored with an invalid name: %s", err);
		if (!json_is_null(json_object_get(row, "evc_level")) && (!evc || !center_level_valid(evc)))
			fuzz_api_fail(req, "VM %s stored with EVC level '%s'", name, evc ? evc : "(non-string)");
		j = json_loads(json_string_value(json_object_get(row, "config")), 0, NULL);
		if (vm_config_from_json(j, &cfg, err, sizeof(err)))
			fuzz_api_fail(req, "VM %s stored with an invalid configuration: %s", name, err);
		json_decref(j);
		j = json_loads(json_string_value(json_object_get(row, "boot")), 0, NULL);
		if (vm_boot_from_json(j, &boot, err, sizeof(err)))
			fuzz_api_fail(req, "VM %s stored with an invalid boot source: %s", name, err);
		json_decref(j);
		j = json_loads(json_string_value(json_object_get(row, "devices")), 0, NULL);
		if (vm_devices_check(j, err, sizeof(err)))
			fuzz_api_fail(req, "VM %s stored with invalid devices: %s", name, err);
		json_decref(j);
		json_t *nics = inv_vm_array(row, "nics"), *disks = inv_vm_array(row, "disks");
		struct attach at;
		if (attach_parse(nics, disks, true, &at, err, sizeof(err)))
			fuzz_api_fail(req, "VM %s stored with invalid NICs or disks: %s", name, err);
		for (int k = 0; k < at.nnics; k++) {
			char m[ATTACH_MAC_LEN + 1];
			json_t *owner = inv_vm_with_mac(c, attach_mac_text(at.nics[k].mac, m));
			if (!owner || strcmp(json_string_value(json_object_get(owner, "name")), name))
				fuzz_api_fail(req, "VM %s: its MAC %s belongs to VM %s", name, m,
					      owner ? json_string_value(json_object_get(owner, "name")) : "(none)");
			json_decref(owner);
		}
		json_decref(nics);
		json_decref(disks);
		if (json_is_integer(json_object_get(row, "locked_by")))
			fuzz_api_fail(req, "VM %s left locked by task %lld", name,
				      (long long)json_integer_value(json_object_get(row, "locked_by")));
	}
	json_decref(vms);
	json_t *tasks = inv_tasks_recent(c, 1000);
	json_array_foreach(tasks, i, row) {
		const char *state = json_string_value(json_object_get(row, "state"));
		if (!state || !strcmp(state, "running") || !strcmp(state, "queued"))
			fuzz_api_fail(req, "task %lld left %s", (long long)json_integer_value(json_object_get(row, "id")),
				      state ? state : "(no state)");
	}
	json_decref(tasks);
}

/* A path accepted as NAME and ACTION is spelled PREFIX NAME [/ACTION], with a valid name. */
static void check_path(const struct http_request *req)
{
	static const char *const prefixes[] = { "/v1/clusters/", "/v1/hosts/", "/v1/vms/" };
	char name[128], action[64], err[512] = "", back[256];
	for (size_t i = 0; i < ARRAY_SIZE(prefixes); i++) {
		bool or_address = i == 1;
		if (strncmp(req->path, prefixes[i], strlen(prefixes[i])))
			continue;
		int rc = center_path_parse(req->path, prefixes[i], or_address, name, sizeof(name), action, sizeof(action), err,
					   sizeof(err));
		if (rc) {
			if (!err[0])
				fuzz_api_fail(req, "path refused without a reason");
			continue;
		}
		snprintf(back, sizeof(back), "%s%s%s%s", prefixes[i], name, action[0] ? "/" : "", action);
		if (strcmp(back, req->path) || !(name_valid(name, NULL, 0) || (or_address && center_address_valid(name))))
			fuzz_api_fail(req, "path accepted as '%s' action '%s'", name, action);
	}
}

static int one_request(void *ctx, const struct http_request *req)
{
	struct center *c = ctx;
	json_t *resp = NULL;
	int status;

	check_path(req);

	if (!strcmp(req->method, "POST") && !strcmp(req->path, "/v1/hosts")) {
		/* the handler would call the new host over the network: its parser only */
		struct center_host_request r;
		char err[512];
		if (center_host_request_parse(req->body, &r, err, sizeof(err)) == 0) {
			if (!center_address_valid(r.address) || !name_valid(r.name, NULL, 0) ||
			    (r.cluster && !name_valid(r.cluster, NULL, 0)))
				fuzz_api_fail(req, "host request accepted with address '%s', name '%s'", r.address, r.name);
			for (const char *p = r.token; *p; p++)
				if (*p == '\r' || *p == '\n')
					fuzz_api_fail(req, "host token accepted with a line break");
		} else if (!err[0]) {
			fuzz_api_fail(req, "host request refused without a reason");
		}
		return 0;
	}
	if (!strcmp(req->method, "POST") && !strncmp(req->path, "/v1/vms/", 8) && strstr(req->path, "/migrate")) {
		/* accepted migration options are within the monitor's limits */
		struct center_migrate_request r;
		struct migration_params p;
		char err[512];
		if (center_migrate_request_parse(req->body, &r, err, sizeof(err)) == 0) {
			json_t *params = center_migration_params(req->body);
			if (migration_options_parse(params, &p, err, sizeof(err)))
				fuzz_api_fail(req, "migration options accepted that the monitor refuses: %s", err);
			if (!name_valid(r.to, NULL, 0) && !center_address_valid(r.to))
				fuzz_api_fail(req, "migration to '%s' accepted", r.to);
			json_decref(params);
		}
	}
	if (!strcmp(req->method, "POST") && !strcmp(req->path, "/v1/netcheck")) {
		/* parsed only: the handler calls the hosts' agents */
		struct center_netcheck_request r;
		char err[512];
		if (center_netcheck_request_parse(req->body, &r, err, sizeof(err)) == 0) {
			if ((!name_valid(r.source, NULL, 0) && !center_address_valid(r.source)) ||
			    (!name_valid(r.destination, NULL, 0) && !center_address_valid(r.destination)) ||
			    !(r.seconds >= 0.1 && r.seconds <= 10))
				fuzz_api_fail(req, "netcheck accepted from '%s' to '%s' for %g s", r.source, r.destination, r.seconds);
		} else if (!err[0]) {
			fuzz_api_fail(req, "netcheck request refused without a reason");
		}
		return 0;
	}
	status = fuzz_api_dispatch(routes, c, req, &resp);
	fuzz_api_check_answer(req, status, resp);
	json_decref(resp);
	if (strcmp(req->method, "GET")) /* GET changes nothing that is checked: saves time */
		check_inventory(c, req);
	return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	glide_set_log_file("/dev/null", NULL, 0);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct center c = { .max_migrations_per_host = CENTER_MAX_MIGRATIONS_PER_HOST_DEFAULT };
	char err[512];

	pthread_mutex_init(&c.lock, NULL);
	if (inv_open(&c, ":memory:", err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		abort();
	}
	fuzz_api_each(data, size, one_request, &c);
	sqlite3_close(c.db);
	pthread_mutex_destroy(&c.lock);
	return 0;
}
