/* guestcfg: writes a copy of a test guest with its config block changed.
 *
 * Boot-sector images (build/guests/guest.img): mode (ab, heartbeat,
 * workload), the range the guest writes, the workload's write rate and how
 * much memory the guest identity-maps; the block sits at offset 0x1c0.
 * ELF guests (build/guests/netecho.elf, diskab.elf): netecho's IPv4
 * address and UDP echo port, diskab's block size and flush interval, and
 * whether the guest assigns PCI BARs itself; the block (struct
 * vguest_config, guests/virtio/guest_abi.h) is found by its magic
 * "GLIDEVCF", which must occur exactly once in the file. Both layouts are
 * described in docs/guests.md.
 *
 * Usage: guestcfg IMAGE_IN IMAGE_OUT [--mode ab|heartbeat|workload]
 *        [--range-start ADDR] [--range-size SIZE]
 *        [--write-rate PAGES_PER_SEC|unlimited] [--map-gib N] [--tsc-khz KHZ]
 *        guestcfg ELF_IN ELF_OUT [--ip A.B.C.D[/PREFIX]] [--udp-port N]
 *        [--block-size SIZE] [--flush-every N] [--queue-depth N] [--assign-bars yes|no] */
#include <arpa/inet.h>
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
#include "../guests/virtio/guest_abi.h"

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
#define ELF_MAX           (64 << 20)
#define ELF_MAGIC         "\x7f" "ELF"

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

