/* `glide state dump|diff`: a snapshot file read back as named fields
 * (src/state/state_fields.c). `dump` prints every field of every
 * checkpoint section, one a line; `diff` compares two snapshots of the same
 * VM (say, one taken before a restore and one after) and prints each field
 * that differs. Clocks that only moved forward and values KVM recomputes on
 * restore are not differences (`--verbose` shows them). RAM is not read:
 * compare memory with `glide vm memsave`. */
#include "cli/cli.h"
#include "state/state.h"
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#define STATE_DIFF_EXIT_DIFFERENT 1
#define STATE_DIFF_EXIT_ERROR 2

static int parse_state_opts(int argc, char **argv, int files, bool *verbose, const char *usage)
{
	static const struct option opts[] = {
		{ "verbose", no_argument, 0, 'v' }, { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
	};
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "hv", opts, NULL)) != -1) {
		if (opt == 'v' && verbose) {
			*verbose = true;
		} else if (opt == 'h') {
			printf("usage: %s\n", usage);
			return 1;
		} else { /* dump has no --verbose */
			fprintf(stderr, "usage: %s\n", usage);
			return -1;
		}
	}
	if (argc - optind != files) {
		fprintf(stderr, "glide: give %s\nusage: %s\n", files == 1 ? "one snapshot file" : "two snapshot files", usage);
		return -1;
	}
	return 0;
}

int cmd_state_dump(int argc, char **argv)
{
	const char *usage = "glide state dump SNAPSHOT";
	char err[512];
	int rc = parse_state_opts(argc, argv, 1, NULL, usage);

	if (rc)
		return rc < 0 ? STATE_DIFF_EXIT_ERROR : 0;
	struct state_sections *s = state_sections_read_file(argv[optind], err, sizeof(err));
	if (!s) {
		fprintf(stderr, "glide: %s\n", err);
		return STATE_DIFF_EXIT_ERROR;
	}
	rc = state_sections_print(s, stdout);
	state_sections_free(s);
	if (rc)
		fprintf(stderr, "glide: %s has malformed sections (see the lines above)\n", argv[optind]);
	return rc ? STATE_DIFF_EXIT_ERROR : 0;
}

int cmd_state_diff(int argc, char **argv)
{
	const char *usage = "glide state diff [--verbose] SNAPSHOT1 SNAPSHOT2   (exit 0: same state, 1: different, 2: error)";
	bool verbose = false;
	char err[512];
	int rc = parse_state_opts(argc, argv, 2, &verbose, usage);

	if (rc)
		return rc < 0 ? STATE_DIFF_EXIT_ERROR : 0;
	struct state_sections *a = state_sections_read_file(argv[optind], err, sizeof(err)), *b = NULL;
	if (a)
		b = state_sections_read_file(argv[optind + 1], err, sizeof(err));
	if (!a || !b) {
		fprintf(stderr, "glide: %s\n", err);
		state_sections_free(a);
		return STATE_DIFF_EXIT_ERROR;
	}
	int diffs = state_sections_diff(a, b, verbose, stdout);
	state_sections_free(a);
	state_sections_free(b);
	if (diffs)
		printf("%d difference%s\n", diffs, diffs == 1 ? "" : "s");
	return diffs ? STATE_DIFF_EXIT_DIFFERENT : 0;
}
