/* Unit test: the convergence rule of pre-copy (src/migrate/converge.c),
 * fed with recorded and constructed phase statistics. Every boundary of
 * the rule is checked from both sides. */
#include "migrate/converge.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

#define MB 1000000ULL
static int failures;

static void expect(bool ok, const char *name, const char *fmt, double a, double b)
{
	if (ok) {
		printf("PASS converge: %s\n", name);
	} else {
		printf("FAIL converge: %s: ", name);
		printf(fmt, a, b);
		printf("\n");
		failures++;
	}
}

static const char *dname(enum converge_decision d)
{
	return d == CONVERGE_SWITCHOVER ? "switchover" : d == CONVERGE_GIVE_UP ? "give up" : "continue";
}

static void decide(const char *name, int phase, uint64_t sent, uint64_t dirty, double tx, uint64_t goal,
		   enum converge_decision want)
{
	struct phase_stats ps = { .phase = phase, .sent = sent, .prev_sent = UINT64_MAX, .dirty = dirty, .seconds = 1 };
	enum converge_decision got = converge_decide(&ps, converge_predict_ms(dirty, tx), goal);
	if (got == want) {
		printf("PASS converge: %s (%s)\n", name, dname(got));
	} else {
		printf("FAIL converge: %s: decided %s, expected %s (predicted %.1f ms, goal %llu ms)\n", name, dname(got),
		       dname(want), converge_predict_ms(dirty, tx), (unsigned long long)goal);
		failures++;
	}
}

static void progress(const char *name, int phase, uint64_t sent, uint64_t prev, uint64_t dirty, enum sdps_progress want)
{
	static const char *names[] = { "progressing", "stalled", "saturated" };
	struct phase_stats ps = { .phase = phase, .sent = sent, .prev_sent = prev, .dirty = dirty };
	enum sdps_progress got = converge_progress(&ps);
	if (got == want) {
		printf("PASS converge: %s (%s)\n", name, names[got]);
	} else {
		printf("FAIL converge: %s: %s, expected %s\n", name, names[got], names[want]);
		failures++;
	}
}

