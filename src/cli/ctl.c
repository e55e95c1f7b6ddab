/* Shared plumbing of the controller commands: finding the controller and
 * its token, calling it, and following a task with a live progress bar. */
#include "cli/ctl.h"
#include "common/token.h"
#include "common/util.h"
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool ctl_option(struct ctl *c, int opt, const char *arg)
{
	switch (opt) {
	case CTL_OPT_CENTER: c->center = arg; return true;
	case CTL_OPT_TOKEN: c->token_file = arg; return true;
	case CTL_OPT_JSON: c->json = true; return true;
	}
	return false;
}

int ctl_connect(struct ctl *c)
{
	char err[512];
	if (!c->center)
		c->center = getenv("GLIDE_CENTER");
	if (!c->token_file)
		c->token_file = getenv("GLIDE_TOKEN_FILE");
	if (!c->center) {
		fprintf(stderr, "glide: where is the controller? give --center URL or set GLIDE_CENTER (e.g. http://10.0.0.1:7000)\n");
		return 1;
	}
	if (!c->token_file) {
		fprintf(stderr, "glide: the controller needs its token: give --token-file F or set GLIDE_TOKEN_FILE\n");
		return 1;
	}
	c->token = token_read_file(c->token_file, err, sizeof(err));
	if (!c->token) {
		fprintf(stderr, "glide: %s\n", err);
		return 1;
	}
	snprintf(c->url, sizeof(c->url), "%s%s", strstr(c->center, "://") ? "" : "http://", c->center);
	c->co.target = c->url;
	c->co.token = c->token;
	c->co.timeout_ms = 120000;
	return 0;
}

int ctl_call(struct ctl *c, const char *method, const char *path, json_t *body, json_t **resp)
{
	char err[1024];
	long status;
	json_t *r = NULL;
	int rc = http_call(&c->co, method, path, body, &r, &status, err, sizeof(err));
	if (rc == -EINVAL) { /* our own request was bad: nothing was sent */
		fprintf(stderr, "glide: %s\n", err);
		json_decref(r);
		return 1;
	}
	if (rc) {
		fprintf(stderr, "glide: cannot reach the controller at %s: %s (is `glide center serve` running there?)\n", c->url, err);
		json_decref(r);
		return 1;
	}
	if (status == 401) {
		fprintf(stderr, "glide: the controller refused the token in %s (use the controller's token file)\n", c->token_file);
		json_decref(r);
		return 1;
	}
	if (status >= 400) {
		if (c->json && r)
			cli_print_json(r);
		fprintf(stderr, "glide: %s\n", err);
		json_decref(r);
		return status == 404 ? 3 : status == 409 ? 4 : 1;
	}
	if (resp)
		*resp = r;
	else
		json_decref(r);
	return 0;
}

bool ctl_name_ok(const char *name)
{
	char err[512];
	if (name_valid(name, err, sizeof(err)))
		return true;
	fprintf(stderr, "glide: %s\n", err);
	return false;
}

int ctl_path(char *out, size_t len, const char *prefix, const char *name, const char *suffix)
{
	if (http_path(out, len, prefix, name, suffix)) {
		fprintf(stderr, "glide: invalid request: '%.60s' does not fit in a request path\n", name);
		return 1;
	}
	return 0;
}

void ctl_done(struct ctl *c)
{
	if (c->token) {
		explicit_bzero(c->token, strlen(c->token));
		free(c->token);
	}
}

static double num(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	return json_is_number(v) ? json_number_value(v) : 0;
}

void ctl_print_task(json_t *t)
{
	printf("task %lld  %s %s  %s", (long long)num(t, "id"), json_string_value(json_object_get(t, "kind")),
	       json_string_value(json_object_get(t, "vm")) ? json_string_value(json_object_get(t, "vm")) : "",
	       json_string_value(json_object_get(t, "state")));
	if (json_is_string(json_object_get(t, "stage")))
		printf(" (%s, %.0f%%)", json_string_value(json_object_get(t, "stage")), num(t, "progress") * 100);
	printf("\n");
	if (json_is_string(json_object_get(t, "message")))
		printf("  %s\n", json_string_value(json_object_get(t, "message")));
	json_t *res = json_object_get(t, "result"), *ph;
	size_t i;
	if (json_is_array(json_object_get(res, "phases")) && json_array_size(json_object_get(res, "phases"))) {
		char sent[32];
		printf("  total %.1f ms, stun %.2f ms, %s sent\n", num(res, "total_ms"), num(res, "stun_ms"),
		       format_size((uint64_t)num(res, "bytes_sent"), sent, sizeof(sent)));
		printf("  %6s %10s %10s %12s %10s\n", "phase", "pages", "zero", "bytes", "ms");
		json_array_foreach(json_object_get(res, "phases"), i, ph)
			printf("  %6d %10lld %10lld %12lld %10.1f\n", (int)num(ph, "number"), (long long)num(ph, "pages"),
			       (long long)num(ph, "zero_pages"), (long long)num(ph, "bytes"), num(ph, "duration_ms"));
	}
	json_array_foreach(json_object_get(res, "reasons"), i, ph)
		printf("  - %s\n", json_string_value(ph));
}

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) { (void)sig; interrupted = 1; }

int ctl_watch_task(struct ctl *c, long long id, bool quiet, json_t **final)
{
	char path[64];
	json_t *t = NULL;
	bool tty = isatty(STDERR_FILENO);
	uint64_t last = 0;
	snprintf(path, sizeof(path), "/v1/tasks/%lld", id);
	signal(SIGINT, on_sigint);
	for (;;) {
		json_decref(t);
		t = NULL;
		if (ctl_call(c, "GET", path, NULL, &t))
			return 1;
		const char *st = json_string_value(json_object_get(t, "state"));
		if (st && (!strcmp(st, "succeeded") || !strcmp(st, "failed")))
			break;
		if (interrupted) {
			fprintf(stderr, "\nstopped watching; task %lld continues (`glide task watch %lld`)\n", id, id);
			json_decref(t);
			return 130;
		}
		if (!quiet && (tty || now_ns() - last > 1000000000ULL)) {
			json_t *d = json_object_get(t, "detail");
			char bar[32], sent[32], rate[32];
			int w = 24, filled = (int)(num(t, "progress") * w);
			for (int i = 0; i < w; i++)
				bar[i] = i < filled ? '#' : '.';
			bar[w] = 0;
			format_size((uint64_t)num(d, "bytes_sent"), sent, sizeof(sent));
			format_size((uint64_t)num(d, "transmit_rate"), rate, sizeof(rate));
			fprintf(stderr, "%s[%s] %3.0f%% %-10s sent %10s  tx %9s/s  stun~%5.0f ms%s", tty ? "\r" : "", bar,
				num(t, "progress") * 100, json_string_value(json_object_get(t, "stage")) ? json_string_value(json_object_get(t, "stage")) : "",
				sent, rate, num(d, "predicted_stun_ms"), tty ? "\033[K" : "\n");
			fflush(stderr);
			last = now_ns();
		}
		sleep_ns(100000000);
	}
	if (!quiet && tty)
		fprintf(stderr, "\r\033[K");
	int rc = strcmp(json_string_value(json_object_get(t, "state")), "succeeded") ? 1 : 0;
	if (final)
		*final = t;
	else
		json_decref(t);
	return rc;
}
