/* hbread: prints the heartbeat records of the test guest from a dump of
 * guest memory starting at guest-physical 0x8000 (QEMU `pmemsave 0x8000
 * 4096 FILE` or `glide vm memsave --addr 0x8000 --size 4096`): per vCPU the
 * iterations done, and the largest gap between two iterations in TSC cycles
 * and milliseconds (the longest time the vCPU did not run, e.g. the stun of
 * a migration). Record layout: docs/guests.md.
 *
 * Usage: hbread DUMP [--vcpus N] [--tsc-khz KHZ] [--json]
 * Exit: 0 all records valid, 1 a record lacks the magic, 2 usage or I/O error. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "size_arg.h"
#include "tsc_khz.h"

#define HB_MAGIC       0x3142484544494c47ULL /* "GLIDEHB1" */
#define HB_RECORD_SIZE 64
#define HB_MAX_VCPUS   64 /* 0x8000-0x8fff */

struct hb_record {
	uint64_t magic;
	uint64_t iterations;
	uint64_t last_tsc;
	uint64_t max_gap_tsc;
	uint64_t max_gap_end_tsc;
	uint64_t started_tsc;
	uint32_t index;
	uint32_t count;
	uint32_t mode;
	uint32_t reserved;
};

_Static_assert(sizeof(struct hb_record) == HB_RECORD_SIZE, "heartbeat record layout");

/* Modes 0-2: guests/guest.asm; 3 and 4: the virtio guests (guests/virtio/guest_abi.h). */
static const char *const mode_names[] = { "ab", "heartbeat", "workload", "netecho", "diskab", "pio", "touch", "abgap" };
#define MODES (sizeof(mode_names) / sizeof(mode_names[0]))

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("hbread: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static double tsc_ms(uint64_t cycles, uint64_t khz)
{
	return (double)cycles / (double)khz;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "vcpus", required_argument, NULL, 'n' },
		{ "tsc-khz", required_argument, NULL, 't' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct hb_record rec[HB_MAX_VCPUS];
	uint64_t vcpus = 0, khz = 0;
	const char *khz_source = "--tsc-khz";
	bool json = false, all_valid = true;
	size_t got;
	FILE *f;
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			if (parse_size_arg(optarg, &vcpus) || !vcpus || vcpus > HB_MAX_VCPUS)
				die("--vcpus: '%s' is not a number from 1 to %d", optarg, HB_MAX_VCPUS);
			break;
		case 't':
			if (parse_size_arg(optarg, &khz) || !khz)
				die("--tsc-khz: '%s' is not a positive number", optarg);
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			printf("usage: hbread DUMP [--vcpus N] [--tsc-khz KHZ] [--json]\n");
			return 0;
		default:
			die("unknown or incomplete option '%s' (see --help)", argv[optind - 1]);
		}
	}
	if (argc - optind != 1)
		die("need one DUMP file, got %d (see --help)", argc - optind);

	f = fopen(argv[optind], "rb");
	if (!f)
		die("cannot open %s: %s", argv[optind], strerror(errno));
	got = fread(rec, 1, sizeof(rec), f);
	if (ferror(f))
		die("cannot read %s: %s", argv[optind], strerror(errno));
	fclose(f);
	if (!vcpus) {
		/* the guest stores the vCPU count in every record */
		if (got >= HB_RECORD_SIZE && rec[0].magic == HB_MAGIC && rec[0].count >= 1 &&
		    rec[0].count <= HB_MAX_VCPUS)
			vcpus = rec[0].count;
		else
			vcpus = 1;
	}
	if (got < vcpus * HB_RECORD_SIZE)
		die("%s: %zu bytes, %llu vCPU record(s) need %llu (dump guest memory from 0x8000)",
		    argv[optind], got, (unsigned long long)vcpus, (unsigned long long)(vcpus * HB_RECORD_SIZE));
	if (!khz) {
		khz = host_tsc_khz(&khz_source);
		if (!khz)
			fprintf(stderr, "hbread: cannot read this host's TSC rate, times are left out (give --tsc-khz)\n");
	}

	if (json)
		printf("{\"tsc_khz\": %llu, \"tsc_khz_source\": \"%s\", \"vcpus\": [",
		       (unsigned long long)khz, khz ? khz_source : "none");
	for (uint64_t i = 0; i < vcpus; i++) {
		struct hb_record *r = &rec[i];
		bool valid = r->magic == HB_MAGIC;
		uint64_t run = r->last_tsc - r->started_tsc;
		const char *mode = r->mode < MODES ? mode_names[r->mode] : "?";

		all_valid &= valid;
		if (json) {
			printf("%s{\"index\": %llu, \"valid\": %s, \"mode\": \"%s\", \"iterations\": %llu, "
			       "\"last_tsc\": %llu, \"max_gap_tsc\": %llu, \"max_gap_end_tsc\": %llu, "
			       "\"started_tsc\": %llu",
			       i ? ", " : "", (unsigned long long)i, valid ? "true" : "false", valid ? mode : "",
			       (unsigned long long)r->iterations, (unsigned long long)r->last_tsc,
			       (unsigned long long)r->max_gap_tsc, (unsigned long long)r->max_gap_end_tsc,
			       (unsigned long long)r->started_tsc);
			if (khz)
				printf(", \"max_gap_ms\": %.3f, \"run_ms\": %.3f", tsc_ms(r->max_gap_tsc, khz),
				       tsc_ms(run, khz));
			else
				printf(", \"max_gap_ms\": null, \"run_ms\": null");
			printf("}");
			continue;
		}
		if (!valid) {
			printf("vCPU %llu: no heartbeat record (magic 0x%016llx)\n", (unsigned long long)i,
			       (unsigned long long)r->magic);
			continue;
		}
		printf("vCPU %llu: %s, %llu iterations, max gap %llu TSC cycles", (unsigned long long)i, mode,
		       (unsigned long long)r->iterations, (unsigned long long)r->max_gap_tsc);
		if (khz)
			printf(" = %.3f ms (ended %.3f ms after start), ran %.3f ms", tsc_ms(r->max_gap_tsc, khz),
			       tsc_ms(r->max_gap_end_tsc - r->started_tsc, khz), tsc_ms(run, khz));
		printf("\n");
	}
	if (json)
		printf("]}\n");
	else if (khz)
		printf("TSC %llu kHz (%s)\n", (unsigned long long)khz, khz_source);
	return all_valid ? 0 : 1;
}
