/* Digest of guest RAM (`glide migrate --verify`): XXH3 per 2 MiB chunk in
 * parallel threads, never-touched chunks recognised with mincore() and
 * hashed as zeros without being read, and a 128-bit hash over all chunk
 * hashes. Both sides of a migration compute it while the VM is stunned;
 * the destination compares before the VM may run. */
#include "vmm/digest.h"
#include "common/util.h"
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <xxhash.h>

struct digest_job {
	const struct guest_memory *mem;
	struct ram_digest *d;
	uint64_t next;          /* next chunk to take (atomic) */
	uint64_t read;          /* chunks read (atomic) */
	uint64_t zero_hash;     /* of a full zero chunk */
	bool skip_nonresident;  /* no swap: a chunk with no resident page is all zeros */
};

/* Any page of [p, p+len) resident? On a mincore() error, assume yes (read it). */
static bool any_resident(uint8_t *p, uint64_t len)
{
	unsigned char vec[RAM_DIGEST_CHUNK_BYTES / GUEST_PAGE_SIZE];
	uint64_t pages = (len + GUEST_PAGE_SIZE - 1) / GUEST_PAGE_SIZE;

	if (mincore(p, len, vec))
		return true;
	for (uint64_t i = 0; i < pages; i++)
		if (vec[i] & 1)
			return true;
	return false;
}

