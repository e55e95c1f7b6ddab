/* prefault.c: the destination's guest memory made present before the
 * pages arrive (issue 14). A page the receiver writes for the first time
 * costs a page fault; on the nested test hosts faulting memory in page by
 * page ran at 0.7-0.8 GB/s while MADV_POPULATE_WRITE made 1 GiB present in
 * 150 ms, so the first pass was bounded by the destination's first touch.
 * The source says which 2 MiB chunks of its RAM are resident (the memory
 * the guest ever touched: the rest travels as zero runs and stays
 * unallocated here too), and a helper thread on the destination populates
 * those chunks in the order the first pass sends them, while the pages
 * arrive. It only ever makes pages present: their contents are whatever
 * the receiver wrote, or zeros. */
#include "migrate/prefault.h"
#include "common/util.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

#define PREFAULT_STEP_BYTES (32ULL << 20) /* one madvise call: a stop is seen within one */
#define PREFAULT_MINCORE_BYTES (256ULL << 20) /* RAM looked at by one mincore call (a 64 KiB vector) */

uint64_t prefault_chunks(uint64_t mem_size)
{
	return (mem_size + PREFAULT_CHUNK_BYTES - 1) / PREFAULT_CHUNK_BYTES;
}

char *prefault_map_build(const struct guest_memory *mem, uint64_t *resident_chunks)
{
	uint64_t chunks = prefault_chunks(mem->size), n = 0;
	unsigned char *vec = malloc(PREFAULT_MINCORE_BYTES / GUEST_PAGE_SIZE);
	char *hex = calloc((size_t)((chunks + 7) / 8 * 2 + 1), 1);
	uint8_t *bits = calloc((size_t)((chunks + 7) / 8), 1);
	if (!vec || !hex || !bits) {
		free(vec), free(hex), free(bits);
		return NULL;
	}
	/* one mincore call per 256 MiB: 16 GiB take 64 calls */
	for (uint64_t off = 0; off < mem->size; off += PREFAULT_MINCORE_BYTES) {
		uint64_t len = MIN(PREFAULT_MINCORE_BYTES, mem->size - off);
		if (mincore(mem->host + off, len, vec))
			continue; /* not known: those chunks are faulted in when their pages arrive */
		for (uint64_t pg = 0; pg < len / GUEST_PAGE_SIZE; pg++) {
			uint64_t c = (off + pg * GUEST_PAGE_SIZE) / PREFAULT_CHUNK_BYTES;
			if ((vec[pg] & 1) && !(bits[c / 8] & (1u << (c % 8)))) {
				bits[c / 8] |= (uint8_t)(1u << (c % 8));
				n++;
			}
		}
	}
	hex_encode(bits, (size_t)((chunks + 7) / 8), hex);
	free(vec), free(bits);
	if (resident_chunks)
		*resident_chunks = n;
	return hex;
}

int prefault_map_parse(const char *hex, uint64_t mem_size, uint8_t **map, char *err, size_t errlen)
{
	uint64_t chunks = prefault_chunks(mem_size), bytes = (chunks + 7) / 8;
	size_t len = strlen(hex);
	*map = NULL;
	if (len != bytes * 2) {
		errf(err, errlen, "the resident-memory map has %zu hex digits, %llu expected for %llu MiB", len,
		     (unsigned long long)(bytes * 2), (unsigned long long)(mem_size >> 20));
		return -EINVAL;
	}
	uint8_t *m = malloc((size_t)MAX(bytes, 1));
	if (!m)
		return -ENOMEM;
	long bad = hex_decode(hex, (size_t)bytes, m);
	if (bad >= 0) {
		free(m);
		errf(err, errlen, "the resident-memory map is not hexadecimal at digit %ld", bad);
		return -EINVAL;
	}
	if (chunks % 8 && (m[bytes - 1] >> (chunks % 8))) {
		free(m);
		errf(err, errlen, "the resident-memory map marks chunks beyond the memory's end");
		return -EINVAL;
	}
	*map = m;
	return 0;
}

static bool chunk_set(const struct prefault *p, uint64_t c)
{
	return p->map[c / 8] & (1u << (c % 8));
}

static void *prefault_thread(void *arg)
{
	struct prefault *p = arg;
	uint64_t t0 = now_ns();
	for (uint64_t c = 0; c < p->chunks && !__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE);) {
		if (!chunk_set(p, c)) {
			c++;
			continue;
		}
		uint64_t end = c;
		while (end < p->chunks && chunk_set(p, end) && (end - c) * PREFAULT_CHUNK_BYTES < PREFAULT_STEP_BYTES)
			end++;
		uint64_t off = c * PREFAULT_CHUNK_BYTES, len = MIN(end * PREFAULT_CHUNK_BYTES, p->size) - off;
		if (madvise(p->host + off, len, MADV_POPULATE_WRITE)) {
			p->error = errno; /* EINVAL: a kernel before 5.14; ENOMEM: no memory for it: the receiver faults */
			break;
		}
		__atomic_add_fetch(&p->bytes, len, __ATOMIC_RELAXED);
		c = end;
	}
	p->ns = now_ns() - t0;
	return NULL;
}

int prefault_start(struct prefault *p, const struct guest_memory *mem, uint8_t *map)
{
	memset(p, 0, sizeof(*p));
	p->host = mem->host;
	p->size = mem->size;
	p->chunks = prefault_chunks(mem->size);
	p->map = map;
	int rc = pthread_create(&p->thread, NULL, prefault_thread, p);
	if (rc) {
		free(map);
		p->map = NULL;
		return -rc;
	}
	p->running = true;
	return 0;
}

void prefault_stop(struct prefault *p)
{
	if (!p->running)
		return;
	__atomic_store_n(&p->stop, true, __ATOMIC_RELEASE);
	pthread_join(p->thread, NULL);
	p->running = false;
	glide_log("incoming", "prefault: %llu MiB of guest memory made present in %.1f ms%s%s",
		  (unsigned long long)(p->bytes >> 20), p->ns / 1e6, p->error ? "; stopped: " : "",
		  p->error ? strerror(p->error) : "");
	free(p->map);
	p->map = NULL;
}
