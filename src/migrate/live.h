/* Live sections: state that is copied while the VM runs (RAM today, disks
 * next), the way QEMU's SaveVMHandlers and Firecracker's Persist split it.
 *
 * A live section registers itself like any state section (state.h), with
 * `live` pointing at these hooks. The engine knows nothing else about it:
 *
 *   source                                   destination
 *   setup     start tracing; all pending      load_setup  prepare (VM exists)
 *   iterate   send this channel's share of    load        validate one frame's
 *             the current pass (concurrent,               payload, then apply it
 *             one call per channel)                       (concurrent per channel)
 *   harvest   end of a pass: what changed     load_cleanup
 *             since becomes the next pass
 *   pending   bytes the current pass holds
 *             (convergence and SDPS read it)
 *   complete  final pass while stunned
 *   cleanup   stop tracing
 *
 * cleanup (and load_cleanup) run once the migration or snapshot is over,
 * also for a section whose setup failed or never ran: priv may be NULL.
 *
 * Frames: a section's payload travels in a LIVE frame as u32 section id
 * (its index in the CONFIG frame's "live" list) + payload of at most
 * LIVE_PAYLOAD_MAX bytes, on whatever channel iterate() was given. */
#ifndef GLIDE_MIGRATE_LIVE_H
#define GLIDE_MIGRATE_LIVE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include "migrate/channel.h"

struct vm;

#define LIVE_SECTIONS_MAX 8
#define LIVE_FRAME_ID_BYTES 4
#define LIVE_PAYLOAD_MAX (WIRE_FRAME_MAX_PAYLOAD - LIVE_FRAME_ID_BYTES)

/* The streams of a migration, for a section that sends outside a pass (a
 * write-blocking mirror, disk.c): stream i is used only with locks[i] held,
 * the lock every pass's sends on it take too. */
struct live_link {
	struct wire_stream *streams;
	struct fair_lock *locks;
	int count;
	struct rate_limiter *rl;
	const volatile bool *cancel, *failed;
	uint64_t *wire_bytes;          /* atomic: bytes put on the wire */
	uint64_t mirrored_writes, mirrored_blocks; /* atomic: guest writes a mirror sent at once, and their blocks */
	/* atomic: what mirrored writes cost the guest: the time its
	 * completions waited in all, the longest wait, and the longest part
	 * of a wait spent for the stream (the cap's time and the lock) */
	uint64_t mirror_wait_ns, mirror_wait_max_ns, mirror_queue_max_ns;
	/* a section that failed outside its passes fails the migration with this */
	void (*fail)(struct live_link *l, const char *section, const char *why);
	void *owner;                   /* the migration */
};

/* A live section's state on the source, for one migration. */
struct live_source {
	struct vm *vm;
	struct live_link *link;   /* a migration's streams (NULL: a snapshot) */
	uint32_t id;              /* the section's id in LIVE frames */
	bool tracing;      /* a migration: trace changes; false: a snapshot of a paused VM */
	bool compress;     /* migration option: compress where it saves space */
	uint32_t disk_copy; /* disks copied to the destination (bit i: disk i; --disk-to) */
	void *priv;        /* the section's own */
};

/* A live section's state on the destination, for one migration. */
struct live_dest {
	struct vm *vm;
	uint32_t disk_copy; /* disks arriving as copies (bit i: disk i) */
	void *priv;
};

struct live_section_ops {
	/* A migration uses the section only when this says so (NULL: always). */
	bool (*needed)(uint32_t disk_copy);
	/* source */
	int (*setup)(struct live_source *ls, char *err, size_t errlen);
	uint64_t (*pending)(struct live_source *ls);
	int (*iterate)(struct live_source *ls, struct channel *ch);
	int (*harvest)(struct live_source *ls, char *err, size_t errlen);
	int (*complete)(struct live_source *ls, struct channel *ch);
	void (*cleanup)(struct live_source *ls);
	/* destination */
	int (*load_setup)(struct live_dest *ld, char *err, size_t errlen);
	int (*load)(struct live_dest *ld, const uint8_t *data, size_t len, char *err, size_t errlen);
	void (*load_cleanup)(struct live_dest *ld);
};
#endif
