/* SDPS: stun during page send.
 *
 * A level L means the vCPUs give up the fraction L of their run time: every
 * run slice P they are kicked out of KVM_RUN and sleep S = P * L / (1 - L).
 * Slices stay short (S at most 10 ms, P at least 100 us) so the guest sees
 * many tiny stalls instead of a long one. After each pre-copy phase the
 * level is recomputed from the measured dirty and transmit rates: aim for a
 * dirty rate of half the transmit rate, rise faster while a phase makes too
 * little progress, fall back to zero as soon as it is not needed. */
#include "migrate/sdps.h"
#include "common/util.h"
#include <string.h>

void sdps_init(struct sdps *s, struct vm *vm)
{
	memset(s, 0, sizeof(*s));
	s->vm = vm;
	for (int i = 0; i < vm->nvcpus; i++)
		s->base_throttle_ns += vm->vcpus[i].throttle_ns;
}

static void *sdps_kicker(void *arg)
{
	struct sdps *s = arg;
	while (!s->stop) {
		/* one cycle: the vCPUs run a slice, then sleep */
		uint64_t period = s->vm->throttle_period_ns + s->vm->throttle_sleep_ns;
		sleep_ns(period ? period : SDPS_RUN_SLICE_NS);
		if (s->vm->throttle_sleep_ns && !s->stop)
			vm_kick_vcpus(s->vm);
	}
	return NULL;
}

void sdps_set_level(struct sdps *s, double level)
{
	struct vm *vm = s->vm;
	if (level < 0.005)
		level = 0;
	if (level > SDPS_LEVEL_MAX)
		level = SDPS_LEVEL_MAX;
	s->level = level;
	if (level > s->max_level)
		s->max_level = level;
	if (!level) {
		vm->throttle_sleep_ns = 0;
		return;
	}
	uint64_t period = SDPS_RUN_SLICE_NS;
	uint64_t sleep = (uint64_t)((double)period * level / (1 - level));
	if (sleep > SDPS_SLEEP_MAX_NS) {
		sleep = SDPS_SLEEP_MAX_NS;
		period = (uint64_t)((double)sleep * (1 - level) / level);
		if (period < SDPS_RUN_SLICE_MIN_NS)
			period = SDPS_RUN_SLICE_MIN_NS;
	}
	vm->throttle_period_ns = period;
	vm->throttle_sleep_ns = sleep;
	if (!s->thread_running) {
		s->stop = false;
		if (pthread_create(&s->thread, NULL, sdps_kicker, s) == 0)
			s->thread_running = true;
	}
}

double sdps_next_level(const struct sdps *s, double dirty_rate, double transmit_rate, bool progressing)
{
	double level = s->level;
	if (transmit_rate <= 0)
		return level;
	/* The guest's dirty rate without throttling. */
	double unthrottled = dirty_rate / (1 - level);
	double target = 0.5 * transmit_rate;
	double want = unthrottled > target ? 1 - target / unthrottled : 0;
	if (!progressing) /* too little progress: at least halve the remaining run time */
		want = want > 1 - (1 - level) / 2 ? want : 1 - (1 - level) / 2;
	if (want < level && !progressing)
		want = level;
	return want;
}

void sdps_stop(struct sdps *s)
{
	s->vm->throttle_sleep_ns = 0;
	s->level = 0;
	if (s->thread_running) {
		s->stop = true;
		pthread_join(s->thread, NULL);
		s->thread_running = false;
	}
}

uint64_t sdps_guest_time_ns(const struct sdps *s)
{
	uint64_t t = 0;
	for (int i = 0; i < s->vm->nvcpus; i++)
		t += s->vm->vcpus[i].throttle_ns;
	return t > s->base_throttle_ns ? t - s->base_throttle_ns : 0;
}
