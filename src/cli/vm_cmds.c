/* `glide vm run|status|pause|resume|shutdown|snapshot|memsave|capture`: the VM
 * monitor's own commands. All but `run` talk to a monitor's API socket;
 * `capture NAME` goes through the controller to the VM's host agent. */
#include "cli/cli.h"
#include "cli/ctl.h"
#include "host/host.h"
#include "monitor/monitor.h"
#include "common/util.h"
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cmd_vm_run(int argc, char **argv)
{
	return monitor_main(argc, argv);
}

struct vm_cli_opts {
	const char *api;
	bool json;
	const char *to;
	const char *addr, *size;
	bool resume;
	const char *count, *nic, *seconds;
};

static int parse_opts(int argc, char **argv, struct vm_cli_opts *o, const char *usage)
{
	static const struct option opts[] = {
		{ "api", required_argument, 0, 'a' }, { "json", no_argument, 0, 'j' },
		{ "to", required_argument, 0, 't' },  { "addr", required_argument, 0, 'A' },
		{ "size", required_argument, 0, 's' }, { "resume", no_argument, 0, 'r' },
		{ "count", required_argument, 0, 'c' }, { "nic", required_argument, 0, 'n' },
		{ "seconds", required_argument, 0, 'S' },
		{ "help", no_argument, 0, 'h' },      { 0, 0, 0, 0 },
	};
	int opt;

	memset(o, 0, sizeof(*o));
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'a': o->api = optarg; break;
		case 'j': o->json = true; break;
		case 't': o->to = optarg; break;
		case 'A': o->addr = optarg; break;
		case 's': o->size = optarg; break;
		case 'r': o->resume = true; break;
		case 'c': o->count = optarg; break;
		case 'n': o->nic = optarg; break;
		case 'S': o->seconds = optarg; break;
		case 'h': printf("usage: %s\n", usage); exit(0);
		default: fprintf(stderr, "usage: %s\n", usage); return 1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "glide: unexpected argument '%s'\nusage: %s\n", argv[optind], usage);
		return 1;
	}
	if (!o->api) {
		fprintf(stderr, "glide: --api SOCKET is required (the VM monitor's API socket)\nusage: %s\n", usage);
		return 1;
	}
	return 0;
}

static void print_status(json_t *j)
{
	char mem[32];
	json_t *ex = json_object_get(j, "exits");
	printf("state:    %s\n", json_string_value(json_object_get(j, "state")));
	if (json_string_length(json_object_get(j, "name")))
		printf("name:     %s\n", json_string_value(json_object_get(j, "name")));
	printf("vcpus:    %lld\n", json_integer_value(json_object_get(j, "vcpus")));
	printf("memory:   %s\n", format_size((uint64_t)json_integer_value(json_object_get(j, "memory")), mem, sizeof(mem)));
	printf("uptime:   %.1f s\n", json_integer_value(json_object_get(j, "uptime_ms")) / 1000.0);
	printf("exits:    %lld (io %lld, mmio %lld)\n", json_integer_value(json_object_get(ex, "total")),
	       json_integer_value(json_object_get(ex, "io")), json_integer_value(json_object_get(ex, "mmio")));
}

static int simple(int argc, char **argv, const char *method, const char *path, const char *usage)
{
	struct vm_cli_opts o;
	json_t *resp = NULL;
	int rc = parse_opts(argc, argv, &o, usage);
	if (rc)
		return rc;
	struct http_client_opts co = { .target = o.api };
	rc = cli_call(&co, method, path, NULL, &resp);
	if (!rc) {
		if (o.json)
			cli_print_json(resp);
		else
			print_status(resp);
	}
	json_decref(resp);
	return rc;
}

int cmd_vm_status(int argc, char **argv)
{
	return simple(argc, argv, "GET", "/v1/vm", "glide vm status --api SOCKET [--json]");
}

int cmd_vm_pause(int argc, char **argv)
{
	return simple(argc, argv, "POST", "/v1/vm/pause", "glide vm pause --api SOCKET [--json]");
}

int cmd_vm_resume(int argc, char **argv)
{
	return simple(argc, argv, "POST", "/v1/vm/resume", "glide vm resume --api SOCKET [--json]");
}

int cmd_vm_shutdown(int argc, char **argv)
{
	struct vm_cli_opts o;
	json_t *resp = NULL;
	const char *usage = "glide vm shutdown --api SOCKET [--json]";
	int rc = parse_opts(argc, argv, &o, usage);
	if (rc)
		return rc;
	struct http_client_opts co = { .target = o.api };
	rc = cli_call(&co, "POST", "/v1/vm/shutdown", NULL, &resp);
	if (!rc) {
		if (o.json)
			cli_print_json(resp);
		else
			printf("VM is shutting down\n");
	}
	json_decref(resp);
	return rc;
}

