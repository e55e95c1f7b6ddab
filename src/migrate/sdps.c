/* SDPS: stun during page send.
 *
 * A level L means the vCPUs give up the fraction L of their run time: every
 * run slice P they are kicked out of KVM_RUN and sleep S = P * L / (1 - L).
 * Slices stay short (S at most 10 ms, P at least 100 us) so the guest sees
 * many tiny stalls instead of a long one; only beyond level 0.99, for a
 * guest that dirties memory ~100 times faster than the link, S grows to
 * 50 ms (level 0.998 at most: an unpaced A-B guest on a 70 MB/s link
 * still re-dirtied its whole 128 MiB range every phase at 0.99 with 10 ms
 * sleeps). The longest sleep is reported. After each pre-copy phase the
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
	for (int i = 0; i < vm->nvcpus; i++) {
		s->base_throttle_ns += vm->vcpus[i].throttle_ns;
		__atomic_store_n(&vm->vcpus[i].throttle_max_ns, 0, __ATOMIC_RELAXED);
	}
}

/* Kicks every vCPU whose run slice is over out of KVM_RUN. */
static void *sdps_kicker(void *arg)
{
	struct sdps *s = arg;
	struct vm *vm = s->vm;
	while (!s->stop) {
		uint64_t period = vm->throttle_period_ns;
		sleep_ns(period ? MIN(period, SDPS_RUN_SLICE_NS) / 2 : SDPS_RUN_SLICE_NS);
		if (!vm->throttle_sleep_ns || s->stop)
			continue;
		uint64_t now = now_ns();
		for (int i = 0; i < vm->nvcpus; i++) {
			struct vcpu *v = &vm->vcpus[i];
			uint64_t since = v->throttle_run_since;
			/* no slice yet (it has not left KVM_RUN since SDPS began) or slice over */
			if (!v->throttle_asleep && (!since || now - since >= period))
				vm_kick_vcpu(vm, i);
		}
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
	uint64_t sleep_max = level > 0.99 ? SDPS_SLEEP_EXTREME_NS : SDPS_SLEEP_MAX_NS;
	if (sleep > sleep_max) {
		sleep = sleep_max;
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

double sdps_next_level(const struct sdps *s, double dirty_rate, double transmit_rate, enum sdps_progress progress)
{
	double level = s->level;
	if (transmit_rate <= 0)
		return level;
	/* The guest's dirty rate without throttling. */
	double unthrottled = dirty_rate / (1 - level);
	double target = 0.5 * transmit_rate;
	double want = unthrottled > target ? 1 - target / unthrottled : 0;
	/* Too little progress: at least halve the guest's remaining run time. When
	 * the guest re-dirtied nearly everything we sent, its measured dirty rate
	 * is only a lower bound (it ran out of pages to dirty): quarter it. */
	double floor = progress == SDPS_SATURATED ? 1 - (1 - level) / 4
		       : progress == SDPS_STALLED ? 1 - (1 - level) / 2 : 0;
	if (want < floor) /* the floor is never below the current level */
		want = floor;
	return MIN(want, SDPS_LEVEL_MAX);
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

uint64_t sdps_longest_stall_ns(const struct sdps *s)
{
	uint64_t m = 0;
	for (int i = 0; i < s->vm->nvcpus; i++)
		m = MAX(m, __atomic_load_n(&s->vm->vcpus[i].throttle_max_ns, __ATOMIC_RELAXED));
	return m;
}

uint64_t sdps_guest_time_ns(const struct sdps *s)
{
	uint64_t t = 0;
	for (int i = 0; i < s->vm->nvcpus; i++)
		t += s->vm->vcpus[i].throttle_ns;
	return t > s->base_throttle_ns ? t - s->base_throttle_ns : 0;
}
