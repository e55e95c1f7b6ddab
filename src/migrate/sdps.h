/* SDPS (stun during page send): slow the vCPUs in short slices so that
 * pre-copy converges when the guest dirties memory faster than we send it. */
#ifndef GLIDE_MIGRATE_SDPS_H
#define GLIDE_MIGRATE_SDPS_H
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include "vmm/vm.h"

enum sdps_mode { SDPS_OFF, SDPS_ALWAYS, SDPS_DYNAMIC };

#define SDPS_LEVEL_MAX 0.998
#define SDPS_SLEEP_MAX_NS 10000000ULL /* longest single stall up to level 0.99: 10 ms */
#define SDPS_SLEEP_EXTREME_NS 50000000ULL /* beyond 0.99 (a guest dirtying ~100x the link): 50 ms */
#define SDPS_RUN_SLICE_NS 2000000ULL  /* default run slice between stalls */
#define SDPS_RUN_SLICE_MIN_NS 100000ULL

struct sdps {
	struct vm *vm;
	pthread_t thread;
	bool thread_running;
	volatile bool stop;
	double level;        /* fraction of guest run time taken, 0 .. SDPS_LEVEL_MAX */
	double max_level;    /* highest level used */
	uint64_t base_throttle_ns;
};

void sdps_init(struct sdps *s, struct vm *vm);
/* Sets the throttle level; starts or stops the kicker thread as needed. */
void sdps_set_level(struct sdps *s, double level);
enum sdps_progress {
	SDPS_PROGRESSING, /* the dirty set shrinks well */
	SDPS_STALLED,     /* it shrinks by less than 20% */
	SDPS_SATURATED,   /* the guest re-dirtied (nearly) all that was sent */
};
/* Next level from the measured rates (bytes/s) of the last phase. */
double sdps_next_level(const struct sdps *s, double dirty_rate, double transmit_rate, enum sdps_progress progress);
void sdps_stop(struct sdps *s);
/* The longest single sleep SDPS put a vCPU to since sdps_init (ns). */
uint64_t sdps_longest_stall_ns(const struct sdps *s);
/* Guest run time SDPS has taken from all vCPUs so far (ns). */
uint64_t sdps_guest_time_ns(const struct sdps *s);
#endif