int cmd_vm_snapshot(int argc, char **argv)
{
	struct vm_cli_opts o;
	json_t *resp = NULL, *body;
	const char *usage = "glide vm snapshot --api SOCKET --to FILE [--resume] [--json]";
	int rc = parse_opts(argc, argv, &o, usage);
	if (rc)
		return rc;
	if (!o.to) {
		fprintf(stderr, "glide: --to FILE is required\nusage: %s\n", usage);
		return 1;
	}
	char *path = cli_abs_path(o.to);
	body = json_pack("{s:s, s:b}", "path", path, "resume", o.resume);
	struct http_client_opts co = { .target = o.api, .timeout_ms = 600000 };
	rc = cli_call(&co, "POST", "/v1/vm/snapshot", body, &resp);
	if (!rc) {
		if (o.json)
			cli_print_json(resp);
		else
			printf("snapshot written to %s (pause %.1f ms, write %.1f ms); VM is %s\n", path,
			       json_real_value(json_object_get(resp, "pause_ms")),
			       json_real_value(json_object_get(resp, "write_ms")),
			       json_string_value(json_object_get(resp, "state")));
	}
	free(path);
	json_decref(body);
	json_decref(resp);
	return rc;
}

int cmd_vm_memsave(int argc, char **argv)
{
	struct vm_cli_opts o;
	json_t *resp = NULL, *body;
	uint64_t addr, size;
	const char *usage = "glide vm memsave --api SOCKET --addr ADDR --size SIZE --to FILE [--json]";
	int rc = parse_opts(argc, argv, &o, usage);
	if (rc)
		return rc;
	if (!o.to || !o.addr || !o.size) {
		fprintf(stderr, "glide: --addr, --size and --to are required\nusage: %s\n", usage);
		return 1;
	}
	if (parse_size(o.addr, &addr)) {
		fprintf(stderr, "glide: --addr '%s' is not an address (examples: 0x100000, 1M, 1048576)\n", o.addr);
		return 1;
	}
	if (parse_size(o.size, &size) || !size) {
		fprintf(stderr, "glide: --size '%s' is not a size (examples: 4096, 0x1000, 128M)\n", o.size);
		return 1;
	}
	char *path = cli_abs_path(o.to);
	body = json_pack("{s:I, s:I, s:s}", "addr", (json_int_t)addr, "size", (json_int_t)size, "path", path);
	struct http_client_opts co = { .target = o.api, .timeout_ms = 600000 };
	rc = cli_call(&co, "POST", "/v1/vm/memsave", body, &resp);
	if (!rc) {
		if (o.json)
			cli_print_json(resp);
		else
			printf("wrote %llu bytes from 0x%llx to %s\n", (unsigned long long)size, (unsigned long long)addr, path);
	}
	free(path);
	json_decref(body);
	json_decref(resp);
	return rc;
}


struct capture_args {
	long nic, count;
	double seconds;
};

/* --nic, --count and --seconds of `glide vm capture` (each NULL when not
 * given: NIC 0, 1000 frames, 10 s), within the limits of the way the
 * capture is taken; prints the error. */
static int capture_args_parse(const char *nic, const char *count, const char *seconds, long max_count, int max_seconds,
			      struct capture_args *a)
{
	char *end;
	*a = (struct capture_args){ .nic = 0, .count = 1000, .seconds = 10 };
	if (nic && ((a->nic = strtol(nic, &end, 10)) < 0 || *end || !*nic || a->nic >= VM_MAX_NICS)) {
		fprintf(stderr, "glide: --nic must be 0 to %d\n", VM_MAX_NICS - 1);
		return 1;
	}
	if (count && ((a->count = strtol(count, &end, 10)) < 1 || *end || !*count || a->count > max_count)) {
		fprintf(stderr, "glide: --count must be 1 to %ld frames\n", max_count);
		return 1;
	}
	if (seconds && parse_seconds(seconds, 0.1, max_seconds, &a->seconds)) {
		fprintf(stderr, "glide: --seconds must be 0.1 to %d\n", max_seconds);
		return 1;
	}
	return 0;
}

/* `glide vm capture NAME ...`: through the controller, which asks the
 * agent of the VM's host; the pcap comes back in the answer. */
