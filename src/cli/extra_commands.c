/* Commands of the host agent and controller roles, registered here so that
 * main.c does not change when a role adds a command. */
#include "cli/cli.h"
#include <stddef.h>

const struct cli_command cli_extra_commands[] = {
	{ NULL, NULL, NULL, NULL },
};
