/* Unit test: the RAM digest of `glide migrate --verify` (src/vmm/digest.c).
 * Equal memory gives equal digests whatever the thread count; one changed
 * byte anywhere (first page, middle, last byte of a short last chunk)
 * changes exactly its chunk; a never-touched chunk hashes like a written
 * all-zero one without being read; chunk indexes map to guest addresses
 * across the 3-4 GiB hole; the wire form round-trips and every malformed
 * one (short, wrong version, wrong chunk size, count not matching the
 * length, whole hash not matching the chunks) is refused. */
#include "vmm/digest.h"
#include "common/util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static int failures;

static void check(bool ok, const char *name, const char *fmt, unsigned long long a, unsigned long long b)
{
	if (ok) {
		printf("PASS digest: %s\n", name);
		return;
	}
	printf("FAIL digest: %s: ", name);
	printf(fmt, a, b);
	printf("\n");
	failures++;
}

/* Two RAMs of 9 MiB + 12 KiB (a short last chunk) with the same content. */
#define RAM_BYTES ((9ULL << 20) + 12288)

static void fill(struct guest_memory *m)
{
	/* chunks 0, 2 and the short last one written; 1 written with zeros; 3 never touched */
	for (uint64_t off = 0; off < (2ULL << 20); off += 4096)
		memset(m->host + off, (int)(off >> 12) & 0xff, 64);
	memset(m->host + (2ULL << 20), 0, 2ULL << 20);
	for (uint64_t off = 4ULL << 20; off < (6ULL << 20); off += 512)
		m->host[off] = (uint8_t)(off >> 9);
	memset(m->host + (8ULL << 20), 0xab, RAM_BYTES - (8ULL << 20));
}

static void same_content(struct guest_memory *a, struct guest_memory *b)
{
	struct ram_digest d1, d4, e;
	uint64_t first;

	if (ram_digest_compute(a, 1, &d1) || ram_digest_compute(a, 4, &d4) || ram_digest_compute(b, 2, &e)) {
		check(false, "compute", "out of memory %llu %llu", 0, 0);
		return;
	}
	check(d1.nchunks == 5 && d1.chunk_bytes == RAM_DIGEST_CHUNK_BYTES, "9 MiB + 12 KiB is 5 chunks, the last short",
	      "%llu chunks of %llu bytes", d1.nchunks, d1.chunk_bytes);
	check(ram_digest_diff(&d1, &d4, &first) == 0 && !memcmp(d1.whole, d4.whole, sizeof(d1.whole)),
	      "1 thread and 4 threads give the same digest", "%llu chunks differ, first %llu",
	      ram_digest_diff(&d1, &d4, &first), first);
	check(ram_digest_diff(&d1, &e, &first) == 0 && !memcmp(d1.whole, e.whole, sizeof(d1.whole)),
	      "two RAMs with the same content give the same digest", "%llu chunks differ, first %llu",
	      ram_digest_diff(&d1, &e, &first), first);
	check(d1.chunk[1] == d1.chunk[3], "a never-touched chunk hashes like one written with zeros",
	      "%llx vs %llx", d1.chunk[1], d1.chunk[3]);
	/* chunks with a resident page (mincore here; transparent huge pages may
	 * have made part of the untouched chunk resident), or all with swap */
	uint64_t want_read = 0;
	for (uint64_t i = 0; i < d1.nchunks; i++) {
		uint64_t off = i * RAM_DIGEST_CHUNK_BYTES, len = MIN(RAM_DIGEST_CHUNK_BYTES, a->size - off);
		unsigned char vec[RAM_DIGEST_CHUNK_BYTES / 4096];
		bool resident = !guest_memory_nonresident_is_zero() || mincore(a->host + off, len, vec);
		for (uint64_t p = 0; !resident && p < (len + 4095) / 4096; p++)
			resident = vec[p] & 1;
		want_read += resident;
	}
	check(d1.read_chunks == want_read, "only chunks with a resident page are read", "read %llu, expected %llu",
	      d1.read_chunks, want_read);
	ram_digest_free(&d1);
	ram_digest_free(&d4);
	ram_digest_free(&e);
}

static void one_byte(struct guest_memory *a, struct guest_memory *b, uint64_t off, const char *name)
{
	struct ram_digest da, db;
	uint64_t first;

	b->host[off] ^= 0x01;
	ram_digest_compute(a, 2, &da);
	ram_digest_compute(b, 2, &db);
	uint64_t n = ram_digest_diff(&da, &db, &first);
	check(n == 1 && first == off / RAM_DIGEST_CHUNK_BYTES && memcmp(da.whole, db.whole, sizeof(da.whole)), name,
	      "%llu chunks differ, first %llu", n, first);
	b->host[off] ^= 0x01;
	ram_digest_free(&da);
	ram_digest_free(&db);
}

