/* Unit test: the destination's prefault (src/migrate/prefault.c): the
 * source's map of resident 2 MiB chunks built from a mapping with known
 * touched chunks, the map's parser against every malformed input, and the
 * helper thread making exactly the marked chunks present without changing
 * what is already there. */
#include "migrate/prefault.h"
#include "common/util.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define MIB (1ULL << 20)
static int failures;

static void check(bool ok, const char *name, const char *detail)
{
	printf("%s prefault: %s%s%s\n", ok ? "PASS" : "FAIL", name, ok ? "" : ": ", ok ? "" : detail);
	if (!ok)
		failures++;
}

static bool resident(const uint8_t *p, uint64_t len)
{
	unsigned char vec[512];
	if (len / GUEST_PAGE_SIZE > sizeof(vec) || mincore((void *)p, len, vec))
		return false;
	for (uint64_t i = 0; i < len / GUEST_PAGE_SIZE; i++)
		if (vec[i] & 1)
			return true;
	return false;
}

int main(void)
{
	struct guest_memory mem;
	char err[256] = "", detail[300];
	uint8_t *map;

	setvbuf(stdout, NULL, _IOLBF, 0); /* the helper's log line (stderr) between, not inside, results */
	/* 19 MiB: 10 chunks, the last one partial; chunks 1, 4 and 9 touched */
	if (guest_memory_init(&mem, 19 * MIB)) {
		printf("FAIL prefault: cannot map 19 MiB\n");
		return 1;
	}
	madvise(mem.host, mem.size, MADV_NOHUGEPAGE); /* residency page by page, not in huge pages */
	mem.host[2 * MIB + 4096] = 0x5a;
	mem.host[9 * MIB + 100] = 0x77;
	mem.host[18 * MIB + 5] = 0x33;
	uint64_t n = 0;
	char *hex = prefault_map_build(&mem, &n);
	snprintf(detail, sizeof(detail), "map \"%s\", %llu chunks", hex ? hex : "(null)", (unsigned long long)n);
	check(hex && !strcmp(hex, "1202") && n == 3, "the map marks exactly the touched chunks 1, 4 and 9 (\"1202\")",
	      detail);

	check(prefault_map_parse("1202", mem.size, &map, err, sizeof(err)) == 0 && map[0] == 0x12 && map[1] == 0x02,
	      "the map parses back", err);
	free(map);
	int rc = prefault_map_parse("12020", mem.size, &map, err, sizeof(err));
	check(rc == -EINVAL && strstr(err, "5 hex digits, 4 expected"), "a map of the wrong length is refused", err);
	rc = prefault_map_parse("12 2", mem.size, &map, err, sizeof(err));
	check(rc == -EINVAL && strstr(err, "not hexadecimal at digit 2"), "a map with a non-hex digit is refused", err);
	rc = prefault_map_parse("1206", mem.size, &map, err, sizeof(err));
	check(rc == -EINVAL && strstr(err, "beyond the memory's end"), "a map marking chunk 10 of 10 is refused", err);
	rc = prefault_map_parse("", mem.size, &map, err, sizeof(err));
	check(rc == -EINVAL && !map, "an empty map for 19 MiB is refused", err);

	/* the thread, on a fresh mapping: chunks 0 and 9 (partial) marked; chunk 9 holds a byte already */
	struct guest_memory dst;
	struct prefault pf;
	guest_memory_init(&dst, 19 * MIB);
	madvise(dst.host, dst.size, MADV_NOHUGEPAGE);
	dst.host[18 * MIB + 5] = 0x44;
	prefault_map_parse("0102", dst.size, &map, err, sizeof(err));
	check(prefault_start(&pf, &dst, map) == 0, "the helper starts", "");
	for (int i = 0; i < 500 && __atomic_load_n(&pf.bytes, __ATOMIC_RELAXED) < 3 * MIB; i++)
		sleep_ns(2000000);
	prefault_stop(&pf);
	snprintf(detail, sizeof(detail), "%llu bytes, chunk 0 %d, chunk 1 %d, chunk 9 byte 0x%02x, error %d",
		 (unsigned long long)pf.bytes, resident(dst.host, 2 * MIB), resident(dst.host + 2 * MIB, 2 * MIB),
		 dst.host[18 * MIB + 5], pf.error);
	bool supported = pf.error != EINVAL;
	if (supported)
		check(pf.bytes == 3 * MIB && resident(dst.host, 2 * MIB) && !resident(dst.host + 2 * MIB, 2 * MIB) &&
		      dst.host[18 * MIB + 5] == 0x44 && dst.host[0] == 0,
		      "the marked chunks (2 MiB + the last 1 MiB) are made present, the unmarked one is not, contents kept",
		      detail);
	else
		printf("SKIP prefault: this kernel has no MADV_POPULATE_WRITE (Linux 5.14)\n");
	guest_memory_free(&dst);
	guest_memory_free(&mem);
	free(hex);
	return failures ? 1 : 0;
}
