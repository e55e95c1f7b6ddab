/* The `glide` command: shared helpers for subcommands. */
#ifndef GLIDE_CLI_CLI_H
#define GLIDE_CLI_CLI_H
#include <jansson.h>
#include <stdbool.h>
#include "api/http.h"

struct cli_command {
	const char *group;   /* "vm", "host", ... or NULL for top-level */
	const char *name;
	int (*fn)(int argc, char **argv); /* argv[0] is the command name */
	const char *summary;
};

/* Calls the API; on failure prints "glide: <error>" and returns non-zero. */
int cli_call(const struct http_client_opts *o, const char *method, const char *path, json_t *body, json_t **resp);
/* Prints JSON pretty to stdout. */
void cli_print_json(json_t *j);
/* Absolute path for a file the server will write (relative to our cwd). */
char *cli_abs_path(const char *path);

int cmd_vm_run(int argc, char **argv);
int cmd_vm_status(int argc, char **argv);
int cmd_vm_pause(int argc, char **argv);
int cmd_vm_resume(int argc, char **argv);
int cmd_vm_shutdown(int argc, char **argv);
int cmd_vm_snapshot(int argc, char **argv);
int cmd_vm_memsave(int argc, char **argv);
int cmd_vm_capture(int argc, char **argv);
int cmd_migrate(int argc, char **argv);
int cmd_state_dump(int argc, char **argv);
int cmd_state_diff(int argc, char **argv);
#endif
