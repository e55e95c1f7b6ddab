/* Internal state of an outgoing migration (source side). */
#ifndef GLIDE_MIGRATE_MIGRATION_H
#define GLIDE_MIGRATE_MIGRATION_H
#include <jansson.h>
#include <pthread.h>
#include "migrate/migrate.h"
#include "migrate/channel.h"
#include "migrate/converge.h"
#include "migrate/live.h"
#include "migrate/sdps.h"
#include "migrate/wire.h"
#include "state/state.h"
#include "vmm/digest.h"

/* The default is a budget a guest does not notice: measured on the nested
 * 2-CPU AMD test host (docs/migration.md, docs/benchmarks.md), 10 ms gave
 * guest-observed stuns of 3-13 ms (256 MiB guest rewriting 128 MiB) and
 * 4-6 ms (2 GiB rewriting 1 GiB) in the same or less total time than
 * 30 ms (6-19 and 5-10 ms stuns), and under a 50 MiB/s cap no guest stall
 * over 8 ms where 30 ms let the stun itself reach 22 ms. */
#define SWITCHOVER_GOAL_MS_DEFAULT 10
#define SWITCHOVER_GOAL_MS_MAX 600000
/* A cap below this would make a stream sleep for seconds per frame (frames
 * carry up to 8 MiB), out of reach of a cancel. */
#define MIGRATION_BANDWIDTH_MIN (1ULL << 20)
#define MIGRATION_TIMEOUT_S_MAX (7 * 24 * 3600)
#define MIGRATION_DSCP_MAX 63
#define STREAMS_AUTO_MAX 4
#define STREAMS_AUTO_PROBE_MIN_BYTES (1ULL << 30)
/* "auto" on a VM without disks: pass -1 itself is the probe (streams.c) */
#define STREAMS_ADAPT_MIN_BYTES (64ULL << 20)  /* less resident memory: one stream */
#define STREAMS_ADAPT_CHUNKS 4                 /* each stream count is measured over this many chunks per stream */
#define STREAMS_ADAPT_WINDOW_NS 400000000ULL   /* ... or this long at most */
#define STREAMS_ADAPT_TOLERANCE 1.10           /* fewer streams are kept when the more were this much slower */
#define DISK_TO_PATH_MAX 1024

struct migration_params {
	char addrs[WIRE_MAX_STREAMS][128];
	int naddrs;
	int streams;                 /* 0: auto (streams.c: pass -1 finds the count for a VM without disks) */
	uint64_t switchover_goal_ms;
	uint64_t max_bandwidth;      /* bytes/s, 0: unlimited */
	enum sdps_mode sdps;
	enum wire_encrypt_mode encrypt;
	uint64_t timeout_s;          /* 0: none */
	int dscp;
	uint64_t stall_timeout_ms;   /* a stream that moves nothing this long fails the migration */
	bool compress;               /* LZ4 per page where it saves space */
	bool verify;                 /* compare a digest of all RAM on both sides before GO */
	char disk_to[VM_MAX_DISKS][DISK_TO_PATH_MAX]; /* copy disk i to this file on the destination ("": shared) */
	uint32_t disk_copy;          /* bit i: disk_to[i] is set */
	uint8_t key[WIRE_KEY_BYTES];
};

struct migration;

struct stream_worker {
	struct migration *mig;
	struct channel ch;           /* its stream, pass, counters and error */
	pthread_t thread;
	int rc;
	bool done;                   /* atomic: its pass ended */
};

struct migration {
	int refs;                    /* m->migration, its thread, API readers; under migration_ptr_lock */
	struct monitor *mon;
	struct vm *vm;
	int id;                      /* 1, 2, ... per monitor process */
	struct migration_params p;
	pthread_t thread;
	struct wire_stream streams[WIRE_MAX_STREAMS];
	struct fair_lock stream_lock[WIRE_MAX_STREAMS]; /* held for every use of a stream while sections run */
	struct live_link link;       /* the streams, for live sections */
	int nstreams;
	/* "auto" choosing in pass -1: chunks are handed out from next_chunk to the
	 * first active_streams streams; the rest wait, and once the count is
	 * settled leave the pass, then end with FINAL */
	bool adaptive;
	int active_streams;          /* atomic, a futex the waiting streams sleep on */
	bool adapt_settled;          /* atomic */
	uint64_t next_chunk;         /* atomic */
	json_t *adapt_log;           /* the counts tried, {streams, mb_s} each (in the result) */
	struct stream_worker workers[WIRE_MAX_STREAMS];
	const struct state_section_ops *live_ops[LIVE_SECTIONS_MAX]; /* the sections copied live */
	struct live_source live[LIVE_SECTIONS_MAX];
	int nlive;
	struct rate_limiter rl;
	struct sdps sdps;
	uint8_t session[WIRE_SESSION_BYTES];

