/* Unit tests of the policy code the KVM end-to-end tests only reach
 * indirectly, as pure functions fed with recorded figures:
 *  - SDPS level control (src/migrate/sdps.c): sdps_next_level over recorded
 *    phase statistics, and the clamps and slices of sdps_set_level;
 *  - EVC (src/vmm/evc.c): host maximum level, meets/missing, the
 *    cluster intersection, the level masks against docs/host-and-center.md,
 *    and the JSON / --cpuid-mask round trips;
 *  - power-on placement (placement_choose, src/center/placement.c);
 *  - CPUID masking (cpuid_apply, cpuid_missing_features, cpuid_feature_name,
 *    cpuid_mask_parse_arg in src/vmm/).
 * Needs neither /dev/kvm nor a network. Prints PASS/FAIL lines for
 * tests/run.sh. */
#include "center/center.h"
#include "vmm/evc.h"
#include "migrate/sdps.h"
#include "vmm/config.h"
#include "vmm/vm.h"
#include "common/util.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;
#define CHECK(name, cond, ...) do { \
		if (cond) printf("PASS %s\n", name); \
		else { printf("FAIL %s: ", name); printf(__VA_ARGS__); printf("\n"); failures++; } \
	} while (0)

#define MB 1e6
#define GiB (1ULL << 30)
#define MiB (1ULL << 20)

/* ------------------------------------------------------------------ SDPS */

static double next(double level, double dirty, double tx, enum sdps_progress p)
{
	struct sdps s = { .level = level };
	return sdps_next_level(&s, dirty, tx, p);
}

/* One recorded pre-copy phase: the rates source.c measured and its progress class. */
struct phase {
	double dirty, tx;
	enum sdps_progress progress;
};

static void test_sdps_next_level(void)
{
	double l;
	char name[160];

	/* No throttle while progressing and the guest dirties at most half the link. */
	l = next(0, 50 * MB, 100 * MB, SDPS_PROGRESSING);
	CHECK("sdps: progressing, dirty = half the transmit rate: level 0", l == 0, "level %g", l);
	l = next(0, 0, 100 * MB, SDPS_PROGRESSING);
	CHECK("sdps: progressing, idle guest: level 0", l == 0, "level %g", l);
	/* Just above half the link, the level starts (tiny; sdps_set_level rounds it to 0). */
	l = next(0, 50.5 * MB, 100 * MB, SDPS_PROGRESSING);
	CHECK("sdps: progressing, dirty just above half the transmit rate: small level > 0",
	      l > 0 && fabs(l - (1 - 50.0 / 50.5)) < 1e-12, "level %g", l);
	/* Target: the throttled dirty rate is half the transmit rate. */
	l = next(0, 100 * MB, 100 * MB, SDPS_PROGRESSING);
	CHECK("sdps: progressing, dirty = transmit rate: level 0.5", fabs(l - 0.5) < 1e-12, "level %g", l);
	l = next(0, 400 * MB, 100 * MB, SDPS_PROGRESSING);
	CHECK("sdps: progressing, dirty = 4x transmit: level 0.875 (guest left 1/8, dirties 50 MB/s)",
	      fabs(l - 0.875) < 1e-12, "level %g", l);
	/* The measured rate under a level is the throttled one: unthrottled = dirty / (1 - L). */
	l = next(0.5, 50 * MB, 100 * MB, SDPS_PROGRESSING);
	CHECK("sdps: at level 0.5 a measured 50 MB/s is 100 MB/s unthrottled: level stays 0.5",
	      fabs(l - 0.5) < 1e-12, "level %g", l);
	l = next(0.5, 25 * MB, 100 * MB, SDPS_PROGRESSING);
	CHECK("sdps: at level 0.5 a measured 25 MB/s is not more than needed: level falls to 0", l == 0, "level %g", l);
	l = next(0.8, 5 * MB, 100 * MB, SDPS_PROGRESSING); /* 25 MB/s unthrottled */
	CHECK("sdps: progressing from 0.8 with a quiet guest: level 0", l == 0, "level %g", l);

	/* Stalled: at least halve the guest's remaining run time; saturated: quarter it. */
	l = next(0, 0, 100 * MB, SDPS_STALLED);
	CHECK("sdps: stalled from 0 (rates alone want nothing): level 0.5", fabs(l - 0.5) < 1e-12, "level %g", l);
	l = next(0, 0, 100 * MB, SDPS_SATURATED);
	CHECK("sdps: saturated from 0: level 0.75", fabs(l - 0.75) < 1e-12, "level %g", l);
	l = next(0.6, 0, 100 * MB, SDPS_STALLED);
	CHECK("sdps: stalled from 0.6: level 0.8", fabs(l - 0.8) < 1e-12, "level %g", l);
	l = next(0.6, 0, 100 * MB, SDPS_SATURATED);
	CHECK("sdps: saturated from 0.6: level 0.9", fabs(l - 0.9) < 1e-12, "level %g", l);
	/* The rates win when they want more than the floor. */
	l = next(0, 1000 * MB, 100 * MB, SDPS_STALLED);
	CHECK("sdps: stalled, dirty 10x transmit: the rate target 0.95 beats the floor 0.5",
	      fabs(l - 0.95) < 1e-12, "level %g", l);
	/* Saturated rises faster than stalled, which rises faster than progressing, for every start level. */
	bool order = true;
	for (double l0 = 0; l0 < 0.998; l0 += 0.01) {
		double p = next(l0, 60 * MB, 100 * MB, SDPS_PROGRESSING), st = next(l0, 60 * MB, 100 * MB, SDPS_STALLED),
		       sa = next(l0, 60 * MB, 100 * MB, SDPS_SATURATED);
		if (!(sa > st && st > l0 && st >= p)) {
			snprintf(name, sizeof(name), "from %g: progressing %g stalled %g saturated %g", l0, p, st, sa);
			order = false;
			break;
		}
	}
	CHECK("sdps: from every level, saturated > stalled > current level, stalled >= progressing", order, "%s", name);

	/* No transmit rate measured: keep the level. */
	l = next(0.3, 100 * MB, 0, SDPS_SATURATED);
	CHECK("sdps: transmit rate 0: level unchanged", l == 0.3, "level %g", l);
	l = next(0.3, 100 * MB, -1, SDPS_STALLED);
	CHECK("sdps: negative transmit rate: level unchanged", l == 0.3, "level %g", l);

	/* Monotonic: more dirtying never lowers the level, more bandwidth never raises it. */
	bool mono = true;
	for (int p = SDPS_PROGRESSING; p <= SDPS_SATURATED && mono; p++)
		for (double l0 = 0; l0 < 0.99 && mono; l0 += 0.07) {
			double prev = -1;
			for (double d = 0; d < 2000 * MB; d += 7 * MB) {
				double v = next(l0, d, 100 * MB, (enum sdps_progress)p);
				if (v < prev || v < 0 || v >= 1) {
					snprintf(name, sizeof(name), "progress %d level %g dirty %g: %g after %g", p, l0, d, v, prev);
					mono = false;
					break;
				}
				prev = v;
			}
			prev = 2;
			for (double t = 1 * MB; t < 2000 * MB && mono; t += 7 * MB) {
				double v = next(l0, 300 * MB, t, (enum sdps_progress)p);
				if (v > prev) {
					snprintf(name, sizeof(name), "progress %d level %g tx %g: %g after %g", p, l0, t, v, prev);
					mono = false;
				}
				prev = v;
			}
		}
	CHECK("sdps: level non-decreasing in the dirty rate, non-increasing in the transmit rate, in [0, 1)", mono, "%s", name);

	/* Not progressing never lowers the level, even when the rates want less. */
	bool keep = true;
	for (double l0 = 0; l0 < 0.998 && keep; l0 += 0.013)
		for (int p = SDPS_STALLED; p <= SDPS_SATURATED; p++)
			if (next(l0, 1 * MB, 1000 * MB, (enum sdps_progress)p) < l0) {
				snprintf(name, sizeof(name), "level %g progress %d", l0, p);
				keep = false;
			}
	CHECK("sdps: stalled or saturated never lowers the level", keep, "%s", name);
}