static void *digest_worker(void *arg)
{
	struct digest_job *job = arg;
	struct ram_digest *d = job->d;
	uint64_t i;

	while ((i = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED)) < d->nchunks) {
		uint64_t off = i * d->chunk_bytes;
		uint64_t len = MIN(d->chunk_bytes, job->mem->size - off);
		uint8_t *p = job->mem->host + off;
		if (job->skip_nonresident && !any_resident(p, len)) {
			/* never written: reads as zeros (a short last chunk is hashed for real) */
			d->chunk[i] = len == d->chunk_bytes ? job->zero_hash : XXH3_64bits(p, len);
			continue;
		}
		d->chunk[i] = XXH3_64bits(p, len);
		__atomic_add_fetch(&job->read, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

static void digest_whole(struct ram_digest *d)
{
	XXH128_hash_t h = XXH3_128bits(d->chunk, d->nchunks * sizeof(d->chunk[0]));
	XXH128_canonical_t c;
	XXH128_canonicalFromHash(&c, h);
	memcpy(d->whole, c.digest, sizeof(d->whole));
}

int ram_digest_compute(const struct guest_memory *mem, int threads, struct ram_digest *d)
{
	struct digest_job job = { .mem = mem, .d = d };
	pthread_t t[RAM_DIGEST_THREADS_MAX];
	int started = 0;
	uint64_t t0 = now_ns();

	memset(d, 0, sizeof(*d));
	d->chunk_bytes = RAM_DIGEST_CHUNK_BYTES;
	d->nchunks = (mem->size + d->chunk_bytes - 1) / d->chunk_bytes;
	d->chunk = calloc(d->nchunks ? d->nchunks : 1, sizeof(d->chunk[0]));
	uint8_t *zeros = calloc(1, d->chunk_bytes);
	if (!d->chunk || !zeros) {
		free(zeros);
		ram_digest_free(d);
		return -ENOMEM;
	}
	job.zero_hash = XXH3_64bits(zeros, d->chunk_bytes);
	job.skip_nonresident = guest_memory_nonresident_is_zero();
	free(zeros);
	threads = MAX(1, MIN(threads, RAM_DIGEST_THREADS_MAX));
	for (int i = 1; i < threads; i++)
		if (pthread_create(&t[started], NULL, digest_worker, &job) == 0)
			started++;
	digest_worker(&job); /* this thread works too: one thread always suffices */
	for (int i = 0; i < started; i++)
		pthread_join(t[i], NULL);
	d->read_chunks = job.read;
	digest_whole(d);
	d->ms = (now_ns() - t0) / 1e6;
	return 0;
}

void ram_digest_free(struct ram_digest *d)
{
	free(d->chunk);
	d->chunk = NULL;
	d->nchunks = 0;
}

void ram_digest_hex(const struct ram_digest *d, char out[2 * RAM_DIGEST_WHOLE_BYTES + 1])
{
	for (int i = 0; i < RAM_DIGEST_WHOLE_BYTES; i++)
		snprintf(out + 2 * i, 3, "%02x", d->whole[i]);
}

uint64_t ram_digest_diff(const struct ram_digest *a, const struct ram_digest *b, uint64_t *first)
{
	uint64_t n = 0;

	*first = UINT64_MAX;
	if (a->chunk_bytes != b->chunk_bytes || a->nchunks != b->nchunks)
		return UINT64_MAX;
	for (uint64_t i = 0; i < a->nchunks; i++) {
		if (a->chunk[i] == b->chunk[i])
			continue;
		if (!n++)
			*first = i;
	}
	return n;
}

uint64_t ram_digest_chunk_gpa(const struct guest_memory *mem, uint64_t i)
{
	uint64_t off = i * RAM_DIGEST_CHUNK_BYTES;
	for (int r = 0; r < mem->nregions; r++) {
		const struct guest_ram_region *g = &mem->regions[r];
		if (off >= g->ram_offset && off < g->ram_offset + g->size)
			return g->gpa + (off - g->ram_offset);
	}
	return off;
}

uint64_t ram_digest_wire_bytes(const struct ram_digest *d)
{
	return RAM_DIGEST_WIRE_HEADER_BYTES + d->nchunks * sizeof(uint64_t);
}

void ram_digest_to_wire(const struct ram_digest *d, uint8_t *out)
{
	uint32_t version = RAM_DIGEST_WIRE_VERSION, reserved = 0;
	memcpy(out, &version, 4);
	memcpy(out + 4, &reserved, 4);
	memcpy(out + 8, &d->chunk_bytes, 8);
	memcpy(out + 16, &d->nchunks, 8);
	memcpy(out + 24, d->whole, RAM_DIGEST_WHOLE_BYTES);
	memcpy(out + RAM_DIGEST_WIRE_HEADER_BYTES, d->chunk, d->nchunks * sizeof(uint64_t));
}

int ram_digest_from_wire(const uint8_t *in, uint64_t len, struct ram_digest *d, char *err, size_t errlen)
{
	uint32_t version;
	uint8_t whole[RAM_DIGEST_WHOLE_BYTES];

	memset(d, 0, sizeof(*d));
	if (len < RAM_DIGEST_WIRE_HEADER_BYTES) {
		errf(err, errlen, "memory digest too short (%llu bytes)", (unsigned long long)len);
		return -EBADMSG;
	}
	memcpy(&version, in, 4);
	memcpy(&d->chunk_bytes, in + 8, 8);
	memcpy(&d->nchunks, in + 16, 8);
	memcpy(whole, in + 24, sizeof(whole));
	if (version != RAM_DIGEST_WIRE_VERSION) {
		errf(err, errlen, "memory digest version %u is not supported (this glide reads %d)", version,
		     RAM_DIGEST_WIRE_VERSION);
		return -EPROTONOSUPPORT;
	}
	if (d->chunk_bytes != RAM_DIGEST_CHUNK_BYTES ||
	    d->nchunks != (len - RAM_DIGEST_WIRE_HEADER_BYTES) / sizeof(uint64_t) ||
	    (len - RAM_DIGEST_WIRE_HEADER_BYTES) % sizeof(uint64_t)) {
		errf(err, errlen, "memory digest malformed (%llu chunks of %llu bytes in %llu bytes)",
		     (unsigned long long)d->nchunks, (unsigned long long)d->chunk_bytes, (unsigned long long)len);
		return -EBADMSG;
	}
	d->chunk = malloc(d->nchunks ? d->nchunks * sizeof(uint64_t) : 1);
	if (!d->chunk)
		return -ENOMEM;
	memcpy(d->chunk, in + RAM_DIGEST_WIRE_HEADER_BYTES, d->nchunks * sizeof(uint64_t));
	digest_whole(d);
	if (memcmp(whole, d->whole, sizeof(whole))) {
		errf(err, errlen, "memory digest inconsistent: its whole hash does not match its chunk hashes");
		ram_digest_free(d);
		return -EBADMSG;
	}
	return 0;
}

struct disk_digest_walk {
	XXH3_state_t *st;
	uint64_t read;
};

static int disk_digest_block(void *ctx, uint64_t off, const uint8_t *p, uint32_t n)
{
	struct disk_digest_walk *w = ctx;
	uint8_t le[8];
	for (int i = 0; i < 8; i++)
		le[i] = (uint8_t)(off >> (8 * i));
	w->read += n;
	return XXH3_128bits_update(w->st, le, 8) == XXH_OK && XXH3_128bits_update(w->st, p, n) == XXH_OK ? 0 : -EIO;
}

int disk_digest_compute(int fd, uint64_t size, char hex[2 * RAM_DIGEST_WHOLE_BYTES + 1], double *ms, uint64_t *read)
{
	uint64_t t0 = now_ns();
	struct disk_digest_walk w = { XXH3_createState(), 0 };
	if (!w.st || XXH3_128bits_reset(w.st) != XXH_OK) {
		XXH3_freeState(w.st);
		return -ENOMEM;
	}
	int rc = file_nonzero_blocks(fd, size, DISK_DIGEST_BLOCK, disk_digest_block, &w, NULL);
	if (!rc) {
		XXH128_canonical_t c;
		XXH128_canonicalFromHash(&c, XXH3_128bits_digest(w.st));
		for (int i = 0; i < 16; i++)
			snprintf(hex + 2 * i, 3, "%02x", c.digest[i]);
	}
	XXH3_freeState(w.st);
	if (ms)
		*ms = (now_ns() - t0) / 1e6;
	if (read)
		*read = w.read;
	return rc;
}
