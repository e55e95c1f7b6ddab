/* abcheck: the A-B memory-integrity check of a stopped ab guest.
 *
 * Reads a raw dump of the guest's range (what QEMU `pmemsave` or `glide vm
 * memsave` writes, starting at the range start), splits it into N equal,
 * page-aligned parts as the guest does for N vCPUs, and checks each part:
 * the guest increments the first byte of every page in order, forever, so a
 * stopped part is all one value v, except that a prefix may already hold
 * v + 1: every page equals the one before it, except at most one place where
 * the value steps down by exactly one (mod 256). Any other page is bad (a
 * page that migration lost or corrupted).
 *
 * Disk mode (--disk) checks a disk image the diskab guest wrote: an 8-byte
 * little-endian counter at the start of every block (4 KiB by default),
 * written block after block, pass p writing the value p. The rule is the
 * same with u64 values that never wrap: every block holds the same value as
 * the block before, except at most one place where it steps down by one.
 *
 * Touch mode (--touch ADDR) checks a dump of the touch guest's memory that
 * starts at guest-physical ADDR (16 MiB or above, page aligned): every
 * 8-byte word at address A must hold touch_word(A) (guests/virtio/
 * guest_abi.h); a page with any other word is bad.
 *
 * Usage: abcheck DUMP [--parts N] [--page-size 4096] [--require-progress] [--json]
 *        abcheck --disk IMAGE [--block 4096] [--require-progress] [--json]
 *        abcheck --touch ADDR DUMP [--json]
 * Exit: 0 clean, 1 bad pages or blocks (or a part or disk never written
 * with --require-progress), 2 usage or I/O error. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "size_arg.h"
#include "../guests/virtio/guest_abi.h"

#define MAX_LISTED 20

struct bad_page {
	uint64_t page;          /* index in the dump */
	unsigned part;
	uint8_t expected, found;
};

struct bad_block {
	uint64_t block;
	uint64_t expected, found;
};