/* The level SDPS asks for never passes its maximum, even from the maximum
 * (the engine logs the value it gets: it must be the one that applies). */
static void test_sdps_level_bound(void)
{
	double worst = 0;
	for (double level = 0.9; level <= SDPS_LEVEL_MAX + 1e-12; level += 0.0005)
		for (int p = SDPS_PROGRESSING; p <= SDPS_SATURATED; p++)
			worst = MAX(worst, next(MIN(level, SDPS_LEVEL_MAX), 1e12, 1e6, (enum sdps_progress)p));
	CHECK("sdps_next_level: never above SDPS_LEVEL_MAX, from any level or progress", worst <= SDPS_LEVEL_MAX,
	      "got %.6f", worst);
	CHECK("sdps_next_level: at the maximum a saturated guest stays at it",
	      next(SDPS_LEVEL_MAX, 1e9, 1e6, SDPS_SATURATED) == SDPS_LEVEL_MAX, "got %.6f",
	      next(SDPS_LEVEL_MAX, 1e9, 1e6, SDPS_SATURATED));
}

static void test_sdps_sequences(void)
{
	static struct vm vm; /* no vCPUs: nothing to kick */
	struct sdps s;
	char why[200] = "";

	sdps_init(&s, &vm);
	/* A guest that re-dirties everything sent, phase after phase: the level
	 * climbs, each step quartering the remaining run time, up to 0.998. */
	double prev = 0;
	bool rising = true;
	int phases = 0;
	for (; phases < 20; phases++) {
		double l = sdps_next_level(&s, 30 * MB * (1 - s.level), 100 * MB, SDPS_SATURATED);
		sdps_set_level(&s, l);
		if (s.level > SDPS_LEVEL_MAX || s.level < prev || (prev < SDPS_LEVEL_MAX && s.level <= prev)) {
			snprintf(why, sizeof(why), "phase %d: level %g after %g", phases, s.level, prev);
			rising = false;
			break;
		}
		prev = s.level;
	}
	CHECK("sdps: saturated phases raise the level every phase, never above 0.998", rising, "%s", why);
	CHECK("sdps: saturated phases reach exactly the maximum 0.998", s.level == SDPS_LEVEL_MAX && s.max_level == SDPS_LEVEL_MAX,
	      "level %g max %g", s.level, s.max_level);
	CHECK("sdps: at 0.998 the vCPUs sleep 5 ms per 10.02 us slice",
	      vm.throttle_sleep_ns == SDPS_SLEEP_MAX_NS && vm.throttle_period_ns == 10020, "sleep %llu period %llu",
	      (unsigned long long)vm.throttle_sleep_ns, (unsigned long long)vm.throttle_period_ns);

	/* Stalled from 0: 0.5, 0.75, 0.875 ... (at least halving each phase). */
	sdps_stop(&s);
	sdps_init(&s, &vm);
	const double want[] = { 0.5, 0.75, 0.875, 0.9375 };
	bool halving = true;
	for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
		sdps_set_level(&s, sdps_next_level(&s, 20 * MB * (1 - s.level), 100 * MB, SDPS_STALLED));
		if (fabs(s.level - want[i]) > 1e-12) {
			snprintf(why, sizeof(why), "phase %zu: level %g, want %g", i, s.level, want[i]);
			halving = false;
		}
	}
	CHECK("sdps: stalled phases 0.5, 0.75, 0.875, 0.9375", halving, "%s", why);

	/* Recorded run: a guest dirtying 300 MB/s unthrottled over a 100 MB/s
	 * link. The first stalled phase throttles; once the measured (throttled)
	 * rate is back under control the level settles on 1 - 50/300 and stays. */
	sdps_stop(&s);
	sdps_init(&s, &vm);
	const double guest = 300 * MB, link = 100 * MB;
	sdps_set_level(&s, sdps_next_level(&s, guest, link, SDPS_STALLED));
	double first = s.level;
	bool settled = true;
	for (int i = 0; i < 5; i++) {
		sdps_set_level(&s, sdps_next_level(&s, guest * (1 - s.level), link, SDPS_PROGRESSING));
		if (fabs(s.level - (1 - 50.0 / 300)) > 1e-9) {
			snprintf(why, sizeof(why), "phase %d: level %g", i, s.level);
			settled = false;
		}
	}
	CHECK("sdps: a 300 MB/s guest on a 100 MB/s link settles at level 0.8333 (dirtying 50 MB/s)",
	      fabs(first - 1 + 50.0 / 300) < 1e-9 && settled, "first %g; %s", first, why);
	/* The guest quietens (its dirty rate falls below half the link): the level drops to 0 at once. */
	sdps_set_level(&s, sdps_next_level(&s, 40 * MB * (1 - s.level), link, SDPS_PROGRESSING));
	CHECK("sdps: the guest's dirty rate falls under half the link: level back to 0, no sleep",
	      s.level == 0 && vm.throttle_sleep_ns == 0 && s.max_level > 0.8, "level %g sleep %llu max %g", s.level,
	      (unsigned long long)vm.throttle_sleep_ns, s.max_level);
	/* A recorded sequence of phases (rates as source.c measures them). */
	const struct phase rec[] = {
		{ 180 * MB, 110 * MB, SDPS_STALLED },     /* 0: stalled, 180 MB/s unthrottled -> 1 - 55/180 = 0.694 */
		{ 60 * MB, 110 * MB, SDPS_STALLED },      /* 1: floor (1 + 0.694) / 2 = 0.847 */
		{ 27 * MB, 110 * MB, SDPS_PROGRESSING },  /* 2: 27 / 0.153 = 177 MB/s unthrottled -> 0.689 */
		{ 50 * MB, 110 * MB, SDPS_PROGRESSING },  /* 3: 50 / 0.311 = 161 MB/s -> 0.658 */
		{ 10 * MB, 110 * MB, SDPS_PROGRESSING },  /* 4: 10 / 0.342 = 29 MB/s < 55 -> 0 */
	};
	double expect[ARRAY_SIZE(rec)];
	double lv = 0;
	for (size_t i = 0; i < ARRAY_SIZE(rec); i++) {
		double un = rec[i].dirty / (1 - lv), w = un > 55 * MB ? 1 - 55 * MB / un : 0;
		double fl = rec[i].progress == SDPS_STALLED ? 1 - (1 - lv) / 2 : 0;
		lv = expect[i] = w > fl ? w : fl;
	}
	sdps_stop(&s);
	sdps_init(&s, &vm);
	bool match = true;
	for (size_t i = 0; i < ARRAY_SIZE(rec); i++) {
		sdps_set_level(&s, sdps_next_level(&s, rec[i].dirty, rec[i].tx, rec[i].progress));
		if (fabs(s.level - expect[i]) > 1e-9) {
			snprintf(why, sizeof(why), "phase %zu: level %g, expected %g", i, s.level, expect[i]);
			match = false;
		}
	}
	CHECK("sdps: recorded phases give 0.694, 0.847, 0.689, 0.658, 0", match && fabs(expect[0] - 0.6944) < 1e-4 &&
	      fabs(expect[1] - 0.8472) < 1e-4 && fabs(expect[2] - 0.6888) < 1e-4 && fabs(expect[3] - 0.6577) < 1e-4 &&
	      expect[4] == 0, "%s (expected %g %g %g %g %g)", why, expect[0], expect[1], expect[2], expect[3], expect[4]);
	sdps_stop(&s);
}

