/* `glide`: one binary for every role. `glide vm run` is the VM monitor;
 * `glide host serve` and `glide center serve` are the daemons; every other
 * subcommand is a client of one of their HTTP+JSON APIs. */
#include "cli/cli.h"
#include "common/util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GLIDE_VERSION "0.1.0"

extern const struct cli_command cli_extra_commands[]; /* host/center/cluster/task commands */

static const struct cli_command commands[] = {
	{ "vm", "run", cmd_vm_run, "run a VM in the foreground (the VM monitor)" },
	{ "vm", "status", cmd_vm_status, "show a running VM's status (--api SOCKET)" },
	{ "vm", "pause", cmd_vm_pause, "pause a VM's vCPUs" },
	{ "vm", "resume", cmd_vm_resume, "resume a paused VM" },
	{ "vm", "shutdown", cmd_vm_shutdown, "power a VM off" },
	{ "vm", "snapshot", cmd_vm_snapshot, "write a VM's memory and state to a file" },
	{ "vm", "memsave", cmd_vm_memsave, "dump a range of guest-physical memory to a file" },
	{ "vm", "capture", cmd_vm_capture, "capture a NIC's frames into a pcap file (like pktcap-uw)" },
	{ NULL, "migrate", cmd_migrate, "live-migrate a VM to a waiting destination monitor" },
	{ "state", "dump", cmd_state_dump, "print every field of a snapshot's VM state" },
	{ "state", "diff", cmd_state_diff, "compare the VM state of two snapshots field by field" },
	{ NULL, NULL, NULL, NULL },
};

static void print_usage(FILE *out)
{
	fprintf(out, "usage: glide [GROUP] COMMAND [OPTIONS]   (glide version " GLIDE_VERSION ")\n\ncommands:\n");
	for (int pass = 0; pass < 2; pass++) {
		const struct cli_command *t = pass ? cli_extra_commands : commands;
		for (; t->name; t++) {
			char name[64];
			snprintf(name, sizeof(name), "%s%s%s", t->group ? t->group : "", t->group ? " " : "", t->name);
			fprintf(out, "  %-22s %s\n", name, t->summary);
		}
	}
	fprintf(out, "\nEvery command takes --help; client commands take --json for machine-readable output.\n");
}

static const struct cli_command *find(const struct cli_command *t, const char *group, const char *name)
{
	for (; t->name; t++)
		if (((!group && !t->group) || (group && t->group && !strcmp(group, t->group))) && !strcmp(name, t->name))
			return t;
	return NULL;
}

static bool is_group(const char *g)
{
	for (int pass = 0; pass < 2; pass++)
		for (const struct cli_command *t = pass ? cli_extra_commands : commands; t->name; t++)
			if (t->group && !strcmp(t->group, g))
				return true;
	return false;
}

int main(int argc, char **argv)
{
	const struct cli_command *c = NULL;

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		print_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 1 : 0;
	}
	if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
		printf("glide %s\n", GLIDE_VERSION);
		return 0;
	}
	if (is_group(argv[1])) {
		if (argc < 3) {
			fprintf(stderr, "glide: '%s' needs a command; see `glide --help`\n", argv[1]);
			return 1;
		}
		c = find(commands, argv[1], argv[2]);
		if (!c)
			c = find(cli_extra_commands, argv[1], argv[2]);
		if (!c) {
			fprintf(stderr, "glide: unknown command '%s %s'; see `glide --help`\n", argv[1], argv[2]);
			return 1;
		}
		return c->fn(argc - 2, argv + 2);
	}
	c = find(commands, NULL, argv[1]);
	if (!c)
		c = find(cli_extra_commands, NULL, argv[1]);
	if (!c) {
		fprintf(stderr, "glide: unknown command '%s'; see `glide --help`\n", argv[1]);
		return 1;
	}
	return c->fn(argc - 1, argv + 1);
}