int main(void)
{
	/* the prediction: bytes over the rate, plus frame and run headers */
	double p = converge_predict_ms(100 * MB, 100e6);
	expect(fabs(p - 1000 * (1 + 16.0 / 4096)) < 1e-6, "100 MB at 100 MB/s is predicted as 1 s plus headers",
	       "got %.3f ms (%.0f)", p, 0);
	expect(converge_predict_ms(1, 0) >= 1e9, "no measured rate predicts forever", "got %.3f ms (%.0f)",
	       converge_predict_ms(1, 0), 0);

	/* the decision, goal 500 ms, link 100 MB/s (tiny: max(500/20, 5) = 25 ms = 2.5 MB) */
	decide("nothing left switches over at once, even in phase -1", -1, 256 * MB, 0, 100e6, 500, CONVERGE_SWITCHOVER);
	decide("a rest over the goal goes on", 0, 100 * MB, 60 * MB, 100e6, 500, CONVERGE_CONTINUE);
	decide("a rest just under the goal that no longer halves switches over", 1, 90 * MB, 49 * MB, 100e6, 500,
	       CONVERGE_SWITCHOVER);
	decide("a rest under the goal that still halves takes another phase", 1, 90 * MB, 40 * MB, 100e6, 500,
	       CONVERGE_CONTINUE);
	decide("exactly half is not 'still halving'", 1, 80 * MB, 40 * MB, 100e6, 500, CONVERGE_SWITCHOVER);
	decide("a tiny rest switches over even while it halves", 2, 10 * MB, 2 * MB, 100e6, 500, CONVERGE_SWITCHOVER);
	decide("just above tiny and halving: another phase", 2, 10 * MB, 3 * MB, 100e6, 500, CONVERGE_CONTINUE);
	decide("tiny has a floor of 5 ms for small goals", 2, 10 * MB, 400000, 100e6, 20, CONVERGE_SWITCHOVER);
	decide("the extra phases are limited", CONVERGED_EXTRA_PHASES_MAX, 90 * MB, 40 * MB, 100e6, 500,
	       CONVERGE_SWITCHOVER);
	decide("one phase before the limit still goes on", CONVERGED_EXTRA_PHASES_MAX - 1, 90 * MB, 40 * MB, 100e6, 500,
	       CONVERGE_CONTINUE);
	decide("the phase limit gives up", MIGRATION_PHASES_MAX, 100 * MB, 90 * MB, 100e6, 500, CONVERGE_GIVE_UP);

	/* progress classes for SDPS: against min(sent, previous sent) and sent */
	progress("phase -1 always progresses", -1, 256 * MB, UINT64_MAX, 256 * MB, SDPS_PROGRESSING);
	progress("under 80% of what was sent progresses", 0, 100 * MB, UINT64_MAX, 79 * MB, SDPS_PROGRESSING);
	progress("exactly 80% stalls", 0, 100 * MB, UINT64_MAX, 80 * MB, SDPS_STALLED);
	progress("the smaller of two phases is the base", 2, 100 * MB, 50 * MB, 45 * MB, SDPS_STALLED);
	progress("95% or more of what was sent is saturated", 1, 100 * MB, 100 * MB, 95 * MB, SDPS_SATURATED);
	progress("just under 95% is stalled", 1, 100 * MB, 100 * MB, 94 * MB, SDPS_STALLED);

	/* when SDPS adjusts its level */
	expect(!converge_sdps_acts(SDPS_OFF, 3, SDPS_SATURATED, 0), "sdps off never acts", "%.0f %.0f", 0, 0);
	expect(converge_sdps_acts(SDPS_ALWAYS, -1, SDPS_PROGRESSING, 0), "sdps always acts from phase -1", "%.0f %.0f",
	       0, 0);
	expect(!converge_sdps_acts(SDPS_DYNAMIC, -1, SDPS_SATURATED, 0), "sdps dynamic waits for phase 0", "%.0f %.0f", 0,
	       0);
	expect(!converge_sdps_acts(SDPS_DYNAMIC, 2, SDPS_PROGRESSING, 0), "sdps dynamic leaves a progressing guest alone",
	       "%.0f %.0f", 0, 0);
	expect(converge_sdps_acts(SDPS_DYNAMIC, 2, SDPS_PROGRESSING, 0.3),
	       "sdps dynamic keeps adjusting once it throttles", "%.0f %.0f", 0, 0);
	expect(converge_sdps_acts(SDPS_DYNAMIC, 0, SDPS_STALLED, 0), "sdps dynamic acts on a stall", "%.0f %.0f", 0, 0);

	/* a recorded run, reduced: 128 MiB hot set, the guest re-dirties 40% of
	 * what each phase sends (40 MB/s against a 100 MB/s link), goal 500 ms:
	 * 134 MB -> 54 -> 21 -> 8.6 -> 3.4 -> 1.4 MB; the 1.4 MB rest (14 ms) is
	 * tiny, so the switchover comes after phase 3 (five phases in all). */
	uint64_t sent = 134 * MB, prev = UINT64_MAX;
	int phase = -1, switched = -2;
	for (; phase < 20; phase++) {
		uint64_t dirty = sent * 2 / 5;
		struct phase_stats ps = { .phase = phase, .sent = sent, .prev_sent = prev, .dirty = dirty, .seconds = 1 };
		enum converge_decision d = converge_decide(&ps, converge_predict_ms(dirty, 100e6), 500);
		if (converge_progress(&ps) != SDPS_PROGRESSING) {
			expect(false, "a guest dirtying 40% of each phase is progressing", "phase %.0f (%.0f)", phase, 0);
			break;
		}
		if (d == CONVERGE_SWITCHOVER) {
			switched = phase;
			break;
		}
		prev = sent;
		sent = dirty;
	}
	expect(switched == 3, "a recorded shrinking run switches over after phase 3 with a 14 ms rest",
	       "switched after phase %.0f (expected %.0f)", switched, 3);

	/* The stun's check, with the VM paused: 100 MB/s, a 20 ms goal holds
	 * 2 MB less the wire overhead (0.39%). */
	expect(!converge_stun_overshoots(1900000, 100e6, 20, 0), "1.9 MB at 100 MB/s fits a 20 ms goal: the stun goes ahead",
	       "predicted %.1f ms (goal %.0f)", converge_predict_ms(1900000, 100e6), 20);
	expect(converge_stun_overshoots(2000000, 100e6, 20, 0), "a 2 MB burst at 100 MB/s overshoots 20 ms: the VM runs on",
	       "predicted %.2f ms (goal %.0f)", converge_predict_ms(2000000, 100e6), 20);
	expect(converge_stun_overshoots(50000000, 100e6, 20, STUN_RETRIES_MAX - 1), "the last retry is still taken",
	       "retries %.0f of %.0f", STUN_RETRIES_MAX - 1, STUN_RETRIES_MAX);
	expect(!converge_stun_overshoots(50000000, 100e6, 20, STUN_RETRIES_MAX),
	       "after STUN_RETRIES_MAX retries the stun goes ahead whatever it sends", "retries %.0f of %.0f",
	       STUN_RETRIES_MAX, STUN_RETRIES_MAX);
	expect(!converge_stun_overshoots(0, 100e6, 20, 0) && !converge_stun_overshoots(50000000, 0, 20, 0),
	       "nothing pending, or no transmit rate measured yet: the stun goes ahead", "%.0f %.0f", 0, 0);

	/* "auto" streams: the counts pass -1 measured (bench S5 and S6 windows) */
	const int c124[] = { 1, 2, 4 };
	const double slow2[] = { 1066e6, 979e6, 1686e6 };  /* two looked slower than one: four still wins */
	const double touch[] = { 608e6, 577e6, 664e6 };     /* all alike (the destination's first touch): the most */
	const double two[] = { 635e6, 1200e6, 871e6 };      /* four measurably slower than two: two */
	const double one[] = { 1000e6, 850e6, 700e6 };      /* more streams only slower (short of CPUs): one */
	const double edge[] = { 1100e6, 1000e6, 1000e6 };   /* exactly 10% slower: counts as within */
	const double cut[] = { 500e6, 1200e6, -1 };         /* the pass ended before four: of what was measured */
	const double none[] = { -1, -1, -1 };
	struct { const double *rates; int want; const char *what; } picks[] = {
		{ slow2, 4, "streams: four kept although two measured slower than one" },
		{ touch, 4, "streams: the largest count within 10% of the fastest" },
		{ two, 2, "streams: two when four was more than 10% slower" },
		{ one, 1, "streams: one when every other count was more than 10% slower" },
		{ edge, 4, "streams: exactly 10% slower is within" },
		{ cut, 2, "streams: a count not measured is not chosen" },
		{ none, 1, "streams: nothing measured: one" },
	};
	for (size_t k = 0; k < sizeof(picks) / sizeof(picks[0]); k++) {
		int got = converge_pick_streams(c124, picks[k].rates, 3, 1.10);
		expect(got == picks[k].want, picks[k].what, "picked %.0f (want %.0f)", got, picks[k].want);
	}
	expect(converge_pick_streams(c124, none, 0, 1.10) == 1, "streams: no count given: one", "picked %.0f (want %.0f)",
	       converge_pick_streams(c124, none, 0, 1.10), 1);
	return failures ? 1 : 0;
}