static void test_sdps_set_level(void)
{
	static struct vm vm;
	struct sdps s;
	char why[200] = "";

	sdps_init(&s, &vm);
	sdps_set_level(&s, 0.0049);
	CHECK("sdps_set_level: below 0.005 is 0 (no sleep)", s.level == 0 && vm.throttle_sleep_ns == 0, "level %g sleep %llu",
	      s.level, (unsigned long long)vm.throttle_sleep_ns);
	sdps_set_level(&s, -0.5);
	CHECK("sdps_set_level: negative is 0", s.level == 0 && vm.throttle_sleep_ns == 0, "level %g", s.level);
	sdps_set_level(&s, 0.005);
	CHECK("sdps_set_level: 0.005 throttles", s.level == 0.005 && vm.throttle_sleep_ns > 0, "level %g sleep %llu", s.level,
	      (unsigned long long)vm.throttle_sleep_ns);
	sdps_set_level(&s, 1.0);
	CHECK("sdps_set_level: 1 is clamped to 0.998", s.level == SDPS_LEVEL_MAX, "level %g", s.level);
	sdps_set_level(&s, 0.9985);
	CHECK("sdps_set_level: 0.9985 is clamped to 0.998", s.level == SDPS_LEVEL_MAX, "level %g", s.level);
	sdps_set_level(&s, 7.5);
	CHECK("sdps_set_level: 7.5 is clamped to 0.998", s.level == SDPS_LEVEL_MAX, "level %g", s.level);
	sdps_set_level(&s, 0.5);
	CHECK("sdps_set_level: 0.5 is 2 ms run, 2 ms sleep",
	      vm.throttle_period_ns == SDPS_RUN_SLICE_NS && vm.throttle_sleep_ns == SDPS_RUN_SLICE_NS, "period %llu sleep %llu",
	      (unsigned long long)vm.throttle_period_ns, (unsigned long long)vm.throttle_sleep_ns);
	CHECK("sdps_set_level: max_level keeps the highest level used", s.max_level == SDPS_LEVEL_MAX && s.level == 0.5,
	      "max %g", s.max_level);
	sdps_set_level(&s, 0.6);
	CHECK("sdps_set_level: 0.6 is 2 ms run, 3 ms sleep", vm.throttle_period_ns == 2000000 && vm.throttle_sleep_ns == 3000000,
	      "period %llu sleep %llu", (unsigned long long)vm.throttle_period_ns, (unsigned long long)vm.throttle_sleep_ns);
	sdps_set_level(&s, 0.8);
	CHECK("sdps_set_level: 0.8 sleeps at most 5 ms (run 1.25 ms)",
	      vm.throttle_sleep_ns == SDPS_SLEEP_MAX_NS && vm.throttle_period_ns == 1250000, "period %llu sleep %llu",
	      (unsigned long long)vm.throttle_period_ns, (unsigned long long)vm.throttle_sleep_ns);
	sdps_set_level(&s, 0.99);
	CHECK("sdps_set_level: 0.99 still sleeps at most 5 ms (run 50.5 us)",
	      vm.throttle_sleep_ns == SDPS_SLEEP_MAX_NS && vm.throttle_period_ns == 50505, "period %llu sleep %llu",
	      (unsigned long long)vm.throttle_period_ns, (unsigned long long)vm.throttle_sleep_ns);

	/* Over the whole range: the share of time asleep is the level, the
	 * sleep within its bound, the run slice at least 10 us. */
	bool ok = true;
	for (double l = 0.005; l <= SDPS_LEVEL_MAX + 1e-12 && ok; l += 0.0005) {
		sdps_set_level(&s, l);
		double sl = (double)vm.throttle_sleep_ns, pe = (double)vm.throttle_period_ns;
		if (fabs(sl / (sl + pe) - s.level) > 1e-4 || vm.throttle_sleep_ns > SDPS_SLEEP_MAX_NS || vm.throttle_period_ns < SDPS_RUN_SLICE_MIN_NS ||
		    vm.throttle_period_ns > SDPS_RUN_SLICE_NS) {
			snprintf(why, sizeof(why), "level %g: sleep %g period %g", s.level, sl, pe);
			ok = false;
		}
	}
	CHECK("sdps_set_level: 0.005..0.998: sleep/(sleep+run) = level, sleep <= 5 ms, run 10 us..2 ms", ok,
	      "%s", why);
	sdps_set_level(&s, 0.7);
	sdps_stop(&s);
	CHECK("sdps_stop: level 0, no sleep", s.level == 0 && vm.throttle_sleep_ns == 0,
	      "level %g sleep %llu", s.level, (unsigned long long)vm.throttle_sleep_ns);
}

/* ------------------------------------------------------------------- EVC */

static void copy_regs(uint32_t dst[EVC_REGS], const uint32_t src[EVC_REGS])
{
	memcpy(dst, src, EVC_REGS * sizeof(uint32_t));
}

static const uint32_t ones[EVC_REGS] = { ~0u, ~0u, ~0u, ~0u, ~0u, ~0u, ~0u };

static const char *reg_names[EVC_REGS] = { "1.ecx", "1.edx", "7.ebx", "7.ecx", "7.edx", "80000001.ecx", "80000001.edx" };
static const uint32_t reg_leaf[EVC_REGS] = { 1, 1, 7, 7, 7, 0x80000001, 0x80000001 };
static const char reg_letter[EVC_REGS] = { 'c', 'd', 'b', 'c', 'd', 'c', 'd' };

