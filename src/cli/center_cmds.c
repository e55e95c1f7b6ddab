/* `glide center serve`, `glide cluster create|list|evc|drs` and
 * `glide task list|show|watch`. */
#include "cli/ctl.h"
#include "center/center.h"
#include "common/util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ctl_parse_simple(int argc, char **argv, struct ctl *c, const char **pos, const char *usage);

int cmd_center_serve(int argc, char **argv)
{
	return center_serve_main(argc, argv);
}

int cmd_cluster_create(int argc, char **argv)
{
	static const struct option opts[] = { CTL_LONG_OPTIONS, { "evc", required_argument, 0, 'e' },
					      { "max-migrations-per-host", required_argument, 0, 'm' },
					      { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
	const char *usage = "glide cluster create NAME [--evc none|intersection|x86-64-v1..v4] [--json]";
	struct ctl c = { 0 };
	const char *evc = NULL;
	int opt, rc, mm = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (ctl_option(&c, opt, optarg))
			continue;
		if (opt == 'e')
			evc = optarg;
		else if (opt == 'm')
			mm = atoi(optarg);
		else {
			fprintf(opt == 'h' ? stdout : stderr, "usage: %s\n", usage);
			return opt == 'h' ? 0 : 1;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "glide: give the cluster's NAME\nusage: %s\n", usage);
		return 1;
	}
	if (!ctl_name_ok(argv[optind]))
		return 1;
	if ((rc = ctl_connect(&c)))
		return rc;
	json_t *body = json_pack("{s:s, s:s?}", "name", argv[optind], "evc", evc), *r = NULL;
	if (mm > 0)
		json_object_set_new(body, "max_migrations_per_host", json_integer(mm));
	rc = ctl_call(&c, "POST", "/v1/clusters", body, &r);
	if (!rc) {
		if (c.json)
			cli_print_json(r);
		else
			printf("cluster %s created (EVC %s)\n", argv[optind], json_string_value(json_object_get(r, "evc_level")));
	}
	json_decref(body);
	json_decref(r);
	ctl_done(&c);
	return rc;
}

int cmd_cluster_list(int argc, char **argv)
{
	struct ctl c = { 0 };
	json_t *r = NULL, *cl;
	size_t i;
	int rc = ctl_parse_simple(argc, argv, &c, NULL, "glide cluster list [--json]");
	if (rc)
		return rc < 0 ? 0 : rc;
	rc = ctl_call(&c, "GET", "/v1/clusters", NULL, &r);
	if (!rc && c.json)
		cli_print_json(r);
	else if (!rc) {
		printf("%-16s %-14s %6s %6s\n", "NAME", "EVC", "HOSTS", "VMS");
		json_array_foreach(json_object_get(r, "clusters"), i, cl)
			printf("%-16s %-14s %6lld %6lld\n", json_string_value(json_object_get(cl, "name")),
			       json_string_value(json_object_get(cl, "evc_level")), json_integer_value(json_object_get(cl, "hosts")),
			       json_integer_value(json_object_get(cl, "vms")));
	}
	json_decref(r);
	ctl_done(&c);
	return rc;
}

int cmd_cluster_evc(int argc, char **argv)
{
	static const struct option opts[] = { CTL_LONG_OPTIONS, { "set", required_argument, 0, 's' },
					      { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
	const char *usage = "glide cluster evc NAME [--set none|intersection|x86-64-v1..v4] [--json]";
	struct ctl c = { 0 };
	const char *set = NULL;
	char path[256];
	int opt, rc;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (ctl_option(&c, opt, optarg))
			continue;
		if (opt == 's')
			set = optarg;
		else {
			fprintf(opt == 'h' ? stdout : stderr, "usage: %s\n", usage);
			return opt == 'h' ? 0 : 1;
		}
	}
	const char *name = optind < argc ? argv[optind] : "default";
	if (!ctl_name_ok(name) || ctl_path(path, sizeof(path), "/v1/clusters/", name, "/evc"))
		return 1;
	if ((rc = ctl_connect(&c)))
		return rc;
	json_t *r = NULL, *body = set ? json_pack("{s:s}", "level", set) : NULL;
	rc = ctl_call(&c, set ? "POST" : "GET", path, body, &r);
	json_decref(body);
	if (!rc && c.json) {
		cli_print_json(r);
	} else if (!rc) {
		json_t *v;
		size_t i;
		printf("cluster %s: EVC baseline %s\n", json_string_value(json_object_get(r, "cluster")),
		       json_string_value(json_object_get(r, "baseline")));
		printf("\n%-16s %-13s %-12s %s\n", "HOST", "STATE", "MAX LEVEL", "MEETS BASELINE");
		json_array_foreach(json_object_get(r, "hosts"), i, v)
			printf("%-16s %-13s %-12s %s%s%s\n", json_string_value(json_object_get(v, "name")),
			       json_string_value(json_object_get(v, "state")),
			       json_string_value(json_object_get(v, "max_level")) ? json_string_value(json_object_get(v, "max_level")) : "-",
			       json_is_true(json_object_get(v, "meets_baseline")) ? "yes" : "no",
			       json_string_value(json_object_get(v, "missing")) ? ", lacks " : "",
			       json_string_value(json_object_get(v, "missing")) ? json_string_value(json_object_get(v, "missing")) : "");
		printf("\n%-20s %-10s %-14s %s\n", "VM", "STATE", "LEVEL", "POWERED-ON LEVEL");
		json_array_foreach(json_object_get(r, "vms"), i, v)
			printf("%-20s %-10s %-14s %s\n", json_string_value(json_object_get(v, "name")),
			       json_string_value(json_object_get(v, "state")), json_string_value(json_object_get(v, "level")),
			       json_string_value(json_object_get(v, "powered_on_level")) ? json_string_value(json_object_get(v, "powered_on_level")) : "-");
	}
	json_decref(r);
	ctl_done(&c);
	return rc;
}

int cmd_task_list(int argc, char **argv)
{
	struct ctl c = { 0 };
	json_t *r = NULL, *t;
	size_t i;
	int rc = ctl_parse_simple(argc, argv, &c, NULL, "glide task list [--json]");
	if (rc)
		return rc < 0 ? 0 : rc;
	rc = ctl_call(&c, "GET", "/v1/tasks", NULL, &r);
	if (!rc && c.json)
		cli_print_json(r);
	else if (!rc) {
		printf("%5s %-12s %-14s %-10s %5s  %s\n", "ID", "KIND", "VM", "STATE", "PROG", "MESSAGE");
		json_array_foreach(json_object_get(r, "tasks"), i, t)
			printf("%5lld %-12s %-14s %-10s %4.0f%%  %s\n", json_integer_value(json_object_get(t, "id")),
			       json_string_value(json_object_get(t, "kind")),
			       json_string_value(json_object_get(t, "vm")) ? json_string_value(json_object_get(t, "vm")) : "-",
			       json_string_value(json_object_get(t, "state")), json_number_value(json_object_get(t, "progress")) * 100,
			       json_string_value(json_object_get(t, "message")) ? json_string_value(json_object_get(t, "message")) : "");
	}
	json_decref(r);
	ctl_done(&c);
	return rc;
}

int cmd_task_show(int argc, char **argv)
{
	struct ctl c = { 0 };
	const char *id;
	char path[64];
	json_t *r = NULL;
	int rc = ctl_parse_simple(argc, argv, &c, &id, "glide task show ID [--json]");
	if (rc)
		return rc < 0 ? 0 : rc;
	snprintf(path, sizeof(path), "/v1/tasks/%lld", atoll(id));
	rc = ctl_call(&c, "GET", path, NULL, &r);
	if (!rc) {
		if (c.json)
			cli_print_json(r);
		else
			ctl_print_task(r);
	}
	json_decref(r);
	ctl_done(&c);
	return rc;
}

int cmd_task_watch(int argc, char **argv)
{
	struct ctl c = { 0 };
	const char *id;
	json_t *r = NULL;
	int rc = ctl_parse_simple(argc, argv, &c, &id, "glide task watch ID [--json]");
	if (rc)
		return rc < 0 ? 0 : rc;
	rc = ctl_watch_task(&c, atoll(id), c.json, &r);
	if (r) {
		if (c.json)
			cli_print_json(r);
		else
			ctl_print_task(r);
	}
	json_decref(r);
	ctl_done(&c);
	return rc;
}

int cmd_cluster_drs(int argc, char **argv)
{
	static const struct option opts[] = { CTL_LONG_OPTIONS, { "threshold", required_argument, 0, 't' },
					      { "run", no_argument, 0, 'r' }, { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
	const char *usage = "glide cluster drs [NAME] [--threshold 1..5 | --run] [--json]";
	struct ctl c = { 0 };
	char path[256], q[32] = "";
	int opt, rc;
	bool run = false;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (ctl_option(&c, opt, optarg))
			continue;
		if (opt == 'r') {
			run = true;
		} else if (opt == 't' && strlen(optarg) == 1 && optarg[0] >= '1' && optarg[0] <= '5') {
			snprintf(q, sizeof(q), "?threshold=%s", optarg);
		} else {
			if (opt == 't')
				fprintf(stderr, "glide: --threshold '%s': give 1 (mandatory moves only) .. 5 (aggressive)\n", optarg);
			else
				fprintf(opt == 'h' ? stdout : stderr, "usage: %s\n", usage);
			return opt == 'h' ? 0 : 1;
		}
	}
	const char *name = optind < argc ? argv[optind] : "default";
	if (!ctl_name_ok(name) || ctl_path(path, sizeof(path), "/v1/clusters/", name, "/drs") ||
	    strlen(path) + strlen(q) >= sizeof(path))
		return 1;
	if (run && *q) {
		fprintf(stderr, "glide: --run uses the cluster's threshold (set it with `glide cluster set --drs-threshold`)\n");
		return 1;
	}
	strcat(path, q);
	if ((rc = ctl_connect(&c)))
		return rc;
	json_t *r = NULL, *v, *body = run ? json_pack("{s:b}", "run", 1) : NULL;
	size_t i;
	rc = ctl_call(&c, run ? "POST" : "GET", path, body, &r);
	json_decref(body);
	if (!rc && c.json) {
		cli_print_json(r);
	} else if (!rc) {
		printf("cluster %s: DRS score %.0f%% (%s), %s, threshold %lld\n", json_string_value(json_object_get(r, "cluster")),
		       json_number_value(json_object_get(r, "score")), json_string_value(json_object_get(r, "bucket")),
		       json_string_value(json_object_get(r, "mode")), json_integer_value(json_object_get(r, "threshold")));
		printf("%-20s %-16s %8s %7s %6s  %s\n", "VM", "HOST", "CPU", "READY", "SCORE", "ON OTHER HOSTS");
		json_array_foreach(json_object_get(r, "vms"), i, v) {
			const char *k;
			json_t *s;
			char other[512] = "";
			size_t used = 0;
			json_object_foreach(json_object_get(v, "score_on"), k, s)
				if (used < sizeof(other))
					used += (size_t)snprintf(other + used, sizeof(other) - used, "%s%s %.0f%%", used ? ", " : "", k,
								 json_number_value(s));
			json_t *ready = json_object_get(v, "ready_pct");
			char rb[16] = "-";
			if (json_is_number(ready))
				snprintf(rb, sizeof(rb), "%.0f%%", json_number_value(ready));
			printf("%-20s %-16s %8.2f %7s %5.0f%%  %s\n", json_string_value(json_object_get(v, "name")),
			       json_string_value(json_object_get(v, "host")), json_number_value(json_object_get(v, "cpu_demand")),
			       rb, json_number_value(json_object_get(v, "score")), other);
		}
		json_t *recs = json_object_get(r, "recommendations");
		if (!json_array_size(recs))
			printf("no recommendations\n");
		json_array_foreach(recs, i, v) {
			const char *to = json_string_value(json_object_get(v, "to"));
			char id[64] = "", done[64] = "";
			if (json_is_integer(json_object_get(v, "id")))
				snprintf(id, sizeof(id), "[%lld] ", json_integer_value(json_object_get(v, "id")));
			if (json_is_integer(json_object_get(v, "task")))
				snprintf(done, sizeof(done), "; applied: task %lld", json_integer_value(json_object_get(v, "task")));
			if (to)
				printf("%srecommend: move %s from %s to %s (%s): cluster %.0f%% -> %.0f%%, gain %.0f points, cost %.1f%s\n",
				       id, json_string_value(json_object_get(v, "vm")), json_string_value(json_object_get(v, "from")), to,
				       json_string_value(json_object_get(v, "reason")),
				       json_number_value(json_object_get(v, "cluster_before")),
				       json_number_value(json_object_get(v, "cluster_after")),
				       json_number_value(json_object_get(v, "gain")), json_number_value(json_object_get(v, "cost")), done);
			else
				printf("blocked: %s must leave %s (%s), but no allowed host takes it\n",
				       json_string_value(json_object_get(v, "vm")), json_string_value(json_object_get(v, "from")),
				       json_string_value(json_object_get(v, "reason")));
		}
	}
	json_decref(r);
	ctl_done(&c);
	return rc;
}

static const char *limit_text(json_t *r)
{
	static char buf[32];
	snprintf(buf, sizeof(buf), "%lld", json_integer_value(json_object_get(r, "max_migrations_per_host")));
	return buf;
}

int cmd_cluster_set(int argc, char **argv)
{
	static const struct option opts[] = { CTL_LONG_OPTIONS, { "drs", required_argument, 0, 'd' },
					      { "drs-threshold", required_argument, 0, 't' },
					      { "max-migrations-per-host", required_argument, 0, 'm' }, { "help", no_argument, 0, 'h' },
					      { 0, 0, 0, 0 } };
	const char *usage = "glide cluster set [NAME] [--drs manual|partial|full] [--drs-threshold 1..5]\n"
			    "                         [--max-migrations-per-host N|default] [--json]";
	struct ctl c = { 0 };
	const char *mode = NULL;
	char path[256];
	int opt, rc, threshold = 0;
	json_t *limit = NULL;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (ctl_option(&c, opt, optarg))
			continue;
		if (opt == 'd') {
			mode = optarg;
		} else if (opt == 'm') {
			char *end;
			long n = strtol(optarg, &end, 10);
			json_decref(limit);
			if (!strcmp(optarg, "default")) {
				limit = json_null();
			} else if (*end || end == optarg || n < 1 || n > 1024) {
				fprintf(stderr, "glide: --max-migrations-per-host '%s': give a budget of migration cost 1..1024 (a live move "
					"costs 1, one that copies disks 4) or 'default' (the controller's)\n", optarg);
				return 1;
			} else {
				limit = json_integer(n);
			}
		} else if (opt == 't' && strlen(optarg) == 1 && optarg[0] >= '1' && optarg[0] <= '5') {
			threshold = optarg[0] - '0';
		} else {
			if (opt == 't')
				fprintf(stderr, "glide: --drs-threshold '%s': give 1 (mandatory moves only) .. 5 (aggressive)\n", optarg);
			else
				fprintf(opt == 'h' ? stdout : stderr, "usage: %s\n", usage);
			json_decref(limit);
			return opt == 'h' ? 0 : 1;
		}
	}
	if (!mode && !threshold && !limit) {
		fprintf(stderr, "glide: nothing to set\nusage: %s\n", usage);
		return 1;
	}
	const char *name = optind < argc ? argv[optind] : "default";
	if (!ctl_name_ok(name) || ctl_path(path, sizeof(path), "/v1/clusters/", name, "/limits") || (rc = ctl_connect(&c))) {
		json_decref(limit);
		return 1;
	}
	json_t *r = NULL, *body;
	if (limit) {
		body = json_pack("{s:o}", "max_migrations_per_host", limit);
		rc = ctl_call(&c, "POST", path, body, &r);
		json_decref(body);
		if (!rc && !c.json)
			printf("cluster %s: migration cost budget per host %s\n", name,
			       json_is_integer(json_object_get(r, "max_migrations_per_host")) ? limit_text(r) : "the controller's");
		else if (!rc && !mode && !threshold)
			cli_print_json(r);
		json_decref(r);
		r = NULL;
		if (rc || (!mode && !threshold)) {
			ctl_done(&c);
			return rc;
		}
	}
	ctl_path(path, sizeof(path), "/v1/clusters/", name, "/drs");
	body = json_pack("{s:s?}", "mode", mode);
	if (threshold)
		json_object_set_new(body, "threshold", json_integer(threshold));
	rc = ctl_call(&c, "POST", path, body, &r);
	json_decref(body);
	if (!rc && c.json)
		cli_print_json(r);
	else if (!rc)
		printf("cluster %s: DRS %s, threshold %lld\n", name, json_string_value(json_object_get(r, "mode")),
		       json_integer_value(json_object_get(r, "threshold")));
	json_decref(r);
	ctl_done(&c);
	return rc;
}

int cmd_drs_apply(int argc, char **argv)
{
	struct ctl c = { 0 };
	const char *pos = NULL;
	char path[64];
	json_t *r = NULL;
	int rc = ctl_parse_simple(argc, argv, &c, &pos, "glide drs apply ID [--json]");
	if (rc)
		return rc < 0 ? 0 : rc;
	if (!pos || !*pos || strspn(pos, "0123456789") != strlen(pos) || strlen(pos) > 18) {
		fprintf(stderr, "glide: give the recommendation's ID (a number, from `glide cluster drs --run`)\n");
		ctl_done(&c);
		return 1;
	}
	snprintf(path, sizeof(path), "/v1/drs/%s/apply", pos);
	rc = ctl_call(&c, "POST", path, NULL, &r);
	if (!rc && c.json)
		cli_print_json(r);
	else if (!rc)
		printf("recommendation %s applied: task %lld (`glide task watch %lld`)\n", pos,
		       json_integer_value(json_object_get(r, "task")), json_integer_value(json_object_get(r, "task")));
	json_decref(r);
	ctl_done(&c);
	return rc;
}

/* "a,b,c" as a JSON array of names (NULL when a name is not valid). */
static json_t *name_array(const char *list)
{
	json_t *a = json_array();
	char buf[4096], *save = NULL;
	snprintf(buf, sizeof(buf), "%s", list);
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (!ctl_name_ok(t)) {
			json_decref(a);
			return NULL;
		}
		json_array_append_new(a, json_string(t));
	}
	return a;
}

int cmd_rule_create(int argc, char **argv)
{
	static const struct option opts[] = { CTL_LONG_OPTIONS, { "cluster", required_argument, 0, 'c' },
					      { "kind", required_argument, 0, 'k' }, { "vms", required_argument, 0, 'v' },
					      { "hosts", required_argument, 0, 'H' }, { "vm-group", required_argument, 0, 'V' },
					      { "host-group", required_argument, 0, 'G' }, { "help", no_argument, 0, 'h' },
					      { 0, 0, 0, 0 } };
	const char *usage = "glide rule create NAME --kind affinity|anti-affinity|must-run-on|must-not-run-on|should-run-on|"
			    "should-not-run-on\n"
			    "                         (--vms VM,VM... | --vm-group G) [--hosts HOST,... | --host-group G] [--cluster C] [--json]";
	struct ctl c = { 0 };
	const char *cluster = NULL, *kind = NULL, *vms = NULL, *hosts = NULL, *vm_group = NULL, *host_group = NULL;
	int opt, rc;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (ctl_option(&c, opt, optarg))
			continue;
		if (opt == 'c')
			cluster = optarg;
		else if (opt == 'k')
			kind = optarg;
		else if (opt == 'v')
			vms = optarg;
		else if (opt == 'H')
			hosts = optarg;
		else if (opt == 'V')
			vm_group = optarg;
		else if (opt == 'G')
			host_group = optarg;
		else {
			fprintf(opt == 'h' ? stdout : stderr, "usage: %s\n", usage);
			return opt == 'h' ? 0 : 1;
		}
	}
	if (optind != argc - 1 || !kind || !vms == !vm_group || (hosts && host_group)) {
		fprintf(stderr, "glide: give the rule's NAME, --kind and --vms or --vm-group (and --hosts or --host-group)\nusage: %s\n",
			usage);
		return 1;
	}
	if (!ctl_name_ok(argv[optind]) || (vm_group && !ctl_name_ok(vm_group)) || (host_group && !ctl_name_ok(host_group)))
		return 1;
	json_t *va = vms ? name_array(vms) : json_null(), *ha = hosts ? name_array(hosts) : host_group ? json_null() : json_array();
	if (!va || !ha) {
		json_decref(va);
		json_decref(ha);
		return 1;
	}
	if ((rc = ctl_connect(&c))) {
		json_decref(va);
		json_decref(ha);
		return rc;
	}
	json_t *r = NULL, *body = json_pack("{s:s, s:s?, s:s, s:s?, s:s?}", "name", argv[optind], "cluster", cluster, "kind", kind,
					    "vm_group", vm_group, "host_group", host_group);
	if (!json_is_null(va))
		json_object_set(body, "vms", va);
	if (!json_is_null(ha))
		json_object_set(body, "hosts", ha);
	json_decref(va);
	json_decref(ha);
	rc = ctl_call(&c, "POST", "/v1/rules", body, &r);
	json_decref(body);
	if (!rc && c.json)
		cli_print_json(r);
	else if (!rc)
		printf("rule %s (%s) created in cluster %s\n", argv[optind], kind, json_string_value(json_object_get(r, "cluster")));
	json_decref(r);
	ctl_done(&c);
	return rc;
}

