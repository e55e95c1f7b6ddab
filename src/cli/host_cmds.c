/* `glide host serve|add|list|show|remove|netstats|netcheck`: the host agent
 * daemon, the controller's host inventory, the NIC counters of a host's VMs
 * read from its agent, and the network check between two hosts. */
#include "cli/ctl.h"
#include "host/host.h"
#include "common/token.h"
#include "common/hardware.h"
#include "common/util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_host_serve(int argc, char **argv)
{
	return host_serve_main(argc, argv);
}

/* Parses only the common options plus up to one positional argument. */
static int parse_simple(int argc, char **argv, struct ctl *c, const char **pos, const char *usage)
{
	static const struct option opts[] = { CTL_LONG_OPTIONS, { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (ctl_option(c, opt, optarg))
			continue;
		fprintf(opt == 'h' ? stdout : stderr, "usage: %s\n", usage);
		return opt == 'h' ? -1 : 1;
	}
	if (pos) {
		if (optind >= argc) {
			fprintf(stderr, "glide: missing argument\nusage: %s\n", usage);
			return 1;
		}
		*pos = argv[optind++];
	}
	if (optind < argc) {
		fprintf(stderr, "glide: unexpected argument '%s'\nusage: %s\n", argv[optind], usage);
		return 1;
	}
	return ctl_connect(c);
}

int cmd_host_add(int argc, char **argv)
{
	static const struct option opts[] = { CTL_LONG_OPTIONS, { "host-token-file", required_argument, 0, 'T' },
					      { "name", required_argument, 0, 'n' }, { "cluster", required_argument, 0, 'c' },
					      { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
	const char *usage = "glide host add HOST:PORT --host-token-file F [--name NAME] [--cluster C] [--json]";
	struct ctl c = { 0 };
	const char *tf = NULL, *name = NULL, *cluster = NULL;
	char err[512];
	int opt, rc;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (ctl_option(&c, opt, optarg))
			continue;
		switch (opt) {
		case 'T': tf = optarg; break;
		case 'n': name = optarg; break;
		case 'c': cluster = optarg; break;
		case 'h': printf("usage: %s\n", usage); return 0;
		default: fprintf(stderr, "usage: %s\n", usage); return 1;
		}
	}
	if (optind != argc - 1 || !tf) {
		fprintf(stderr, "glide: give the host's HOST:PORT and --host-token-file F (the token its agent was started with)\nusage: %s\n", usage);
		return 1;
	}
	if ((name && !ctl_name_ok(name)) || (cluster && !ctl_name_ok(cluster)))
		return 1;
	if ((rc = ctl_connect(&c)))
		return rc;
	char *token = token_read_file(tf, err, sizeof(err));
	if (!token) {
		fprintf(stderr, "glide: %s\n", err);
		return 1;
	}
	json_t *body = json_pack("{s:s, s:s, s:s?, s:s?}", "address", argv[optind], "token", token, "name", name, "cluster", cluster);
	json_t *r = NULL;
	rc = ctl_call(&c, "POST", "/v1/hosts", body, &r);
	json_decref(body);
	explicit_bzero(token, strlen(token));
	free(token);
	if (!rc) {
		if (c.json)
			cli_print_json(r);
		else
			printf("host %s added (EVC max level %s)\n", json_string_value(json_object_get(r, "name")),
			       json_string_value(json_object_get(r, "evc_max_level")) ? json_string_value(json_object_get(r, "evc_max_level")) : "none");
	}
	json_decref(r);
	ctl_done(&c);
	return rc;
}

int cmd_host_list(int argc, char **argv)
{
	struct ctl c = { 0 };
	json_t *r = NULL, *h;
	size_t i;
	int rc = parse_simple(argc, argv, &c, NULL, "glide host list [--json]");
	if (rc)
		return rc < 0 ? 0 : rc;
	rc = ctl_call(&c, "GET", "/v1/hosts", NULL, &r);
	if (!rc && c.json) {
		cli_print_json(r);
	} else if (!rc) {
		printf("%-16s %-22s %-10s %-13s %-12s %10s %4s\n", "NAME", "ADDRESS", "CLUSTER", "STATE", "EVC MAX", "FREE MEM", "VMS");
		json_array_foreach(json_object_get(r, "hosts"), i, h) {
			char mem[32];
			printf("%-16s %-22s %-10s %-13s %-12s %10s %4lld\n", json_string_value(json_object_get(h, "name")),
			       json_string_value(json_object_get(h, "address")), json_string_value(json_object_get(h, "cluster")),
			       json_string_value(json_object_get(h, "state")),
			       json_string_value(json_object_get(h, "evc_max_level")) ? json_string_value(json_object_get(h, "evc_max_level")) : "-",
			       format_size((uint64_t)json_integer_value(json_object_get(h, "memory_free")), mem, sizeof(mem)),
			       json_integer_value(json_object_get(h, "vms_running")));
		}
	}
	json_decref(r);
	ctl_done(&c);
	return rc;
}

int cmd_host_show(int argc, char **argv)
{
	struct ctl c = { 0 };
	const char *name;
	char path[256];
	json_t *r = NULL;
	int rc = parse_simple(argc, argv, &c, &name, "glide host show NAME [--json]");
	if (rc)
		return rc < 0 ? 0 : rc;
	if (ctl_path(path, sizeof(path), "/v1/hosts/", name, NULL)) {
		ctl_done(&c);
		return 1;
	}
	rc = ctl_call(&c, "GET", path, NULL, &r);
	if (!rc && c.json) {
		cli_print_json(r);
	} else if (!rc) {
		json_t *f = json_object_get(r, "facts"), *cpu = json_object_get(f, "cpu"), *mem = json_object_get(f, "memory"), *v;
		char a[32], b[32];
		size_t i;
		printf("host:        %s (%s), %s\n", json_string_value(json_object_get(r, "name")),
		       json_string_value(json_object_get(r, "address")), json_string_value(json_object_get(r, "state")));
		printf("cpu:         %s, %lld CPUs, EVC max %s\n", json_string_value(json_object_get(cpu, "model")),
		       json_integer_value(json_object_get(cpu, "count")),
		       json_string_value(json_object_get(cpu, "evc_max_level")) ? json_string_value(json_object_get(cpu, "evc_max_level")) : "none");
		printf("memory:      %s free for VMs of %s\n", format_size((uint64_t)json_integer_value(json_object_get(mem, "free")), a, sizeof(a)),
		       format_size((uint64_t)json_integer_value(json_object_get(mem, "for_vms")), b, sizeof(b)));
		printf("migration:   protocol %lld, addresses", json_integer_value(json_object_get(f, "migration_protocol")));
		json_array_foreach(json_object_get(f, "migration_addresses"), i, v)
			printf(" %s", json_string_value(v));
		const char *services[] = { "management", "provisioning" };
		for (int k = 0; k < 2; k++) {
			printf("\n%-13s", services[k]);
			json_array_foreach(json_object_get(json_object_get(f, "interfaces"), services[k]), i, v)
				printf("%s%s", i ? " " : "", json_string_value(v));
			if (!json_array_size(json_object_get(json_object_get(f, "interfaces"), services[k])))
				printf("-");
		}
		printf("\nnetworks:");
		json_array_foreach(json_object_get(f, "networks"), i, v) {
			printf(" %s (bridge %s", json_string_value(json_object_get(v, "name")), json_string_value(json_object_get(v, "bridge")));
			if (json_is_integer(json_object_get(v, "vlan")))
				printf(", VLAN %lld", json_integer_value(json_object_get(v, "vlan")));
			if (json_is_integer(json_object_get(v, "rate")))
				printf(", %s/s", format_size((uint64_t)json_integer_value(json_object_get(v, "rate")), a, sizeof(a)));
			printf(")");
		}
		if (!json_array_size(json_object_get(f, "networks")))
			printf(" none");
		printf("\nhardware:");
		json_array_foreach(json_object_get(f, "hardware"), i, v) {
			char d[200];
			printf("%s %s: %lld in use of %lld", i ? ";" : "", hw_describe(v, d, sizeof(d)),
			       json_integer_value(json_object_get(v, "in_use")), json_integer_value(json_object_get(v, "count")));
		}
		if (!json_array_size(json_object_get(f, "hardware")))
			printf(" none");
		printf("\nvms:\n");
		json_array_foreach(json_object_get(f, "vms"), i, v)
			printf("  %-20s %-10s %s\n", json_string_value(json_object_get(v, "name")), json_string_value(json_object_get(v, "state")),
			       json_string_value(json_object_get(v, "api")) ? json_string_value(json_object_get(v, "api")) : "");
		if (json_is_string(json_object_get(r, "error")))
			printf("error:       %s\n", json_string_value(json_object_get(r, "error")));
	}
	json_decref(r);
	ctl_done(&c);
	return rc;
}

int cmd_host_remove(int argc, char **argv)
{
	struct ctl c = { 0 };
	const char *name;
	char path[256];
	json_t *r = NULL;
	int rc = parse_simple(argc, argv, &c, &name, "glide host remove NAME [--json]");
	if (rc)
		return rc < 0 ? 0 : rc;
	if (ctl_path(path, sizeof(path), "/v1/hosts/", name, NULL)) {
		ctl_done(&c);
		return 1;
	}
	rc = ctl_call(&c, "DELETE", path, NULL, &r);
	if (!rc) {
		if (c.json)
			cli_print_json(r);
		else
			printf("host %s removed from the inventory\n", name);
	}
	json_decref(r);
	ctl_done(&c);
	return rc;
}

/* Prints one network check record (center POST /v1/netcheck). */
static void print_netcheck(json_t *rec)
{
	size_t i, k;
	json_t *r, *p;
	printf("%s -> %s over %s: %s\n", json_string_value(json_object_get(rec, "source")),
	       json_string_value(json_object_get(rec, "destination")), json_string_value(json_object_get(rec, "service")),
	       json_is_true(json_object_get(rec, "ok")) ? "ok" : json_is_true(json_object_get(rec, "reachable")) ? "PROBLEMS" : "UNREACHABLE");
	json_array_foreach(json_object_get(rec, "results"), i, r) {
		json_t *rtt = json_object_get(r, "rtt_ms"), *mtu = json_object_get(r, "mtu"), *tp = json_object_get(r, "throughput");
		const char *from = json_string_value(json_object_get(r, "from"));
		printf("  %s -> %s", from ? from : "(route)", json_string_value(json_object_get(r, "to")));
		if (json_is_true(json_object_get(r, "reachable"))) {
			printf("  connect %.2f ms", json_number_value(json_object_get(r, "connect_ms")));
			if (rtt)
				printf("  RTT %.3f/%.3f/%.3f ms", json_number_value(json_object_get(rtt, "min")),
				       json_number_value(json_object_get(rtt, "avg")), json_number_value(json_object_get(rtt, "max")));
			if (json_is_integer(json_object_get(mtu, "path")))
				printf("  MTU %lld (route %lld)", json_integer_value(json_object_get(mtu, "path")),
				       json_integer_value(json_object_get(mtu, "route")));
			if (tp)
				printf("  %.2f Gbit/s", json_number_value(json_object_get(tp, "bits_per_s")) / 1e9);
		}
		printf("\n");
		json_array_foreach(json_object_get(r, "problems"), k, p)
			printf("    problem: %s\n", json_string_value(p));
	}
}

/* `glide host netcheck A B`: reachability, RTT, MTU and throughput from
 * A's interfaces of a service to B's, run by their agents (exit 0 when
 * everything is right, 3 when the check found a problem). */
int cmd_host_netcheck(int argc, char **argv)
{
	static const struct option opts[] = { CTL_LONG_OPTIONS, { "service", required_argument, 0, 'S' },
					      { "seconds", required_argument, 0, 's' }, { "help", no_argument, 0, 'h' },
					      { 0, 0, 0, 0 } };
	const char *usage = "glide host netcheck HOST_A HOST_B [--service migration|provisioning|management] [--seconds S] [--json]";
	struct ctl c = { 0 };
	const char *service = "migration";
	double seconds = 1.0;
	int opt, rc;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (ctl_option(&c, opt, optarg))
			continue;
		switch (opt) {
		case 'S':
			service = optarg;
			if (strcmp(service, "migration") && strcmp(service, "provisioning") && strcmp(service, "management")) {
				fprintf(stderr, "glide: --service must be migration, provisioning or management\n");
				return 1;
			}
			break;
		case 's':
			if (parse_seconds(optarg, 0.1, 10, &seconds)) {
				fprintf(stderr, "glide: --seconds must be from 0.1 to 10\n");
				return 1;
			}
			break;
		case 'h': printf("usage: %s\n", usage); return 0;
		default: fprintf(stderr, "usage: %s\n", usage); return 1;
		}
	}
	if (optind != argc - 2) {
		fprintf(stderr, "glide: give two hosts\nusage: %s\n", usage);
		return 1;
	}
	if ((rc = ctl_connect(&c)))
		return rc;
	json_t *body = json_pack("{s:s, s:s, s:s, s:f}", "source", argv[optind], "destination", argv[optind + 1], "service",
				 service, "seconds", seconds), *r = NULL;
	rc = ctl_call(&c, "POST", "/v1/netcheck", body, &r);
	json_decref(body);
	if (!rc) {
		if (c.json)
			cli_print_json(r);
		else
			print_netcheck(r);
		rc = json_is_true(json_object_get(r, "ok")) ? 0 : 3;
	}
	json_decref(r);
	ctl_done(&c);
	return rc;
}

int ctl_parse_simple(int argc, char **argv, struct ctl *c, const char **pos, const char *usage)
{
	return parse_simple(argc, argv, c, pos, usage);
}

static long long counter(json_t *nic, const char *k)
{
	return json_integer_value(json_object_get(nic, k));
}

/* One line per NIC: the counters a vSwitch port keeps (esxcli network vm port stats). */
static int print_netstats(json_t *vms)
{
	size_t i, k;
	json_t *vm, *nic;
	int rows = 0;
	printf("%-16s %3s %-12s %-17s %10s %12s %7s %8s %10s %12s %7s %6s %6s\n", "VM", "NIC", "NETWORK", "MAC", "RX FRAMES",
	       "RX BYTES", "RX DROP", "FILTERED", "TX FRAMES", "TX BYTES", "TX DROP", "FORGED", "HELD");
	json_array_foreach(vms, i, vm) {
		const char *name = json_string_value(json_object_get(vm, "name"));
		if (json_is_string(json_object_get(vm, "error"))) {
			printf("%-16s   -  %s\n", name ? name : "?", json_string_value(json_object_get(vm, "error")));
			rows++;
			continue;
		}
		json_array_foreach(json_object_get(vm, "nics"), k, nic) {
			const char *net = json_string_value(json_object_get(nic, "network"));
			const char *mac = json_string_value(json_object_get(nic, "mac"));
			printf("%-16s %3lld %-12s %-17s %10lld %12lld %7lld %8lld %10lld %12lld %7lld %6lld %6lld\n",
			       name ? name : "?", counter(nic, "index"), net ? net : "-", mac ? mac : "-",
			       counter(nic, "rx_frames"), counter(nic, "rx_bytes"), counter(nic, "rx_dropped"),
			       counter(nic, "rx_filtered"), counter(nic, "tx_frames"),
			       counter(nic, "tx_bytes"), counter(nic, "tx_dropped"), counter(nic, "tx_forged"),
			       counter(nic, "rx_held"));
			rows++;
		}
	}
	if (!rows)
		printf("(no running VM with a NIC)\n");
	return 0;
}

int cmd_host_netstats(int argc, char **argv)
{
	static const struct option opts[] = { { "api", required_argument, 0, 'a' }, { "host", required_argument, 0, 'H' },
					      { "host-token-file", required_argument, 0, 'T' }, { "json", no_argument, 0, 'j' },
					      { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
	const char *usage = "glide host netstats [VM] (--api DATA/host.sock | --host HOST:PORT --host-token-file F) [--json]";
	const char *api = NULL, *host = NULL, *tf = NULL, *vm = NULL;
	char url[256], path[256], err[512];
	bool json = false;
	int opt, rc;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'a': api = optarg; break;
		case 'H': host = optarg; break;
		case 'T': tf = optarg; break;
		case 'j': json = true; break;
		case 'h': printf("usage: %s\n", usage); return 0;
		default: fprintf(stderr, "usage: %s\n", usage); return 1;
		}
	}
	if (optind < argc)
		vm = argv[optind++];
	if (optind < argc || !!api == !!host || (host && !tf)) {
		fprintf(stderr, "glide: give the agent: --api DATA/host.sock on its host, or --host HOST:PORT with "
				"--host-token-file F (the token it was started with)\nusage: %s\n", usage);
		return 1;
	}
	if (vm && !ctl_name_ok(vm))
		return 1;
	if (vm ? ctl_path(path, sizeof(path), "/v1/vms/", vm, "/netstats") : (snprintf(path, sizeof(path), "/v1/netstats"), 0))
		return 1;
	struct http_client_opts co = { .target = api, .timeout_ms = 30000 };
	char *token = NULL;
	if (host) {
		snprintf(url, sizeof(url), "%s%s", strstr(host, "://") ? "" : "http://", host);
		co.target = url;
		if (!(token = token_read_file(tf, err, sizeof(err)))) {
			fprintf(stderr, "glide: %s\n", err);
			return 1;
		}
		co.token = token;
	}
	json_t *r = NULL;
	rc = cli_call(&co, "GET", path, NULL, &r);
	if (token) {
		explicit_bzero(token, strlen(token));
		free(token);
	}
	if (!rc && json) {
		cli_print_json(r);
	} else if (!rc) {
		json_t *list = vm ? json_pack("[O]", r) : json_incref(json_object_get(r, "vms"));
		print_netstats(list);
		json_decref(list);
	}
	json_decref(r);
	return rc;
}

static void maintenance_print(json_t *r)
{
	const char *reason = json_string_value(json_object_get(r, "reason"));
	printf("host %s: maintenance %s, %zu VM(s) running there%s%s\n", json_string_value(json_object_get(r, "host")),
	       json_string_value(json_object_get(r, "state")), json_array_size(json_object_get(r, "vms_running")),
	       reason ? ": " : "", reason ? reason : "");
}

int cmd_host_maintenance(int argc, char **argv)
{
	static const struct option opts[] = { CTL_LONG_OPTIONS, { "evacuate-powered-off", no_argument, 0, 'e' },
					      { "timeout", required_argument, 0, 't' }, { "no-wait", no_argument, 0, 'n' },
					      { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
	const char *usage = "glide host maintenance enter|exit|show HOST [--evacuate-powered-off] [--timeout S] [--no-wait] [--json]";
	struct ctl c = { 0 };
	bool evac = false, wait = true;
	long timeout = 0;
	char path[256], *end;
	int opt, rc;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (ctl_option(&c, opt, optarg))
			continue;
		if (opt == 'e') {
			evac = true;
		} else if (opt == 'n') {
			wait = false;
		} else if (opt == 't' && (timeout = strtol(optarg, &end, 10)) >= 0 && timeout <= 604800 && *optarg && !*end) {
			continue;
		} else {
			if (opt == 't')
				fprintf(stderr, "glide: --timeout '%s': give seconds, 0 (none) to 604800\n", optarg);
			else
				fprintf(opt == 'h' ? stdout : stderr, "usage: %s\n", usage);
			return opt == 'h' ? 0 : 1;
		}
	}
	if (argc - optind != 2 || (strcmp(argv[optind], "enter") && strcmp(argv[optind], "exit") && strcmp(argv[optind], "show"))) {
		fprintf(stderr, "glide: give enter, exit or show, and the HOST\nusage: %s\n", usage);
		return 1;
	}
	const char *verb = argv[optind], *host = argv[optind + 1];
	if (ctl_path(path, sizeof(path), "/v1/hosts/", host, "/maintenance"))
		return 1;
	if ((rc = ctl_connect(&c)))
		return rc;
	json_t *r = NULL, *body = NULL;
	if (strcmp(verb, "show")) {
		body = json_pack("{s:s}", "action", verb);
		if (evac)
			json_object_set_new(body, "evacuate_powered_off", json_true());
		if (timeout)
			json_object_set_new(body, "timeout_s", json_integer(timeout));
	}
	rc = ctl_call(&c, body ? "POST" : "GET", path, body, &r);
	json_decref(body);
	/* enter: follow it until the host is in maintenance (or the attempt timed out) */
	char last[4096] = "";
	while (!rc && !strcmp(verb, "enter") && wait && !strcmp(json_string_value(json_object_get(r, "state")), "entering")) {
		const char *reason = json_string_value(json_object_get(r, "reason"));
		if (!c.json && reason && strcmp(reason, last)) {
			maintenance_print(r);
			fflush(stdout);
			snprintf(last, sizeof(last), "%s", reason);
		}
		sleep_ns(500000000ULL);
		json_decref(r);
		r = NULL;
		rc = ctl_call(&c, "GET", path, NULL, &r);
	}
	if (!rc && c.json)
		cli_print_json(r);
	else if (!rc)
		maintenance_print(r);
	if (!rc && !strcmp(verb, "enter") && wait && strcmp(json_string_value(json_object_get(r, "state")), "in"))
		rc = 3; /* it did not get there (timed out) */
	json_decref(r);
	ctl_done(&c);
	return rc;
}