static void test_evc_levels(void)
{
	char name[200], why[400] = "";
	int nlevels = 0;
	while (evc_level_at(nlevels))
		nlevels++;
	CHECK("evc: four levels, x86-64-v1..v4 in order",
	      nlevels == 4 && !strcmp(evc_level_at(0)->name, "x86-64-v1") && !strcmp(evc_level_at(3)->name, "x86-64-v4") &&
		      !evc_level_at(-1) && !evc_level_at(4),
	      "%d levels", nlevels);
	CHECK("evc: evc_level_find", evc_level_find("x86-64-v3") == evc_level_at(2) && !evc_level_find("x86-64-v5") &&
	      !evc_level_find(NULL) && !evc_level_find("none") && !evc_level_find("X86-64-V3"), "lookup wrong");

	/* The masks in docs/host-and-center.md. */
	const uint32_t doc[4][EVC_REGS] = {
		{ 0x89200000, 0xffffffff, 0, 0, 0, 0, 0xf3ffffff },
		{ 0x89b82201, 0xffffffff, 0, 0, 0, 1, 0xf3ffffff },
		{ 0xbdf83201, 0xffffffff, 0x128, 0, 0, 0x21, 0xfbffffff },
		{ 0xbdf83201, 0xffffffff, 0xd0030128, 0, 0, 0x21, 0xfbffffff },
	};
	for (int i = 0; i < 4; i++) {
		snprintf(name, sizeof(name), "evc: %s mask is the documented one", evc_level_at(i)->name);
		CHECK(name, !memcmp(evc_level_at(i)->mask, doc[i], sizeof(doc[i])), "differs");
	}
	/* Each level includes the previous one. */
	bool nested = true;
	for (int i = 1; i < 4; i++)
		for (int r = 0; r < EVC_REGS; r++)
			if (evc_level_at(i - 1)->mask[r] & ~evc_level_at(i)->mask[r])
				nested = false;
	CHECK("evc: every level's mask contains the previous level's", nested, "a level drops a bit");

	/* A host exactly at a level has that maximum level. */
	for (int i = 0; i < 4; i++) {
		const struct evc_level *l = evc_level_at(i), *m = evc_host_max_level(l->mask);
		snprintf(name, sizeof(name), "evc: a host with exactly the %s features has maximum level %s", l->name, l->name);
		CHECK(name, m == l, "got %s", m ? m->name : "none");
	}
	const struct evc_level *m = evc_host_max_level(ones);
	CHECK("evc: a host with every feature is x86-64-v4", m == evc_level_at(3), "got %s", m ? m->name : "none");

	/* Any one named feature a level adds, missing: one level down. v1 "adds"
	 * 17 named features (x2apic, tsc_deadline, 12 of 1.edx, syscall, nx, lm). */
	static const int adds[4] = { 17, 7, 10, 5 };
	for (int i = 0; i < 4; i++) {
		const struct evc_level *l = evc_level_at(i), *below = evc_level_at(i - 1);
		int tried = 0;
		bool ok = true;
		for (int r = 0; r < EVC_REGS; r++)
			for (int b = 0; b < 32; b++) {
				uint32_t bit = 1u << b;
				if (!(l->mask[r] & bit) || (below && (below->mask[r] & bit)) || !cpuid_feature_name(reg_leaf[r], reg_letter[r], b))
					continue;
				uint32_t regs[EVC_REGS];
				copy_regs(regs, l->mask);
				regs[r] &= ~bit;
				const struct evc_level *got = evc_host_max_level(regs);
				tried++;
				if (got != below || evc_host_meets(regs, l->mask) || (below && !evc_host_meets(regs, below->mask))) {
					snprintf(why, sizeof(why), "without %s: %s", cpuid_feature_name(reg_leaf[r], reg_letter[r], b),
						 got ? got->name : "none");
					ok = false;
				}
			}
		snprintf(name, sizeof(name), "evc: %s host missing any one feature %s adds (%d of them) is %s", l->name, l->name, tried,
			 below ? below->name : "below every level");
		CHECK(name, ok && tried == adds[i], "%s (tried %d)", why, tried);
	}
	/* Bits without a name take no part. */
	uint32_t regs[EVC_REGS];
	copy_regs(regs, evc_level_at(2)->mask);
	regs[1] &= ~(1u << 1);  /* 1.edx vme: no name */
	regs[0] &= ~(1u << 31); /* hypervisor: no name */
	m = evc_host_max_level(regs);
	CHECK("evc: unnamed bits (vme, hypervisor) missing do not lower the level", m == evc_level_at(2), "got %s",
	      m ? m->name : "none");
	copy_regs(regs, evc_level_at(3)->mask);
	regs[0] &= ~(1u << 21); /* x2apic: every level keeps it */
	m = evc_host_max_level(regs);
	CHECK("evc: a host without x2apic meets no level", m == NULL, "got %s", m ? m->name : "none");
	CHECK("evc: evc_host_meets(v1 host, all-ones mask) is false; meets its own level",
	      !evc_host_meets(evc_level_at(0)->mask, ones) && evc_host_meets(evc_level_at(0)->mask, evc_level_at(0)->mask) &&
		      evc_host_meets(ones, evc_level_at(3)->mask),
	      "wrong");
}

static void test_evc_missing(void)
{
	char out[512];
	int n = evc_missing(evc_level_at(2)->mask, evc_level_at(1)->mask, out, sizeof(out));
	CHECK("evc_missing: v3 on a v2 host names the 10 features v3 adds, in register order",
	      n == 10 && !strcmp(out, "fma, movbe, xsave, avx, f16c, bmi1, avx2, bmi2, abm, rdtscp"), "%d: '%s'", n, out);
	n = evc_missing(evc_level_at(3)->mask, evc_level_at(2)->mask, out, sizeof(out));
	CHECK("evc_missing: v4 on a v3 host names the AVX-512 features",
	      n == 5 && !strcmp(out, "avx512f, avx512dq, avx512cd, avx512bw, avx512vl"), "%d: '%s'", n, out);
	n = evc_missing(evc_level_at(1)->mask, ones, out, sizeof(out));
	CHECK("evc_missing: want within have: 0 and an empty text", n == 0 && out[0] == 0, "%d: '%s'", n, out);
	n = evc_missing(evc_level_at(1)->mask, evc_level_at(2)->mask, out, sizeof(out));
	CHECK("evc_missing: a lower level on a higher host: 0", n == 0 && out[0] == 0, "%d: '%s'", n, out);
	uint32_t want[EVC_REGS] = { 0 }, have[EVC_REGS] = { 0 };
	want[0] = 1u << 31; /* hypervisor, unnamed */
	want[1] = 1u << 1;  /* vme, unnamed */
	n = evc_missing(want, have, out, sizeof(out));
	CHECK("evc_missing: unnamed bits are never missing", n == 0 && out[0] == 0, "%d: '%s'", n, out);
	char small[12];
	memset(small, 'x', sizeof(small));
	n = evc_missing(evc_level_at(2)->mask, evc_level_at(1)->mask, small, sizeof(small));
	CHECK("evc_missing: a short buffer is cut, terminated, and the count is still 10",
	      n == 10 && !strcmp(small, "fma, movbe,"), "%d: '%.12s'", n, small);
	n = evc_missing(evc_level_at(2)->mask, evc_level_at(1)->mask, NULL, 0);
	CHECK("evc_missing: no buffer: count only", n == 10, "%d", n);
}

static json_t *host_facts_json(const uint32_t regs[EVC_REGS])
{
	return json_pack("{s:{s:o}, s:{s:I}}", "cpu", "cpuid", evc_regs_to_json(regs), "memory", "free", (json_int_t)(8 * GiB));
}