/* `glide rule|group list [--cluster C]`: GET base[?cluster=C] into *r
 * (0), or the exit status (usage: -1 for --help, printed). */
static int cluster_listing(int argc, char **argv, const char *usage, const char *base, struct ctl *c, json_t **r)
{
	static const struct option opts[] = { CTL_LONG_OPTIONS, { "cluster", required_argument, 0, 'c' },
					      { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
	char path[160];
	int opt, rc;
	snprintf(path, sizeof(path), "%s", base);
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (ctl_option(c, opt, optarg))
			continue;
		if (opt == 'c' && ctl_name_ok(optarg)) {
			snprintf(path, sizeof(path), "%s?cluster=%s", base, optarg);
		} else {
			fprintf(opt == 'h' ? stdout : stderr, "usage: %s\n", usage);
			return opt == 'h' ? -1 : 1;
		}
	}
	if ((rc = ctl_connect(c)))
		return rc;
	return ctl_call(c, "GET", path, NULL, r);
}

/* `glide rule|group delete NAME`: DELETE base NAME. */
static int delete_named(int argc, char **argv, const char *what, const char *base)
{
	struct ctl c = { 0 };
	const char *name = NULL;
	char path[160], usage[64];
	json_t *r = NULL;
	snprintf(usage, sizeof(usage), "glide %s delete NAME [--json]", what);
	int rc = ctl_parse_simple(argc, argv, &c, &name, usage);
	if (rc)
		return rc < 0 ? 0 : rc;
	if (!ctl_name_ok(name) || ctl_path(path, sizeof(path), base, name, "")) {
		ctl_done(&c);
		return 1;
	}
	rc = ctl_call(&c, "DELETE", path, NULL, &r);
	if (!rc && c.json)
		cli_print_json(r);
	else if (!rc)
		printf("%s %s deleted\n", what, name);
	json_decref(r);
	ctl_done(&c);
	return rc;
}

int cmd_rule_list(int argc, char **argv)
{
	struct ctl c = { 0 };
	json_t *r = NULL, *v;
	size_t i;
	int rc = cluster_listing(argc, argv, "glide rule list [--cluster C] [--json]", "/v1/rules", &c, &r);
	if (rc < 0)
		return 0;
	if (!rc && c.json) {
		cli_print_json(r);
	} else if (!rc) {
		printf("%-20s %-12s %-18s %-30s %s\n", "NAME", "CLUSTER", "KIND", "VMS", "HOSTS");
		json_array_foreach(json_object_get(r, "rules"), i, v) {
			char *vms = json_dumps(json_object_get(v, "vms"), JSON_COMPACT), *hosts = json_dumps(json_object_get(v, "hosts"), JSON_COMPACT);
			const char *vg = json_string_value(json_object_get(v, "vm_group")), *hg = json_string_value(json_object_get(v, "host_group"));
			printf("%-20s %-12s %-18s %s%s%s%-*s %s%s%s%s\n", json_string_value(json_object_get(v, "name")),
			       json_string_value(json_object_get(v, "cluster")), json_string_value(json_object_get(v, "kind")),
			       vg ? "group " : "", vg ? vg : "", vg ? " " : "", vg ? 0 : 30, vms ? vms : "",
			       hg ? "group " : "", hg ? hg : "", hg ? " " : "", hosts ? hosts : "");
			free(vms);
			free(hosts);
		}
	}
	json_decref(r);
	ctl_done(&c);
	return rc;
}

int cmd_rule_delete(int argc, char **argv)
{
	return delete_named(argc, argv, "rule", "/v1/rules/");
}

/* `glide group set|list|delete`: named VM and host groups that rules name
 * (--vm-group, --host-group); changing a group's members changes every
 * rule that names it. */
int cmd_group_set(int argc, char **argv)
{
	static const struct option opts[] = { CTL_LONG_OPTIONS, { "cluster", required_argument, 0, 'c' },
					      { "vms", required_argument, 0, 'v' }, { "hosts", required_argument, 0, 'H' },
					      { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
	const char *usage = "glide group set NAME (--vms VM,... | --hosts HOST,...) [--cluster C] [--json]";
	struct ctl c = { 0 };
	const char *cluster = NULL, *vms = NULL, *hosts = NULL;
	int opt, rc;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (ctl_option(&c, opt, optarg))
			continue;
		if (opt == 'c')
			cluster = optarg;
		else if (opt == 'v')
			vms = optarg;
		else if (opt == 'H')
			hosts = optarg;
		else {
			fprintf(opt == 'h' ? stdout : stderr, "usage: %s\n", usage);
			return opt == 'h' ? 0 : 1;
		}
	}
	if (optind != argc - 1 || !vms == !hosts) {
		fprintf(stderr, "glide: give the group's NAME and its members: --vms or --hosts\nusage: %s\n", usage);
		return 1;
	}
	json_t *members = name_array(vms ? vms : hosts);
	if (!ctl_name_ok(argv[optind]) || !members) {
		json_decref(members);
		return 1;
	}
	if ((rc = ctl_connect(&c))) {
		json_decref(members);
		return rc;
	}
	json_t *r = NULL, *body = json_pack("{s:s, s:s?, s:s, s:o}", "name", argv[optind], "cluster", cluster, "kind",
					    vms ? "vm" : "host", "members", members);
	rc = ctl_call(&c, "POST", "/v1/groups", body, &r);
	json_decref(body);
	if (!rc && c.json)
		cli_print_json(r);
	else if (!rc)
		printf("%s group %s in cluster %s: %zu member%s\n", vms ? "VM" : "host", argv[optind],
		       json_string_value(json_object_get(r, "cluster")), json_array_size(json_object_get(r, "members")),
		       json_array_size(json_object_get(r, "members")) == 1 ? "" : "s");
	json_decref(r);
	ctl_done(&c);
	return rc;
}

int cmd_group_list(int argc, char **argv)
{
	struct ctl c = { 0 };
	json_t *r = NULL, *v;
	size_t i;
	int rc = cluster_listing(argc, argv, "glide group list [--cluster C] [--json]", "/v1/groups", &c, &r);
	if (rc < 0)
		return 0;
	if (!rc && c.json) {
		cli_print_json(r);
	} else if (!rc) {
		printf("%-20s %-12s %-6s %s\n", "NAME", "CLUSTER", "KIND", "MEMBERS");
		json_array_foreach(json_object_get(r, "groups"), i, v) {
			char *m = json_dumps(json_object_get(v, "members"), JSON_COMPACT);
			printf("%-20s %-12s %-6s %s\n", json_string_value(json_object_get(v, "name")),
			       json_string_value(json_object_get(v, "cluster")), json_string_value(json_object_get(v, "kind")), m ? m : "");
			free(m);
		}
	}
	json_decref(r);
	ctl_done(&c);
	return rc;
}

int cmd_group_delete(int argc, char **argv)
{
	return delete_named(argc, argv, "group", "/v1/groups/");
}
