/* SDPS: stun during page send.
 *
 * A level L means the vCPUs give up the fraction L of their run time: every
 * run slice P they are kicked out of KVM_RUN and sleep S = P * L / (1 - L).
 * No sleep is longer than 5 ms, at any level: the run slice shrinks instead
 * (down to 10 us at the highest level, 0.998). Each vCPU's own slice timer
 * ends its slice (vcpu.c); with a kicker thread polling the vCPUs, slices
 * ran longer than asked and high levels needed 50 ms sleeps. A watchdog
 * thread still ends a slice that overran by 1 ms (a lost timer kick) and
 * counts it. The longest sleep and the level achieved (share of throttled
 * time slept) are reported. After each pre-copy phase the level is
 * recomputed from the measured dirty and transmit rates: aim for a dirty
 * rate of half the transmit rate, rise faster while a phase makes too
 * little progress, fall back to zero as soon as it is not needed. */
#include "migrate/sdps.h"
#include "common/util.h"
#include <math.h>
#include <string.h>

void sdps_init(struct sdps *s, struct vm *vm)
{
	memset(s, 0, sizeof(*s));
	s->vm = vm;
	for (int i = 0; i < vm->nvcpus; i++) {
		s->base_throttle_ns += vm->vcpus[i].throttle_ns;
		s->base_slice_run_ns += vm->vcpus[i].throttle_run_ns;
		s->base_late_kicks += __atomic_load_n(&vm->vcpus[i].throttle_late_kicks, __ATOMIC_RELAXED);
		__atomic_store_n(&vm->vcpus[i].throttle_max_ns, 0, __ATOMIC_RELAXED);
	}
}

/* The watchdog: a vCPU's own slice timer ends its slices; should a kick of
 * that timer ever be lost, a slice would run on until the guest's next exit
 * (for a guest that only computes and writes memory: never), and SDPS
 * would stop acting without a sign. Every SDPS_WATCHDOG_NS this thread
 * kicks a vCPU whose slice overran by more than that, and counts it. */
static void *sdps_watchdog(void *arg)
{
	struct sdps *s = arg;
	struct vm *vm = s->vm;
	while (!s->stop) {
		sleep_ns(SDPS_WATCHDOG_NS);
		uint64_t period = vm->throttle_period_ns;
		if (!vm->throttle_sleep_ns || s->stop || vm->pause_requested) /* parked vCPUs run no slice */
			continue;
		uint64_t now = now_ns();
		for (int i = 0; i < vm->nvcpus; i++) {
			struct vcpu *v = &vm->vcpus[i];
			uint64_t since = v->throttle_run_since;
			if (since && !v->throttle_asleep && now > since && now - since > period + SDPS_WATCHDOG_NS) {
				__atomic_add_fetch(&v->throttle_late_kicks, 1, __ATOMIC_RELAXED);
				vm_kick_vcpu(vm, i);
			}
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
	if (sleep > SDPS_SLEEP_MAX_NS) {
		sleep = SDPS_SLEEP_MAX_NS;
		period = (uint64_t)llround((double)sleep * (1 - level) / level);
		if (period < SDPS_RUN_SLICE_MIN_NS)
			period = SDPS_RUN_SLICE_MIN_NS;
	}
	bool starting = !vm->throttle_sleep_ns;
	vm->throttle_period_ns = period;
	vm->throttle_sleep_ns = sleep;
	/* A vCPU starts its first slice (and its slice timer) at its next exit:
	 * a guest that seldom exits gets one now. */
	if (starting)
		vm_kick_vcpus(vm);
	if (!s->thread_running) {
		s->stop = false;
		if (pthread_create(&s->thread, NULL, sdps_watchdog, s) == 0)
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
	s->vm->throttle_sleep_ns = 0; /* each vCPU disarms its slice timer at its next exit */
	s->level = 0;
	if (s->thread_running) {
		s->stop = true;
		pthread_join(s->thread, NULL);
		s->thread_running = false;
	}
}

uint64_t sdps_late_kicks(const struct sdps *s)
{
	uint64_t n = 0;
	for (int i = 0; i < s->vm->nvcpus; i++)
		n += __atomic_load_n(&s->vm->vcpus[i].throttle_late_kicks, __ATOMIC_RELAXED);
	return n > s->base_late_kicks ? n - s->base_late_kicks : 0;
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

double sdps_achieved_level(const struct sdps *s)
{
	uint64_t run = 0;
	for (int i = 0; i < s->vm->nvcpus; i++)
		run += s->vm->vcpus[i].throttle_run_ns;
	run = run > s->base_slice_run_ns ? run - s->base_slice_run_ns : 0;
	uint64_t slept = sdps_guest_time_ns(s);
	return slept + run ? (double)slept / (double)(slept + run) : 0;
}
