/* guestcfg: writes a copy of the test guest image (build/guests/guest.img)
 * with its config block changed: mode (ab, heartbeat, workload), the range
 * the guest writes, the workload's write rate and how much memory the guest
 * identity-maps. The block layout is described in docs/guests.md.
 *
 * Usage: guestcfg IMAGE_IN IMAGE_OUT [--mode ab|heartbeat|workload]
 *        [--range-start ADDR] [--range-size SIZE]
 *        [--write-rate PAGES_PER_SEC|unlimited] [--map-gib N] [--tsc-khz KHZ] */
#include <errno.h>
#include <stdarg.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tsc_khz.h"
#include "size_arg.h"

#define CFG_OFFSET        0x1c0
#define CFG_MAGIC         "GLCF"
#define CFG_VERSION       1
#define CFG_BANNER_MAX    29      /* bytes from +0x21 up to the 0x55AA signature */
#define IMAGE_MIN         512
#define IMAGE_MAX         (622592)  /* what fits between 0x7c00 and 0x9fc00 */
#define PAGE_SIZE         4096ULL
#define GIB               (1ULL << 30)
#define RANGE_MIN_START   0x100000ULL /* below 1 MiB: the guest's own tables */
#define MAP_GIB_MAX       64

enum guest_mode { MODE_AB = 0, MODE_HEARTBEAT = 1, MODE_WORKLOAD = 2 };
static const char *const mode_names[] = { "ab", "heartbeat", "workload" };

/* The config block as it lies in the image (little-endian). */
struct guest_config {
	char magic[4];
	uint8_t version;
	uint8_t mode;
	uint16_t map_gib;
	uint64_t range_start;
	uint64_t range_size;
	uint64_t interval_tsc;
	uint8_t banner_len;
	char banner[CFG_BANNER_MAX];
} __attribute__((packed));

_Static_assert(sizeof(struct guest_config) == 0x3e, "config block layout");
_Static_assert(CFG_OFFSET + sizeof(struct guest_config) <= 510, "config block overlaps the signature");

static void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void die(int code, const char *fmt, ...)
{
	va_list ap;

	fputs("guestcfg: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(code);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: guestcfg IMAGE_IN IMAGE_OUT [--mode ab|heartbeat|workload]\n"
		"         [--range-start ADDR] [--range-size SIZE] [--write-rate PAGES_PER_SEC|unlimited]\n"
		"         [--map-gib N] [--tsc-khz KHZ]\n"
		"Sizes: decimal or 0x hex, optional K/M/G/T suffix. --write-rate is per vCPU\n"
		"(workload mode); without --tsc-khz the TSC rate of this host is used.\n");
}

static uint64_t size_opt(const char *name, const char *val)
{
	uint64_t v;

	if (parse_size_arg(val, &v))
		die(2, "%s: '%s' is not a size (decimal, 0x hex, optional K/M/G/T suffix)", name, val);
	return v;
}

static uint8_t *read_image(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	struct stat st;

	if (!f)
		die(2, "cannot read %s: %s", path, strerror(errno));
	if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode))
		die(2, "%s: not a regular file", path);
	if (st.st_size < IMAGE_MIN || st.st_size > IMAGE_MAX)
		die(2, "%s: %lld bytes, a guest image has %d to %d", path, (long long)st.st_size, IMAGE_MIN, IMAGE_MAX);
	buf = malloc(st.st_size);
	if (!buf)
		die(2, "out of memory");
	if (fread(buf, 1, st.st_size, f) != (size_t)st.st_size)
		die(2, "cannot read %s: %s", path, ferror(f) ? strerror(errno) : "short read");
	fclose(f);
	*len = st.st_size;
	return buf;
}

