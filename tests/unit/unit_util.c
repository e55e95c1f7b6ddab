/* Unit test: the size, rate and seconds parsers every CLI option and API
 * request uses (src/common/util.c). Sizes are decimal (a leading 0 is not
 * octal: "010" is ten bytes) or hex with 0x, with an optional K/M/G/T
 * suffix (KiB, KB, k...), never negative, never past 2^64; rates are
 * sizes, "unlimited" or 0; seconds are bounded decimals. Also the walk
 * over a sparse file's data extents that disk copies and moves use. */
#include "common/util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures;

static void size_is(const char *s, int want_rc, uint64_t want)
{
	uint64_t v = 0xdeadbeef;
	int rc = parse_size(s, &v);
	bool ok = want_rc ? rc != 0 : (rc == 0 && v == want);
	if (ok) {
		printf("PASS util: parse_size(\"%s\") %s %llu\n", s, want_rc ? "refused" : "=", want_rc ? 0ULL : (unsigned long long)want);
		return;
	}
	printf("FAIL util: parse_size(\"%s\"): rc %d value %llu, want %s %llu\n", s, rc, (unsigned long long)v,
	       want_rc ? "refusal" : "", (unsigned long long)want);
	failures++;
}

int main(void)
{
	size_is("010", 0, 10); /* was 8: read as octal */
	size_is("0", 0, 0);
	size_is("08", 0, 8);   /* was refused: not an octal digit */
	size_is("4096", 0, 4096);
	size_is("0x1000", 0, 4096);
	size_is("0X10", 0, 16);
	size_is("16M", 0, 16ULL << 20);
	size_is("2GiB", 0, 2ULL << 30);
	size_is("1k", 0, 1024);
	size_is("1TB", 0, 1ULL << 40);
	size_is("0x", 1, 0);
	size_is("", 1, 0);
	size_is("-1", 1, 0);
	size_is(" 1", 1, 0);
	size_is("1X", 1, 0);
	size_is("1Mx", 1, 0);
	size_is("18446744073709551616", 1, 0); /* 2^64 */
	size_is("17179869184G", 1, 0);         /* 2^64 bytes */
	size_is("0x10G", 0, 16ULL << 30);

	uint64_t r = 1;
	bool rate_ok = parse_rate("unlimited", &r) == 0 && r == 0 && parse_rate("10M", &r) == 0 && r == 10ULL << 20 &&
		       parse_rate("0", &r) == 0 && r == 0 && parse_rate("fast", &r) != 0;
	printf("%s util: parse_rate: unlimited and 0 are no limit, 10M is 10 MiB/s, words are refused\n", rate_ok ? "PASS" : "FAIL");
	failures += !rate_ok;
	double d = 0;
	bool sec_ok = parse_seconds("0.5", 0.1, 10, &d) == 0 && d == 0.5 && parse_seconds("10.01", 0.1, 10, &d) != 0 &&
		      parse_seconds("nan", 0.1, 10, &d) != 0 && parse_seconds("1s", 0.1, 10, &d) != 0 &&
		      parse_seconds("", 0.1, 10, &d) != 0;
	printf("%s util: parse_seconds: within its bounds only, no NaN, no unit\n", sec_ok ? "PASS" : "FAIL");
	failures += !sec_ok;

	/* a 4 MiB sparse file with data at 1 MiB (4 KiB) and in its last 4 KiB */
	char path[] = "/tmp/glide-unit-util.XXXXXX", blk[4096];
	int fd = mkstemp(path);
	memset(blk, 0x5a, sizeof(blk));
	uint64_t a, b, got[4] = { 0 };
	int n = 0;
	bool setup = fd >= 0 && ftruncate(fd, 4 << 20) == 0 && pwrite_full(fd, blk, sizeof(blk), 1 << 20) == 0 &&
		     pwrite_full(fd, blk, sizeof(blk), (4 << 20) - 4096) == 0;
	for (uint64_t pos = 0; setup && n < 4 && file_data_extent(fd, pos, 4 << 20, &a, &b); pos = b, n += 2)
		got[n] = a, got[n + 1] = b;
	bool ext_ok = setup && !file_data_extent(fd, 4 << 20, 4 << 20, &a, &b) && n >= 2 && got[0] <= 1 << 20 &&
		      got[1] >= (1 << 20) + 4096 && got[n - 1] == 4 << 20 && got[n - 2] <= (4 << 20) - 4096;
	/* where holes are supported (tmpfs, ext4): exactly the two written blocks */
	bool exact = n == 4 && got[0] == 1 << 20 && got[1] == (1 << 20) + 4096 && got[2] == (4 << 20) - 4096;
	printf("%s util: file_data_extent: a sparse file's data extents cover what was written and end at its size%s"
	       " (%d extent(s))\n", ext_ok ? "PASS" : "FAIL", exact ? ", holes skipped" : "", n / 2);
	failures += !ext_ok;
	if (fd >= 0) {
		close(fd);
		unlink(path);
	}
	return failures ? 1 : 0;
}