	pthread_mutex_t lock;        /* guards the fields below that readers copy */
	const char *status;          /* "running", "in-doubt", "completed", "failed", "cancelled" */
	const char *stage;           /* "connecting", "precopy", "switchover", ... */
	char error[512];
	int phase;                   /* -1, 0, 1, ... */
	uint64_t phase_bytes;        /* what the live sections send in the current phase */
	double transmit_rate, dirty_rate, predicted_stun_ms;
	/* the link's rate for predictions: the transmit rate of the phase that
	 * put the most bytes on the wire (a small phase's rate is mostly the
	 * SYNC's round trip, which on a long link is no measure of bandwidth) */
	double link_rate, link_rate_bytes;
	uint64_t start_ns, end_ns, stun_start_ns, stun_end_ns;
	uint64_t stun_guest_tsc;     /* vCPU 0's TSC read while stunned, 0: not read */
	int stun_retries;            /* stuns given up for a burst: the VM ran again for another phase */
	json_t *stun_retry_log;      /* ... each with its pause and what it would have sent */
	double dest_restore_ms;
	bool dest_forward;           /* RUNNING said: send frames that reach our taps after the checkpoint */
	uint64_t net_forwarded;      /* ... how many were sent */
	bool verified;               /* --verify: the destination's RAM digest matched ours */
	bool resolved_in_doubt;      /* committed by a resolution after an in-doubt switchover */
	char digest[2 * RAM_DIGEST_WHOLE_BYTES + 1];
	char disk_digest[VM_MAX_DISKS][2 * RAM_DIGEST_WHOLE_BYTES + 1]; /* --verify: each copied disk's (disk_digest_compute) */
	double disk_digest_ms;            /* the time hashing them took, stunned */
	bool disks_verified;              /* every copied disk's digest matched the destination's */
	double verify_source_ms, verify_dest_ms;
	uint64_t verify_chunks, verify_read_chunks;
	json_t *phases;
	bool resumed_source;
	bool source_was_paused;      /* paused by its user when the migration started: stays so */
	bool result_served;          /* its final status was returned by GET /v1/migration */
	char stop_reason[128];       /* set when the monitor itself stops (signal, shutdown) */
	pthread_cond_t resolved;     /* in doubt: signalled by migrate_api_resolve(), under lock */
	const char *keep;            /* the resolution: "here" or "there" (NULL: none yet) */

	/* counters updated by workers (atomics) */
	uint64_t bytes_sent, pages_sent, zero_pages, compressed_pages, phase_sent; /* phase_sent: bytes */
	uint64_t disk_blocks, disk_zero_blocks; /* copied disks' 4 KiB blocks sent (zero: as zero runs) */
	volatile bool cancel;
	volatile bool failed;
};

/* source.c */
void migration_fail(struct migration *mig, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* options.c. The tunables of a migration (everything but "to", the key
 * and the addresses) with defaults and limits: 0, or -EINVAL with err set.
 * Only reads JSON; the controller and the agent check requests with it. */
int migration_options_parse(json_t *body, struct migration_params *p, char *err, size_t errlen);
/* The body of the monitor's POST /v1/migration: the tunables, "to"
 * (p->addrs) and "key_file" (an absolute path, copied to key_file; the
 * caller reads the key). 0, or -EINVAL with err set. */
int migration_request_parse(json_t *body, struct migration_params *p, char *key_file, size_t key_file_len, char *err,
			    size_t errlen);
/* streams.c */
int streams_connect(struct migration *mig, int count);
int streams_auto_count(struct migration *mig);  /* how many streams "auto" may open (sets mig->adaptive) */
/* After an adaptive pass -1: the streams beyond the count it chose end
 * (FINAL); later passes run on the rest. 0 or -1 (failed). */
int streams_adapt_done(struct migration *mig);
int streams_choose(struct migration *mig, int max); /* probe: how many to keep, or -1 */
int streams_send_pass(struct migration *mig, bool final); /* one pass of every live section */
#endif
