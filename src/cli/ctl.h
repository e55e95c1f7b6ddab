/* Helpers for the commands that talk to the controller (`glide host|cluster|
 * task|vm ...`): where it is (--center URL / GLIDE_CENTER), its token
 * (--token-file F / GLIDE_TOKEN_FILE), --json output. */
#ifndef GLIDE_CLI_CTL_H
#define GLIDE_CLI_CTL_H
#include <getopt.h>
#include "cli/cli.h"

struct ctl {
	const char *center, *token_file;
	char url[512];
	char *token;
	bool json;
	struct http_client_opts co;
};

/* Long options every controller command accepts; merge with ctl_options(). */
#define CTL_OPT_CENTER 1001
#define CTL_OPT_TOKEN 1002
#define CTL_OPT_JSON 1003
#define CTL_LONG_OPTIONS                                                                    \
	{ "center", required_argument, 0, CTL_OPT_CENTER },                                 \
	{ "token-file", required_argument, 0, CTL_OPT_TOKEN },                              \
	{ "json", no_argument, 0, CTL_OPT_JSON }

/* Handles a common option; returns true when opt was one. */
bool ctl_option(struct ctl *c, int opt, const char *arg);
/* Resolves URL and token; prints the error and returns non-zero on failure. */
int ctl_connect(struct ctl *c);
/* Calls the controller; prints "glide: error" on failure (returns non-zero). */
int ctl_call(struct ctl *c, const char *method, const char *path, json_t *body, json_t **resp);
void ctl_done(struct ctl *c);
/* Checks a VM, host or cluster name before it is sent; prints "glide: invalid name ..." when it is not valid. */
bool ctl_name_ok(const char *name);
/* prefix + percent-encoded name + suffix; prints the error and returns non-zero when it does not fit. */
int ctl_path(char *out, size_t len, const char *prefix, const char *name, const char *suffix);
/* Waits for a task, with a progress bar on stderr unless quiet; returns 0 if it succeeded. */
int ctl_watch_task(struct ctl *c, long long id, bool quiet, json_t **final);
void ctl_print_task(json_t *t);
#endif