static void test_evc_intersection(void)
{
	uint32_t mask[EVC_REGS], a[EVC_REGS], b[EVC_REGS];
	json_t *facts = json_array();

	evc_intersection(facts, mask);
	CHECK("evc_intersection: no host: all ones (no restriction)", !memcmp(mask, ones, sizeof(ones)), "1.ecx %#x", mask[0]);
	/* A v4 host with AES and SHA, a v3 host with AES: the cluster sees v3 + AES. */
	copy_regs(a, evc_level_at(3)->mask);
	a[0] |= 1u << 25;       /* aes */
	a[2] |= 1u << 29;       /* sha_ni */
	copy_regs(b, evc_level_at(2)->mask);
	b[0] |= 1u << 25;
	b[5] |= 1u << 6;        /* sse4a */
	json_array_append_new(facts, host_facts_json(a));
	json_array_append_new(facts, host_facts_json(b));
	evc_intersection(facts, mask);
	uint32_t expect[EVC_REGS];
	copy_regs(expect, evc_level_at(2)->mask);
	expect[0] |= 1u << 25;
	CHECK("evc_intersection: v4+aes+sha_ni and v3+aes+sse4a hosts: v3 + aes", !memcmp(mask, expect, sizeof(expect)),
	      "%#x %#x %#x %#x %#x %#x %#x", mask[0], mask[1], mask[2], mask[3], mask[4], mask[5], mask[6]);
	const struct evc_level *m = evc_host_max_level(mask);
	CHECK("evc_intersection: its maximum level is the lowest host's (x86-64-v3)", m == evc_level_at(2), "got %s",
	      m ? m->name : "none");
	char out[256];
	CHECK("evc_intersection: every host meets it", evc_missing(mask, a, out, sizeof(out)) == 0 &&
	      evc_missing(mask, b, out, sizeof(out)) == 0, "missing %s", out);
	/* Facts without cpu.cpuid, not an object, or with an invalid register take no part. */
	json_array_append_new(facts, json_pack("{s:{s:I}}", "memory", "free", (json_int_t)GiB));
	json_array_append_new(facts, json_string("garbage"));
	/* valid 1.ecx = 0 before an invalid 1.edx: the whole host is skipped */
	json_array_append_new(facts, json_pack("{s:{s:{s:i, s:i}}}", "cpu", "cpuid", "1.ecx", 0, "1.edx", -1));
	evc_intersection(facts, mask);
	CHECK("evc_intersection: hosts without (valid) CPUID facts are skipped", !memcmp(mask, expect, sizeof(expect)),
	      "1.ecx %#x", mask[0]);
	/* A host reporting only some registers restricts only those. */
	json_array_append_new(facts, json_pack("{s:{s:{s:i}}}", "cpu", "cpuid", "7.ebx", 1 << 3));
	evc_intersection(facts, mask);
	expect[2] &= 1u << 3;
	CHECK("evc_intersection: a register a host does not report counts as all ones", !memcmp(mask, expect, sizeof(expect)),
	      "1.ecx %#x 7.ebx %#x", mask[0], mask[2]);
	/* A v1 host joins: v1 (+ nothing, lahf_lm is v2). */
	json_decref(facts);
	facts = json_array();
	json_array_append_new(facts, host_facts_json(evc_level_at(0)->mask));
	json_array_append_new(facts, host_facts_json(ones));
	evc_intersection(facts, mask);
	CHECK("evc_intersection: with a v1 host: exactly the v1 mask", !memcmp(mask, evc_level_at(0)->mask, sizeof(mask)),
	      "1.ecx %#x", mask[0]);
	json_decref(facts);
}

static void test_evc_formats(void)
{
	uint32_t in[EVC_REGS] = { 0x89b82201, 0xffffffff, 0, 0x12345678, 1, 0x21, 0xf3ffffff }, out[EVC_REGS];
	char arg[256];

	evc_regs_to_arg(in, arg, sizeof(arg));
	CHECK("evc_regs_to_arg: the --cpuid-mask form",
	      !strcmp(arg, "1.ecx=0x89b82201,1.edx=0xffffffff,7.ebx=0x0,7.ecx=0x12345678,7.edx=0x1,80000001.ecx=0x21,"
			   "80000001.edx=0xf3ffffff"), "'%s'", arg);
	memset(out, 0xaa, sizeof(out));
	int rc = evc_regs_parse_arg(arg, out);
	CHECK("evc_regs_parse_arg(evc_regs_to_arg(x)) == x", rc == 0 && !memcmp(in, out, sizeof(in)), "rc %d", rc);
	for (int i = 0; i < 4; i++) {
		evc_regs_to_arg(evc_level_at(i)->mask, arg, sizeof(arg));
		memset(out, 0, sizeof(out));
		rc = evc_regs_parse_arg(arg, out);
		char name[120];
		snprintf(name, sizeof(name), "evc: %s mask round-trips through --cpuid-mask and JSON", evc_level_at(i)->name);
		json_t *j = evc_regs_to_json(evc_level_at(i)->mask);
		uint32_t back[EVC_REGS];
		int rj = evc_regs_from_json(j, back);
		CHECK(name, rc == 0 && !memcmp(out, evc_level_at(i)->mask, sizeof(out)) && rj == 0 &&
		      !memcmp(back, evc_level_at(i)->mask, sizeof(back)), "rc %d rj %d", rc, rj);
		json_decref(j);
	}
	char small[20];
	memset(small, 'x', sizeof(small));
	evc_regs_to_arg(in, small, sizeof(small));
	CHECK("evc_regs_to_arg: a short buffer is cut and terminated", strlen(small) == sizeof(small) - 1 &&
	      !strncmp(small, "1.ecx=0x89b82201,1.", sizeof(small) - 1), "'%.20s'", small);

	json_t *j = evc_regs_to_json(in);
	bool keys = json_object_size(j) == EVC_REGS;
	for (int r = 0; r < EVC_REGS; r++)
		keys = keys && json_integer_value(json_object_get(j, reg_names[r])) == (json_int_t)in[r];
	CHECK("evc_regs_to_json: seven keys with the values", keys, "%s", json_dumps(j, JSON_COMPACT));
	json_decref(j);

	j = json_pack("{s:i}", "7.ebx", 5);
	rc = evc_regs_from_json(j, out);
	uint32_t expect[EVC_REGS];
	copy_regs(expect, ones);
	expect[2] = 5;
	CHECK("evc_regs_from_json: missing keys are all ones", rc == 0 && !memcmp(out, expect, sizeof(out)), "rc %d", rc);
	json_decref(j);
	const char *bad[] = { "{\"1.ecx\": -1}", "{\"1.ecx\": 4294967296}", "{\"1.ecx\": \"0x1\"}", "{\"1.ecx\": 1.5}", "[1]", "7" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		j = json_loads(bad[i], JSON_DECODE_ANY, NULL);
		rc = evc_regs_from_json(j, out);
		char name[120];
		snprintf(name, sizeof(name), "evc_regs_from_json: %s refused", bad[i]);
		CHECK(name, j && rc < 0, "rc %d", rc);
		json_decref(j);
	}
	rc = evc_regs_from_json(NULL, out);
	CHECK("evc_regs_from_json: NULL refused, regs all ones", rc < 0 && !memcmp(out, ones, sizeof(ones)), "rc %d", rc);
	j = json_pack("{s:I}", "80000001.edx", (json_int_t)0xffffffffLL);
	rc = evc_regs_from_json(j, out);
	CHECK("evc_regs_from_json: 0xffffffff accepted", rc == 0 && out[6] == 0xffffffffu, "rc %d", rc);
	json_decref(j);

	json_t *list = evc_feature_list(evc_level_at(0)->mask);
	bool sse2 = false, sse3 = false, x2apic = false;
	size_t i;
	json_t *v;
	json_array_foreach(list, i, v) {
		sse2 |= !strcmp(json_string_value(v), "sse2");
		sse3 |= !strcmp(json_string_value(v), "sse3");
		x2apic |= !strcmp(json_string_value(v), "x2apic");
	}
	CHECK("evc_feature_list(v1): has sse2 and x2apic, not sse3", sse2 && x2apic && !sse3, "%s", json_dumps(list, JSON_COMPACT));
	json_decref(list);
}

