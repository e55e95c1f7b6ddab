/* Fuzz target: the host agent's API (src/host/agent.c, with the parsers of
 * src/host/requests.c) on requests from fuzz input (format in
 * fuzz_api.h). The handlers run for real on an agent whose data directory
 * is a temporary one, with no migration address and no VM monitor: every
 * request that would spawn a monitor (POST /v1/vms with "start": true,
 * POST /v1/vms/NAME/start) is only parsed. Each input starts with no VM.
 *
 * agent.c keeps its handlers static, so this file includes it.
 *
 * Checked after every request: the answer is well-formed (fuzz_api.c);
 * whatever a parser accepted meets the documented rules (names, keys,
 * addresses, the monitor's migration options); nothing invalid reached
 * the agent: every VM it knows has a valid name, configuration, boot
 * source and devices, NICs (each with a MAC no other VM of the host has,
 * on one of the host's networks: the agent has "prod" and "dev") and
 * disks, the directory DATA/vms holds exactly those VMs with their
 * vm.json, no key file is left in DATA/keys and no process was started. */
#include "../../src/host/agent.c"
#include "fuzz_api.h"
#include "migrate/migration.h"
#include <ftw.h>

static struct host_agent fuzz_agent;

static bool hex_key(const char *k)
{
	if (!k || strlen(k) != 64)
		return false;
	for (int i = 0; i < 64; i++)
		if (!isxdigit((unsigned char)k[i]))
			return false;
	return true;
}

/* What the parsers accepted must meet the rules; refusals must say why. */
static void check_parsers(const struct http_request *req)
{
	char err[512] = "", name[VM_NAME_MAX], action[64];
	struct migration_params p;

	if (!strncmp(req->path, "/v1/vms/", 8)) {
		int rc = host_vm_path_parse(req->path, name, action, sizeof(action), err, sizeof(err));
		if (rc == 0) {
			char back[VM_NAME_MAX + 80];
			snprintf(back, sizeof(back), "/v1/vms/%s%s%s", name, action[0] ? "/" : "", action);
			if (!name_valid(name, NULL, 0) || strcmp(back, req->path))
				fuzz_api_fail(req, "path accepted as VM '%s' action '%s'", name, action);
		} else if (!err[0]) {
			fuzz_api_fail(req, "path refused without a reason");
		}
	}
	if (!strcmp(req->method, "POST") && !strcmp(req->path, "/v1/incoming")) {
		struct host_incoming_request r;
		if (host_incoming_request_parse(req->body, &r, err, sizeof(err)) == 0) {
			struct vm_config cfg;
			if (!name_valid(r.name, NULL, 0) || !hex_key(r.key) || vm_config_from_json(r.config, &cfg, err, sizeof(err)))
				fuzz_api_fail(req, "incoming spec accepted with name '%s': %s", r.name, err);
		}
	}
	if (!strcmp(req->method, "POST") && !strncmp(req->path, "/v1/vms/", 8) && strstr(req->path, "/migrate")) {
		struct host_migrate_request r;
		if (host_migrate_request_parse(req->body, &r, err, sizeof(err)) == 0) {
			if (!hex_key(r.key) || r.naddrs < 1 || r.naddrs > WIRE_MAX_STREAMS ||
			    wire_parse_addrs(r.to, p.addrs, WIRE_MAX_STREAMS) != r.naddrs)
				fuzz_api_fail(req, "migration accepted to '%s'", r.to);
			/* what the monitor will get: the same options, which it must accept */
			if (migration_options_parse(req->body, &p, err, sizeof(err)))
				fuzz_api_fail(req, "migration accepted with options the monitor refuses: %s", err);
		}
	}
	if (!strcmp(req->method, "POST") && !strncmp(req->path, "/v1/vms/", 8) && strstr(req->path, "/capture")) {
		struct host_capture_request r;
		if (host_capture_request_parse(req->body, &r, err, sizeof(err)) == 0 &&
		    (r.nic < 0 || r.nic >= VM_MAX_NICS || r.count < 1 || r.count > HOST_CAPTURE_FRAMES_MAX ||
		     !(r.seconds >= 0.1 && r.seconds <= HOST_CAPTURE_SECONDS_MAX)))
			fuzz_api_fail(req, "capture accepted: nic %d, %ld frames, %g s", r.nic, r.count, r.seconds);
	}
	if (!strcmp(req->method, "POST") && !strncmp(req->path, "/v1/netcheck/", 13)) {
		/* parsed only: the handlers open sockets and run a check over the network */
		struct host_netcheck_request r;
		bool run = !strcmp(req->path, "/v1/netcheck/run");
		if (host_netcheck_request_parse(req->body, run, &r, err, sizeof(err)) == 0) {
			if (strcmp(r.service, "management") && strcmp(r.service, "migration") && strcmp(r.service, "provisioning"))
				fuzz_api_fail(req, "netcheck accepted for service '%s'", r.service);
			if (run && (r.nto < 1 || r.nto > HOST_NETCHECK_ENDPOINTS_MAX || !(r.seconds >= 0.1 && r.seconds <= NETCHECK_SECONDS_MAX)))
				fuzz_api_fail(req, "netcheck run accepted: %d endpoints, %g s", r.nto, r.seconds);
			for (int i = 0; run && i < r.nto; i++)
				if (!r.to_host[i][0] || r.to_port[i] < 1 || r.to_port[i] > 65535)
					fuzz_api_fail(req, "netcheck run accepted endpoint '%s' port %d", r.to_host[i], r.to_port[i]);
		} else if (!err[0]) {
			fuzz_api_fail(req, "netcheck request refused without a reason");
		}
	}
}

