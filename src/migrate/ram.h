/* RAM, the first live section (live.h): page tracing (KVM dirty logging
 * with manual protect and chunked clears), zero and untouched page
 * detection, and the encoding and decoding of page runs, in one place.
 *
 * Payload of a RAM frame: u32 run count | u32 pass | page data | runs
 * (struct page_run each). Data runs carry 4 KiB per page, LZ4 runs a u32
 * compressed length + block per page, zero runs nothing. */
#ifndef GLIDE_MIGRATE_PAGES_H
#define GLIDE_MIGRATE_PAGES_H
#include <stdbool.h>
#include <stdint.h>
#include "vmm/vm.h"

#define PAGES_PER_CHUNK 512ULL          /* 2 MiB: unit of clearing and of stream assignment */
#define PAGE_RUN_ZERO 0u
#define PAGE_RUN_DATA 1u
#define PAGE_RUN_LZ4 2u                  /* each page: u32 compressed length + LZ4 block */
#define PAGES_FRAME_MAX_DATA_BYTES (1u << 20) /* page data per frame */
#define PAGES_FRAME_MAX_RUNS 1024u
#define PAGES_HEADER_BYTES 8                  /* u32 run count, u32 pass */

struct page_run {
	uint64_t first_pfn;   /* RAM page number (ram offset / 4 KiB) */
	uint32_t npages;
	uint32_t kind;
};

struct dirty_tracker {
	struct vm *vm;
	uint64_t npages;
	uint64_t *bitmap;      /* pages to send in the current phase */
	uint64_t *slot_bits;   /* scratch for KVM_GET_DIRTY_LOG */
	bool tracing;          /* dirty logging on (false: one pass over a paused VM, a snapshot) */
	bool manual_protect;   /* clear in chunks just before sending */
	bool skip_nonresident; /* untouched host pages are zero (no swap on this host) */
};

/* Everything pending; with trace, KVM dirty logging on so later writes are seen. */
int dirty_start(struct dirty_tracker *t, struct vm *vm, bool trace);
/* ORs KVM's dirty log (and pages written by the monitor) into t->bitmap; returns the count of set bits. */
int dirty_harvest(struct dirty_tracker *t, uint64_t *count);
/* Write-protects again the pages of one chunk that are about to be sent. */
int dirty_clear_chunk(struct dirty_tracker *t, uint64_t chunk);
void dirty_stop(struct dirty_tracker *t);
uint64_t dirty_count(const struct dirty_tracker *t);

bool page_is_zero(const uint8_t *page);

/* The RAM section's frame decoder, exposed for the fuzz target: validates
 * the whole payload, then writes guest memory. touched: pages written so
 * far (a zero run only clears those; the others are still zero). */
int ram_apply_frame(struct vm *vm, uint64_t *touched, const uint8_t *data, size_t len, char *err, size_t errlen);
#endif