/* ------------------------------------------------------------- placement */

static struct placement_host host(const char *name, uint64_t free_bytes, const uint32_t *regs)
{
	struct placement_host h = { .name = name, .facts = true, .free = free_bytes };
	if (regs) {
		h.have_regs = true;
		copy_regs(h.regs, regs);
	}
	return h;
}

static const char *reason(json_t *reasons, size_t i)
{
	const char *s = json_string_value(json_array_get(reasons, i));
	return s ? s : "(none)";
}

static void test_placement(void)
{
	const uint32_t *v1 = evc_level_at(0)->mask, *v2 = evc_level_at(1)->mask, *v3 = evc_level_at(2)->mask;
	json_t *r = json_array();
	int pick;

	struct placement_host three[] = { host("hA", 4 * GiB, v3), host("hB", 8 * GiB, v3), host("hC", 6 * GiB, v3) };
	pick = placement_choose(three, 3, 1 * GiB, EVC_NONE, ones, r);
	CHECK("placement: the most free memory wins", pick == 1 && json_array_size(r) == 0, "pick %d, %zu reasons", pick,
	      json_array_size(r));
	json_array_clear(r);

	struct placement_host tie[] = { host("hA", 2 * GiB, v3), host("hB", 8 * GiB, v3), host("hC", 8 * GiB, v3) };
	pick = placement_choose(tie, 3, 1 * GiB, EVC_NONE, ones, r);
	CHECK("placement: equal free memory: the first host (lowest id) wins", pick == 1, "pick %d", pick);
	json_array_clear(r);

	/* The VM's home host (where it is registered) wins if it qualifies, wherever it is in the list. */
	tie[0].home = true;
	pick = placement_choose(tie, 3, 1 * GiB, EVC_NONE, ones, r);
	CHECK("placement: the home host wins over more free memory (home first)", pick == 0, "pick %d", pick);
	tie[0].home = false;
	struct placement_host last[] = { host("hA", 9 * GiB, v3), host("hB", 8 * GiB, v3), host("hC", 2 * GiB, v3) };
	last[2].home = true;
	pick = placement_choose(last, 3, 1 * GiB, EVC_NONE, ones, r);
	CHECK("placement: the home host wins over more free memory (home last)", pick == 2, "pick %d", pick);
	last[2].free = 512 * MiB;
	pick = placement_choose(last, 3, 1 * GiB, EVC_NONE, ones, r);
	CHECK("placement: a home host without room loses; the most free of the others wins",
	      pick == 0 && json_array_size(r) == 1 && !strcmp(reason(r, 0), "hC: 512.0 MiB free, the VM needs 1.0 GiB"),
	      "pick %d, reason '%s'", pick, reason(r, 0));
	json_array_clear(r);

	/* Memory boundary: exactly enough qualifies, one byte short does not. */
	struct placement_host edge[] = { host("hA", 128 * MiB - 1, NULL), host("hB", 128 * MiB, NULL) };
	pick = placement_choose(edge, 2, 128 * MiB, EVC_NONE, ones, r);
	CHECK("placement: free == need qualifies, need - 1 is refused with the sizes",
	      pick == 1 && json_array_size(r) == 1 && !strcmp(reason(r, 0), "hA: 128.0 MiB free, the VM needs 128.0 MiB"),
	      "pick %d, %zu reasons, '%s'", pick, json_array_size(r), reason(r, 0));
	json_array_clear(r);

	/* A host whose facts cannot be read (down, wrong token) is refused with that error. */
	struct placement_host down[] = { host("hA", 64 * GiB, v3), host("hB", 2 * GiB, v3) };
	down[0].facts = false;
	snprintf(down[0].error, sizeof(down[0].error), "host hA (127.0.0.1:1) is not responding: refused");
	pick = placement_choose(down, 2, 1 * GiB, EVC_NONE, ones, r);
	CHECK("placement: a host that does not answer is refused with its error",
	      pick == 1 && json_array_size(r) == 1 && !strcmp(reason(r, 0), "hA: host hA (127.0.0.1:1) is not responding: refused"),
	      "pick %d, '%s'", pick, reason(r, 0));
	json_array_clear(r);

	/* EVC: a host lacking features of the VM's level is refused, naming them. */
	struct placement_host evc[] = { host("hOld", 64 * GiB, v2), host("hNew", 2 * GiB, v3) };
	pick = placement_choose(evc, 2, 1 * GiB, "x86-64-v3", v3, r);
	CHECK("placement: EVC x86-64-v3: a v2 host is refused, naming what it lacks",
	      pick == 1 && json_array_size(r) == 1 &&
		      !strcmp(reason(r, 0), "hOld: lacks fma, movbe, xsave, avx, f16c, bmi1, avx2, bmi2, abm, rdtscp (EVC level x86-64-v3)"),
	      "pick %d, '%s'", pick, reason(r, 0));
	json_array_clear(r);
	pick = placement_choose(evc, 2, 1 * GiB, "x86-64-v2", v2, r);
	CHECK("placement: EVC x86-64-v2: both qualify, the most free memory wins", pick == 0 && json_array_size(r) == 0,
	      "pick %d, %zu reasons", pick, json_array_size(r));
	json_array_clear(r);
	pick = placement_choose(evc, 2, 1 * GiB, EVC_NONE, ones, r);
	CHECK("placement: EVC none: no CPU check at all (all-ones mask ignored)", pick == 0 && json_array_size(r) == 0,
	      "pick %d, %zu reasons", pick, json_array_size(r));
	json_array_clear(r);
	pick = placement_choose(evc, 2, 1 * GiB, EVC_INTERSECTION, v2, r);
	CHECK("placement: EVC intersection: the cluster mask is checked like a level", pick == 0 && json_array_size(r) == 0,
	      "pick %d", pick);
	json_array_clear(r);
	pick = placement_choose(evc, 2, 1 * GiB, EVC_INTERSECTION, v3, r);
	CHECK("placement: EVC intersection with a mask a host lacks: refused with the level name",
	      pick == 1 && strstr(reason(r, 0), "(EVC level intersection)"), "pick %d '%s'", pick, reason(r, 0));
	json_array_clear(r);

	/* Memory is checked before the CPU: one reason per host, the first that applies. */
	struct placement_host both[] = { host("hA", 1 * GiB, v1), host("hB", 4 * GiB, v1) };
	pick = placement_choose(both, 2, 2 * GiB, "x86-64-v3", v3, r);
	CHECK("placement: nothing qualifies: -1 and one reason per host, in order, memory first",
	      pick == -1 && json_array_size(r) == 2 && !strcmp(reason(r, 0), "hA: 1.0 GiB free, the VM needs 2.0 GiB") &&
		      !strncmp(reason(r, 1), "hB: lacks sse3, ssse3, fma, cx16,", 33),
	      "pick %d, %zu reasons: '%s' / '%s'", pick, json_array_size(r), reason(r, 0), reason(r, 1));
	json_array_clear(r);

	/* Facts without cpu.cpuid: the EVC check is skipped (current rule). */
	struct placement_host noregs[] = { host("hX", 4 * GiB, NULL) };
	pick = placement_choose(noregs, 1, 1 * GiB, "x86-64-v4", evc_level_at(3)->mask, r);
	CHECK("placement: a host whose facts have no CPUID is not CPU-checked", pick == 0 && json_array_size(r) == 0, "pick %d",
	      pick);
	json_array_clear(r);

	pick = placement_choose(NULL, 0, 1 * GiB, EVC_NONE, ones, r);
	CHECK("placement: no host: -1, no reasons", pick == -1 && json_array_size(r) == 0, "pick %d", pick);
	json_decref(r);
}

