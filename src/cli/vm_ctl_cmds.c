/* `glide vm create|start|stop|list|show|migrate|set|delete`: VMs as the
 * controller sees them, addressed by name. (The monitor's own commands,
 * `glide vm run|status|pause|...`, take --api SOCKET and live in vm_cmds.c;
 * `glide vm show NAME --json` gives that socket as "api".) */
#include "cli/ctl.h"
#include "common/hardware.h"
#include "common/util.h"
#include "vmm/vm.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ctl_parse_simple(int argc, char **argv, struct ctl *c, const char **pos, const char *usage);

static void print_vm(json_t *v)
{
	char mem[32];
	printf("name:     %s\n", json_string_value(json_object_get(v, "name")));
	printf("state:    %s\n", json_string_value(json_object_get(v, "state")));
	printf("host:     %s\n", json_string_value(json_object_get(v, "host")) ? json_string_value(json_object_get(v, "host")) : "-");
	printf("cluster:  %s\n", json_string_value(json_object_get(v, "cluster")));
	printf("memory:   %s, %lld vCPUs\n", format_size((uint64_t)json_integer_value(json_object_get(v, "memory")), mem, sizeof(mem)),
	       json_integer_value(json_object_get(v, "vcpus")));
	const char *lvl = json_string_value(json_object_get(v, "evc_level"));
	printf("evc:      %s%s\n", lvl ? lvl : json_string_value(json_object_get(v, "cluster_evc_level")) ? json_string_value(json_object_get(v, "cluster_evc_level")) : "none",
	       lvl ? " (per-VM)" : " (cluster)");
	if (json_is_string(json_object_get(v, "api")))
		printf("api:      %s\n", json_string_value(json_object_get(v, "api")));
	if (json_is_integer(json_object_get(v, "locked_by_task")))
		printf("locked:   by task %lld\n", json_integer_value(json_object_get(v, "locked_by_task")));
	if (json_is_string(json_object_get(v, "drs_automation")) && strcmp(json_string_value(json_object_get(v, "drs_automation")), "default"))
		printf("drs:      %s (its own automation level)\n", json_string_value(json_object_get(v, "drs_automation")));
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(v, "nics"), i, e)
		printf("nic %zu:    network %s, mac %s\n", i, json_string_value(json_object_get(e, "network")),
		       json_string_value(json_object_get(e, "mac")) ? json_string_value(json_object_get(e, "mac")) : "-");
	json_array_foreach(json_object_get(v, "disks"), i, e)
		printf("disk %zu:   %s%s\n", i, json_string_value(json_object_get(e, "path")),
		       json_is_true(json_object_get(e, "readonly")) ? " (read-only)" : "");
	json_array_foreach(json_object_get(v, "hardware"), i, e) {
		char d[200];
		printf("hardware %zu: %s (assignable: any free matching device of its host)\n", i, hw_describe(e, d, sizeof(d)));
	}
}

/* --nic NETWORK[,mac=MAC][,queues=N]: {"network", "mac", "queues"}; the
 * controller checks the name, the MAC and the count. */
