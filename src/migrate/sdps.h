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
#define SDPS_SLEEP_MAX_NS 5000000ULL /* longest single stall: 5 ms */
#define SDPS_RUN_SLICE_NS 2000000ULL  /* default run slice between stalls */
#define SDPS_RUN_SLICE_MIN_NS 10000ULL /* at the highest level: 10 us of run per 5 ms */
#define SDPS_WATCHDOG_NS 1000000ULL   /* a slice overrun by this much is ended by the watchdog */

struct sdps {
	struct vm *vm;
	double level;        /* fraction of guest run time taken, 0 .. SDPS_LEVEL_MAX */
	double max_level;    /* highest level used */
	uint64_t base_throttle_ns;
	uint64_t base_slice_run_ns;
	uint64_t base_late_kicks;
	pthread_t thread;            /* the watchdog */
	bool thread_running;
	volatile bool stop;
};

void sdps_init(struct sdps *s, struct vm *vm);
/* Sets the throttle level (0: off). */
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
/* The share of throttled time the vCPUs slept (run slices plus sleeps
 * since sdps_init): what the levels asked for, as achieved. */
double sdps_achieved_level(const struct sdps *s);
/* Slices the watchdog ended since sdps_init (their timer kick was lost). */
uint64_t sdps_late_kicks(const struct sdps *s);
#endif