/* ----------------------------------------------------------------- CPUID */

static struct kvm_cpuid2 *cpuid_new(int n)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + (size_t)n * sizeof(struct kvm_cpuid_entry2));
	c->nent = (uint32_t)n;
	return c;
}

static void entry(struct kvm_cpuid2 *c, int i, uint32_t fn, uint32_t idx, uint32_t a, uint32_t b, uint32_t cx, uint32_t d)
{
	c->entries[i] = (struct kvm_cpuid_entry2){ .function = fn, .index = idx, .eax = a, .ebx = b, .ecx = cx, .edx = d };
}

/* A table shaped like KVM_GET_SUPPORTED_CPUID on a modern host. */
static struct kvm_cpuid2 *sample_table(void)
{
	struct kvm_cpuid2 *c = cpuid_new(11);
	entry(c, 0, 0, 0, 0x1f, 0x756e6547, 0x6c65746e, 0x49656e69);
	entry(c, 1, 1, 0, 0x000906ea, 0x00ab0800, 0xf7fa3223, 0x0f8bfbff);
	entry(c, 2, 7, 1, 0x00001234, 0xdeadbeef, 0xcafef00d, 0x5555aaaa); /* subleaf 1: never masked */
	entry(c, 3, 7, 0, 0, 0xd19f47ab, 0x00405f5e, 0xbc000410);
	entry(c, 4, 0xb, 0, 1, 1, 0x100, 0xdead);
	entry(c, 5, 0xb, 1, 4, 4, 0x201, 0xdead);
	entry(c, 6, 0xd, 0, 0x2e7, 0x340, 0xa88, 0);
	entry(c, 7, 0x1f, 0, 1, 1, 0x100, 0xbeef);
	entry(c, 8, 0x80000000, 0, 0x80000008, 0, 0, 0);
	entry(c, 9, 0x80000001, 0, 0, 0, 0x00000121, 0x2c100800);
	entry(c, 10, 0x80000008, 0, 0x3030, 0, 0, 0);
	return c;
}

static void test_cpuid_apply(void)
{
	struct kvm_cpuid2 *orig = sample_table(), *c = sample_table();
	const uint32_t mask[7] = { 0x0000ffff, 0xffff0000, 0x00ff00ff, 0xff00ff00, 0x0f0f0f0f, 0xfffffffe, 0x7fffffff };
	char why[200] = "";

	cpuid_apply(c, mask, 3, 4);
	bool ok = true;
	for (uint32_t i = 0; i < c->nent; i++) {
		const struct kvm_cpuid_entry2 *o = &orig->entries[i], *e = &c->entries[i];
		struct kvm_cpuid_entry2 x = *o; /* expected */
		switch (o->function) {
		case 1:
			x.ecx &= mask[0];
			x.edx &= mask[1];
			x.ebx = (o->ebx & 0xffff) | (3u << 24) | (4u << 16);
			break;
		case 7:
			if (o->index == 0) {
				x.ebx &= mask[2];
				x.ecx &= mask[3];
				x.edx &= mask[4];
			}
			break;
		case 0xb:
		case 0x1f:
			x.edx = 3;
			break;
		case 0x80000001:
			x.ecx &= mask[5];
			x.edx &= mask[6];
			break;
		}
		if (memcmp(&x, e, sizeof(x))) {
			snprintf(why, sizeof(why), "leaf %#x.%u: eax %#x ebx %#x ecx %#x edx %#x", e->function, e->index, e->eax, e->ebx,
				 e->ecx, e->edx);
			ok = false;
		}
	}
	CHECK("cpuid_apply: masks exactly 1.ecx/edx, 7.0 ebx/ecx/edx, 80000001.ecx/edx; APIC IDs set; nothing else changes", ok,
	      "%s", why);
	CHECK("cpuid_apply: leaf 1 EBX: APIC ID 3 in 31-24, 4 vCPUs in 23-16, low 16 bits kept",
	      c->entries[1].ebx == 0x03040800, "ebx %#x", c->entries[1].ebx);
	CHECK("cpuid_apply: leaf 7 subleaf 1 untouched", !memcmp(&c->entries[2], &orig->entries[2], sizeof(c->entries[2])),
	      "ebx %#x", c->entries[2].ebx);

	free(c);
	c = sample_table();
	cpuid_apply(c, ones, 0, 300);
	ok = true;
	for (uint32_t i = 0; i < c->nent; i++) {
		const struct kvm_cpuid_entry2 *o = &orig->entries[i], *e = &c->entries[i];
		if (o->eax != e->eax || o->ecx != e->ecx || (o->function != 0xb && o->function != 0x1f && o->edx != e->edx) ||
		    (o->function != 1 && o->ebx != e->ebx))
			ok = false;
	}
	CHECK("cpuid_apply: the all-ones mask changes no feature bit", ok, "changed");
	CHECK("cpuid_apply: more than 255 vCPUs count as 255", c->entries[1].ebx == 0x00ff0800, "ebx %#x", c->entries[1].ebx);

	free(c);
	c = sample_table();
	cpuid_apply(c, evc_level_at(0)->mask, 1, 2);
	struct kvm_cpuid2 *host = sample_table();
	char out[512];
	int n = cpuid_missing_features(c, host, out, sizeof(out));
	CHECK("cpuid_apply with the v1 mask: the VM sees nothing the host lacks", n == 0, "%d: %s", n, out);
	n = cpuid_missing_features(host, c, out, sizeof(out));
	CHECK("cpuid_apply with the v1 mask: hides sse3, avx2, lahf_lm and rdtscp, keeps sse2 and x2apic",
	      n > 0 && strstr(out, "sse3") && strstr(out, "avx2") && strstr(out, "lahf_lm") && strstr(out, "rdtscp") &&
		      !strstr(out, "sse2") && !strstr(out, "x2apic"),
	      "%d: %s", n, out);
	free(host);
	free(c);
	free(orig);
}

