/* `glide migrate`: start a live migration through the source monitor's API,
 * show a live progress bar (phase, sent/remaining, rates, predicted stun,
 * SDPS level) and end with a summary, or print the final statistics as
 * JSON. Exits 0 only when the migration completed, 3 when it is in doubt
 * (GO sent, RUNNING not back). `glide migrate resolve` settles that. */
#include "cli/cli.h"
#include "common/util.h"
#include "migrate/wire.h"
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) { (void)sig; interrupted = 1; }

static void usage(FILE *out)
{
	fprintf(out, "usage: glide migrate --api SOCKET --to ADDR[,ADDR...] --key-file F\n"
		     "                     [--streams N|auto] [--switchover-goal MS] [--max-bandwidth RATE]\n"
		     "                     [--sdps off|always|dynamic] [--encrypt off|opportunistic|required]\n"
		     "                     [--compress off|lz4] [--timeout S] [--stall-timeout S] [--dscp N]\n"
		     "                     [--verify] [--disk-to PATH]... [--json] [--no-wait]\n"
		     "  --verify  compare a digest of all guest memory on both sides before the\n"
		     "            switchover commits (a mismatch fails it; the VM stays here)\n"
		     "  --disk-to PATH  copy the next disk (the first --disk-to: disk 0, ...) to the\n"
		     "            new file PATH on the destination while the VM runs (shared-nothing);\n"
		     "            \"\" leaves that disk shared. The destination must not have --disk for it\n"
		     "       glide migrate resolve --api SOCKET (--destination-api DSOCKET [--wait S] | --keep here|there)\n"
		     "            settle a migration in doubt (GO sent, RUNNING never came back): with the\n"
		     "            destination's API it looks there and decides; --keep tells it\n");
}

static double num(json_t *j, const char *k)
{
	json_t *v = json_object_get(j, k);
	return json_is_number(v) ? json_number_value(v) : 0;
}

static void progress_line(json_t *s, bool tty)
{
	char sent[32], rate[32], drate[32];
	json_t *sd = json_object_get(s, "sdps");
	double remaining = num(s, "remaining_pages") * 4096;
	int width = 24, filled;
	double phase_pages = num(s, "phase_pages");
	double frac = phase_pages > 0 ? 1.0 - num(s, "remaining_pages") / phase_pages : 0;
	filled = (int)(frac * width);
	char bar[64];
	for (int i = 0; i < width; i++)
		bar[i] = i < filled ? '#' : '.';
	bar[width] = 0;
	format_size((uint64_t)num(s, "bytes_sent"), sent, sizeof(sent));
	format_size((uint64_t)num(s, "transmit_rate"), rate, sizeof(rate));
	format_size((uint64_t)num(s, "dirty_rate"), drate, sizeof(drate));
	fprintf(stderr, "%s[%s] %-10s phase %3d  sent %10s  left %7.1f MiB  tx %9s/s  dirty %9s/s  stun~%6.0f ms  sdps %4.1f%%%s",
		tty ? "\r" : "", bar, json_string_value(json_object_get(s, "stage")), (int)num(s, "phase"), sent,
		remaining / 1048576.0, rate, drate, num(s, "predicted_stun_ms"), num(sd, "level") * 100, tty ? "\033[K" : "\n");
	fflush(stderr);
}

