/* The destination's guest memory made present ahead of the first pass
 * (prefault.c): the source's map of resident 2 MiB chunks, sent in CONFIG,
 * and the destination's helper thread that populates them. */
#ifndef GLIDE_MIGRATE_PREFAULT_H
#define GLIDE_MIGRATE_PREFAULT_H
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include "vmm/memory.h"

#define PREFAULT_CHUNK_BYTES (2ULL << 20)

/* Chunks of PREFAULT_CHUNK_BYTES covering mem_size bytes of RAM. */
uint64_t prefault_chunks(uint64_t mem_size);
/* Source: a hex string, bit c (byte c / 8, bit c % 8) set when chunk c
 * has a resident page (mincore); NULL without memory. The caller frees it. */
char *prefault_map_build(const struct guest_memory *mem, uint64_t *resident_chunks);
/* Destination: the map checked (length for mem_size, hex digits, no bit
 * past the end) into *map (malloc'd); -EINVAL with err, or -ENOMEM. */
int prefault_map_parse(const char *hex, uint64_t mem_size, uint8_t **map, char *err, size_t errlen);

struct prefault {
	pthread_t thread;
	bool running;
	bool stop;          /* atomic */
	uint8_t *host;
	uint64_t size, chunks;
	uint8_t *map;       /* owned */
	uint64_t bytes;     /* atomic: made present so far */
	uint64_t ns;        /* the thread's time */
	int error;          /* errno that stopped it, 0 */
};

/* Starts the thread over the chunks map marks (taking map); -errno when
 * it cannot start (map freed). */
int prefault_start(struct prefault *p, const struct guest_memory *mem, uint8_t *map);
/* Stops it (within one 32 MiB step), logs what it did, frees the map. */
void prefault_stop(struct prefault *p);
#endif