/* The options as given; each kind of guest takes its own. */
struct options {
	const char *mode, *range_start, *range_size, *write_rate, *map_gib, *tsc_khz; /* boot images */
	const char *ip, *udp_port, *block_size, *flush_every, *queue_depth, *assign_bars;       /* ELF guests */
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: guestcfg IMAGE_IN IMAGE_OUT [--mode ab|heartbeat|workload]\n"
		"         [--range-start ADDR] [--range-size SIZE] [--write-rate PAGES_PER_SEC|unlimited]\n"
		"         [--map-gib N] [--tsc-khz KHZ]\n"
		"       guestcfg ELF_IN ELF_OUT [--ip A.B.C.D[/PREFIX]] [--udp-port N]      (netecho)\n"
		"         [--block-size SIZE] [--flush-every N] [--queue-depth 1-16]         (diskab)\n"
		"         [--assign-bars yes|no]                                             (both)\n"
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
	if (st.st_size < IMAGE_MIN || st.st_size > ELF_MAX)
		die(2, "%s: %lld bytes, a guest image has %d to %d, an ELF guest at most %d", path, (long long)st.st_size,
		    IMAGE_MIN, IMAGE_MAX, ELF_MAX);
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

/* A boot-sector image (guest.img): checks, then patches the block at CFG_OFFSET. */
static void configure_boot_image(const struct options *o, const char *in_path, const char *out_path, uint8_t *image,
				 size_t len)
{
	const char *tsc_source = "--tsc-khz";
	uint64_t rate = 0, tsc_khz = 0, v;
	struct guest_config cfg;
	int mode = -1, unlimited = 0;

	if (len > IMAGE_MAX)
		die(2, "%s: %zu bytes, a guest image has %d to %d", in_path, len, IMAGE_MIN, IMAGE_MAX);
	if (o->ip || o->udp_port || o->block_size || o->flush_every || o->queue_depth || o->assign_bars)
		die(2, "%s: only ELF guests (netecho, diskab) take --ip, --udp-port, --block-size, --flush-every and "
		    "--assign-bars", in_path);
	if (o->mode) {
		for (mode = 0; mode < 3 && strcmp(o->mode, mode_names[mode]); mode++)
			;
		if (mode == 3)
			die(2, "--mode: '%s' is not one of ab, heartbeat, workload", o->mode);
	}
	memcpy(&cfg, image + CFG_OFFSET, sizeof(cfg));
	if (memcmp(cfg.magic, CFG_MAGIC, 4))
		die(2, "%s: no guest config block (magic \"%s\" missing at offset 0x%x)", in_path, CFG_MAGIC, CFG_OFFSET);
	if (cfg.version != CFG_VERSION)
		die(2, "%s: config block version %u, this guestcfg knows version %u", in_path, cfg.version, CFG_VERSION);
	if (image[510] != 0x55 || image[511] != 0xaa)
		die(2, "%s: boot signature 0x55 0xAA missing", in_path);

	if (o->range_start)
		cfg.range_start = size_opt("--range-start", o->range_start);
	if (o->range_size)
		cfg.range_size = size_opt("--range-size", o->range_size);
	if (o->map_gib) {
		v = size_opt("--map-gib", o->map_gib);
		if (v < 1 || v > MAP_GIB_MAX)
			die(2, "--map-gib: %llu is outside 1..%d", (unsigned long long)v, MAP_GIB_MAX);
		cfg.map_gib = (uint16_t)v;
	}
	if (o->tsc_khz) {
		tsc_khz = size_opt("--tsc-khz", o->tsc_khz);
		if (!tsc_khz)
			die(2, "--tsc-khz: must be more than 0");
	}
	if (mode >= 0)
		cfg.mode = (uint8_t)mode;
	if (cfg.mode > MODE_WORKLOAD)
		die(2, "%s: unknown mode %u in the config block", in_path, cfg.mode);

	if (o->write_rate) {
		if (cfg.mode != MODE_WORKLOAD)
			die(2, "--write-rate: only for --mode workload (mode is %s)", mode_names[cfg.mode]);
		if (!strcmp(o->write_rate, "unlimited")) {
			unlimited = 1;
		} else {
			rate = size_opt("--write-rate", o->write_rate);
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
}

/* The offset of the only config block in an ELF guest. */
static size_t elf_find_config(const char *path, const uint8_t *image, size_t len)
{
	const uint8_t *p = image, *found = NULL;
	size_t left = len;
	int count = 0;

	while ((p = memmem(p, left, VGUEST_CONFIG_MAGIC, VGUEST_CONFIG_MAGIC_LEN))) {
		found = found ? found : p;
		count++;
		p++;
		left = len - (size_t)(p - image);
	}
	if (count != 1)
		die(2, "%s: the config block magic \"%s\" occurs %d times, exactly once expected (not a netecho or diskab "
		    "guest?)", path, VGUEST_CONFIG_MAGIC, count);
	if ((size_t)(found - image) + sizeof(struct vguest_config) > len)
		die(2, "%s: the config block at offset 0x%zx runs past the end of the file", path, (size_t)(found - image));
	return (size_t)(found - image);
}

/* "A.B.C.D" or "A.B.C.D/PREFIX" into cfg (the prefix stays when not given). */
static void parse_ip(const char *arg, struct vguest_config *cfg)
{
	char addr[INET_ADDRSTRLEN];
	const char *slash = strchr(arg, '/');
	size_t n = slash ? (size_t)(slash - arg) : strlen(arg);
	uint64_t prefix;

	if (n >= sizeof(addr))
		die(2, "--ip: '%s' is not an IPv4 address (A.B.C.D or A.B.C.D/PREFIX)", arg);
	memcpy(addr, arg, n);
	addr[n] = 0;
	if (inet_pton(AF_INET, addr, cfg->ipv4) != 1)
		die(2, "--ip: '%s' is not an IPv4 address (A.B.C.D or A.B.C.D/PREFIX)", arg);
	if (slash) {
		if (parse_size_arg(slash + 1, &prefix) || prefix < 1 || prefix > 32)
			die(2, "--ip: prefix '%s' is not a number from 1 to 32", slash + 1);
		cfg->prefix_len = (uint8_t)prefix;
	}
}

/* An ELF guest (netecho, diskab): patches the block found by its magic. */
static void configure_elf_guest(const struct options *o, const char *in_path, const char *out_path, uint8_t *image,
				size_t len)
{
	size_t off = elf_find_config(in_path, image, len);
	const char *name;
	struct vguest_config cfg;
	uint64_t v;

	if (o->mode || o->range_start || o->range_size || o->write_rate || o->map_gib || o->tsc_khz)
		die(2, "%s: an ELF guest; --mode, --range-start, --range-size, --write-rate, --map-gib and --tsc-khz are "
		    "for boot-sector images", in_path);
	memcpy(&cfg, image + off, sizeof(cfg));
	if (cfg.version != VGUEST_CONFIG_VERSION || cfg.size != sizeof(cfg))
		die(2, "%s: config block version %u, size %u; this guestcfg knows version %u, size %zu", in_path,
		    cfg.version, cfg.size, VGUEST_CONFIG_VERSION, sizeof(cfg));
	if (cfg.guest == VGUEST_NETECHO)
		name = "netecho";
	else if (cfg.guest == VGUEST_DISKAB)
		name = "diskab";
	else
		die(2, "%s: config block of unknown guest %u", in_path, cfg.guest);

	if (cfg.guest != VGUEST_NETECHO && (o->ip || o->udp_port))
		die(2, "%s: --ip and --udp-port are for netecho, this is %s", in_path, name);
	if (cfg.guest != VGUEST_DISKAB && (o->block_size || o->flush_every || o->queue_depth))
		die(2, "%s: --block-size, --flush-every and --queue-depth are for diskab, this is %s", in_path, name);
	if (o->ip)
		parse_ip(o->ip, &cfg);
	if (o->udp_port) {
		v = size_opt("--udp-port", o->udp_port);
		if (v < 1 || v > 65535)
			die(2, "--udp-port: %llu is outside 1..65535", (unsigned long long)v);
		cfg.udp_echo_port = (uint16_t)v;
	}
	if (o->block_size) {
		v = size_opt("--block-size", o->block_size);
		if (v < VGUEST_BLOCK_SIZE_MIN || v > VGUEST_BLOCK_SIZE_MAX || (v & (v - 1)))
			die(2, "--block-size: %llu is not a power of two from %u to %u", (unsigned long long)v,
			    VGUEST_BLOCK_SIZE_MIN, VGUEST_BLOCK_SIZE_MAX);
		cfg.block_size = (uint32_t)v;
	}
	if (o->flush_every) {
		v = size_opt("--flush-every", o->flush_every);
		if (v > UINT32_MAX)
			die(2, "--flush-every: %llu is more than %u", (unsigned long long)v, UINT32_MAX);
		cfg.flush_every = (uint32_t)v;
	}
	if (o->queue_depth) {
		v = size_opt("--queue-depth", o->queue_depth);
		if (v < 1 || v > VGUEST_QUEUE_DEPTH_MAX)
			die(2, "--queue-depth: %llu is outside 1..%u", (unsigned long long)v, VGUEST_QUEUE_DEPTH_MAX);
		cfg.queue_depth = (uint16_t)v;
	}
	if (o->assign_bars) {
		if (!strcmp(o->assign_bars, "yes"))
			cfg.flags |= VGUEST_CFG_ASSIGN_BARS;
		else if (!strcmp(o->assign_bars, "no"))
			cfg.flags &= (uint8_t)~VGUEST_CFG_ASSIGN_BARS;
		else
			die(2, "--assign-bars: '%s' is not yes or no", o->assign_bars);
	}

	memcpy(image + off, &cfg, sizeof(cfg));
	write_image(out_path, image, len);
	printf("%s: %s, ", out_path, name);
	if (cfg.guest == VGUEST_NETECHO)
		printf("%u.%u.%u.%u/%u, UDP echo port %u", cfg.ipv4[0], cfg.ipv4[1], cfg.ipv4[2], cfg.ipv4[3],
		       cfg.prefix_len, cfg.udp_echo_port);
	else if (cfg.flush_every)
		printf("blocks of %u bytes, flush every %u writes, %u in flight", cfg.block_size, cfg.flush_every,
		       cfg.queue_depth ? cfg.queue_depth : 1);
	else
		printf("blocks of %u bytes, no flushes, %u in flight", cfg.block_size, cfg.queue_depth ? cfg.queue_depth : 1);
	printf(", %s (config block at file offset 0x%zx)\n",
	       cfg.flags & VGUEST_CFG_ASSIGN_BARS ? "assigns BARs itself" : "platform's BAR addresses", off);
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
		{ "ip", required_argument, NULL, 'i' },
		{ "udp-port", required_argument, NULL, 'u' },
		{ "block-size", required_argument, NULL, 'b' },
		{ "flush-every", required_argument, NULL, 'f' },
		{ "queue-depth", required_argument, NULL, 'q' },
		{ "assign-bars", required_argument, NULL, 'a' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct options o = { 0 };
	uint8_t *image;
	size_t len;
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'm': o.mode = optarg; break;
		case 's': o.range_start = optarg; break;
		case 'z': o.range_size = optarg; break;
		case 'r': o.write_rate = optarg; break;
		case 'g': o.map_gib = optarg; break;
		case 't': o.tsc_khz = optarg; break;
		case 'i': o.ip = optarg; break;
		case 'u': o.udp_port = optarg; break;
		case 'b': o.block_size = optarg; break;
		case 'f': o.flush_every = optarg; break;
		case 'q': o.queue_depth = optarg; break;
		case 'a': o.assign_bars = optarg; break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			die(2, "unknown or incomplete option '%s' (see --help)", argv[optind - 1]);
		}
	}
	if (argc - optind != 2)
		die(2, "need IMAGE_IN and IMAGE_OUT, got %d file argument(s) (see --help)", argc - optind);

	image = read_image(argv[optind], &len);
	if (!memcmp(image, ELF_MAGIC, 4))
		configure_elf_guest(&o, argv[optind], argv[optind + 1], image, len);
	else
		configure_boot_image(&o, argv[optind], argv[optind + 1], image, len);
	free(image);
	return 0;
}