static void summary(json_t *s)
{
	char sent[32];
	json_t *sd = json_object_get(s, "sdps");
	const char *status = json_string_value(json_object_get(s, "status"));
	format_size((uint64_t)num(s, "bytes_sent"), sent, sizeof(sent));
	if (!strcmp(status, "completed")) {
		printf("migration completed in %.1f ms: stun %.2f ms, %s sent (%lld pages, %lld zero), %lld streams%s\n",
		       num(s, "total_ms"), num(s, "stun_ms"), sent, (long long)num(s, "pages_sent"),
		       (long long)num(s, "zero_pages"), (long long)num(s, "streams"),
		       json_is_true(json_object_get(s, "encrypted")) ? ", encrypted" : "");
		json_t *v = json_object_get(s, "verify");
		if (json_is_true(json_object_get(s, "verified")))
			printf("verified: every page of the destination's memory matches the source's at the stun "
			       "(digest %s; hashing took %.1f ms here, %.1f ms there)\n",
			       json_string_value(json_object_get(v, "digest")), num(v, "source_ms"), num(v, "destination_ms"));
		json_t *dc = json_object_get(s, "disk_copy"), *d;
		size_t k;
		json_array_foreach(json_object_get(dc, "disks"), k, d)
			printf("disk %d copied to %s on the destination\n", (int)num(d, "index"),
			       json_string_value(json_object_get(d, "path")));
		if (dc)
			printf("disk blocks sent: %lld of 4 KiB (%lld of them zero, sent as runs)\n",
			       (long long)num(dc, "blocks_sent"), (long long)num(dc, "zero_blocks"));
		if (num(sd, "max_level") > 0)
			printf("SDPS: up to %.1f%% throttle, %.1f ms of guest run time taken\n", num(sd, "max_level") * 100,
			       num(sd, "guest_time_ms"));
		json_t *ph;
		size_t i;
		printf("%6s %10s %10s %12s %10s %14s %14s\n", "phase", "pages", "zero", "bytes", "ms", "dirty B/s", "tx B/s");
		json_array_foreach(json_object_get(s, "phases"), i, ph)
			printf("%6d %10lld %10lld %12lld %10.1f %14.0f %14.0f\n", (int)num(ph, "number"),
			       (long long)num(ph, "pages"), (long long)num(ph, "zero_pages"), (long long)num(ph, "bytes"),
			       num(ph, "duration_ms"), num(ph, "dirty_rate"), num(ph, "transmit_rate"));
	} else {
		fprintf(stderr, "glide: migration %s: %s\n", status, json_string_value(json_object_get(s, "error")));
		if (json_is_true(json_object_get(s, "source_resumed")))
			fprintf(stderr, "glide: the VM stays on the source, as it was\n");
		else
			fprintf(stderr, "glide: the source monitor is stopping; the VM did not move\n");
	}
}

/* Where does the VM of an in-doubt migration live? From the destination
 * monitor's API: "there" when it runs (or ran) the VM, "here" when its
 * process is gone (socket absent or refusing: it discarded its copy and
 * exited), NULL while it still waits for GO (it will fail and exit within
 * its stall timeout) or when it cannot be told. */
static const char *destination_verdict(const char *dapi, char *why, size_t len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	json_t *r = NULL;
	char err[512];
	long status;

	if (strlen(dapi) >= sizeof(sa.sun_path)) {
		snprintf(why, len, "the destination API path is too long");
		return NULL;
	}
	memcpy(sa.sun_path, dapi, strlen(dapi) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int rc = fd < 0 ? -errno : connect(fd, (struct sockaddr *)&sa, sizeof(sa)) ? -errno : 0;
	if (fd >= 0)
		close(fd);
	if (rc == -ENOENT || rc == -ECONNREFUSED) {
		snprintf(why, len, "the destination monitor is gone (%s): it did not run the VM", strerror(-rc));
		return "here";
	}
	if (rc) {
		snprintf(why, len, "cannot tell: connecting to the destination API failed: %s", strerror(-rc));
		return NULL;
	}
	struct http_client_opts co = { .target = dapi, .timeout_ms = 5000 };
	if (http_call(&co, "GET", "/v1/vm", NULL, &r, &status, err, sizeof(err)) || status != 200) {
		json_decref(r);
		snprintf(why, len, "cannot tell: the destination API answered: %s", err);
		return NULL;
	}
	const char *state = json_string_value(json_object_get(r, "state"));
	const char *verdict = NULL;
	if (!state)
		snprintf(why, len, "cannot tell: the destination reports no state");
	else if (!strcmp(state, "incoming") || !strcmp(state, "masked"))
		snprintf(why, len, "the destination still waits for GO or is discarding its copy (state %s)", state);
	else if (!strcmp(state, "running") || !strcmp(state, "paused")) {
		/* only a valid GO starts (or parks) the vCPUs there */
		snprintf(why, len, "the destination has the VM (state %s)", state);
		verdict = "there";
	} else
		snprintf(why, len, "cannot tell: the destination's VM is %s", state);
	json_decref(r);
	return verdict;
}

static int cmd_migrate_resolve(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "api", required_argument, 0, 'a' },   { "destination-api", required_argument, 0, 'd' },
		{ "keep", required_argument, 0, 'k' },  { "wait", required_argument, 0, 'w' },
		{ "json", no_argument, 0, 'j' },        { "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	const char *api = NULL, *dapi = NULL, *keep = NULL;
	double wait_s = 60;
	bool json = false;
	char why[600] = "";
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'a': api = optarg; break;
		case 'd': dapi = optarg; break;
		case 'k': keep = optarg; break;
		case 'w':
			if (parse_seconds(optarg, 0, 3600, &wait_s)) {
				fprintf(stderr, "glide: --wait must be seconds, 0 to 3600\n");
				return 1;
			}
			break;
		case 'j': json = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 1;
		}
	}
	if (!api || !!dapi == !!keep || (keep && strcmp(keep, "here") && strcmp(keep, "there"))) {
		fprintf(stderr, "glide: resolve needs --api and either --destination-api or --keep here|there\n");
		usage(stderr);
		return 1;
	}
	if (dapi) {
		uint64_t end = now_ns() + (uint64_t)(wait_s * 1e9);
		while (!(keep = destination_verdict(dapi, why, sizeof(why))) && now_ns() < end)
			sleep_ns(200000000ULL);
		if (!keep) {
			fprintf(stderr, "glide: not resolved: %s\n", why);
			return 1;
		}
		if (!json)
			printf("%s: keeping the VM %s\n", why, keep);
	}
	struct http_client_opts co = { .target = api };
	json_t *body = json_pack("{s:s}", "keep", keep), *resp = NULL;
	int rc = cli_call(&co, "POST", "/v1/migration/resolve", body, &resp);
	json_decref(body);
	if (!rc) {
		if (json)
			cli_print_json(resp);
		else
			printf("migration %s: the VM %s\n", json_string_value(json_object_get(resp, "status")),
			       !strcmp(keep, "there") ? "runs on the destination; released here" : "stays here and runs again");
	}
	json_decref(resp);
	return rc;
}

