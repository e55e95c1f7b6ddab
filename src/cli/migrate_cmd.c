/* `glide migrate`: start a live migration through the source monitor's API,
 * show a live progress bar (phase, sent/remaining, rates, predicted stun,
 * SDPS level) and end with a summary, or print the final statistics as
 * JSON. Exits 0 only when the migration completed. */
#include "cli/cli.h"
#include "common/util.h"
#include "migrate/wire.h"
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) { (void)sig; interrupted = 1; }

static void usage(FILE *out)
{
	fprintf(out, "usage: glide migrate --api SOCKET --to ADDR[,ADDR...] --key-file F\n"
		     "                     [--streams N|auto] [--switchover-goal MS] [--max-bandwidth RATE]\n"
		     "                     [--sdps off|always|dynamic] [--encrypt off|opportunistic|required]\n"
		     "                     [--compress off|lz4] [--timeout S] [--stall-timeout S] [--dscp N]\n"
		     "                     [--json] [--no-wait]\n");
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

int cmd_migrate(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "api", required_argument, 0, 'a' },         { "to", required_argument, 0, 't' },
		{ "key-file", required_argument, 0, 'k' },    { "streams", required_argument, 0, 's' },
		{ "switchover-goal", required_argument, 0, 'g' }, { "max-bandwidth", required_argument, 0, 'b' },
		{ "sdps", required_argument, 0, 'S' },        { "encrypt", required_argument, 0, 'e' },
		{ "timeout", required_argument, 0, 'T' },     { "dscp", required_argument, 0, 'd' },
		{ "json", no_argument, 0, 'j' },              { "no-wait", no_argument, 0, 'n' },
		{ "compress", required_argument, 0, 'c' },    { "stall-timeout", required_argument, 0, 'X' },
		{ "help", no_argument, 0, 'h' },              { 0, 0, 0, 0 },
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
			if (!strcmp(optarg, "auto")) {
				json_object_set_new(body, "streams", json_string("auto"));
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
				fprintf(stderr, "glide: --switchover-goal must be milliseconds (e.g. 500)\n");
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
	rc = status && !strcmp(status, "completed") ? 0 : 1;
	if (json)
		cli_print_json(resp);
	else
		summary(resp);
	json_decref(resp);
out:
	json_decref(body);
	return rc;
}