static void write_image(const char *path, const uint8_t *buf, size_t len)
{
	char tmp[4096];
	FILE *f;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof(tmp))
		die(2, "%s: path too long", path);
	f = fopen(tmp, "wb");
	if (!f)
		die(2, "cannot write %s: %s", tmp, strerror(errno));
	if (fwrite(buf, 1, len, f) != len || fclose(f)) {
		unlink(tmp);
		die(2, "cannot write %s: %s", tmp, strerror(errno));
	}
	if (rename(tmp, path)) {
		unlink(tmp);
		die(2, "cannot write %s: %s", path, strerror(errno));
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mode", required_argument, NULL, 'm' },
		{ "range-start", required_argument, NULL, 's' },
		{ "range-size", required_argument, NULL, 'z' },
		{ "write-rate", required_argument, NULL, 'r' },
		{ "map-gib", required_argument, NULL, 'g' },
		{ "tsc-khz", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *rate_arg = NULL, *tsc_source = "--tsc-khz", *in_path = NULL, *out_path = NULL;
	uint64_t rate = 0, tsc_khz = 0, v;
	struct guest_config cfg;
	int mode = -1, c, unlimited = 0;
	uint8_t *image;
	size_t len;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			for (mode = 0; mode < 3 && strcmp(optarg, mode_names[mode]); mode++)
				;
			if (mode == 3)
				die(2, "--mode: '%s' is not one of ab, heartbeat, workload", optarg);
			break;
		case 's': case 'z': case 'g': case 't':
			break;
		case 'r':
			rate_arg = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			die(2, "unknown or incomplete option '%s' (see --help)", argv[optind - 1]);
		}
	}
	if (argc - optind != 2)
		die(2, "need IMAGE_IN and IMAGE_OUT, got %d file argument(s) (see --help)", argc - optind);

	in_path = argv[optind];
	out_path = argv[optind + 1];
	image = read_image(in_path, &len);
	memcpy(&cfg, image + CFG_OFFSET, sizeof(cfg));
	if (memcmp(cfg.magic, CFG_MAGIC, 4))
		die(2, "%s: no guest config block (magic \"%s\" missing at offset 0x%x)", in_path, CFG_MAGIC, CFG_OFFSET);
	if (cfg.version != CFG_VERSION)
		die(2, "%s: config block version %u, this guestcfg knows version %u", in_path, cfg.version, CFG_VERSION);
	if (image[510] != 0x55 || image[511] != 0xaa)
		die(2, "%s: boot signature 0x55 0xAA missing", in_path);

	/* second pass: values, now that the image's defaults are known */
	optind = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			cfg.range_start = size_opt("--range-start", optarg);
			break;
		case 'z':
			cfg.range_size = size_opt("--range-size", optarg);
			break;
		case 'g':
			v = size_opt("--map-gib", optarg);
			if (v < 1 || v > MAP_GIB_MAX)
				die(2, "--map-gib: %llu is outside 1..%d", (unsigned long long)v, MAP_GIB_MAX);
			cfg.map_gib = (uint16_t)v;
			break;
		case 't':
			tsc_khz = size_opt("--tsc-khz", optarg);
			if (!tsc_khz)
				die(2, "--tsc-khz: must be more than 0");
			break;
		}
	}
	if (mode >= 0)
		cfg.mode = (uint8_t)mode;
	if (cfg.mode > MODE_WORKLOAD)
		die(2, "%s: unknown mode %u in the config block", in_path, cfg.mode);

	if (rate_arg) {
		if (cfg.mode != MODE_WORKLOAD)
			die(2, "--write-rate: only for --mode workload (mode is %s)", mode_names[cfg.mode]);
		if (!strcmp(rate_arg, "unlimited")) {
			unlimited = 1;
		} else {
			rate = size_opt("--write-rate", rate_arg);
			if (!rate)
				die(2, "--write-rate: must be more than 0 pages/s (or 'unlimited')");
		}
	}
	if (cfg.mode != MODE_WORKLOAD || unlimited) {
		cfg.interval_tsc = 0;
	} else if (rate) {
		if (!tsc_khz) {
			tsc_khz = host_tsc_khz(&tsc_source);
			if (!tsc_khz)
				die(2, "--write-rate: cannot read this host's TSC rate (no /dev/kvm, no cpu MHz in /proc/cpuinfo); give --tsc-khz");
		}
		cfg.interval_tsc = (tsc_khz * 1000 + rate / 2) / rate;
		if (!cfg.interval_tsc)
			die(2, "--write-rate: %llu pages/s is faster than the TSC (%llu kHz); use 'unlimited'",
			    (unsigned long long)rate, (unsigned long long)tsc_khz);
	}

	if (cfg.map_gib < 1 || cfg.map_gib > MAP_GIB_MAX)
		die(2, "map of %u GiB is outside 1..%d (use --map-gib)", cfg.map_gib, MAP_GIB_MAX);
	if (cfg.range_start % PAGE_SIZE || cfg.range_size % PAGE_SIZE)
		die(2, "range 0x%llx + 0x%llx: start and size must be multiples of 4 KiB",
		    (unsigned long long)cfg.range_start, (unsigned long long)cfg.range_size);
	if (!cfg.range_size)
		die(2, "--range-size: must be more than 0");
	if (cfg.range_start < RANGE_MIN_START)
		die(2, "--range-start: 0x%llx is below 1 MiB, where the guest keeps its code and tables",
		    (unsigned long long)cfg.range_start);
	if (cfg.range_start + cfg.range_size < cfg.range_start ||
	    cfg.range_start + cfg.range_size > cfg.map_gib * GIB)
		die(2, "range 0x%llx + 0x%llx ends beyond the %u GiB the guest maps (use --map-gib)",
		    (unsigned long long)cfg.range_start, (unsigned long long)cfg.range_size, cfg.map_gib);

	memset(cfg.banner, 0, sizeof(cfg.banner));
	cfg.banner_len = (uint8_t)snprintf(cfg.banner, sizeof(cfg.banner), "glide-guest %s\n", mode_names[cfg.mode]);
	memcpy(image + CFG_OFFSET, &cfg, sizeof(cfg));
	write_image(out_path, image, len);
	free(image);

	printf("%s: mode %s, range 0x%llx + 0x%llx (%llu MiB), map %u GiB",
	       out_path, mode_names[cfg.mode], (unsigned long long)cfg.range_start,
	       (unsigned long long)cfg.range_size, (unsigned long long)(cfg.range_size >> 20), cfg.map_gib);
	if (cfg.mode == MODE_WORKLOAD) {
		if (cfg.interval_tsc && rate)
			printf(", one page write per vCPU every %llu TSC cycles (%llu pages/s at %llu kHz from %s)",
			       (unsigned long long)cfg.interval_tsc, (unsigned long long)rate,
			       (unsigned long long)tsc_khz, tsc_source);
		else if (cfg.interval_tsc)
			printf(", one page write per vCPU every %llu TSC cycles", (unsigned long long)cfg.interval_tsc);
		else
			printf(", unlimited write rate");
	}
	printf("\n");
	return 0;
}