static int capture_via_center(int argc, char **argv, const char *usage)
{
	static const struct option opts[] = { CTL_LONG_OPTIONS, { "to", required_argument, 0, 't' },
					      { "nic", required_argument, 0, 'n' }, { "count", required_argument, 0, 'c' },
					      { "seconds", required_argument, 0, 's' }, { "help", no_argument, 0, 'h' },
					      { 0, 0, 0, 0 } };
	struct ctl c = { 0 };
	const char *name = argv[1], *to = NULL, *nic_arg = NULL, *count_arg = NULL, *seconds_arg = NULL;
	struct capture_args a;
	char path[256];
	int opt;

	optind = 2;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (ctl_option(&c, opt, optarg))
			continue;
		switch (opt) {
		case 't': to = optarg; break;
		case 'n': nic_arg = optarg; break;
		case 'c': count_arg = optarg; break;
		case 's': seconds_arg = optarg; break;
		case 'h': printf("usage: %s\n", usage); return 0;
		default: fprintf(stderr, "usage: %s\n", usage); return 1;
		}
	}
	if (optind < argc || !to) {
		fprintf(stderr, "glide: %s\nusage: %s\n", !to ? "--to FILE is required" : "one VM name only", usage);
		return 1;
	}
	/* through the controller: the agent's limits */
	if (capture_args_parse(nic_arg, count_arg, seconds_arg, HOST_CAPTURE_FRAMES_MAX, HOST_CAPTURE_SECONDS_MAX, &a))
		return 1;
	if (!ctl_name_ok(name) || ctl_path(path, sizeof(path), "/v1/vms/", name, "/capture") || ctl_connect(&c))
		return 1;
	c.co.timeout_ms = (long)(a.seconds * 1000) + 30000;
	json_t *body = json_pack("{s:i, s:I, s:f}", "nic", (int)a.nic, "count", (json_int_t)a.count, "seconds", a.seconds), *r = NULL;
	int rc = ctl_call(&c, "POST", path, body, &r);
	json_decref(body);
	const char *b64 = json_string_value(json_object_get(r, "pcap_base64"));
	size_t blen = b64 ? strlen(b64) : 0;
	if (!rc && (!b64 || blen % 4)) {
		fprintf(stderr, "glide: the answer carries no pcap\n");
		rc = 1;
	}
	uint8_t *pcap = rc ? NULL : malloc(blen / 4 * 3 + 1);
	int n = pcap ? EVP_DecodeBlock(pcap, (const unsigned char *)b64, (int)blen) : -1;
	if (!rc && n >= 0) /* EVP_DecodeBlock counts the padding as bytes */
		n -= (blen && b64[blen - 1] == '=') + (blen > 1 && b64[blen - 2] == '=');
	if (!rc && (n < 0 || (json_integer_value(json_object_get(r, "bytes")) != n))) {
		fprintf(stderr, "glide: the pcap in the answer is damaged\n");
		rc = 1;
	}
	if (!rc) {
		/* frames of other machines' traffic: readable by the owner only */
		int fd = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		int wrc = fd < 0 ? -errno : write_full(fd, pcap, (size_t)n);
		if (fd >= 0 && close(fd) && !wrc)
			wrc = -errno;
		if (wrc) {
			fprintf(stderr, "glide: cannot write %s: %s\n", to, strerror(-wrc));
			rc = 1;
		}
	}
	if (!rc && c.json)
		cli_print_json(r);
	else if (!rc)
		printf("captured %lld frame(s) of NIC %ld of VM %s on host %s to %s\n",
		       json_integer_value(json_object_get(r, "frames")), a.nic, name,
		       json_string_value(json_object_get(r, "host")) ? json_string_value(json_object_get(r, "host")) : "?", to);
	free(pcap);
	json_decref(r);
	ctl_done(&c);
	return rc;
}

/* glide vm capture: a NIC's frames into a pcap file until --count frames
 * or --seconds have passed (then the capture is stopped), like pktcap-uw. */
int cmd_vm_capture(int argc, char **argv)
{
	struct vm_cli_opts o;
	json_t *resp = NULL, *body;
	const char *usage = "glide vm capture (--api SOCKET | NAME [--center URL] [--token-file F]) --to FILE [--nic I] "
			    "[--count N] [--seconds S] [--json]";
	if (argc > 1 && argv[1][0] != '-')
		return capture_via_center(argc, argv, usage);
	struct capture_args a;
	int rc = parse_opts(argc, argv, &o, usage);
	if (rc)
		return rc;
	if (!o.to) {
		fprintf(stderr, "glide: --to FILE is required\nusage: %s\n", usage);
		return 1;
	}
	if (capture_args_parse(o.nic, o.count, o.seconds, NET_CAPTURE_MAX_FRAMES, 86400, &a))
		return 1;
	long nic = a.nic, count = a.count;
	double seconds = a.seconds;
	char *path = cli_abs_path(o.to);
	body = json_pack("{s:s, s:i, s:I}", "path", path, "nic", (int)nic, "count", (json_int_t)count);
	struct http_client_opts co = { .target = o.api };
	rc = cli_call(&co, "POST", "/v1/vm/capture", body, &resp);
	json_decref(body);
	json_decref(resp);
	resp = NULL;
	if (rc) {
		free(path);
		return rc;
	}
	char query[64];
	snprintf(query, sizeof(query), "/v1/vm/capture?nic=%ld", nic);
	uint64_t until = now_ns() + (uint64_t)(seconds * 1e9);
	while (!rc && now_ns() < until) {
		rc = cli_call(&co, "GET", query, NULL, &resp);
		bool active = !rc && json_is_true(json_object_get(resp, "active"));
		json_decref(resp);
		resp = NULL;
		if (!active)
			break;
		sleep_ns(100000000);
	}
	body = json_pack("{s:i}", "nic", (int)nic);
	if (!rc)
		rc = cli_call(&co, "POST", "/v1/vm/capture/stop", body, &resp);
	json_decref(body);
	if (!rc) {
		if (o.json)
			cli_print_json(resp);
		else
			printf("captured %lld frame(s) of NIC %ld to %s\n", json_integer_value(json_object_get(resp, "written")),
			       nic, path);
	}
	free(path);
	json_decref(resp);
	return rc;
}
