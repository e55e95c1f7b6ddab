/* A digest of all guest RAM, for `glide migrate --verify`: one XXH3 64-bit
 * hash per 2 MiB chunk (so a mismatch names where), computed by several
 * threads, and an XXH3 128-bit hash over the chunk hashes. */
#ifndef GLIDE_VMM_DIGEST_H
#define GLIDE_VMM_DIGEST_H
#include "vmm/memory.h"
#include <stdbool.h>
#include <stdint.h>

#define RAM_DIGEST_CHUNK_BYTES (2ULL << 20)
#define RAM_DIGEST_THREADS_MAX 8
#define RAM_DIGEST_WHOLE_BYTES 16

struct ram_digest {
	uint64_t chunk_bytes;            /* RAM_DIGEST_CHUNK_BYTES */
	uint64_t nchunks;                /* over the whole RAM mapping, the last one may be short */
	uint64_t *chunk;                 /* nchunks hashes */
	uint8_t whole[RAM_DIGEST_WHOLE_BYTES];
	uint64_t read_chunks;            /* chunks read; the others had no resident page (all zeros) */
	double ms;                       /* time it took */
};

/* Hashes every chunk of mem with up to `threads` threads (1..RAM_DIGEST_THREADS_MAX).
 * A chunk none of whose pages is resident reads as zeros and gets the hash
 * of a zero chunk without being read. Returns 0 or -ENOMEM. */
int ram_digest_compute(const struct guest_memory *mem, int threads, struct ram_digest *d);
void ram_digest_free(struct ram_digest *d);
/* The whole-RAM hash as 32 hex digits. */
void ram_digest_hex(const struct ram_digest *d, char out[2 * RAM_DIGEST_WHOLE_BYTES + 1]);
/* Compares two digests of the same RAM size: the number of chunks that
 * differ (UINT64_MAX when the layouts differ) and the first one's index. */
uint64_t ram_digest_diff(const struct ram_digest *a, const struct ram_digest *b, uint64_t *first);
/* The guest-physical address where chunk i starts. */
uint64_t ram_digest_chunk_gpa(const struct guest_memory *mem, uint64_t i);

/* A disk's content, for --verify of a disk copied along (`--disk-to`): an
 * XXH3 128-bit hash over (u64 offset, bytes) of each 64 KiB block of the
 * file that is not all zero, holes skipped, so two files with the same
 * bytes hash the same however they are allocated. 0 or -errno; hex gets 32
 * hex digits, *ms the time it took, *read the bytes read. */
#define DISK_DIGEST_BLOCK 65536u
int disk_digest_compute(int fd, uint64_t size, char hex[2 * RAM_DIGEST_WHOLE_BYTES + 1], double *ms, uint64_t *read);

/* Wire form: u32 version (1), u32 reserved, u64 chunk bytes, u64 chunk count,
 * 16-byte whole hash, then the chunk hashes (u64 each, little endian). */
#define RAM_DIGEST_WIRE_VERSION 1
#define RAM_DIGEST_WIRE_HEADER_BYTES (4 + 4 + 8 + 8 + RAM_DIGEST_WHOLE_BYTES)
uint64_t ram_digest_wire_bytes(const struct ram_digest *d);
void ram_digest_to_wire(const struct ram_digest *d, uint8_t *out);
/* Checks version, sizes and that the whole hash matches the chunk hashes. */
int ram_digest_from_wire(const uint8_t *in, uint64_t len, struct ram_digest *d, char *err, size_t errlen);
#endif