static void addresses(void)
{
	/* a 6 GiB layout: 3 GiB low, 3 GiB from 4 GiB (no memory is mapped) */
	struct guest_memory m = { .size = 6ULL << 30, .nregions = 2 };
	m.regions[0] = (struct guest_ram_region){ .gpa = 0, .size = 3ULL << 30, .ram_offset = 0 };
	m.regions[1] = (struct guest_ram_region){ .gpa = 4ULL << 30, .size = 3ULL << 30, .ram_offset = 3ULL << 30 };
	uint64_t low_last = (3ULL << 30) / RAM_DIGEST_CHUNK_BYTES - 1;
	check(ram_digest_chunk_gpa(&m, 1) == (2ULL << 20), "chunk 1 starts at guest address 2 MiB", "%llx %llx",
	      ram_digest_chunk_gpa(&m, 1), 2ULL << 20);
	check(ram_digest_chunk_gpa(&m, low_last) == (3ULL << 30) - (2ULL << 20), "the last chunk below the hole",
	      "%llx %llx", ram_digest_chunk_gpa(&m, low_last), (3ULL << 30) - (2ULL << 20));
	check(ram_digest_chunk_gpa(&m, low_last + 1) == (4ULL << 30), "the first chunk above the hole is at 4 GiB",
	      "%llx %llx", ram_digest_chunk_gpa(&m, low_last + 1), 4ULL << 30);
}

static void wire(struct guest_memory *a)
{
	struct ram_digest d, back;
	char err[256];
	uint64_t first;

	ram_digest_compute(a, 2, &d);
	uint64_t len = ram_digest_wire_bytes(&d);
	uint8_t *buf = malloc(len + 8);
	ram_digest_to_wire(&d, buf);
	int rc = ram_digest_from_wire(buf, len, &back, err, sizeof(err));
	check(rc == 0 && ram_digest_diff(&d, &back, &first) == 0 && !memcmp(d.whole, back.whole, sizeof(d.whole)),
	      "the wire form round-trips", "rc %llu, %llu chunks differ", (unsigned long long)-rc,
	      rc ? 0 : ram_digest_diff(&d, &back, &first));
	if (!rc)
		ram_digest_free(&back);

	struct {
		const char *name;
		uint64_t at, len;
		uint8_t value;
		uint64_t wire_len;
	} bad[] = {
		{ "a digest shorter than its header is refused", 0, 0, 0, RAM_DIGEST_WIRE_HEADER_BYTES - 1 },
		{ "an unknown digest version is refused", 0, 1, 9, len },
		{ "a digest with another chunk size is refused", 9, 1, 0x40, len },
		{ "a chunk count that does not match the length is refused", 16, 1, 6, len },
		{ "a length that is not whole chunk hashes is refused", 0, 0, 0, len - 3 },
		{ "a whole hash that does not match the chunk hashes is refused", 24, 1, 0x55, len },
		{ "a changed chunk hash is refused (whole hash)", RAM_DIGEST_WIRE_HEADER_BYTES + 8, 1, 0x77, len },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t *copy = malloc(len + 8);
		memcpy(copy, buf, len);
		if (bad[i].len)
			copy[bad[i].at] ^= bad[i].value;
		rc = ram_digest_from_wire(copy, bad[i].wire_len, &back, err, sizeof(err));
		check(rc != 0 && back.chunk == NULL && err[0], bad[i].name, "rc %llu, error text length %llu",
		      (unsigned long long)-rc, strlen(err));
		if (!rc)
			ram_digest_free(&back);
		free(copy);
	}
	free(buf);
	ram_digest_free(&d);
}

int main(void)
{
	struct guest_memory a, b;

	if (guest_memory_init(&a, RAM_BYTES) || guest_memory_init(&b, RAM_BYTES)) {
		printf("FAIL digest: cannot map two RAMs of %llu bytes\n", RAM_BYTES);
		return 1;
	}
	fill(&a);
	fill(&b);
	same_content(&a, &b);
	one_byte(&a, &b, 0, "one byte changed in the first page changes chunk 0 only");
	one_byte(&a, &b, (4ULL << 20) + 4097, "one byte changed mid-RAM changes its chunk only");
	one_byte(&a, &b, (6ULL << 20) + 5, "one byte written in a never-touched chunk changes it");
	one_byte(&a, &b, RAM_BYTES - 1, "the last byte of the short last chunk counts");
	addresses();
	wire(&a);
	guest_memory_free(&a);
	guest_memory_free(&b);
	return failures ? 1 : 0;
}
