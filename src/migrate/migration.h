/* Internal state of an outgoing migration (source side). */
#ifndef GLIDE_MIGRATE_MIGRATION_H
#define GLIDE_MIGRATE_MIGRATION_H
#include <jansson.h>
#include <pthread.h>
#include "migrate/migrate.h"
#include "migrate/pages.h"
#include "migrate/sdps.h"
#include "migrate/wire.h"

#define SWITCHOVER_GOAL_MS_DEFAULT 500
#define STREAMS_AUTO_MAX 4
#define STREAMS_AUTO_PROBE_MIN_BYTES (1ULL << 30)
#define MIGRATION_PHASES_MAX 100000
#define CONVERGED_EXTRA_PHASES_MAX 8   /* phases spent shrinking a set that already fits the goal */

struct migration_params {
	char addrs[WIRE_MAX_STREAMS][128];
	int naddrs;
	int streams;                 /* 0: auto */
	uint64_t switchover_goal_ms;
	uint64_t max_bandwidth;      /* bytes/s, 0: unlimited */
	enum sdps_mode sdps;
	enum wire_encrypt_mode encrypt;
	uint64_t timeout_s;          /* 0: none */
	int dscp;
	uint64_t stall_timeout_ms;   /* a stream that moves nothing this long fails the migration */
	bool compress;               /* LZ4 per page where it saves space */
	uint8_t key[WIRE_KEY_BYTES];
};

struct rate_limiter {
	pthread_mutex_t lock;
	uint64_t bytes_per_s;
	uint64_t next_ns;
};

struct migration;

struct stream_worker {
	struct migration *mig;
	struct wire_stream *ws;
	pthread_t thread;
	bool final;                  /* switchover pass: no clearing, send FINAL after */
	uint64_t pages, zero_pages, compressed_pages, bytes;
	int rc;
	char err[256];
};

struct migration {
	int refs;                    /* m->migration, its thread, API readers; under migration_ptr_lock */
	struct monitor *mon;
	struct vm *vm;
	int id;                      /* 1, 2, ... per monitor process */
	struct migration_params p;
	pthread_t thread;
	struct wire_stream streams[WIRE_MAX_STREAMS];
	int nstreams;
	struct stream_worker workers[WIRE_MAX_STREAMS];
	struct dirty_tracker dirty;
	struct rate_limiter rl;
	struct sdps sdps;
	uint8_t session[WIRE_SESSION_BYTES];

	pthread_mutex_t lock;        /* guards the fields below that readers copy */
	const char *status;          /* "running", "completed", "failed", "cancelled" */
	const char *stage;           /* "connecting", "precopy", "switchover", ... */
	char error[512];
	int phase;                   /* -1, 0, 1, ... */
	uint64_t phase_pages;        /* pages to send in the current phase */
	double transmit_rate, dirty_rate, predicted_stun_ms;
	uint64_t start_ns, end_ns, stun_start_ns, stun_end_ns;
	double dest_restore_ms;
	json_t *phases;
	bool resumed_source;
	bool source_was_paused;      /* paused by its user when the migration started: stays so */
	bool result_served;          /* its final status was returned by GET /v1/migration */
	char stop_reason[128];       /* set when the monitor itself stops (signal, shutdown) */

	/* counters updated by workers (atomics) */
	uint64_t bytes_sent, pages_sent, zero_pages, compressed_pages, phase_sent;
	volatile bool cancel;
	volatile bool failed;
};
#endif
