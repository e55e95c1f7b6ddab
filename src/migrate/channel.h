/* Channels: what a live section sends on. One channel is one migration
 * stream with its helper thread; the engine hands each live section every
 * channel in turn (iterate runs concurrently, one call per channel), and
 * the section builds LIVE frames in the stream's buffer and sends them
 * through the shared bandwidth cap. */
#ifndef GLIDE_MIGRATE_CHANNEL_H
#define GLIDE_MIGRATE_CHANNEL_H
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "migrate/wire.h"

/* A bandwidth cap shared by every stream of a migration (bytes/s, 0: none). */
struct rate_limiter {
	pthread_mutex_t lock;
	uint64_t bytes_per_s;
	uint64_t next_ns;
	uint64_t ahead_next_ns; /* the same clock for what went ahead alone (rate_limit_ahead) */
	bool in_line;          /* nobody goes ahead: the switchover is near */
};
#define RATE_LIMIT_BURST_NS 20000000ULL /* an idle cap allows at most this much burst */
/* Waits until `bytes` more may be sent. */
void rate_limit(struct rate_limiter *r, uint64_t bytes);
/* For a sender that must not book ahead (it holds a lock while it sends,
 * disk.c): waits until the cap's time for everything booked is over ... */
void rate_limit_clear(struct rate_limiter *r);
/* ... then sends, and books what it sent. */
void rate_limit_charge(struct rate_limiter *r, uint64_t bytes);
/* For a sender that goes ahead of the others in line (a guest write
 * waiting for its mirror): its bytes are charged to the others' clock
 * (they wait for them). With share > 1 (others have much to send) it waits
 * only once what it sent alone is more than ahead_ns ahead of 1/share of
 * the cap, whatever the others booked; with share 1 it waits in line, but
 * ahead_ns early; with in_line set it waits in line. */
void rate_limit_ahead(struct rate_limiter *r, uint64_t bytes, uint64_t ahead_ns, unsigned share);

/* A fair lock: taken in the order asked for (a stream's: the bulk copy
 * must not lose it forever to a guest's stream of mirrored writes). */
struct fair_lock {
	pthread_mutex_t m;
	pthread_cond_t c;
	uint64_t next, serving;
};
void fair_lock_init(struct fair_lock *l);
void fair_lock_destroy(struct fair_lock *l);
void fair_lock(struct fair_lock *l);
void fair_unlock(struct fair_lock *l);

struct state_writer;
struct state_section_ops;

struct channel {
	struct wire_stream *ws;        /* a migration stream, or NULL: */
	struct state_writer *file;     /* a snapshot file: payloads become sections of the section's name */
	uint8_t *file_buf;
	const struct state_section_ops *section; /* the live section iterating now */
	int index, count;              /* this channel, and how many carry the current pass */
	uint64_t *next_chunk;          /* shared, atomic: sections hand out their chunks from here in this
	                                * order to whichever active channel asks (NULL: chunk % count == index) */
	const int *active;             /* with next_chunk: channels below this index take chunks (atomic;
	                                * the others wait on it as a futex) */
	const bool *settled;           /* with next_chunk: once set, the channels at or above *active are
	                                * done with the pass (atomic) */
	int pass;                      /* pre-copy phase (-1, 0, 1, ...) */
	bool final;                    /* the pass runs while the VM is stunned */
	uint32_t section_id;           /* set by the engine before each iterate/complete */
	struct rate_limiter *rl;
	struct fair_lock *lock;        /* the stream's: held for every exchange on it (NULL: a file) */
	const volatile bool *cancel, *failed; /* the migration is ending: return at once */
	uint64_t *pass_done;           /* shared, atomic: bytes of the current pass handled */
	uint64_t *wire_bytes;          /* shared, atomic: bytes put on the wire */
	/* this channel's own counters (items: pages for RAM) */
	uint64_t items, zero_items, compressed_items, bytes;
	uint64_t disk_blocks, disk_zero_blocks; /* the disk section's 4 KiB blocks (zero: sent as zero runs) */
	char err[256];
};

static inline bool channel_stopped(const struct channel *ch)
{
	return *ch->cancel || *ch->failed;
}
/* The chunk (of nchunks) this channel sends first, and after chunk c: its
 * own share (c % count == index), or with a shared next_chunk the next one
 * nobody took yet, once the channel is active. nchunks: no more. */
uint64_t channel_first_chunk(struct channel *ch, uint64_t nchunks);
uint64_t channel_next_chunk(struct channel *ch, uint64_t c, uint64_t nchunks);
/* Where a section builds its payload (LIVE_PAYLOAD_MAX bytes). */
uint8_t *channel_payload(struct channel *ch);
/* Sends len payload bytes as one LIVE frame of the current section. */
int channel_send(struct channel *ch, size_t len);
/* The same, for a section that holds the stream's lock already (channel_lock):
 * a section whose frames must not interleave with a mirror's on the stream
 * (disk.c) holds it from reading its data to sending it. The bandwidth cap
 * is not waited for here (never with the lock held): the section does that
 * before it takes the lock. */
int channel_send_locked(struct channel *ch, size_t len);
static inline void channel_lock(struct channel *ch)
{
	if (ch->lock)
		fair_lock(ch->lock);
}
static inline void channel_unlock(struct channel *ch)
{
	if (ch->lock)
		fair_unlock(ch->lock);
}
/* A file channel needs a payload buffer: 0 or -ENOMEM. */
int channel_file_open(struct channel *ch);
void channel_file_close(struct channel *ch);
/* Counts bytes of the current pass as handled (progress shown to the user). */
static inline void channel_progress(struct channel *ch, uint64_t bytes)
{
	__atomic_add_fetch(ch->pass_done, bytes, __ATOMIC_RELAXED);
}
#endif