static void test_cpuid_missing(void)
{
	struct kvm_cpuid2 *want = sample_table(), *have = sample_table();
	char out[512];
	int n;

	n = cpuid_missing_features(want, have, out, sizeof(out));
	CHECK("cpuid_missing_features: same table: 0, empty text", n == 0 && out[0] == 0, "%d: '%s'", n, out);
	have->entries[1].ecx |= 0xffffffff; /* have more: still nothing missing */
	n = cpuid_missing_features(want, have, out, sizeof(out));
	CHECK("cpuid_missing_features: want within have: 0", n == 0 && out[0] == 0, "%d: '%s'", n, out);
	free(have);
	have = sample_table();
	have->entries[1].ecx &= ~((1u << 0) | (1u << 28)); /* sse3, avx */
	have->entries[3].ebx &= ~(1u << 5);                /* avx2 */
	have->entries[9].edx &= ~(1u << 27);               /* rdtscp */
	have->entries[1].edx &= ~(1u << 1);                /* vme: unnamed */
	n = cpuid_missing_features(want, have, out, sizeof(out));
	CHECK("cpuid_missing_features: names sse3, avx, avx2, rdtscp (not the unnamed vme)",
	      n == 4 && !strcmp(out, "sse3, avx, avx2, rdtscp"), "%d: '%s'", n, out);
	/* Leaf 7: subleaf 0 is looked up, not the first leaf-7 entry (subleaf 1 comes first here). */
	free(have);
	have = sample_table();
	have->entries[2].ebx = 0; /* subleaf 1 */
	n = cpuid_missing_features(want, have, out, sizeof(out));
	CHECK("cpuid_missing_features: leaf 7 subleaf 1 does not count", n == 0, "%d: '%s'", n, out);
	have->entries[3].ebx = 0; /* subleaf 0 */
	n = cpuid_missing_features(want, have, out, sizeof(out));
	CHECK("cpuid_missing_features: leaf 7 subleaf 0 cleared: its named features are missing",
	      n > 5 && !strncmp(out, "fsgsbase, bmi1, avx2", 20), "%d: '%s'", n, out);
	/* A leaf the host does not list at all: everything wanted from it is missing. */
	free(have);
	have = sample_table();
	have->entries[9].function = 0x80000007;
	n = cpuid_missing_features(want, have, out, sizeof(out));
	CHECK("cpuid_missing_features: leaf 80000001 absent on the host: all 8 named features it had are missing",
	      n == 8 && !strcmp(out, "lahf_lm, abm, 3dnowprefetch, syscall, nx, pdpe1gb, rdtscp, lm"), "%d: '%s'", n, out);
	char small[8];
	memset(small, 'x', sizeof(small));
	n = cpuid_missing_features(want, have, small, sizeof(small));
	CHECK("cpuid_missing_features: short buffer cut and terminated, count kept", n == 8 && !strcmp(small, "lahf_lm"),
	      "%d: '%.8s'", n, small);
	free(have);
	free(want);

	CHECK("cpuid_feature_name: known bits", !strcmp(cpuid_feature_name(1, 'c', 0), "sse3") &&
	      !strcmp(cpuid_feature_name(1, 'd', 26), "sse2") && !strcmp(cpuid_feature_name(7, 'b', 5), "avx2") &&
	      !strcmp(cpuid_feature_name(7, 'b', 16), "avx512f") && !strcmp(cpuid_feature_name(0x80000001, 'd', 29), "lm") &&
	      !strcmp(cpuid_feature_name(0x80000001, 'c', 0), "lahf_lm"), "wrong name");
	CHECK("cpuid_feature_name: unnamed bits, wrong register or leaf: NULL",
	      !cpuid_feature_name(1, 'c', 31) && !cpuid_feature_name(1, 'b', 0) && !cpuid_feature_name(2, 'c', 0) &&
		      !cpuid_feature_name(7, 'a', 5) && !cpuid_feature_name(1, 'c', 32),
	      "got a name");
	/* Every named bit has exactly one name; names are distinct. */
	bool unique = true;
	char dup[80] = "";
	const char *seen[256];
	int nseen = 0;
	for (int r = 0; r < EVC_REGS; r++)
		for (int b = 0; b < 32; b++) {
			const char *nm = cpuid_feature_name(reg_leaf[r], reg_letter[r], b);
			if (!nm)
				continue;
			for (int k = 0; k < nseen; k++)
				if (!strcmp(seen[k], nm)) {
					unique = false;
					snprintf(dup, sizeof(dup), "%s", nm);
				}
			if (nseen < 256)
				seen[nseen++] = nm;
		}
	CHECK("cpuid_feature_name: 70 named bits in the 7 mask registers, no duplicate name", unique && nseen == 70,
	      "%d names, duplicate '%s'", nseen, dup);
}

static void test_cpuid_mask_parse(void)
{
	uint32_t m[CPUID_MASK_REGS];
	int rc;

	for (int i = 0; i < CPUID_MASK_REGS; i++)
		m[i] = 0xffffffffu;
	rc = cpuid_mask_parse_arg("1.ecx=0x89200000,80000001.edx=4093640703", m);
	CHECK("cpuid_mask_parse_arg: hex and decimal; other registers untouched",
	      rc == 0 && m[0] == 0x89200000 && m[6] == 0xf3ffffff && m[1] == 0xffffffffu && m[5] == 0xffffffffu, "rc %d", rc);
	rc = cpuid_mask_parse_arg("7.ebx=0,7.ebx=0x128", m);
	CHECK("cpuid_mask_parse_arg: a repeated register: the last value", rc == 0 && m[2] == 0x128, "rc %d 7.ebx %#x", rc, m[2]);
	rc = cpuid_mask_parse_arg("80000001.ecx=0xffffffff", m);
	CHECK("cpuid_mask_parse_arg: 0xffffffff accepted", rc == 0 && m[5] == 0xffffffffu, "rc %d", rc);
	const char *bad[] = { "1.ecx", "1.eax=1", "1.ECX=1", " 1.ecx=1", "1.ecx=0x100000000", "1.ecx=-1", "1.ecx=",
			      "1.ecx=zz", "1.ecx=1 ", "8000001.ecx=1", "1.ecx=1,bogus=2", "=1",
			      /* not sizes: no suffixes; no empty list or items */
			      "1.ecx=1K", "1.ecx=4M", "", "1.ecx=1,,7.ebx=2", "1.ecx=1,", "1.ecx=0x" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		char name[100];
		rc = cpuid_mask_parse_arg(bad[i], m);
		snprintf(name, sizeof(name), "cpuid_mask_parse_arg: '%s' refused", bad[i]);
		CHECK(name, rc < 0, "rc %d", rc);
	}
	for (int i = 0; i < CPUID_MASK_REGS; i++)
		m[i] = 0xffffffffu;
	rc = cpuid_mask_parse_arg("1.ecx=010", m);
	CHECK("cpuid_mask_parse_arg: a leading zero is decimal, not octal", rc == 0 && m[0] == 10, "rc %d 1.ecx %u", rc, m[0]);
	m[0] = 0xffffffffu;
	rc = cpuid_mask_parse_arg("1.ecx=0x5,7.ebx=bad", m);
	CHECK("cpuid_mask_parse_arg: a bad item changes nothing", rc < 0 && m[0] == 0xffffffffu, "rc %d 1.ecx %#x", rc, m[0]);
	uint32_t e[EVC_REGS];
	memset(e, 0, sizeof(e));
	rc = evc_regs_parse_arg("7.edx=0x10", e);
	CHECK("evc_regs_parse_arg: same parser", rc == 0 && e[4] == 0x10 && evc_regs_parse_arg("x=1", e) < 0, "rc %d", rc);
}

int main(void)
{
	uint64_t t0 = now_ns();
	test_sdps_next_level();
	test_sdps_level_bound();
	test_sdps_sequences();
	test_sdps_set_level();
	test_evc_levels();
	test_evc_missing();
	test_evc_intersection();
	test_evc_formats();
	test_placement();
	test_cpuid_apply();
	test_cpuid_missing();
	test_cpuid_mask_parse();
	fprintf(stderr, "unit_policy: %.1f ms, %d failures\n", (double)(now_ns() - t0) / 1e6, failures);
	return failures ? 1 : 0;
}
