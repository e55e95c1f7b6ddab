/* Helpers shared by CLI subcommands: API calls with one-line errors, JSON
 * printing, and paths made absolute for servers that run elsewhere. */
#include "cli/cli.h"
#include "common/util.h"
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cli_call(const struct http_client_opts *o, const char *method, const char *path, json_t *body, json_t **resp)
{
	char err[512];
	long status;
	int rc = http_call(o, method, path, body, resp, &status, err, sizeof(err));

	if (rc) {
		fprintf(stderr, "glide: %s\n", err);
		return 1;
	}
	if (status >= 400) {
		fprintf(stderr, "glide: %s\n", err);
		return status == 404 ? 3 : 1;
	}
	return 0;
}

void cli_print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
	if (s) {
		puts(s);
		free(s);
	}
}

char *cli_abs_path(const char *path)
{
	char cwd[PATH_MAX];
	char *out;

	if (path[0] == '/' || !getcwd(cwd, sizeof(cwd)))
		return strdup(path);
	if (asprintf(&out, "%s/%s", cwd, path) < 0)
		return NULL;
	return out;
}