int cmd_migrate(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "resolve"))
		return cmd_migrate_resolve(argc - 1, argv + 1);
	static const struct option opts[] = {
		{ "api", required_argument, 0, 'a' },         { "to", required_argument, 0, 't' },
		{ "key-file", required_argument, 0, 'k' },    { "streams", required_argument, 0, 's' },
		{ "switchover-goal", required_argument, 0, 'g' }, { "max-bandwidth", required_argument, 0, 'b' },
		{ "sdps", required_argument, 0, 'S' },        { "encrypt", required_argument, 0, 'e' },
		{ "timeout", required_argument, 0, 'T' },     { "dscp", required_argument, 0, 'd' },
		{ "json", no_argument, 0, 'j' },              { "no-wait", no_argument, 0, 'n' },
		{ "compress", required_argument, 0, 'c' },    { "stall-timeout", required_argument, 0, 'X' },
		{ "verify", no_argument, 0, 'V' },            { "help", no_argument, 0, 'h' },
		{ "disk-to", required_argument, 0, 'D' },
		{ 0, 0, 0, 0 },
	};
	const char *api = NULL, *to = NULL, *key_file = NULL;
	bool json = false, no_wait = false;
	json_t *body = json_object(), *resp = NULL;
	int opt, rc = 1; /* until the request is sent: a usage error */
	char *end;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'a': api = optarg; break;
		case 't': to = optarg; break;
		case 'k': key_file = optarg; break;
		case 's':
			if (!strcmp(optarg, "auto") || !strcmp(optarg, "adaptive")) {
				json_object_set_new(body, "streams", json_string(optarg));
			} else {
				long n = strtol(optarg, &end, 10);
				if (*end || n < 1 || n > 16) {
					fprintf(stderr, "glide: --streams must be 1..16 or auto\n");
					goto out;
				}
				json_object_set_new(body, "streams", json_integer(n));
			}
			break;
		case 'g': {
			long n = strtol(optarg, &end, 10);
			if (*end || n < 1) {
				fprintf(stderr, "glide: --switchover-goal must be milliseconds (e.g. 10)\n");
				goto out;
			}
			json_object_set_new(body, "switchover_goal_ms", json_integer(n));
			break;
		}
		case 'b': {
			uint64_t v;
			if (parse_rate(optarg, &v)) {
				fprintf(stderr, "glide: --max-bandwidth '%s' is not a rate in bytes/s (e.g. 50M)\n", optarg);
				goto out;
			}
			json_object_set_new(body, "max_bandwidth", json_integer((json_int_t)v));
			break;
		}
		case 'S': json_object_set_new(body, "sdps", json_string(optarg)); break;
		case 'e': json_object_set_new(body, "encrypt", json_string(optarg)); break;
		case 'T': {
			long n = strtol(optarg, &end, 10);
			if (*end || n < 0) {
				fprintf(stderr, "glide: --timeout must be seconds\n");
				goto out;
			}
			json_object_set_new(body, "timeout_s", json_integer(n));
			break;
		}
		case 'X': {
			double sec;
			if (parse_seconds(optarg, WIRE_STALL_TIMEOUT_MIN_S, WIRE_STALL_TIMEOUT_MAX_S, &sec)) {
				fprintf(stderr, "glide: --stall-timeout must be seconds, 0.1 to 3600\n");
				goto out;
			}
			json_object_set_new(body, "stall_timeout_s", json_real(sec));
			break;
		}
		case 'd': json_object_set_new(body, "dscp", json_integer(strtol(optarg, NULL, 10))); break;
		case 'j': json = true; break;
		case 'n': no_wait = true; break;
		case 'c': json_object_set_new(body, "compress", json_string(optarg)); break;
		case 'V': json_object_set_new(body, "verify", json_true()); break;
		case 'D': {
			json_t *l = json_object_get(body, "disk_to");
			if (!l)
				json_object_set_new(body, "disk_to", l = json_array());
			json_array_append_new(l, json_string(optarg));
			break;
		}
		case 'h': usage(stdout); rc = 0; goto out;
		default: usage(stderr); goto out;
		}
	}
	if (!api || !to || !key_file) {
		fprintf(stderr, "glide: --api, --to and --key-file are required\n");
		usage(stderr);
		goto out;
	}
	char *kf = cli_abs_path(key_file);
	json_object_set_new(body, "to", json_string(to));
	json_object_set_new(body, "key_file", json_string(kf));
	free(kf);
	struct http_client_opts co = { .target = api };
	rc = cli_call(&co, "POST", "/v1/migration", body, &resp);
	json_decref(body);
	body = NULL;
	if (rc) {
		json_decref(resp); /* the error answer */
		return rc;
	}
	if (no_wait) {
		if (json)
			cli_print_json(resp);
		else
			printf("migration started; its progress is at GET /v1/migration on %s\n", api);
		json_decref(resp);
		return 0;
	}
	signal(SIGINT, on_sigint);
	/* Follow this migration by its id: its result is served once, to us. */
	char status_path[64];
	snprintf(status_path, sizeof(status_path), "/v1/migration?id=%lld",
		 (long long)json_integer_value(json_object_get(resp, "id")));
	bool tty = isatty(STDERR_FILENO);
	uint64_t last_print = 0;
	for (;;) {
		json_decref(resp);
		resp = NULL;
		if (interrupted) {
			json_t *r2 = NULL;
			fprintf(stderr, "\ncancelling the migration...\n");
			cli_call(&co, "POST", "/v1/migration/cancel", NULL, &r2);
			json_decref(r2);
			interrupted = 0;
		}
		if (cli_call(&co, "GET", status_path, NULL, &resp)) {
			json_decref(resp);
			fprintf(stderr, "glide: lost contact with the source monitor; the migration's outcome is unknown "
					"(check the destination)\n");
			return 1;
		}
		const char *status = json_string_value(json_object_get(resp, "status"));
		if (!status || strcmp(status, "running"))
			break;
		if (!json && (tty || now_ns() - last_print > 1000000000ULL)) {
			progress_line(resp, tty);
			last_print = now_ns();
		}
		sleep_ns(tty ? 100000000ULL : 50000000ULL);
	}
	if (!json && tty)
		fprintf(stderr, "\r\033[K");
	const char *status = json_string_value(json_object_get(resp, "status"));
	rc = status && !strcmp(status, "completed") ? 0 : status && !strcmp(status, "in-doubt") ? 3 : 1;
	if (json)
		cli_print_json(resp);
	else if (rc == 3)
		fprintf(stderr, "glide: migration in doubt: %s\n"
				"glide: settle it with `glide migrate resolve --api %s --destination-api DESTINATION_SOCKET`\n"
				"glide: (or, having looked: `--keep there` when the destination runs the VM, `--keep here` when it is gone)\n",
			json_string_value(json_object_get(resp, "error")), api);
	else
		summary(resp);
	json_decref(resp);
out:
	json_decref(body);
	return rc;
}