static json_t *nic_option(const char *arg)
{
	char buf[256], *save = NULL;
	json_t *nic = NULL;
	if (strlen(arg) >= sizeof(buf))
		goto bad;
	snprintf(buf, sizeof(buf), "%s", arg);
	char *net = strtok_r(buf, ",", &save);
	if (!net || arg[0] == ',')
		goto bad;
	if (!ctl_name_ok(net)) /* says why */
		return NULL;
	nic = json_pack("{s:s}", "network", net);
	for (char *item = strtok_r(NULL, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
		char *end = NULL;
		long q = !strncmp(item, "queues=", 7) && item[7] ? strtol(item + 7, &end, 10) : 0;
		if (!strncmp(item, "mac=", 4) && !json_object_get(nic, "mac")) {
			json_object_set_new(nic, "mac", json_string(item + 4));
		} else if (end && !*end && q >= 1 && q <= 8 && !json_object_get(nic, "queues")) {
			json_object_set_new(nic, "queues", json_integer(q));
		} else {
			json_decref(nic);
			goto bad;
		}
	}
	return nic;
bad:
	fprintf(stderr, "glide: --nic '%s': give NETWORK[,mac=MAC][,queues=N] (a network of the hosts, e.g. "
			"prod,mac=52:54:00:12:34:56; N queue pairs, 1-8)\n", arg);
	return NULL;
}

/* --disk PATH[,readonly]: {"path" (absolute), "readonly"}. */
static json_t *disk_option(const char *arg)
{
	const char *comma = strchr(arg, ',');
	size_t n = comma ? (size_t)(comma - arg) : strlen(arg);
	char *path = strndup(arg, n), *abs;
	json_t *disk = NULL;
	if (!path)
		return NULL;
	if (!n || (comma && strcmp(comma + 1, "readonly"))) {
		fprintf(stderr, "glide: --disk '%s': give PATH[,readonly] (a file on storage the hosts share)\n", arg);
	} else if ((abs = cli_abs_path(path))) {
		disk = json_pack("{s:s, s:b}", "path", abs, "readonly", comma != NULL);
		free(abs);
	}
	free(path);
	return disk;
}

int cmd_vmc_create(int argc, char **argv)
{
	static const struct option opts[] = {
		CTL_LONG_OPTIONS, { "memory", required_argument, 0, 'm' }, { "vcpus", required_argument, 0, 'c' },
		{ "boot", required_argument, 0, 'b' }, { "elf", required_argument, 0, 'e' }, { "kernel", required_argument, 0, 'k' },
		{ "initrd", required_argument, 0, 'i' }, { "cmdline", required_argument, 0, 'l' },
		{ "cluster", required_argument, 0, 'C' }, { "evc", required_argument, 0, 'E' },
		{ "nic", required_argument, 0, 'N' }, { "disk", required_argument, 0, 'D' },
		{ "hardware", required_argument, 0, 'H' },
		{ "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
	const char *usage = "glide vm create NAME --memory SIZE [--vcpus N] (--boot IMAGE | --elf FILE | --kernel BZIMAGE [--initrd F] [--cmdline S])\n"
			    "                     [--cluster C] [--evc LEVEL] [--nic NETWORK[,mac=MAC][,queues=N]]... [--disk PATH[,readonly]]...\n"
			    "                     [--hardware class=C[,vendor=V][,model=M]]... [--json]";
	struct ctl c = { 0 };
	const char *kind = NULL, *path = NULL, *initrd = NULL, *cmdline = NULL, *cluster = NULL, *evc = NULL;
	json_t *nics = json_array(), *disks = json_array(), *hardware = json_array(), *one;
	char why[256];
	uint64_t mem = 0;
	long vcpus = 1;
	int opt, rc;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (ctl_option(&c, opt, optarg))
			continue;
		switch (opt) {
		case 'm':
			if (parse_size(optarg, &mem) || !mem) {
				fprintf(stderr, "glide: --memory '%s' is not a size (e.g. 256M)\n", optarg);
				goto usage_error;
			}
			break;
		case 'N':
			if (!(one = nic_option(optarg)))
				goto usage_error;
			json_array_append_new(nics, one);
			break;
		case 'D':
			if (!(one = disk_option(optarg)))
				goto usage_error;
			json_array_append_new(disks, one);
			break;
		case 'H':
			if (!(one = hw_spec_parse(optarg, false, why, sizeof(why)))) {
				fprintf(stderr, "glide: --hardware '%s': %s\n", optarg, why);
				goto usage_error;
			}
			json_array_append_new(hardware, one);
			break;
		case 'c': vcpus = strtol(optarg, NULL, 10); break;
		case 'b': kind = "boot"; path = optarg; break;
		case 'e': kind = "elf"; path = optarg; break;
		case 'k': kind = "kernel"; path = optarg; break;
		case 'i': initrd = optarg; break;
		case 'l': cmdline = optarg; break;
		case 'C': cluster = optarg; break;
		case 'E': evc = optarg; break;
		case 'h':
			printf("usage: %s\n", usage);
			json_decref(nics);
			json_decref(disks);
			json_decref(hardware);
			return 0;
		default: fprintf(stderr, "usage: %s\n", usage); goto usage_error;
		}
	}
	if (optind != argc - 1 || !mem || !path) {
		fprintf(stderr, "glide: give NAME, --memory SIZE and one of --boot/--elf/--kernel\nusage: %s\n", usage);
		goto usage_error;
	}
	if (!ctl_name_ok(argv[optind]) || (cluster && !ctl_name_ok(cluster)))
		goto usage_error;
	if ((rc = ctl_connect(&c))) {
		json_decref(nics);
		json_decref(disks);
		json_decref(hardware);
		return rc;
	}
	char *abs = cli_abs_path(path), *absi = initrd ? cli_abs_path(initrd) : NULL;
	json_t *body = json_pack("{s:s, s:I, s:I, s:{s:s, s:s, s:s?, s:s?}, s:s?, s:s?, s:o, s:o}", "name", argv[optind],
				 "memory", (json_int_t)mem, "vcpus", (json_int_t)vcpus, "boot", "kind", kind, "path", abs, "initrd",
				 absi, "cmdline", cmdline, "cluster", cluster, "evc", evc, "nics", nics, "disks", disks);
	json_object_set_new(body, "hardware", hardware);
	json_t *r = NULL;
	rc = ctl_call(&c, "POST", "/v1/vms", body, &r);
	if (!rc) {
		if (c.json)
			cli_print_json(r);
		else {
			size_t i;
			json_t *e;
			printf("VM %s created (powered off); start it with `glide vm start %s`\n", argv[optind], argv[optind]);
			json_array_foreach(json_object_get(r, "nics"), i, e)
				printf("  NIC %zu on network %s, MAC %s\n", i, json_string_value(json_object_get(e, "network")),
				       json_string_value(json_object_get(e, "mac")));
		}
	}
	free(abs);
	free(absi);
	json_decref(body);
	json_decref(r);
	ctl_done(&c);
	return rc;
usage_error:
	json_decref(nics);
	json_decref(disks);
	json_decref(hardware);
	return 1;
}

static int simple_vm(int argc, char **argv, const char *method, const char *action, const char *usage, json_t *body)
{
	struct ctl c = { 0 };
	const char *name;
	char path[256];
	json_t *r = NULL;
	char suffix[32];
	int rc = ctl_parse_simple(argc, argv, &c, &name, usage);
	if (rc)
		return rc < 0 ? 0 : rc;
	snprintf(suffix, sizeof(suffix), "%s%s", action ? "/" : "", action ? action : "");
	if (!ctl_name_ok(name) || ctl_path(path, sizeof(path), "/v1/vms/", name, suffix)) {
		ctl_done(&c);
		return 1;
	}
	rc = ctl_call(&c, method, path, body, &r);
	if (!rc) {
		if (c.json)
			cli_print_json(r);
		else if (!strcmp(method, "DELETE"))
			printf("VM %s deleted\n", name);
		else
			print_vm(r);
	}
	json_decref(r);
	ctl_done(&c);
	return rc;
}

int cmd_vmc_start(int argc, char **argv)
{
	static const struct option opts[] = { CTL_LONG_OPTIONS, { "host", required_argument, 0, 'H' },
					      { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
	const char *usage = "glide vm start NAME [--host HOST] [--json]";
	struct ctl c = { 0 };
	const char *host = NULL;
	char path[256];
	int opt, rc;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (ctl_option(&c, opt, optarg))
			continue;
		if (opt == 'H') {
			host = optarg;
		} else {
			fprintf(opt == 'h' ? stdout : stderr, "usage: %s\n", usage);
			return opt == 'h' ? 0 : 1;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "glide: give the VM's NAME\nusage: %s\n", usage);
		return 1;
	}
	if (!ctl_name_ok(argv[optind]) || ctl_path(path, sizeof(path), "/v1/vms/", argv[optind], "/start"))
		return 1;
	if ((rc = ctl_connect(&c)))
		return rc;
	json_t *body = json_pack("{s:s?}", "host", host), *r = NULL;
	rc = ctl_call(&c, "POST", path, body, &r);
	if (!rc) {
		if (c.json)
			cli_print_json(r);
		else
			printf("VM %s is running on host %s (API %s)\n", argv[optind], json_string_value(json_object_get(r, "host")),
			       json_string_value(json_object_get(r, "api")));
	}
	json_decref(body);
	json_decref(r);
	ctl_done(&c);
	return rc;
}

int cmd_vmc_stop(int argc, char **argv)
{
	return simple_vm(argc, argv, "POST", "stop", "glide vm stop NAME [--json]", NULL);
}

int cmd_vmc_suspend(int argc, char **argv)
{
	return simple_vm(argc, argv, "POST", "suspend", "glide vm suspend NAME [--json]   (`glide vm start NAME` resumes it)", NULL);
}

/* POSTs a request that starts a task, then follows it to its end (a
 * progress bar; --json: the task) unless no_wait. The exit status. */
static int task_call(struct ctl *c, const char *path, json_t *body, bool no_wait, const char *what)
{
	json_t *r = NULL;
	int rc = ctl_call(c, "POST", path, body, &r);
	if (rc) {
		json_decref(r);
		return rc;
	}
	long long task = json_integer_value(json_object_get(r, "task"));
	if (no_wait) {
		if (c->json)
			cli_print_json(r);
		else
			printf("%s started as task %lld; follow it with `glide task watch %lld`\n", what, task, task);
		json_decref(r);
		return 0;
	}
	json_decref(r);
	r = NULL;
	rc = ctl_watch_task(c, task, c->json, &r);
	if (r) {
		if (c->json)
			cli_print_json(r);
		else if (rc)
			fprintf(stderr, "glide: %s\n", json_string_value(json_object_get(r, "message")));
		else
			ctl_print_task(r);
	}
	json_decref(r);
	return rc;
}

int cmd_vmc_move_disk(int argc, char **argv)
{
	static const struct option opts[] = { CTL_LONG_OPTIONS, { "datastore", required_argument, 0, 'D' },
					      { "disk", required_argument, 0, 'd' }, { "no-wait", no_argument, 0, 'n' },
					      { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
	const char *usage = "glide vm move-disk NAME --datastore DATASTORE [--disk N] [--no-wait] [--json]\n"
			    "       (a running VM's disk N, default 0, moves to another datastore of its host while it runs)";
	struct ctl c = { 0 };
	const char *ds = NULL;
	long disk = 0;
	bool no_wait = false;
	char path[256], *end;
	json_t *body;
	int opt, rc;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (ctl_option(&c, opt, optarg))
			continue;
		switch (opt) {
		case 'D': ds = optarg; break;
		case 'd':
			disk = strtol(optarg, &end, 10);
			if (*end || disk < 0 || disk >= VM_MAX_DISKS) {
				fprintf(stderr, "glide: --disk '%s' is not a disk index (0-%d)\n", optarg, VM_MAX_DISKS - 1);
				return 1;
			}
			break;
		case 'n': no_wait = true; break;
		case 'h': printf("usage: %s\n", usage); return 0;
		default: fprintf(stderr, "usage: %s\n", usage); return 1;
		}
	}
	if (optind != argc - 1 || !ds) {
		fprintf(stderr, "glide: give the VM's NAME and --datastore\nusage: %s\n", usage);
		return 1;
	}
	if (!ctl_name_ok(argv[optind]) || ctl_path(path, sizeof(path), "/v1/vms/", argv[optind], "/move-disk"))
		return 1;
	if ((rc = ctl_connect(&c)))
		return rc;
	body = json_pack("{s:s, s:i}", "datastore", ds, "disk", (int)disk);
	rc = task_call(&c, path, body, no_wait, "disk move");
	json_decref(body);
	ctl_done(&c);
	return rc;
}

int cmd_vmc_show(int argc, char **argv)
{
	return simple_vm(argc, argv, "GET", NULL, "glide vm show NAME [--json]", NULL);
}

int cmd_vmc_delete(int argc, char **argv)
{
	return simple_vm(argc, argv, "DELETE", NULL, "glide vm delete NAME [--json]", NULL);
}

int cmd_vmc_list(int argc, char **argv)
{
	struct ctl c = { 0 };
	json_t *r = NULL, *v;
	size_t i;
	int rc = ctl_parse_simple(argc, argv, &c, NULL, "glide vm list [--json]");
	if (rc)
		return rc < 0 ? 0 : rc;
	rc = ctl_call(&c, "GET", "/v1/vms", NULL, &r);
	if (!rc && c.json)
		cli_print_json(r);
	else if (!rc) {
		printf("%-20s %-9s %-16s %-10s %10s %5s %s\n", "NAME", "STATE", "HOST", "CLUSTER", "MEMORY", "VCPUS", "EVC");
		json_array_foreach(json_object_get(r, "vms"), i, v) {
			char mem[32];
			const char *lvl = json_string_value(json_object_get(v, "evc_level"));
			printf("%-20s %-9s %-16s %-10s %10s %5lld %s\n", json_string_value(json_object_get(v, "name")),
			       json_string_value(json_object_get(v, "state")),
			       json_string_value(json_object_get(v, "host")) ? json_string_value(json_object_get(v, "host")) : "-",
			       json_string_value(json_object_get(v, "cluster")),
			       format_size((uint64_t)json_integer_value(json_object_get(v, "memory")), mem, sizeof(mem)),
			       json_integer_value(json_object_get(v, "vcpus")),
			       lvl ? lvl : json_string_value(json_object_get(v, "cluster_evc_level")) ? json_string_value(json_object_get(v, "cluster_evc_level")) : "none");
		}
	}
	json_decref(r);
	ctl_done(&c);
	return rc;
}

int cmd_vmc_set(int argc, char **argv)
{
	static const struct option opts[] = { CTL_LONG_OPTIONS, { "memory", required_argument, 0, 'm' },
					      { "vcpus", required_argument, 0, 'c' }, { "evc", required_argument, 0, 'E' },
					      { "drs-automation", required_argument, 0, 'D' },
					      { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
	const char *usage = "glide vm set NAME [--memory SIZE] [--vcpus N] [--evc LEVEL|cluster]\n"
			    "                  [--drs-automation manual|partial|full|disabled|default] [--json]";
	struct ctl c = { 0 };
	json_t *body = json_object(), *r = NULL;
	const char *automation = NULL;
	char path[256];
	uint64_t mem;
	int opt, rc = 1;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (ctl_option(&c, opt, optarg))
			continue;
		if (opt == 'm' && !parse_size(optarg, &mem))
			json_object_set_new(body, "memory", json_integer((json_int_t)mem));
		else if (opt == 'c')
			json_object_set_new(body, "vcpus", json_integer(strtol(optarg, NULL, 10)));
		else if (opt == 'E')
			json_object_set_new(body, "evc", json_string(optarg));
		else if (opt == 'D')
			automation = optarg;
		else {
			fprintf(opt == 'h' ? stdout : stderr, "usage: %s\n", usage);
			rc = opt == 'h' ? 0 : 1;
			goto out;
		}
	}
	if (optind != argc - 1 || (!json_object_size(body) && !automation)) {
		fprintf(stderr, "glide: give the VM's NAME and what to change\nusage: %s\n", usage);
		goto out;
	}
	if (!ctl_name_ok(argv[optind]) || ctl_path(path, sizeof(path), "/v1/vms/", argv[optind], "/drs"))
		goto out;
	if ((rc = ctl_connect(&c)))
		goto out;
	if (automation) { /* its own endpoint: a DRS setting, not the VM's configuration */
		json_t *a = json_pack("{s:s}", "automation", automation);
		rc = ctl_call(&c, "POST", path, a, &r);
		json_decref(a);
		if (rc || !json_object_size(body))
			goto shown;
		json_decref(r);
		r = NULL;
	}
	ctl_path(path, sizeof(path), "/v1/vms/", argv[optind], "/config");
	rc = ctl_call(&c, "POST", path, body, &r);
shown:
	if (!rc) {
		if (c.json)
			cli_print_json(r);
		else
			print_vm(r);
	}
out:
	json_decref(body);
	json_decref(r);
	ctl_done(&c);
	return rc;
}

int cmd_vmc_migrate(int argc, char **argv)
{
	static const struct option opts[] = {
		CTL_LONG_OPTIONS, { "to", required_argument, 0, 't' }, { "no-wait", no_argument, 0, 'n' },
		{ "streams", required_argument, 0, 's' }, { "max-bandwidth", required_argument, 0, 'b' },
		{ "switchover-goal", required_argument, 0, 'g' }, { "sdps", required_argument, 0, 'S' },
		{ "encrypt", required_argument, 0, 'e' }, { "timeout", required_argument, 0, 'T' },
		{ "compress", required_argument, 0, 'c' }, { "verify", no_argument, 0, 'V' },
		{ "with-storage", no_argument, 0, 'W' }, { "datastore", required_argument, 0, 'D' },
		{ "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
	const char *usage = "glide vm migrate NAME --to HOST [--no-wait] [--streams N|auto] [--max-bandwidth RATE]\n"
			    "                      [--switchover-goal MS] [--sdps off|always|dynamic] [--encrypt off|opportunistic|required]\n"
			    "                      [--compress off|lz4] [--verify]\n"
			    "                      [--with-storage [--datastore NAME]]   (copy the disks too: shared-nothing)\n"
			    "                      [--json]";
	struct ctl c = { 0 };
	const char *to = NULL;
	bool no_wait = false;
	json_t *body = json_object();
	char path[256];
	uint64_t v;
	int opt, rc = 1; /* until the request is sent: a usage error */
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (ctl_option(&c, opt, optarg))
			continue;
		switch (opt) {
		case 't': to = optarg; break;
		case 'n': no_wait = true; break;
		case 's':
			json_object_set_new(body, "streams", !strcmp(optarg, "auto") || !strcmp(optarg, "adaptive") ? json_string(optarg)
							      : json_integer(strtol(optarg, NULL, 10)));
			break;
		case 'b':
			if (parse_rate(optarg, &v)) {
				fprintf(stderr, "glide: --max-bandwidth '%s' is not a rate in bytes/s (e.g. 50M)\n", optarg);
				goto out;
			}
			json_object_set_new(body, "max_bandwidth", json_integer((json_int_t)v));
			break;
		case 'g': json_object_set_new(body, "switchover_goal_ms", json_integer(strtol(optarg, NULL, 10))); break;
		case 'S': json_object_set_new(body, "sdps", json_string(optarg)); break;
		case 'e': json_object_set_new(body, "encrypt", json_string(optarg)); break;
		case 'T': json_object_set_new(body, "timeout_s", json_integer(strtol(optarg, NULL, 10))); break;
		case 'c': json_object_set_new(body, "compress", json_string(optarg)); break;
		case 'V': json_object_set_new(body, "verify", json_true()); break;
		case 'W': json_object_set_new(body, "with_storage", json_true()); break;
		case 'D': json_object_set_new(body, "datastore", json_string(optarg)); break;
		case 'h': printf("usage: %s\n", usage); rc = 0; goto out;
		default: fprintf(stderr, "usage: %s\n", usage); goto out;
		}
	}
	if (optind != argc - 1 || !to) {
		fprintf(stderr, "glide: give the VM's NAME and --to HOST\nusage: %s\n", usage);
		goto out;
	}
	if (!ctl_name_ok(argv[optind]) || ctl_path(path, sizeof(path), "/v1/vms/", argv[optind], "/migrate"))
		goto out;
	if ((rc = ctl_connect(&c)))
		goto out;
	json_object_set_new(body, "to", json_string(to));
	rc = task_call(&c, path, body, no_wait, "migration");
out:
	json_decref(body);
	ctl_done(&c);
	return rc;
}