static void check_agent(struct host_agent *a, const struct http_request *req)
{
	char err[512], path[PATH_MAX + 64];
	int known = 0, dirs = 0;

	for (struct host_vm *v = a->vms; v; v = v->next) {
		struct vm_config cfg;
		struct vm_boot boot;
		json_t *b, *d;
		if (v->removed)
			continue;
		known++;
		if (!name_valid(v->name, err, sizeof(err)))
			fuzz_api_fail(req, "VM registered with an invalid name: %s", err);
		if (vm_config_from_json(json_object_get(v->record, "config"), &cfg, err, sizeof(err)))
			fuzz_api_fail(req, "VM %s registered with an invalid configuration: %s", v->name, err);
		if (strcmp(cfg.name, v->name))
			fuzz_api_fail(req, "VM %s registered with the configuration of '%s'", v->name, cfg.name);
		b = json_object_get(v->record, "boot");
		if (b && vm_boot_from_json(b, &boot, err, sizeof(err)))
			fuzz_api_fail(req, "VM %s registered with an invalid boot source: %s", v->name, err);
		d = json_object_get(v->record, "devices");
		if (d && vm_devices_check(d, err, sizeof(err)))
			fuzz_api_fail(req, "VM %s registered with invalid devices: %s", v->name, err);
		struct attach at;
		if (attach_parse(json_object_get(v->record, "nics"), json_object_get(v->record, "disks"), true, &at, err,
				 sizeof(err)))
			fuzz_api_fail(req, "VM %s registered with invalid NICs or disks: %s", v->name, err);
		for (int i = 0; i < at.nnics; i++) {
			if (!attach_network_find(a->networks, a->nnetworks, at.nics[i].network))
				fuzz_api_fail(req, "VM %s registered with NIC %d on network '%s', which the host lacks", v->name, i,
					      at.nics[i].network);
			for (struct host_vm *o = v->next; o; o = o->next) {
				struct attach other;
				if (o->removed || attach_parse(json_object_get(o->record, "nics"), NULL, true, &other, NULL, 0))
					continue;
				for (int k = 0; k < other.nnics; k++)
					if (!memcmp(other.nics[k].mac, at.nics[i].mac, 6))
						fuzz_api_fail(req, "VMs %s and %s have the same MAC", v->name, o->name);
			}
		}
		if (v->pid)
			fuzz_api_fail(req, "VM %s has a monitor process", v->name);
		snprintf(path, sizeof(path), "%s/vms/%s/vm.json", a->data_dir, v->name);
		if (access(path, R_OK))
			fuzz_api_fail(req, "VM %s has no %s", v->name, path);
	}
	snprintf(path, sizeof(path), "%s/vms", a->data_dir);
	DIR *dir = opendir(path);
	struct dirent *e;
	while (dir && (e = readdir(dir))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		dirs++;
		if (!host_vm_find(a, e->d_name))
			fuzz_api_fail(req, "%s/%s belongs to no VM", path, e->d_name);
	}
	if (dir)
		closedir(dir);
	if (dirs != known)
		fuzz_api_fail(req, "%d VMs known, %d directories in %s", known, dirs, path);
	snprintf(path, sizeof(path), "%s/keys", a->data_dir);
	dir = opendir(path);
	while (dir && (e = readdir(dir)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			fuzz_api_fail(req, "key file %s/%s left behind", path, e->d_name);
	if (dir)
		closedir(dir);
}

/* Requests that would spawn a VM monitor, or open sockets to run a network
 * check (to any address the input names), are only parsed. */
static bool spawns(const struct http_request *req)
{
	struct host_vm_request r;
	char err[512], name[VM_NAME_MAX], action[64];
	if (strcmp(req->method, "POST"))
		return false;
	if (!strncmp(req->path, "/v1/netcheck/", 13))
		return true;
	if (!strcmp(req->path, "/v1/vms"))
		return host_vm_request_parse(req->body, &r, err, sizeof(err)) == 0 && r.start;
	return host_vm_path_parse(req->path, name, action, sizeof(action), err, sizeof(err)) == 0 && !strcmp(action, "start");
}

static int one_request(void *ctx, const struct http_request *req)
{
	struct host_agent *a = ctx;
	json_t *resp = NULL;

	check_parsers(req);
	if (!spawns(req)) {
		int status = fuzz_api_dispatch(routes, a, req, &resp);
		fuzz_api_check_answer(req, status, resp);
		json_decref(resp);
	}
	check_agent(a, req);
	return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void remove_data_dir(void)
{
	if (fuzz_agent.data_dir[0])
		nftw(fuzz_agent.data_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct host_agent *a = &fuzz_agent;
	const char *tmp = getenv("TMPDIR");
	char dir[PATH_MAX];

	glide_set_log_file("/dev/null", NULL, 0);
	/* the agent wants a data directory of at most 60 characters (socket paths) */
	snprintf(dir, sizeof(dir), "%s/fuzzhost.XXXXXX", tmp && *tmp && strlen(tmp) < 44 ? tmp : "/tmp");
	if (!mkdtemp(dir)) {
		fprintf(stderr, "cannot make a data directory %s: %s\n", dir, strerror(errno));
		abort();
	}
	snprintf(a->data_dir, sizeof(a->data_dir), "%s", dir);
	atexit(remove_data_dir);
	snprintf(a->name, sizeof(a->name), "fuzz");
	snprintf(a->self_exe, sizeof(a->self_exe), "/nonexistent/glide");
	for (int r = 0; r < EVC_REGS; r++)
		a->cpu_regs[r] = 0xffffffffu;
	/* two networks (their bridges are not checked here: nothing is started) */
	if (attach_network_parse("prod=bridge:br0,vlan=10,rate=100M", &a->networks[0], NULL, 0) ||
	    attach_network_parse("dev=bridge:br1", &a->networks[1], NULL, 0))
		abort();
	a->nnetworks = 2;
	pthread_mutex_init(&a->lock, NULL);
	snprintf(dir, sizeof(dir), "%s/vms", a->data_dir);
	mkdir(dir, 0700);
	snprintf(dir, sizeof(dir), "%s/keys", a->data_dir);
	mkdir(dir, 0700);
	signal(SIGCHLD, SIG_IGN); /* as the agent: nothing should ever be started, but never a zombie */
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct host_agent *a = &fuzz_agent;

	fuzz_api_each(data, size, one_request, a);
	/* the next input starts with no VM */
	while (a->vms) {
		struct host_vm *v = a->vms;
		a->vms = v->next;
		if (!v->removed)
			host_vm_forget(a, v);
		json_decref(v->record);
		json_decref(v->monitor);
		free(v);
	}
	return 0;
}