struct part_result {
	uint64_t first_page, pages;
	uint8_t high;           /* value of the prefix (pages already written this pass) */
	uint8_t low;            /* value of the rest */
	uint64_t step_page;     /* first page holding `low` (== pages: no step) */
	uint64_t bad;
	bool all_zero;
};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("abcheck: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

/*
 * Fits the model "pages [0, k) hold v + 1, pages [k, n) hold v" to one part
 * with the fewest mismatching pages. v is taken from the most frequent value
 * m: either v = m (m is the tail) or v = m - 1 (m is the prefix). For each
 * candidate, mismatches(k) = prefix mismatches + suffix mismatches is
 * minimized over k in one pass.
 */
static uint64_t fit_part(const uint8_t *first_bytes, uint64_t n, uint8_t *v_out, uint64_t *k_out)
{
	uint64_t count[256] = { 0 }, best = UINT64_MAX;

	for (uint64_t i = 0; i < n; i++)
		count[first_bytes[i]]++;
	unsigned m = 0;
	for (unsigned b = 1; b < 256; b++)
		if (count[b] > count[m])
			m = b;

	for (int c = 0; c < 2; c++) {
		uint8_t v = (uint8_t)(m - c), hi = (uint8_t)(v + 1);
		/* suffix mismatches for k = 0: every page that is not v */
		uint64_t pre = 0, suf = n - count[v];
		uint64_t best_k = 0, best_here = suf;

		for (uint64_t k = 1; k <= n; k++) {
			uint8_t b = first_bytes[k - 1];
			pre += b != hi;
			suf -= b != v;
			if (pre + suf < best_here) {
				best_here = pre + suf;
				best_k = k;
			}
		}
		if (best_here < best) {
			best = best_here;
			*v_out = v;
			*k_out = best_k;
		}
	}
	return best;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The most frequent value of v[0..n) (the smallest among equals). */
static uint64_t most_frequent(const uint64_t *v, uint64_t n)
{
	uint64_t *sorted = malloc(n * sizeof(*sorted)), best = 0, best_count = 0;

	if (!sorted)
		die("out of memory");
	memcpy(sorted, v, n * sizeof(*sorted));
	qsort(sorted, n, sizeof(*sorted), cmp_u64);
	for (uint64_t i = 0, j; i < n; i = j) {
		for (j = i; j < n && sorted[j] == sorted[i]; j++)
			;
		if (j - i > best_count) {
			best_count = j - i;
			best = sorted[i];
		}
	}
	free(sorted);
	return best;
}

/*
 * fit_part for u64 counters that never wrap: "blocks [0, k) hold v + 1,
 * blocks [k, n) hold v" with the fewest mismatches, v = m or m - 1 for the
 * most frequent value m.
 */
static uint64_t fit_disk(const uint64_t *val, uint64_t n, uint64_t *v_out, uint64_t *k_out)
{
	uint64_t m = most_frequent(val, n), best = UINT64_MAX;

	for (int c = 0; c < 2; c++) {
		uint64_t v = m - (uint64_t)c, hi = v + 1, pre = 0, suf = 0, best_k = 0, best_here;

		if ((c == 1 && m == 0) || hi == 0)
			continue; /* the counter never wraps */
		for (uint64_t i = 0; i < n; i++)
			suf += val[i] != v;
		best_here = suf;
		for (uint64_t k = 1; k <= n; k++) {
			pre += val[k - 1] != hi;
			suf -= val[k - 1] != v;
			if (pre + suf < best_here) {
				best_here = pre + suf;
				best_k = k;
			}
		}
		if (best_here < best) {
			best = best_here;
			*v_out = v;
			*k_out = best_k;
		}
	}
	if (*k_out == n) { /* all hold v + 1: no step */
		*v_out += 1;
		*k_out = 0;
	}
	return best;
}

/* Maps a dump or image file read-only: its bytes and size (die on error). */
static const void *map_file(const char *path, off_t *size)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die("cannot open %s: %s", path, strerror(errno));
	if (fstat(fd, &st) || !S_ISREG(st.st_mode))
		die("%s: not a regular file", path);
	*size = st.st_size;
	const void *p = st.st_size ? mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
	if (p == MAP_FAILED)
		die("cannot map %s: %s", path, strerror(errno));
	close(fd);
	return p;
}

/* abcheck --disk: one line for the disk, the bad blocks, a summary line. */
static int check_disk(const char *path, uint64_t block_size, bool require_progress, bool json)
{
	uint64_t blocks, v = 0, k = 0, bad, listed = 0, *val;
	struct bad_block list[MAX_LISTED];
	bool all_zero = true, fail;
	off_t size;
	const uint8_t *image = map_file(path, &size);

	blocks = (uint64_t)size / block_size;
	if (!blocks)
		die("%s: %lld bytes is less than one %llu-byte block", path, (long long)size,
		    (unsigned long long)block_size);
	val = malloc(blocks * sizeof(*val));
	if (!val)
		die("out of memory");
	for (uint64_t i = 0; i < blocks; i++) {
		memcpy(&val[i], image + i * block_size, sizeof(val[i])); /* little-endian host */
		all_zero &= !val[i];
	}
	munmap((void *)image, size);

	bad = fit_disk(val, blocks, &v, &k);
	for (uint64_t i = 0; i < blocks && bad && listed < MAX_LISTED; i++) {
		uint64_t want = i < k ? v + 1 : v;

		if (val[i] != want)
			list[listed++] = (struct bad_block){ i, want, val[i] };
	}
	fail = bad || (require_progress && all_zero);
	if (json) {
		printf("{\"ok\": %s, \"disk\": true, \"blocks\": %llu, \"block_size\": %llu, \"ignored_bytes\": %llu, "
		       "\"high\": %llu, \"low\": %llu, \"passes\": %llu, \"step_block\": %llu, \"bad_blocks\": %llu, "
		       "\"never_written\": %s, \"listed\": [",
		       fail ? "false" : "true", (unsigned long long)blocks, (unsigned long long)block_size,
		       (unsigned long long)(size - blocks * block_size), (unsigned long long)(v + 1),
		       (unsigned long long)v, (unsigned long long)v, (unsigned long long)(k ? k : blocks),
		       (unsigned long long)bad, all_zero ? "true" : "false");
		for (uint64_t i = 0; i < listed; i++)
			printf("%s{\"block\": %llu, \"offset\": %llu, \"expected\": %llu, \"found\": %llu}", i ? ", " : "",
			       (unsigned long long)list[i].block, (unsigned long long)(list[i].block * block_size),
			       (unsigned long long)list[i].expected, (unsigned long long)list[i].found);
		printf("]}\n");
	} else {
		printf("disk: %llu blocks of %llu bytes, %llu full pass(es), ", (unsigned long long)blocks,
		       (unsigned long long)block_size, (unsigned long long)v);
		if (k)
			printf("pass %llu up to block %llu (blocks 0-%llu hold %llu, %llu-%llu hold %llu)",
			       (unsigned long long)(v + 1), (unsigned long long)(k - 1), (unsigned long long)(k - 1),
			       (unsigned long long)(v + 1), (unsigned long long)k, (unsigned long long)(blocks - 1),
			       (unsigned long long)v);
		else
			printf("no step (all blocks hold %llu)", (unsigned long long)v);
		if (bad)
			printf(": %llu bad block(s)\n", (unsigned long long)bad);
		else if (all_zero)
			printf(": never written%s\n", require_progress ? " (--require-progress)" : "");
		else
			printf(": clean\n");
		for (uint64_t i = 0; i < listed; i++)
			printf("bad block %llu (offset 0x%llx): expected %llu, found %llu\n", (unsigned long long)list[i].block,
			       (unsigned long long)(list[i].block * block_size), (unsigned long long)list[i].expected,
			       (unsigned long long)list[i].found);
		if (bad > listed)
			printf("... and %llu more bad block(s)\n", (unsigned long long)(bad - listed));
		printf("abcheck: %s: disk of %llu blocks, %llu full pass(es), ", fail ? "FAIL" : "OK",
		       (unsigned long long)blocks, (unsigned long long)v);
		if (k)
			printf("step at block %llu, ", (unsigned long long)k);
		else
			printf("no step, ");
		printf("%llu bad block(s)%s%s\n", (unsigned long long)bad,
		       require_progress && all_zero ? ", never written" : "",
		       (uint64_t)size > blocks * block_size ? " (a trailing partial block ignored)" : "");
	}
	free(val);
	return fail ? 1 : 0;
}

/* abcheck --touch: every word of the dump against the touch guest's fill. */
static int check_touch(const char *path, uint64_t addr, bool json)
{
	uint64_t pages, bad = 0, listed = 0, list[MAX_LISTED];
	off_t size;
	const uint64_t *dump = map_file(path, &size);

	pages = (uint64_t)size / 4096;
	if (!pages || size % 4096)
		die("%s: %lld bytes is not a whole number of 4096-byte pages", path, (long long)size);
	for (uint64_t p = 0; p < pages; p++) {
		const uint64_t *w = dump + p * 512;
		uint64_t a = addr + p * 4096;
		for (unsigned i = 0; i < 512; i++)
			if (w[i] != touch_word(a + 8 * i)) {
				if (listed < MAX_LISTED)
					list[listed++] = a;
				bad++;
				break;
			}
	}
	munmap((void *)dump, size);
	if (json) {
		printf("{\"ok\": %s, \"touch\": true, \"pages\": %llu, \"bad_pages\": %llu, \"bad_addresses\": [",
		       bad ? "false" : "true", (unsigned long long)pages, (unsigned long long)bad);
		for (uint64_t i = 0; i < listed; i++)
			printf("%s\"0x%llx\"", i ? ", " : "", (unsigned long long)list[i]);
		printf("]}\n");
	} else {
		for (uint64_t i = 0; i < listed; i++)
			printf("bad page at guest-physical 0x%llx\n", (unsigned long long)list[i]);
		printf("abcheck: %s: %llu pages from 0x%llx, %llu bad\n", bad ? "FAIL" : "OK", (unsigned long long)pages,
		       (unsigned long long)addr, (unsigned long long)bad);
	}
	return bad ? 1 : 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: abcheck DUMP [--parts N] [--page-size 4096] [--require-progress] [--json]\n"
		   "       abcheck --disk IMAGE [--block 4096] [--require-progress] [--json]\n"
		   "       abcheck --touch ADDR DUMP [--json]\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "parts", required_argument, NULL, 'p' },
		{ "page-size", required_argument, NULL, 's' },
		{ "require-progress", no_argument, NULL, 'r' },
		{ "json", no_argument, NULL, 'j' },
		{ "disk", no_argument, NULL, 'd' },
		{ "block", required_argument, NULL, 'b' },
		{ "touch", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *memory_option = NULL;
	bool disk = false, block_given = false, touch = false;
	uint64_t touch_addr = 0;
	uint64_t block_size = 4096;
	uint64_t parts = 1, page_size = 4096, pages, part_pages, total_bad = 0, listed = 0;
	bool json = false, require_progress = false, never_written = false;
	struct bad_page list[MAX_LISTED];
	struct part_result *res;
	const uint8_t *dump;
	uint8_t *first_bytes;
	off_t size;
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			if (parse_size_arg(optarg, &parts) || !parts || parts > 65536)
				die("--parts: '%s' is not a number from 1 to 65536", optarg);
			memory_option = "--parts";
			break;
		case 's':
			if (parse_size_arg(optarg, &page_size) || page_size < 2 || (page_size & (page_size - 1)))
				die("--page-size: '%s' is not a power of two", optarg);
			memory_option = "--page-size";
			break;
		case 'd':
			disk = true;
			break;
		case 'b':
			if (parse_size_arg(optarg, &block_size) || block_size < 8 || (block_size & (block_size - 1)))
				die("--block: '%s' is not a power of two of at least 8", optarg);
			block_given = true;
			break;
		case 't':
			if (parse_size_arg(optarg, &touch_addr) || touch_addr < VGUEST_TOUCH_START || touch_addr % 4096)
				die("--touch: '%s' is not a page-aligned address of 16 MiB or above", optarg);
			touch = true;
			break;
		case 'r':
			require_progress = true;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			die("unknown or incomplete option '%s' (see --help)", argv[optind - 1]);
		}
	}
	if (touch && (disk || memory_option || require_progress))
		die("--touch takes only a DUMP (and --json) (see --help)");
	if (disk && memory_option)
		die("%s is for memory dumps, not with --disk (see --help)", memory_option);
	if (block_given && !disk)
		die("--block is for disk images: give --disk (see --help)");
	if (argc - optind != 1)
		die("need one %s file, got %d (see --help)", disk ? "IMAGE" : "DUMP", argc - optind);
	if (disk)
		return check_disk(argv[optind], block_size, require_progress, json);
	if (touch)
		return check_touch(argv[optind], touch_addr, json);

	dump = map_file(argv[optind], &size);
	pages = (uint64_t)size / page_size;
	part_pages = pages / parts;
	if (!part_pages)
		die("%s: %lld bytes is less than one %llu-byte page per part (%llu parts)", argv[optind],
		    (long long)size, (unsigned long long)page_size, (unsigned long long)parts);

	res = calloc(parts, sizeof(*res));
	first_bytes = malloc(part_pages);
	if (!res || !first_bytes)
		die("out of memory");

	for (uint64_t p = 0; p < parts; p++) {
		struct part_result *r = &res[p];
		uint64_t base = p * part_pages;
		uint8_t v = 0;
		uint64_t k = 0;

		r->first_page = base;
		r->pages = part_pages;
		r->all_zero = true;
		for (uint64_t i = 0; i < part_pages; i++) {
			first_bytes[i] = dump[(base + i) * page_size];
			if (first_bytes[i])
				r->all_zero = false;
		}
		r->bad = fit_part(first_bytes, part_pages, &v, &k);
		r->low = v;
		r->high = (uint8_t)(v + 1);
		r->step_page = k;
		if (!k) /* no prefix: the part holds one value */
			r->step_page = part_pages;
		total_bad += r->bad;
		if (r->all_zero)
			never_written = true;
		for (uint64_t i = 0; i < part_pages && r->bad; i++) {
			uint8_t want = i < k ? r->high : r->low;

			if (first_bytes[i] == want)
				continue;
			if (listed < MAX_LISTED)
				list[listed++] = (struct bad_page){ base + i, (unsigned)p, want, first_bytes[i] };
		}
	}

	bool fail = total_bad || (require_progress && never_written);
	if (json) {
		printf("{\"ok\": %s, \"parts\": %llu, \"pages_per_part\": %llu, \"page_size\": %llu, "
		       "\"ignored_pages\": %llu, \"bad_pages\": %llu, \"never_written\": %s, \"part\": [",
		       fail ? "false" : "true", (unsigned long long)parts, (unsigned long long)part_pages,
		       (unsigned long long)page_size, (unsigned long long)(pages - parts * part_pages),
		       (unsigned long long)total_bad, never_written ? "true" : "false");
		for (uint64_t p = 0; p < parts; p++)
			printf("%s{\"index\": %llu, \"first_page\": %llu, \"high\": %u, \"low\": %u, "
			       "\"step_page\": %llu, \"bad\": %llu, \"all_zero\": %s}",
			       p ? ", " : "", (unsigned long long)p, (unsigned long long)res[p].first_page,
			       res[p].high, res[p].low, (unsigned long long)res[p].step_page,
			       (unsigned long long)res[p].bad, res[p].all_zero ? "true" : "false");
		printf("], \"listed\": [");
		for (uint64_t i = 0; i < listed; i++)
			printf("%s{\"page\": %llu, \"offset\": %llu, \"part\": %u, \"expected\": %u, \"found\": %u}",
			       i ? ", " : "", (unsigned long long)list[i].page,
			       (unsigned long long)(list[i].page * page_size), list[i].part,
			       list[i].expected, list[i].found);
		printf("]}\n");
	} else {
		for (uint64_t p = 0; p < parts; p++) {
			struct part_result *r = &res[p];

			printf("part %llu: pages %llu-%llu, ", (unsigned long long)p,
			       (unsigned long long)r->first_page, (unsigned long long)(r->first_page + r->pages - 1));
			if (r->step_page < r->pages)
				printf("0x%02x up to page %llu, then 0x%02x", r->high,
				       (unsigned long long)(r->first_page + r->step_page - 1), r->low);
			else
				printf("all 0x%02x", r->low);
			if (r->bad)
				printf(": %llu bad page(s)\n", (unsigned long long)r->bad);
			else if (r->all_zero)
				printf(": never written%s\n", require_progress ? " (--require-progress)" : "");
			else
				printf(": clean\n");
		}
		for (uint64_t i = 0; i < listed; i++)
			printf("bad page %llu (offset 0x%llx, part %u): expected 0x%02x, found 0x%02x\n",
			       (unsigned long long)list[i].page, (unsigned long long)(list[i].page * page_size),
			       list[i].part, list[i].expected, list[i].found);
		if (total_bad > listed)
			printf("... and %llu more bad page(s)\n", (unsigned long long)(total_bad - listed));
		printf("abcheck: %s: %llu part(s) of %llu pages, %llu bad page(s)%s%s\n", fail ? "FAIL" : "OK",
		       (unsigned long long)parts, (unsigned long long)part_pages, (unsigned long long)total_bad,
		       require_progress && never_written ? ", a part was never written" : "",
		       pages > parts * part_pages ? " (trailing pages outside the parts ignored)" : "");
	}
	free(res);
	free(first_bytes);
	munmap((void *)dump, size);
	return fail ? 1 : 0;
}
